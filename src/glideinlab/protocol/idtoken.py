"""HTCondor IDTOKENs, minted and verified exactly as HTCondor's own daemons do.

A signing key lives in ``passwords.d/<key id>`` as HTCondor stores it: the secret XOR-scrambled with the
repeating bytes DE AD BE EF.  HTCondor reads it as a C string (up to the first NUL), doubles it for the
``POOL`` key (a legacy of the PASSWORD method), and derives the HS256 key with HKDF-SHA256 (salt
``htcondor``, info ``master jwt``, 32 bytes).  A token is a JWT whose header ``kid`` names the key and
whose claims are ``sub`` (identity), ``iss`` (the server's TRUST_DOMAIN), ``iat``, ``jti``, optional
``exp`` and optional ``scope`` (authorization limits like ``condor:/READ condor:/ADVERTISE_STARTD``).

The frontend mints tokens for its glideins with this (upstream ``token_util``) instead of shelling out to
``condor_token_create``; the workspace uses it to create keys the collector will trust.
"""

from __future__ import annotations

import os
import re
import secrets
import string
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .crypto import TokenError

POOL_KEY_ID = "POOL"
_SCRAMBLE = bytes((0xDE, 0xAD, 0xBE, 0xEF))
_HKDF_SALT = b"htcondor"
_HKDF_INFO = b"master jwt"
_ALGORITHM = "HS256"
#: printable, so the secret never holds a NUL (HTCondor stops reading at one)
_SECRET_ALPHABET = string.ascii_letters + string.digits
_SECRET_LENGTH = 64
_AUTHZ_LEVEL = re.compile(r"[A-Z][A-Z_]*")


def scramble(data: bytes) -> bytes:
    """HTCondor's ``simple_scramble``: XOR with DE AD BE EF repeated (its own inverse)."""
    return bytes(b ^ _SCRAMBLE[i % len(_SCRAMBLE)] for i, b in enumerate(data))


def new_signing_key_file() -> bytes:
    """The content of a new ``passwords.d`` key file (write it with mode 0600)."""
    secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(_SECRET_LENGTH))
    return scramble(secret.encode("ascii"))


def load_signing_key(path_or_bytes: str | os.PathLike[str] | bytes) -> bytes:
    """The secret of a key file (given by path or content), as HTCondor reads it."""
    if isinstance(path_or_bytes, bytes):
        data = path_or_bytes
    else:
        try:
            data = Path(path_or_bytes).read_bytes()
        except OSError as exc:
            raise TokenError(f"cannot read signing key {path_or_bytes}: {exc.strerror}") from None
    secret = scramble(data).split(b"\0", 1)[0]
    if not secret:
        raise TokenError("signing key is empty")
    return secret


def derive_signing_key(secret: bytes, key_id: str) -> bytes:
    """The HS256 key HTCondor derives from a key file's secret."""
    if key_id == POOL_KEY_ID:
        secret = secret + secret
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=_HKDF_INFO).derive(secret)


def scope_claim(scopes: Iterable[str]) -> str:
    """``["READ", "ADVERTISE_STARTD"]`` → ``"condor:/READ condor:/ADVERTISE_STARTD"``."""
    levels = list(scopes)
    for level in levels:
        if not _AUTHZ_LEVEL.fullmatch(level):
            raise TokenError(
                f"{level!r} is not an HTCondor authorization level (e.g. READ, ADVERTISE_STARTD)"
            )
    return " ".join(f"condor:/{level}" for level in levels)


def mint_idtoken(
    key_file_bytes: bytes,
    *,
    key_id: str,
    issuer: str,
    subject: str,
    scopes: Iterable[str] | None = None,
    lifetime: int | None = None,
    now: float | None = None,
) -> str:
    """A token HTCondor accepts when its ``passwords.d/<key_id>`` holds ``key_file_bytes``.

    ``issuer`` must be the verifying server's TRUST_DOMAIN; ``lifetime`` (s) omitted means no expiry.
    """
    for what, value in (("key_id", key_id), ("issuer", issuer), ("subject", subject)):
        if not isinstance(value, str) or not value or any(c.isspace() for c in value):
            raise TokenError(f"{what} must be a non-empty string without spaces, got {value!r}")
    if lifetime is not None and (
        isinstance(lifetime, bool) or not isinstance(lifetime, int) or lifetime <= 0
    ):
        raise TokenError(f"lifetime must be a positive number of seconds, got {lifetime!r}")
    issued_at = int(time.time() if now is None else now)
    claims: dict[str, Any] = {"sub": subject, "iss": issuer, "iat": issued_at, "jti": uuid.uuid4().hex}
    if lifetime is not None:
        claims["exp"] = issued_at + lifetime
    if scopes is not None:
        claims["scope"] = scope_claim(scopes)
    key = derive_signing_key(load_signing_key(key_file_bytes), key_id)
    return jwt.encode(claims, key, algorithm=_ALGORITHM, headers={"kid": key_id})


def verify_idtoken(
    token: str, key_file_bytes: bytes, key_id: str, *, now: float | None = None
) -> dict[str, Any]:
    """The claims of a token signed with ``key_file_bytes`` under ``key_id``; TokenError otherwise."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise TokenError(f"not a JWT: {exc}") from None
    if header.get("kid") != key_id:
        raise TokenError(f"token is signed with key {header.get('kid')!r}, not {key_id!r}")
    key = derive_signing_key(load_signing_key(key_file_bytes), key_id)
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[_ALGORITHM],
            # time is checked below against `now`, so tests and replays are deterministic
            options={
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
                "require": ["sub", "iss", "iat", "jti"],
            },
        )
    except jwt.PyJWTError as exc:
        raise TokenError(f"token does not verify: {exc}") from None
    now = time.time() if now is None else now
    if "exp" in claims and now >= claims["exp"]:
        raise TokenError(f"token expired at {claims['exp']}")
    return claims
