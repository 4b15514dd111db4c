"""Tests for glideinlab.protocol.crypto: AES/RSA compatibility with upstream (M2Crypto = OpenSSL defaults),
key files, and the factory keyring's grace period."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess

import pytest

from glideinlab.protocol.crypto import (
    CryptoError,
    FactoryKey,
    FactoryKeyring,
    FactoryPublicKey,
    RequestKey,
    SymKey,
    load_keyring,
    public_key_id,
    wrap,
)

FIXED_KEY = SymKey(bytes(range(32)), bytes(range(100, 116)))
OTHER_KEY = SymKey(bytes(range(1, 33)), bytes(range(100, 116)))
GRACE = 900


@pytest.fixture(scope="module")
def factory_key() -> FactoryKey:
    return FactoryKey.generate(2048)


@pytest.fixture(scope="module")
def other_factory_key() -> FactoryKey:
    return FactoryKey.generate(2048)


@pytest.mark.parametrize(
    "plaintext",
    ["", "x", "a" * 15, "b" * 16, "c" * 17, "vofrontend_service@factory.org", "ünïcødé ✓", "t" * 5000],
)
def test_sym_key_round_trip(plaintext):
    ciphertext = FIXED_KEY.encrypt(plaintext)
    assert ciphertext == ciphertext.lower()
    assert len(bytes.fromhex(ciphertext)) % 16 == 0
    assert len(bytes.fromhex(ciphertext)) > len(plaintext.encode())  # PKCS#7 always adds padding
    assert FIXED_KEY.decrypt(ciphertext) == plaintext


def test_sym_key_binary_round_trip():
    data = bytes(range(256)) * 3
    assert FIXED_KEY.decrypt_bytes(FIXED_KEY.encrypt(data)) == data


@pytest.mark.parametrize(
    "ciphertext, message",
    [
        ("zz", "not hex-encoded"),
        ("", "whole number of AES blocks"),
        ("00" * 15, "whole number of AES blocks"),
    ],
)
def test_sym_key_rejects_malformed_ciphertext(ciphertext, message):
    with pytest.raises(CryptoError, match=message):
        FIXED_KEY.decrypt(ciphertext)


def test_sym_key_wrong_key_does_not_decrypt():
    with pytest.raises(CryptoError, match="bad padding"):
        OTHER_KEY.decrypt(FIXED_KEY.encrypt("vofrontend_service@factory"))


def test_sym_key_code_round_trip():
    code = FIXED_KEY.key_code
    assert code == f"cypher:aes_256_cbc,key:{bytes(range(32)).hex()},iv:{bytes(range(100, 116)).hex()}"
    assert SymKey.from_key_code(code) == FIXED_KEY
    assert SymKey.from_key_code(code.encode()) == FIXED_KEY


@pytest.mark.parametrize(
    "code, message",
    [
        ("cypher:aes_128_cbc,key:00,iv:00", "only aes_256_cbc"),
        ("cypher:aes_256_cbc,key:00", "is not"),
        ("cypher:aes_256_cbc,iv:00,key:00", "is not"),
        ("cypher:aes_256_cbc,key:" + "00" * 16 + ",iv:" + "00" * 16, "32-byte key"),
        ("cypher:aes_256_cbc,key:" + "zz" * 32 + ",iv:" + "00" * 16, "not hex"),
    ],
)
def test_sym_key_code_rejects_malformed(code, message):
    with pytest.raises(CryptoError, match=message):
        SymKey.from_key_code(code)


def test_sym_key_repr_does_not_leak_key():
    assert bytes(range(32)).hex() not in repr(FIXED_KEY)
    assert "aes_256_cbc" in repr(FIXED_KEY)


def test_public_key_id_is_upstream_md5(factory_key):
    pem = factory_key.public.pem
    assert pem.startswith("-----BEGIN PUBLIC KEY-----\n")
    assert factory_key.pub_key_id == hashlib.md5(("RSA " + pem).encode()).hexdigest()
    assert public_key_id(pem) == factory_key.pub_key_id
    assert factory_key.public.pub_key_type == "RSA"


def test_wrap_unwrap_round_trip(factory_key):
    request_key = RequestKey.new(factory_key.public)
    assert request_key.pub_key_id == factory_key.pub_key_id
    assert factory_key.unwrap(request_key.enc_key_code) == request_key.sym_key
    # OAEP is randomized: wrapping twice gives different ciphertexts of the same key code
    assert wrap(request_key.sym_key, factory_key.public) != request_key.enc_key_code


@pytest.mark.parametrize(
    "mangle, message",
    [
        (lambda hex_code: hex_code[:-2], "does not decrypt"),
        (lambda hex_code: "nothex", "not hex"),
        (lambda hex_code: ("1" if hex_code[0] != "1" else "2") + hex_code[1:], "does not decrypt"),
    ],
)
def test_unwrap_rejects_tampered_key_code(factory_key, mangle, message):
    enc = wrap(FIXED_KEY, factory_key.public)
    with pytest.raises(CryptoError, match=message):
        factory_key.unwrap(mangle(enc))


def test_unwrap_with_other_factory_key_fails(factory_key, other_factory_key):
    with pytest.raises(CryptoError, match="does not decrypt"):
        other_factory_key.unwrap(wrap(FIXED_KEY, factory_key.public))


@pytest.mark.parametrize("pem", ["", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "junk"])
def test_public_key_from_bad_pem(pem):
    with pytest.raises(CryptoError):
        FactoryPublicKey.from_pem(pem)


def test_generate_rejects_short_keys():
    with pytest.raises(CryptoError, match="at least 2048"):
        FactoryKey.generate(1024)


def test_key_save_is_private_and_loads_back(tmp_path, factory_key):
    path = tmp_path / "rsa.key"
    path.write_text("stale, world readable")
    path.chmod(0o644)
    factory_key.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert FactoryKey.load(path).pub_key_id == factory_key.pub_key_id
    assert [p.name for p in tmp_path.iterdir()] == ["rsa.key"]  # no temp file left behind


@pytest.mark.parametrize(
    "content", [b"", b"not a key", b"-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n"]
)
def test_key_load_rejects_junk(tmp_path, content):
    path = tmp_path / "rsa.key"
    path.write_bytes(content)
    with pytest.raises(CryptoError, match="rsa.key"):
        FactoryKey.load(path)


def test_key_load_missing_file(tmp_path):
    with pytest.raises(CryptoError, match="cannot read"):
        FactoryKey.load(tmp_path / "absent.key")


@pytest.mark.parametrize(
    "now, expected_ids",
    [
        (1000.0, ("current", "previous")),
        (1899.0, ("current", "previous")),
        (1900.0, ("current",)),
    ],
)
def test_keyring_previous_key_grace(factory_key, other_factory_key, now, expected_ids):
    ring = FactoryKeyring(factory_key, other_factory_key, previous_valid_until=1900.0)
    names = {factory_key.pub_key_id: "current", other_factory_key.pub_key_id: "previous"}
    assert tuple(names[i] for i in ring.pub_key_ids(now)) == expected_ids
    assert ring.find(factory_key.pub_key_id, now) is factory_key
    found_previous = ring.find(other_factory_key.pub_key_id, now)
    assert (found_previous is other_factory_key) == ("previous" in expected_ids)
    assert ring.find("0" * 32, now) is None


NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    "key_age, old_age, expect_reuse, expect_previous",
    [
        (None, None, False, None),  # first start: new key, nothing to honour
        (100, None, True, None),  # quick restart: keep the key
        (GRACE + 1, None, False, "replaced"),  # old key: rotate, keep the replaced one for the grace period
        (100, 300, True, "old file"),  # restart soon after a rotation: still honour the retired key
        (100, GRACE + 1, True, None),  # retired key past its grace: dropped
    ],
)
def test_load_keyring_startup(
    tmp_path, factory_key, other_factory_key, key_age, old_age, expect_reuse, expect_previous
):
    key_path = tmp_path / "rsa.key"
    if key_age is not None:
        factory_key.save(key_path)
        os.utime(key_path, (NOW - key_age, NOW - key_age))
    if old_age is not None:
        other_factory_key.save(tmp_path / "rsa.key.old")
        os.utime(tmp_path / "rsa.key.old", (NOW - old_age, NOW - old_age))

    ring = load_keyring(key_path, key_length=2048, reuse_grace=GRACE, now=NOW)

    assert (ring.current.pub_key_id == factory_key.pub_key_id) == expect_reuse
    assert FactoryKey.load(key_path).pub_key_id == ring.current.pub_key_id
    if expect_previous is None:
        assert ring.pub_key_ids(NOW) == (ring.current.pub_key_id,)
    elif expect_previous == "replaced":
        assert ring.previous.pub_key_id == factory_key.pub_key_id
        assert ring.previous_valid_until == NOW + GRACE
        assert FactoryKey.load(tmp_path / "rsa.key.old").pub_key_id == factory_key.pub_key_id
        # a restart right after the rotation keeps both keys
        again = load_keyring(key_path, key_length=2048, reuse_grace=GRACE, now=NOW + 10)
        assert again.pub_key_ids(NOW + 10) == (ring.current.pub_key_id, factory_key.pub_key_id)
    else:
        assert ring.previous.pub_key_id == other_factory_key.pub_key_id
        assert ring.previous_valid_until == NOW - old_age + GRACE


# --- interoperability with OpenSSL's defaults, which is what upstream's M2Crypto uses ---------------

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")


def _openssl(*args: str, data: bytes) -> bytes:
    return subprocess.run(["openssl", *args], input=data, capture_output=True, check=True).stdout


@needs_openssl
@pytest.mark.parametrize("plaintext", [b"", b"vofrontend_service@factory", b"z" * 33])
def test_aes_matches_openssl_enc(plaintext):
    key, iv = FIXED_KEY.key.hex(), FIXED_KEY.iv.hex()
    expected = _openssl("enc", "-aes-256-cbc", "-K", key, "-iv", iv, data=plaintext)
    assert FIXED_KEY.encrypt(plaintext) == expected.hex()


@needs_openssl
def test_rsa_oaep_interoperates_with_openssl(tmp_path, factory_key):
    pub = tmp_path / "pub.pem"
    pub.write_text(factory_key.public.pem)
    priv = tmp_path / "rsa.key"
    factory_key.save(priv)
    # OpenSSL's OAEP defaults (SHA-1, MGF1-SHA-1) are M2Crypto's pkcs1_oaep_padding
    by_openssl = _openssl(
        "pkeyutl",
        "-encrypt",
        "-pubin",
        "-inkey",
        str(pub),
        "-pkeyopt",
        "rsa_padding_mode:oaep",
        data=FIXED_KEY.key_code.encode(),
    )
    assert factory_key.unwrap(by_openssl.hex()) == FIXED_KEY
    decrypted = _openssl(
        "pkeyutl",
        "-decrypt",
        "-inkey",
        str(priv),
        "-pkeyopt",
        "rsa_padding_mode:oaep",
        data=bytes.fromhex(wrap(FIXED_KEY, factory_key.public)),
    )
    assert decrypted.decode() == FIXED_KEY.key_code
