"""The Frontend⇄Factory wire protocol: names, builders and parsers of the ClassAds exchanged through the
factory ("WMS") collector, plus the frontend's informational ``glideresource`` ad in the user pool.

Everything follows upstream GlideinWMS 3.10 (ad types, ``Name`` conventions, attribute names and prefixes,
advertise/invalidate commands, the ``findGroupWork`` query), so upstream operators can read our ads and,
crypto permitting, talk to our daemons.

Ads are plain dicts ``{attribute: value}`` with str / int / float / bool values; an :class:`Expr` value is
a ClassAd expression that the advertising layer must write unquoted.  Builders are pure functions of plain
data; parsers never raise on bad input: they return a typed record or a :class:`Rejected` carrying a one-line
reason for the daemon log.  Trust rests on the collector-inserted ``AuthenticatedIdentity``: the
collector must require authentication and integrity for these updates (as upstream configures it).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .. import __version__
from .crypto import CryptoError, FactoryKeyring, FactoryPublicKey, RequestKey, SymKey

# --- ad types and the collector commands they use ---------------------------------------------------

GLIDEFACTORY = "glidefactory"
GLIDEFACTORYGLOBAL = "glidefactoryglobal"
GLIDEFACTORYCLIENT = "glidefactoryclient"
GLIDECLIENT = "glideclient"
GLIDECLIENTGLOBAL = "glideclientglobal"
GLIDERESOURCE = "glideresource"
GLIDEFRONTENDMONITOR = "glidefrontendmonitor"


@dataclass(frozen=True)
class AdKind:
    """An ad type and the ``condor_advertise`` commands that publish and withdraw it."""

    my_type: str
    update_command: str
    invalidate_command: str


AD_KINDS: dict[str, AdKind] = {
    kind.my_type: kind
    for kind in (
        AdKind(GLIDEFACTORY, "UPDATE_AD_GENERIC", "INVALIDATE_ADS_GENERIC"),
        AdKind(GLIDEFACTORYGLOBAL, "UPDATE_AD_GENERIC", "INVALIDATE_ADS_GENERIC"),
        AdKind(GLIDEFACTORYCLIENT, "UPDATE_LICENSE_AD", "INVALIDATE_LICENSE_ADS"),
        AdKind(GLIDECLIENT, "UPDATE_MASTER_AD", "INVALIDATE_MASTER_ADS"),
        AdKind(GLIDECLIENTGLOBAL, "UPDATE_MASTER_AD", "INVALIDATE_MASTER_ADS"),
        AdKind(GLIDERESOURCE, "UPDATE_AD_GENERIC", "INVALIDATE_ADS_GENERIC"),
        AdKind(GLIDEFRONTENDMONITOR, "UPDATE_AD_GENERIC", "INVALIDATE_ADS_GENERIC"),
    )
}

GLIDEINWMS_VERSION = f"glideinlab {__version__}"
#: the only stage signature type we produce and verify
SIGN_TYPE = "sha256"
SUPPORTED_SIGN_TYPES = (SIGN_TYPE,)
#: we never run a frontend in HA "slave" mode
HA_MODE = "master"
REMOVE_EXCESS_MODES = ("NO", "WAIT", "IDLE", "ALL", "UNREG")

PARAM_PREFIX = "GlideinParam"
ENC_PARAM_PREFIX = "GlideinEncParam"
MONITOR_PREFIX = "GlideinMonitor"
CONFIG_PREFIX = "GlideinConfig"
SUBMIT_PREFIX = "GlideinSubmit"
REQ_PREFIX = "Req"
WEB_PREFIX = "Web"
FACTORY_LIMIT_PREFIX = "Status_GlideFactoryLimit"  # after GlideinMonitor

SCITOKEN_PARAM = "frontend_scitoken"
LICENSE_AD_ADDRESS = "<127.0.0.1:0>"  # placeholder; glidefactoryclient ads are found by Name
IDTOKEN_PARAM_SUFFIX = ".idtoken"
#: credential references a glideclient may carry encrypted (ids of files sent in glideclientglobal)
CREDENTIAL_REF_PARAMS = (
    "SubmitProxy",
    "GlideinProxy",
    "PublicCert",
    "PrivateCert",
    "PublicKey",
    "PrivateKey",
    "Username",
    "Password",
    "AuthFile",
    "VMId",
    "VMType",
    "RemoteUsername",
    "ProjectId",
)

_SAFE_NAME = re.compile(r"[A-Za-z0-9._@-]+")
_ATTR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# entry names go into "<entry>.idtoken" encrypted-param names, so those may hold '.' and '-'
_ENC_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_DIGITS = re.compile(r"\d+")


class Expr(str):
    """An attribute value that is a ClassAd expression (written unquoted), not a string literal."""


# --- names ------------------------------------------------------------------------------------------


def is_safe_name(value: Any) -> bool:
    """Upstream's ``is_str_safe``: names end up in file names and constraints, so only [A-Za-z0-9._@-]."""
    return isinstance(value, str) and _SAFE_NAME.fullmatch(value) is not None


def _require_safe(**names: str) -> None:
    for what, value in names.items():
        if not is_safe_name(value):
            raise ValueError(f"{what} {value!r} must be non-empty and use only [A-Za-z0-9._@-]")


def client_name(frontend_name: str, group_name: str) -> str:
    """``frontend.group``: how factories and glideins (GLIDECLIENT_Name) know a frontend group."""
    return f"{frontend_name}.{group_name}"


def factory_global_ad_name(glidein_name: str, factory_name: str) -> str:
    return f"{glidein_name}@{factory_name}"


def entry_ad_name(entry_name: str, glidein_name: str, factory_name: str) -> str:
    """``entry@glidein@factory``: the glidefactory ``Name`` and the glideclient ``ReqName``."""
    return f"{entry_name}@{glidein_name}@{factory_name}"


def split_entry_ad_name(name: str) -> tuple[str, str, str]:
    """``entry@glidein@factory`` → (entry, glidein, factory); ValueError if it has another shape."""
    parts = name.split("@") if isinstance(name, str) else []
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"{name!r} is not entry@glidein@factory")
    return parts[0], parts[1], parts[2]


def factory_client_ad_name(entry_name: str, glidein_name: str, factory_name: str, client: str) -> str:
    """``entry@glidein@factory@fe.group``: glidefactoryclient and glideresource ``Name``."""
    return f"{entry_ad_name(entry_name, glidein_name, factory_name)}@{client}"


def glideclient_ad_name(
    credential_id: str, entry_name: str, glidein_name: str, factory_name: str, client: str
) -> str:
    """``<credid>_entry@glidein@factory@fe.group``: one request per (entry, credential)."""
    return f"{credential_id}_{factory_client_ad_name(entry_name, glidein_name, factory_name, client)}"


def glideclientglobal_ad_name(glidein_name: str, factory_name: str, client: str) -> str:
    return f"{glidein_name}@{factory_name}@{client}"


def credential_id(*parts: str) -> str:
    """Upstream's credential id: first 8 chars of base32(md5(...)).

    Upstream hashes the credential file name (plus the proxy DN for grid proxies), so the id survives
    renewals of the same credential.
    """
    digest = hashlib.md5("".join(parts).encode("utf-8"), usedforsecurity=False).digest()
    return base64.b32encode(digest).decode("ascii")[:8]


def limit_text(count: int, limit: int, word: str = "limit") -> str:
    """The ``"count=N, limit=M"`` (or ``curb=M``) string of a triggered limit."""
    return f"{count=}, {word}={limit}"


# --- small helpers for building -----------------------------------------------------------------------


def _quote(value: str) -> str:
    """A ClassAd string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _attr_name(prefix: str, name: str, pattern: re.Pattern[str] = _ATTR_NAME) -> str:
    if name.startswith("+"):  # submit attributes like "+maxMemory" (upstream rewrite)
        name = "_PLUS_" + name[1:]
    if not pattern.fullmatch(name):
        raise ValueError(f"{prefix}{name!r} is not a valid ClassAd attribute name")
    return prefix + name


def _value(name: str, value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)):
        return value
    raise ValueError(f"{name}: {type(value).__name__} is not a ClassAd value (str, int, float, bool)")


def _put(ad: dict[str, Any], prefix: str, values: Mapping[str, Any] | None) -> None:
    for name, value in (values or {}).items():
        attr = _attr_name(prefix, name)
        if attr in ad:
            raise ValueError(f"{attr} would overwrite a protocol attribute")
        ad[attr] = _value(attr, value)


def _base(my_type: str, name: str) -> dict[str, Any]:
    return {
        "MyType": my_type,
        "GlideinMyType": my_type,
        "Name": name,
        "GlideinWMSVersion": GLIDEINWMS_VERSION,
    }


def _bool_text(value: bool) -> str:
    # upstream publishes these flags as the strings "True"/"False"; frontends compare against "True"
    return "True" if value else "False"


def _escape_pem(pem: str) -> str:
    # upstream keeps PubKeyValue on one line with literal "\n" sequences
    return pem.replace("\n", "\\n")


def _unescape_pem(value: str) -> str:
    return re.sub(r"\\+n", "\n", value)


# --- factory side builders ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FactoryWeb:
    """The factory stage a glidein downloads from (the glidefactory ``Web*`` attributes)."""

    url: str
    descript_file: str
    descript_sign: str
    entry_descript_file: str
    entry_descript_sign: str


def _pub_key_attrs(public_key: FactoryPublicKey) -> dict[str, Any]:
    return {
        "PubKeyID": public_key.pub_key_id,
        "PubKeyType": public_key.pub_key_type,
        "PubKeyValue": _escape_pem(public_key.pem),
    }


def build_glidefactoryglobal(
    *, factory_name: str, glidein_name: str, public_key: FactoryPublicKey, daemon_start_time: int
) -> dict[str, Any]:
    """One per factory instance: tells frontends which key to encrypt requests with."""
    _require_safe(factory_name=factory_name, glidein_name=glidein_name)
    ad = _base(GLIDEFACTORYGLOBAL, factory_global_ad_name(glidein_name, factory_name))
    ad.update(
        FactoryName=factory_name,
        GlideinName=glidein_name,
        SupportedSignTypes=",".join(SUPPORTED_SIGN_TYPES),
        DaemonStartTime=int(daemon_start_time),
        **_pub_key_attrs(public_key),
    )
    return ad


def build_glidefactory(
    *,
    factory_name: str,
    glidein_name: str,
    entry_name: str,
    public_key: FactoryPublicKey,
    daemon_start_time: int,
    trust_domain: str,
    auth_method: str,
    web: FactoryWeb,
    attrs: Mapping[str, Any],
    params: Mapping[str, Any],
    submit_attrs: Mapping[str, Any] | None = None,
    config_limits: Mapping[str, Any] | None = None,
    monitor: Mapping[str, Any] | None = None,
    in_downtime: bool = False,
    downtime_comment: str = "",
) -> dict[str, Any]:
    """One per entry: what it offers (published ``attrs``), the ``params`` frontends may override, its
    limits (``GlideinConfig*``) and monitoring (``GlideinMonitor*``, keys without the prefix)."""
    _require_safe(factory_name=factory_name, glidein_name=glidein_name, entry_name=entry_name)
    ad = _base(GLIDEFACTORY, entry_ad_name(entry_name, glidein_name, factory_name))
    uses_proxy = "grid_proxy" in auth_method
    ad.update(
        FactoryName=factory_name,
        GlideinName=glidein_name,
        EntryName=entry_name,
        SupportedSignTypes=",".join(SUPPORTED_SIGN_TYPES),
        DaemonStartTime=int(daemon_start_time),
        GLIDEIN_TrustDomain=trust_domain,
        GLIDEIN_SupportedAuthenticationMethod=auth_method,
        GlideinAllowx509_Proxy=_bool_text(uses_proxy),
        GlideinRequirex509_Proxy=_bool_text(uses_proxy),
        GlideinRequireGlideinProxy=_bool_text(not uses_proxy),
        GLIDEIN_In_Downtime=_bool_text(in_downtime),
        GLIDEIN_Downtime_Comment=downtime_comment,
        **_pub_key_attrs(public_key),
    )
    _put(ad, "", attrs)
    # the frontend must always override the collector; "Fake" makes a missing override obvious
    _put(ad, PARAM_PREFIX, {**params, "GLIDEIN_Collector": "Fake"})
    _put(ad, SUBMIT_PREFIX, submit_attrs)
    _put(
        ad,
        WEB_PREFIX,
        {
            "URL": web.url,
            "SignType": SIGN_TYPE,
            "DescriptFile": web.descript_file,
            "DescriptSign": web.descript_sign,
            "EntryDescriptFile": web.entry_descript_file,
            "EntryDescriptSign": web.entry_descript_sign,
        },
    )
    _put(ad, CONFIG_PREFIX, config_limits)
    _put(ad, MONITOR_PREFIX, monitor)
    return ad


def build_glidefactoryclient(
    *,
    factory_name: str,
    glidein_name: str,
    entry_name: str,
    client: str,
    attrs: Mapping[str, Any],
    params: Mapping[str, Any],
    monitor: Mapping[str, Any],
    limits_triggered: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One per (entry, frontend group): what the factory did for that client.

    ``params`` are the effective ones (factory defaults overridden by the client's), ``monitor`` keys are
    without the ``GlideinMonitor`` prefix, ``limits_triggered`` maps a limit name (e.g.
    ``IdleGlideinsPerEntry``, ``TotalPerClass_fe:sc``) to its :func:`limit_text`.
    """
    _require_safe(factory_name=factory_name, glidein_name=glidein_name, entry_name=entry_name, client=client)
    req_name = entry_ad_name(entry_name, glidein_name, factory_name)
    ad = _base(GLIDEFACTORYCLIENT, factory_client_ad_name(entry_name, glidein_name, factory_name, client))
    # the collector keys license ads by Name and address and silently drops one without MyAddress
    ad["MyAddress"] = LICENSE_AD_ADDRESS
    ad.update(
        ReqGlidein=req_name,
        ReqFactoryName=factory_name,
        ReqGlideinName=glidein_name,
        ReqEntryName=entry_name,
        ReqClientName=client,
        ReqClientReqName=req_name,
    )
    _put(ad, "", attrs)
    _put(ad, PARAM_PREFIX, params)
    _put(ad, MONITOR_PREFIX, monitor)
    for limit, text in (limits_triggered or {}).items():
        # per-class limit names carry "fe:secclass", whose characters are not all valid in attribute names
        ad[_attr_name(MONITOR_PREFIX + FACTORY_LIMIT_PREFIX, re.sub(r"\W", "_", limit))] = str(text)
    return ad


# --- frontend side builders ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FrontendWeb:
    """The frontend stage and group stage a glidein downloads from (the glideclient ``Web*``)."""

    url: str
    descript_file: str
    descript_sign: str
    group_url: str
    group_descript_file: str
    group_descript_sign: str
    monitoring_url: str = ""


@dataclass(frozen=True)
class GlideinRequest:
    """The level-based request of one frontend group for one entry (and one credential)."""

    idle_glideins: int
    max_glideins: int
    remove_excess: str
    remove_excess_margin: int
    idle_lifetime: int

    def __post_init__(self) -> None:
        for name in ("idle_glideins", "max_glideins", "remove_excess_margin", "idle_lifetime"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        if self.remove_excess not in REMOVE_EXCESS_MODES:
            modes = ", ".join(REMOVE_EXCESS_MODES)
            raise ValueError(f"remove_excess {self.remove_excess!r} is not one of {modes}")


def _client_envelope(
    ad: dict[str, Any],
    *,
    frontend_name: str,
    group_name: str,
    request_key: RequestKey,
    my_identity: str,
    encrypted: Mapping[str, str | bytes],
) -> None:
    """Identity and crypto attributes shared by glideclient and glideclientglobal."""
    ad.update(
        ClientName=client_name(frontend_name, group_name),
        FrontendName=frontend_name,
        GroupName=group_name,
        FrontendHAMode=HA_MODE,
        ReqPubKeyID=request_key.pub_key_id,
        ReqEncKeyCode=request_key.enc_key_code,
        ReqEncIdentity=request_key.sym_key.encrypt(my_identity),
    )
    for name, value in encrypted.items():
        attr = _attr_name(ENC_PARAM_PREFIX, name, _ENC_PARAM_NAME)
        if attr in ad:
            raise ValueError(f"{attr} is given twice")
        ad[attr] = request_key.sym_key.encrypt(value)


def build_glideclient(
    *,
    frontend_name: str,
    group_name: str,
    entry_name: str,
    glidein_name: str,
    factory_name: str,
    credential_id: str,
    request: GlideinRequest,
    web: FrontendWeb,
    request_key: RequestKey,
    my_identity: str,
    security_name: str,
    security_class: str,
    glidein_collector: str,
    params: Mapping[str, Any] | None = None,
    credential_refs: Mapping[str, str] | None = None,
    scitoken_id: str | None = None,
    scitoken: str | None = None,
    idtoken: str | None = None,
    config_limits: Mapping[str, Any] | None = None,
    monitor: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The request of one frontend group to one entry for one credential.

    ``my_identity`` is the frontend's identity at the factory collector (encrypted as ``ReqEncIdentity``;
    the factory compares it with ``AuthenticatedIdentity``).  ``scitoken`` (for the CE) and ``idtoken``
    (for the glidein, sent as ``<entry>.idtoken``) travel encrypted and inline; ``credential_refs`` are ids
    (e.g. ``SubmitProxy``) of credential files delivered by glideclientglobal.
    """
    client = client_name(frontend_name, group_name)
    _require_safe(
        frontend_name=frontend_name,
        group_name=group_name,
        entry_name=entry_name,
        glidein_name=glidein_name,
        factory_name=factory_name,
        credential_id=credential_id,
        security_name=security_name,
        security_class=security_class,
    )
    params = dict(params or {})
    if "GLIDEIN_Collector" in params:
        raise ValueError("GLIDEIN_Collector is derived from glidein_collector; do not pass it in params")
    refs = dict(credential_refs or {})
    unknown = sorted(set(refs) - set(CREDENTIAL_REF_PARAMS))
    if unknown:
        raise ValueError(
            f"unknown credential references {unknown} (known: {', '.join(CREDENTIAL_REF_PARAMS)})"
        )
    req_name = entry_ad_name(entry_name, glidein_name, factory_name)
    ad = _base(
        GLIDECLIENT, glideclient_ad_name(credential_id, entry_name, glidein_name, factory_name, client)
    )
    encrypted: dict[str, str] = {"SecurityName": security_name, "SecurityClass": security_class, **refs}
    if scitoken_id is not None:
        encrypted["ScitokenId"] = scitoken_id
    if scitoken is not None:
        encrypted[SCITOKEN_PARAM] = scitoken
    if idtoken is not None:
        encrypted[entry_name + IDTOKEN_PARAM_SUFFIX] = idtoken
    _client_envelope(
        ad,
        frontend_name=frontend_name,
        group_name=group_name,
        request_key=request_key,
        my_identity=my_identity,
        encrypted=encrypted,
    )
    ad.update(
        ReqName=req_name,
        ReqGlidein=req_name,
        ReqIdleGlideins=request.idle_glideins,
        ReqMaxGlideins=request.max_glideins,
        ReqRemoveExcess=request.remove_excess,
        ReqRemoveExcessMargin=request.remove_excess_margin,
        ReqIdleLifetime=str(request.idle_lifetime),  # upstream sends it as a string
    )
    web_attrs = {
        "URL": web.url,
        "SignType": SIGN_TYPE,
        "DescriptFile": web.descript_file,
        "DescriptSign": web.descript_sign,
        "GroupURL": web.group_url,
        "GroupDescriptFile": web.group_descript_file,
        "GroupDescriptSign": web.group_descript_sign,
    }
    if web.monitoring_url:
        web_attrs["MonitoringURL"] = web.monitoring_url
    _put(ad, WEB_PREFIX, web_attrs)
    _put(ad, PARAM_PREFIX, {**params, "GLIDEIN_Collector": glidein_collector})
    _put(ad, CONFIG_PREFIX, config_limits)
    _put(ad, MONITOR_PREFIX, monitor)
    return ad


@dataclass(frozen=True)
class CredentialFile:
    """A credential file delivered to the factory in glideclientglobal (content encrypted)."""

    content: bytes
    security_class: str


_GLOBAL_RESERVED_ENC = ("SecurityName", "NumberOfCredentials")


def build_glideclientglobal(
    *,
    frontend_name: str,
    group_name: str,
    glidein_name: str,
    factory_name: str,
    request_key: RequestKey,
    my_identity: str,
    security_name: str,
    credentials: Mapping[str, CredentialFile],
) -> dict[str, Any]:
    """One per (group, factory instance): delivers credential files, keyed by credential id."""
    client = client_name(frontend_name, group_name)
    _require_safe(
        frontend_name=frontend_name,
        group_name=group_name,
        glidein_name=glidein_name,
        factory_name=factory_name,
        security_name=security_name,
    )
    encrypted: dict[str, str | bytes] = {
        "SecurityName": security_name,
        "NumberOfCredentials": str(len(credentials)),
    }
    for cred_id, cred in credentials.items():
        reserved = cred_id in _GLOBAL_RESERVED_ENC or cred_id.startswith("SecurityClass")
        if reserved or not _ATTR_NAME.fullmatch(cred_id):
            raise ValueError(f"credential id {cred_id!r} is not usable as an attribute name")
        _require_safe(security_class=cred.security_class)
        encrypted[cred_id] = cred.content
        encrypted["SecurityClass" + cred_id] = cred.security_class
    ad = _base(GLIDECLIENTGLOBAL, glideclientglobal_ad_name(glidein_name, factory_name, client))
    _client_envelope(
        ad,
        frontend_name=frontend_name,
        group_name=group_name,
        request_key=request_key,
        my_identity=my_identity,
        encrypted=encrypted,
    )
    return ad


@dataclass(frozen=True)
class MatchExprs:
    """The group's expressions, published in glideresource so users can see why a job does not match."""

    match_expr: str
    job_query_expr: str
    factory_query_expr: str
    start_expr: str


# glidefactory attributes that glideresource does not copy: keys, identity and collector bookkeeping
_RESOURCE_SKIPPED_ENTRY_ATTRS = frozenset(
    {
        "MyType",
        "GlideinMyType",
        "TargetType",
        "Name",
        "CurrentTime",
        "USE_CCB",
        "PubKeyValue",
        "PubKeyType",
        "PubKeyID",
        "AuthenticatedIdentity",
        "GlideinName",
        "FactoryName",
        "EntryName",
        "GlideinWMSVersion",
        "LastHeardFrom",
        "SupportedSignTypes",
        "GLIDEIN_In_Downtime",
        "UpdateSequenceNumber",
        "DaemonStartTime",
        "UpdatesTotal",
        "UpdatesSequenced",
        "UpdatesLost",
        "UpdatesHistory",
    }
)


def build_glideresource(
    *,
    frontend_name: str,
    group_name: str,
    entry: FactoryEntry,
    match: MatchExprs,
    client_monitor: Mapping[str, Any],
    client_config: Mapping[str, Any] | None = None,
    factory_monitor: Mapping[str, Any] | None = None,
    limits_triggered: Mapping[str, str] | None = None,
    curbs_triggered: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One per matched entry, advertised to the user pool for users and operators to query.

    ``client_monitor`` keys are the ``GlideClientMonitor`` suffixes (``JobsIdle``, ``GlideinsRunning``,
    ...); ``factory_monitor`` is the glidefactoryclient monitor dict (its ``Total*`` keys are published as
    ``GlideFactoryMonitor*``); triggered limits/curbs map a name to its :func:`limit_text`.
    """
    client = client_name(frontend_name, group_name)
    _require_safe(frontend_name=frontend_name, group_name=group_name)
    ad = _base(GLIDERESOURCE, f"{entry.name}@{client}")
    for attr, value in entry.ad.items():
        if attr in _RESOURCE_SKIPPED_ENTRY_ATTRS or attr.startswith(ENC_PARAM_PREFIX):
            continue
        if attr.startswith(CONFIG_PREFIX):
            attr = "GlideFactoryConfig" + attr[len(CONFIG_PREFIX) :]
        ad[attr] = value
    ad.update(
        GlideFactoryName=entry.name,
        GlideClientName=client,
        GlideFrontendName=frontend_name,
        GlideGroupName=group_name,
        GlideFrontendHAMode=HA_MODE,
        GLIDEIN_In_Downtime=_bool_text(entry.in_downtime),
        # upstream swaps these names and contents (ResourceClassad.setMatchExprs); kept for compatibility
        GlideClientMatchingGlideinCondorExpr=match.match_expr,
        GlideClientConstraintJobCondorExpr=match.job_query_expr,
        GlideClientMatchingInternalPythonExpr=match.factory_query_expr,
        GlideClientConstraintFactoryCondorExpr=match.start_expr,
    )
    for key, value in (factory_monitor or {}).items():
        if key.startswith("Total") and not key.startswith("TotalClientMonitor"):
            ad[_attr_name("GlideFactoryMonitor", key[len("Total") :])] = value
    for prefix, values in (("GlideClientMonitor", client_monitor), ("GlideClientConfig", client_config)):
        for key, value in (values or {}).items():
            ad[_attr_name(prefix, key)] = _value(prefix + key, value)
    for prefix, values in (("GlideClientLimit", limits_triggered), ("GlideClientCurb", curbs_triggered)):
        for key, text in (values or {}).items():
            ad[_attr_name(prefix, key)] = str(text)
    return ad


# --- update sequence numbers and invalidation ---------------------------------------------------------


class UpdateSequence:
    """Per-ad-name ``UpdateSequenceNumber`` (0, 1, 2, ... for each name), stamped when an ad is sent.

    The collector uses it with ``DaemonStartTime`` to count lost updates; builders stay pure and the
    advertiser stamps each ad it actually sends.
    """

    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    def stamp(self, ad: Mapping[str, Any]) -> dict[str, Any]:
        name = ad["Name"]
        number = self._last.get(name, -1) + 1
        self._last[name] = number
        return {**ad, "UpdateSequenceNumber": number}


@dataclass(frozen=True)
class Invalidation:
    """What to send to withdraw ads: the command and the query ad (``Requirements`` is an :class:`Expr`)."""

    command: str
    ad: dict[str, Any]


def invalidation(my_type: str, **attr_values: str) -> Invalidation:
    """Withdraw every ad of ``my_type`` whose attributes equal ``attr_values`` (case-sensitively).

    E.g. ``invalidation(GLIDECLIENT, ClientName="fe.main")`` at frontend group shutdown, or
    ``invalidation(GLIDEFACTORYCLIENT, ReqGlidein="e@g@f")`` when an entry stops.
    """
    kind = AD_KINDS[my_type]
    terms = [f"(GlideinMyType=?={_quote(my_type)})"]
    terms += [f"({attr}=?={_quote(value)})" for attr, value in attr_values.items()]
    ad = {"MyType": "Query", "TargetType": my_type, "Requirements": Expr(" && ".join(terms))}
    return Invalidation(kind.invalidate_command, ad)


# --- query constraints --------------------------------------------------------------------------------


def glideclient_constraint(req_glideins: Iterable[str], pub_key_ids: Iterable[str]) -> str:
    """The factory's single query for its work (upstream ``findGroupWork``).

    ``req_glideins`` are ``entry@glidein@factory`` names; requests encrypted with any of ``pub_key_ids``
    (current + previous key) match, and so do unencrypted ones, so that the factory can log why it rejects
    them instead of silently ignoring a misconfigured frontend.
    """
    names = sorted(req_glideins)
    ids = sorted(pub_key_ids)
    for req_glidein in names:
        _require_safe(req_glidein=req_glidein)
    if not names or not ids:
        raise ValueError("need at least one entry name and one public key id")
    key_match = " || ".join(f"(ReqPubKeyID=?={_quote(i)})" for i in ids)
    return (
        f"(GlideinMyType=?={_quote(GLIDECLIENT)})"
        f" && (stringListMember(ReqGlidein, {_quote(','.join(names))}) =?= true)"
        f" && (stringListMember(WebSignType, {_quote(','.join(SUPPORTED_SIGN_TYPES))}) =?= true)"
        f" && ((({key_match}) && (ReqEncKeyCode=!=undefined) && (ReqEncIdentity=!=undefined))"
        f" || (ReqPubKeyID=?=undefined))"
    )


def glideclientglobal_constraint(glidein_name: str, factory_name: str) -> str:
    """The factory's query for credential deliveries addressed to it (``glidein@factory@...`` names)."""
    _require_safe(glidein_name=glidein_name, factory_name=factory_name)
    prefix = factory_global_ad_name(glidein_name, factory_name) + "@"
    return (
        f"(GlideinMyType=?={_quote(GLIDECLIENTGLOBAL)})"
        f" && (substr(Name, 0, {len(prefix)}) =?= {_quote(prefix)})"
    )


def glidefactory_constraint(factory_query_expr: str | None = None) -> str:
    """The frontend's query for entries it could use (plus its configured ``factory query_expr``)."""
    constraint = (
        f"(GlideinMyType=?={_quote(GLIDEFACTORY)})"
        f" && (stringListMember({_quote(SIGN_TYPE)}, SupportedSignTypes) =?= true)"
    )
    return f"{constraint} && ({factory_query_expr})" if factory_query_expr else constraint


def glidefactoryglobal_constraint() -> str:
    return f"(GlideinMyType=?={_quote(GLIDEFACTORYGLOBAL)}) && (PubKeyType=?={_quote('RSA')})"


def glidefactoryclient_constraint(client: str) -> str:
    """The frontend's query for what factories report about its group."""
    _require_safe(client=client)
    return f"(GlideinMyType=?={_quote(GLIDEFACTORYCLIENT)}) && (ReqClientName=?={_quote(client)})"


# --- parsing ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rejected:
    """An ad that is not acted upon; ``str()`` is the line the daemon logs."""

    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"


class _Reject(Exception):
    """Raised inside parsers, turned into :class:`Rejected` at their boundary."""


def _safe_attr(ad: Mapping[str, Any], attr: str) -> str:
    value = ad.get(attr)
    if value is None:
        raise _Reject(f"missing {attr}")
    if not is_safe_name(value):
        raise _Reject(f"{attr} {value!r} has characters outside [A-Za-z0-9._@-]")
    return value


def _count(ad: Mapping[str, Any], attr: str, missing: int | None = None) -> int:
    """A non-negative integer; ClassAd ints or decimal strings (upstream sends some numbers as strings)."""
    value = ad.get(attr)
    if value is None:
        if missing is None:
            raise _Reject(f"missing {attr}")
        return missing
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        number = int(value.strip())
    else:
        raise _Reject(f"{attr} {value!r} is not a whole number")
    if number < 0:
        raise _Reject(f"{attr} {number} is negative")
    return number


def _flag(ad: Mapping[str, Any], attr: str) -> bool:
    value = ad.get(attr, False)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise _Reject(f"{attr} {value!r} is not a boolean")


def _strip_prefix(ad: Mapping[str, Any], prefix: str, skip: Iterable[str] = ()) -> dict[str, Any]:
    skip = frozenset(skip)
    return {k[len(prefix) :]: v for k, v in ad.items() if k.startswith(prefix) and k not in skip}


def _identity(ad: Mapping[str, Any]) -> str:
    identity = ad.get("AuthenticatedIdentity")
    if not isinstance(identity, str) or not identity:
        raise _Reject("no AuthenticatedIdentity: the collector did not authenticate the publisher")
    return identity


def _open_envelope(
    ad: Mapping[str, Any], keyring: FactoryKeyring, now: float | None
) -> tuple[str, dict[str, bytes]]:
    """Check the sender's identity and decrypt every ``GlideinEncParam*``; returns (identity, params)."""
    identity = _identity(ad)
    pub_key_id = ad.get("ReqPubKeyID")
    if pub_key_id is None:
        raise _Reject("unencrypted request (no ReqPubKeyID); only encrypted requests are accepted")
    factory_key = keyring.find(str(pub_key_id), now)
    if factory_key is None:
        raise _Reject(f"ReqPubKeyID {pub_key_id!r} is not a current factory key (frontend has a stale key?)")
    for attr in ("ReqEncKeyCode", "ReqEncIdentity"):
        if not isinstance(ad.get(attr), str):
            raise _Reject(f"missing {attr}")
    try:
        sym_key: SymKey = factory_key.unwrap(ad["ReqEncKeyCode"])
        claimed = sym_key.decrypt(ad["ReqEncIdentity"])
    except CryptoError as exc:
        raise _Reject(str(exc)) from None
    if claimed != identity:
        raise _Reject(
            f"ReqEncIdentity {claimed!r} != AuthenticatedIdentity {identity!r} (spoofed or misconfigured)"
        )
    decrypted: dict[str, bytes] = {}
    for attr, value in ad.items():
        if attr.startswith(ENC_PARAM_PREFIX):
            if not isinstance(value, str):
                raise _Reject(f"{attr} is not a hex string")
            try:
                decrypted[attr[len(ENC_PARAM_PREFIX) :]] = sym_key.decrypt_bytes(value)
            except CryptoError as exc:
                raise _Reject(f"{attr}: {exc}") from None
    return identity, decrypted


def _text_params(decrypted: Mapping[str, bytes]) -> dict[str, str]:
    out = {}
    for name, value in decrypted.items():
        try:
            out[name] = value.decode("utf-8")
        except UnicodeDecodeError:
            raise _Reject(f"{ENC_PARAM_PREFIX}{name} is not UTF-8 text") from None
    return out


def _security(params: Mapping[str, str], *, with_class: bool) -> tuple[str, str]:
    names = ("SecurityName", "SecurityClass") if with_class else ("SecurityName",)
    for name in names:
        if name not in params:
            raise _Reject(f"missing {ENC_PARAM_PREFIX}{name}")
        if not is_safe_name(params[name]):
            raise _Reject(f"{name} {params[name]!r} has characters outside [A-Za-z0-9._@-]")
    return params["SecurityName"], params.get("SecurityClass", "")


@dataclass(frozen=True)
class ClientRequest:
    """A validated, decrypted glideclient ad (factory side), split by prefix as upstream does."""

    name: str  # the ad Name, the work key
    entry_name: str
    req_name: str  # entry@glidein@factory
    client_name: str  # fe.group
    frontend_name: str
    group_name: str
    authenticated_identity: str
    security_name: str
    security_class: str
    idle_glideins: int
    max_glideins: int
    remove_excess: str
    remove_excess_margin: int
    idle_lifetime: int
    requests: dict[str, Any]  # Req* without the prefix, typed
    web: dict[str, Any]  # Web*
    params: dict[str, Any]  # GlideinParam*
    params_decrypted: dict[str, str]  # GlideinEncParam*, decrypted
    monitor: dict[str, Any]  # GlideinMonitor*
    internals: dict[str, Any]

    @property
    def scitoken(self) -> str | None:
        return self.params_decrypted.get(SCITOKEN_PARAM)

    @property
    def idtoken(self) -> str | None:
        return self.params_decrypted.get(self.entry_name + IDTOKEN_PARAM_SUFFIX)

    @property
    def credential_refs(self) -> dict[str, str]:
        return {k: v for k, v in self.params_decrypted.items() if k in CREDENTIAL_REF_PARAMS}


# upstream's findGroupWork keeps these out of the prefix splits
_CLIENT_RESERVED = (
    "ReqName",
    "ReqGlidein",
    "ClientName",
    "FrontendName",
    "GroupName",
    "ReqPubKeyID",
    "ReqEncKeyCode",
    "ReqEncIdentity",
    "AuthenticatedIdentity",
)
_CLIENT_INTERNALS = (
    "ClientName",
    "FrontendName",
    "GroupName",
    "ReqName",
    "LastHeardFrom",
    "ReqPubKeyID",
    "AuthenticatedIdentity",
)


def _ad_name(ad: Mapping[str, Any]) -> str:
    name = ad.get("Name")
    return name if isinstance(name, str) and name else "<ad without Name>"


def parse_glideclient(
    ad: Mapping[str, Any], keyring: FactoryKeyring, now: float | None = None
) -> ClientRequest | Rejected:
    """Validate and decrypt one request (factory side); never raises on bad input."""
    name = _ad_name(ad)
    try:
        return _parse_glideclient(ad, keyring, now)
    except _Reject as exc:
        return Rejected(name, str(exc))


def _parse_glideclient(ad: Mapping[str, Any], keyring: FactoryKeyring, now: float | None) -> ClientRequest:
    name = _safe_attr(ad, "Name")
    client = _safe_attr(ad, "ClientName")
    frontend_name = _safe_attr(ad, "FrontendName")
    group_name = _safe_attr(ad, "GroupName")
    req_name = _safe_attr(ad, "ReqName")
    try:
        entry_name = split_entry_ad_name(req_name)[0]
    except ValueError as exc:
        raise _Reject(f"ReqName: {exc}") from None
    if ad.get("ReqGlidein", req_name) != req_name:
        raise _Reject(f"ReqGlidein {ad.get('ReqGlidein')!r} differs from ReqName {req_name!r}")
    if ad.get("WebSignType") not in SUPPORTED_SIGN_TYPES:
        raise _Reject(
            f"WebSignType {ad.get('WebSignType')!r} is not one of {', '.join(SUPPORTED_SIGN_TYPES)}"
        )
    identity, decrypted = _open_envelope(ad, keyring, now)
    params_decrypted = _text_params(decrypted)
    if "x509_proxy_0" in params_decrypted:
        raise _Reject("v2 protocol request (x509_proxy_0) is not supported")
    security_name, security_class = _security(params_decrypted, with_class=True)
    idle = _count(ad, "ReqIdleGlideins")
    max_glideins = _count(ad, "ReqMaxGlideins")
    remove_excess = ad.get("ReqRemoveExcess", "NO")  # older frontends omit it: no removal
    if remove_excess not in REMOVE_EXCESS_MODES:
        raise _Reject(f"ReqRemoveExcess {remove_excess!r} is not one of {', '.join(REMOVE_EXCESS_MODES)}")
    margin = _count(ad, "ReqRemoveExcessMargin", missing=0)
    idle_lifetime = _count(ad, "ReqIdleLifetime", missing=0)
    requests = _strip_prefix(ad, REQ_PREFIX, _CLIENT_RESERVED)
    requests.update(
        IdleGlideins=idle,
        MaxGlideins=max_glideins,
        RemoveExcess=remove_excess,
        RemoveExcessMargin=margin,
        IdleLifetime=idle_lifetime,
    )
    return ClientRequest(
        name=name,
        entry_name=entry_name,
        req_name=req_name,
        client_name=client,
        frontend_name=frontend_name,
        group_name=group_name,
        authenticated_identity=identity,
        security_name=security_name,
        security_class=security_class,
        idle_glideins=idle,
        max_glideins=max_glideins,
        remove_excess=remove_excess,
        remove_excess_margin=margin,
        idle_lifetime=idle_lifetime,
        requests=requests,
        web=_strip_prefix(ad, WEB_PREFIX, _CLIENT_RESERVED),
        params=_strip_prefix(ad, PARAM_PREFIX, _CLIENT_RESERVED),
        params_decrypted=params_decrypted,
        monitor=_strip_prefix(ad, MONITOR_PREFIX, _CLIENT_RESERVED),
        internals={k: ad[k] for k in _CLIENT_INTERNALS if k in ad},
    )


@dataclass(frozen=True)
class ClientCredentials:
    """A validated, decrypted glideclientglobal ad: the credential files of one frontend group."""

    name: str
    client_name: str
    frontend_name: str
    group_name: str
    authenticated_identity: str
    security_name: str
    credentials: dict[str, CredentialFile]


def parse_glideclientglobal(
    ad: Mapping[str, Any], keyring: FactoryKeyring, now: float | None = None
) -> ClientCredentials | Rejected:
    """Validate and decrypt one credential delivery (factory side); never raises on bad input."""
    name = _ad_name(ad)
    try:
        name = _safe_attr(ad, "Name")
        client = _safe_attr(ad, "ClientName")
        frontend_name = _safe_attr(ad, "FrontendName")
        group_name = _safe_attr(ad, "GroupName")
        identity, decrypted = _open_envelope(ad, keyring, now)
        text = {k: decrypted[k] for k in ("SecurityName",) if k in decrypted}
        security_name, _ = _security(_text_params(text), with_class=False)
        credentials = {}
        for key, value in decrypted.items():
            if not key.startswith("SecurityClass"):
                continue
            cred_id = key[len("SecurityClass") :]
            if cred_id not in decrypted:
                raise _Reject(f"{ENC_PARAM_PREFIX}{key} has no credential {ENC_PARAM_PREFIX}{cred_id}")
            security_class = _text_params({key: value})[key]
            if not is_safe_name(cred_id) or not is_safe_name(security_class):
                raise _Reject(
                    f"credential {cred_id!r} / security class {security_class!r} is not a safe name"
                )
            credentials[cred_id] = CredentialFile(decrypted[cred_id], security_class)
    except _Reject as exc:
        return Rejected(name, str(exc))
    return ClientCredentials(name, client, frontend_name, group_name, identity, security_name, credentials)


def _factory_identity(ad: Mapping[str, Any], expected_identity: str) -> str:
    identity = _identity(ad)
    if identity != expected_identity:
        raise _Reject(
            f"AuthenticatedIdentity {identity!r} is not the configured factory_identity {expected_identity!r}"
        )
    return identity


def _public_key(ad: Mapping[str, Any], required: bool) -> FactoryPublicKey | None:
    if ad.get("PubKeyType") != "RSA" or "PubKeyID" not in ad or "PubKeyValue" not in ad:
        if required:
            raise _Reject("no RSA public key (PubKeyType/PubKeyID/PubKeyValue)")
        return None
    try:
        return FactoryPublicKey.from_pem(_unescape_pem(str(ad["PubKeyValue"])), str(ad["PubKeyID"]))
    except CryptoError as exc:
        raise _Reject(f"PubKeyValue: {exc}") from None


def _sign_types(ad: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(s.strip() for s in str(ad.get("SupportedSignTypes", "")).split(",") if s.strip())


@dataclass(frozen=True)
class FactoryGlobal:
    """A validated glidefactoryglobal ad (frontend side)."""

    name: str
    factory_name: str
    glidein_name: str
    authenticated_identity: str
    public_key: FactoryPublicKey
    supported_sign_types: tuple[str, ...]


def parse_glidefactoryglobal(ad: Mapping[str, Any], expected_identity: str) -> FactoryGlobal | Rejected:
    name = _ad_name(ad)
    try:
        identity = _factory_identity(ad, expected_identity)
        return FactoryGlobal(
            name=_safe_attr(ad, "Name"),
            factory_name=_safe_attr(ad, "FactoryName"),
            glidein_name=_safe_attr(ad, "GlideinName"),
            authenticated_identity=identity,
            public_key=_public_key(ad, required=True),
            supported_sign_types=_sign_types(ad),
        )
    except _Reject as exc:
        return Rejected(name, str(exc))


# glidefactory attributes that are protocol structure, not entry attributes
_ENTRY_STRUCTURAL = frozenset(
    {
        "MyType",
        "GlideinMyType",
        "TargetType",
        "Name",
        "FactoryName",
        "GlideinName",
        "EntryName",
        "SupportedSignTypes",
        "DaemonStartTime",
        "GlideinWMSVersion",
        "UpdateSequenceNumber",
        "PubKeyID",
        "PubKeyType",
        "PubKeyValue",
        "AuthenticatedIdentity",
        "LastHeardFrom",
        "CurrentTime",
        "UpdatesTotal",
        "UpdatesSequenced",
        "UpdatesLost",
        "UpdatesHistory",
    }
)
_ENTRY_PREFIXES = (PARAM_PREFIX, ENC_PARAM_PREFIX, MONITOR_PREFIX, CONFIG_PREFIX, SUBMIT_PREFIX, WEB_PREFIX)


@dataclass(frozen=True)
class FactoryEntry:
    """A validated glidefactory ad (frontend side).  ``ad`` is the whole ad (the match TARGET)."""

    name: str  # entry@glidein@factory
    entry_name: str
    glidein_name: str
    factory_name: str
    authenticated_identity: str
    trust_domain: str
    auth_method: str
    in_downtime: bool
    supported_sign_types: tuple[str, ...]
    public_key: FactoryPublicKey | None
    attrs: dict[str, Any]  # published entry attributes (no prefix, no protocol structure)
    params: dict[str, Any]
    submit: dict[str, Any]
    web: dict[str, Any]
    config: dict[str, Any]
    monitor: dict[str, Any]
    ad: dict[str, Any]


def parse_glidefactory(ad: Mapping[str, Any], expected_identity: str) -> FactoryEntry | Rejected:
    name = _ad_name(ad)
    try:
        identity = _factory_identity(ad, expected_identity)
        name = _safe_attr(ad, "Name")
        entry_name = _safe_attr(ad, "EntryName")
        glidein_name = _safe_attr(ad, "GlideinName")
        factory_name = _safe_attr(ad, "FactoryName")
        if name != entry_ad_name(entry_name, glidein_name, factory_name):
            raise _Reject("Name is not EntryName@GlideinName@FactoryName")
        attrs = {
            k: v for k, v in ad.items() if k not in _ENTRY_STRUCTURAL and not k.startswith(_ENTRY_PREFIXES)
        }
        return FactoryEntry(
            name=name,
            entry_name=entry_name,
            glidein_name=glidein_name,
            factory_name=factory_name,
            authenticated_identity=identity,
            trust_domain=str(ad.get("GLIDEIN_TrustDomain", "")),
            auth_method=str(ad.get("GLIDEIN_SupportedAuthenticationMethod", "")),
            in_downtime=_flag(ad, "GLIDEIN_In_Downtime"),
            supported_sign_types=_sign_types(ad),
            public_key=_public_key(ad, required=False),
            attrs=attrs,
            params=_strip_prefix(ad, PARAM_PREFIX),
            submit=_strip_prefix(ad, SUBMIT_PREFIX),
            web=_strip_prefix(ad, WEB_PREFIX),
            config=_strip_prefix(ad, CONFIG_PREFIX),
            monitor=_strip_prefix(ad, MONITOR_PREFIX),
            ad=dict(ad),
        )
    except _Reject as exc:
        return Rejected(name, str(exc))


@dataclass(frozen=True)
class FactoryClientStatus:
    """A validated glidefactoryclient ad (frontend side): what a factory did for our group at one entry."""

    name: str
    req_glidein: str  # entry@glidein@factory
    client_name: str
    authenticated_identity: str
    monitor: dict[str, Any]  # GlideinMonitor* without the prefix, triggered limits excluded
    limits_triggered: dict[str, str]


def parse_glidefactoryclient(ad: Mapping[str, Any], expected_identity: str) -> FactoryClientStatus | Rejected:
    name = _ad_name(ad)
    try:
        identity = _factory_identity(ad, expected_identity)
        monitor = _strip_prefix(ad, MONITOR_PREFIX)
        limits = {
            k[len(FACTORY_LIMIT_PREFIX) :]: str(v)
            for k, v in monitor.items()
            if k.startswith(FACTORY_LIMIT_PREFIX)
        }
        return FactoryClientStatus(
            name=_safe_attr(ad, "Name"),
            req_glidein=_safe_attr(ad, "ReqGlidein"),
            client_name=_safe_attr(ad, "ReqClientName"),
            authenticated_identity=identity,
            monitor={k: v for k, v in monitor.items() if not k.startswith(FACTORY_LIMIT_PREFIX)},
            limits_triggered=limits,
        )
    except _Reject as exc:
        return Rejected(name, str(exc))
