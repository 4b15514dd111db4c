"""frontend.yaml → frozen dataclasses, validated against :mod:`glideinlab.defaults.frontend`.

Everything a user can get wrong (unknown key, wrong type, negative limit, a ClassAd expression that does
not parse, a match_expr using an attribute not listed in the match attrs, ``GLIDEIN_Collector`` in attrs)
is a :class:`~glideinlab.errors.ConfigError` naming the file, the dotted field and the reason.

Group settings are merged the way upstream merges ``frontend.xml``: expressions are AND'ed with the
frontend-wide ones, match attrs are added together, ``ramp_up_attenuation`` and ``partitionable_glidein``
default to the frontend's value, and ``attrs`` override the frontend's per name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import classad2

from ..config import apply_section, load_yaml, require
from ..defaults import Section
from ..defaults import frontend as D
from ..errors import ConfigError

#: names that become part of ad names and client names ("<frontend>.<group>"): no dots, no '@'
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_ATTR_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: derived from user_collector, as upstream derives it from <collectors>
_FORBIDDEN_ATTRS = ("GLIDEIN_Collector",)
#: the job attribute compared with the entry's GLIDEIN_CPUS; always part of the cluster key
REQUEST_CPUS = "RequestCpus"

# classad2 raises ClassAdException (25.x); older builds may raise ValueError
_CLASSAD_ERRORS = (ValueError, TypeError, getattr(classad2, "ClassAdException", ValueError))


@dataclass(frozen=True)
class FactoryCollectorConfig:
    """One factory (WMS) collector and the identities checked on both sides."""

    collector: str
    factory_identity: str
    my_identity: str


@dataclass(frozen=True)
class StageConfig:
    base_dir: str
    web_base_url: str


@dataclass(frozen=True)
class SciTokenConfig:
    issuer: str
    key_file: str
    key_id: str
    lifetime: int
    subject: str
    scope: str


@dataclass(frozen=True)
class IdTokenConfig:
    signing_key_file: str
    key_id: str
    trust_domain: str
    lifetime: int
    identity_subdomain: str


@dataclass(frozen=True)
class CredentialsConfig:
    """Either credential may be absent; whoever mints tokens checks for the one it needs."""

    scitoken: SciTokenConfig | None = None
    idtoken: IdTokenConfig | None = None


@dataclass(frozen=True)
class MatchConfig:
    """Match settings at one level (frontend-wide or one group), as written."""

    match_expr: str
    start_expr: str
    job_query_expr: str
    factory_query_expr: str
    job_match_attrs: tuple[str, ...]
    factory_match_attrs: tuple[str, ...]


@dataclass(frozen=True)
class GroupConfig:
    """One frontend group, with the frontend-wide settings already merged in.

    ``match`` is the group's own settings as written; the ``effective_*`` fields are what the policy
    and the queries use (frontend AND group expressions, union of match attrs, ``RequestCpus`` always
    in ``effective_job_match_attrs``).  ``limits`` is the merged ``config:`` as a plain nested dict.
    """

    name: str
    enabled: bool
    match: MatchConfig
    effective_match_expr: str
    effective_job_query_expr: str
    effective_factory_query_expr: str
    effective_job_match_attrs: tuple[str, ...]
    effective_factory_match_attrs: tuple[str, ...]
    limits: dict[str, Any] = field(hash=False)
    attrs: dict[str, Any] = field(hash=False)


@dataclass(frozen=True)
class FrontendConfig:
    """A validated frontend.yaml. ``limits`` is the frontend-wide ``config:`` as a plain nested dict."""

    source: str
    frontend_name: str
    security_name: str
    loop_delay: int
    advertise_delay: int
    group_parallel_workers: int
    restart_attempts: int
    restart_interval: int
    user_collector: str
    schedds: tuple[str, ...]
    factories: tuple[FactoryCollectorConfig, ...]
    stage: StageConfig
    credentials: CredentialsConfig
    match: MatchConfig
    limits: dict[str, Any] = field(hash=False)
    attrs: dict[str, Any] = field(hash=False)
    groups: tuple[GroupConfig, ...] = ()

    def client_name(self, group: str | GroupConfig) -> str:
        """Upstream's client name ``<frontend_name>.<group>`` (ClientName, GLIDECLIENT_Name)."""
        name = group.name if isinstance(group, GroupConfig) else group
        return f"{self.frontend_name}.{name}"

    def group(self, name: str) -> GroupConfig:
        for group in self.groups:
            if group.name == name:
                return group
        raise KeyError(f"no group {name!r} in {self.source}")

    def glidein_params(self, group: GroupConfig) -> dict[str, Any]:
        """GlideinParam* values for a group's requests: frontend attrs, group attrs, GLIDEIN_Collector."""
        return {**self.attrs, **group.attrs, "GLIDEIN_Collector": self.user_collector}


# --------------------------------------------------------------------------------------------- parsing


def load_frontend_config(path: str | Path) -> FrontendConfig:
    """Read and validate a frontend.yaml; any problem is a ConfigError naming file and field."""
    return parse_frontend_config(load_yaml(path), str(path))


def parse_frontend_config(data: Mapping[str, Any], where: str) -> FrontendConfig:
    """Validate an already-loaded frontend.yaml mapping; ``where`` names it in errors."""
    if not isinstance(data, Mapping):
        raise ConfigError(where, None, f"expected a mapping at top level, got {type(data).__name__}")
    structural = ("factories", "stage", "credentials", "config", "attrs", "groups")
    _reject_unknown(data, (*(k.name for k in D.FRONTEND), *(k.name for k in D.FRONTEND_MATCH), *structural),
                    where, "")

    top = apply_section({k: data[k] for k in data if k in {kn.name for kn in D.FRONTEND}}, D.FRONTEND, where)
    frontend_name = _name(top["frontend_name"], where, "frontend_name")
    security_name = top["security_name"] or frontend_name
    user_collector = _nonempty(top["user_collector"], where, "user_collector")
    schedds = _string_list(top["schedds"], where, "schedds")
    if not schedds:
        raise ConfigError(where, "schedds", "is required (at least one user schedd)")

    fe_match = _parse_match({k: data[k] for k in data if k in {kn.name for kn in D.FRONTEND_MATCH}},
                            D.FRONTEND_MATCH, where, "")
    fe_limits = _parse_limits(data.get("config"), D.FRONTEND_CONFIG, D.FRONTEND_CONFIG_SECTIONS, {}, where,
                              "config")
    fe_attrs = _parse_attrs(data.get("attrs"), where, "attrs")

    groups_data = require(data, "groups", where, "groups", dict)
    if not groups_data:
        raise ConfigError(where, "groups", "at least one group is required")
    groups = tuple(
        _parse_group(name, body, fe_match, fe_limits, where) for name, body in groups_data.items()
    )

    return FrontendConfig(
        source=where,
        frontend_name=frontend_name,
        security_name=_name(security_name, where, "security_name"),
        loop_delay=top["loop_delay"],
        advertise_delay=top["advertise_delay"],
        group_parallel_workers=top["group_parallel_workers"],
        restart_attempts=top["restart_attempts"],
        restart_interval=top["restart_interval"],
        user_collector=user_collector,
        schedds=schedds,
        factories=_parse_factories(data.get("factories"), where),
        stage=StageConfig(**_required_section(data.get("stage"), D.STAGE, where, "stage")),
        credentials=_parse_credentials(data.get("credentials"), where),
        match=fe_match,
        limits=fe_limits,
        attrs=fe_attrs,
        groups=groups,
    )


def _parse_group(name: Any, body: Any, fe_match: MatchConfig, fe_limits: dict[str, Any],
                 where: str) -> GroupConfig:
    field_base = f"groups.{name}"
    _name(str(name), where, field_base)
    body = {} if body is None else body
    if not isinstance(body, Mapping):
        raise ConfigError(where, field_base, f"expected a mapping, got {type(body).__name__}")
    match_keys = {k.name for k in D.GROUP_MATCH}
    _reject_unknown(body, (*(k.name for k in D.GROUP), *match_keys, "config", "attrs"), where, field_base)

    own = apply_section({k: v for k, v in body.items() if k in {kn.name for kn in D.GROUP}}, D.GROUP, where,
                        field_base)
    match = _parse_match({k: v for k, v in body.items() if k in match_keys}, D.GROUP_MATCH, where, field_base)
    inherited = {
        "ramp_up_attenuation": fe_limits["ramp_up_attenuation"],
        "partitionable_glidein": fe_limits["partitionable_glidein"],
    }
    limits = _parse_limits(body.get("config"), D.GROUP_CONFIG, D.GROUP_CONFIG_SECTIONS, inherited, where,
                           f"{field_base}.config")

    job_attrs = _merge_names(fe_match.job_match_attrs, match.job_match_attrs, (REQUEST_CPUS,))
    factory_attrs = _merge_names(fe_match.factory_match_attrs, match.factory_match_attrs)
    match_expr = _and_exprs(fe_match.match_expr, match.match_expr)
    _check_match_refs(match_expr, job_attrs, factory_attrs, where, f"{field_base}.match_expr")

    return GroupConfig(
        name=str(name),
        enabled=own["enabled"],
        match=match,
        effective_match_expr=match_expr,
        effective_job_query_expr=_and_exprs(fe_match.job_query_expr, match.job_query_expr),
        effective_factory_query_expr=_and_exprs(fe_match.factory_query_expr, match.factory_query_expr),
        effective_job_match_attrs=job_attrs,
        effective_factory_match_attrs=factory_attrs,
        limits=limits,
        attrs=_parse_attrs(body.get("attrs"), where, f"{field_base}.attrs"),
    )


def _parse_limits(given: Any, scalars: Section, sections: dict[str, Section], inherited: dict[str, Any],
                  where: str, prefix: str) -> dict[str, Any]:
    """A ``config:`` mapping: scalar knobs plus nested sections; ``inherited`` replaces knob defaults."""
    given = {} if given is None else given
    if not isinstance(given, Mapping):
        raise ConfigError(where, prefix, f"expected a mapping, got {type(given).__name__}")
    _reject_unknown(given, (*(k.name for k in scalars), *sections), where, prefix)
    scalar_given = {k: inherited[k] for k in inherited if k in {kn.name for kn in scalars}}
    scalar_given.update({k: v for k, v in given.items() if k not in sections})
    limits = apply_section(scalar_given, scalars, where, prefix)
    if "ramp_up_attenuation" in limits and limits["ramp_up_attenuation"] <= 0:
        raise ConfigError(where, f"{prefix}.ramp_up_attenuation", "must be greater than 0")
    for key, section in sections.items():
        base = dict(inherited.get(key, {}))
        sub = given.get(key)
        if sub is not None and not isinstance(sub, Mapping):
            raise ConfigError(where, f"{prefix}.{key}", f"expected a mapping, got {type(sub).__name__}")
        base.update(sub or {})
        limits[key] = apply_section(base, section, where, f"{prefix}.{key}")
    return limits


def _parse_match(given: Mapping[str, Any], section: Section, where: str, prefix: str) -> MatchConfig:
    values = apply_section(given, section, where, prefix)
    base = f"{prefix}." if prefix else ""
    for key in ("match_expr", "start_expr", "job_query_expr", "factory_query_expr"):
        _check_classad(values[key], where, f"{base}{key}")
    return MatchConfig(
        match_expr=values["match_expr"],
        start_expr=values["start_expr"],
        job_query_expr=values["job_query_expr"],
        factory_query_expr=values["factory_query_expr"],
        job_match_attrs=_attr_names(values["job_match_attrs"], where, f"{base}job_match_attrs"),
        factory_match_attrs=_attr_names(values["factory_match_attrs"], where, f"{base}factory_match_attrs"),
    )


def _parse_factories(given: Any, where: str) -> tuple[FactoryCollectorConfig, ...]:
    if not isinstance(given, list) or not given:
        raise ConfigError(where, "factories", "is required: a list of at least one factory collector")
    out: list[FactoryCollectorConfig] = []
    for index, item in enumerate(given):
        values = _required_section(item, D.FACTORY, where, f"factories[{index}]")
        if any(f.collector == values["collector"] for f in out):
            raise ConfigError(where, f"factories[{index}].collector", f"duplicate {values['collector']!r}")
        out.append(FactoryCollectorConfig(**values))
    return tuple(out)


def _parse_credentials(given: Any, where: str) -> CredentialsConfig:
    if given is None:
        return CredentialsConfig()
    if not isinstance(given, Mapping):
        raise ConfigError(where, "credentials", f"expected a mapping, got {type(given).__name__}")
    _reject_unknown(given, ("scitoken", "idtoken"), where, "credentials")
    scitoken = given.get("scitoken")
    idtoken = given.get("idtoken")
    return CredentialsConfig(
        scitoken=None if scitoken is None else SciTokenConfig(
            **_required_section(scitoken, D.SCITOKEN, where, "credentials.scitoken")),
        idtoken=None if idtoken is None else IdTokenConfig(
            **_required_section(idtoken, D.IDTOKEN, where, "credentials.idtoken")),
    )


def _required_section(given: Any, section: Section, where: str, prefix: str) -> dict[str, Any]:
    """A section that must be present; knobs whose default is "" must be given and non-empty."""
    if given is None:
        raise ConfigError(where, prefix, "is required")
    values = apply_section(given, section, where, prefix)
    for knob in section:
        if knob.default == "":
            _nonempty(values[knob.name], where, f"{prefix}.{knob.name}")
    return values


def _parse_attrs(given: Any, where: str, prefix: str) -> dict[str, Any]:
    given = {} if given is None else given
    if not isinstance(given, Mapping):
        raise ConfigError(where, prefix, f"expected a mapping, got {type(given).__name__}")
    out: dict[str, Any] = {}
    for name, value in given.items():
        field_name = f"{prefix}.{name}"
        if not isinstance(name, str) or not _ATTR_NAME_RE.match(name):
            raise ConfigError(where, field_name, "not a valid attribute name")
        if name.lower() in (a.lower() for a in _FORBIDDEN_ATTRS):
            raise ConfigError(where, field_name, "must not be set: it is derived from user_collector")
        if not isinstance(value, (str, int, float, bool)):
            raise ConfigError(where, field_name,
                              f"expected a string, number or boolean, got {type(value).__name__}")
        out[name] = value
    return out


# --------------------------------------------------------------------------------- small validators


def _reject_unknown(given: Mapping[str, Any], known: tuple[str, ...], where: str, prefix: str) -> None:
    for key in given:
        if key not in known:
            field_name = f"{prefix}.{key}" if prefix else str(key)
            raise ConfigError(where, field_name, f"unknown setting (valid: {', '.join(sorted(known))})")


def _nonempty(value: str, where: str, field_name: str) -> str:
    if not value.strip():
        raise ConfigError(where, field_name, "is required")
    return value


def _name(value: str, where: str, field_name: str) -> str:
    _nonempty(value, where, field_name)
    if not _NAME_RE.match(value):
        raise ConfigError(where, field_name, f"{value!r} may contain only letters, digits, '_' and '-'")
    return value


def _string_list(values: list[Any], where: str, field_name: str) -> tuple[str, ...]:
    for index, value in enumerate(values):
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(where, f"{field_name}[{index}]", f"expected a non-empty string, got {value!r}")
    return tuple(values)


def _attr_names(values: list[Any], where: str, field_name: str) -> tuple[str, ...]:
    names = _string_list(values, where, field_name)
    for index, name in enumerate(names):
        if not _ATTR_NAME_RE.match(name):
            raise ConfigError(where, f"{field_name}[{index}]", f"{name!r} is not a valid attribute name")
    return names


def _merge_names(*lists: tuple[str, ...]) -> tuple[str, ...]:
    """Union keeping first spelling and order; ClassAd attribute names are case-insensitive."""
    seen: dict[str, str] = {}
    for names in lists:
        for name in names:
            seen.setdefault(name.lower(), name)
    return tuple(seen.values())


def _check_classad(text: str, where: str, field_name: str) -> None:
    if not text.strip():
        raise ConfigError(where, field_name, "empty ClassAd expression (use 'true')")
    try:
        classad2.ExprTree(text)
    except _CLASSAD_ERRORS:
        raise ConfigError(where, field_name, f"not a valid ClassAd expression: {text!r}") from None


def _and_exprs(*exprs: str) -> str:
    """AND expressions, dropping trivially-true parts so the common case stays cheap to evaluate."""
    parts = [e.strip() for e in exprs if e.strip().lower() != "true"]
    if not parts:
        return "true"
    if len(parts) == 1:
        return parts[0]
    return " && ".join(f"({p})" for p in parts)


_STRING_LITERAL = re.compile(r'"(?:[^"\\]|\\.)*"')
_SCOPED_REF = re.compile(r"\b(MY|TARGET)\s*\.\s*([A-Za-z_]\w*)", re.IGNORECASE)
_BARE_REF = re.compile(r"(?<![\w.])([A-Za-z_]\w*)\b(?!\s*[.(])")
_CLASSAD_WORDS = {"true", "false", "undefined", "error", "is", "isnt", "my", "target", "parent"}


def _check_match_refs(expr: str, job_attrs: tuple[str, ...], factory_attrs: tuple[str, ...], where: str,
                      field_name: str) -> None:
    """Every attribute match_expr reads must be a match attr, or clustering would be unsound.

    The policy evaluates match_expr on a job ad made of the job match attrs only (MY) and an entry ad
    made of the factory match attrs only (TARGET); unscoped names resolve in MY.
    """
    text = _STRING_LITERAL.sub('""', expr)
    job = {a.lower() for a in job_attrs}
    factory = {a.lower() for a in factory_attrs}
    for scope, name in _SCOPED_REF.findall(text):
        if scope.lower() == "my" and name.lower() not in job:
            raise ConfigError(where, field_name, f"uses MY.{name} but {name} is not in job_match_attrs")
        if scope.lower() == "target" and name.lower() not in factory:
            raise ConfigError(where, field_name,
                              f"uses TARGET.{name} but {name} is not in factory_match_attrs")
    for name in _BARE_REF.findall(_SCOPED_REF.sub("", text)):
        if name.lower() not in _CLASSAD_WORDS and name.lower() not in job:
            raise ConfigError(where, field_name,
                              f"uses {name}, which is not in job_match_attrs (write TARGET.{name} for an "
                              "entry attribute listed in factory_match_attrs)")
