"""Tests for glideinlab.protocol.idtoken, including a known-answer test of HTCondor's key derivation
computed independently here (RFC 5869 HKDF from hmac/hashlib)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from glideinlab.protocol.crypto import TokenError
from glideinlab.protocol.idtoken import (
    derive_signing_key,
    load_signing_key,
    mint_idtoken,
    new_signing_key_file,
    scope_claim,
    scramble,
    verify_idtoken,
)

SECRET = b"glideinlab-known-answer-secret"
DEADBEEF = bytes.fromhex("deadbeef")
# the key file as HTCondor would store SECRET: XOR with DE AD BE EF repeated, computed independently
KEY_FILE = bytes(b ^ DEADBEEF[i % 4] for i, b in enumerate(SECRET))
NOW = 1_700_000_000


def independent_signing_key(secret: bytes, key_id: str) -> bytes:
    ikm = secret * 2 if key_id == "POOL" else secret
    prk = hmac.new(b"htcondor", ikm, hashlib.sha256).digest()  # HKDF-Extract(salt, ikm)
    return hmac.new(
        prk, b"master jwt" + b"\x01", hashlib.sha256
    ).digest()  # HKDF-Expand, one block = 32 bytes


def b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def test_scramble_is_htcondor_xor_and_an_involution():
    assert scramble(SECRET) == KEY_FILE
    assert scramble(KEY_FILE) == SECRET
    assert scramble(b"\x00\x00\x00\x00\x00") == bytes.fromhex("deadbeefde")


def test_new_signing_key_file_has_no_nul_and_a_printable_secret():
    files = {new_signing_key_file() for _ in range(5)}
    assert len(files) == 5  # random
    for key_file in files:
        assert b"\x00" not in key_file
        secret = load_signing_key(key_file)
        assert len(secret) == 64 and secret.decode("ascii").isalnum()


@pytest.mark.parametrize(
    "content, secret",
    [
        (KEY_FILE, SECRET),
        (scramble(b"abc\x00def"), b"abc"),  # HTCondor reads a C string
        (scramble(b"abc\x00"), b"abc"),
    ],
)
def test_load_signing_key(tmp_path, content, secret):
    assert load_signing_key(content) == secret
    path = tmp_path / "FRONTEND"
    path.write_bytes(content)
    assert load_signing_key(path) == secret
    assert load_signing_key(str(path)) == secret


@pytest.mark.parametrize("content", [b"", scramble(b"\x00abc")])
def test_load_signing_key_rejects_empty(content):
    with pytest.raises(TokenError, match="empty"):
        load_signing_key(content)


def test_load_signing_key_missing_file(tmp_path):
    with pytest.raises(TokenError, match="cannot read"):
        load_signing_key(tmp_path / "POOL")


@pytest.mark.parametrize("key_id", ["POOL", "FRONTEND", "SiteA"])
def test_derived_key_known_answer(key_id):
    assert derive_signing_key(SECRET, key_id) == independent_signing_key(SECRET, key_id)


def test_pool_key_differs_from_named_key():
    assert derive_signing_key(SECRET, "POOL") != derive_signing_key(SECRET, "FRONTEND")
    assert derive_signing_key(SECRET, "POOL") == derive_signing_key(SECRET + SECRET, "FRONTEND")


@pytest.mark.parametrize("key_id", ["POOL", "FRONTEND"])
def test_token_known_answer(key_id):
    token = mint_idtoken(
        KEY_FILE,
        key_id=key_id,
        issuer="frontend-workspace.glideinwms.org",
        subject="SiteA@frontend-workspace.glideinwms.org",
        scopes=["READ", "ADVERTISE_STARTD", "ADVERTISE_MASTER"],
        lifetime=86400,
        now=NOW,
    )
    header_b64, payload_b64, signature_b64 = token.split(".")
    assert json.loads(b64url_decode(header_b64)) == {"alg": "HS256", "kid": key_id, "typ": "JWT"}
    claims = json.loads(b64url_decode(payload_b64))
    jti = claims.pop("jti")
    assert len(jti) == 32 and int(jti, 16) >= 0
    assert claims == {
        "sub": "SiteA@frontend-workspace.glideinwms.org",
        "iss": "frontend-workspace.glideinwms.org",
        "iat": NOW,
        "exp": NOW + 86400,
        "scope": "condor:/READ condor:/ADVERTISE_STARTD condor:/ADVERTISE_MASTER",
    }
    expected = hmac.new(
        independent_signing_key(SECRET, key_id), f"{header_b64}.{payload_b64}".encode(), hashlib.sha256
    ).digest()
    assert b64url_decode(signature_b64) == expected


def test_token_without_lifetime_or_scopes():
    token = mint_idtoken(KEY_FILE, key_id="POOL", issuer="td", subject="me@host", now=NOW)
    claims = verify_idtoken(token, KEY_FILE, "POOL", now=NOW + 10**8)
    assert "exp" not in claims and "scope" not in claims
    assert (claims["sub"], claims["iss"], claims["iat"]) == ("me@host", "td", NOW)


def _token(key_id: str = "FRONTEND") -> str:
    return mint_idtoken(KEY_FILE, key_id=key_id, issuer="td", subject="me@host", lifetime=100, now=NOW)


def _flip_payload(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(b64url_decode(payload))
    claims["sub"] = "admin@host"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


@pytest.mark.parametrize(
    "token, key_file, key_id, now, message",
    [
        (_token(), scramble(b"another secret"), "FRONTEND", NOW, "does not verify"),
        (_token(), KEY_FILE, "POOL", NOW, "signed with key 'FRONTEND'"),
        (_token("POOL"), KEY_FILE, "FRONTEND", NOW, "signed with key 'POOL'"),
        (_token(), KEY_FILE, "FRONTEND", NOW + 100, "expired"),
        (_flip_payload(_token()), KEY_FILE, "FRONTEND", NOW, "does not verify"),
        ("not-a-jwt", KEY_FILE, "FRONTEND", NOW, "not a JWT"),
    ],
)
def test_verify_rejects(token, key_file, key_id, now, message):
    with pytest.raises(TokenError, match=message):
        verify_idtoken(token, key_file, key_id, now=now)


def test_verify_accepts_until_expiry():
    claims = verify_idtoken(_token(), KEY_FILE, "FRONTEND", now=NOW + 99)
    assert claims["exp"] == NOW + 100


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"scopes": ["read"]}, "authorization level"),
        ({"scopes": ["condor:/READ"]}, "authorization level"),
        ({"lifetime": 0}, "lifetime"),
        ({"lifetime": -5}, "lifetime"),
        ({"lifetime": True}, "lifetime"),
        ({"subject": ""}, "subject"),
        ({"issuer": "a b"}, "issuer"),
        ({"key_id": ""}, "key_id"),
    ],
)
def test_mint_rejects_bad_input(kwargs, message):
    arguments = {"key_id": "POOL", "issuer": "td", "subject": "me@host", **kwargs}
    with pytest.raises(TokenError, match=message):
        mint_idtoken(KEY_FILE, **arguments)


def test_scope_claim():
    assert scope_claim(["READ", "ADVERTISE_STARTD"]) == "condor:/READ condor:/ADVERTISE_STARTD"
    assert scope_claim([]) == ""
