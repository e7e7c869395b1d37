"""Ed25519 keys: generate, save, load, and name them the C2SP way.

* :class:`SigningKey` holds a private key. Keys are saved as PKCS#8 PEM, encrypted when
  a passphrase is given, in files created with mode 0600; loading refuses a key file
  that others can read.
* :class:`PublicKey` is the 32-byte RFC 8032 public key. Only a canonically encoded
  point of the prime-order subgroup is accepted: small-order, mixed-order, off-curve and
  non-canonical encodings are refused wherever a key is parsed.
* Signing and verifying run in libsodium (PyNaCl). Verification is strict: S must be
  reduced (S < L), R canonically encoded and not of small order, A as above, and the
  cofactorless equation ``[S]B = R + [k]A`` must hold exactly.
* :func:`key_id` is the C2SP signed-note key ID:
  ``SHA-256(key name || 0x0A || signature type || public key)[:4]``.
* :class:`VerifierKey` is a named public key in the verifier-key string form used by
  signed-note tooling: ``<name>+<hex key ID>+<base64(signature type || public key)>``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import stat
from dataclasses import dataclass
from functools import lru_cache

import nacl.bindings
import nacl.exceptions
from asn1crypto import algos as asn1_algos
from asn1crypto import core as asn1_core
from asn1crypto import keys as asn1_keys
from asn1crypto import pem as asn1_pem
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from ledger.errors import FileError, KeyFileError, MalformedError, SignatureError, TooLargeError
from ledger.files import read_capped, write_file

__all__ = [
    "MAX_KDF_ITERATIONS",
    "SIG_TYPE_COSIGNATURE",
    "SIG_TYPE_ED25519",
    "PublicKey",
    "SigningKey",
    "VerifierKey",
    "check_key_name",
    "is_valid_key_name",
    "key_id",
    "public_key_problem",
    "signature_problem",
]

#: Signature type byte for Ed25519 note signatures (C2SP signed-note).
SIG_TYPE_ED25519 = 0x01
#: Signature type byte for timestamped Ed25519 witness cosignatures (C2SP tlog-cosignature).
SIG_TYPE_COSIGNATURE = 0x04
_KNOWN_TYPES = frozenset({SIG_TYPE_ED25519, SIG_TYPE_COSIGNATURE})
_MAX_KEY_FILE = 16 * 1024
_MAX_NAME = 256

#: The field prime of Curve25519, p = 2^255 - 19.
_P = 2**255 - 19
#: The order of the prime-order subgroup, L = 2^252 + 27742317777372353535851937790883648493.
_L = 2**252 + 27742317777372353535851937790883648493
_Y_MASK = 2**255 - 1
_D = -121665 * pow(121666, -1, _P) % _P  # the curve constant d
#: The y coordinates of the 8 points of small order (dividing 8): the identity (y = 1),
#: the point of order 2 (y = -1), the two of order 4 (y = 0) and the four of order 8.
#: Each y < p stands for two encodings (x sign bit 0 and 1); every encoding whose
#: low 255 bits are one of these values is a small-order point (for y = 1 and y = -1
#: the sign-bit-1 form is also non-canonical, since x = 0).
#: The most key-derivation iterations an encrypted key file may ask for (checked before decrypting).
MAX_KDF_ITERATIONS = 1_000_000
#: PBKDF2-HMAC-SHA256 iterations of the key files this writes (OWASP's figure for it;
#: the OpenSSL default behind ``BestAvailableEncryption`` is 2,048).
KDF_ITERATIONS = 600_000
_ENCRYPTED_PEM = re.compile(
    rb"-----BEGIN ENCRYPTED PRIVATE KEY-----(.*?)-----END ENCRYPTED PRIVATE KEY-----", re.DOTALL
)
_Y8 = 0x7A03AC9277FDC74EC6CC392CFA53202A0F67100D760B3CBA4FD84D3D706A17C7
SMALL_ORDER_Y = frozenset({1, _P - 1, 0, _Y8, _P - _Y8})


def is_valid_key_name(name: object) -> bool:
    """True if ``name`` is a valid C2SP signed-note key name: a non-empty string of
    Unicode scalar values with no Unicode space, no ``+`` and no ASCII control
    character (below U+0020)."""
    if not isinstance(name, str) or not name:
        return False
    return not any(ch == "+" or ch.isspace() or ch < " " or "\ud800" <= ch <= "\udfff" for ch in name)


def check_key_name(name: str) -> str:
    """Return ``name`` if it is a valid key name of at most 256 characters (the names
    this project creates and configures), else raise MalformedError."""
    if not isinstance(name, str) or not name:
        raise MalformedError("key name is empty")
    if len(name) > _MAX_NAME:
        raise MalformedError(f"key name is longer than {_MAX_NAME} characters")
    if not is_valid_key_name(name):
        raise MalformedError(f"key name {name!r} contains a space, '+' or a control character")
    return name


def key_id(name: str, sig_type: int, public_key: bytes) -> bytes:
    """The 4-byte C2SP key ID of ``public_key`` under ``name`` for ``sig_type``."""
    h = hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public_key).digest()
    return h[:4]


def _y(encoding: bytes) -> int:
    """The y coordinate an encoded point states (its low 255 bits, not reduced mod p)."""
    return int.from_bytes(encoding, "little") & _Y_MASK


def _on_curve(encoding: bytes) -> bool:
    """True if a canonical encoding decodes to a curve point (RFC 8032, 5.1.3)."""
    y = _y(encoding)
    u, v = (y * y - 1) % _P, (_D * y * y + 1) % _P
    x = u * pow(v, 3, _P) * pow(u * pow(v, 7, _P), (_P - 5) // 8, _P) % _P
    return (v * x * x - u) % _P == 0 or (v * x * x + u) % _P == 0


@lru_cache(maxsize=4096)
def public_key_problem(raw: bytes) -> str | None:
    """Why ``raw`` is not an acceptable Ed25519 public key, or None if it is.

    Acceptable: 32 bytes, canonically encoded (y < p), not of small order, on the
    curve and in the prime-order subgroup (as every honestly generated key is).
    """
    if type(raw) is not bytes or len(raw) != 32:
        return "an Ed25519 public key is exactly 32 bytes"
    y = _y(raw)
    if y >= _P:
        return "public key is not canonically encoded (y is not below p)"
    if y in SMALL_ORDER_Y:
        return "public key is a small-order point"
    if not _on_curve(raw):
        return "public key is not a point on the curve"
    if not nacl.bindings.crypto_core_ed25519_is_valid_point(raw):
        return "public key is a mixed-order point (not in the prime-order subgroup)"
    return None


def signature_problem(signature: bytes) -> str | None:
    """Why a 64-byte signature breaks the strict encoding rules, or None.

    S must be reduced (S < L); R must be canonically encoded and not of small order.
    """
    if len(signature) != 64:
        return "a signature is exactly 64 bytes"
    if int.from_bytes(signature[32:], "little") >= _L:
        return "its S is not canonical (S is not below L)"
    r_y = _y(signature[:32])
    if r_y >= _P:
        return "its R is not canonically encoded"
    if r_y in SMALL_ORDER_Y:
        return "its R is a small-order point"
    return None


def _pbes2_encrypt(plain: bytes, passphrase: bytes, iterations: int) -> bytes:
    """An EncryptedPrivateKeyInfo (DER) of ``plain`` under PBES2: PBKDF2-HMAC-SHA256 with a
    fresh 16-byte salt, AES-256-CBC with a fresh IV and PKCS#7 padding."""
    salt, iv = os.urandom(16), os.urandom(16)
    key = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt, iterations=iterations).derive(
        passphrase
    )
    padder = sym_padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    data = encryptor.update(padder.update(plain) + padder.finalize()) + encryptor.finalize()
    info = asn1_keys.EncryptedPrivateKeyInfo(
        {
            "encryption_algorithm": {
                "algorithm": "pbes2",
                "parameters": {
                    "key_derivation_func": {
                        "algorithm": "pbkdf2",
                        "parameters": {
                            "salt": asn1_algos.Pbkdf2Salt(name="specified", value=salt),
                            "iteration_count": iterations,
                            "prf": {"algorithm": "sha256", "parameters": asn1_core.Null()},
                        },
                    },
                    "encryption_scheme": {"algorithm": "aes256_cbc", "parameters": iv},
                },
            },
            "encrypted_data": data,
        }
    )
    der: bytes = info.dump()
    return der


def _check_work_factor(data: bytes) -> None:
    """Refuse an encrypted PKCS#8 block whose key derivation is unknown or too costly."""
    for m in _ENCRYPTED_PEM.finditer(data):
        try:
            der = base64.b64decode(b"".join(m.group(1).split()), validate=True)
            algorithm = asn1_keys.EncryptedPrivateKeyInfo.load(der, strict=True)["encryption_algorithm"]
            kdf = algorithm.kdf
            iterations = algorithm.kdf_iterations
        except (ValueError, TypeError, KeyError, binascii.Error):
            raise KeyFileError(
                "encrypted key: unsupported key derivation or malformed encryption parameters"
            ) from None
        if kdf not in ("pbkdf2", "pbkdf1", "pkcs12_kdf") or type(iterations) is not int:
            raise KeyFileError(f"encrypted key: unsupported key derivation {kdf!r}")
        if not 1 <= iterations <= MAX_KDF_ITERATIONS:
            raise KeyFileError(
                f"encrypted key: {iterations} key-derivation iterations is over the limit of "
                f"{MAX_KDF_ITERATIONS}; re-encrypt the key with a smaller work factor"
            )


class PublicKey:
    """An Ed25519 public key (32 bytes, RFC 8032 encoding), checked on construction.

    MalformedError names the rule a refused key breaks: "public key is a small-order
    point", "public key is not canonically encoded", not on the curve, or mixed order.
    """

    __slots__ = ("raw",)

    def __init__(self, *, raw: bytes) -> None:
        problem = (
            public_key_problem(raw) if type(raw) is bytes else "an Ed25519 public key is exactly 32 bytes"
        )
        if problem is not None:
            raise MalformedError(problem)
        self.raw = raw

    def _problem(self, signature: bytes, message: bytes) -> str | None:
        if type(signature) is not bytes or type(message) is not bytes:
            signature, message = bytes(signature), bytes(message)  # any bytes-like value
        problem = signature_problem(signature)
        if problem is not None:
            return problem
        try:
            nacl.bindings.crypto_sign_open(signature + message, self.raw)
        except nacl.exceptions.BadSignatureError:
            return ""
        return None

    def is_valid(self, signature: bytes, message: bytes) -> bool:
        """True if ``signature`` is this key's strictly valid signature of ``message``."""
        return self._problem(signature, message) is None

    def verify(self, signature: bytes, message: bytes, *, what: str = "signature") -> None:
        """Raise :class:`~ledger.errors.SignatureError` unless the signature verifies."""
        problem = self._problem(signature, message)
        if problem is not None:
            raise SignatureError(f"{what} does not verify" + (f": {problem}" if problem else ""))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)

    def __repr__(self) -> str:
        return f"PublicKey({base64.b64encode(self.raw).decode()})"


class SigningKey:
    """An Ed25519 private key. Signs with libsodium; saved and loaded as PKCS#8 PEM."""

    __slots__ = ("_key", "_secret", "public_key")

    def __init__(self, *, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        seed = private_key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        raw, self._secret = nacl.bindings.crypto_sign_seed_keypair(seed)
        self.public_key = PublicKey(raw=raw)

    @classmethod
    def generate(cls) -> SigningKey:
        """A new random key."""
        return cls(private_key=Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        """The key for a 32-byte RFC 8032 seed (for tests and reproducible fixtures)."""
        if type(seed) is not bytes or len(seed) != 32:
            raise MalformedError("an Ed25519 seed is exactly 32 bytes")
        return cls(private_key=Ed25519PrivateKey.from_private_bytes(seed))

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message``."""
        signed: bytes = nacl.bindings.crypto_sign(message, self._secret)
        return signed[:64]

    def to_pem(self, *, passphrase: bytes | None = None, iterations: int = KDF_ITERATIONS) -> bytes:
        """PKCS#8 PEM, encrypted with ``passphrase`` when one is given (an empty one is
        refused): PBES2 (RFC 8018) with PBKDF2-HMAC-SHA256 over ``iterations`` and
        AES-256-CBC, what OpenSSL and every PKCS#8 reader take."""
        if passphrase is not None and not passphrase:
            raise KeyFileError("an empty passphrase would leave the key unencrypted; give one, or none")
        if not passphrase:
            return self._key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        plain = self._key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        if not 1 <= iterations <= MAX_KDF_ITERATIONS:
            raise KeyFileError(f"key-derivation iterations must be 1..{MAX_KDF_ITERATIONS}")
        pem: bytes = asn1_pem.armor("ENCRYPTED PRIVATE KEY", _pbes2_encrypt(plain, passphrase, iterations))
        return pem

    @classmethod
    def from_pem(cls, data: bytes, *, passphrase: bytes | None = None) -> SigningKey:
        """Load a PKCS#8 PEM Ed25519 key; KeyFileError if it is not one or cannot be decrypted.

        An encrypted key's key-derivation work factor is checked before decrypting:
        PBKDF2 (or PKCS#5/#12 PBE) with at most :data:`MAX_KDF_ITERATIONS` iterations.
        """
        if len(data) > _MAX_KEY_FILE:
            raise KeyFileError("key file is too large to be an Ed25519 key")
        _check_work_factor(data)
        try:
            key = serialization.load_pem_private_key(data, password=passphrase or None)
        except TypeError as e:
            if passphrase:
                raise KeyFileError("the key is not encrypted, but a passphrase was given") from None
            raise KeyFileError(f"the key is encrypted: a passphrase is needed ({e})") from None
        except ValueError:
            if passphrase:
                raise KeyFileError("cannot decrypt the key: wrong passphrase or damaged file") from None
            raise KeyFileError("not a PEM-encoded private key") from None
        except Exception as e:  # cryptography raises a few backend-specific types here
            raise KeyFileError(f"cannot read the key: {e}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError("the key is not an Ed25519 key")
        return cls(private_key=key)

    def save(self, path: str | os.PathLike[str], *, passphrase: bytes | None = None) -> None:
        """Write the key to a new file with mode 0600; refuses to overwrite."""
        try:
            write_file(path, self.to_pem(passphrase=passphrase), mode=0o600, what="key")
        except FileError as e:
            raise KeyFileError(str(e)) from None

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, passphrase: bytes | None = None) -> SigningKey:
        """Read a key saved by :meth:`save`; refuses files readable by group or others."""
        try:
            mode = os.stat(path).st_mode
        except OSError as e:
            raise KeyFileError(f"{path}: cannot read the key file: {e.strerror}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyFileError(
                f"{path}: key file is accessible by others (mode {stat.S_IMODE(mode):04o}); "
                "run chmod 600 on it"
            )
        try:
            data = read_capped(path, limit=_MAX_KEY_FILE, what="key file")
        except (FileError, TooLargeError) as e:
            raise KeyFileError(str(e)) from None
        try:
            return cls.from_pem(data, passphrase=passphrase)
        except KeyFileError as e:
            raise KeyFileError(f"{path}: {e}") from None

    def __repr__(self) -> str:
        return f"SigningKey(public={base64.b64encode(self.public_key.raw).decode()})"


@dataclass(frozen=True, kw_only=True)
class VerifierKey:
    """A public key with its signed-note name and signature type."""

    name: str
    public_key: PublicKey
    sig_type: int = SIG_TYPE_ED25519

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if self.sig_type not in _KNOWN_TYPES:
            raise MalformedError(f"unsupported signature type 0x{self.sig_type:02x}")

    @property
    def key_id(self) -> bytes:
        """The 4-byte key ID."""
        return key_id(self.name, self.sig_type, self.public_key.raw)

    def __str__(self) -> str:
        data = base64.b64encode(bytes([self.sig_type]) + self.public_key.raw).decode()
        return f"{self.name}+{self.key_id.hex()}+{data}"

    @classmethod
    def parse(cls, text: str) -> VerifierKey:
        """Parse ``<name>+<hex key ID>+<base64(type || key)>`` strictly.

        The key ID must match the name, type and key; base64 must be canonical.
        """
        if not isinstance(text, str) or len(text) > _MAX_NAME + 128:
            raise MalformedError("verifier key is not a string of a sensible length")
        parts = text.split("+", 2)  # base64 key data may itself contain "+"
        if len(parts) != 3:
            raise MalformedError("verifier key must have the form name+keyid+keydata")
        name, hexid, b64 = parts
        check_key_name(name)
        if len(hexid) != 8 or hexid != hexid.lower():
            raise MalformedError("verifier key ID must be 8 lower-case hex digits")
        try:
            want_id = bytes.fromhex(hexid)
            data = base64.b64decode(b64, validate=True)
        except (ValueError, binascii.Error):
            raise MalformedError("verifier key has a malformed key ID or key data") from None
        if base64.b64encode(data).decode() != b64:
            raise MalformedError("verifier key data is not canonical base64")
        if len(data) != 33:
            raise MalformedError("verifier key data must be a type byte and a 32-byte Ed25519 key")
        try:
            public_key = PublicKey(raw=data[1:])
        except MalformedError as e:
            raise MalformedError(f"verifier key {name!r}: {e}") from None
        key = cls(name=name, public_key=public_key, sig_type=data[0])
        if key.key_id != want_id:
            raise MalformedError("verifier key ID does not match the name and key")
        return key
