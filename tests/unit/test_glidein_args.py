"""Tests for glideinlab.protocol.glidein_args: the param escape table and the glidein command line."""

from __future__ import annotations

import re
import string

import pytest

from glideinlab.protocol.glidein_args import (
    GlideinArgumentError,
    build_glidein_arguments,
    escape_param,
    parse_glidein_arguments,
    unescape_param,
)

ARGS = dict(
    verbosity="std",
    glidein_name="gfactory_instance",
    entry_name="ce-workspace",
    client_name="vofrontend_service.main",
    schedd="schedd_glideins2@factory-workspace.glideinwms.org",
    factory_name="gfactory_service",
    web="http://factory-workspace.glideinwms.org:8000/factory/stage",
    sign="0" * 64,
    sign_entry="1" * 64,
    descript="description.f1a2.cfg",
    descript_entry="description.f1a3.cfg",
    submit_cred_id="ABCD2345",
    slots_layout="partitionable",
    client_web="http://frontend-workspace.glideinwms.org:8000/vofrontend/stage",
    client_sign="2" * 64,
    client_descript="description.c1.cfg",
    client_group="main",
    client_web_group="http://frontend-workspace.glideinwms.org:8000/vofrontend/stage/group_main",
    client_sign_group="3" * 64,
    client_descript_group="description.c2.cfg",
    params={
        "GLIDEIN_Collector": "frontend-workspace.glideinwms.org:9618?sock=collector",
        "GLIDECLIENT_Start": 'stringListMember(MY.GLIDEIN_Site, "SiteA,SiteB") && (TARGET.RequestCpus >= 1)',
        "GLIDEIN_Client": "vofrontend_service.main",
        "EMPTY": "",
    },
)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "plain_value",
        string.printable,
        "".join(chr(c) for c in range(32, 127)),
        ".dot,",  # looks like an escape already
        "..,,",
        "-minus at start",
        "tab\there\nnew line\r",
        "ünïcødé ✓ 𝔊",
        "$(Cluster) \"quoted\" 'single' `cmd` \\back",
    ],
)
def test_escape_round_trip(value):
    escaped = escape_param(value)
    assert re.fullmatch(r"[A-Za-z0-9_/@%^.,]*", escaped), escaped  # one safe word
    assert unescape_param(escaped) == value


@pytest.mark.parametrize(
    "value, escaped",
    [
        ("a.b", "a.dot,b"),
        ("x=1", "x.eq,1"),
        ("a b", "a.nbsp,b"),
        ("-1", ".minus,1"),
        ("host:9618", "host.colon,9618"),
        ("a,b", "a.comma,b"),
        ("(x)", ".open,x.close,"),
        ('"', ".quot,"),
        ("$", ".dollar,"),
        ("/path@site%^", "/path@site%^"),  # upstream passes these through
        ("\t", ".u9,"),
        ("é", ".ue9,"),
    ],
)
def test_escape_uses_upstream_tokens(value, escaped):
    assert escape_param(value) == escaped
    assert unescape_param(escaped) == value


@pytest.mark.parametrize("escaped", ["a.b", ".dot", ".unknown,", ".u110000,", ".DOT,", "x.,"])
def test_unescape_rejects_malformed(escaped):
    with pytest.raises(GlideinArgumentError):
        unescape_param(escaped)


def test_build_shape():
    argv = build_glidein_arguments(**ARGS)
    assert argv[:4] == ["-v", "std", "-name", "gfactory_instance"]
    pairs = dict(zip(argv[::2], argv[1::2], strict=True))
    assert pairs["-signtype"] == "sha256" and pairs["-clientsigntype"] == "sha256"
    assert pairs["-clientname"] == "vofrontend_service.main"
    assert pairs["-submitcredid"] == "ABCD2345"
    assert pairs["-param_GLIDEIN_Collector"] == (
        "frontend.minus,workspace.dot,glideinwms.dot,org.colon,9618.question,sock.eq,collector"
    )
    assert pairs["-param_EMPTY"] == ""
    assert argv[-4:] == ["-cluster", "$(Cluster)", "-subcluster", "$(Process)"]
    # every element is one word: joining with spaces is a valid submit Arguments string
    assert all(not any(c.isspace() or c in "\"'" for c in arg) for arg in argv)


def test_round_trip():
    argv = build_glidein_arguments(**ARGS, cluster=123, subcluster="4")
    parsed = parse_glidein_arguments(argv)
    assert parsed == {**ARGS, "cluster": "123", "subcluster": "4"}
    assert build_glidein_arguments(**parsed) == argv


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda argv: argv + ["-unknown", "x"], "unknown option"),
        (lambda argv: argv + ["-dangling"], "has no value"),
        (lambda argv: argv + ["-entry", "again"], "given twice"),
        (lambda argv: argv + ["-signtype", "sha256"], "given twice"),
        (lambda argv: argv[2:], "missing options: -v"),
        (lambda argv: [a if a != "sha256" else "sha1" for a in argv], "only sha256"),
        (lambda argv: [a if a != "std" else "loud" for a in argv], "verbosity"),
        (lambda argv: [a if a != "partitionable" else "elastic" for a in argv], "slots_layout"),
        (lambda argv: argv + ["-param_EMPTY", "x"], "repeated parameter"),
        (lambda argv: argv + ["-param_bad-name", "x"], "parameter"),
        (lambda argv: argv + ["-param_X", "a.b"], "bad escape"),
        (lambda argv: [a if a != "$(Cluster)" else "$(Evil)" for a in argv], "cluster"),
    ],
)
def test_parse_rejects(mutate, message):
    with pytest.raises(GlideinArgumentError, match=message):
        parse_glidein_arguments(mutate(build_glidein_arguments(**ARGS)))


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"entry_name": "ce workspace"}, "entry_name"),
        ({"web": 'http://x/"quoted"'}, "web"),
        ({"schedd": "$(evil)"}, "schedd"),
        ({"params": {"bad-name": "x"}}, "parameter name"),
        ({"params": {"N": 5}}, "must be a string"),
        ({"cluster": "12a"}, "cluster"),
        ({"verbosity": "debug"}, "verbosity"),
        ({"sign": None}, "must be a string"),
    ],
)
def test_build_rejects(overrides, message):
    with pytest.raises(GlideinArgumentError, match=message):
        build_glidein_arguments(**{**ARGS, **overrides})
