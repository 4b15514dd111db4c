"""Tests for glideinlab.workspace.spec: defaults, validation, node naming, entries, persistence."""

from __future__ import annotations

import dataclasses

import pytest

from glideinlab.defaults import workspace as D
from glideinlab.errors import ConfigError, UserError
from glideinlab.workspace.spec import ROLE_DAEMONS, ROLE_SERVICES, Entry, WorkspaceSpec

FIXED_NODES = (
    ("ce-workspace", "ce"),
    ("factory-workspace", "factory"),
    ("frontend-workspace", "frontend"),
)


# -- defaults --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "field, expected",
    [
        ("name", "default"),
        ("workers", 1),
        ("htcondor", "23"),
        ("profile", "fast"),
        ("domain", "glideinwms.org"),
        ("worker_cpus", 2),
        ("worker_memory", 2048),
        ("publish_ports", False),
        ("up_timeout", 300),
        ("code_mount", True),
    ],
)
def test_create_without_options_uses_the_documented_defaults(field, expected):
    assert getattr(WorkspaceSpec.create(), field) == expected


@pytest.mark.parametrize("knob", list(D.WORKSPACE), ids=lambda k: k.name)
def test_dataclass_field_defaults_agree_with_the_workspace_knobs(knob):
    # the dataclass repeats the knob defaults; a drift would make `WorkspaceSpec()` differ from `create()`
    fields = {f.name: f for f in dataclasses.fields(WorkspaceSpec)}
    assert fields[knob.name].default == knob.default


def test_every_spec_field_except_entries_is_a_knob():
    knob_names = {k.name for k in D.WORKSPACE}
    assert {f.name for f in dataclasses.fields(WorkspaceSpec)} - knob_names == {"entries"}


@pytest.mark.parametrize(
    "htcondor, suite", [("23", "trixie"), ("25", "sid")]
)
def test_htcondor_line_selects_the_debian_suite(htcondor, suite):
    assert WorkspaceSpec.create(htcondor=htcondor).suite == suite


@pytest.mark.parametrize("name", ["default", "a", "ws-2", "a" * 31])
def test_project_is_prefixed_with_glideinlab(name):
    spec = WorkspaceSpec.create(name=name)
    assert spec.project == f"glideinlab-{name}"


def test_none_options_mean_default():
    assert WorkspaceSpec.create(name=None, workers=None, profile=None) == WorkspaceSpec.create()


# -- validation ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "options, field, reason_parts",
    [
        ({"name": "Upper"}, "name", ["'Upper'", "must match"]),
        ({"name": "1abc"}, "name", ["'1abc'"]),
        ({"name": "a_b"}, "name", ["'a_b'"]),
        ({"name": "a.b"}, "name", ["'a.b'"]),
        ({"name": "a b"}, "name", ["'a b'"]),
        ({"name": ""}, "name", ["''"]),
        ({"name": "a" * 32}, "name", ["must match"]),
        ({"workers": 0}, "workers", ["between 1 and 64", "got 0"]),
        ({"workers": 65}, "workers", ["between 1 and 64", "got 65"]),
        ({"workers": -1}, "workers", ["must not be negative"]),
        ({"workers": "3"}, "workers", ["expected int", "'3'"]),
        ({"htcondor": "24"}, "htcondor", ["'24'", "23, 25"]),
        ({"htcondor": 9}, "htcondor", ["'9'", "23, 25"]),
        ({"profile": "slow"}, "profile", ["'slow'", "fast, production"]),
        ({"worker_cpus": 0}, "worker_cpus/worker_memory", ["1 core"]),
        ({"worker_memory": 255}, "worker_cpus/worker_memory", ["256 MB"]),
        ({"publish_ports": "yes"}, "publish_ports", ["true or false"]),
        ({"bogus": 1}, "bogus", ["unknown setting", "workers"]),
    ],
)
def test_invalid_options_raise_a_config_error_naming_the_field(options, field, reason_parts):
    with pytest.raises(ConfigError) as info:
        WorkspaceSpec.create(**options)
    err = info.value
    assert err.field == field
    assert err.where == "options"
    for part in reason_parts:
        assert part in err.reason
    assert "\n" not in str(err)


@pytest.mark.parametrize("workers", [1, 2, 64])
def test_worker_bounds_are_inclusive(workers):
    assert WorkspaceSpec.create(workers=workers).workers == workers


def test_name_with_trailing_newline_is_rejected():
    with pytest.raises(ConfigError):
        WorkspaceSpec.create(name="abc\n")


# -- nodes -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("workers", [1, 3, 64])
def test_nodes_are_the_three_fixed_nodes_then_the_workers(workers):
    spec = WorkspaceSpec.create(workers=workers)
    got = [(n.service, n.role) for n in spec.nodes]
    expected = list(FIXED_NODES) + [(f"worker-{i}", "worker") for i in range(1, workers + 1)]
    assert got == expected
    assert len({n.service for n in spec.nodes}) == 3 + workers


@pytest.mark.parametrize(
    "domain, service, fqdn",
    [
        ("glideinwms.org", "ce-workspace", "ce-workspace.glideinwms.org"),
        ("glideinwms.org", "worker-2", "worker-2.glideinwms.org"),
        ("lab.example", "frontend-workspace", "frontend-workspace.lab.example"),
        ("lab.example", "worker-3", "worker-3.lab.example"),
    ],
)
def test_every_node_fqdn_is_service_dot_domain(domain, service, fqdn):
    spec = WorkspaceSpec.create(workers=3, domain=domain)
    assert spec.node(service).fqdn == fqdn
    assert spec.fqdn(service) == fqdn


@pytest.mark.parametrize(
    "role, expected",
    [("ce", ["ce-workspace"]), ("factory", ["factory-workspace"]), ("frontend", ["frontend-workspace"]),
     ("worker", ["worker-1", "worker-2"])],
)
def test_nodes_of_role(role, expected):
    spec = WorkspaceSpec.create(workers=2)
    assert [n.service for n in spec.nodes_of(role)] == expected


@pytest.mark.parametrize(
    "service, instances, services",
    [
        ("ce-workspace", {"ce": ("COLLECTOR", "SCHEDD", "JOB_ROUTER"),
                          "pool": ("COLLECTOR", "NEGOTIATOR", "SCHEDD")}, ()),
        ("factory-workspace", {"pool": ("COLLECTOR", "SCHEDD")}, ("factory", "stage-http")),
        ("frontend-workspace", {"pool": ("COLLECTOR", "NEGOTIATOR", "SCHEDD")},
         ("frontend", "stage-http", "issuer")),
        ("worker-1", {"pool": ("STARTD",)}, ()),
    ],
)
def test_node_instances_and_services_follow_its_role(service, instances, services):
    node = WorkspaceSpec.create().node(service)
    assert node.instances == instances
    assert node.services == services


def test_every_role_has_daemons_and_services():
    assert set(ROLE_DAEMONS) == set(ROLE_SERVICES) == {"ce", "factory", "frontend", "worker"}


@pytest.mark.parametrize("service", ["worker-3", "ce", "nope"])
def test_unknown_node_is_a_user_error_listing_the_nodes(service):
    spec = WorkspaceSpec.create(workers=2)
    with pytest.raises(UserError) as info:
        spec.node(service)
    message = str(info.value)
    assert repr(service) in message
    for node in spec.nodes:
        assert node.service in message


# -- entries ---------------------------------------------------------------------------------------
def test_default_entries_are_two_sites_on_the_one_ce():
    entries = WorkspaceSpec.create().entries
    assert entries == (
        Entry("ce-workspace", "SiteA", "ce-workspace", 1, 1024),
        Entry("ce-workspace-siteb", "SiteB", "ce-workspace", 1, 1024),
    )
    assert {e.ce for e in entries} == {n.service for n in WorkspaceSpec.create().nodes_of("ce")}


def test_given_entries_replace_the_defaults():
    mine = [Entry("big", "SiteC", "ce-workspace", cpus=8, memory=16000)]
    spec = WorkspaceSpec.create(entries=mine)
    assert spec.entries == (Entry("big", "SiteC", "ce-workspace", 8, 16000),)


def test_with_default_entries_keeps_every_other_field():
    spec = WorkspaceSpec(name="x", workers=5, profile="production", entries=())
    filled = spec.with_default_entries()
    assert len(filled.entries) == 2
    assert dataclasses.replace(filled, entries=()) == spec


# -- persistence -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"name": "ws2", "workers": 4, "htcondor": "25", "profile": "production", "publish_ports": True,
         "code_mount": False, "worker_cpus": 8, "worker_memory": 8192, "domain": "lab.example"},
        {"entries": [Entry("only", "SiteZ", "ce-workspace", cpus=4, memory=4096)]},
    ],
)
def test_to_dict_from_dict_round_trip(options):
    spec = WorkspaceSpec.create(**options)
    data = spec.to_dict()
    assert all(isinstance(e, dict) for e in data["entries"])
    again = WorkspaceSpec.from_dict(data)
    assert again == spec
    assert again.entries and all(isinstance(e, Entry) for e in again.entries)


def test_to_dict_is_json_shaped():
    import json

    data = WorkspaceSpec.create(workers=2).to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["entries"][1] == {"name": "ce-workspace-siteb", "site": "SiteB", "ce": "ce-workspace",
                                  "cpus": 1, "memory": 1024}
