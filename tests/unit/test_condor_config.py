"""Tests for glideinlab.workspace.condor_config: the effective HTCondor configuration of every node's
instances (security, trust domains, worker resources, timing profile) and the CE's SciToken mapfile."""

from __future__ import annotations

import re

import pytest

from glideinlab.defaults import workspace as D
from glideinlab.workspace import condor_config as C
from glideinlab.workspace.spec import WorkspaceSpec
from glideinlab.workspace.trust import TOKENS

_ASSIGN = re.compile(r"^([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*?)\s*$")
_DENIED = {"anonymous@*", "unmapped@*"}
_GUARDED_LEVELS = ("WRITE", "DAEMON", "ADMINISTRATOR", "NEGOTIATOR",
                   "ADVERTISE_STARTD", "ADVERTISE_SCHEDD", "ADVERTISE_MASTER")

# (node, instance) pairs: every HTCondor instance the workspace runs
INSTANCES = [("ce-workspace", "ce"), ("ce-workspace", "pool"), ("factory-workspace", "pool"),
             ("frontend-workspace", "pool"), ("worker-1", "pool")]


def parse(files: dict[str, str]) -> dict[str, str]:
    """The effective knobs of a config.d, read as HTCondor does: files in name order, later wins.
    Multi-line ``@=tag`` values are skipped (they hold route text, not knobs)."""
    knobs: dict[str, str] = {}
    for name in sorted(files):
        in_block = None
        for line in files[name].splitlines():
            stripped = line.strip()
            if in_block:
                if stripped == f"@{in_block}":
                    in_block = None
                continue
            if not stripped or stripped.startswith("#"):
                continue
            if " @=" in stripped:
                in_block = stripped.split("@=", 1)[1].strip()
                continue
            match = _ASSIGN.match(stripped)
            assert match, f"{name}: not a knob assignment: {line!r}"
            knobs[match.group(1).upper()] = match.group(2)
    return knobs


def config(service: str, instance: str, **options) -> dict[str, str]:
    spec = WorkspaceSpec.create(workers=2, **options)
    node = spec.node(service)
    files = C.ce_config(node, spec) if instance == "ce" else C.pool_config(node, spec)
    return parse(files)


def items(value: str) -> set[str]:
    return {part.strip() for part in value.split(",") if part.strip()}


# -- security, identical everywhere ----------------------------------------------------------------
@pytest.mark.parametrize("service, instance", INSTANCES)
@pytest.mark.parametrize(
    "knob", ["SEC_DEFAULT_AUTHENTICATION", "SEC_CLIENT_AUTHENTICATION", "SEC_DEFAULT_INTEGRITY",
             "SEC_CLIENT_INTEGRITY"],
)
def test_authentication_and_integrity_are_required(service, instance, knob):
    assert config(service, instance)[knob] == "REQUIRED"


@pytest.mark.parametrize("service, instance", INSTANCES)
@pytest.mark.parametrize("level", _GUARDED_LEVELS + ("READ",))
def test_anonymous_and_unmapped_are_denied(service, instance, level):
    if level == "READ" and instance == "ce":
        pytest.skip("the CE instance allows anonymous READ, as HTCondor-CE does (see the next test)")
    assert _DENIED <= items(config(service, instance)[f"DENY_{level}"])


def test_ce_allows_anonymous_read_only():
    # HTCondor-CE's policy: pilots whose token is refused reach the schedd and get held with the
    # authentication error; everything but READ still needs authentication and integrity.
    knobs = config("ce-workspace", "ce")
    assert knobs["SEC_READ_AUTHENTICATION"] == "OPTIONAL" and knobs["SEC_READ_INTEGRITY"] == "OPTIONAL"
    assert items(knobs["DENY_READ"]) == {"unmapped@*"}
    for level in _GUARDED_LEVELS:
        assert _DENIED <= items(knobs[f"DENY_{level}"])
        assert f"SEC_{level}_AUTHENTICATION" not in knobs


@pytest.mark.parametrize("service, instance", INSTANCES)
def test_no_guarded_level_is_open_to_everyone(service, instance):
    knobs = config(service, instance)
    for knob, value in knobs.items():
        level = knob.rsplit(".", 1)[-1]  # COLLECTOR.ALLOW_DAEMON -> ALLOW_DAEMON
        if level.startswith("ALLOW_") and level.removeprefix("ALLOW_") in _GUARDED_LEVELS:
            assert not items(value) & {"*", "*/*", "*@*"}, f"{knob} = {value}"


@pytest.mark.parametrize("service, instance", INSTANCES)
def test_host_names_are_checked_and_certs_are_where_init_installs_them(service, instance):
    knobs = config(service, instance)
    assert "SSL_SKIP_HOST_CHECK" not in knobs
    assert knobs["AUTH_SSL_SERVER_CERTFILE"] == "/etc/grid-security/hostcert.pem"
    assert knobs["AUTH_SSL_SERVER_KEYFILE"] == "/etc/grid-security/hostkey.pem"
    assert knobs["SEC_TOKEN_POOL_SIGNING_KEY_FILE"] == "/etc/condor/passwords.d/POOL"


@pytest.mark.parametrize(
    "service, instance, methods",
    [
        ("ce-workspace", "ce", {"FS", "SCITOKENS", "IDTOKENS"}),
        ("ce-workspace", "pool", {"FS", "IDTOKENS"}),
        ("factory-workspace", "pool", {"FS", "IDTOKENS"}),
        ("frontend-workspace", "pool", {"FS", "IDTOKENS"}),
        ("worker-1", "pool", {"FS", "IDTOKENS"}),
    ],
)
def test_server_authentication_methods(service, instance, methods):
    assert items(config(service, instance)["SEC_DEFAULT_AUTHENTICATION_METHODS"]) == methods


def test_only_the_factory_can_authenticate_to_a_ce_with_scitokens():
    clients = {(s, i): items(config(s, i)["SEC_CLIENT_AUTHENTICATION_METHODS"]) for s, i in INSTANCES}
    assert {key for key, methods in clients.items() if "SCITOKENS" in methods} == {("factory-workspace", "pool")}


# -- trust domains and pool membership -------------------------------------------------------------
@pytest.mark.parametrize(
    "service, instance, trust_domain, condor_host",
    [
        ("ce-workspace", "ce", "ce-workspace.lab.example:9619", "ce-workspace.lab.example"),
        ("ce-workspace", "pool", "ce-workspace.lab.example", "ce-workspace.lab.example"),
        ("factory-workspace", "pool", "factory-workspace.lab.example", "factory-workspace.lab.example"),
        ("frontend-workspace", "pool", "frontend-workspace.lab.example", "frontend-workspace.lab.example"),
        # workers belong to the CE's batch pool
        ("worker-1", "pool", "ce-workspace.lab.example", "ce-workspace.lab.example"),
        ("worker-2", "pool", "ce-workspace.lab.example", "ce-workspace.lab.example"),
    ],
)
def test_trust_domain_and_central_manager_per_pool(service, instance, trust_domain, condor_host):
    knobs = config(service, instance, domain="lab.example")
    assert knobs["TRUST_DOMAIN"] == trust_domain
    assert knobs["CONDOR_HOST"] == condor_host


@pytest.mark.parametrize("service, instance", INSTANCES)
def test_daemon_list_matches_what_the_node_probes(service, instance):
    node = WorkspaceSpec.create(workers=2).node(service)
    assert config(service, instance)["DAEMON_LIST"].split() == ["MASTER", *node.instances[instance]]


@pytest.mark.parametrize(
    "token_file, service, knob",
    [
        ("frontend-at-wms", "factory-workspace", "FRONTEND_IDENTITIES"),
        ("factory-at-wms", "factory-workspace", "FACTORY_IDENTITY"),
        ("frontend-at-userpool", "frontend-workspace", "FRONTEND_IDENTITY"),
        ("worker-at-cepool", "ce-workspace", "WORKER_IDENTITY"),
    ],
)
def test_the_identities_the_pools_authorize_are_those_the_tokens_carry(token_file, service, knob):
    spec = WorkspaceSpec.create(workers=2)
    token = next(t for t in TOKENS if t.file == token_file)
    assert token.identity(spec) in items(config(service, "pool")[knob])
    assert token.pool == service  # signed by the key of the pool that checks it


def test_only_glidein_identities_may_advertise_startds_to_the_user_pool():
    knobs = config("frontend-workspace", "pool")
    assert knobs["GLIDEIN_IDENTITIES"] == "*@glideins.frontend-workspace.glideinwms.org"
    assert knobs["COLLECTOR.ALLOW_ADVERTISE_STARTD"] == "$(GLIDEIN_IDENTITIES)"


def test_ce_audience_is_the_ce_endpoint():
    knobs = config("ce-workspace", "ce")
    assert knobs["SCITOKENS_SERVER_AUDIENCE"] == "ce-workspace.glideinwms.org:9619"
    assert knobs["PORT"] == str(D.CE_PORT)
    assert knobs["CERTIFICATE_MAPFILE"] == "/etc/condor-ce/condor_mapfile"


# -- workers ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("cpus, memory", [(2, 2048), (1, 256), (16, 65536)])
def test_worker_advertises_the_spec_resources(cpus, memory):
    knobs = config("worker-2", "pool", worker_cpus=cpus, worker_memory=memory)
    assert (knobs["NUM_CPUS"], knobs["MEMORY"]) == (str(cpus), str(memory))
    assert knobs["STARTD_NAME"] == "worker-2"
    assert knobs["SLOT_TYPE_1_PARTITIONABLE"] == "True"


@pytest.mark.parametrize("service", ["ce-workspace", "factory-workspace", "frontend-workspace"])
def test_only_workers_pin_cpus_and_memory(service):
    knobs = config(service, "pool", worker_cpus=7)
    assert "NUM_CPUS" not in knobs and "MEMORY" not in knobs


# -- timing profiles -------------------------------------------------------------------------------
@pytest.mark.parametrize("profile", ["fast", "production"])
@pytest.mark.parametrize("service, instance", INSTANCES)
def test_timing_knobs_come_from_the_profile_defaults(profile, service, instance):
    knobs = config(service, instance, profile=profile)
    for name, value in D.timing(D.HTCONDOR_TIMING, profile).items():
        assert knobs[name] == str(value), name


@pytest.mark.parametrize(
    "profile, negotiator, update, lifetime",
    [("fast", "2", "2", "60"), ("production", "60", "300", "900")],
)
def test_fast_and_production_differ_as_documented(profile, negotiator, update, lifetime):
    knobs = config("frontend-workspace", "pool", profile=profile)
    assert (knobs["NEGOTIATOR_INTERVAL"], knobs["UPDATE_INTERVAL"], knobs["CLASSAD_LIFETIME"]) == (
        negotiator, update, lifetime)


def test_unknown_profile_is_refused_by_timing():
    with pytest.raises(ValueError):
        D.timing(D.HTCONDOR_TIMING, "slow")


# -- the CE mapfile --------------------------------------------------------------------------------
_MAPLINE = re.compile(r"^SCITOKENS\s+/(?P<regex>.*)/\s+(?P<account>\S+)$")


def _mapfile_rules(spec: WorkspaceSpec) -> list[tuple[re.Pattern, str]]:
    rules = []
    for line in C.ce_mapfile(spec).splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = _MAPLINE.match(line)
        assert match, f"not a SCITOKENS /regex/ account line: {line!r}"
        # inside /.../ PCRE reads `\/` as a literal slash; Python's re needs no escape for it
        rules.append((re.compile(match["regex"].replace(r"\/", "/")), match["account"]))
    return rules


def _map(spec: WorkspaceSpec, key: str) -> str | None:
    for regex, account in _mapfile_rules(spec):
        if regex.search(key):
            return account
    return None


@pytest.mark.parametrize("domain", ["glideinwms.org", "lab.example"])
def test_mapfile_maps_the_frontend_pilot_token_to_the_pilot_account(domain):
    spec = WorkspaceSpec.create(domain=domain)
    issuer = f"https://frontend-workspace.{domain}:8443/scitokens"
    assert C.issuer_url(spec) == issuer
    assert _map(spec, f"{issuer},vofrontend_service") == "gwms"


@pytest.mark.parametrize(
    "key",
    [
        "https://frontend-workspace.glideinwms.org:8443/scitokens,someone_else",
        "https://frontend-workspace.glideinwms.org:8443/scitokens,vofrontend_service2",
        "https://frontend-workspace.glideinwms.org:8443/scitokens,xvofrontend_service",
        "https://frontend-workspace.glideinwms.org:8443/scitokens/other,vofrontend_service",
        "https://frontend-workspace.glideinwms.org:8444/scitokens,vofrontend_service",
        "https://evil.example/scitokens,vofrontend_service",
        "https://frontend-workspace.lab.example:8443/scitokens,vofrontend_service",
        # an unescaped '.' would match these
        "https://frontend-workspaceXglideinwms.org:8443/scitokens,vofrontend_service",
        "https://frontend-workspace.glideinwmsXorg:8443/scitokens,vofrontend_service",
        "http://frontend-workspace.glideinwms.org:8443/scitokens,vofrontend_service",
        "xhttps://frontend-workspace.glideinwms.org:8443/scitokens,vofrontend_service",
        "vofrontend_service",
    ],
)
def test_mapfile_maps_no_other_issuer_or_subject(key):
    assert _map(WorkspaceSpec.create(), key) is None


def test_mapfile_account_may_submit_to_the_ce_schedd():
    knobs = config("ce-workspace", "ce")
    assert "gwms@$(UID_DOMAIN)" in items(knobs["SCHEDD.ALLOW_WRITE"])
    assert [account for _, account in _mapfile_rules(WorkspaceSpec.create())] == ["gwms"]


def test_ce_route_limits_are_htcondor_ce_sized_not_the_job_router_defaults():
    """HTCondor's route defaults (MaxJobs 100, MaxIdleJobs 50) would cap the CE at 100 running pilots."""
    spec = WorkspaceSpec.create()
    router = C.ce_config(spec.node("ce-workspace"), spec)["20-router.conf"]
    route = router.split("JOB_ROUTER_ROUTE_Local_Condor @=jrt", 1)[1].split("@jrt", 1)[0]
    assert f"MaxJobs = {D.CE['max_jobs'].default}" in route
    assert f"MaxIdleJobs = {D.CE['max_idle_jobs'].default}" in route
    assert D.CE["max_jobs"].default > 100 and D.CE["max_idle_jobs"].default > 50
