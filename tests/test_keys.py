import base64
import hashlib
import os
import stat
import subprocess
from pathlib import Path

import pytest
from asn1crypto import keys as asn1_keys
from cryptography.hazmat.primitives import serialization

import ledger
from ledger.errors import FileError, KeyFileError, LedgerError, MalformedError, SignatureError
from ledger.keys import (
    KDF_ITERATIONS,
    MAX_KDF_ITERATIONS,
    SIG_TYPE_COSIGNATURE,
    PublicKey,
    SigningKey,
    VerifierKey,
    key_id,
)


def test_sign_verify_and_tamper() -> None:
    k = SigningKey.generate()
    sig = k.sign(b"hello")
    k.public_key.verify(sig, b"hello")
    assert not k.public_key.is_valid(sig, b"hellO")
    bad = bytes([sig[0] ^ 1]) + sig[1:]
    with pytest.raises(SignatureError, match="does not verify"):
        k.public_key.verify(bad, b"hello")
    assert not k.public_key.is_valid(sig[:-1], b"hello")


def test_save_load_mode_0600_and_passphrase(tmp_path: Path) -> None:
    k = SigningKey.generate()
    plain, enc = tmp_path / "plain.pem", tmp_path / "enc.pem"
    k.save(plain)
    k.save(enc, passphrase=b"correct horse")
    assert stat.S_IMODE(plain.stat().st_mode) == 0o600
    assert stat.S_IMODE(enc.stat().st_mode) == 0o600
    assert SigningKey.load(plain).public_key == k.public_key
    assert SigningKey.load(enc, passphrase=b"correct horse").public_key == k.public_key
    assert b"ENCRYPTED" in enc.read_bytes()
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        SigningKey.load(enc, passphrase=b"wrong")
    with pytest.raises(KeyFileError, match="passphrase is needed"):
        SigningKey.load(enc)
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        k.save(plain)


def _kdf(pem: bytes) -> tuple[str, int, str, str]:
    der = base64.b64decode(b"".join(pem.strip().splitlines()[1:-1]))
    alg = asn1_keys.EncryptedPrivateKeyInfo.load(der)["encryption_algorithm"]
    return alg.kdf, alg.kdf_iterations, alg.kdf_hmac, f"{alg.encryption_cipher}-{alg.key_length * 8}"


def test_cheap_passphrase_guessing_on_a_stolen_key_file() -> None:
    """A stolen encrypted key file costs an attacker 600,000 PBKDF2-HMAC-SHA256 rounds per
    guess (OpenSSL's default for PKCS#8 is 2,048), and any PKCS#8 reader opens it."""
    k = SigningKey.generate()
    pem = k.to_pem(passphrase=b"correct horse")
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
    assert _kdf(pem) == ("pbkdf2", KDF_ITERATIONS, "sha256", "aes-256")
    assert KDF_ITERATIONS >= 600_000
    other = k.to_pem(passphrase=b"correct horse")
    assert other != pem  # a fresh salt and IV each time
    opened = serialization.load_pem_private_key(pem, password=b"correct horse")
    assert opened.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw) == (
        k.public_key.raw
    )
    assert SigningKey.from_pem(pem, passphrase=b"correct horse").public_key == k.public_key
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        SigningKey.from_pem(pem, passphrase=b"correct horse!")
    assert _kdf(k.to_pem(passphrase=b"x", iterations=1000))[1] == 1000
    with pytest.raises(KeyFileError, match=r"key-derivation iterations must be 1\.\.1000000"):
        k.to_pem(passphrase=b"x", iterations=MAX_KDF_ITERATIONS + 1)


def test_openssl_opens_an_encrypted_key_file(tmp_path: Path) -> None:
    k = SigningKey.generate()
    path = tmp_path / "log.key"
    k.save(path, passphrase=b"correct horse")
    out = subprocess.run(
        ["openssl", "pkey", "-in", str(path), "-passin", "pass:correct horse", "-pubout", "-outform", "DER"],
        capture_output=True,
        check=True,
    ).stdout
    assert out[-32:] == k.public_key.raw


def test_key_files_written_before_still_load() -> None:
    """Files encrypted with OpenSSL's defaults (2,048 rounds) by earlier versions still open."""
    k = SigningKey.generate()
    old = k._key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"correct horse"),
    )
    assert _kdf(old)[1] == 2048
    assert SigningKey.from_pem(old, passphrase=b"correct horse").public_key == k.public_key


def test_load_refuses_readable_key_and_garbage(tmp_path: Path) -> None:
    p = tmp_path / "k.pem"
    SigningKey.generate().save(p)
    os.chmod(p, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        SigningKey.load(p)
    g = tmp_path / "garbage.pem"
    g.write_bytes(b"not a key")
    os.chmod(g, 0o600)
    with pytest.raises(KeyFileError, match="not a PEM"):
        SigningKey.load(g)
    with pytest.raises(KeyFileError, match="cannot read"):
        SigningKey.load(tmp_path / "missing.pem")


def test_key_file_errors_are_key_file_errors(tmp_path: Path) -> None:
    big = tmp_path / "big.pem"
    big.write_bytes(b"-" * (16 * 1024 + 1))
    big.chmod(0o600)
    with pytest.raises(KeyFileError, match=rf"^{big}: the key file is larger than the 16384-byte limit$"):
        SigningKey.load(big)
    tmp_path.chmod(0o700)  # passes the mode check, then cannot be read as a file
    with pytest.raises(KeyFileError, match=rf"^{tmp_path}: cannot read the key file: Is a directory$"):
        SigningKey.load(tmp_path)
    out = tmp_path / "no-such-dir" / "k.pem"
    with pytest.raises(KeyFileError, match=rf"^{out}: cannot create the key: No such file or directory$"):
        SigningKey.generate().save(out)
    assert issubclass(KeyFileError, FileError) and issubclass(FileError, LedgerError)
    assert ledger.FileError is FileError


def test_key_id_matches_c2sp_definition() -> None:
    pub = SigningKey.from_seed(bytes(range(32))).public_key.raw
    want = hashlib.sha256(b"example.com/log\n\x01" + pub).digest()[:4]
    assert key_id("example.com/log", 1, pub) == want


def test_verifier_key_round_trip_and_go_note_vector() -> None:
    # the verifier key of the example in golang.org/x/mod/sumdb/note's documentation
    text = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    vk = VerifierKey.parse(text)
    assert vk.name == "PeterNeumann" and vk.sig_type == 1
    assert str(vk) == text
    k = SigningKey.generate()
    cos = VerifierKey(name="witness.example/w1", public_key=k.public_key, sig_type=SIG_TYPE_COSIGNATURE)
    assert VerifierKey.parse(str(cos)) == cos


@pytest.mark.parametrize(
    "text",
    [
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong id
        "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # upper-case hex
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # space in name
        "PeterNeumann+c74f20a3",
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T",
        "PeterNeumann+c74f20a3+AhpcmQcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # type 2
        "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "",
    ],
)
def test_verifier_key_rejects(text: str) -> None:
    with pytest.raises(MalformedError):
        VerifierKey.parse(text)


def test_public_key_length() -> None:
    with pytest.raises(MalformedError, match="32 bytes"):
        PublicKey(raw=b"\x00" * 31)
    raw = base64.b64decode("ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")[1:]
    assert PublicKey(raw=raw).raw == raw


def test_key_name_rules_follow_signed_note() -> None:
    from ledger.keys import check_key_name, is_valid_key_name

    assert is_valid_key_name("example.com/log\x7f")  # DEL is not an ASCII control character below U+0020
    for bad in ("", "a b", "a+b", "a\u3000b", "a\nb", "a\ud800b", None):
        assert not is_valid_key_name(bad)
    with pytest.raises(MalformedError, match="control character"):
        check_key_name("log\ud800")
    with pytest.raises(MalformedError, match="longer than 256"):
        check_key_name("x" * 257)
