"""Tests for glideinlab.workspace.trust: what `Trust.ensure()` generates, that it verifies, and that a
second run reuses it byte for byte."""

from __future__ import annotations

import datetime as dt
import shutil
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from glideinlab.protocol.crypto import TokenError
from glideinlab.protocol.idtoken import verify_idtoken
from glideinlab.protocol.scitoken import jwks
from glideinlab.workspace.spec import WorkspaceSpec
from glideinlab.workspace.trust import POOLS, TOKENS, Trust

WORKERS = 2
SPEC = WorkspaceSpec.create(workers=WORKERS)
NODE_FQDNS = [n.fqdn for n in SPEC.nodes]

# token file -> (pool whose key signs it, iss, sub, scope claim or None), spelled out independently
EXPECTED_TOKENS = {
    "frontend-at-wms": ("factory-workspace", "factory-workspace.glideinwms.org",
                        "vofrontend_service@factory-workspace.glideinwms.org", None),
    "factory-at-wms": ("factory-workspace", "factory-workspace.glideinwms.org",
                       "gfactory@factory-workspace.glideinwms.org", None),
    "frontend-at-userpool": ("frontend-workspace", "frontend-workspace.glideinwms.org",
                             "vofrontend_service@frontend-workspace.glideinwms.org", None),
    "worker-at-cepool": ("ce-workspace", "ce-workspace.glideinwms.org", "condor@ce-workspace.glideinwms.org",
                         "condor:/READ condor:/ADVERTISE_STARTD condor:/ADVERTISE_MASTER"),
}


@pytest.fixture(scope="module")
def trust(tmp_path_factory) -> Trust:
    """One generated trust shared by the read-only tests (RSA key generation is the slow part)."""
    made = Trust(tmp_path_factory.mktemp("state") / "secrets", SPEC)
    made.ensure()
    return made


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


# -- generation and idempotence --------------------------------------------------------------------
def test_first_ensure_creates_everything_in_order(tmp_path):
    created = Trust(tmp_path / "secrets", SPEC).ensure()
    assert created == (
        ["ca"]
        + [f"host:{fqdn}" for fqdn in NODE_FQDNS]
        + [f"signing:{pool}" for pool in ("frontend-workspace", "factory-workspace", "ce-workspace")]
        + ["signing:frontend-workspace.FRONTEND"]
        + [f"token:{name}" for name in ("frontend-at-wms", "factory-at-wms", "frontend-at-userpool",
                                         "worker-at-cepool")]
        + ["issuer"]
    )


def test_ensure_writes_every_file(trust):
    root = trust.root
    expected = {"ca/ca.crt", "ca/ca.key", "issuer/issuer.pem"}
    expected |= {f"hosts/{fqdn}.{ext}" for fqdn in NODE_FQDNS for ext in ("crt", "key")}
    expected |= {f"signing/{pool}" for pool in POOLS} | {"signing/frontend-workspace.FRONTEND"}
    expected |= {f"tokens/{name}.token" for name in EXPECTED_TOKENS}
    assert set(_snapshot(root)) == expected  # no leftover .tmp files either


def test_second_ensure_creates_nothing_and_changes_no_byte(tmp_path):
    made = Trust(tmp_path / "secrets", SPEC)
    made.ensure()
    before = _snapshot(made.root)
    assert Trust(tmp_path / "secrets", SPEC).ensure() == []
    assert _snapshot(made.root) == before


def test_more_workers_later_adds_only_their_host_certs(tmp_path):
    Trust(tmp_path / "secrets", SPEC).ensure()
    before = _snapshot(tmp_path / "secrets")
    bigger = WorkspaceSpec.create(workers=WORKERS + 2)
    created = Trust(tmp_path / "secrets", bigger).ensure()
    assert created == [f"host:worker-{i}.glideinwms.org" for i in (WORKERS + 1, WORKERS + 2)]
    after = _snapshot(tmp_path / "secrets")
    assert {k: after[k] for k in before} == before


@pytest.mark.parametrize(
    "missing, recreated",
    [
        ("tokens/worker-at-cepool.token", ["token:worker-at-cepool"]),
        ("issuer/issuer.pem", ["issuer"]),
        ("hosts/worker-1.glideinwms.org.crt", ["host:worker-1.glideinwms.org"]),
    ],
)
def test_ensure_recreates_only_what_is_missing(tmp_path, missing, recreated):
    made = Trust(tmp_path / "secrets", SPEC)
    made.ensure()
    (made.root / missing).unlink()
    assert made.ensure() == recreated
    assert (made.root / missing).exists()


def test_a_regenerated_ca_reissues_the_host_certs(tmp_path):
    made = Trust(tmp_path / "secrets", SPEC)
    made.ensure()
    shutil.rmtree(made.root / "ca")
    made.ensure()
    ca = _cert(made.ca_cert)
    _cert(made.host_cert(NODE_FQDNS[0])).verify_directly_issued_by(ca)


def test_a_regenerated_signing_key_remints_its_tokens(tmp_path):
    made = Trust(tmp_path / "secrets", SPEC)
    made.ensure()
    made.signing_key("ce-workspace").unlink()
    made.ensure()
    token = made.token("worker-at-cepool").read_text().strip()
    verify_idtoken(token, made.signing_key("ce-workspace").read_bytes(), "POOL")


# -- the CA and host certificates ------------------------------------------------------------------
def test_ca_is_a_self_signed_ca(trust):
    ca = _cert(trust.ca_cert)
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca is True
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign
    assert ca.issuer == ca.subject
    ca.verify_directly_issued_by(ca)
    assert ca.not_valid_before_utc <= _now() < ca.not_valid_after_utc


@pytest.mark.parametrize("index", range(len(NODE_FQDNS)), ids=NODE_FQDNS)
def test_host_cert_is_signed_by_the_ca_and_valid_now(trust, index):
    fqdn = NODE_FQDNS[index]
    ca, cert = _cert(trust.ca_cert), _cert(trust.host_cert(fqdn))
    # the signature, checked by hand with the CA's public key
    ca.public_key().verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                           cert.signature_hash_algorithm)
    assert cert.issuer == ca.subject
    assert cert.not_valid_before_utc <= _now() < cert.not_valid_after_utc
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == fqdn


@pytest.mark.parametrize("index", range(len(NODE_FQDNS)), ids=NODE_FQDNS)
def test_host_cert_carries_fqdn_and_short_name_and_verifies_for_both(trust, index):
    node = SPEC.nodes[index]
    ca, cert = _cert(trust.ca_cert), _cert(trust.host_cert(node.fqdn))
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {node.fqdn, node.service}
    for name in (node.fqdn, node.service):  # a full path validation, as a TLS client does
        verifier = PolicyBuilder().store(Store([ca])).time(_now()).build_server_verifier(x509.DNSName(name))
        chain = verifier.verify(cert, [])
        assert chain[-1] == ca


def test_host_cert_does_not_verify_for_another_node(trust):
    ca = _cert(trust.ca_cert)
    cert = _cert(trust.host_cert("worker-1.glideinwms.org"))
    verifier = PolicyBuilder().store(Store([ca])).time(_now()).build_server_verifier(
        x509.DNSName("frontend-workspace.glideinwms.org"))
    with pytest.raises(VerificationError):
        verifier.verify(cert, [])


def test_host_cert_does_not_verify_against_another_workspaces_ca(trust, tmp_path):
    other = Trust(tmp_path / "secrets", WorkspaceSpec.create(name="other"))
    other._make_ca()
    cert = _cert(trust.host_cert(NODE_FQDNS[0]))
    verifier = PolicyBuilder().store(Store([_cert(other.ca_cert)])).time(_now()).build_server_verifier(
        x509.DNSName(NODE_FQDNS[0]))
    with pytest.raises(VerificationError):
        verifier.verify(cert, [])


@pytest.mark.parametrize("index", range(len(NODE_FQDNS)), ids=NODE_FQDNS)
def test_host_cert_is_not_a_ca_and_serves_both_tls_ends(trust, index):
    cert = _cert(trust.host_cert(NODE_FQDNS[index]))
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}


@pytest.mark.parametrize("index", range(len(NODE_FQDNS)), ids=NODE_FQDNS)
def test_host_key_matches_its_cert(trust, index):
    fqdn = NODE_FQDNS[index]
    key = serialization.load_pem_private_key(trust.host_key(fqdn).read_bytes(), password=None)
    assert key.public_key().public_numbers() == _cert(trust.host_cert(fqdn)).public_key().public_numbers()


def test_host_certs_have_distinct_keys_and_serials(trust):
    certs = [_cert(trust.host_cert(fqdn)) for fqdn in NODE_FQDNS]
    assert len({c.serial_number for c in certs}) == len(certs)
    assert len({c.public_key().public_numbers().n for c in certs}) == len(certs)


# -- file modes ------------------------------------------------------------------------------------
def _private_files(trust: Trust) -> list[Path]:
    return ([trust.ca_key, trust.issuer_key]
            + [trust.host_key(fqdn) for fqdn in NODE_FQDNS]
            + [trust.signing_key(pool) for pool in POOLS] + [trust.glidein_signing_key]
            + [trust.token(name) for name in EXPECTED_TOKENS])


def test_every_private_file_is_mode_0600(trust):
    modes = {str(p.relative_to(trust.root)): stat.S_IMODE(p.stat().st_mode) for p in _private_files(trust)}
    assert modes == {name: 0o600 for name in modes}
    assert len(modes) == 2 + len(NODE_FQDNS) + len(POOLS) + 1 + len(EXPECTED_TOKENS)


def test_certificates_are_world_readable_and_key_dirs_private(trust):
    assert stat.S_IMODE(trust.ca_cert.stat().st_mode) == 0o644
    for sub in ("ca", "hosts", "signing", "tokens", "issuer"):
        assert stat.S_IMODE((trust.root / sub).stat().st_mode) == 0o700, sub


# -- IDTOKENs --------------------------------------------------------------------------------------
def test_every_token_spec_is_covered():
    assert {t.file for t in TOKENS} == set(EXPECTED_TOKENS)


@pytest.mark.parametrize("name", sorted(EXPECTED_TOKENS))
def test_idtoken_verifies_with_its_pool_key_and_names_the_identity(trust, name):
    pool, iss, sub, scope = EXPECTED_TOKENS[name]
    token = trust.token(name).read_text().strip()
    claims = verify_idtoken(token, trust.signing_key(pool).read_bytes(), "POOL")
    assert claims["iss"] == iss
    assert claims["sub"] == sub
    assert claims.get("scope") == scope


@pytest.mark.parametrize("name", sorted(EXPECTED_TOKENS))
def test_idtoken_does_not_verify_with_another_pools_key(trust, name):
    own_pool = EXPECTED_TOKENS[name][0]
    token = trust.token(name).read_text().strip()
    for pool in POOLS:
        if pool != own_pool:
            with pytest.raises(TokenError):
                verify_idtoken(token, trust.signing_key(pool).read_bytes(), "POOL")


def test_signing_keys_differ_per_pool(trust):
    keys = [trust.signing_key(pool).read_bytes() for pool in POOLS]
    assert len(set(keys)) == len(POOLS)


# -- the SciToken issuer key -----------------------------------------------------------------------
def test_issuer_key_is_ec_p256_and_publishable(trust):
    pem = trust.issuer_key.read_bytes()
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.curve, ec.SECP256R1)
    assert jwks(pem, "glideinlab-1")["keys"][0]["crv"] == "P-256"
