"""Tests for glideinlab.protocol.scitoken: the issuer's JWKS/discovery documents and token round trips."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from glideinlab.protocol.crypto import TokenError
from glideinlab.protocol.scitoken import (
    jwks,
    mint_scitoken,
    new_signing_key,
    openid_configuration,
    verify_scitoken,
)

ISSUER = "https://frontend-workspace.glideinwms.org:8443/scitokens"
AUDIENCE = "ce-workspace.glideinwms.org:9619"
SCOPE = "compute.create compute.read compute.modify compute.cancel"
NOW = 1_700_000_000


@pytest.fixture(scope="module")
def private_pem() -> bytes:
    return new_signing_key()


@pytest.fixture(scope="module")
def key_set(private_pem) -> dict:
    return jwks(private_pem, "k1")


def b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def mint(private_pem: bytes, **overrides) -> str:
    kwargs = dict(
        kid="k1",
        issuer=ISSUER,
        subject="vofrontend_service",
        audience=AUDIENCE,
        scope=SCOPE,
        lifetime=3600,
        now=NOW,
    )
    kwargs.update(overrides)
    return mint_scitoken(private_pem, **kwargs)


def test_jwks_is_the_public_key(private_pem, key_set):
    (jwk,) = key_set["keys"]
    assert {k: jwk[k] for k in ("kty", "crv", "kid", "alg", "use")} == {
        "kty": "EC",
        "crv": "P-256",
        "kid": "k1",
        "alg": "ES256",
        "use": "sig",
    }
    numbers = serialization.load_pem_private_key(private_pem, None).public_key().public_numbers()
    assert len(b64url_decode(jwk["x"])) == 32 and len(b64url_decode(jwk["y"])) == 32
    assert int.from_bytes(b64url_decode(jwk["x"]), "big") == numbers.x
    assert int.from_bytes(b64url_decode(jwk["y"]), "big") == numbers.y
    assert "=" not in jwk["x"] + jwk["y"]
    assert "d" not in jwk  # never the private part
    json.dumps(key_set)  # serializable as served


def test_openid_configuration():
    assert openid_configuration(ISSUER) == {"issuer": ISSUER, "jwks_uri": ISSUER + "/oauth2/certs"}


@pytest.mark.parametrize("issuer", ["http://insecure.example.org", ISSUER + "/", "frontend-workspace"])
def test_openid_configuration_rejects_issuers_libscitokens_cannot_use(issuer):
    with pytest.raises(ValueError, match="https"):
        openid_configuration(issuer)


def test_round_trip(private_pem, key_set):
    token = mint(private_pem)
    header = json.loads(b64url_decode(token.split(".")[0]))
    assert (header["alg"], header["kid"]) == ("ES256", "k1")
    claims = verify_scitoken(token, key_set, issuer=ISSUER, audience=AUDIENCE, now=NOW + 1)
    jti = claims.pop("jti")
    assert jti
    assert claims == {
        "ver": "scitoken:2.0",
        "aud": AUDIENCE,
        "sub": "vofrontend_service",
        "iss": ISSUER,
        "scope": SCOPE,
        "iat": NOW,
        "nbf": NOW,
        "exp": NOW + 3600,
    }


def test_scope_list_and_audience_list(private_pem, key_set):
    token = mint(private_pem, scope=["compute.create", "compute.read"], audience=[AUDIENCE, "ANY"])
    claims = verify_scitoken(token, key_set, issuer=ISSUER, audience="ANY", now=NOW)
    assert claims["scope"] == "compute.create compute.read"
    assert claims["aud"] == [AUDIENCE, "ANY"]


@pytest.fixture(scope="module")
def other_pem() -> bytes:
    return new_signing_key()


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(b64url_decode(payload))
    claims["scope"] = "compute.create storage.modify:/"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


@pytest.mark.parametrize(
    "case, message",
    [
        ("wrong audience", "does not verify"),
        ("wrong issuer", "does not verify"),
        ("expired", "expired"),
        ("not yet valid", "not valid before"),
        ("unknown kid", "not published"),
        ("same kid, other key", "does not verify"),
        ("tampered claims", "does not verify"),
        ("rsa key in set", "not an EC P-256 key"),
        ("garbage", "not a JWT"),
    ],
)
def test_verify_rejects(private_pem, other_pem, key_set, case, message):
    token = mint(private_pem)
    keys, issuer, audience, now = key_set, ISSUER, AUDIENCE, NOW + 1
    if case == "wrong audience":
        audience = "other-ce.example.org:9619"
    elif case == "wrong issuer":
        issuer = "https://evil.example.org"
    elif case == "expired":
        now = NOW + 3600
    elif case == "not yet valid":
        now = NOW - 1
    elif case == "unknown kid":
        keys = jwks(private_pem, "k2")
    elif case == "same kid, other key":
        keys = jwks(other_pem, "k1")
    elif case == "tampered claims":
        token = _tampered(token)
    elif case == "rsa key in set":
        keys = {"keys": [{"kty": "RSA", "kid": "k1", "n": "AQAB", "e": "AQAB"}]}
    elif case == "garbage":
        token = "garbage"
    with pytest.raises(TokenError, match=message):
        verify_scitoken(token, keys, issuer=issuer, audience=audience, now=now)


def test_mint_rejects_non_p256_key_and_bad_lifetime(private_pem):
    rsa_pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(TokenError, match="P-256"):
        mint(rsa_pem)
    with pytest.raises(TokenError, match="lifetime"):
        mint(private_pem, lifetime=0)
    with pytest.raises(TokenError, match="PEM"):
        jwks(b"junk", "k1")
