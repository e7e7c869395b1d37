"""C2SP signed notes (https://c2sp.org/signed-note), after Go's ``golang.org/x/mod/sumdb/note``.

A signed note is a text that ends in a newline, a blank line, and one or more
signature lines::

    <text, ending in a newline, possibly with blank lines inside>
    <blank line>
    — <key name> base64(4-byte key ID || signature)
    — <key name> base64(4-byte key ID || signature)

The text is separated from the signatures by the *last* blank line. A note is valid
UTF-8 with no ASCII control character other than newline. Key names are non-empty
and contain no Unicode space and no ``+``.

* :func:`parse` checks the syntax only (strictly: base64 must be canonical, every
  signature carries at least one byte after its key ID, the note is at most
  ``max_size`` bytes and carries at most :data:`MAX_SIGNATURES` signatures). A parsed
  note re-encodes to exactly the bytes it came from.
* :func:`sign` and :func:`add_signatures` produce notes; :func:`add_signatures` keeps
  the existing bytes untouched and appends lines.
* :func:`open` verifies a note against trusted :class:`Verifier` objects, per the
  spec: a signature whose (name, key ID) pair matches no trusted key is ignored and
  reported as unverified; a signature from a trusted key that does not verify
  rejects the whole note; a note with no verified signature from a trusted key is
  rejected.

Duplicates: every signature from a trusted key is verified, repeats included, but a
key counts once: :attr:`Opened.verified` holds one signature per key (the first one
in the note), so a caller that counts ``len(opened.verified)`` towards a threshold
counts distinct keys. Identical repeated unverified signatures are reported once.

Signatures are made and checked over the exact text bytes of the note, never a
re-serialisation.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

from ledger.errors import MalformedError, SignatureError, TooLargeError
from ledger.keys import SIG_TYPE_ED25519, SigningKey, VerifierKey, is_valid_key_name, key_id

__all__ = [
    "DEFAULT_MAX_SIZE",
    "MAX_SIGNATURES",
    "SIG_PREFIX",
    "Ed25519Signer",
    "Ed25519Verifier",
    "KeySigner",
    "KeyVerifier",
    "Note",
    "Opened",
    "Signature",
    "Signer",
    "Verifier",
    "add_signatures",
    "decode_base64",
    "is_valid_key_name",
    "open",
    "parse",
    "sign",
]

#: Default cap on the size of a note, in bytes (a trust policy is a note, so this is
#: generous; checkpoints use a smaller cap).
DEFAULT_MAX_SIZE = 1 << 20
#: Most signature lines a note may carry. The spec requires accepting at least 16;
#: 100 is what Go's ``sumdb/note`` accepts.
MAX_SIGNATURES = 100
#: Signature lines start with an em dash (U+2014) and a space.
SIG_PREFIX = "\u2014 "
_KEY_ID_SIZE = 4
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")


def _check_key_name(name: object, what: str = "key name") -> str:
    if not isinstance(name, str) or not is_valid_key_name(name):
        raise MalformedError(f"{what} {name!r} is empty or contains a space, '+' or a control character")
    return name


def decode_base64(text: str, *, what: str) -> bytes:
    """Decode standard base64 (RFC 4648 section 4) that must be canonical: padded, with
    no stray characters and zero unused bits. MalformedError names ``what``."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedError(f"{what} is not valid base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise MalformedError(f"{what} is not canonical base64")
    return raw


def _check_controls(s: str, what: str) -> None:
    m = _CONTROL.search(s)
    if m:
        code = ord(m.group())
        raise MalformedError(f"{what} contains control character U+{code:04X} at offset {m.start()}")


def _check_text(text: object) -> str:
    """The note-text rules: a str ending in a newline, no control character but newline."""
    if not isinstance(text, str):
        raise MalformedError("note text must be a str")
    if not text.endswith("\n"):
        raise MalformedError("note text must end with a newline")
    _check_controls(text, "note text")
    _check_utf8(text, "note text")
    return text


def _check_utf8(s: str, what: str) -> None:
    """Refuse a str that has no UTF-8 form (an unpaired surrogate): notes are UTF-8."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as e:
        where = e.start
        raise MalformedError(f"{what} is not valid UTF-8 (an unpaired surrogate at offset {where})") from None


@dataclass(frozen=True, kw_only=True)
class Signature:
    """One signature line: key name, 4-byte key ID and the signature bytes after it."""

    name: str
    key_id: bytes
    data: bytes

    def __post_init__(self) -> None:
        _check_key_name(self.name)
        if not isinstance(self.key_id, bytes) or len(self.key_id) != _KEY_ID_SIZE:
            raise MalformedError("a key ID is exactly 4 bytes")
        if not isinstance(self.data, bytes) or not self.data:
            raise MalformedError("a signature needs at least one byte after its key ID")

    @property
    def key(self) -> str:
        """``name+hexid``: how messages name the key."""
        return f"{self.name}+{self.key_id.hex()}"

    def to_line(self) -> str:
        """The signature line, including its final newline."""
        return f"{SIG_PREFIX}{self.name} {base64.b64encode(self.key_id + self.data).decode('ascii')}\n"


@dataclass(frozen=True, kw_only=True)
class Note:
    """A note's text (with its final newline) and its signatures, in order."""

    text: str
    signatures: tuple[Signature, ...]

    def __post_init__(self) -> None:
        _check_text(self.text)
        if not isinstance(self.signatures, tuple) or not all(
            isinstance(s, Signature) for s in self.signatures
        ):
            raise MalformedError("note signatures must be a tuple of Signature")
        if not self.signatures:
            raise MalformedError("a signed note carries at least one signature")
        if len(self.signatures) > MAX_SIGNATURES:
            raise TooLargeError(f"a note carries at most {MAX_SIGNATURES} signatures")

    def to_bytes(self) -> bytes:
        """The encoded note: text, blank line, signature lines."""
        return (self.text + "\n" + "".join(s.to_line() for s in self.signatures)).encode("utf-8")


def parse(data: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> Note:
    """Parse a signed note strictly, without verifying anything.

    Raises :class:`~ledger.errors.TooLargeError` if ``data`` is longer than
    ``max_size`` bytes or has more than :data:`MAX_SIGNATURES` signatures, and
    :class:`~ledger.errors.MalformedError` for anything else that is not exactly a
    signed note.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedError("a note must be bytes")
    if len(data) > max_size:
        raise TooLargeError(f"note is {len(data)} bytes, more than the {max_size}-byte limit")
    try:
        s = bytes(data).decode("utf-8")
    except UnicodeDecodeError as e:
        raise MalformedError(f"note is not valid UTF-8 (byte offset {e.start})") from None
    _check_controls(s, "note")
    split = s.rfind("\n\n")
    if split < 0:
        raise MalformedError("note has no blank line before its signatures")
    text, block = s[: split + 1], s[split + 2 :]
    if not block:
        raise MalformedError("note has no signature lines")
    if not block.endswith("\n"):
        raise MalformedError("note does not end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise TooLargeError(f"note has {len(lines)} signatures, more than the limit of {MAX_SIGNATURES}")
    sigs = []
    for n, line in enumerate(lines, start=1):
        if not line.startswith(SIG_PREFIX):
            raise MalformedError(f"signature line {n} does not start with an em dash and a space")
        name, sep, b64 = line[len(SIG_PREFIX) :].partition(" ")
        if not sep:
            raise MalformedError(f"signature line {n} has no space between key name and signature")
        if not is_valid_key_name(name):
            raise MalformedError(f"signature line {n}: key name {name!r} is empty or contains '+' or a space")
        raw = decode_base64(b64, what=f"signature line {n}")
        if len(raw) <= _KEY_ID_SIZE:
            raise MalformedError(f"signature line {n} is too short: a key ID and at least one byte needed")
        sigs.append(Signature(name=name, key_id=raw[:_KEY_ID_SIZE], data=raw[_KEY_ID_SIZE:]))
    return Note(text=text, signatures=tuple(sigs))


@runtime_checkable
class Signer(Protocol):
    """Something that signs note texts under a key name and key ID."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> bytes: ...

    def sign(self, message: bytes) -> bytes:
        """The signature bytes (what follows the key ID) for the note text ``message``."""
        ...


@runtime_checkable
class Verifier(Protocol):
    """Something that checks signatures made under a key name and key ID."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> bytes: ...

    def verify(self, message: bytes, signature: bytes) -> bool:
        """True if ``signature`` (the bytes after the key ID) signs the note text ``message``."""
        ...


class KeySigner:
    """Base of the signers that hold one Ed25519 key under a key name: the name, the
    key ID for :attr:`SIG_TYPE` and the matching verifier key. Subclasses sign."""

    #: The signature type byte the key ID is computed for.
    SIG_TYPE: ClassVar[int] = SIG_TYPE_ED25519
    _ROLE: ClassVar[str] = "key name"  # how errors call the name

    __slots__ = ("_key", "_key_id", "_name")

    def __init__(self, *, name: str, key: SigningKey) -> None:
        self._name = _check_key_name(name, self._ROLE)
        self._key = key
        self._key_id = key_id(name, self.SIG_TYPE, key.public_key.raw)

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_id(self) -> bytes:
        return self._key_id

    @property
    def verifier_key(self) -> VerifierKey:
        """The matching verifier key (``name+hexid+base64``)."""
        return VerifierKey(name=self._name, public_key=self._key.public_key, sig_type=self.SIG_TYPE)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._name}+{self._key_id.hex()})"


class Ed25519Signer(KeySigner):
    """Signs notes with an Ed25519 key (signature type 0x01)."""

    __slots__ = ()

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


@dataclass(frozen=True, kw_only=True)
class KeyVerifier:
    """Base of the verifiers that check signatures by one verifier key of type
    :attr:`SIG_TYPE` (refusing keys of another type). Subclasses verify."""

    key: VerifierKey
    #: The signature type the key must have.
    SIG_TYPE: ClassVar[int] = SIG_TYPE_ED25519
    _ROLE: ClassVar[str] = "verifier key"  # how errors call the key
    _KIND: ClassVar[str] = "an Ed25519 note key"

    def __post_init__(self) -> None:
        if not isinstance(self.key, VerifierKey) or self.key.sig_type != self.SIG_TYPE:
            name = getattr(self.key, "name", self.key)
            raise MalformedError(f"{self._ROLE} {name!r} is not {self._KIND} (type 0x{self.SIG_TYPE:02x})")

    @property
    def name(self) -> str:
        return self.key.name

    @property
    def key_id(self) -> bytes:
        return self.key.key_id


class Ed25519Verifier(KeyVerifier):
    """Checks Ed25519 note signatures (signature type 0x01) by one verifier key."""

    def verify(self, message: bytes, signature: bytes) -> bool:
        return len(signature) == 64 and self.key.public_key.is_valid(signature, message)


def _signer_key(signer: Signer) -> tuple[str, bytes]:
    name = _check_key_name(signer.name, "signer name")
    kid = signer.key_id
    if not isinstance(kid, bytes) or len(kid) != _KEY_ID_SIZE:
        raise MalformedError(f"signer {name} has a key ID that is not 4 bytes")
    return name, kid


def _new_signatures(text: str, signers: Sequence[Signer], existing: Sequence[Signature]) -> list[Signature]:
    if not signers:
        raise MalformedError("no signers given")
    if len(existing) + len(signers) > MAX_SIGNATURES:
        raise TooLargeError(f"a note carries at most {MAX_SIGNATURES} signatures")
    have = {(s.name, s.key_id) for s in existing}
    msg = text.encode("utf-8")
    out = []
    for signer in signers:
        name, kid = _signer_key(signer)
        if (name, kid) in have:
            raise MalformedError(f"note already carries a signature by key {name}+{kid.hex()}")
        have.add((name, kid))
        data = signer.sign(msg)
        if not isinstance(data, bytes) or not data:
            raise MalformedError(f"signer {name}+{kid.hex()} returned an empty signature")
        out.append(Signature(name=name, key_id=kid, data=data))
    return out


def sign(text: str, signers: Sequence[Signer]) -> bytes:
    """A new signed note: ``text`` (which must end in a newline) signed by every signer,
    in the order given. Two signers with the same name and key ID are refused."""
    _check_text(text)
    return Note(text=text, signatures=tuple(_new_signatures(text, signers, ()))).to_bytes()


def add_signatures(note: bytes, signers: Sequence[Signer], *, max_size: int = DEFAULT_MAX_SIZE) -> bytes:
    """``note`` with signature lines from ``signers`` appended.

    The existing bytes, signatures included, are kept exactly; nothing is verified. A
    signer whose name and key ID already sign the note is refused (MalformedError).
    """
    parsed = parse(note, max_size=max_size)
    new = _new_signatures(parsed.text, signers, parsed.signatures)
    return bytes(note) + "".join(s.to_line() for s in new).encode("utf-8")


@dataclass(frozen=True, kw_only=True)
class Opened:
    """A verified note: its text, the signatures that verified (one per trusted key)
    and the signatures from keys that are not trusted."""

    text: str
    verified: tuple[Signature, ...]
    unverified: tuple[Signature, ...]


def _verifier_map(verifiers: Sequence[Verifier]) -> dict[tuple[str, bytes], list[Verifier]]:
    known: dict[tuple[str, bytes], list[Verifier]] = {}
    for v in verifiers:
        kid = v.key_id
        if not is_valid_key_name(v.name) or not isinstance(kid, bytes) or len(kid) != _KEY_ID_SIZE:
            raise MalformedError(f"verifier {v!r} has an invalid name or key ID")
        group = known.setdefault((v.name, kid), [])
        if not any(v == w for w in group):
            group.append(v)
    return known


def open(data: bytes, verifiers: Sequence[Verifier], *, max_size: int = DEFAULT_MAX_SIZE) -> Opened:
    """Parse ``data`` and verify it against the trusted ``verifiers``.

    Raises :class:`~ledger.errors.SignatureError` if a signature from a trusted key
    (same name *and* key ID) does not verify, if two different trusted verifiers share
    a name and key ID that the note uses, or if no trusted key signed the note; and
    the errors of :func:`parse`.
    """
    note = parse(data, max_size=max_size)
    known = _verifier_map(verifiers)
    msg = note.text.encode("utf-8")
    verified: list[Signature] = []
    verified_keys: set[tuple[str, bytes]] = set()
    unverified: list[Signature] = []
    for sig in note.signatures:
        pair = (sig.name, sig.key_id)
        group = known.get(pair)
        if group is None:
            if sig not in unverified:
                unverified.append(sig)
            continue
        if len(group) > 1:
            raise SignatureError(f"ambiguous trusted keys: {len(group)} different keys are named {sig.key}")
        if not group[0].verify(msg, sig.data):
            raise SignatureError(
                f"invalid signature by trusted key {sig.key} "
                f"({len(verified)} other trusted signature(s) verified before it)"
            )
        if pair not in verified_keys:
            verified_keys.add(pair)
            verified.append(sig)
    if not verified:
        seen = ", ".join(sorted({s.key for s in note.signatures}))
        trusted = ", ".join(sorted(f"{n}+{k.hex()}" for n, k in known)) or "none"
        raise SignatureError(
            f"no signature from a known key: the note is signed by {seen}; trusted keys: {trusted}"
        )
    return Opened(text=note.text, verified=tuple(verified), unverified=tuple(unverified))
