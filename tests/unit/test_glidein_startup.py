"""Tests for glideinlab/glidein/startup.py, the glidein program.

Pure parts are tested table-driven; the download+verify path and whole runs use the real code against a
local http.server serving stages written by glideinlab.glidein.stage, with fake HTCondor binaries in PATH
(no daemons can run on the host).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import http.server
import json
import os
import random
import re
import signal
import string
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from glideinlab.defaults import glidein as D
from glideinlab.glidein import stage as S
from glideinlab.glidein import startup as G
from glideinlab.protocol import glidein_args as A

STARTUP = Path(G.__file__)
ARGS = dict(
    verbosity="std",
    glidein_name="gfactory_instance",
    entry_name="ce1",
    client_name="vofrontend_service.main",
    schedd="schedd_glideins1@factory.example.org",
    factory_name="gfactory_service",
    web="http://factory.example.org:8000/stage",
    sign="0" * 64,
    sign_entry="1" * 64,
    descript="description.0123456789abcdef.cfg",
    descript_entry="description.0123456789abcde0.cfg",
    submit_cred_id="ABCD2345",
    slots_layout="partitionable",
    client_web="http://frontend.example.org:8000/stage",
    client_sign="2" * 64,
    client_descript="description.0123456789abcde1.cfg",
    client_group="main",
    client_web_group="http://frontend.example.org:8000/stage/group_main",
    client_sign_group="3" * 64,
    client_descript_group="description.0123456789abcde2.cfg",
    params={"GLIDEIN_Collector": "frontend.example.org:9618?sock=collector",
            "GLIDECLIENT_Start": 'stringListMember(MY.GLIDEIN_Site, "SiteA,SiteB") && (TARGET.RequestCpus >= 1)',
            "EMPTY": ""},
)


# ---- the file itself --------------------------------------------------------------------------------------

def test_startup_is_a_stdlib_only_program():
    text = STARTUP.read_text()
    assert text.startswith("#!/usr/bin/env python3\n")
    modules = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            modules.add(node.module.split(".")[0])
    assert "glideinlab" not in modules
    assert modules - {"__future__"} <= set(sys.stdlib_module_names), modules - set(sys.stdlib_module_names)


def test_literal_defaults_equal_the_knobs():
    assert G.DEFAULTS == {knob.name: knob.default for knob in D.GLIDEIN}
    for name in G.POSITIVE_SETTINGS | set(G.START_EXPRESSIONS):
        assert name in G.DEFAULTS


def test_stage_formats_agree():
    assert [stage.name for stage in G.stage_locations(ARGS)] == ["main", "entry", "client", "client_group"]
    for logical in ("check_disk.sh", "README", "a.tar.gz", "file_list.lst", "x+y-z_1.sh"):
        digest = hashlib.sha256(logical.encode()).hexdigest()
        assert G.staged_name(logical, digest) == S.staged_name(logical, digest)
        assert G.logical_name(S.staged_name(logical, digest), digest) == logical


@pytest.mark.parametrize(
    "staged, digest",
    [
        ("check_disk.sh", "ab" * 32),  # no content tag
        ("check_disk." + "cd" * 8 + ".sh", "ab" * 32),  # tag of another content
        (".." + "ab" * 8 + ".", "ab" * 32),  # would be a path, not a file name
        ("." + "ab" * 8, "ab" * 32),
    ],
)
def test_logical_name_rejects(staged, digest):
    assert G.logical_name(staged, digest) is None


# ---- arguments --------------------------------------------------------------------------------------------

WEIRD_PARAMS = {
    "ALL_PRINTABLE": string.printable,
    "UNICODE": "ünïcødé ✓ 𝔊",
    "LOOKS_ESCAPED": ".dot,..,,",
    "MACROS": "$(Cluster) \"q\" 'q' `cmd` \\",
}


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"params": WEIRD_PARAMS},
        {"params": {}, "verbosity": "fast", "slots_layout": "fixed"},
        {"cluster": 1234, "subcluster": "7"},
    ],
)
def test_parser_agrees_with_glidein_args(overrides):
    argv = A.build_glidein_arguments(**{**ARGS, **overrides})
    parsed = G.parse_arguments(argv)
    assert parsed == A.parse_glidein_arguments(argv)
    assert A.build_glidein_arguments(**parsed) == argv


def test_unescape_agrees_on_random_strings():
    rng = random.Random(7)
    alphabet = string.printable + "éü✓𝔊\x00\x7f"
    for _ in range(300):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        assert G.unescape_param(A.escape_param(value)) == value


@pytest.mark.parametrize(
    "mutate",
    [
        lambda argv: argv + ["-unknown", "x"],
        lambda argv: argv + ["-dangling"],
        lambda argv: argv + ["-entry", "again"],
        lambda argv: argv[2:],
        lambda argv: [a if a != "sha256" else "sha1" for a in argv],
        lambda argv: [a if a != "std" else "loud" for a in argv],
        lambda argv: argv + ["-param_EMPTY", "x"],
        lambda argv: argv + ["-param_X", "a.b"],
        lambda argv: argv + ["-param_X", ".nope,"],
        lambda argv: [a if a != "$(Cluster)" else "$(Evil)" for a in argv],
    ],
)
def test_parser_rejects_what_glidein_args_rejects(mutate):
    argv = mutate(A.build_glidein_arguments(**ARGS))
    with pytest.raises(A.GlideinArgumentError):
        A.parse_glidein_arguments(argv)
    with pytest.raises(G.ArgumentError):
        G.parse_arguments(argv)


@pytest.mark.parametrize(
    "value, accepted",
    [(".", True), ("Condor", True), ("TMPDIR", True), ("OSG", True), ("AUTO", True), ("/scratch/x", True),
     ("relative/dir", False), ("/has space", False), ("condor", False)],
)
def test_work_dir_option(value, accepted):
    argv = A.build_glidein_arguments(**ARGS) + ["-dir", value]
    if accepted:
        assert G.parse_arguments(argv)["work_dir"] == value
    else:
        with pytest.raises(G.ArgumentError, match="-dir"):
            G.parse_arguments(argv)


@pytest.mark.parametrize(
    "choice, environ, expected",
    [
        (None, {"_CONDOR_SCRATCH_DIR": "/scratch"}, "/scratch"),
        (None, {}, "/job"),
        ("Condor", {"_CONDOR_SCRATCH_DIR": "/scratch"}, "/scratch"),
        (".", {"_CONDOR_SCRATCH_DIR": "/scratch"}, "/job"),
        ("TMPDIR", {"TMPDIR": "/tmp/x"}, "/tmp/x"),
        ("TMPDIR", {}, "/tmp"),
        ("OSG", {"OSG_WN_TMP": "/osg"}, "/osg"),
        ("AUTO", {"TMPDIR": "/tmp/x", "OSG_WN_TMP": "/osg"}, "/osg"),
        ("AUTO", {}, "/job"),
        ("/abs/dir", {"_CONDOR_SCRATCH_DIR": "/scratch"}, "/abs/dir"),
    ],
)
def test_choose_work_base(choice, environ, expected):
    assert G.choose_work_base(choice, environ, Path("/job")) == Path(expected)


# ---- glidein_config and settings --------------------------------------------------------------------------

def test_glidein_config_precedence_and_protection():
    identity = {"GLIDEIN_Factory": "f", "GLIDEIN_UUID": "u"}
    constants = [
        ("main", {"A": "main", "B": "main", "C": "main", "D": "main"}),
        ("entry", {"B": "entry", "C": "entry", "D": "entry", "glidein_factory": "spoof"}),
        ("client", {"C": "client", "D": "client", "BAD-KEY": "x"}),
        ("client_group", {"D": "group", "MULTI": "two\nlines"}),
    ]
    config, warnings = G.build_glidein_config(identity, constants, {"D": "param", "GLIDEIN_UUID": "spoof"})
    assert config == {"GLIDEIN_Factory": "f", "GLIDEIN_UUID": "u", "A": "main", "B": "entry", "C": "client",
                      "D": "param"}
    assert len(warnings) == 4
    assert any("entry may not set glidein_factory" in w for w in warnings)
    assert any("params may not set GLIDEIN_UUID" in w for w in warnings)


@pytest.mark.parametrize(
    "text, values, bad",
    [
        ("A 1\nB two words\nA 3\n", {"B": "two words", "A": "3"}, []),
        ("EMPTY \nALONE\n# comment\n\n", {"EMPTY": "", "ALONE": ""}, []),
        ("1BAD x\nbad-key y\nOK z\n", {"OK": "z"}, ["1BAD x", "bad-key y"]),
    ],
)
def test_parse_key_values(text, values, bad):
    parsed, skipped = G.parse_key_values(text)
    assert parsed == values and list(parsed) == list(values) and skipped == bad
    assert G.parse_key_values(G.format_key_values(parsed))[0] == parsed


@pytest.mark.parametrize(
    "config, changes, warned",
    [
        ({}, {}, 0),
        ({"GLIDEIN_Max_Idle": "60", "USE_CCB": "TRUE", "GLIDEIN_TrustDomain": "pool.example"},
         {"GLIDEIN_Max_Idle": 60, "USE_CCB": True, "GLIDEIN_TrustDomain": "pool.example"}, 0),
        ({"GLIDEIN_CPUS": "auto"}, {}, 1),
        ({"GLIDEIN_CPUS": "0", "UPDATE_INTERVAL": "0", "GLIDEIN_Max_Tail": "0"}, {"GLIDEIN_Max_Tail": 0}, 2),
        ({"GLIDEIN_Max_Idle": "-5", "USE_CCB": "yes"}, {}, 2),
        ({"UNRELATED": "x"}, {}, 0),
    ],
)
def test_effective_settings(config, changes, warned):
    settings, warnings = G.effective_settings(config)
    assert settings == {**G.DEFAULTS, **changes}
    assert len(warnings) == warned


@pytest.mark.parametrize(
    "config, verbosity, expected",
    [
        ({}, "std", 1199),
        ({}, "fast", 150),
        ({}, "check", 150),
        ({"GLIDEIN_Failed_Wait": "10"}, "fast", 10),
        ({"GLIDEIN_Failed_Wait": "0"}, "std", 0),
        ({"GLIDEIN_Failed_Wait_Fast": "20"}, "fast", 20),
    ],
)
def test_failed_wait(config, verbosity, expected):
    settings, _ = G.effective_settings(config)
    assert G.failed_wait_seconds(settings, config, verbosity) == expected


# ---- lifetime ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "overrides, fraction, retire, die, job_max, spread",
    [
        ({}, 0.0, 21600, 151200, 129600, 0),
        ({}, 0.5, 21600 - 1080, 151200 - 1080, 129600, 1080),
        ({"GLIDEIN_Retire_Time_Spread": 0}, 0.9, 21600, 151200, 129600, 0),
        # walltime: die = 172800 - 370 - 120; Job_Max_Time fits
        ({"GLIDEIN_Max_Walltime": 172800}, 0.0, 172310 - 129600, 172310, 129600, 0),
        # short walltime: Job_Max_Time lowered so 600 s of retire remain; the spread may not eat them
        ({"GLIDEIN_Max_Walltime": 3600}, 0.99, 600, 3110, 2510, 0),
        ({"GLIDEIN_Max_Walltime": 3600, "UPDATE_INTERVAL": 2}, 0.5, 600, 3478, 2878, 0),
        ({"GLIDEIN_Max_Walltime": 3600, "GLIDEIN_Job_Max_Time": 1000}, 0.5, 2110 - 105, 3110 - 105, 1000, 105),
        ({"GLIDEIN_Retire_Time": 700}, 0.99, 700 - 69, 129600 + 700 - 69, 129600, 69),
        ({"GLIDEIN_Retire_Time": 610}, 0.99, 600, 129600 + 600, 129600, 10),
    ],
)
def test_lifetime(overrides, fraction, retire, die, job_max, spread):
    lifetime = G.compute_lifetime({**G.DEFAULTS, **overrides}, 1000, fraction)
    assert (lifetime.retire_seconds, lifetime.die_seconds, lifetime.job_max_time, lifetime.spread_seconds) == (
        retire, die, job_max, spread)
    assert (lifetime.to_retire, lifetime.to_die) == (1000 + retire, 1000 + die)


@pytest.mark.parametrize(
    "overrides",
    [{"GLIDEIN_Retire_Time": 599}, {"GLIDEIN_Max_Walltime": 1000}, {"GLIDEIN_Max_Walltime": 100}],
)
def test_lifetime_too_short_fails_validation(overrides):
    with pytest.raises(G.ValidationFailure, match="GLIDEIN_Min_Retire_Time") as failure:
        G.compute_lifetime({**G.DEFAULTS, **overrides}, 0, 0.0)
    assert failure.value.last_script == "lifetime"


# ---- collectors -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "value, allowed",
    [
        ("cm.example:9618", [{"cm.example:9618"}]),
        ("cm1:9618,cm2:9618", [{"cm1:9618", "cm2:9618"}]),
        ("cm1:9618;cm2:9618", [{"cm1:9618"}, {"cm2:9618"}]),
        ("cm:9618?sock=collector1-3", [{"cm:9618?sock=collector1", "cm:9618?sock=collector2",
                                        "cm:9618?sock=collector3"}]),
        ("cm:9620-9622", [{"cm:9620", "cm:9621", "cm:9622"}]),
        (" a:1 , ; b:2 ;", [{"a:1"}, {"b:2"}]),
    ],
)
def test_pick_collectors(value, allowed):
    for seed in range(20):
        chosen = G.pick_collectors(value, random.Random(seed))
        assert len(chosen) == len(allowed)
        assert all(c in options for c, options in zip(chosen, allowed))


@pytest.mark.parametrize("value", ["", " ; , ", "Fake"])
def test_pick_collectors_rejects(value):
    with pytest.raises(G.ValidationFailure, match="names no collector"):
        G.pick_collectors(value, random.Random(0))


@pytest.mark.parametrize(
    "collector, host",
    [("cm.example:9618?sock=collector", "cm.example"), ("cm.example", "cm.example"), ("[::1]:9618", "::1"),
     ("10.0.0.1:9620", "10.0.0.1")],
)
def test_collector_host(collector, host):
    assert G.collector_host(collector) == host


# ---- HTCondor configuration -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "value, literal",
    [
        ("42", "42"), ("-7", "-7"), ("007", "7"), ("1.5", "1.5"), ("true", "True"), ("FALSE", "False"),
        ("SiteA", '"SiteA"'), ("", '""'), ('say "hi"', '"say \\"hi\\""'), ("a\\b", '"a\\\\b"'),
        ("$(Cluster)", '"\\044(Cluster)"'), ("12345678901234567890", '"12345678901234567890"'),
        ("cm:9618?sock=c", '"cm:9618?sock=c"'),
    ],
)
def test_classad_literal(value, literal):
    assert G.classad_literal(value) == literal


def lifetime(to_retire=5000, to_die=9000):
    return G.Lifetime(4000, 8000, 4000, 0, to_retire, to_die)


IDENTITY_CONFIG = {
    "GLIDEIN_UUID": "u-1", "GLIDEIN_Factory": "gfactory_service", "GLIDEIN_Name": "gfactory_instance",
    "GLIDEIN_Entry_Name": "ce1", "GLIDECLIENT_Name": "fe.main", "GLIDECLIENT_Group": "main",
    "GLIDEIN_CredentialIdentifier": "CRED1", "CONDORG_CLUSTER": "12", "CONDORG_SUBCLUSTER": "3",
    "CONDORG_SCHEDD": "schedd_glideins1@factory", "GLIDEIN_WORK_DIR": "/w/glide_1", "SLOTS_LAYOUT": "partitionable",
}


def test_published_attributes():
    config = {**IDENTITY_CONFIG, "GLIDEIN_Site": "SiteA", "GLIDECLIENT_ReqNode": "factory:9618",
              "GLIDEIN_CPUS": "2", "glidein_todie": "1", "OTHER": "x", "GLIDECLIENT_Start": "TARGET.Owner == \"a\""}
    settings, _ = G.effective_settings(config)
    published, warnings = G.published_attributes(config, settings, lifetime(), ["cm:9618", "cm2:9618"])
    assert warnings == []
    assert published["GLIDEIN_Site"] == '"SiteA"'
    assert published["GLIDEIN_CPUS"] == "2"
    assert published["GLIDECLIENT_Name"] == '"fe.main"'
    assert published["GLIDEIN_CredentialIdentifier"] == '"CRED1"'
    assert published["GLIDEIN_Schedd"] == '"schedd_glideins1@factory"'
    assert (published["GLIDEIN_ClusterId"], published["GLIDEIN_ProcId"]) == ("12", "3")
    assert (published["GLIDEIN_ToRetire"], published["GLIDEIN_ToDie"]) == ("5000", "9000")
    assert published["GLIDEIN_COLLECTOR_NAME"] == '"cm:9618, cm2:9618"'
    assert published["GLIDECLIENT_Start"] == 'TARGET.Owner == "a"'  # an expression, not a string
    assert published["GLIDECLIENT_Group_Start"] == "True"
    assert "OTHER" not in published and "CONDORG_CLUSTER" not in published
    assert "glidein_todie" not in published  # computed attributes win, whatever the case


def test_published_attributes_warns_and_rejects():
    settings, _ = G.effective_settings({})
    _, warnings = G.published_attributes(IDENTITY_CONFIG, settings, lifetime(), ["cm"])
    assert [w.split()[0] for w in warnings] == ["GLIDEIN_Site", "GLIDECLIENT_ReqNode"]
    with pytest.raises(G.ValidationFailure, match="GLIDECLIENT_Group_Start"):
        G.published_attributes(IDENTITY_CONFIG, {**settings, "GLIDECLIENT_Group_Start": "x \\"}, lifetime(), ["cm"])


WEIRD_VALUE = 'say "hi" $(FULL_HOSTNAME) $$(X) C:\\dir\\'


def make_setup(**overrides) -> G.CondorSetup:
    config = {**IDENTITY_CONFIG, "GLIDEIN_Site": "SiteA", "GLIDECLIENT_ReqNode": "factory:9618",
              "GLIDECLIENT_Group_Start": 'TARGET.DESIRED_Group =?= "main"', "GLIDEIN_Weird": WEIRD_VALUE}
    settings = {**G.effective_settings(config)[0], "GLIDEIN_CPUS": 4, "GLIDEIN_MaxMemMBs": 3000}
    published, _ = G.published_attributes(config, settings, lifetime(), ["cm.example:9618?sock=collector"])
    values = dict(local_dir="/w/glide_1/condor", token_dir="/w/glide_1/cred.d/idtokens",
                  password_dir="/w/glide_1/cred.d/passwords.d", system_token_dir="/w/glide_1/cred.d/tokens.d",
                  account="gwms", collectors=("cm.example:9618?sock=collector",), trust_domain="cm.example",
                  master_name="glidein_42_7", slots_layout="partitionable", settings=settings,
                  published=published, passthrough={"ALL_DEBUG": "D_FULLDEBUG", "NOT_A_KNOB": "x"},
                  layout={"SBIN": "/usr/sbin", "LIBEXEC": "/usr/libexec/condor"})
    values.update(overrides)
    return G.CondorSetup(**values)


def macros(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, sep, value = line.partition(" =")
            assert sep, line
            assert name not in out, f"{name} set twice"
            out[name] = value.strip()
    return out


def test_condor_config_contents():
    config = macros(G.render_condor_config(make_setup()))
    expected = {
        "LOCAL_CONFIG_DIR": "", "SBIN": "/usr/sbin", "LIBEXEC": "/usr/libexec/condor",
        "LOCAL_DIR": "/w/glide_1/condor", "EXECUTE": "$(LOCAL_DIR)/execute", "STARTD_LOG": "$(LOG)/StartdLog",
        "CONDOR_HOST": "cm.example", "COLLECTOR_HOST": "cm.example:9618?sock=collector",
        "DAEMON_LIST": "MASTER, STARTD", "USE_SHARED_PORT": "False", "UPDATE_COLLECTOR_WITH_TCP": "True",
        "UPDATE_INTERVAL": "370", "MASTER_NAME": "glidein_42_7", "STARTD_NAME": "glidein_42_7",
        "TRUST_DOMAIN": "cm.example", "SEC_TOKEN_DIRECTORY": "/w/glide_1/cred.d/idtokens",
        "SEC_DEFAULT_AUTHENTICATION": "REQUIRED", "SEC_DEFAULT_INTEGRITY": "REQUIRED",
        "SEC_DEFAULT_AUTHENTICATION_METHODS": "IDTOKENS, FS", "SEC_ENABLE_MATCH_PASSWORD_AUTHENTICATION": "True",
        "GLIDEINLAB_ACCOUNT": "gwms@$(UID_DOMAIN)",
        "ALLOW_DAEMON": "$(GLIDEINLAB_ACCOUNT), submit-side@matchsession/*",
        "ALLOW_WRITE": "$(GLIDEINLAB_ACCOUNT), submit-side@matchsession/*",
        "NUM_CPUS": "4", "MEMORY": "3000", "SLOT_TYPE_1": "100%", "SLOT_TYPE_1_PARTITIONABLE": "True",
        "GLIDEIN_ToRetire": "5000", "GLIDEIN_ToDie": "9000", "GLIDEIN_Site": '"SiteA"',
        "GLIDECLIENT_Group_Start": 'TARGET.DESIRED_Group =?= "main"',
        "START": "(GLIDEIN_Start) && (GLIDEIN_Entry_Start) && (GLIDECLIENT_Start) && (GLIDECLIENT_Group_Start)"
                 " && (CurrentTime < GLIDEIN_ToRetire)",
        "STARTD_NOCLAIM_SHUTDOWN": "1200", "STARTD.DAEMON_SHUTDOWN": "CurrentTime > GLIDEIN_ToDie",
        "MASTER.DAEMON_SHUTDOWN": "STARTD_StartTime =?= 0", "SHUTDOWN_GRACEFUL_TIMEOUT": "120",
        "ALL_DEBUG": "D_FULLDEBUG",
    }
    assert {name: config.get(name) for name in expected} == expected
    assert "NOT_A_KNOB" not in config and "CCB_ADDRESS" not in config
    attrs = [a.strip() for a in config["STARTD_ATTRS"].split(",")]
    assert attrs == [a.strip() for a in config["MASTER_ATTRS"].split(",")]
    for name in ("IS_GLIDEIN", "GLIDEIN_Factory", "GLIDEIN_Name", "GLIDEIN_Entry_Name", "GLIDEIN_Site",
                 "GLIDECLIENT_Name", "GLIDECLIENT_Group", "GLIDECLIENT_ReqNode", "GLIDEIN_CredentialIdentifier",
                 "GLIDEIN_Schedd", "GLIDEIN_ClusterId", "GLIDEIN_ProcId", "GLIDEIN_ToRetire", "GLIDEIN_ToDie",
                 "GLIDEIN_MASTER_NAME", "GLIDECLIENT_Start", "GLIDECLIENT_Group_Start"):
        assert name in attrs, name
        assert name in config, name


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"slots_layout": "fixed"}, {"NUM_SLOTS_TYPE_1": "4", "SLOT_TYPE_1": "cpus=1, ram=750",
                                     "SLOT_TYPE_1_PARTITIONABLE": "False"}),
        ({"settings_USE_CCB": True}, {"CCB_ADDRESS": "cm.example:9618?sock=collector"}),
        ({"settings_USE_CCB": True, "passthrough": {"GLIDEIN_CCB": "ccb:9618"}}, {"CCB_ADDRESS": "ccb:9618"}),
        ({"collectors": ("a:1", "b:2"), "trust_domain": "a"}, {"COLLECTOR_HOST": "a:1, b:2", "CONDOR_HOST": "a"}),
    ],
)
def test_condor_config_variants(overrides, expected):
    settings = dict(make_setup().settings)
    fields = {}
    for key, value in overrides.items():
        if key.startswith("settings_"):
            settings[key[len("settings_"):]] = value
        else:
            fields[key] = value
    config = macros(G.render_condor_config(make_setup(settings=settings, **fields)))
    assert {name: config.get(name) for name in expected} == expected


def test_advertise_config_is_client_only():
    config = macros(G.render_advertise_config(make_setup()))
    assert config["COLLECTOR_HOST"] == "cm.example:9618?sock=collector"
    assert config["SEC_TOKEN_DIRECTORY"] == "/w/glide_1/cred.d/idtokens"
    assert config["SEC_CLIENT_AUTHENTICATION_METHODS"] == "IDTOKENS"
    assert "DAEMON_LIST" not in config and "START" not in config


HTCONDOR_CHECK = """
import json, sys
import classad2, htcondor2
names = json.loads(sys.argv[1])
values = {name: htcondor2.param.get(name) for name in names}
slot = classad2.ClassAd({k: classad2.ExprTree(v) for k, v in json.loads(sys.argv[2]).items()})
job = classad2.ClassAd(json.loads(sys.argv[3]))
slot["START"] = classad2.ExprTree(values["START"])
values["START_vs_job"] = bool(classad2.ExprTree("MY.START").eval(slot, job))
print(json.dumps(values, default=str))
"""


@pytest.mark.parametrize("job_group, starts", [("main", True), ("other", False)])
def test_condor_config_parses_with_htcondor(tmp_path, job_group, starts):
    """HTCondor's own config reader takes the file, and START evaluates as intended against a job."""
    pytest.importorskip("htcondor2")
    classad2 = pytest.importorskip("classad2")
    path = tmp_path / "condor_config"
    path.write_text(G.render_condor_config(make_setup()))
    names = ["START", "GLIDEIN_Site", "GLIDEIN_Weird", "GLIDEIN_MASTER_NAME", "NUM_CPUS", "TRUST_DOMAIN", "ALLOW_DAEMON",
             "GLIDEIN_Start", "GLIDECLIENT_Group_Start", "GLIDEIN_ToRetire"]
    slot = {"GLIDEIN_ToRetire": str(2**40), "GLIDEIN_Start": "True", "GLIDEIN_Entry_Start": "True",
            "GLIDECLIENT_Start": "True", "GLIDECLIENT_Group_Start": 'TARGET.DESIRED_Group =?= "main"'}
    env = {"CONDOR_CONFIG": str(path), "PATH": os.environ.get("PATH", "")}
    out = subprocess.run([sys.executable, "-c", HTCONDOR_CHECK, json.dumps(names), json.dumps(slot),
                          json.dumps({"DESIRED_Group": job_group})], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    values = json.loads(out.stdout)
    assert values["GLIDEIN_Site"] == '"SiteA"'
    # quotes, backslashes and $ survive HTCondor's config reader and ClassAd parser unchanged
    assert classad2.ExprTree(values["GLIDEIN_Weird"]).eval() == WEIRD_VALUE
    assert values["NUM_CPUS"] == 4  # htcondor2.param types what it reads
    assert values["TRUST_DOMAIN"] == "cm.example"
    assert values["ALLOW_DAEMON"].endswith(", submit-side@matchsession/*") and "gwms@" in values["ALLOW_DAEMON"]
    assert values["GLIDEIN_MASTER_NAME"].startswith('"glidein_42_7@')
    assert values["START_vs_job"] is starts


def test_failure_ad():
    ad = G.render_failure_ad({"Name": "glidein_1_2@wn", "GLIDEIN_FAILURE_REASON": 'check "x" failed\\',
                              "GLIDEIN_EXIT_CODE": 1, "GLIDEIN_Site": "SiteA"})
    lines = ad.splitlines()
    assert lines[:3] == ['MyType = "DaemonMaster"', "IS_GLIDEIN = True", "GLIDEIN_Failed = True"]
    assert "GLIDEIN_FAILURE_REASON = \"check 'x' failed/\"" in lines
    assert "GLIDEIN_EXIT_CODE = 1" in lines
    classad2 = pytest.importorskip("classad2")
    parsed = classad2.ClassAd("[" + ";".join(lines) + "]")
    assert parsed["GLIDEIN_Failed"] is True and parsed["Name"] == "glidein_1_2@wn"


# ---- after the run -------------------------------------------------------------------------------------------

STARTD_LOG = """\
01/01/25 10:00:00 slot1: New machine resource of type -1 allocated
01/01/25 10:00:05 slot1_1: Got activate_claim request from shadow (10.0.0.1)
01/01/25 10:00:05 slot1_1: Remote job ID is 12.0
01/01/25 10:00:05 slot1_1: State change: claim-activation protocol successful
01/01/25 10:05:00 slot1_1: Got activate_claim request from shadow (10.0.0.1)
01/01/25 10:05:00 slot1_1: Remote job ID is 12.1
01/01/25 10:09:00 slot1_2: Got activate_claim request from shadow (10.0.0.2)
01/01/25 10:09:00 slot1_2: Remote job ID is 12.0
"""


@pytest.mark.parametrize(
    "text, starts, ids",
    [(STARTD_LOG, 3, ("12.0", "12.1")), ("", 0, ()), ("slot1: Changing state: Owner -> Unclaimed\n", 0, ())],
)
def test_job_activity(text, starts, ids):
    assert G.job_activity(text) == G.JobActivity(starts, ids)


@pytest.mark.parametrize(
    "kwargs, reason",
    [
        (dict(failed=True, signal_name="SIGTERM"), "validation"),
        (dict(signal_name="SIGTERM", master_exit_code=0), "signal"),
        (dict(master_exit_code=1), "condor_failure"),
        (dict(master_exit_code=-9), "condor_failure"),
        (dict(master_exit_code=None), "condor_failure"),
        (dict(lifetime=None), "condor_failure"),
        (dict(end_time=9000), "lifetime"),
        (dict(end_time=9000, jobs_started=0), "lifetime"),
        (dict(jobs_started=0), "idle"),
        (dict(jobs_started=0, end_time=6000), "idle"),
        (dict(end_time=6000), "lifetime"),
        (dict(master_exit_code=99), "tail"),
        ({}, "tail"),
    ],
)
def test_stop_reason(kwargs, reason):
    base = dict(failed=False, signal_name=None, master_exit_code=0, end_time=3000, lifetime=lifetime(),
                jobs_started=2)
    assert G.stop_reason(**{**base, **kwargs}) == reason


@pytest.mark.parametrize(
    "received, already, sent",
    [
        (signal.SIGTERM, 0, signal.SIGTERM),
        (signal.SIGHUP, 0, signal.SIGTERM),
        (signal.SIGINT, 0, signal.SIGQUIT),
        (signal.SIGQUIT, 0, signal.SIGQUIT),
        (signal.SIGTERM, 1, signal.SIGQUIT),
        (signal.SIGHUP, 2, signal.SIGQUIT),
    ],
)
def test_signal_to_forward(received, already, sent):
    assert G.signal_to_forward(received, already) == sent


def test_exit_report_round_trip():
    report = {"uuid": "u", "jobs_started": 2, "failure": None, "validation": [{"name": "a", "exit_code": 0}]}
    text = "noise\n" + G.format_exit_report(report) + "more noise\n"
    assert text.count(G.REPORT_BEGIN) == 1 and text.count(G.REPORT_END) == 1
    assert G.parse_exit_report(text) == report
    assert G.parse_exit_report("no report here") is None
    assert G.parse_exit_report(f"{G.REPORT_BEGIN}\n{{broken\n{G.REPORT_END}\n") is None


def test_clean_environment():
    environ = {"PATH": "/bin", "_CONDOR_SCRATCH_DIR": "/s", "_condor_SLOT": "slot1",
               "_CONDOR_ANCESTOR_123": "x", "CONDOR_CONFIG": "/etc/condor/condor_config"}
    # the job's PATH stays first; the sbin directories where condor_master lives are appended
    assert G.clean_environment(environ) == {
        "PATH": "/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin",
        "_CONDOR_ANCESTOR_123": "x", "CONDOR_CONFIG": "/etc/condor/condor_config"}


# ---- download and verify over HTTP --------------------------------------------------------------------------

class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def web(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/www; yields (root dir, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=root))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


ENTRY_SCRIPT = b"#!/bin/sh\necho \"ENTRY_RAN yes\" >> \"$1\"\necho entry check ok\n"
FAIL_SCRIPT = b"#!/bin/sh\necho checking the node\necho 'node is not suitable: no GPU'\nexit 3\n"


SLOW_SCRIPT = (b"#!/bin/sh\n"  # a grandchild that would outlive a script killed alone
               b"sh -c 'echo $$ > \"$FAKE_OUT/pid.tmp\"; mv \"$FAKE_OUT/pid.tmp\" \"$FAKE_OUT/grandchild.pid\"; "
               b"exec sleep 600'\n")


def write_stages(root: Path, base: str, *, fail: bool = False, slow: bool = False,
                 extra_params: dict | None = None) -> list[str]:
    """Four stages as a factory and a frontend would write them; returns the glidein's argv."""
    main = S.write_stage(root / "factory", S.standard_validation_scripts(),
                         executable={"check_condor.sh", "check_disk.sh"},
                         constants={"GLIDEIN_MinDiskMBs": "1", "ORDER": "main", "FROM_MAIN": "m"})
    entry = S.write_stage(root / "factory" / "entry_ce1", {"entry_check.sh": ENTRY_SCRIPT},
                          executable={"entry_check.sh"},
                          constants={"GLIDEIN_Site": "SiteA", "GLIDEIN_CPUS": "2", "GLIDEIN_MaxMemMBs": "1024",
                                     "ORDER": "entry", "GLIDEIN_Factory": "spoofed"})
    client = S.write_stage(root / "frontend", {"vo_data.txt": b"vo data\n"},
                           constants={"ORDER": "client", "GLIDECLIENT_Start": "TARGET.Owner =!= UNDEFINED"})
    group_files = {"must_fail.sh": FAIL_SCRIPT} if fail else {"slow.sh": SLOW_SCRIPT} if slow else {}
    group = S.write_stage(root / "frontend" / "group_main", group_files, executable=set(group_files),
                          constants={"ORDER": "client_group", "GLIDECLIENT_Group_Start": "True"})
    params = {"GLIDEIN_Collector": "127.0.0.1:9618", "GLIDEIN_Failed_Wait": "0", "GLIDEIN_Poll_Interval": "1",
              "GLIDEIN_Download_Retries": "1", "ORDER": "params", **(extra_params or {})}
    return A.build_glidein_arguments(**{
        **ARGS, "web": f"{base}/factory", "sign": main.sign, "descript": main.descript,
        "sign_entry": entry.sign, "descript_entry": entry.descript,
        "client_web": f"{base}/frontend", "client_sign": client.sign, "client_descript": client.descript,
        "client_web_group": f"{base}/frontend/group_main", "client_sign_group": group.sign,
        "client_descript_group": group.descript, "params": params, "cluster": 77, "subcluster": 3})


def tamper(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-2] ^= 0x01  # the last character before the final newline
    path.write_bytes(bytes(data))


def staged(folder: Path, prefix: str) -> Path:
    match, = [p for p in folder.iterdir() if p.is_file() and p.name.startswith(prefix)]
    return match


def test_verify_over_http(web):
    root, base = web
    args = G.parse_arguments(write_stages(root, base))
    stages = []
    for location in G.stage_locations(args):
        fetch = G.http_fetcher(location.url, timeout=10, attempts=1, user_agent="test")
        stages.append(G.verify_stage(fetch, location))
    main, entry, client, group = stages
    assert [name for name, _ in main.file_list] == ["check_condor.sh", "check_disk.sh"]
    assert main.files["check_disk.sh"] == S.standard_validation_scripts()["check_disk.sh"]
    assert entry.location.url == f"{base}/factory/entry_ce1"
    assert entry.file_list == [("entry_check.sh", "exec")] and entry.constants["GLIDEIN_Site"] == "SiteA"
    assert client.file_list == [("vo_data.txt", "regular")] and client.files["vo_data.txt"] == b"vo data\n"
    assert group.file_list == [] and group.constants == {"ORDER": "client_group", "GLIDECLIENT_Group_Start": "True"}
    assert all(stage.warnings == [] for stage in stages)


@pytest.mark.parametrize(
    "folder, prefix, stage_index",
    [
        ("factory", "check_disk.", 0),
        ("factory", "file_list.", 0),
        ("factory", "constants.", 0),
        ("factory", "description.", 0),
        ("factory", "signature.", 0),
        ("factory/entry_ce1", "entry_check.", 1),
        ("frontend", "vo_data.", 2),
        ("frontend/group_main", "constants.", 3),
    ],
)
def test_tampered_byte_fails_with_the_file_and_url(web, folder, prefix, stage_index):
    root, base = web
    args = G.parse_arguments(write_stages(root, base))
    victim = staged(root / folder, prefix)
    tamper(victim)
    location = G.stage_locations(args)[stage_index]
    with pytest.raises(G.ValidationFailure) as failure:
        G.verify_stage(G.http_fetcher(location.url, timeout=10, attempts=1, user_agent="t"), location)
    assert failure.value.reason == f"signature mismatch for {victim.name} from {base}/{folder}"


def test_wrong_trust_root_and_missing_file(web):
    root, base = web
    args = G.parse_arguments(write_stages(root, base))
    location = G.stage_locations(args)[0]
    fetch = G.http_fetcher(location.url, timeout=10, attempts=2, user_agent="t", backoff=0)
    signature = staged(root / "factory", "signature.").name
    with pytest.raises(G.ValidationFailure, match=f"signature mismatch for {re.escape(signature)} from "):
        G.verify_stage(fetch, G.StageLocation("main", location.url, location.descript, "f" * 64, "main"))
    staged(root / "factory", "check_condor.").unlink()
    with pytest.raises(G.DownloadError, match=r"cannot download .*check_condor\.[0-9a-f]{16}\.sh: HTTP 404"):
        G.verify_stage(fetch, location)


def crafted_stage(files: dict[str, bytes], file_list: str, constants: str, rename: dict | None = None):
    """A stage built by hand (consistently signed), to reach what write_stage never produces."""
    staged_files = {G.staged_name(name, hashlib.sha256(data).hexdigest()): data for name, data in files.items()}
    for old, new in (rename or {}).items():
        staged_files[new] = staged_files.pop(old)
    extras = {"file_list.lst": file_list.encode(), "constants.cfg": constants.encode()}
    names = {}
    for logical, data in extras.items():
        names[logical] = G.staged_name(logical, hashlib.sha256(data).hexdigest())
        staged_files[names[logical]] = data
    entries = "".join(f"{hashlib.sha256(d).hexdigest()}  {n}\n" for n, d in staged_files.items())
    description = (f"signature signature.x.sha256\nfile_list {names['file_list.lst']}\n"
                   f"consts_file {names['constants.cfg']}\n").encode()
    signature = (entries + f"{hashlib.sha256(description).hexdigest()}  description.x.cfg\n").encode()
    served = {**staged_files, "description.x.cfg": description, "signature.x.sha256": signature}
    location = G.StageLocation("client", "http://fe/stage", "description.x.cfg",
                               hashlib.sha256(signature).hexdigest(), "client")
    return served.__getitem__, location


def test_crafted_stages():
    fetch, location = crafted_stage({"a.sh": b"a\n"}, "a.sh exec\nb.sh regular\n", "")
    with pytest.raises(G.ValidationFailure, match="names b.sh, which is not signed"):
        G.verify_stage(fetch, location)

    fetch, location = crafted_stage({"a.sh": b"a\n"}, "a.sh wrapper\n", "GOOD 1\nbad-key 2\n")
    stage = G.verify_stage(fetch, location)
    assert stage.file_list == [("a.sh", "regular")] and stage.constants == {"GOOD": "1"}
    assert len(stage.warnings) == 2

    name = G.staged_name("a.sh", hashlib.sha256(b"a\n").hexdigest())
    fetch, location = crafted_stage({"a.sh": b"a\n"}, "", "", rename={name: "a.sh"})
    with pytest.raises(G.ValidationFailure, match="a.sh from http://fe/stage is not named after its content"):
        G.verify_stage(fetch, location)


# ---- whole runs of the program --------------------------------------------------------------------------------

FAKE_MASTER = r"""#!/bin/sh
[ "$1" = -version ] && exit 0
local_dir=$(sed -n 's/^LOCAL_DIR = //p' "$CONDOR_CONFIG")
log="$local_dir/log/StartdLog"
cp "$CONDOR_CONFIG" "$FAKE_OUT/condor_config.started"
env > "$FAKE_OUT/master.env"
case "$FAKE_MASTER_MODE" in
    jobs)
        printf '%s\n' "x slot1_1: Got activate_claim request from shadow (10.0.0.1)" \
            "x slot1_1: Remote job ID is 12.0" "x slot1_1: Got activate_claim request from shadow (10.0.0.1)" \
            "x slot1_1: Remote job ID is 12.1" > "$log"
        echo "x master exiting" > "$local_dir/log/MasterLog"
        exit 0 ;;
    crash)
        exit 4 ;;
    signal)
        trap 'echo TERM > "$FAKE_OUT/received"; exit 0' TERM
        trap 'echo QUIT > "$FAKE_OUT/received"; exit 0' QUIT
        trap 'echo HUP > "$FAKE_OUT/received"; exit 0' HUP
        touch "$FAKE_OUT/ready"
        while :; do sleep 0.1; done ;;
    tail)
        # one job: its sandbox exists for a moment, then the glidein must stop us after GLIDEIN_Max_Tail
        trap 'echo TERM > "$FAKE_OUT/received"; exit 0' TERM
        mkdir -p "$local_dir/execute/dir_123"
        echo "x slot1_1: Got activate_claim request from shadow (10.0.0.1)" > "$log"
        sleep 1
        rm -rf "$local_dir/execute/dir_123"
        date +%s > "$FAKE_OUT/job_ended"
        while :; do sleep 0.1; done ;;
esac
"""
FAKE_TOOLS = {
    "condor_master": FAKE_MASTER,
    "condor_startd": "#!/bin/sh\nexit 0\n",
    "condor_version": "#!/bin/sh\necho '$CondorVersion: 23.9.6 2024-07-24 BuildID: Debian-23.9.6 $'\n",
    "condor_advertise": "#!/bin/sh\necho \"$@\" > \"$FAKE_OUT/advertise.args\"\n"
                        "cp \"$3\" \"$FAKE_OUT/advertise.ad\"\ncp \"$CONDOR_CONFIG\" \"$FAKE_OUT/advertise.config\"\n",
}


@pytest.fixture
def worker(tmp_path):
    """A fake worker node: a job scratch dir with the IDTOKEN, fake HTCondor tools, an output dir."""
    job, bin_dir, out = tmp_path / "job", tmp_path / "bin", tmp_path / "out"
    for folder in (job, bin_dir, out):
        folder.mkdir()
    for name, text in FAKE_TOOLS.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (job / "credential_fe.main_ce1.idtoken").write_text("eyJ.fake.token\n")
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE_OUT": str(out), "_CONDOR_SCRATCH_DIR": str(job),
           "_CONDOR_SLOT": "slot1_1", "HOME": str(tmp_path)}
    return job, out, env


def run_glidein(argv, job: Path, env: dict, mode: str = "jobs") -> tuple[subprocess.CompletedProcess, dict]:
    result = subprocess.run([sys.executable, str(STARTUP), *argv], cwd=job, env={**env, "FAKE_MASTER_MODE": mode},
                            capture_output=True, text=True, timeout=120)
    report = G.parse_exit_report(result.stdout)
    assert report is not None, result.stdout + result.stderr
    return result, report


def test_run_to_the_end(web, worker):
    root, base = web
    job, out, env = worker
    result, report = run_glidein(write_stages(root, base), job, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [(r["stage"], r["name"], r["exit_code"]) for r in report["validation"]] == [
        ("main", "check_condor.sh", 0), ("main", "check_disk.sh", 0), ("entry", "entry_check.sh", 0)]
    assert report["failure"] is None and report["master_exit_code"] == 0
    assert (report["jobs_started"], report["job_ids"]) == (2, ["12.0", "12.1"])
    assert report["stop_reason"] == "tail" and report["exit_code"] == 0
    assert report["identity"]["GLIDEIN_Site"] == "SiteA"
    assert report["identity"]["GLIDEIN_ClusterId"] == "77" and report["identity"]["GLIDEIN_ProcId"] == "3"
    assert report["lifetime"]["to_die"] > report["lifetime"]["to_retire"] > report["start_time"]
    assert "=== tail of MasterLog (1 lines) ===\nx master exiting\n" in result.stderr

    work = Path(report["work_dir"])
    assert work.parent == job and work.name.startswith("glide_")
    config, _ = G.parse_key_values((work / "glidein_config").read_text())
    assert config["ORDER"] == "params" and config["FROM_MAIN"] == "m"
    assert config["GLIDEIN_Factory"] == "gfactory_service"  # the entry's spoof was refused
    assert config["ENTRY_RAN"] == "yes" and config["CONDOR_VERSION"] == "23.9.6"
    assert (work / "client" / "vo_data.txt").read_bytes() == b"vo data\n"
    token = work / "cred.d" / "idtokens" / "credential_fe.main_ce1.idtoken"
    assert token.read_text() == "eyJ.fake.token\n" and token.stat().st_mode & 0o777 == 0o600

    condor = macros((out / "condor_config.started").read_text())
    assert condor["LOCAL_DIR"] == str(work / "condor")
    assert condor["COLLECTOR_HOST"] == "127.0.0.1:9618" and condor["TRUST_DOMAIN"] == "127.0.0.1"
    assert (condor["NUM_CPUS"], condor["MEMORY"]) == ("2", "1024")
    assert condor["GLIDECLIENT_Start"] == "TARGET.Owner =!= UNDEFINED"
    assert condor["SBIN"] == str(Path(env["PATH"].split(":")[0]))
    master_env = (out / "master.env").read_text()
    assert f"CONDOR_CONFIG={work / 'condor_config'}" in master_env and "_CONDOR_SLOT" not in master_env


def test_validation_failure_is_reported_and_advertised(web, worker):
    root, base = web
    job, out, env = worker
    result, report = run_glidein(write_stages(root, base, fail=True), job, env)
    assert result.returncode == 1
    assert [r["name"] for r in report["validation"]] == [
        "check_condor.sh", "check_disk.sh", "entry_check.sh", "must_fail.sh"]
    assert report["validation"][-1]["exit_code"] == 3
    assert report["failure"] == {"reason": "must_fail.sh: node is not suitable: no GPU",
                                 "last_script": "must_fail.sh"}
    assert report["stop_reason"] == "validation" and report["master_exit_code"] is None
    assert not (out / "condor_config.started").exists()
    assert (out / "advertise.args").read_text().split()[:2] == ["-tcp", "UPDATE_MASTER_AD"]
    ad = (out / "advertise.ad").read_text().splitlines()
    assert "GLIDEIN_Failed = True" in ad
    assert 'GLIDEIN_FAILURE_REASON = "must_fail.sh: node is not suitable: no GPU"' in ad
    assert 'GLIDEIN_LAST_SCRIPT = "must_fail.sh"' in ad and 'GLIDEIN_Site = "SiteA"' in ad
    assert macros((out / "advertise.config").read_text())["COLLECTOR_HOST"] == "127.0.0.1:9618"


@pytest.mark.parametrize(
    "breakage, last_script, reason",
    [
        ("tamper", "entry stage", "signature mismatch for entry_check."),
        ("no token", "idtoken", "no *.idtoken next to the glidein"),
        ("no collector", "collector_setup", "GLIDEIN_Collector 'Fake' names no collector"),
        ("short walltime", "lifetime", "the glidein would retire after 210 s"),
    ],
)
def test_other_validation_failures(web, worker, breakage, last_script, reason):
    root, base = web
    job, out, env = worker
    params = {"GLIDEIN_Collector": "Fake"} if breakage == "no collector" else {}
    if breakage == "short walltime":
        params = {"GLIDEIN_Max_Walltime": "700"}
    argv = write_stages(root, base, extra_params=params)
    if breakage == "tamper":
        tamper(staged(root / "factory" / "entry_ce1", "entry_check."))
    if breakage == "no token":
        for token in job.glob("*.idtoken"):
            token.unlink()
    result, report = run_glidein(argv, job, env)
    assert result.returncode == 1
    assert report["failure"]["last_script"] == last_script
    assert report["failure"]["reason"].startswith(reason)
    if breakage == "tamper":
        assert report["validation"] == []  # nothing runs from a stage set that does not verify
        assert report["failure"]["reason"].endswith(f" from {base}/factory/entry_ce1")


def test_condor_failure(web, worker):
    root, base = web
    job, _, env = worker
    result, report = run_glidein(write_stages(root, base), job, env, mode="crash")
    assert result.returncode == 3
    assert report["master_exit_code"] == 4 and report["stop_reason"] == "condor_failure"


def test_bad_arguments_exit_at_once(worker):
    job, _, env = worker
    result = subprocess.run([sys.executable, str(STARTUP), "-v", "std"], cwd=job, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("glidein: bad arguments: missing options:")
    assert len(result.stderr.splitlines()) == 1


def wait_for(path: Path, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.parametrize(
    "sent, received",
    [(signal.SIGTERM, "TERM"), (signal.SIGHUP, "TERM"), (signal.SIGINT, "QUIT"), (signal.SIGQUIT, "QUIT")],
)
def test_signals_are_forwarded_to_condor_master(web, worker, sent, received):
    root, base = web
    job, out, env = worker
    process = subprocess.Popen([sys.executable, str(STARTUP), *write_stages(root, base)], cwd=job,
                               env={**env, "FAKE_MASTER_MODE": "signal"}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    wait_for(out / "ready", process)
    process.send_signal(sent)
    stdout, stderr = process.communicate(timeout=60)
    report = G.parse_exit_report(stdout)
    assert process.returncode == 0, stdout + stderr
    assert (out / "received").read_text().strip() == received
    assert report["stop_reason"] == "signal" and report["signal"] == signal.Signals(sent).name


def test_after_its_jobs_the_glidein_stops_the_master_once_the_tail_has_passed(web, worker):
    root, base = web
    job, out, env = worker
    argv = write_stages(root, base, extra_params={"GLIDEIN_Max_Idle": "77", "GLIDEIN_Max_Tail": "3",
                                                  "GLIDEIN_Poll_Interval": "1"})
    result, report = run_glidein(argv, job, env, mode="tail")
    assert result.returncode == 0, result.stdout + result.stderr
    # the startd's own limit stays GLIDEIN_Max_Idle (never claimed); the tail is the glidein's watch
    assert macros((out / "condor_config.started").read_text())["STARTD_NOCLAIM_SHUTDOWN"] == "77"
    assert (out / "received").read_text().strip() == "TERM"
    assert report["jobs_started"] == 1 and report["stop_reason"] == "tail"
    assert "no job for GLIDEIN_Max_Tail 3 s after the last one; shutting down" in result.stdout
    waited = report["end_time"] - int((out / "job_ended").read_text())
    assert 3 <= waited <= 3 + 2 + 2  # the tail, plus at most a poll and a second of rounding


def test_a_glidein_no_job_claims_stops_after_the_idle_limit(web, worker):
    root, base = web
    job, out, env = worker
    argv = write_stages(root, base, extra_params={"GLIDEIN_Max_Idle": "2", "GLIDEIN_Max_Tail": "30",
                                                  "GLIDEIN_Poll_Interval": "1"})
    result, report = run_glidein(argv, job, env, mode="signal")  # a master that waits to be told
    assert result.returncode == 0, result.stdout + result.stderr
    assert (out / "received").read_text().strip() == "TERM"
    assert "no job for GLIDEIN_Max_Idle 2 s ever; shutting down" in result.stdout
    assert report["jobs_started"] == 0 and report["stop_reason"] == "idle"


def test_a_signal_ends_the_failed_wait(web, worker):
    root, base = web
    job, out, env = worker
    argv = write_stages(root, base, fail=True, extra_params={"GLIDEIN_Failed_Wait": "600"})
    stdout_path = out / "glidein.out"
    with stdout_path.open("w") as stdout:
        process = subprocess.Popen([sys.executable, str(STARTUP), *argv], cwd=job, env=env, stdout=stdout,
                                   stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while "waiting 600 s before exiting" not in stdout_path.read_text():
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 1
    report = G.parse_exit_report(stdout_path.read_text())
    assert report["stop_reason"] == "validation" and report["signal"] == "SIGTERM"


def test_a_signal_during_validation_stops_the_script_and_the_glidein(web, worker):
    root, base = web
    job, out, env = worker
    process = subprocess.Popen([sys.executable, str(STARTUP), *write_stages(root, base, slow=True)], cwd=job,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(out / "grandchild.pid", process)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 4, stdout + stderr
    report = G.parse_exit_report(stdout)
    assert report["stop_reason"] == "signal" and report["signal"] == "SIGINT"
    assert report["master_exit_code"] is None and not (out / "condor_config.started").exists()
    assert_gone(out / "grandchild.pid")


def test_a_script_past_its_timeout_fails_validation(web, worker):
    root, base = web
    job, out, env = worker
    argv = write_stages(root, base, slow=True, extra_params={"GLIDEIN_Script_Timeout": "1"})
    result, report = run_glidein(argv, job, env)
    assert result.returncode == 1
    assert report["failure"] == {"reason": "slow.sh: timed out after 1 s", "last_script": "slow.sh"}
    assert report["validation"][-1]["exit_code"] is None
    assert_gone(out / "grandchild.pid")


def assert_gone(pid_file: Path) -> None:
    status = Path(f"/proc/{pid_file.read_text().strip()}/status")
    deadline = time.monotonic() + 30
    while status.exists() and "\tZ" not in _read(status):  # gone, or a zombie awaiting its reaper
        assert time.monotonic() < deadline, "the script's children must die with it"
        time.sleep(0.05)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def test_work_dir_outside_the_scratch_dir_is_removed(web, worker, tmp_path):
    root, base = web
    job, _, env = worker
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    argv = write_stages(root, base) + ["-dir", "TMPDIR"]
    result, report = run_glidein(argv, job, {**env, "TMPDIR": str(elsewhere)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert Path(report["work_dir"]).parent == elsewhere
    assert list(elsewhere.iterdir()) == []
