"""Message crypto of the Frontend⇄Factory protocol, wire-compatible with upstream GlideinWMS 3.10.

The factory owns an RSA key pair and publishes the public half in its ads (``PubKeyID``, ``PubKeyType``,
``PubKeyValue``).  Each cycle a frontend group draws a fresh AES-256-CBC key, wraps its *key code*
``cypher:aes_256_cbc,key:<hex>,iv:<hex>`` with the factory's public key (RSA-OAEP, hex-encoded, sent as
``ReqEncKeyCode``) and encrypts every sensitive value with it (hex-encoded ``GlideinEncParam*``,
``ReqEncIdentity``).

Upstream did this with M2Crypto: its OAEP padding is OAEP with SHA-1 and MGF1-SHA-1, its cipher streams pad
with PKCS#7, and one (key, iv) pair encrypts every value of a cycle.  We reproduce exactly that so either
side can talk to an upstream peer; the ``cryptography`` package is the only dependency.

The factory keeps its previous key for a grace period after a restart (:class:`FactoryKeyring`), so
frontends that still hold the old public key are served until their next cycle.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

CYPHER_NAME = "aes_256_cbc"
AES_KEY_BYTES = 32
AES_IV_BYTES = 16
PUB_KEY_TYPE = "RSA"
#: below this the OAEP-wrapped key code would not fit comfortably, and 2048 is today's floor anyway
MIN_KEY_LENGTH = 2048
#: where the key replaced at startup is kept during its grace period
OLD_KEY_SUFFIX = ".old"

# M2Crypto's pkcs1_oaep_padding: OAEP with SHA-1 for both the label hash and MGF1.
_OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None)


class CryptoError(ValueError):
    """A key, ciphertext or token that cannot be used; ``str(err)`` is one line for the log."""


class TokenError(CryptoError):
    """A JWT (IDTOKEN or SciToken) that cannot be minted or does not verify."""


def public_key_id(public_pem: str) -> str:
    """Upstream's ``PubKeyID``: md5 hex of ``"RSA " + <PEM public key>``."""
    return hashlib.md5(f"{PUB_KEY_TYPE} {public_pem}".encode("ascii"), usedforsecurity=False).hexdigest()


def _hex_bytes(value: str | bytes, what: str) -> bytes:
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    try:
        return bytes.fromhex(value)
    except (ValueError, TypeError):
        raise CryptoError(f"{what} is not hex-encoded") from None


@dataclass(frozen=True, repr=False)
class SymKey:
    """One AES-256-CBC key + IV; upstream encrypts every value of a frontend cycle with the same pair."""

    key: bytes
    iv: bytes

    def __post_init__(self) -> None:
        if len(self.key) != AES_KEY_BYTES or len(self.iv) != AES_IV_BYTES:
            raise CryptoError(f"{CYPHER_NAME} needs a {AES_KEY_BYTES}-byte key and a {AES_IV_BYTES}-byte iv")

    def __repr__(self) -> str:  # never leak the key into logs
        return f"SymKey({CYPHER_NAME})"

    @classmethod
    def new(cls) -> SymKey:
        return cls(secrets.token_bytes(AES_KEY_BYTES), secrets.token_bytes(AES_IV_BYTES))

    @property
    def key_code(self) -> str:
        """The clear text that ``ReqEncKeyCode`` carries, RSA-wrapped."""
        return f"cypher:{CYPHER_NAME},key:{self.key.hex()},iv:{self.iv.hex()}"

    @classmethod
    def from_key_code(cls, code: str | bytes) -> SymKey:
        if isinstance(code, bytes):
            code = code.decode("ascii", errors="replace")
        parts = code.split(",")
        if len(parts) != 3 or not parts[1].startswith("key:") or not parts[2].startswith("iv:"):
            raise CryptoError("key code is not 'cypher:...,key:...,iv:...'")
        if parts[0] != f"cypher:{CYPHER_NAME}":
            raise CryptoError(f"key code uses {parts[0]!r}; only {CYPHER_NAME} is supported")
        return cls(_hex_bytes(parts[1][4:], "key code key"), _hex_bytes(parts[2][3:], "key code iv"))

    def _cipher(self) -> Cipher:
        return Cipher(algorithms.AES(self.key), modes.CBC(self.iv))

    def encrypt(self, value: str | bytes) -> str:
        """AES-256-CBC with PKCS#7 padding, hex-encoded (lower case, as upstream)."""
        data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        padder = sym_padding.PKCS7(algorithms.AES.block_size).padder()
        encryptor = self._cipher().encryptor()
        padded = padder.update(data) + padder.finalize()
        return (encryptor.update(padded) + encryptor.finalize()).hex()

    def decrypt_bytes(self, hex_value: str | bytes) -> bytes:
        ciphertext = _hex_bytes(hex_value, "encrypted value")
        if not ciphertext or len(ciphertext) % AES_IV_BYTES:
            raise CryptoError("encrypted value is not a whole number of AES blocks")
        decryptor = self._cipher().decryptor()
        padded = decryptor.update(ciphertext) + decryptor.finalize()
        unpadder = sym_padding.PKCS7(algorithms.AES.block_size).unpadder()
        try:
            return unpadder.update(padded) + unpadder.finalize()
        except ValueError:
            raise CryptoError("encrypted value does not decrypt with this key (bad padding)") from None

    def decrypt(self, hex_value: str | bytes) -> str:
        try:
            return self.decrypt_bytes(hex_value).decode("utf-8")
        except UnicodeDecodeError:
            raise CryptoError("encrypted value does not decrypt to UTF-8 text") from None


def _load_rsa_public(pem: str | bytes) -> rsa.RSAPublicKey:
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise CryptoError("not a PEM public key") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise CryptoError("public key is not RSA")
    return key


@dataclass(frozen=True)
class FactoryPublicKey:
    """What a factory publishes and a frontend needs to write requests to it."""

    pub_key_id: str
    pem: str
    pub_key_type: str = PUB_KEY_TYPE

    @classmethod
    def from_pem(cls, pem: str, pub_key_id: str | None = None) -> FactoryPublicKey:
        """Validate a PEM RSA public key; the id defaults to upstream's md5 of it."""
        _load_rsa_public(pem)
        return cls(pub_key_id or public_key_id(pem), pem)


def wrap(sym_key: SymKey, public_key: FactoryPublicKey | str) -> str:
    """RSA-OAEP-encrypt the key code for the factory: the hex ``ReqEncKeyCode``."""
    pem = public_key.pem if isinstance(public_key, FactoryPublicKey) else public_key
    return _load_rsa_public(pem).encrypt(sym_key.key_code.encode("ascii"), _OAEP).hex()


class FactoryKey:
    """The factory's RSA private key (upstream ``rsa.key``) with its published public half."""

    __slots__ = ("_private_key", "public")

    def __init__(self, private_key: rsa.RSAPrivateKey):
        self._private_key = private_key
        pem = (
            private_key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode("ascii")
        )
        self.public = FactoryPublicKey(public_key_id(pem), pem)

    def __repr__(self) -> str:
        return f"FactoryKey({self.public.pub_key_id})"

    @property
    def pub_key_id(self) -> str:
        return self.public.pub_key_id

    @classmethod
    def generate(cls, key_length: int) -> FactoryKey:
        if key_length < MIN_KEY_LENGTH:
            raise CryptoError(f"RSA key_length must be at least {MIN_KEY_LENGTH} bits, got {key_length}")
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=key_length))

    @classmethod
    def from_pem(cls, pem: bytes) -> FactoryKey:
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError):
            raise CryptoError("not an unencrypted PEM private key") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise CryptoError("private key is not RSA")
        return cls(key)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FactoryKey:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise CryptoError(f"cannot read factory key {path}: {exc.strerror}") from None
        try:
            return cls.from_pem(data)
        except CryptoError as exc:
            raise CryptoError(f"factory key {path}: {exc}") from None

    def private_pem(self) -> bytes:
        return self._private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the private key with mode 0600, atomically (a reader never sees half a key)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(self.private_pem())
            os.chmod(tmp, 0o600)  # O_CREAT's mode is ignored if tmp already existed
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def unwrap(self, enc_key_code: str | bytes) -> SymKey:
        """Decrypt a ``ReqEncKeyCode`` into the frontend's symmetric key."""
        ciphertext = _hex_bytes(enc_key_code, "ReqEncKeyCode")
        try:
            code = self._private_key.decrypt(ciphertext, _OAEP)
        except ValueError:
            raise CryptoError("ReqEncKeyCode does not decrypt with this factory key") from None
        return SymKey.from_key_code(code)


@dataclass(frozen=True)
class RequestKey:
    """A frontend group's per-cycle symmetric key, wrapped for one factory key."""

    pub_key_id: str
    enc_key_code: str
    sym_key: SymKey

    @classmethod
    def new(cls, factory_key: FactoryPublicKey) -> RequestKey:
        sym_key = SymKey.new()
        return cls(factory_key.pub_key_id, wrap(sym_key, factory_key), sym_key)


@dataclass(frozen=True)
class FactoryKeyring:
    """The factory's current key plus, for a grace period, the one it replaced."""

    current: FactoryKey
    previous: FactoryKey | None = None
    #: epoch seconds after which the previous key is no longer accepted
    previous_valid_until: float = 0.0

    def _live(self, now: float | None) -> tuple[FactoryKey, ...]:
        now = time.time() if now is None else now
        if self.previous is not None and now < self.previous_valid_until:
            return (self.current, self.previous)
        return (self.current,)

    def find(self, pub_key_id: str, now: float | None = None) -> FactoryKey | None:
        for key in self._live(now):
            if key.pub_key_id == pub_key_id:
                return key
        return None

    def pub_key_ids(self, now: float | None = None) -> tuple[str, ...]:
        """The ids whose requests the factory still answers (for its collector query)."""
        return tuple(key.pub_key_id for key in self._live(now))


def load_keyring(
    key_path: str | os.PathLike[str], *, key_length: int, reuse_grace: float, now: float | None = None
) -> FactoryKeyring:
    """Factory startup, upstream style (``reuse_oldkey_onstartup_gracetime``).

    A key file younger than ``reuse_grace`` seconds is reused (a quick restart does not invalidate what
    frontends hold); an older or missing one is replaced by a fresh ``key_length``-bit key, and the replaced
    key moves to ``<key_path>.old`` and stays valid ``reuse_grace`` seconds.  The ``.old`` file's mtime
    records when it was retired, so a restart within the grace period keeps honouring it.
    """
    now = time.time() if now is None else now
    key_path = Path(key_path)
    old_path = key_path.with_name(key_path.name + OLD_KEY_SUFFIX)
    if key_path.exists() and now - key_path.stat().st_mtime < reuse_grace:
        current = FactoryKey.load(key_path)
        if old_path.exists():
            retired_at = old_path.stat().st_mtime
            if now - retired_at < reuse_grace:
                return FactoryKeyring(current, FactoryKey.load(old_path), retired_at + reuse_grace)
        return FactoryKeyring(current)
    previous = None
    if key_path.exists():
        previous = FactoryKey.load(key_path)
        os.replace(key_path, old_path)
        os.utime(old_path, (now, now))
    current = FactoryKey.generate(key_length)
    current.save(key_path)
    os.utime(key_path, (now, now))
    if previous is None:
        return FactoryKeyring(current)
    return FactoryKeyring(current, previous, now + reuse_grace)
