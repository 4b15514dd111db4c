"""Tests for glideinlab.workspace.compose: the compose file and the ports override, as written to disk."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from glideinlab.workspace import compose
from glideinlab.workspace.images import ImageSet, package_dir
from glideinlab.workspace.spec import WorkspaceSpec

STATE = Path("/state/ws")


def _rendered(tmp_path: Path, **options) -> tuple[WorkspaceSpec, dict]:
    """Render and write the compose file, then read it back as any compose tool would."""
    spec = WorkspaceSpec.create(**options)
    images = ImageSet("glideinlab", spec.suite)
    path = compose.write(compose.render_compose(spec, images, STATE), tmp_path / "compose.yml")
    return spec, yaml.safe_load(path.read_text())


@pytest.mark.parametrize("workers", [1, 3])
def test_services_are_the_nodes(tmp_path, workers):
    spec, data = _rendered(tmp_path, workers=workers)
    assert list(data["services"]) == [n.service for n in spec.nodes]


def test_format_is_2_4_as_a_string(tmp_path):
    _, data = _rendered(tmp_path)
    assert data["version"] == "2.4"  # a float 2.4 would be rejected by compose v1


def test_file_starts_with_the_do_not_edit_header(tmp_path):
    _rendered(tmp_path)
    assert (tmp_path / "compose.yml").read_text().startswith("# Rendered by glideinlab")


@pytest.mark.parametrize(
    "service, hostname",
    [("ce-workspace", "ce-workspace.glideinwms.org"), ("factory-workspace", "factory-workspace.glideinwms.org"),
     ("frontend-workspace", "frontend-workspace.glideinwms.org"), ("worker-2", "worker-2.glideinwms.org")],
)
def test_hostname_and_network_alias_are_the_fqdn(tmp_path, service, hostname):
    _, data = _rendered(tmp_path, workers=2)
    svc = data["services"][service]
    assert svc["hostname"] == hostname
    assert svc["networks"] == {"gwms": {"aliases": [hostname]}}


@pytest.mark.parametrize(
    "service, role", [("ce-workspace", "ce"), ("factory-workspace", "factory"),
                      ("frontend-workspace", "frontend"), ("worker-1", "worker")],
)
def test_labels_carry_workspace_node_and_role(tmp_path, service, role):
    _, data = _rendered(tmp_path, name="lab7")
    assert data["services"][service]["labels"] == {
        "org.glideinlab.workspace": "lab7", "org.glideinlab.node": service, "org.glideinlab.role": role}


def test_network_is_a_labelled_bridge(tmp_path):
    _, data = _rendered(tmp_path, name="lab7")
    assert data["networks"] == {"gwms": {"driver": "bridge", "labels": {"org.glideinlab.workspace": "lab7"}}}


@pytest.mark.parametrize("key", ["privileged", "container_name", "ports", "network_mode", "pid", "cap_add"])
def test_no_service_uses_a_forbidden_or_host_wide_key(tmp_path, key):
    _, data = _rendered(tmp_path, workers=2)
    for name, svc in data["services"].items():
        assert key not in svc, name


@pytest.mark.parametrize("htcondor, suite", [("23", "trixie"), ("25", "sid")])
def test_image_is_the_role_image_of_the_suite(tmp_path, htcondor, suite):
    _, data = _rendered(tmp_path, htcondor=htcondor)
    assert data["services"]["worker-1"]["image"] == f"glideinlab/worker:{suite}"
    assert data["services"]["ce-workspace"]["image"] == f"glideinlab/ce:{suite}"


def test_every_service_has_the_node_healthcheck(tmp_path):
    _, data = _rendered(tmp_path, workers=2)
    for name, svc in data["services"].items():
        check = svc["healthcheck"]
        assert check["test"] == ["CMD", "python3", "-m", "glideinlab.node", "health"], name
        assert {"interval", "timeout", "retries", "start_period"} <= set(check), name


@pytest.mark.parametrize(
    "code_mount, expected_extra",
    [(True, [f"{package_dir()}:/usr/lib/python3/dist-packages/glideinlab:ro"]), (False, [])],
)
def test_volumes_mount_the_node_dir_read_only_and_the_code_only_when_asked(tmp_path, code_mount, expected_extra):
    spec, data = _rendered(tmp_path, workers=2, code_mount=code_mount)
    for node in spec.nodes:
        assert data["services"][node.service]["volumes"] == (
            [f"{STATE / 'nodes' / node.service}:/etc/glideinlab:ro"] + expected_extra)


def test_workers_wait_for_the_ce(tmp_path):
    spec, data = _rendered(tmp_path, workers=2)
    for node in spec.nodes:
        depends = data["services"][node.service].get("depends_on")
        if node.role == "worker":
            assert depends == {"ce-workspace": {"condition": "service_started"}}
        else:
            assert depends is None, node.service


def test_two_workspaces_differ_only_in_labels_and_mounts(tmp_path):
    # no name inside the file may collide between workspaces: compose derives names from the project
    _, a = _rendered(tmp_path / "a", name="one")
    _, b = _rendered(tmp_path / "b", name="two")
    for data in (a, b):
        for svc in data["services"].values():
            svc.pop("labels")
        data["networks"]["gwms"].pop("labels")
    assert a == b


# -- the ports override ----------------------------------------------------------------------------
PREFIX = {"ce-workspace": 2, "factory-workspace": 3, "frontend-workspace": 4}


def _ports(tmp_path: Path) -> dict:
    spec = WorkspaceSpec.create(publish_ports=True)
    path = compose.write(compose.render_ports(spec), tmp_path / "compose.ports.yml")
    return yaml.safe_load(path.read_text())


def test_ports_override_is_format_2_4_and_only_publishes(tmp_path):
    data = _ports(tmp_path)
    assert data["version"] == "2.4"
    assert set(data["services"]) == set(PREFIX)
    for svc in data["services"].values():
        assert set(svc) == {"ports"}


@pytest.mark.parametrize(
    "service, inner_ports",
    [("ce-workspace", {9619, 9618}), ("factory-workspace", {9618, 8000}),
     ("frontend-workspace", {9618, 8000, 8443})],
)
def test_ports_are_on_loopback_with_the_2xxxx_3xxxx_4xxxx_convention(tmp_path, service, inner_ports):
    published = _ports(tmp_path)["services"][service]["ports"]
    inners = set()
    for entry in published:
        address, host, inner = entry.split(":")
        assert address == "127.0.0.1", entry
        assert int(host) == PREFIX[service] * 10000 + int(inner), entry
        inners.add(int(inner))
    assert inners == inner_ports


def test_host_ports_are_unique(tmp_path):
    data = _ports(tmp_path)
    hosts = [entry.split(":")[1] for svc in data["services"].values() for entry in svc["ports"]]
    assert len(hosts) == len(set(hosts)) == 7
