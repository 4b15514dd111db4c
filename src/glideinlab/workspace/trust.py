"""Per-workspace trust, generated on the host at the first ``up`` and reused afterwards.

Upstream's workspaces commit their CA key and issue host certificates without subjectAltName (so
HTCondor needs ``SSL_SKIP_HOST_CHECK``); here every workspace makes its own:

* a CA (``cryptography``), and a host certificate per node with SANs for its FQDN and short name;
* one HTCondor signing key per pool (the ``POOL`` key in that pool's ``passwords.d``) and the IDTOKENs
  each identity needs (frontend and factory at the WMS collector, frontend at the user pool, the CE
  pool's workers);
* the EC key of the frontend's SciToken issuer (the CE trusts the issuer's published public key).

Every step is idempotent: an existing file is kept, so a second ``up`` reuses the same trust.
The CA key and signing keys stay in the state directory on the host; each node gets only its share.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..protocol import idtoken, scitoken
from .spec import WorkspaceSpec

CA_DAYS = 3650
HOST_DAYS = 825
ISSUER_KID = "glideinlab-1"
POOL_KEY_ID = "POOL"
# The user pool's second key, only for glidein IDTOKENs (upstream's passwords.d/FRONTEND): deleting it
# from the collector revokes every glidein token at once and nothing else.
GLIDEIN_KEY_ID = "FRONTEND"
USER_POOL = "frontend-workspace"

# Identities (upstream naming: <service user>@<host of the pool it authenticates to>).
FRONTEND_SERVICE = "vofrontend_service"
FACTORY_USER = "gfactory"


@dataclass(frozen=True)
class TokenSpec:
    """An IDTOKEN the workspace issues: who, at which pool, with which authorizations."""

    file: str
    pool: str  # service name of the pool's central manager (its FQDN is the trust domain)
    user: str
    scopes: tuple[str, ...] = ()

    def identity(self, spec: WorkspaceSpec) -> str:
        return f"{self.user}@{spec.fqdn(self.pool)}"


TOKENS = (
    # the frontend at the factory's WMS collector (advertises glideclient, reads glidefactory)
    TokenSpec("frontend-at-wms", "factory-workspace", FRONTEND_SERVICE),
    # the factory at its own collector (advertises glidefactory/glidefactoryclient)
    TokenSpec("factory-at-wms", "factory-workspace", FACTORY_USER),
    # the frontend at its user pool (queries the schedd and collector, advertises glideresource)
    TokenSpec("frontend-at-userpool", "frontend-workspace", FRONTEND_SERVICE),
    # the CE pool's worker startds joining the CE's local batch pool
    TokenSpec("worker-at-cepool", "ce-workspace", "condor",
              ("READ", "ADVERTISE_STARTD", "ADVERTISE_MASTER")),
)
POOLS = ("frontend-workspace", "factory-workspace", "ce-workspace")


class Trust:
    """The trust material of one workspace, under ``<state>/secrets``."""

    def __init__(self, root: Path, spec: WorkspaceSpec):
        self.root = Path(root)
        self.spec = spec

    # -- paths -------------------------------------------------------------------------------
    @property
    def ca_cert(self) -> Path:
        return self.root / "ca" / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca" / "ca.key"

    def host_cert(self, fqdn: str) -> Path:
        return self.root / "hosts" / f"{fqdn}.crt"

    def host_key(self, fqdn: str) -> Path:
        return self.root / "hosts" / f"{fqdn}.key"

    def signing_key(self, pool: str) -> Path:
        return self.root / "signing" / pool

    @property
    def glidein_signing_key(self) -> Path:
        return self.root / "signing" / f"{USER_POOL}.{GLIDEIN_KEY_ID}"

    def token(self, name: str) -> Path:
        return self.root / "tokens" / f"{name}.token"

    @property
    def issuer_key(self) -> Path:
        return self.root / "issuer" / "issuer.pem"

    # -- generation --------------------------------------------------------------------------
    def ensure(self) -> list[str]:
        """Create whatever is missing; return what was created (empty on a second run)."""
        created: list[str] = []
        # Anything derived from a regenerated parent is regenerated too (a cert from an old CA, a
        # token from an old key), so deleting one file is always a safe way to rotate it.
        ca_new = not (self.ca_cert.exists() and self.ca_key.exists())
        if ca_new:
            self._make_ca()
            created.append("ca")
        for node in self.spec.nodes:
            if ca_new or not (self.host_cert(node.fqdn).exists() and self.host_key(node.fqdn).exists()):
                self._make_host_cert(node.fqdn, node.service)
                created.append(f"host:{node.fqdn}")
        new_pools = set()
        for pool in POOLS:
            if not self.signing_key(pool).exists():
                _write(self.signing_key(pool), idtoken.new_signing_key_file(), 0o600)
                new_pools.add(pool)
                created.append(f"signing:{pool}")
        if not self.glidein_signing_key.exists():
            _write(self.glidein_signing_key, idtoken.new_signing_key_file(), 0o600)
            created.append(f"signing:{USER_POOL}.{GLIDEIN_KEY_ID}")
        for tok in TOKENS:
            if tok.pool in new_pools or not self.token(tok.file).exists():
                token = idtoken.mint_idtoken(
                    self.signing_key(tok.pool).read_bytes(),
                    key_id=POOL_KEY_ID,
                    issuer=self.spec.fqdn(tok.pool),
                    subject=tok.identity(self.spec),
                    scopes=list(tok.scopes) or None,
                )
                _write(self.token(tok.file), token.encode() + b"\n", 0o600)
                created.append(f"token:{tok.file}")
        if not self.issuer_key.exists():
            _write(self.issuer_key, scitoken.new_signing_key(), 0o600)
            created.append("issuer")
        return created

    def _make_ca(self) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "glideinlab"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"glideinlab {self.spec.name} workspace CA"),
        ])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        _write(self.ca_key, _pem_key(key), 0o600)
        _write(self.ca_cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)

    def _make_host_cert(self, fqdn: str, short: str) -> None:
        ca_key = serialization.load_pem_private_key(self.ca_key.read_bytes(), password=None)
        ca_cert = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "glideinlab"),
                x509.NameAttribute(NameOID.COMMON_NAME, fqdn),
            ]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=HOST_DAYS))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(fqdn), x509.DNSName(short)]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        _write(self.host_key(fqdn), _pem_key(key), 0o600)
        _write(self.host_cert(fqdn), cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write atomically with the final mode from the start (a key is never briefly world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.fchmod(fd, mode)  # a .tmp left by a crash keeps its old mode through O_CREAT
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
