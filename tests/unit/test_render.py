"""Tests for glideinlab.workspace.render: each node directory gets its configs and exactly its share of the
trust, and re-rendering touches only what changed."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import yaml

from glideinlab.workspace.render import render_workspace, supervisor_programs
from glideinlab.workspace.spec import WorkspaceSpec
from glideinlab.workspace.trust import POOLS, Trust

SPEC = WorkspaceSpec.create(workers=2)
OLD = 1_000_000_000  # an mtime no rendering can produce by accident

COMMON_SECRETS = {"ca.crt", "host.crt", "host.key"}
SECRETS = {
    "ce-workspace": COMMON_SECRETS | {"condor/passwords.d/POOL"},
    "factory-workspace": COMMON_SECRETS | {"condor/passwords.d/POOL", "users/gfactory/tokens.d/factory-at-wms"},
    "frontend-workspace": COMMON_SECRETS | {
        "condor/passwords.d/POOL",
        "condor/passwords.d/FRONTEND",
        "users/frontend/tokens.d/frontend-at-wms",
        "users/frontend/tokens.d/frontend-at-userpool",
        "users/frontend/passwords.d/FRONTEND",
        "users/frontend/issuer/issuer.pem",
    },
    "worker-1": COMMON_SECRETS | {"condor/tokens.d/worker"},
    "worker-2": COMMON_SECRETS | {"condor/tokens.d/worker"},
}
# secrets file in a node dir -> the trust file it must be a copy of (None: per node, checked elsewhere)
SECRET_SOURCES = {
    "condor/passwords.d/POOL": lambda t, node: t.signing_key(node),
    "condor/tokens.d/worker": lambda t, node: t.token("worker-at-cepool"),
    "users/gfactory/tokens.d/factory-at-wms": lambda t, node: t.token("factory-at-wms"),
    "users/frontend/tokens.d/frontend-at-wms": lambda t, node: t.token("frontend-at-wms"),
    "users/frontend/tokens.d/frontend-at-userpool": lambda t, node: t.token("frontend-at-userpool"),
    "condor/passwords.d/FRONTEND": lambda t, node: t.glidein_signing_key,
    "users/frontend/passwords.d/FRONTEND": lambda t, node: t.glidein_signing_key,
    "users/frontend/issuer/issuer.pem": lambda t, node: t.issuer_key,
    "ca.crt": lambda t, node: t.ca_cert,
    "host.crt": lambda t, node: t.host_cert(SPEC.fqdn(node)),
    "host.key": lambda t, node: t.host_key(SPEC.fqdn(node)),
}
CONFIG_FILES = {
    "ce-workspace": {"condor/config.d/00-base.conf", "condor/config.d/10-security.conf",
                     "condor/config.d/20-site-pool.conf", "condor/config.d/90-timing.conf",
                     "condor-ce/config.d/00-base.conf", "condor-ce/config.d/10-security.conf",
                     "condor-ce/config.d/20-router.conf", "condor-ce/config.d/90-timing.conf",
                     "condor-ce/condor_mapfile",
                     "supervisor/10-condor-ce.conf", "supervisor/10-condor.conf"},
    "factory-workspace": {"condor/config.d/00-base.conf", "condor/config.d/10-security.conf",
                          "condor/config.d/20-wms.conf", "condor/config.d/90-timing.conf",
                          "supervisor/10-condor.conf", "supervisor/20-factory.conf",
                          "supervisor/20-stage-http.conf", "components/factory.yaml"},
    "frontend-workspace": {"condor/config.d/00-base.conf", "condor/config.d/10-security.conf",
                           "condor/config.d/20-user-pool.conf", "condor/config.d/90-timing.conf",
                           "supervisor/10-condor.conf", "supervisor/20-frontend.conf",
                           "supervisor/20-stage-http.conf", "supervisor/20-issuer.conf",
                           "components/frontend.yaml", "components/issuer.yaml"},
    "worker-1": {"condor/config.d/00-base.conf", "condor/config.d/10-security.conf",
                 "condor/config.d/20-worker.conf", "condor/config.d/90-timing.conf", "supervisor/10-condor.conf"},
}


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def trust(tmp_path_factory) -> Trust:
    made = Trust(tmp_path_factory.mktemp("trust") / "secrets", SPEC)
    made.ensure()
    return made


@pytest.fixture
def state(tmp_path, trust) -> Path:
    render_workspace(SPEC, tmp_path, trust)
    return tmp_path


def _age(root: Path) -> None:
    for p in root.rglob("*"):
        if p.is_file():
            os.utime(p, (OLD, OLD))


def _mtimes(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.stat().st_mtime for p in root.rglob("*") if p.is_file()}


# -- layout ----------------------------------------------------------------------------------------
def test_one_directory_per_node(state):
    assert sorted(p.name for p in (state / "nodes").iterdir()) == sorted(n.service for n in SPEC.nodes)


@pytest.mark.parametrize("service", sorted(SECRETS))
def test_node_gets_exactly_its_share_of_secrets(state, service):
    assert _files(state / "nodes" / service / "secrets") == SECRETS[service]


@pytest.mark.parametrize("service", sorted(CONFIG_FILES))
def test_node_gets_its_configs(state, service):
    node_dir = state / "nodes" / service
    assert _files(node_dir) - {f"secrets/{s}" for s in SECRETS[service]} == CONFIG_FILES[service] | {"node.json"}


@pytest.mark.parametrize("service", sorted(SECRETS))
def test_each_secret_is_a_copy_of_the_right_trust_file(state, trust, service):
    secrets = state / "nodes" / service / "secrets"
    for rel in SECRETS[service]:
        source = SECRET_SOURCES[rel](trust, service)
        assert (secrets / rel).read_bytes() == source.read_bytes(), rel


@pytest.mark.parametrize("service", sorted(SECRETS))
def test_secret_modes_keys_private_certs_readable(state, service):
    secrets = state / "nodes" / service / "secrets"
    for rel in SECRETS[service]:
        mode = stat.S_IMODE((secrets / rel).stat().st_mode)
        assert mode == (0o644 if rel.endswith(".crt") else 0o600), rel


def _nodes_holding(state: Path, secret: bytes) -> set[str]:
    holders = set()
    for node_dir in (state / "nodes").iterdir():
        if any(p.read_bytes() == secret for p in node_dir.rglob("*") if p.is_file()):
            holders.add(node_dir.name)
    return holders


def test_no_node_holds_the_ca_key(state, trust):
    assert _nodes_holding(state, trust.ca_key.read_bytes()) == set()


def test_only_the_frontend_holds_the_issuer_key(state, trust):
    assert _nodes_holding(state, trust.issuer_key.read_bytes()) == {"frontend-workspace"}


@pytest.mark.parametrize("pool", POOLS)
def test_a_pool_signing_key_is_held_only_by_its_central_manager(state, trust, pool):
    assert _nodes_holding(state, trust.signing_key(pool).read_bytes()) == {pool}


def test_the_frontend_user_holds_only_the_glidein_key(state, trust):
    # the collector verifies both keys; the frontend daemon can mint glidein tokens and nothing else
    frontend = state / "nodes" / "frontend-workspace" / "secrets"
    glidein_key = trust.glidein_signing_key.read_bytes()
    assert (frontend / "condor/passwords.d/FRONTEND").read_bytes() == glidein_key
    assert (frontend / "users/frontend/passwords.d/FRONTEND").read_bytes() == glidein_key
    assert not (frontend / "users/frontend/passwords.d/POOL").exists()
    assert _nodes_holding(state, glidein_key) == {"frontend-workspace"}
    assert glidein_key != trust.signing_key("frontend-workspace").read_bytes()


@pytest.mark.parametrize("service", ["worker-1", "worker-2"])
def test_a_worker_has_no_signing_key_and_no_other_nodes_host_key(state, trust, service):
    worker = state / "nodes" / service
    held = {p.read_bytes() for p in worker.rglob("*") if p.is_file()}
    assert not held & {trust.signing_key(pool).read_bytes() for pool in POOLS}
    others = {trust.host_key(n.fqdn).read_bytes() for n in SPEC.nodes if n.service != service}
    assert not held & others


# -- node.json -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "service, expected",
    [
        ("ce-workspace", {"service": "ce-workspace", "role": "ce", "fqdn": "ce-workspace.glideinwms.org",
                          "workspace": "default", "profile": "fast",
                          "instances": {"ce": ["COLLECTOR", "SCHEDD", "JOB_ROUTER"],
                                        "pool": ["COLLECTOR", "NEGOTIATOR", "SCHEDD"]},
                          "services": []}),
        ("frontend-workspace", {"service": "frontend-workspace", "role": "frontend",
                                "fqdn": "frontend-workspace.glideinwms.org", "workspace": "default",
                                "profile": "fast", "instances": {"pool": ["COLLECTOR", "NEGOTIATOR", "SCHEDD"]},
                                "services": ["frontend", "stage-http", "issuer"]}),
        ("factory-workspace", {"service": "factory-workspace", "role": "factory",
                               "fqdn": "factory-workspace.glideinwms.org", "workspace": "default",
                               "profile": "fast", "instances": {"pool": ["COLLECTOR", "SCHEDD"]},
                               "services": ["factory", "stage-http"]}),
        ("worker-2", {"service": "worker-2", "role": "worker", "fqdn": "worker-2.glideinwms.org",
                      "workspace": "default", "profile": "fast", "instances": {"pool": ["STARTD"]},
                      "services": []}),
    ],
)
def test_node_json(state, service, expected):
    assert json.loads((state / "nodes" / service / "node.json").read_text()) == expected


@pytest.mark.parametrize("service, names", [("frontend-workspace", {"frontend.yaml", "issuer.yaml"}),
                                            ("factory-workspace", {"factory.yaml"})])
def test_component_configs_are_yaml_mappings(state, service, names):
    comp = state / "nodes" / service / "components"
    for name in names:
        assert isinstance(yaml.safe_load((comp / name).read_text()), dict)


# -- re-rendering ----------------------------------------------------------------------------------
def test_rerendering_an_unchanged_spec_rewrites_nothing(state, trust):
    _age(state / "nodes")
    before = {p: (state / "nodes" / p).read_bytes() for p in _files(state / "nodes")}
    render_workspace(SPEC, state, trust)
    assert set(_mtimes(state / "nodes").values()) == {OLD}
    assert {p: (state / "nodes" / p).read_bytes() for p in _files(state / "nodes")} == before


def test_rerendering_a_changed_spec_rewrites_only_what_changed(state, trust):
    _age(state / "nodes")
    production = WorkspaceSpec.create(workers=2, profile="production")
    render_workspace(production, state, trust)
    changed = {p for p, mtime in _mtimes(state / "nodes" / "worker-1").items() if mtime != OLD}
    assert changed == {"node.json", "condor/config.d/90-timing.conf"}
    assert "production" in (state / "nodes/worker-1/condor/config.d/90-timing.conf").read_text()


def test_rerendering_removes_stale_files_and_directories(state, trust):
    worker = state / "nodes" / "worker-1"
    (worker / "stale.conf").write_text("x")
    (worker / "condor" / "config.d" / "99-old.conf").write_text("x")
    (worker / "secrets" / "users" / "olduser" / "tokens.d").mkdir(parents=True)
    (worker / "secrets" / "users" / "olduser" / "tokens.d" / "t").write_text("x")
    render_workspace(SPEC, state, trust)
    assert _files(worker) == CONFIG_FILES["worker-1"] | {"node.json"} | {f"secrets/{s}" for s in SECRETS["worker-1"]}
    assert not (worker / "secrets" / "users").exists()


def test_rerendering_restores_a_tampered_file_and_its_mode(state, trust):
    pool_key = state / "nodes" / "ce-workspace" / "secrets" / "condor" / "passwords.d" / "POOL"
    pool_key.write_bytes(b"tampered")
    pool_key.chmod(0o644)
    render_workspace(SPEC, state, trust)
    assert pool_key.read_bytes() == trust.signing_key("ce-workspace").read_bytes()
    assert stat.S_IMODE(pool_key.stat().st_mode) == 0o600


# -- supervisord programs --------------------------------------------------------------------------
def _sections(text: str) -> dict[str, str]:
    lines = text.splitlines()
    assert lines[0].startswith("[program:")
    return {"program": lines[0][len("[program:"):-1],
            **dict(line.split("=", 1) for line in lines[1:] if line)}


@pytest.mark.parametrize(
    "service, expected",
    [
        ("ce-workspace", {"10-condor-ce.conf": ("condor-ce", "root", "CONDOR_CONFIG=/etc/condor-ce/condor_config"),
                          "10-condor.conf": ("condor", "root", "CONDOR_CONFIG=/etc/condor/condor_config")}),
        ("factory-workspace", {"10-condor.conf": ("condor", "root", "CONDOR_CONFIG=/etc/condor/condor_config"),
                               "20-factory.conf": ("factory", "gfactory", "/etc/gwms-factory/factory.yaml"),
                               "20-stage-http.conf": ("stage-http", "gfactory", "/var/lib/gwms-factory/web-area")}),
        ("frontend-workspace", {"10-condor.conf": ("condor", "root", "CONDOR_CONFIG=/etc/condor/condor_config"),
                                "20-frontend.conf": ("frontend", "frontend", "/etc/gwms-frontend/frontend.yaml"),
                                "20-stage-http.conf": ("stage-http", "frontend", "/var/lib/gwms-frontend/web-area"),
                                "20-issuer.conf": ("issuer", "frontend", "issuer.yaml")}),
        ("worker-1", {"10-condor.conf": ("condor", "root", "CONDOR_CONFIG=/etc/condor/condor_config")}),
    ],
)
def test_supervisor_programs_per_role(service, expected):
    programs = supervisor_programs(SPEC.node(service))
    assert set(programs) == set(expected)
    for name, (program, user, detail) in expected.items():
        fields = _sections(programs[name])
        assert fields["program"] == program
        assert fields["user"] == user
        assert detail in programs[name]
        assert fields["stdout_logfile"] == f"/var/log/glideinlab/{program}.log"
        assert fields["autorestart"] == "true"


@pytest.mark.parametrize(
    "service, file, stopsignal, home",
    [
        ("ce-workspace", "10-condor-ce.conf", "QUIT", "/root"),
        ("worker-1", "10-condor.conf", "QUIT", "/root"),
        ("factory-workspace", "20-stage-http.conf", "TERM", "/var/lib/gwms-factory"),
        ("frontend-workspace", "20-issuer.conf", "TERM", "/var/lib/gwms-frontend"),
    ],
)
def test_condor_master_stops_gracefully_and_services_get_their_home(service, file, stopsignal, home):
    fields = _sections(supervisor_programs(SPEC.node(service))[file])
    assert fields["stopsignal"] == stopsignal  # SIGQUIT: condor_master's fast shutdown of its daemons
    assert f'HOME="{home}"' in fields["environment"]


@pytest.mark.parametrize("service", ["factory-workspace", "frontend-workspace"])
def test_stage_http_serves_the_stage_port(service):
    command = _sections(supervisor_programs(SPEC.node(service))["20-stage-http.conf"])["command"]
    assert command.split()[:4] == ["/usr/bin/python3", "-m", "http.server", "8000"]


@pytest.mark.parametrize(
    "service, file, has_token_first",
    [
        ("frontend-workspace", "20-frontend.conf", True),
        ("factory-workspace", "20-factory.conf", True),
        ("frontend-workspace", "20-issuer.conf", False),
        ("factory-workspace", "20-stage-http.conf", False),
    ],
)
def test_glideinwms_daemons_authenticate_with_idtokens_first(service, file, has_token_first):
    environment = _sections(supervisor_programs(SPEC.node(service))[file])["environment"]
    assert ('_condor_SEC_CLIENT_AUTHENTICATION_METHODS="IDTOKENS"' in environment) is has_token_first


@pytest.mark.parametrize("profile, expected", [("fast", {"UPDATE_INTERVAL": 2, "MASTER_UPDATE_INTERVAL": 5}),
                                               ("production", {})])
def test_the_fast_profile_reaches_the_glidein_daemons(tmp_path, profile, expected):
    """Glidein startds update the user pool as often as the profile's daemons; production keeps the
    glidein's own (upstream) update intervals."""
    from glideinlab.frontend.config import load_frontend_config

    spec = WorkspaceSpec.create(workers=1, profile=profile)
    made = Trust(tmp_path / "secrets", spec)
    made.ensure()
    render_workspace(spec, tmp_path / "state", made)
    config = load_frontend_config(tmp_path / "state" / "nodes" / "frontend-workspace" / "components" / "frontend.yaml")
    params = config.glidein_params(config.group("main"))
    assert {k: params[k] for k in expected} == expected
    if not expected:
        assert "UPDATE_INTERVAL" not in params and "MASTER_UPDATE_INTERVAL" not in params
