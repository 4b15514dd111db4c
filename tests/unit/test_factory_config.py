"""factory.yaml parsing: defaults, derived values and one-line ConfigErrors naming file, field, reason."""

from __future__ import annotations

import copy
import textwrap

import pytest

from glideinlab.defaults import factory as defaults
from glideinlab.errors import ConfigError
from glideinlab.factory.config import (
    Attr,
    Limits,
    ad_name,
    load_factory_config,
    parse_factory_config,
    parse_recoverable_exitcodes,
)

EXAMPLE_YAML = """\
factory_name: gfactory_service
glidein_name: gfactory_instance
loop_delay: 60
advertise_delay: 5
collector: factory-workspace.glideinwms.org:9618
schedds: [schedd_glideins1@factory-workspace.glideinwms.org, schedd_glideins2@factory-workspace.glideinwms.org]
stage: {base_dir: /var/lib/gwms-factory/web-area/stage,
        web_base_url: "http://factory-workspace.glideinwms.org:8000/factory/stage"}
submit: {base_dir: /var/lib/gwms-factory/work-dir}
security:
  key_length: 2048
  reuse_oldkey_onstartup_gracetime: 900
  frontends:
    vofrontend_service:
      identity: vofrontend_service@factory-workspace.glideinwms.org
      security_classes: {frontend: {username: frontend}, pilot: {username: fepilot}}
recoverable_exitcodes: "13,30 2 3"
attrs:
  USE_CCB: true
  GLIDEIN_Supported_VOs: {value: glideinlab, publish: true, parameter: false}
entries:
  ce-workspace:
    gatekeeper: "ce-workspace.glideinwms.org ce-workspace.glideinwms.org:9619"
    gridtype: condor
    auth_method: scitoken
    trust_domain: grid
    attrs:
      GLIDEIN_Site: SiteA
      GLIDEIN_CPUS: 4
      GLIDEIN_MaxMemMBs: 1024
      GLIDEIN_Max_Walltime: 3600
      GLIDEIN_Custom_Start: {value: "TARGET.RequestCpus <= 4", type: expr}
      GLIDEIN_Overridable: {value: abc, const: false}
      USE_CCB: "False"
    config:
      max_jobs:
        per_entry: {idle: 50}
        default_per_frontend: {glideins: 40, idle: 20}
        per_frontends: {"vofrontend_service:frontend": {idle: 7}}
      stale_age: {idle: 3600}
      submit: {cluster_size: 5, slots_layout: fixed}
    allow_frontends: {vofrontend_service: frontend}
  slurm-site:
    enabled: false
    gatekeeper: gfactory@login.example.org
    gridtype: batch slurm
    schedd_name: schedd_glideins2@factory-workspace.glideinwms.org
"""

BASE = {
    "collector": "factory.example.org:9618",
    "schedds": ["schedd_glideins1@factory.example.org"],
    "stage": {"web_base_url": "http://factory.example.org:8000/factory/stage"},
    "security": {"frontends": {"fe": {"identity": "fe@factory.example.org",
                                      "security_classes": {"frontend": {"username": "frontend"}}}}},
    "entries": {"ce1": {"gatekeeper": "ce.example.org ce.example.org:9619"}},
}


@pytest.fixture
def example(tmp_path):
    path = tmp_path / "factory.yaml"
    path.write_text(EXAMPLE_YAML)
    return load_factory_config(path)


def with_value(path: str, value):
    """BASE with one value set at a dotted path (keys containing dots are not used here)."""
    data = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return data


def test_example_top_level(example):
    assert (example.factory_name, example.glidein_name) == ("gfactory_service", "gfactory_instance")
    assert example.schedds[1] == "schedd_glideins2@factory-workspace.glideinwms.org"
    assert example.recoverable_exitcodes == {13: frozenset(), 30: frozenset({2, 3})}
    assert example.submit.base_dir == "/var/lib/gwms-factory/work-dir"
    assert example.submit.base_client_log_dir == "/var/log/gwms-factory/client"  # default kept
    assert example.security.frontends["vofrontend_service"].security_classes == {
        "frontend": "frontend", "pilot": "fepilot"}
    assert example.security.remove_old_cred_age == 30
    assert [e.name for e in example.entries] == ["ce-workspace", "slurm-site"]


def test_example_entry(example):
    entry = example.entry("ce-workspace")
    assert ad_name(entry) == "ce-workspace@gfactory_instance@gfactory_service"
    assert entry.grid_resource == "condor ce-workspace.glideinwms.org ce-workspace.glideinwms.org:9619"
    assert entry.schedd_name == "schedd_glideins1@factory-workspace.glideinwms.org"  # first schedd
    assert entry.limits.per_entry == Limits(glideins=10000, idle=50, held=1000)
    assert entry.limits.default_per_frontend == Limits(glideins=40, idle=20, held=50)
    # per_frontends keys not given fall back to the entry's default_per_frontend
    assert entry.limits.for_frontend("vofrontend_service:frontend") == Limits(glideins=40, idle=7, held=50)
    assert entry.limits.for_frontend("vofrontend_service:pilot") == Limits(glideins=40, idle=20, held=50)
    assert entry.stale_age.idle == 3600 and entry.stale_age.running == 31 * 24 * 3600
    assert (entry.submit.cluster_size, entry.submit.max_per_cycle, entry.submit.slots_layout) == (5, 100, "fixed")
    assert (entry.remove.max_per_cycle, entry.release.max_per_cycle, entry.release.min_release_time) == (5, 20, 300)
    assert entry.allow_frontends == {"vofrontend_service": ("frontend",)}
    assert entry.expected_cores() == 4
    other = example.entry("slurm-site")
    assert (other.enabled, other.gridtype, other.auth_method) == (False, "batch slurm", "scitoken")
    assert other.schedd_name == "schedd_glideins2@factory-workspace.glideinwms.org"


def test_example_attrs(example):
    entry = example.entry("ce-workspace")
    assert entry.attrs["GLIDEIN_CPUS"] == Attr(4, type="int")
    assert entry.attrs["USE_CCB"].value == "False"  # the entry overrides the factory-wide attr
    assert example.attrs["USE_CCB"].value == "True"  # YAML booleans become upstream's spelling
    published = entry.published_attrs()
    assert published["GLIDEIN_Site"] == "SiteA"
    assert published["GLIDEIN_MaxMemMBs"] == 1024
    assert published["GLIDEIN_Supported_VOs"] == "glideinlab"  # inherited from the factory attrs
    assert published["GLIDEIN_Gatekeeper"] == entry.gatekeeper
    assert published["GLIDEIN_GridType"] == "condor"
    assert str(published["GLIDEIN_Custom_Start"]) == "TARGET.RequestCpus <= 4"
    assert not isinstance(published["GLIDEIN_Custom_Start"], str)  # published as an expression
    # only non-const parameters are GlideinParam defaults, plus the placeholder collector
    assert entry.params() == {"GLIDEIN_Collector": "Fake", "GLIDEIN_Overridable": "abc"}


def test_configured_limits(example):
    limits = example.entry("ce-workspace").limits.configured_limits()
    assert limits["PerEntryMaxIdle"] == 50
    assert limits["DefaultPerFrontendMaxGlideins"] == 40
    assert limits["PerFrontendMaxIdle"] == "vofrontend_service:frontend=7"


def test_minimal_config_gets_upstream_defaults():
    config = parse_factory_config(BASE, "factory.yaml")
    entry = config.entries[0]
    assert (config.loop_delay, config.advertise_delay) == (60, 5)
    assert config.security.key_length == 2048 and config.security.reuse_oldkey_onstartup_gracetime == 900
    assert entry.limits.per_entry == Limits(10000, 2000, 1000)
    assert entry.limits.default_per_frontend == Limits(5000, 100, 50)
    assert (entry.stale_age.idle, entry.stale_age.running) == (7 * 86400, 31 * 86400)
    assert (entry.gridtype, entry.trust_domain, entry.submit.slots_layout) == ("condor", "grid", "partitionable")
    assert entry.remove.forcex_after_holds == 20 and entry.release.max_release_count == 10
    assert config.recoverable_exitcodes == {}
    assert entry.allow_frontends == {} and entry.allows("fe", "anything")
    assert entry.expected_cores() == 1


@pytest.mark.parametrize("attrs, cores", [
    ({"GLIDEIN_CPUS": 8}, 8),
    ({"GLIDEIN_CPUS": "auto", "GLIDEIN_ESTIMATED_CPUS": 16}, 16),
    ({"GLIDEIN_CPUS": 0, "GLIDEIN_ESTIMATED_CPUS": 2}, 2),
    ({"GLIDEIN_CPUS": "node"}, 1),
])
def test_expected_cores(attrs, cores):
    entry = parse_factory_config(with_value("entries.ce1.attrs", attrs), "f.yaml").entries[0]
    assert entry.expected_cores() == cores


@pytest.mark.parametrize("allow, security_class, allowed", [
    ({"fe": "frontend"}, "frontend", True),
    ({"fe": "frontend"}, "other", False),
    ({"fe": "All"}, "other", True),
    ({"fe": ["frontend", "All"]}, "x", True),
])
def test_allow_frontends(allow, security_class, allowed):
    entry = parse_factory_config(with_value("entries.ce1.allow_frontends", allow), "f.yaml").entries[0]
    assert entry.allows("fe", security_class) is allowed
    assert entry.allows("someone_else", "frontend") is False


@pytest.mark.parametrize("text, parsed", [
    ("", {}),
    ("13", {13: frozenset()}),
    ("13,30 2 3", {13: frozenset(), 30: frozenset({2, 3})}),
    (" 30 2 , 30 4 ", {30: frozenset({2, 4})}),
])
def test_parse_recoverable_exitcodes(text, parsed):
    assert parse_recoverable_exitcodes(text) == parsed


@pytest.mark.parametrize("text", ["13,,30", "13,", "abc", "13 x"])
def test_parse_recoverable_exitcodes_rejects(text):
    with pytest.raises(ValueError):
        parse_recoverable_exitcodes(text)


def _entries(**entry):
    return {"ce1": {"gatekeeper": "ce.example.org ce.example.org:9619", **entry}}


@pytest.mark.parametrize("path, value, field, reason", [
    ("loopdelay", 3, "loopdelay", "unknown setting"),
    ("loop_delay", "abc", "loop_delay", "expected int"),
    ("loop_delay", 0, "loop_delay", "at least 1"),
    ("factory_name", "my factory", "factory_name", "not a safe name"),
    ("glidein_name", "a@b", "glidein_name", "not a safe name"),
    ("collector", "", "collector", "is required"),
    ("schedds", [], "schedds", "is required"),
    ("schedds", [""], "schedds[0]", "expected a schedd name"),
    ("recoverable_exitcodes", "13,abc", "recoverable_exitcodes", "'abc' is not"),
    ("stage.web_base_url", "", "stage.web_base_url", "is required"),
    ("stage.docroot", "/x", "stage.docroot", "unknown setting"),
    ("security.key_length", 512, "security.key_length", "at least 1024"),
    ("security.frontends", {}, "security.frontends", "is required"),
    ("security.frontends.fe.identity", "fe", "security.frontends.fe.identity", "expected user@host"),
    ("security.frontends.fe.security_classes", {"frontend": {"username": "a b"}},
     "security.frontends.fe.security_classes.frontend.username", "not a safe name"),
    ("security.frontends.fe.security_classes", {"frontend": {"user": "x"}},
     "security.frontends.fe.security_classes.frontend.user", "unknown setting"),
    ("entries", {}, "entries", "is required"),
    ("entries", {"ce 1": {"gatekeeper": "a a:1"}}, "entries.ce 1", "not a safe name"),
    ("entries", _entries(gridtype="gt2"), "entries.ce1.gridtype", "Globus GRAM"),
    ("entries", _entries(gridtype="arc"), "entries.ce1.gridtype", "not supported"),
    ("entries", _entries(gridtype="batch nqs"), "entries.ce1.gridtype", "not supported"),
    ("entries", _entries(gatekeeper="ce.example.org"), "entries.ce1.gatekeeper", "gridtype condor needs"),
    ("entries", {"ce1": {}}, "entries.ce1.gatekeeper", "is required"),
    ("entries", _entries(auth_method="password"), "entries.ce1.auth_method", "not an auth method"),
    ("entries", _entries(auth_method="scitoken+vo"), "entries.ce1.auth_method", "+vo is not a modifier"),
    ("entries", _entries(schedd_name="other@host"), "entries.ce1.schedd_name", "is not one of schedds"),
    ("entries", _entries(enabled="yes"), "entries.ce1.enabled", "expected true or false"),
    ("entries", _entries(attrs={"GLIDEIN Site": "x"}), "entries.ce1.attrs.GLIDEIN Site", "not a safe name"),
    ("entries", _entries(attrs={"GLIDEIN_CPUS": {"value": "abc", "type": "int"}}),
     "entries.ce1.attrs.GLIDEIN_CPUS.value", "expected an integer"),
    ("entries", _entries(attrs={"X": {"value": "a &&", "type": "expr"}}), "entries.ce1.attrs.X.value",
     "not a ClassAd expression"),
    ("entries", _entries(attrs={"X": {"value": 1, "type": "float"}}), "entries.ce1.attrs.X.type", "not one of"),
    ("entries", _entries(attrs={"X": {"type": "int"}}), "entries.ce1.attrs.X.value", "is required"),
    ("entries", _entries(attrs={"X": [1, 2]}), "entries.ce1.attrs.X.value", "expected a scalar"),
    ("entries", _entries(attrs={"GLIDEIN_Collector": "c:9618"}), "entries.ce1.attrs.GLIDEIN_Collector",
     "must not be set"),
    ("entries", _entries(allow_frontends={"nobody": "frontend"}), "entries.ce1.allow_frontends.nobody",
     "not a frontend"),
    ("entries", _entries(allow_frontends={"fe": "admins"}), "entries.ce1.allow_frontends.fe",
     "'admins' is not a security class"),
    ("entries", _entries(config={"max_job": {}}), "entries.ce1.config.max_job", "unknown setting"),
    ("entries", _entries(config={"max_jobs": {"per_entry": {"idle": -1}}}),
     "entries.ce1.config.max_jobs.per_entry.idle", "must not be negative"),
    ("entries", _entries(config={"max_jobs": {"per_frontends": {"nofe:frontend": {"idle": 1}}}}),
     "entries.ce1.config.max_jobs.per_frontends.nofe:frontend", "<security_name>:<security_class>"),
    ("entries", _entries(config={"max_jobs": {"per_frontends": {"fe:frontend": {"idle": "x"}}}}),
     "entries.ce1.config.max_jobs.per_frontends.fe:frontend.idle", "expected int"),
    ("entries", _entries(config={"submit": {"cluster_size": 0}}), "entries.ce1.config.submit.cluster_size",
     "at least 1"),
    ("entries", _entries(config={"submit": {"slots_layout": "dynamic"}}),
     "entries.ce1.config.submit.slots_layout", "not one of"),
    ("entries", _entries(config={"stale_age": {"idle": "7d"}}), "entries.ce1.config.stale_age.idle",
     "expected int"),
])
def test_config_errors(path, value, field, reason):
    with pytest.raises(ConfigError) as err:
        parse_factory_config(with_value(path, value), "/etc/glideinlab/factory.yaml")
    assert err.value.where == "/etc/glideinlab/factory.yaml"
    assert err.value.field == field
    assert reason in err.value.reason
    assert "\n" not in err.value.line()


@pytest.mark.parametrize("text, reason", [
    ("entries: [a, b\n", "invalid YAML"),
    ("- just\n- a list\n", "expected a mapping at top level"),
])
def test_load_errors_are_one_line(tmp_path, text, reason):
    path = tmp_path / "factory.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_factory_config(path)
    assert reason in str(err.value) and str(path) in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_factory_config(tmp_path / "nope.yaml")


def test_every_section_is_exported():
    names = [section.name for section in defaults.SECTIONS]
    assert len(names) == len(set(names))
    assert {"factory", "entry.config.max_jobs.per_entry", "entry.config.submit"} <= set(names)
    assert defaults.RELEASE["min_release_time"].default == 300
    assert defaults.REMOVE["forcex_after_holds"].default == 20


def test_yaml_comments_and_quoting(tmp_path):
    path = tmp_path / "factory.yaml"
    path.write_text(textwrap.dedent("""\
        collector: factory.example.org:9618   # the WMS collector
        schedds: [s1@factory.example.org]
        stage: {web_base_url: "http://factory.example.org:8000/factory/stage"}
        recoverable_exitcodes: 13
        security:
          frontends:
            fe: {identity: fe@factory.example.org, security_classes: {frontend: {username: frontend}}}
        entries:
          ce1: {gatekeeper: "ce ce:9619"}
        """))
    config = load_factory_config(path)
    assert config.recoverable_exitcodes == {13: frozenset()}  # a bare YAML int is accepted
