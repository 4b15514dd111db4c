"""frontend.yaml parsing: defaults, merging of frontend and group settings, and every kind of ConfigError."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from glideinlab.defaults import frontend as D
from glideinlab.errors import ConfigError
from glideinlab.frontend.config import load_frontend_config, parse_frontend_config

F = "frontend.yaml"


def base() -> dict[str, Any]:
    return {
        "frontend_name": "vofrontend_service",
        "user_collector": "fe.example.org:9618",
        "schedds": ["fe.example.org"],
        "factories": [{
            "collector": "factory.example.org:9618",
            "factory_identity": "gfactory@factory.example.org",
            "my_identity": "vofrontend_service@factory.example.org",
        }],
        "stage": {"web_base_url": "http://fe.example.org/stage"},
        "credentials": {
            "scitoken": {"issuer": "https://fe.example.org/st", "key_file": "/k.pem", "key_id": "k1",
                         "subject": "vofrontend_service"},
            "idtoken": {"signing_key_file": "/pool", "trust_domain": "fe.example.org"},
        },
        "groups": {
            "main": {
                "match_expr": "stringListMember(TARGET.GLIDEIN_Site, MY.DESIRED_Sites)",
                "job_match_attrs": ["DESIRED_Sites"],
                "factory_match_attrs": ["GLIDEIN_Site"],
            }
        },
    }


def with_value(path: str, value: Any, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of ``data`` (default base()) with the dotted ``path`` set; value DELETE removes the key."""
    data = copy.deepcopy(base() if data is None else data)
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return data


DELETE = object()


def test_base_config_gets_upstream_defaults():
    cfg = parse_frontend_config(base(), F)
    group = cfg.group("main")
    assert (cfg.loop_delay, cfg.advertise_delay, cfg.security_name) == (60, 5, "vofrontend_service")
    assert cfg.client_name(group) == "vofrontend_service.main"
    assert cfg.client_name("other") == "vofrontend_service.other"
    assert group.limits["idle_glideins_per_entry"] == {"max": 100, "reserve": 5}
    assert group.limits["idle_vms_per_entry"] == {"max": 100, "curb": 5}
    assert group.limits["running_glideins_per_entry"] == {"max": 10000, "min": 0, "relative_to_queue": 1.15}
    assert group.limits["glideins_removal"] == {"type": "NO", "wait": 0, "requests_tracking": False, "margin": 0}
    assert group.limits["partitionable_glidein"] == {"min_memory": 2500}
    assert cfg.limits["idle_vms_total_global"] == {"max": 1000, "curb": 200}
    assert cfg.limits["running_glideins_total"] == {"max": 100000, "curb": 90000}
    assert group.effective_job_query_expr == D.DEFAULT_JOB_QUERY_EXPR
    assert group.effective_job_match_attrs == ("DESIRED_Sites", "RequestCpus")
    assert cfg.credentials.idtoken.key_id == "POOL" and cfg.credentials.idtoken.lifetime == 86400
    assert cfg.credentials.scitoken.lifetime == 3600
    assert cfg.stage.base_dir == "/var/lib/gwms-frontend/web-area/stage"


@pytest.mark.parametrize(
    "path, value, check",
    [
        # expressions AND'ed, frontend first, trivially-true parts dropped
        ("match_expr", "TARGET.GLIDEIN_Site =!= undefined",
         lambda g: g.effective_match_expr ==
         "(TARGET.GLIDEIN_Site =!= undefined) && (stringListMember(TARGET.GLIDEIN_Site, MY.DESIRED_Sites))"),
        ("groups.main.job_query_expr", 'Owner == "alice"',
         lambda g: g.effective_job_query_expr == f'({D.DEFAULT_JOB_QUERY_EXPR}) && (Owner == "alice")'),
        ("job_query_expr", "true", lambda g: g.effective_job_query_expr == "true"),
        # match attrs merged case-insensitively, frontend spelling and order first, RequestCpus last
        ("job_match_attrs", ["desired_sites", "Project"],
         lambda g: g.effective_job_match_attrs == ("desired_sites", "Project", "RequestCpus")),
        ("factory_match_attrs", ["GLIDEIN_CPUS"],
         lambda g: g.effective_factory_match_attrs == ("GLIDEIN_CPUS", "GLIDEIN_Site")),
        # a group inherits ramp_up_attenuation and min_memory from the frontend
        ("config", {"ramp_up_attenuation": 1.5, "partitionable_glidein": {"min_memory": 1000}},
         lambda g: (g.limits["ramp_up_attenuation"], g.limits["partitionable_glidein"]["min_memory"]) == (1.5, 1000)),
        ("groups.main.enabled", False, lambda g: g.enabled is False),
    ],
)
def test_frontend_settings_merge_into_groups(path, value, check):
    assert check(parse_frontend_config(with_value(path, value), F).group("main"))


def test_group_overrides_inherited_values_and_attrs():
    data = with_value("config", {"ramp_up_attenuation": 1.5, "partitionable_glidein": {"min_memory": 1000}})
    data = with_value("groups.main.config", {"ramp_up_attenuation": 2, "partitionable_glidein": {"min_memory": 4000}},
                      data)
    data = with_value("attrs", {"GLIDEIN_Max_Idle": 1200, "A": "fe"}, data)
    data = with_value("groups.main.attrs", {"A": "group"}, data)
    cfg = parse_frontend_config(data, F)
    group = cfg.group("main")
    assert group.limits["ramp_up_attenuation"] == 2.0
    assert group.limits["partitionable_glidein"]["min_memory"] == 4000
    assert cfg.glidein_params(group) == {"GLIDEIN_Max_Idle": 1200, "A": "group",
                                         "GLIDEIN_Collector": "fe.example.org:9618"}


@pytest.mark.parametrize(
    "path, value, field, reason",
    [
        ("bogus", 1, "bogus", "unknown setting"),
        ("groups.main.bogus", 1, "groups.main.bogus", "unknown setting"),
        ("groups.main.config.idle_glideins_per_entry.maxx", 1,
         "groups.main.config.idle_glideins_per_entry.maxx", "unknown setting"),
        ("config.idle_glideins_per_entry", {"max": 1}, "config.idle_glideins_per_entry", "unknown setting"),
        ("credentials.idtoken.bogus", 1, "credentials.idtoken.bogus", "unknown setting"),
        ("loop_delay", "abc", "loop_delay", "expected int"),
        ("groups.main.enabled", "yes", "groups.main.enabled", "expected true or false"),
        ("groups.main.config.idle_vms_per_entry.max", -1, "groups.main.config.idle_vms_per_entry.max",
         "must not be negative"),
        ("config.running_glideins_total_global.curb", -5, "config.running_glideins_total_global.curb",
         "must not be negative"),
        ("groups.main.config.ramp_up_attenuation", 0, "groups.main.config.ramp_up_attenuation",
         "greater than 0"),
        ("groups.main.config.glideins_removal.type", "SOME", "groups.main.config.glideins_removal.type",
         "not one of"),
        ("groups.main.config.idle_vms_per_entry", 5, "groups.main.config.idle_vms_per_entry", "expected a mapping"),
        ("groups.main.match_expr", "a &&& b", "groups.main.match_expr", "not a valid ClassAd expression"),
        ("job_query_expr", "JobUniverse ==", "job_query_expr", "not a valid ClassAd expression"),
        ("groups.main.start_expr", "", "groups.main.start_expr", "empty ClassAd expression"),
        ("groups.main.match_expr", "MY.Project == \"x\"", "groups.main.match_expr",
         "Project is not in job_match_attrs"),
        ("groups.main.match_expr", "TARGET.GLIDEIN_Supported_VOs =!= undefined", "groups.main.match_expr",
         "GLIDEIN_Supported_VOs is not in factory_match_attrs"),
        ("groups.main.match_expr", "stringListMember(GLIDEIN_Site, DESIRED_Sites)", "groups.main.match_expr",
         "uses GLIDEIN_Site"),
        ("groups.main.job_match_attrs", ["DESIRED Sites"], "groups.main.job_match_attrs[0]",
         "not a valid attribute name"),
        ("attrs", {"GLIDEIN_Collector": "x:9618"}, "attrs.GLIDEIN_Collector", "derived from user_collector"),
        ("groups.main.attrs", {"glidein_collector": "x"}, "groups.main.attrs.glidein_collector",
         "derived from user_collector"),
        ("attrs", {"X": [1, 2]}, "attrs.X", "expected a string, number or boolean"),
        ("factories", DELETE, "factories", "is required"),
        ("factories", [], "factories", "is required"),
        ("factories.0.my_identity", DELETE, "factories[0].my_identity", "is required"),
        ("factories.0.bogus", 1, "factories[0].bogus", "unknown setting"),
        ("schedds", [], "schedds", "is required"),
        ("schedds", ["ok", 3], "schedds[1]", "non-empty string"),
        ("user_collector", DELETE, "user_collector", "is required"),
        ("frontend_name", "fe.bad", "frontend_name", "may contain only"),
        ("groups", DELETE, "groups", "is required"),
        ("groups", {}, "groups", "at least one group"),
        ("groups", {"a.b": {}}, "groups.a.b", "may contain only"),
        ("stage.web_base_url", DELETE, "stage.web_base_url", "is required"),
        ("stage", DELETE, "stage", "is required"),
        ("credentials.scitoken.issuer", "", "credentials.scitoken.issuer", "is required"),
    ],
)
def test_bad_config_names_file_field_and_reason(path, value, field, reason):
    data = with_value(path, value)
    with pytest.raises(ConfigError) as err:
        parse_frontend_config(data, F)
    assert err.value.where == F
    assert err.value.field == field
    assert reason in err.value.reason
    assert "\n" not in str(err.value)


def test_duplicate_factory_collector_is_rejected():
    data = base()
    data["factories"].append(dict(data["factories"][0]))
    with pytest.raises(ConfigError, match=r"factories\[1\]\.collector: duplicate"):
        parse_frontend_config(data, F)


def test_two_factories_and_optional_credentials():
    data = with_value("credentials", DELETE)
    data["factories"].append({"collector": "f2:9618", "factory_identity": "g@f2", "my_identity": "fe@f2"})
    cfg = parse_frontend_config(data, F)
    assert [f.collector for f in cfg.factories] == ["factory.example.org:9618", "f2:9618"]
    assert cfg.credentials.scitoken is None and cfg.credentials.idtoken is None


@pytest.mark.parametrize(
    "text, reason",
    [
        ("frontend_name: [unclosed\n", "invalid YAML"),
        ("- a list\n", "expected a mapping at top level"),
    ],
)
def test_load_reports_file_problems(tmp_path, text, reason):
    path = tmp_path / "frontend.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_frontend_config(path)
    assert str(path) in str(err.value) and reason in str(err.value)


def test_load_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_frontend_config(tmp_path / "absent.yaml")


def test_load_round_trip(tmp_path):
    import yaml

    path = tmp_path / "frontend.yaml"
    path.write_text(yaml.safe_dump(base()))
    cfg = load_frontend_config(path)
    assert cfg.source == str(path) and cfg.groups[0].name == "main"


@pytest.mark.parametrize(
    "section, knob, value",
    [
        (D.FRONTEND, "loop_delay", 60),
        (D.FRONTEND, "advertise_delay", 5),
        (D.IDLE_GLIDEINS_PER_ENTRY, "max", 100),
        (D.IDLE_GLIDEINS_PER_ENTRY, "reserve", 5),
        (D.IDLE_VMS_PER_ENTRY, "curb", 5),
        (D.GROUP_IDLE_TOTAL, "max", 1000),
        (D.GROUP_IDLE_TOTAL, "curb", 200),
        (D.FE_RUNNING_TOTAL, "curb", 90000),
        (D.GLOBAL_RUNNING_TOTAL, "max", 100000),
        (D.RUNNING_PER_ENTRY, "max", 10000),
        (D.RUNNING_PER_ENTRY, "relative_to_queue", 1.15),
        (D.GROUP_CONFIG, "ramp_up_attenuation", 3.0),
        (D.IDLE_GLIDEINS_LIFETIME, "max", 0),
        (D.GLIDEINS_REMOVAL, "type", "NO"),
        (D.PARTITIONABLE_GLIDEIN, "min_memory", 2500),
        (D.FRONTEND_MATCH, "job_query_expr",
         "(JobUniverse==5)&&(GLIDEIN_Is_Monitor =!= TRUE)&&(JOB_Is_Monitor =!= TRUE)"),
    ],
)
def test_upstream_defaults(section, knob, value):
    assert section[knob].default == value
    assert section in D.SECTIONS


def test_every_knob_has_unit_or_help():
    names = [s.name for s in D.SECTIONS]
    assert len(names) == len(set(names))
    assert all(k.help for s in D.SECTIONS for k in s)
