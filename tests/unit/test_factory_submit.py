"""The glidein's submit description, and what the factory daemon reports about held glideins."""

from __future__ import annotations

from pathlib import Path

import pytest

from glideinlab.factory.config import parse_factory_config
from glideinlab.factory.daemon import _held_reason, held_reasons
from glideinlab.factory.policy import Submission
from glideinlab.factory.submit import StageRef, client_paths, glidein_params, submit_description
from glideinlab.protocol.ads import ClientRequest
from glideinlab.protocol.glidein_args import parse_glidein_arguments
from glideinlab.workspace.components import factory_config
from glideinlab.workspace.spec import WorkspaceSpec

CONFIG = parse_factory_config(factory_config(WorkspaceSpec.create(name="t")), "factory.yaml")
ENTRY = CONFIG.entry("ce-workspace-siteb")
MAIN = StageRef("http://factory:8000/stage", "description.aaaa.cfg", "a" * 64)
ENTRY_STAGE = StageRef("http://factory:8000/stage/entry_ce-workspace-siteb", "description.bbbb.cfg", "b" * 64)
REQUEST = ClientRequest(
    name="CRED1234_ce-workspace-siteb@gfactory_instance@gfactory_service@vofrontend_service.main",
    entry_name=ENTRY.name, req_name="ce-workspace-siteb@gfactory_instance@gfactory_service",
    client_name="vofrontend_service.main", frontend_name="vofrontend_service", group_name="main",
    authenticated_identity="vofrontend_service@factory-workspace.glideinwms.org",
    security_name="vofrontend_service", security_class="frontend", idle_glideins=3, max_glideins=5,
    remove_excess="NO", remove_excess_margin=0, idle_lifetime=0, requests={},
    web={"URL": "http://fe:8000/stage", "DescriptFile": "description.cccc.cfg", "DescriptSign": "c" * 64,
         "GroupURL": "http://fe:8000/stage/group_main", "GroupDescriptFile": "description.dddd.cfg",
         "GroupDescriptSign": "d" * 64},
    params={"GLIDEIN_Collector": "frontend-workspace.glideinwms.org:9618", "GLIDEIN_Max_Idle": "60"},
    params_decrypted={}, monitor={}, internals={})


def _describe(**overrides):
    sub = Submission("vofrontend_service.main", "vofrontend_service:frontend", "CRED1234", 3,
                     overrides.pop("idle_lifetime", 0))
    paths = client_paths(CONFIG, "gfactory", ENTRY)
    kw = dict(config=CONFIG, entry=ENTRY, request=REQUEST, submission=sub, main_stage=MAIN,
              entry_stage=ENTRY_STAGE, executable=Path("/w/glidein_startup.py"), paths=paths,
              schedd_name="schedd_glideins1@factory-workspace.glideinwms.org",
              scitoken_file=paths.scitoken(REQUEST.client_name, ENTRY.name),
              idtoken_file=paths.idtoken(REQUEST.client_name, ENTRY.name), now=1_800_000_000)
    kw.update(overrides)
    return submit_description(**kw)


def test_a_glidein_is_a_condor_c_job_to_the_entry_gatekeeper_with_its_tokens():
    desc = _describe()
    assert desc["universe"] == "grid"
    assert desc["grid_resource"] == ("condor ce-workspace.glideinwms.org ce-workspace.glideinwms.org:9619")
    assert desc["scitokens_file"].endswith("credential_vofrontend_service.main_ce-workspace-siteb.scitoken")
    assert desc["transfer_input_files"] == desc["encrypt_input_files"]
    assert desc["transfer_input_files"].endswith(".idtoken")
    assert desc["+xcount"] == "1" and desc["+maxMemory"] == "1024"


@pytest.mark.parametrize("attr, value", [
    ("+GlideinFactory", '"gfactory_service"'), ("+GlideinName", '"gfactory_instance"'),
    ("+GlideinEntryName", '"ce-workspace-siteb"'), ("+GlideinClient", '"vofrontend_service.main"'),
    ("+GlideinFrontendName", '"vofrontend_service:frontend"'), ("+GlideinCredentialIdentifier", '"CRED1234"'),
    ("+GlideinSecurityClass", '"frontend"'),
])
def test_glideins_carry_upstreams_tags(attr, value):
    assert _describe()[attr] == value


def test_arguments_carry_the_roots_of_trust_and_the_frontend_params():
    args = parse_glidein_arguments(_describe()["arguments"].split())
    assert (args["sign"], args["sign_entry"]) == ("a" * 64, "b" * 64)
    assert (args["client_sign"], args["client_sign_group"]) == ("c" * 64, "d" * 64)
    assert args["client_web_group"] == "http://fe:8000/stage/group_main"
    assert args["entry_name"] == "ce-workspace-siteb" and args["client_group"] == "main"
    # the frontend's parameters override the factory's ("Fake") collector
    assert args["params"]["GLIDEIN_Collector"] == "frontend-workspace.glideinwms.org:9618"
    assert args["params"]["GLIDEIN_Max_Idle"] == "60"


def test_glidein_params_let_the_frontend_override_the_factory():
    params = glidein_params(ENTRY, {"GLIDEIN_Collector": "fe:9618"})
    assert params["GLIDEIN_Collector"] == "fe:9618"


@pytest.mark.parametrize("idle_lifetime, expect", [(0, False), (600, True)])
def test_idle_lifetime_becomes_a_periodic_remove(idle_lifetime, expect):
    remove = _describe(idle_lifetime=idle_lifetime).get("periodic_remove", "")
    assert ("JobStatus == 1" in remove and "600" in remove) is expect
    assert "JobStatus == 2" in remove  # a walltime is configured, so stuck running glideins go too


def test_without_an_idtoken_nothing_is_transferred():
    desc = _describe(idtoken_file=None)
    assert "transfer_input_files" not in desc and "encrypt_input_files" not in desc


@pytest.mark.parametrize("jobs, expect", [
    ([], {}),
    ([{"JobStatus": 1, "GlideinClient": "a"}], {}),
    ([{"JobStatus": 5, "GlideinClient": "a", "HoldReason": "old", "EnteredCurrentStatus": 10},
      {"JobStatus": 5, "GlideinClient": "a", "HoldReason": "new", "EnteredCurrentStatus": 20},
      {"JobStatus": 5, "GlideinClient": "b", "HoldReason": "AUTHENTICATE:1003", "EnteredCurrentStatus": 5}],
     {"a": "new", "b": "AUTHENTICATE:1003"}),
])
def test_held_reasons_are_the_newest_per_client(jobs, expect):
    assert held_reasons(jobs) == expect


def test_held_reason_is_published_only_when_there_is_one():
    assert _held_reason(["", ""]) == {}
    assert _held_reason(["", "x" * 900]) == {"HeldReason": "x" * 500}
