"""The crypto of a tiny SciToken issuer: an ES256 key, its public JWKS, discovery metadata and tokens.

HTCondor-CE validates SciTokens with libscitokens, which fetches ``<issuer>/.well-known/openid-configuration``
(plain string concatenation, so the issuer URL must not end with '/'; it must be https), follows its
``jwks_uri`` and picks the key whose ``kid`` the token header names.  We publish the key set at
``<issuer>/oauth2/certs``, the path the SciTokens reference issuer uses.  Tokens carry ``ver``
``scitoken:2.0`` and compute scopes (``compute.create compute.read compute.modify compute.cancel``), which
replaces the interactive vault step upstream's workspaces need.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterable
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .crypto import TokenError

SCITOKEN_VERSION = "scitoken:2.0"
JWKS_PATH = "/oauth2/certs"
_ALGORITHM = "ES256"
_COORDINATE_BYTES = 32  # P-256


def new_signing_key() -> bytes:
    """A new EC P-256 private key, PEM (PKCS#8, unencrypted: store it with mode 0600)."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _load_private(private_pem: bytes) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(private_pem, password=None)
    except (ValueError, TypeError):
        raise TokenError("not an unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise TokenError("SciToken signing key must be EC P-256 (ES256)")
    return key


def _b64url(number: int) -> str:
    return base64.urlsafe_b64encode(number.to_bytes(_COORDINATE_BYTES, "big")).rstrip(b"=").decode("ascii")


def _b64url_int(text: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), "big")


def jwks(private_pem: bytes, kid: str) -> dict[str, Any]:
    """The issuer's public key set (served at ``jwks_uri``)."""
    numbers = _load_private(private_pem).public_key().public_numbers()
    jwk = {
        "kty": "EC",
        "crv": "P-256",
        "x": _b64url(numbers.x),
        "y": _b64url(numbers.y),
        "kid": kid,
        "alg": _ALGORITHM,
        "use": "sig",
    }
    return {"keys": [jwk]}


def openid_configuration(issuer_url: str) -> dict[str, Any]:
    """The discovery document served at ``<issuer>/.well-known/openid-configuration``."""
    if not issuer_url.startswith("https://") or issuer_url.endswith("/"):
        raise ValueError(f"issuer {issuer_url!r} must be an https URL without a trailing '/' (libscitokens)")
    return {"issuer": issuer_url, "jwks_uri": issuer_url + JWKS_PATH}


def _space_list(value: str | Iterable[str]) -> str:
    return value if isinstance(value, str) else " ".join(value)


def mint_scitoken(
    private_pem: bytes,
    *,
    kid: str,
    issuer: str,
    subject: str,
    audience: str | list[str],
    scope: str | Iterable[str],
    lifetime: int,
    now: float | None = None,
) -> str:
    """A signed SciToken; ``scope`` is space-separated (or a list), e.g. ``compute.create compute.read``."""
    if isinstance(lifetime, bool) or not isinstance(lifetime, int) or lifetime <= 0:
        raise TokenError(f"lifetime must be a positive number of seconds, got {lifetime!r}")
    issued_at = int(time.time() if now is None else now)
    claims = {
        "ver": SCITOKEN_VERSION,
        "aud": audience,
        "sub": subject,
        "iss": issuer,
        "scope": _space_list(scope),
        "iat": issued_at,
        "nbf": issued_at,
        "exp": issued_at + lifetime,
        "jti": str(uuid.uuid4()),
    }
    return jwt.encode(claims, _load_private(private_pem), algorithm=_ALGORITHM, headers={"kid": kid})


def _public_key(jwks_doc: dict[str, Any], kid: str) -> ec.EllipticCurvePublicKey:
    for jwk in jwks_doc.get("keys", ()):
        if isinstance(jwk, dict) and jwk.get("kid") == kid:
            if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
                raise TokenError(f"key {kid!r} is not an EC P-256 key")
            try:
                x, y = _b64url_int(jwk["x"]), _b64url_int(jwk["y"])
                return ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
            except (KeyError, ValueError, TypeError):
                raise TokenError(f"key {kid!r} has bad coordinates") from None
    raise TokenError(f"key {kid!r} is not published by the issuer")


def verify_scitoken(
    token: str, jwks_doc: dict[str, Any], *, issuer: str, audience: str, now: float | None = None
) -> dict[str, Any]:
    """The claims of a valid token from ``issuer`` for ``audience``; TokenError otherwise."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise TokenError(f"not a JWT: {exc}") from None
    if header.get("alg") != _ALGORITHM:
        raise TokenError(f"token algorithm {header.get('alg')!r} is not {_ALGORITHM}")
    key = _public_key(jwks_doc, str(header.get("kid")))
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[_ALGORITHM],
            audience=audience,
            issuer=issuer,
            # time is checked below against `now`, so tests and replays are deterministic
            options={
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
                "require": ["ver", "aud", "sub", "iss", "scope", "iat", "nbf", "exp", "jti"],
            },
        )
    except jwt.PyJWTError as exc:
        raise TokenError(f"token does not verify: {exc}") from None
    if claims["ver"] != SCITOKEN_VERSION:
        raise TokenError(f"token version {claims['ver']!r} is not {SCITOKEN_VERSION}")
    now = time.time() if now is None else now
    if now < claims["nbf"]:
        raise TokenError(f"token not valid before {claims['nbf']}")
    if now >= claims["exp"]:
        raise TokenError(f"token expired at {claims['exp']}")
    return claims
