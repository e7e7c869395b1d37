"""C2SP checkpoints (https://c2sp.org/tlog-checkpoint) and Ed25519 cosignatures
(https://c2sp.org/tlog-cosignature).

A checkpoint is the text of a signed note::

    <origin>                  non-empty; the log's identity
    <tree size>               ASCII decimal, no leading zeros, at most 2**63 - 1
    <root hash>               canonical base64 of the 32-byte RFC 9162 root hash
    <extension line>*         optional, each non-empty, opaque

The log signs it as a note whose key name is the origin (:func:`sign_checkpoint`).

A witness *cosignature* (signature type 0x04) is one more note signature line, by the
witness's own key name, whose key ID is ``SHA-256(name || "\\n" || 0x04 || public
key)[:4]`` and whose signature bytes are ``timestamp (8 bytes, big-endian) ||
Ed25519 signature`` over::

    cosignature/v1
    time <timestamp>
    <the whole checkpoint text, extension lines included>

:func:`open_checkpoint` verifies the log's signature, parses the checkpoint, and
returns the cosignatures that verify under the given witness keys, with their
timestamps; other signatures are ignored, as the note spec requires. Given the
verifier's clock (``now``), it refuses a cosignature timestamped more than the clock
skew ahead of it (``future-time``): a time from the future never counts as fresh.
"""

from __future__ import annotations

import base64
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from ledger.clock import CLOCK_SKEW, check_not_future
from ledger.errors import MalformedError, PolicyError, SignatureError, TooLargeError
from ledger.keys import SIG_TYPE_COSIGNATURE, SigningKey, VerifierKey
from ledger.log import note

__all__ = [
    "COSIGNATURE_HEADER",
    "DEFAULT_MAX_SIZE",
    "MAX_TIMESTAMP",
    "OPENED_CACHE_SIZE",
    "Checkpoint",
    "CosignatureSigner",
    "CosignatureVerifier",
    "OpenedCheckpoint",
    "cosign",
    "cosignature_message",
    "cosignature_timestamp",
    "open_checkpoint",
    "parse_uint63",
    "sign_checkpoint",
]

#: Default cap on a signed checkpoint, in bytes. The signed-note spec requires
#: accepting 16 signatures, and post-quantum ones take nearly 5 kB each (about 6.7 kB
#: in base64); 128 KiB leaves room for that.
DEFAULT_MAX_SIZE = 128 * 1024
#: The largest tree size and cosignature timestamp: 2**63 - 1.
MAX_TIMESTAMP = (1 << 63) - 1
MAX_TREE_SIZE = MAX_TIMESTAMP
#: First line of the message an Ed25519 cosignature signs.
COSIGNATURE_HEADER = b"cosignature/v1\n"
_HASH_SIZE = 32
_COSIG_SIZE = 8 + 64
_MAX_DIGITS = len(str(MAX_TREE_SIZE))


def parse_uint63(text: str, *, what: str) -> int:
    """An ASCII decimal with no sign and no leading zeros (``0`` itself is fine), at
    most 2**63 - 1; MalformedError names ``what`` otherwise."""
    if not isinstance(text, str) or not text or len(text) > _MAX_DIGITS:
        raise MalformedError(f"{what} is not a decimal number of at most {_MAX_DIGITS} digits")
    if not (text.isascii() and text.isdigit()):
        raise MalformedError(f"{what} is not an ASCII decimal number")
    if text[0] == "0" and text != "0":
        raise MalformedError(f"{what} has a leading zero")
    value = int(text)
    if value > MAX_TREE_SIZE:
        raise MalformedError(f"{what} is larger than 2^63-1")
    return value


def _check_line(line: object, what: str) -> str:
    if not isinstance(line, str) or not line:
        raise MalformedError(f"{what} must be a non-empty string")
    for ch in line:
        if ch < " ":
            raise MalformedError(f"{what} contains a newline or control character")
        if "\ud800" <= ch <= "\udfff":
            raise MalformedError(f"{what} is not valid UTF-8 (it holds an unpaired surrogate)")
    return line


@dataclass(frozen=True, kw_only=True)
class Checkpoint:
    """A log's signed tree head: origin, tree size, root hash, extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line(self.origin, "checkpoint origin")
        if type(self.size) is not int or not 0 <= self.size <= MAX_TREE_SIZE:
            raise MalformedError("checkpoint tree size must be an int in [0, 2^63-1]")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != _HASH_SIZE:
            raise MalformedError("checkpoint root hash must be 32 bytes")
        if not isinstance(self.extensions, tuple):
            raise MalformedError("checkpoint extensions must be a tuple of strings")
        for ext in self.extensions:
            _check_line(ext, "checkpoint extension line")

    def to_text(self) -> str:
        """The note text: one line each for origin, size, root hash and extensions."""
        root = base64.b64encode(self.root_hash).decode("ascii")
        return "".join(f"{line}\n" for line in (self.origin, str(self.size), root, *self.extensions))

    @classmethod
    def parse(cls, text: str, *, max_size: int = DEFAULT_MAX_SIZE) -> Checkpoint:
        """Parse a checkpoint note text strictly (see the module docstring)."""
        if not isinstance(text, str):
            raise MalformedError("checkpoint text must be a str")
        if len(text) > max_size:
            raise TooLargeError(f"checkpoint text is longer than {max_size} characters")
        if not text.endswith("\n"):
            raise MalformedError("checkpoint text must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise MalformedError(f"checkpoint has {len(lines)} line(s); origin, size and root hash needed")
        origin, size, root, *extensions = lines
        for n, line in enumerate(lines, start=1):
            if not line:
                raise MalformedError(f"checkpoint line {n} is empty")
        _check_line(origin, "checkpoint origin")
        tree_size = parse_uint63(size, what="checkpoint tree size")
        if len(root) != 44:
            raise MalformedError("checkpoint root hash is not the base64 of 32 bytes")
        root_hash = note.decode_base64(root, what="checkpoint root hash")
        if len(root_hash) != _HASH_SIZE:
            raise MalformedError("checkpoint root hash is not the base64 of 32 bytes")
        return cls(origin=origin, size=tree_size, root_hash=root_hash, extensions=tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, *, key: SigningKey) -> bytes:
    """The checkpoint as a signed note, signed with ``key`` under the origin as key name."""
    return note.sign(checkpoint.to_text(), [note.Ed25519Signer(name=checkpoint.origin, key=key)])


def cosignature_message(text: str | bytes, timestamp: int) -> bytes:
    """What an Ed25519 cosignature (type 0x04) signs: header, time line, checkpoint text."""
    body = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    return COSIGNATURE_HEADER + b"time %d\n" % timestamp + body


def cosignature_timestamp(data: bytes) -> int:
    """The timestamp in the signature bytes (after the key ID) of a cosignature."""
    if len(data) != _COSIG_SIZE:
        raise MalformedError(f"a cosignature is {_COSIG_SIZE} bytes after the key ID, not {len(data)}")
    return int.from_bytes(data[:8], "big")


def _check_timestamp(timestamp: object) -> int:
    if type(timestamp) is not int or not 0 <= timestamp <= MAX_TIMESTAMP:
        raise MalformedError("cosignature timestamp must be an int in [0, 2^63-1]")
    return timestamp


class CosignatureSigner(note.KeySigner):
    """A witness that cosigns checkpoints with an Ed25519 key (signature type 0x04).

    ``clock`` gives the current POSIX time in seconds; the timestamp is its integer part.
    """

    SIG_TYPE = SIG_TYPE_COSIGNATURE
    _ROLE = "witness name"

    __slots__ = ("_clock",)

    def __init__(self, *, name: str, key: SigningKey, clock: Callable[[], float] = time.time) -> None:
        super().__init__(name=name, key=key)
        self._clock = clock

    def sign(self, message: bytes) -> bytes:
        """Cosign the checkpoint text ``message`` now."""
        return self.sign_at(message, timestamp=int(self._clock()))

    def sign_at(self, message: bytes, *, timestamp: int) -> bytes:
        """Cosign the checkpoint text ``message`` with the given timestamp."""
        t = _check_timestamp(timestamp)
        return t.to_bytes(8, "big") + self._key.sign(cosignature_message(message, t))


@dataclass(frozen=True)
class _AtTime:
    signer: CosignatureSigner
    timestamp: int

    @property
    def name(self) -> str:
        return self.signer.name

    @property
    def key_id(self) -> bytes:
        return self.signer.key_id

    def sign(self, message: bytes) -> bytes:
        return self.signer.sign_at(message, timestamp=self.timestamp)


class CosignatureVerifier(note.KeyVerifier):
    """Checks Ed25519 cosignatures (signature type 0x04) by one witness key."""

    SIG_TYPE = SIG_TYPE_COSIGNATURE
    _ROLE = "witness key"
    _KIND = "a cosignature key"

    def verify(self, message: bytes, signature: bytes) -> bool:
        if len(signature) != _COSIG_SIZE:
            return False
        t = int.from_bytes(signature[:8], "big")
        if t > MAX_TIMESTAMP:
            return False
        return self.key.public_key.is_valid(signature[8:], cosignature_message(message, t))


def cosign(
    signed_checkpoint: bytes,
    signer: CosignatureSigner,
    *,
    timestamp: int | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
) -> bytes:
    """``signed_checkpoint`` with the witness's cosignature line appended.

    The note must hold a well-formed checkpoint; its existing bytes are kept exactly.
    This does not check the log's signature or consistency with earlier checkpoints:
    a witness does that before cosigning. ``timestamp`` defaults to the signer's clock.
    """
    parsed = note.parse(signed_checkpoint, max_size=max_size)
    Checkpoint.parse(parsed.text, max_size=max_size)
    s: note.Signer = signer if timestamp is None else _AtTime(signer, _check_timestamp(timestamp))
    return note.add_signatures(signed_checkpoint, [s], max_size=max_size)


@dataclass(frozen=True, kw_only=True)
class OpenedCheckpoint:
    """A checkpoint whose log signature verified.

    ``note`` is the exact signed note; ``cosignatures`` maps each witness name whose
    cosignature verified to its timestamp (the newest, should one witness name hold
    several keys that all cosigned).
    """

    checkpoint: Checkpoint
    note: bytes
    cosignatures: Mapping[str, int]


class _OpenedCache:
    """Checkpoints that opened, by their exact bytes and the keys they were opened with.

    Opening is a pure function of (note bytes, log key, witness keys, size cap), so a
    verifier that sees the same witnessed checkpoint for many proofs verifies its
    signatures once. Bounded (least recently used goes first); failures are not kept.
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: OrderedDict[tuple[object, ...], OpenedCheckpoint] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[object, ...]) -> OpenedCheckpoint | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: tuple[object, ...], value: OpenedCheckpoint) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


#: How many opened checkpoints :func:`open_checkpoint` remembers.
OPENED_CACHE_SIZE = 256
_opened = _OpenedCache(OPENED_CACHE_SIZE)


def open_checkpoint(
    data: bytes,
    *,
    log_key: VerifierKey,
    witnesses: Sequence[VerifierKey] = (),
    max_size: int = DEFAULT_MAX_SIZE,
    now: int | None = None,
    skew: int = CLOCK_SKEW,
) -> OpenedCheckpoint:
    """Verify and parse a signed checkpoint.

    The log key (type 0x01) must have signed the note and its name must equal the
    checkpoint origin; each witness key (type 0x04) that cosigned must verify. A bad
    signature from any of these keys rejects the checkpoint (SignatureError); other
    signatures are ignored. A checkpoint that opened before with the same bytes and
    keys is answered from a small cache without verifying again. With ``now`` (the
    verifier's clock), a verified cosignature timestamped more than ``skew`` seconds
    after ``now`` rejects the checkpoint (PolicyError ``future-time``), cached or not.
    """
    opened = _open_cached(data, log_key=log_key, witnesses=witnesses, max_size=max_size)
    if now is not None:
        cp = opened.checkpoint
        for name, t in opened.cosignatures.items():
            try:
                check_not_future(t, now=now, what=f"cosignature time of witness {name}", skew=skew)
            except PolicyError as e:
                raise PolicyError(f"{e} (checkpoint of {cp.origin} at size {cp.size})", rule=e.rule) from None
    return opened


def _open_cached(
    data: bytes, *, log_key: VerifierKey, witnesses: Sequence[VerifierKey], max_size: int
) -> OpenedCheckpoint:
    given: object = data
    if not isinstance(given, bytes):  # bytes-like copies are opened as they are, without the cache
        return _open_checkpoint(data, log_key=log_key, witnesses=witnesses, max_size=max_size)
    cache_key = (data, log_key, tuple(witnesses), max_size)
    try:
        found = _opened.get(cache_key)
    except TypeError:  # an unhashable stand-in for a key: open without the cache
        return _open_checkpoint(data, log_key=log_key, witnesses=witnesses, max_size=max_size)
    if found is not None:
        return found
    opened = _open_checkpoint(data, log_key=log_key, witnesses=witnesses, max_size=max_size)
    _opened.put(cache_key, opened)
    return opened


def _open_checkpoint(
    data: bytes,
    *,
    log_key: VerifierKey,
    witnesses: Sequence[VerifierKey],
    max_size: int,
) -> OpenedCheckpoint:
    log_verifier = note.Ed25519Verifier(key=log_key)
    verifiers: list[note.Verifier] = [log_verifier]
    verifiers += [CosignatureVerifier(key=w) for w in witnesses]
    opened = note.open(data, verifiers, max_size=max_size)
    if not any(s.name == log_key.name and s.key_id == log_key.key_id for s in opened.verified):
        names = ", ".join(s.key for s in opened.verified)
        raise SignatureError(
            f"checkpoint is not signed by the log key {log_key.name}+{log_key.key_id.hex()} "
            f"(only cosigned by {names})"
        )
    checkpoint = Checkpoint.parse(opened.text, max_size=max_size)
    if checkpoint.origin != log_key.name:
        raise SignatureError(
            f"checkpoint origin {checkpoint.origin!r} is not the log key's name {log_key.name!r}"
        )
    cosigs: dict[str, int] = {}
    for s in opened.verified:
        if s.name == log_key.name and s.key_id == log_key.key_id:
            continue
        t = cosignature_timestamp(s.data)
        cosigs[s.name] = max(t, cosigs.get(s.name, t))
    return OpenedCheckpoint(checkpoint=checkpoint, note=bytes(data), cosignatures=MappingProxyType(cosigs))
