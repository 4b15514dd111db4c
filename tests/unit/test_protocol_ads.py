"""Tests for glideinlab.protocol.ads: names, builders, parsers (tampering, junk) and query constraints.

Constraints are evaluated with the real ClassAd library against the ads the builders produce.
"""

from __future__ import annotations

import hashlib
from base64 import b32encode
from typing import Any

import classad2
import htcondor2  # noqa: F401  registers HTCondor's ClassAd functions (stringListMember) as in a collector
import pytest

from glideinlab import __version__
from glideinlab.protocol import ads
from glideinlab.protocol.crypto import FactoryKey, FactoryKeyring, RequestKey, SymKey, wrap

FRONTEND_IDENTITY = "vofrontend_service@factory.example.org"
FACTORY_IDENTITY = "gfactory@factory.example.org"
ENTRY, GLIDEIN, FACTORY = "ce-workspace", "gfactory_instance", "gfactory_service"
REQ_NAME = f"{ENTRY}@{GLIDEIN}@{FACTORY}"


@pytest.fixture(scope="module")
def factory_key() -> FactoryKey:
    return FactoryKey.generate(2048)


@pytest.fixture(scope="module")
def other_factory_key() -> FactoryKey:
    return FactoryKey.generate(2048)


@pytest.fixture(scope="module")
def keyring(factory_key) -> FactoryKeyring:
    return FactoryKeyring(factory_key)


@pytest.fixture(scope="module")
def request_key(factory_key) -> RequestKey:
    return RequestKey.new(factory_key.public)


WEB = ads.FrontendWeb(
    url="http://fe.example.org/vofrontend/stage",
    descript_file="description.abc.cfg",
    descript_sign="a" * 64,
    group_url="http://fe.example.org/vofrontend/stage/group_main",
    group_descript_file="description.def.cfg",
    group_descript_sign="b" * 64,
    monitoring_url="http://fe.example.org/vofrontend/monitor",
)


def make_glideclient(request_key: RequestKey, **overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = dict(
        frontend_name="vofrontend_service",
        group_name="main",
        entry_name=ENTRY,
        glidein_name=GLIDEIN,
        factory_name=FACTORY,
        credential_id="ABCD2345",
        request=ads.GlideinRequest(
            idle_glideins=4, max_glideins=12, remove_excess="WAIT", remove_excess_margin=2, idle_lifetime=3600
        ),
        web=WEB,
        request_key=request_key,
        my_identity=FRONTEND_IDENTITY,
        security_name="vofrontend_service",
        security_class="frontend",
        glidein_collector="fe.example.org:9618",
        params={"GLIDEIN_Max_Idle": 1200, "USE_MATCH_AUTH": "True"},
        credential_refs={"ProjectId": "p1"},
        scitoken_id="TOKEN234",
        scitoken="scitoken.jwt.value",
        idtoken="idtoken.jwt.value",
        config_limits={"GroupMaxIdlePerEntry": 100},
        monitor={"Idle": 7, "Running": 3},
    )
    kwargs.update(overrides)
    return ads.build_glideclient(**kwargs)


def received(ad: dict[str, Any], identity: str | None = FRONTEND_IDENTITY) -> dict[str, Any]:
    """The ad as the collector returns it: plus the authenticated identity of the publisher."""
    out = dict(ad)
    if identity is not None:
        out["AuthenticatedIdentity"] = identity
    return out


def to_classad(ad: dict[str, Any]) -> classad2.ClassAd:
    return classad2.ClassAd(
        {k: classad2.ExprTree(v) if isinstance(v, ads.Expr) else v for k, v in ad.items()}
    )


def matches(constraint: str, ad: dict[str, Any]) -> bool:
    return classad2.ExprTree(constraint).eval(to_classad(ad)) is True


# --- names --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "function, args, expected",
    [
        (ads.client_name, ("fe", "main"), "fe.main"),
        (ads.factory_global_ad_name, ("gi", "gf"), "gi@gf"),
        (ads.entry_ad_name, ("e", "gi", "gf"), "e@gi@gf"),
        (ads.factory_client_ad_name, ("e", "gi", "gf", "fe.main"), "e@gi@gf@fe.main"),
        (ads.glideclient_ad_name, ("CRED", "e", "gi", "gf", "fe.main"), "CRED_e@gi@gf@fe.main"),
        (ads.glideclientglobal_ad_name, ("gi", "gf", "fe.main"), "gi@gf@fe.main"),
        (ads.split_entry_ad_name, ("e@gi@gf",), ("e", "gi", "gf")),
        (ads.limit_text, (3, 10), "count=3, limit=10"),
        (ads.limit_text, (3, 10, "curb"), "count=3, curb=10"),
    ],
)
def test_names(function, args, expected):
    assert function(*args) == expected


@pytest.mark.parametrize("name", ["e@gi", "e@gi@gf@x", "@gi@gf", "", None])
def test_split_entry_ad_name_rejects(name):
    with pytest.raises(ValueError):
        ads.split_entry_ad_name(name)


@pytest.mark.parametrize(
    "value, safe",
    [
        ("ce-1.site_a@x", True),
        ("", False),
        ("a b", False),
        ("a;b", False),
        ("a/b", False),
        ("é", False),
        (3, False),
    ],
)
def test_is_safe_name(value, safe):
    assert ads.is_safe_name(value) is safe


def test_credential_id_is_upstream_hash():
    expected = b32encode(hashlib.md5(b"/etc/tokens/fe.scitoken").digest()).decode()[:8]
    assert ads.credential_id("/etc/tokens/fe.scitoken") == expected
    assert ads.credential_id("/a", "/CN=x") == b32encode(hashlib.md5(b"/a/CN=x").digest()).decode()[:8]


@pytest.mark.parametrize(
    "my_type, update, invalidate",
    [
        (ads.GLIDEFACTORY, "UPDATE_AD_GENERIC", "INVALIDATE_ADS_GENERIC"),
        (ads.GLIDEFACTORYGLOBAL, "UPDATE_AD_GENERIC", "INVALIDATE_ADS_GENERIC"),
        (ads.GLIDEFACTORYCLIENT, "UPDATE_LICENSE_AD", "INVALIDATE_LICENSE_ADS"),
        (ads.GLIDECLIENT, "UPDATE_MASTER_AD", "INVALIDATE_MASTER_ADS"),
        (ads.GLIDECLIENTGLOBAL, "UPDATE_MASTER_AD", "INVALIDATE_MASTER_ADS"),
        (ads.GLIDERESOURCE, "UPDATE_AD_GENERIC", "INVALIDATE_ADS_GENERIC"),
    ],
)
def test_ad_kind_commands(my_type, update, invalidate):
    kind = ads.AD_KINDS[my_type]
    assert (kind.update_command, kind.invalidate_command) == (update, invalidate)


# --- glideclient --------------------------------------------------------------------------------------


def test_glideclient_carries_upstream_attributes(request_key):
    ad = make_glideclient(request_key)
    assert ad["Name"] == f"ABCD2345_{REQ_NAME}@vofrontend_service.main"
    assert (ad["MyType"], ad["GlideinMyType"]) == ("glideclient", "glideclient")
    assert ad["GlideinWMSVersion"] == f"glideinlab {__version__}"
    assert ad["ReqName"] == ad["ReqGlidein"] == REQ_NAME
    assert (ad["ClientName"], ad["FrontendName"], ad["GroupName"]) == (
        "vofrontend_service.main",
        "vofrontend_service",
        "main",
    )
    assert ad["FrontendHAMode"] == "master"
    assert (ad["ReqIdleGlideins"], ad["ReqMaxGlideins"]) == (4, 12)
    assert (ad["ReqRemoveExcess"], ad["ReqRemoveExcessMargin"], ad["ReqIdleLifetime"]) == ("WAIT", 2, "3600")
    assert ad["WebSignType"] == "sha256"
    assert ad["WebGroupURL"] == WEB.group_url and ad["WebMonitoringURL"] == WEB.monitoring_url
    assert ad["GlideinParamGLIDEIN_Collector"] == "fe.example.org:9618"
    assert ad["GlideinParamGLIDEIN_Max_Idle"] == 1200
    assert ad["GlideinConfigGroupMaxIdlePerEntry"] == 100
    assert (ad["GlideinMonitorIdle"], ad["GlideinMonitorRunning"]) == (7, 3)
    assert ad["ReqPubKeyID"] == request_key.pub_key_id
    assert ad["ReqEncKeyCode"] == request_key.enc_key_code
    sym = request_key.sym_key
    assert sym.decrypt(ad["ReqEncIdentity"]) == FRONTEND_IDENTITY
    assert sym.decrypt(ad["GlideinEncParamSecurityName"]) == "vofrontend_service"
    assert sym.decrypt(ad["GlideinEncParamSecurityClass"]) == "frontend"
    assert sym.decrypt(ad["GlideinEncParamScitokenId"]) == "TOKEN234"
    assert sym.decrypt(ad["GlideinEncParamfrontend_scitoken"]) == "scitoken.jwt.value"
    assert sym.decrypt(ad[f"GlideinEncParam{ENTRY}.idtoken"]) == "idtoken.jwt.value"
    assert "scitoken.jwt.value" not in str(ad.values())  # secrets never in clear text
    assert "AuthenticatedIdentity" not in ad and "UpdateSequenceNumber" not in ad


def test_glideclient_round_trip(request_key, keyring):
    request = ads.parse_glideclient(received(make_glideclient(request_key)), keyring)
    assert isinstance(request, ads.ClientRequest), request
    assert (request.entry_name, request.req_name, request.client_name) == (
        ENTRY,
        REQ_NAME,
        "vofrontend_service.main",
    )
    assert (request.frontend_name, request.group_name) == ("vofrontend_service", "main")
    assert request.authenticated_identity == FRONTEND_IDENTITY
    assert (request.security_name, request.security_class) == ("vofrontend_service", "frontend")
    assert (request.idle_glideins, request.max_glideins, request.remove_excess) == (4, 12, "WAIT")
    assert (request.remove_excess_margin, request.idle_lifetime) == (2, 3600)
    assert request.requests == {
        "IdleGlideins": 4,
        "MaxGlideins": 12,
        "RemoveExcess": "WAIT",
        "RemoveExcessMargin": 2,
        "IdleLifetime": 3600,
    }
    assert request.web["URL"] == WEB.url and request.web["SignType"] == "sha256"
    assert request.params == {
        "GLIDEIN_Max_Idle": 1200,
        "USE_MATCH_AUTH": "True",
        "GLIDEIN_Collector": "fe.example.org:9618",
    }
    assert request.monitor == {"Idle": 7, "Running": 3}
    assert (request.scitoken, request.idtoken) == ("scitoken.jwt.value", "idtoken.jwt.value")
    assert request.credential_refs == {"ProjectId": "p1"}
    assert request.params_decrypted["ScitokenId"] == "TOKEN234"
    assert request.internals["ReqPubKeyID"] == request_key.pub_key_id
    assert request.internals["AuthenticatedIdentity"] == FRONTEND_IDENTITY


def test_glideclient_accepts_string_numbers_and_defaults(request_key, keyring):
    ad = received(make_glideclient(request_key))
    ad.update(ReqIdleGlideins="7", ReqMaxGlideins=" 9 ")
    for attr in ("ReqRemoveExcess", "ReqRemoveExcessMargin", "ReqIdleLifetime"):
        del ad[attr]
    request = ads.parse_glideclient(ad, keyring)
    assert isinstance(request, ads.ClientRequest), request
    assert (request.idle_glideins, request.max_glideins) == (7, 9)
    assert (request.remove_excess, request.remove_excess_margin, request.idle_lifetime) == ("NO", 0, 0)


def test_glideclient_previous_key_within_grace(factory_key, other_factory_key):
    old_request_key = RequestKey.new(other_factory_key.public)
    ring = FactoryKeyring(factory_key, other_factory_key, previous_valid_until=2000.0)
    ad = received(make_glideclient(old_request_key))
    assert isinstance(ads.parse_glideclient(ad, ring, now=1999.0), ads.ClientRequest)
    late = ads.parse_glideclient(ad, ring, now=2000.0)
    assert isinstance(late, ads.Rejected) and "stale key" in late.reason


def _reencrypt(attr: str, value: str):
    def mutate(ad: dict[str, Any], request_key: RequestKey, other_key: FactoryKey) -> None:
        ad[attr] = request_key.sym_key.encrypt(value)

    return mutate


def _set(**values: Any):
    def mutate(ad, request_key, other_key):
        ad.update(values)

    return mutate


def _delete(*attrs: str):
    def mutate(ad, request_key, other_key):
        for attr in attrs:
            del ad[attr]

    return mutate


def _key_code_for_other_factory(ad, request_key, other_key):
    ad["ReqEncKeyCode"] = wrap(request_key.sym_key, other_key.public)


def _identity_with_other_sym_key(ad, request_key, other_key):
    ad["ReqEncIdentity"] = SymKey.new().encrypt(FRONTEND_IDENTITY)


TAMPERING = [
    ("no authenticated identity", _delete("AuthenticatedIdentity"), "AuthenticatedIdentity"),
    (
        "identity swapped by the collector",
        _set(AuthenticatedIdentity="evil@factory.example.org"),
        "ReqEncIdentity",
    ),
    ("identity claim of someone else", _reencrypt("ReqEncIdentity", "other@factory.example.org"), "spoofed"),
    ("identity with a foreign sym key", _identity_with_other_sym_key, ""),
    ("unknown factory key", _set(ReqPubKeyID="0" * 32), "ReqPubKeyID"),
    ("unencrypted request", _delete("ReqPubKeyID"), "unencrypted"),
    ("no key code", _delete("ReqEncKeyCode"), "ReqEncKeyCode"),
    ("key code for another factory", _key_code_for_other_factory, "ReqEncKeyCode"),
    ("identity not hex", _set(ReqEncIdentity="xyz"), "hex"),
    ("corrupt enc param", _set(GlideinEncParamSecurityName="00" * 16), "GlideinEncParamSecurityName"),
    ("enc param not a string", _set(GlideinEncParamSecurityClass=5), "GlideinEncParamSecurityClass"),
    ("missing security name", _delete("GlideinEncParamSecurityName"), "SecurityName"),
    ("unsafe security class", _reencrypt("GlideinEncParamSecurityClass", "a b"), "SecurityClass"),
    ("v2 protocol", _reencrypt("GlideinEncParamx509_proxy_0", "proxy"), "v2 protocol"),
    ("unsafe client name", _set(ClientName="fe;rm -rf /"), "ClientName"),
    ("unsafe Name", _set(Name="a b"), "Name"),
    ("missing group", _delete("GroupName"), "GroupName"),
    ("path in frontend name", _set(FrontendName="../../etc"), "FrontendName"),
    ("ReqName wrong shape", _set(ReqName="e@g", ReqGlidein="e@g"), "entry@glidein@factory"),
    ("ReqGlidein differs", _set(ReqGlidein="x@g@f"), "ReqGlidein"),
    ("sha1 signatures", _set(WebSignType="sha1"), "WebSignType"),
    ("idle junk", _set(ReqIdleGlideins="abc"), "ReqIdleGlideins"),
    ("idle negative", _set(ReqIdleGlideins=-1), "negative"),
    ("idle bool", _set(ReqIdleGlideins=True), "ReqIdleGlideins"),
    ("idle float", _set(ReqIdleGlideins=2.5), "ReqIdleGlideins"),
    ("idle missing", _delete("ReqIdleGlideins"), "missing ReqIdleGlideins"),
    ("max junk", _set(ReqMaxGlideins="1e3"), "ReqMaxGlideins"),
    ("remove mode junk", _set(ReqRemoveExcess="MAYBE"), "ReqRemoveExcess"),
    ("margin junk", _set(ReqRemoveExcessMargin="-3"), "ReqRemoveExcessMargin"),
    ("lifetime junk", _set(ReqIdleLifetime="1h"), "ReqIdleLifetime"),
]


@pytest.mark.parametrize("mutate, reason", [t[1:] for t in TAMPERING], ids=[t[0] for t in TAMPERING])
def test_glideclient_tampering_is_rejected(request_key, keyring, other_factory_key, mutate, reason):
    ad = received(make_glideclient(request_key))
    mutate(ad, request_key, other_factory_key)
    result = ads.parse_glideclient(ad, keyring)
    assert isinstance(result, ads.Rejected), result
    assert reason in result.reason
    assert "\n" not in str(result) and str(result).startswith(result.name + ": ")


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"params": {"GLIDEIN_Collector": "x"}}, "GLIDEIN_Collector"),
        ({"credential_refs": {"Password2": "x"}}, "unknown credential"),
        ({"entry_name": "bad entry"}, "entry_name"),
        ({"security_class": "a:b"}, "security_class"),
        ({"params": {"bad name": 1}}, "attribute name"),
        ({"params": {"X": [1, 2]}}, "not a ClassAd value"),
        ({"monitor": {"Idle": None}}, "not a ClassAd value"),
    ],
)
def test_glideclient_builder_rejects_bad_input(request_key, overrides, message):
    with pytest.raises(ValueError, match=message):
        make_glideclient(request_key, **overrides)


@pytest.mark.parametrize(
    "fields, message",
    [
        ((-1, 1, "NO", 0, 0), "idle_glideins"),
        ((1, "2", "NO", 0, 0), "max_glideins"),
        ((1, 2, "SOME", 0, 0), "remove_excess"),
        ((1, 2, "NO", True, 0), "remove_excess_margin"),
    ],
)
def test_glidein_request_validation(fields, message):
    with pytest.raises(ValueError, match=message):
        ads.GlideinRequest(*fields)


# --- glideclientglobal --------------------------------------------------------------------------------


def make_global(request_key, credentials=None):
    return ads.build_glideclientglobal(
        frontend_name="vofrontend_service",
        group_name="main",
        glidein_name=GLIDEIN,
        factory_name=FACTORY,
        request_key=request_key,
        my_identity=FRONTEND_IDENTITY,
        security_name="vofrontend_service",
        credentials=credentials
        if credentials is not None
        else {"ABCD2345": ads.CredentialFile(b"-----BEGIN CERT-----\n\x00\xff", "frontend")},
    )


def test_glideclientglobal_round_trip(request_key, keyring):
    ad = make_global(request_key)
    assert ad["Name"] == f"{GLIDEIN}@{FACTORY}@vofrontend_service.main"
    assert request_key.sym_key.decrypt(ad["GlideinEncParamNumberOfCredentials"]) == "1"
    delivered = ads.parse_glideclientglobal(received(ad), keyring)
    assert isinstance(delivered, ads.ClientCredentials), delivered
    assert delivered.security_name == "vofrontend_service"
    assert delivered.client_name == "vofrontend_service.main"
    assert delivered.credentials == {
        "ABCD2345": ads.CredentialFile(b"-----BEGIN CERT-----\n\x00\xff", "frontend")
    }


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (_set(AuthenticatedIdentity="evil@x"), "ReqEncIdentity"),
        (_delete("GlideinEncParamABCD2345"), "no credential"),
        (_delete("GlideinEncParamSecurityName"), "SecurityName"),
        (_reencrypt("GlideinEncParamSecurityClassABCD2345", "bad class"), "not a safe name"),
    ],
)
def test_glideclientglobal_tampering(request_key, keyring, other_factory_key, mutate, reason):
    ad = received(make_global(request_key))
    mutate(ad, request_key, other_factory_key)
    result = ads.parse_glideclientglobal(ad, keyring)
    assert isinstance(result, ads.Rejected) and reason in result.reason, result


@pytest.mark.parametrize("cred_id", ["SecurityName", "SecurityClassX", "bad-id", "NumberOfCredentials"])
def test_glideclientglobal_rejects_colliding_ids(request_key, cred_id):
    with pytest.raises(ValueError, match="credential id"):
        make_global(request_key, {cred_id: ads.CredentialFile(b"x", "frontend")})


# --- factory ads --------------------------------------------------------------------------------------

FACTORY_WEB = ads.FactoryWeb(
    "http://f.example.org/factory/stage", "description.x.cfg", "c" * 64, "description.y.cfg", "d" * 64
)


def make_glidefactory(factory_key, **overrides):
    kwargs: dict[str, Any] = dict(
        factory_name=FACTORY,
        glidein_name=GLIDEIN,
        entry_name=ENTRY,
        public_key=factory_key.public,
        daemon_start_time=1_700_000_000,
        trust_domain="grid",
        auth_method="scitoken",
        web=FACTORY_WEB,
        attrs={
            "GLIDEIN_Site": "SiteA",
            "GLIDEIN_CPUS": 4,
            "GLIDEIN_Gatekeeper": "ce.example.org ce.example.org:9619",
        },
        params={"GLIDEIN_Max_Walltime": 3600},
        submit_attrs={"+maxMemory": 2048},
        config_limits={"PerEntryMaxGlideins": 10000, "PerEntryMaxIdle": 2000},
        monitor={"TotalStatusIdle": 3},
        in_downtime=True,
        downtime_comment="maintenance",
    )
    kwargs.update(overrides)
    return ads.build_glidefactory(**kwargs)


def test_glidefactory_round_trip(factory_key):
    ad = make_glidefactory(factory_key)
    assert ad["Name"] == REQ_NAME and ad["MyType"] == "glidefactory"
    assert ad["GlideinParamGLIDEIN_Collector"] == "Fake"
    assert ad["GlideinSubmit_PLUS_maxMemory"] == 2048
    assert ad["WebEntryDescriptSign"] == "d" * 64 and ad["WebSignType"] == "sha256"
    assert ad["GLIDEIN_In_Downtime"] == "True"
    assert "\n" not in ad["PubKeyValue"]
    entry = ads.parse_glidefactory(received(ad, FACTORY_IDENTITY), FACTORY_IDENTITY)
    assert isinstance(entry, ads.FactoryEntry), entry
    assert (entry.entry_name, entry.glidein_name, entry.factory_name) == (ENTRY, GLIDEIN, FACTORY)
    assert entry.public_key == factory_key.public  # PEM survives the one-line escaping
    assert (entry.trust_domain, entry.auth_method, entry.in_downtime) == ("grid", "scitoken", True)
    assert entry.supported_sign_types == ("sha256",)
    assert entry.params == {"GLIDEIN_Max_Walltime": 3600, "GLIDEIN_Collector": "Fake"}
    assert entry.config == {"PerEntryMaxGlideins": 10000, "PerEntryMaxIdle": 2000}
    assert entry.submit == {"_PLUS_maxMemory": 2048}
    assert entry.monitor == {"TotalStatusIdle": 3}
    assert entry.attrs["GLIDEIN_Site"] == "SiteA" and entry.attrs["GLIDEIN_CPUS"] == 4
    assert "PubKeyValue" not in entry.attrs and "GlideinParamGLIDEIN_Max_Walltime" not in entry.attrs
    assert entry.ad["GLIDEIN_Site"] == "SiteA"


@pytest.mark.parametrize(
    "auth_method, allow, require, require_glidein_proxy",
    [
        ("grid_proxy", "True", "True", "False"),
        ("scitoken", "False", "False", "True"),
        ("grid_proxy+project_id", "True", "True", "False"),
    ],
)
def test_glidefactory_legacy_proxy_flags(factory_key, auth_method, allow, require, require_glidein_proxy):
    ad = make_glidefactory(factory_key, auth_method=auth_method)
    flags = (ad["GlideinAllowx509_Proxy"], ad["GlideinRequirex509_Proxy"], ad["GlideinRequireGlideinProxy"])
    assert flags == (allow, require, require_glidein_proxy)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"attrs": {"Name": "x"}}, "overwrite"),
        ({"attrs": {"GLIDEIN_TrustDomain": "x"}}, "overwrite"),
        ({"entry_name": "a b"}, "entry_name"),
        ({"attrs": {"1abc": 1}}, "attribute name"),
    ],
)
def test_glidefactory_builder_rejects(factory_key, overrides, message):
    with pytest.raises(ValueError, match=message):
        make_glidefactory(factory_key, **overrides)


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda ad: ad.pop("AuthenticatedIdentity"), "AuthenticatedIdentity"),
        (lambda ad: ad.update(AuthenticatedIdentity="impostor@x"), "factory_identity"),
        (lambda ad: ad.update(Name="other@gi@gf"), "Name is not"),
        (lambda ad: ad.update(EntryName="a/b"), "EntryName"),
        (lambda ad: ad.update(GLIDEIN_In_Downtime="maybe"), "GLIDEIN_In_Downtime"),
        (
            lambda ad: ad.update(
                PubKeyValue="-----BEGIN PUBLIC KEY-----\\nAAAA\\n-----END PUBLIC KEY-----\\n"
            ),
            "PubKeyValue",
        ),
    ],
)
def test_glidefactory_rejected(factory_key, mutate, reason):
    ad = received(make_glidefactory(factory_key), FACTORY_IDENTITY)
    mutate(ad)
    result = ads.parse_glidefactory(ad, FACTORY_IDENTITY)
    assert isinstance(result, ads.Rejected) and reason in result.reason, result


def test_glidefactory_without_key_and_with_bool_downtime(factory_key):
    ad = received(make_glidefactory(factory_key), FACTORY_IDENTITY)
    for attr in ("PubKeyID", "PubKeyType", "PubKeyValue"):
        del ad[attr]
    ad["GLIDEIN_In_Downtime"] = False
    entry = ads.parse_glidefactory(ad, FACTORY_IDENTITY)
    assert isinstance(entry, ads.FactoryEntry) and entry.public_key is None and entry.in_downtime is False


def test_glidefactoryglobal_round_trip(factory_key):
    ad = ads.build_glidefactoryglobal(
        factory_name=FACTORY,
        glidein_name=GLIDEIN,
        public_key=factory_key.public,
        daemon_start_time=1_700_000_000,
    )
    assert ad["Name"] == f"{GLIDEIN}@{FACTORY}" and ad["PubKeyType"] == "RSA"
    assert ad["DaemonStartTime"] == 1_700_000_000 and ad["SupportedSignTypes"] == "sha256"
    parsed = ads.parse_glidefactoryglobal(received(ad, FACTORY_IDENTITY), FACTORY_IDENTITY)
    assert isinstance(parsed, ads.FactoryGlobal), parsed
    assert parsed.public_key == factory_key.public
    assert (parsed.factory_name, parsed.glidein_name) == (FACTORY, GLIDEIN)
    # a frontend can encrypt for the parsed key and the factory can read it
    assert factory_key.unwrap(RequestKey.new(parsed.public_key).enc_key_code) is not None


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda ad: ad.update(AuthenticatedIdentity="impostor@x"), "factory_identity"),
        (lambda ad: ad.pop("AuthenticatedIdentity"), "AuthenticatedIdentity"),
        (lambda ad: ad.update(PubKeyType="DSA"), "no RSA public key"),
        (lambda ad: ad.pop("PubKeyValue"), "no RSA public key"),
        (lambda ad: ad.update(PubKeyValue="junk"), "PubKeyValue"),
        (lambda ad: ad.update(FactoryName="f f"), "FactoryName"),
    ],
)
def test_glidefactoryglobal_rejected(factory_key, mutate, reason):
    ad = received(
        ads.build_glidefactoryglobal(
            factory_name=FACTORY, glidein_name=GLIDEIN, public_key=factory_key.public, daemon_start_time=1
        ),
        FACTORY_IDENTITY,
    )
    mutate(ad)
    result = ads.parse_glidefactoryglobal(ad, FACTORY_IDENTITY)
    assert isinstance(result, ads.Rejected) and reason in result.reason, result


def make_factoryclient(**overrides):
    kwargs: dict[str, Any] = dict(
        factory_name=FACTORY,
        glidein_name=GLIDEIN,
        entry_name=ENTRY,
        client="vofrontend_service.main",
        attrs={"GLIDEIN_Site": "SiteA"},
        params={"GLIDEIN_Collector": "fe.example.org:9618"},
        monitor={"TotalStatusIdle": 3, "StatusRunning": 2, "TotalClientMonitorGlideRunning": 1},
        limits_triggered={
            "IdleGlideinsPerEntry": ads.limit_text(2000, 2000),
            "IdlePerClass_vofrontend_service:frontend": ads.limit_text(100, 100),
        },
    )
    kwargs.update(overrides)
    return ads.build_glidefactoryclient(**kwargs)


def test_glidefactoryclient_round_trip():
    ad = make_factoryclient()
    assert ad["Name"] == f"{REQ_NAME}@vofrontend_service.main"
    assert (ad["ReqGlidein"], ad["ReqClientName"], ad["ReqClientReqName"]) == (
        REQ_NAME,
        "vofrontend_service.main",
        REQ_NAME,
    )
    assert (ad["ReqFactoryName"], ad["ReqGlideinName"], ad["ReqEntryName"]) == (FACTORY, GLIDEIN, ENTRY)
    assert ad["GlideinMonitorStatus_GlideFactoryLimitIdleGlideinsPerEntry"] == "count=2000, limit=2000"
    assert (
        ad["GlideinMonitorStatus_GlideFactoryLimitIdlePerClass_vofrontend_service_frontend"]
        == "count=100, limit=100"
    )
    status = ads.parse_glidefactoryclient(received(ad, FACTORY_IDENTITY), FACTORY_IDENTITY)
    assert isinstance(status, ads.FactoryClientStatus), status
    assert status.req_glidein == REQ_NAME and status.client_name == "vofrontend_service.main"
    assert status.monitor == {"TotalStatusIdle": 3, "StatusRunning": 2, "TotalClientMonitorGlideRunning": 1}
    assert status.limits_triggered["IdleGlideinsPerEntry"] == "count=2000, limit=2000"
    wrong = ads.parse_glidefactoryclient(received(ad, "impostor@x"), FACTORY_IDENTITY)
    assert isinstance(wrong, ads.Rejected) and "factory_identity" in wrong.reason


def test_glideresource(factory_key):
    entry = ads.parse_glidefactory(
        received(make_glidefactory(factory_key), FACTORY_IDENTITY), FACTORY_IDENTITY
    )
    ad = ads.build_glideresource(
        frontend_name="vofrontend_service",
        group_name="main",
        entry=entry,
        match=ads.MatchExprs("M", "J", "F", "S"),
        client_monitor={"JobsIdle": 10, "GlideinsRunning": 2},
        client_config={"MaxRunningTotal": 100},
        factory_monitor={"TotalStatusIdle": 3, "TotalClientMonitorGlideRunning": 9, "StatusRunning": 1},
        limits_triggered={"TotalGlideinsPerEntry": ads.limit_text(5, 5)},
        curbs_triggered={"IdleVmsPerEntry": ads.limit_text(6, 5, "curb")},
    )
    assert ad["Name"] == f"{REQ_NAME}@vofrontend_service.main" and ad["MyType"] == "glideresource"
    assert (ad["GlideFactoryName"], ad["GlideClientName"]) == (REQ_NAME, "vofrontend_service.main")
    assert (ad["GlideFrontendName"], ad["GlideGroupName"], ad["GlideFrontendHAMode"]) == (
        "vofrontend_service",
        "main",
        "master",
    )
    assert ad["GLIDEIN_In_Downtime"] == "True" and ad["GLIDEIN_Site"] == "SiteA"
    assert (
        ad["GlideFactoryConfigPerEntryMaxGlideins"] == 10000 and "GlideinConfigPerEntryMaxGlideins" not in ad
    )
    for skipped in ("PubKeyValue", "PubKeyID", "AuthenticatedIdentity", "EntryName", "SupportedSignTypes"):
        assert skipped not in ad
    assert (
        ad["GlideFactoryMonitorStatusIdle"] == 3 and "GlideFactoryMonitorClientMonitorGlideRunning" not in ad
    )
    assert "GlideFactoryMonitorRunning" not in ad
    assert (ad["GlideClientMonitorJobsIdle"], ad["GlideClientConfigMaxRunningTotal"]) == (10, 100)
    assert ad["GlideClientLimitTotalGlideinsPerEntry"] == "count=5, limit=5"
    assert ad["GlideClientCurbIdleVmsPerEntry"] == "count=6, curb=5"
    # upstream's swapped names, kept for compatibility
    assert (ad["GlideClientMatchingGlideinCondorExpr"], ad["GlideClientConstraintJobCondorExpr"]) == (
        "M",
        "J",
    )
    assert (ad["GlideClientMatchingInternalPythonExpr"], ad["GlideClientConstraintFactoryCondorExpr"]) == (
        "F",
        "S",
    )


# --- sequence numbers, invalidation, constraints ------------------------------------------------------


def test_update_sequence_counts_per_name():
    seq = ads.UpdateSequence()
    stamped = [seq.stamp({"Name": n})["UpdateSequenceNumber"] for n in ("a", "a", "b", "a", "b")]
    assert stamped == [0, 1, 0, 2, 1]
    original = {"Name": "c"}
    seq.stamp(original)
    assert "UpdateSequenceNumber" not in original


@pytest.mark.parametrize(
    "my_type, selector, target, expected",
    [
        (
            ads.GLIDECLIENT,
            {"ClientName": "fe.main"},
            {"GlideinMyType": "glideclient", "ClientName": "fe.main"},
            True,
        ),
        (
            ads.GLIDECLIENT,
            {"ClientName": "fe.main"},
            {"GlideinMyType": "glideclient", "ClientName": "fe.other"},
            False,
        ),
        (
            ads.GLIDECLIENT,
            {"ClientName": "fe.main"},
            {"GlideinMyType": "glideclient", "ClientName": "FE.MAIN"},
            False,
        ),
        (
            ads.GLIDECLIENT,
            {"ClientName": "fe.main"},
            {"GlideinMyType": "glideclientglobal", "ClientName": "fe.main"},
            False,
        ),
        (
            ads.GLIDEFACTORYCLIENT,
            {"ReqGlidein": "e@g@f"},
            {"GlideinMyType": "glidefactoryclient", "ReqGlidein": "e@g@f"},
            True,
        ),
        (ads.GLIDEFACTORY, {"Name": 'q"uote'}, {"GlideinMyType": "glidefactory", "Name": 'q"uote'}, True),
    ],
)
def test_invalidation(my_type, selector, target, expected):
    inv = ads.invalidation(my_type, **selector)
    assert inv.command == ads.AD_KINDS[my_type].invalidate_command
    assert (inv.ad["MyType"], inv.ad["TargetType"]) == ("Query", my_type)
    assert isinstance(inv.ad["Requirements"], ads.Expr)
    assert matches(inv.ad["Requirements"], target) is expected


def test_glideclient_constraint_selects_my_work(request_key, factory_key, other_factory_key):
    constraint = ads.glideclient_constraint(
        [REQ_NAME, f"other@{GLIDEIN}@{FACTORY}"], [factory_key.pub_key_id]
    )
    mine = make_glideclient(request_key)
    assert matches(constraint, mine)
    assert not matches(constraint, make_glideclient(request_key, entry_name="elsewhere"))
    assert not matches(constraint, make_glideclient(RequestKey.new(other_factory_key.public)))
    assert not matches(constraint, {**mine, "WebSignType": "sha1"})
    assert not matches(constraint, {k: v for k, v in mine.items() if k != "ReqEncIdentity"})
    unencrypted = {
        k: v for k, v in mine.items() if k not in ("ReqPubKeyID", "ReqEncKeyCode", "ReqEncIdentity")
    }
    assert matches(constraint, unencrypted)  # fetched so that the rejection is logged
    both_keys = ads.glideclient_constraint([REQ_NAME], [factory_key.pub_key_id, other_factory_key.pub_key_id])
    assert matches(both_keys, make_glideclient(RequestKey.new(other_factory_key.public)))


@pytest.mark.parametrize("names, ids", [([], ["a"]), (["e@g@f"], []), (['e"@g@f'], ["a"])])
def test_glideclient_constraint_rejects_bad_input(names, ids):
    with pytest.raises(ValueError):
        ads.glideclient_constraint(names, ids)


def test_glideclientglobal_constraint(request_key):
    constraint = ads.glideclientglobal_constraint(GLIDEIN, FACTORY)
    assert matches(constraint, make_global(request_key))
    other_factory = {**make_global(request_key), "Name": f"{GLIDEIN}@{FACTORY}x@vofrontend_service.main"}
    assert not matches(constraint, other_factory)
    assert not matches(constraint, {**make_global(request_key), "GlideinMyType": "glideclient"})


def test_frontend_side_constraints(factory_key):
    entry_ad = make_glidefactory(factory_key)
    assert matches(ads.glidefactory_constraint(), entry_ad)
    assert matches(ads.glidefactory_constraint('GLIDEIN_Site == "SiteA"'), entry_ad)
    assert not matches(ads.glidefactory_constraint('GLIDEIN_Site == "SiteB"'), entry_ad)
    assert not matches(ads.glidefactory_constraint(), {**entry_ad, "SupportedSignTypes": "sha1"})
    global_ad = ads.build_glidefactoryglobal(
        factory_name=FACTORY, glidein_name=GLIDEIN, public_key=factory_key.public, daemon_start_time=1
    )
    assert matches(ads.glidefactoryglobal_constraint(), global_ad)
    assert not matches(ads.glidefactoryglobal_constraint(), {**global_ad, "PubKeyType": "DSA"})
    client_ad = make_factoryclient()
    assert matches(ads.glidefactoryclient_constraint("vofrontend_service.main"), client_ad)
    assert not matches(ads.glidefactoryclient_constraint("vofrontend_service.other"), client_ad)


def test_ads_are_valid_classads(request_key, factory_key):
    """Every builder's output converts to a ClassAd that keeps its values (the advertiser's job)."""
    built = [
        make_glideclient(request_key),
        make_global(request_key),
        make_glidefactory(factory_key),
        make_factoryclient(),
        ads.build_glidefactoryglobal(
            factory_name=FACTORY, glidein_name=GLIDEIN, public_key=factory_key.public, daemon_start_time=1
        ),
    ]
    for ad in built:
        classad = to_classad(ad)
        for attr, value in ad.items():
            assert classad[attr] == value, attr
