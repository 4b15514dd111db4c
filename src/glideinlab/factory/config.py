"""The factory's configuration: ``factory.yaml`` parsed and validated into frozen dataclasses.

The shape follows upstream's ``glideinWMS.xml`` (``<glidein>``, ``<security><frontends>``, ``<entries>``
with ``<config><max_jobs/><stale_age/><release/><remove/><submit/></config>``, ``<allow_frontends>`` and
``<attrs>``) in YAML. Defaults live in :mod:`glideinlab.defaults.factory`; every mistake is a
:class:`~glideinlab.errors.ConfigError` naming the file, the dotted field and the reason.
The dataclasses are frozen; treat their dict fields as read-only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..config import apply_section, load_yaml, require
from ..defaults import factory as defaults
from ..errors import ConfigError

_SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
#: local resource managers a ``batch`` entry may name (the BLAHP ones we can run).
BATCH_LRMS = ("pbs", "lsf", "sge", "slurm", "condor")
#: Globus GRAM grid types upstream dropped with the Globus Toolkit.
_GLOBUS_GRIDTYPES = ("gt2", "gt5")
AUTH_METHODS = (
    "grid_proxy", "voms_proxy", "key_pair", "cert_pair", "username_password", "auth_file", "scitoken",
)
AUTH_MODIFIERS = ("vm_id", "vm_type", "project_id", "voms_attr")
#: allow_frontends value that admits every security class of a frontend (upstream's spelling).
ALL_SECURITY_CLASSES = "All"
#: the frontend always overrides it with its user collector; the factory advertises a placeholder.
FAKE_COLLECTOR = "Fake"


@dataclass(frozen=True)
class Attr:
    """One entry attr, as upstream's ``<attr>``: the value and where it goes."""

    value: str | int
    type: str = "string"
    publish: bool = True
    parameter: bool = True
    const: bool = True
    glidein_publish: bool = False
    job_publish: bool = False


@dataclass(frozen=True)
class Limits:
    """Most glideins allowed: idle + running (``glideins``), idle, held."""

    glideins: int
    idle: int
    held: int


@dataclass(frozen=True)
class EntryLimits:
    """The entry's ``max_jobs``: per entry, default per frontend security class, and overrides."""

    per_entry: Limits
    default_per_frontend: Limits
    #: '<security_name>:<security_class>' -> limits
    per_frontends: dict[str, Limits]

    def for_frontend(self, frontend_name: str) -> Limits:
        """Limits of one frontend security class (``GlideinFrontendName``)."""
        return self.per_frontends.get(frontend_name, self.default_per_frontend)

    def configured_limits(self) -> dict[str, int | str]:
        """Upstream's ``GlideinConfig*`` values (without the prefix) for the glidefactory ad."""

        def per_frontend(key: str) -> str:
            return ",".join(f"{fe}={getattr(lim, key)}" for fe, lim in sorted(self.per_frontends.items()))

        return {
            "PerEntryMaxGlideins": self.per_entry.glideins,
            "PerEntryMaxIdle": self.per_entry.idle,
            "PerEntryMaxHeld": self.per_entry.held,
            "DefaultPerFrontendMaxGlideins": self.default_per_frontend.glideins,
            "DefaultPerFrontendMaxIdle": self.default_per_frontend.idle,
            "DefaultPerFrontendMaxHeld": self.default_per_frontend.held,
            "PerFrontendMaxGlideins": per_frontend("glideins"),
            "PerFrontendMaxIdle": per_frontend("idle"),
            "PerFrontendMaxHeld": per_frontend("held"),
        }


@dataclass(frozen=True)
class StaleAge:
    """Seconds in one state after which a glidein is removed as stale."""

    idle: int
    running: int
    unclaimed: int


@dataclass(frozen=True)
class ReleasePolicy:
    max_per_cycle: int
    sleep: float
    max_release_count: int
    min_release_time: int


@dataclass(frozen=True)
class RemovePolicy:
    max_per_cycle: int
    sleep: float
    forcex_after_holds: int


@dataclass(frozen=True)
class SubmitPolicy:
    cluster_size: int
    max_per_cycle: int
    sleep: float
    slots_layout: str


@dataclass(frozen=True)
class EntryConfig:
    """One entry: the CE, how glideins reach it, who may use it and its limits."""

    name: str
    factory_name: str
    glidein_name: str
    enabled: bool
    gatekeeper: str
    gridtype: str
    auth_method: str
    trust_domain: str
    #: factory schedd glideins of this entry go to (already resolved to a configured schedd)
    schedd_name: str
    verbosity: str
    work_dir: str
    #: factory-wide attrs overridden by the entry's own
    attrs: dict[str, Attr]
    limits: EntryLimits
    stale_age: StaleAge
    release: ReleasePolicy
    remove: RemovePolicy
    submit: SubmitPolicy
    #: security_name -> allowed security classes (may hold "All"); empty = every configured frontend
    allow_frontends: dict[str, tuple[str, ...]]

    @property
    def grid_resource(self) -> str:
        """The submit file's ``Grid_Resource``."""
        return f"{self.gridtype} {self.gatekeeper}"

    def published_attrs(self) -> dict[str, Any]:
        """Attrs for the glidefactory ad (publish=True), plus upstream's GLIDEIN_Gatekeeper/GridType.

        ``expr`` attrs are ``classad2.ExprTree`` so they are published as expressions, not strings.
        """
        out: dict[str, Any] = {"GLIDEIN_Gatekeeper": self.gatekeeper, "GLIDEIN_GridType": self.gridtype}
        for name, attr in self.attrs.items():
            if attr.publish:
                out[name] = _expr(attr.value) if attr.type == "expr" else attr.value
        return out

    def params(self) -> dict[str, str | int]:
        """The factory's GlideinParam defaults: parameter attrs a frontend may override (const=False).

        ``GLIDEIN_Collector`` is always there as ``"Fake"``: the frontend must send its own.
        """
        out: dict[str, str | int] = {"GLIDEIN_Collector": FAKE_COLLECTOR}
        for name, attr in self.attrs.items():
            if attr.parameter and not attr.const:
                out[name] = attr.value
        return out

    def expected_cores(self) -> int:
        """Cores one glidein is expected to have: GLIDEIN_CPUS if a positive number, else
        GLIDEIN_ESTIMATED_CPUS (for 'auto'/'node'/'slot' or <= 0), else 1."""
        for name in ("GLIDEIN_CPUS", "GLIDEIN_ESTIMATED_CPUS"):
            attr = self.attrs.get(name)
            try:
                cores = int(attr.value) if attr is not None else 0
            except (TypeError, ValueError):
                cores = 0
            if cores > 0:
                return cores
        return 1

    def allows(self, security_name: str, security_class: str) -> bool:
        """Whether allow_frontends admits this frontend security class."""
        if not self.allow_frontends:
            return True
        classes = self.allow_frontends.get(security_name, ())
        return security_class in classes or ALL_SECURITY_CLASSES in classes


@dataclass(frozen=True)
class FrontendSecurity:
    """A frontend the factory serves: its expected identity and security_class -> local username."""

    security_name: str
    identity: str
    security_classes: dict[str, str]


@dataclass(frozen=True)
class SecurityConfig:
    key_length: int
    pub_key: str
    reuse_oldkey_onstartup_gracetime: int
    remove_old_cred_freq: int
    remove_old_cred_age: int
    frontends: dict[str, FrontendSecurity]


@dataclass(frozen=True)
class StageConfig:
    base_dir: str
    web_base_url: str


@dataclass(frozen=True)
class SubmitDirs:
    base_dir: str
    base_log_dir: str
    base_client_log_dir: str
    base_client_proxies_dir: str


@dataclass(frozen=True)
class FactoryConfig:
    """The whole factory.yaml."""

    factory_name: str
    glidein_name: str
    loop_delay: int
    advertise_delay: int
    collector: str
    schedds: tuple[str, ...]
    restart_attempts: int
    restart_interval: int
    #: HoldReasonCode -> recoverable HoldReasonSubCodes (empty = any subcode)
    recoverable_exitcodes: dict[int, frozenset[int]]
    security: SecurityConfig
    stage: StageConfig
    submit: SubmitDirs
    attrs: dict[str, Attr]
    entries: tuple[EntryConfig, ...]

    def entry(self, name: str) -> EntryConfig:
        for entry in self.entries:
            if entry.name == name:
                return entry
        raise KeyError(name)


def ad_name(entry: EntryConfig) -> str:
    """The glidefactory ad Name (and glideclient ReqName): ``entry@glidein@factory``."""
    return f"{entry.name}@{entry.glidein_name}@{entry.factory_name}"


def parse_recoverable_exitcodes(text: str) -> dict[int, frozenset[int]]:
    """Parse upstream's ``recoverable_exitcodes``: 'code [subcode ...],code ...' (ValueError if not)."""
    codes: dict[int, frozenset[int]] = {}
    for item in text.split(","):
        numbers = item.split()
        if not numbers:
            if text.strip():
                raise ValueError(f"empty item in {text!r}")
            continue
        try:
            code, *subcodes = (int(n) for n in numbers)
        except ValueError:
            raise ValueError(f"{item.strip()!r} is not 'code [subcode ...]' in integers") from None
        codes[code] = codes.get(code, frozenset()) | frozenset(subcodes)
    return codes


def load_factory_config(path: str | Path) -> FactoryConfig:
    """Read and validate factory.yaml."""
    return parse_factory_config(load_yaml(path), str(path))


def parse_factory_config(data: Mapping[str, Any], where: str) -> FactoryConfig:
    """Validate an already-loaded factory.yaml mapping; ``where`` names the file in errors."""
    if not isinstance(data, Mapping):
        raise ConfigError(where, None, f"expected a mapping at top level, got {type(data).__name__}")
    top = dict(data)
    nested = {key: top.pop(key, None) for key in ("stage", "submit", "security", "attrs", "entries")}
    knobs = apply_section(top, defaults.FACTORY, where)
    for key in ("factory_name", "glidein_name"):
        _check_safe(knobs[key], where, key)
    _at_least(knobs, ("loop_delay", "advertise_delay"), 1, where, "")
    if not knobs["collector"]:
        raise ConfigError(where, "collector", "is required (the WMS collector, host[:port])")
    schedds = tuple(knobs["schedds"])
    if not schedds:
        raise ConfigError(where, "schedds", "is required (at least one factory schedd)")
    for i, schedd in enumerate(schedds):
        if not isinstance(schedd, str) or not schedd.strip():
            raise ConfigError(where, f"schedds[{i}]", f"expected a schedd name, got {schedd!r}")
    try:
        recoverable = parse_recoverable_exitcodes(knobs["recoverable_exitcodes"])
    except ValueError as exc:
        raise ConfigError(where, "recoverable_exitcodes", str(exc)) from None

    stage = apply_section(nested["stage"], defaults.STAGE, where, "stage")
    if not stage["web_base_url"]:
        raise ConfigError(where, "stage.web_base_url", "is required (URL of the staging area)")
    security = _parse_security(nested["security"], where)
    factory_attrs = _parse_attrs(nested["attrs"], where, "attrs")
    entries_data = _mapping(nested["entries"], where, "entries")
    if not entries_data:
        raise ConfigError(where, "entries", "is required (at least one entry)")
    entries = tuple(
        _parse_entry(name, raw, knobs, schedds, security, factory_attrs, where)
        for name, raw in entries_data.items()
    )
    return FactoryConfig(
        factory_name=knobs["factory_name"],
        glidein_name=knobs["glidein_name"],
        loop_delay=knobs["loop_delay"],
        advertise_delay=knobs["advertise_delay"],
        collector=knobs["collector"],
        schedds=schedds,
        restart_attempts=knobs["restart_attempts"],
        restart_interval=knobs["restart_interval"],
        recoverable_exitcodes=recoverable,
        security=security,
        stage=StageConfig(**stage),
        submit=SubmitDirs(**apply_section(nested["submit"], defaults.SUBMIT_DIRS, where, "submit")),
        attrs=factory_attrs,
        entries=entries,
    )


def _parse_security(raw: Any, where: str) -> SecurityConfig:
    given = dict(_mapping(raw, where, "security"))
    frontends_raw = _mapping(given.pop("frontends", None), where, "security.frontends")
    knobs = apply_section(given, defaults.SECURITY, where, "security")
    if knobs["key_length"] < 1024:
        raise ConfigError(where, "security.key_length", f"must be at least 1024 bits, got {knobs['key_length']}")
    if not frontends_raw:
        raise ConfigError(where, "security.frontends", "is required (at least one frontend to serve)")
    frontends = {}
    for name, fe_raw in frontends_raw.items():
        field = f"security.frontends.{name}"
        _check_safe(name, where, field)
        fe = apply_section(fe_raw, defaults.FRONTEND, where, field)
        if "@" not in fe["identity"]:
            raise ConfigError(where, f"{field}.identity", f"expected user@host, got {fe['identity']!r}")
        if not fe["security_classes"]:
            raise ConfigError(where, f"{field}.security_classes", "is required (security_class: {username: ...})")
        classes = {}
        for sec_class, mapping in fe["security_classes"].items():
            class_field = f"{field}.security_classes.{sec_class}"
            _check_safe(sec_class, where, class_field)
            mapping = _mapping(mapping, where, class_field)
            unknown = set(mapping) - {"username"}
            if unknown:
                raise ConfigError(where, f"{class_field}.{sorted(unknown)[0]}", "unknown setting (valid: username)")
            username = require(mapping, "username", where, f"{class_field}.username")
            _check_safe(username, where, f"{class_field}.username")
            classes[sec_class] = username
        frontends[name] = FrontendSecurity(name, fe["identity"], classes)
    return SecurityConfig(frontends=frontends, **knobs)


def _parse_entry(
    name: Any,
    raw: Any,
    factory: Mapping[str, Any],
    schedds: tuple[str, ...],
    security: SecurityConfig,
    factory_attrs: Mapping[str, Attr],
    where: str,
) -> EntryConfig:
    base = f"entries.{name}"
    _check_safe(name, where, base)
    given = dict(_mapping(raw, where, base))
    attrs_raw = given.pop("attrs", None)
    config = dict(_mapping(given.pop("config", None), where, f"{base}.config"))
    knobs = apply_section(given, defaults.ENTRY, where, base)

    gridtype = " ".join(knobs["gridtype"].split())
    _check_gridtype(gridtype, where, f"{base}.gridtype")
    gatekeeper = " ".join(knobs["gatekeeper"].split())
    if not gatekeeper:
        raise ConfigError(where, f"{base}.gatekeeper", "is required (the CE contact string)")
    if gridtype == "condor" and len(gatekeeper.split()) != 2:
        raise ConfigError(where, f"{base}.gatekeeper",
                          f"gridtype condor needs '<ce host> <ce host>:<port>', got {gatekeeper!r}")
    _check_auth_method(knobs["auth_method"], where, f"{base}.auth_method")
    _check_safe(knobs["trust_domain"], where, f"{base}.trust_domain")
    schedd = knobs["schedd_name"] or schedds[0]
    if schedd not in schedds:
        raise ConfigError(where, f"{base}.schedd_name", f"{schedd!r} is not one of schedds: {', '.join(schedds)}")

    attrs = dict(factory_attrs)
    attrs.update(_parse_attrs(attrs_raw, where, f"{base}.attrs"))
    return EntryConfig(
        name=name,
        factory_name=factory["factory_name"],
        glidein_name=factory["glidein_name"],
        enabled=knobs["enabled"],
        gatekeeper=gatekeeper,
        gridtype=gridtype,
        auth_method=knobs["auth_method"],
        trust_domain=knobs["trust_domain"],
        schedd_name=schedd,
        verbosity=knobs["verbosity"],
        work_dir=knobs["work_dir"],
        attrs=attrs,
        allow_frontends=_parse_allow_frontends(knobs["allow_frontends"], security, where,
                                               f"{base}.allow_frontends"),
        **_parse_entry_config(config, security, where, f"{base}.config"),
    )


def _parse_entry_config(config: dict[str, Any], security: SecurityConfig, where: str, base: str) -> dict[str, Any]:
    sections = {"max_jobs", "stale_age", "release", "remove", "submit"}
    unknown = set(config) - sections
    if unknown:
        raise ConfigError(where, f"{base}.{sorted(unknown)[0]}",
                          f"unknown setting (valid: {', '.join(sorted(sections))})")
    max_jobs = dict(_mapping(config.get("max_jobs"), where, f"{base}.max_jobs"))
    per_frontends_raw = _mapping(max_jobs.pop("per_frontends", None), where, f"{base}.max_jobs.per_frontends")
    unknown = set(max_jobs) - {"per_entry", "default_per_frontend"}
    if unknown:
        raise ConfigError(where, f"{base}.max_jobs.{sorted(unknown)[0]}",
                          "unknown setting (valid: default_per_frontend, per_entry, per_frontends)")
    per_entry = apply_section(max_jobs.get("per_entry"), defaults.PER_ENTRY, where, f"{base}.max_jobs.per_entry")
    default_fe = apply_section(max_jobs.get("default_per_frontend"), defaults.DEFAULT_PER_FRONTEND, where,
                               f"{base}.max_jobs.default_per_frontend")
    per_frontends = {}
    for fe_name, limits_raw in per_frontends_raw.items():
        field = f"{base}.max_jobs.per_frontends.{fe_name}"
        security_name, _, security_class = str(fe_name).partition(":")
        frontend = security.frontends.get(security_name)
        if frontend is None or security_class not in frontend.security_classes:
            raise ConfigError(where, field, "expected '<security_name>:<security_class>' of a frontend in "
                                            "security.frontends")
        given = _mapping(limits_raw, where, field)
        checked = apply_section(given, defaults.DEFAULT_PER_FRONTEND, where, field)
        # keys not given fall back to this entry's default_per_frontend, not to the global defaults
        per_frontends[fe_name] = Limits(**{**default_fe, **{key: checked[key] for key in given}})
    submit = apply_section(config.get("submit"), defaults.SUBMIT, where, f"{base}.submit")
    _at_least(submit, ("cluster_size",), 1, where, f"{base}.submit")
    return {
        "limits": EntryLimits(Limits(**per_entry), Limits(**default_fe), per_frontends),
        "stale_age": StaleAge(**apply_section(config.get("stale_age"), defaults.STALE_AGE, where,
                                              f"{base}.stale_age")),
        "release": ReleasePolicy(**apply_section(config.get("release"), defaults.RELEASE, where,
                                                 f"{base}.release")),
        "remove": RemovePolicy(**apply_section(config.get("remove"), defaults.REMOVE, where,
                                               f"{base}.remove")),
        "submit": SubmitPolicy(**submit),
    }


def _parse_allow_frontends(raw: Mapping[str, Any], security: SecurityConfig, where: str,
                           base: str) -> dict[str, tuple[str, ...]]:
    allowed = {}
    for security_name, classes in raw.items():
        field = f"{base}.{security_name}"
        frontend = security.frontends.get(security_name)
        if frontend is None:
            raise ConfigError(where, field, "is not a frontend in security.frontends")
        if isinstance(classes, str):
            classes = [classes]
        if not isinstance(classes, (list, tuple)) or not classes:
            raise ConfigError(where, field, f"expected a security class, a list of them or 'All', got {classes!r}")
        for sec_class in classes:
            if sec_class != ALL_SECURITY_CLASSES and sec_class not in frontend.security_classes:
                raise ConfigError(where, field, f"{sec_class!r} is not a security class of {security_name} "
                                                f"(valid: {', '.join(sorted(frontend.security_classes))}, All)")
        allowed[security_name] = tuple(classes)
    return allowed


def _parse_attrs(raw: Any, where: str, base: str) -> dict[str, Attr]:
    attrs = {}
    for name, spec in _mapping(raw, where, base).items():
        field = f"{base}.{name}"
        _check_safe(name, where, field)
        if name == "GLIDEIN_Collector":
            raise ConfigError(where, field, "must not be set: each frontend sends its own user collector")
        attrs[name] = _parse_attr(spec, where, field)
    return attrs


def _parse_attr(spec: Any, where: str, field: str) -> Attr:
    if not isinstance(spec, Mapping):
        spec = {"value": spec, "type": "int" if _is_int(spec) else "string"}
    spec = dict(spec)
    if spec.get("value") is None:
        raise ConfigError(where, f"{field}.value", "is required")
    value = spec.pop("value")
    flags = apply_section(spec, defaults.ATTR, where, field)
    kind = flags["type"]
    if isinstance(value, (Mapping, list, tuple)):
        raise ConfigError(where, f"{field}.value", f"expected a scalar, got {type(value).__name__}")
    if kind == "int":
        if not _is_int(value):
            try:
                value = int(str(value).strip())
            except ValueError:
                raise ConfigError(where, f"{field}.value", f"expected an integer (type int), got {value!r}") from None
    elif isinstance(value, bool):
        value = "True" if value else "False"  # upstream spells booleans this way in attrs
    else:
        value = str(value)
    if kind == "expr":
        try:
            _expr(value)
        except Exception as exc:  # the bindings raise their own exception types for syntax errors
            raise ConfigError(where, f"{field}.value", f"not a ClassAd expression: {value!r} ({exc})") from None
    return Attr(value=value, **flags)


def _expr(text: str | int):
    import classad2  # the node side gets the bindings from Debian, the host from the htcondor wheel

    return classad2.ExprTree(str(text))


def _check_gridtype(gridtype: str, where: str, field: str) -> None:
    kind, _, lrms = gridtype.partition(" ")
    if kind in _GLOBUS_GRIDTYPES:
        raise ConfigError(where, field, f"{kind} (Globus GRAM) is not supported, as upstream")
    if kind == "condor" and not lrms:
        return
    if kind == "batch" and lrms in BATCH_LRMS:
        return
    raise ConfigError(where, field, f"{gridtype!r} is not supported (valid: condor, "
                                    + ", ".join(f"batch {lrms}" for lrms in BATCH_LRMS) + ")")


def _check_auth_method(auth_method: str, where: str, field: str) -> None:
    method, *modifiers = auth_method.split("+")
    if method not in AUTH_METHODS:
        raise ConfigError(where, field, f"{method!r} is not an auth method (valid: {', '.join(AUTH_METHODS)})")
    for modifier in modifiers:
        if modifier not in AUTH_MODIFIERS:
            raise ConfigError(where, field, f"+{modifier} is not a modifier (valid: "
                                            + ", ".join(f"+{m}" for m in AUTH_MODIFIERS) + ")")


def _check_safe(name: Any, where: str, field: str) -> None:
    if not isinstance(name, str) or not _SAFE_NAME.match(name):
        raise ConfigError(where, field, f"{name!r} is not a safe name (only letters, digits, '.', '_', '-')")


def _at_least(values: Mapping[str, Any], keys: tuple[str, ...], minimum: int, where: str, base: str) -> None:
    for key in keys:
        if values[key] < minimum:
            field = f"{base}.{key}" if base else key
            raise ConfigError(where, field, f"must be at least {minimum}, got {values[key]}")


def _mapping(value: Any, where: str, field: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(where, field, f"expected a mapping, got {type(value).__name__}")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
