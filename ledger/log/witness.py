"""The C2SP tlog-witness wire formats (https://c2sp.org/tlog-witness), pure.

An ``add-checkpoint`` request body is::

    old <size>\\n                 the size the witness last cosigned (ASCII decimal)
    <base64 hash>\\n              0 to 63 consistency proof lines
    \\n                           an empty line
    <signed checkpoint note>

A ``409 Conflict`` answer carries the witness's size as ``<size>\\n`` with
``Content-Type: text/x.tlog.size``; a ``200`` answer carries the witness's
cosignature lines. The *origin hash* that names a log in monitoring URLs
(``<prefix>/<origin hash>/checkpoint``, and tlog-mirror's ``/<origin hash>/`` tile
prefix) is the lower-case hex SHA-256 of the origin line.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass

from ledger.errors import MalformedError, TooLargeError
from ledger.log.checkpoint import DEFAULT_MAX_SIZE, parse_uint63
from ledger.log.note import decode_base64

__all__ = [
    "MAX_BODY_SIZE",
    "MAX_PROOF_LINES",
    "SIZE_CONTENT_TYPE",
    "AddCheckpoint",
    "encode_add_checkpoint",
    "encode_size",
    "is_origin_hash",
    "origin_hash",
    "parse_add_checkpoint",
    "parse_size",
]

#: The spec's limit on consistency proof lines.
MAX_PROOF_LINES = 63
#: Largest request body read: the proof lines plus the largest checkpoint note.
MAX_BODY_SIZE = DEFAULT_MAX_SIZE + 64 * (MAX_PROOF_LINES + 1)
#: Content type of a witness's 409 answer.
SIZE_CONTENT_TYPE = "text/x.tlog.size"
_ORIGIN_HASH = re.compile(r"[0-9a-f]{64}")


def origin_hash(origin: str) -> str:
    """The lower-case hex SHA-256 of a log's origin line."""
    return hashlib.sha256(origin.encode("utf-8")).hexdigest()


def is_origin_hash(text: str) -> bool:
    """Whether ``text`` has the form of an origin hash (64 lower-case hex digits)."""
    return bool(_ORIGIN_HASH.fullmatch(text))


@dataclass(frozen=True, kw_only=True)
class AddCheckpoint:
    """A parsed ``add-checkpoint`` request: old size, proof hashes, the exact note bytes."""

    old_size: int
    proof: tuple[bytes, ...]
    note: bytes


def parse_add_checkpoint(body: bytes) -> AddCheckpoint:
    """Parse an ``add-checkpoint`` body strictly (the note itself is parsed by the caller)."""
    if len(body) > MAX_BODY_SIZE:
        raise TooLargeError(f"request body is over {MAX_BODY_SIZE} bytes")
    if not body.startswith(b"old "):
        raise MalformedError("request body does not start with an old size line")
    end = body.find(b"\n")
    if end < 0:
        raise MalformedError("old size line has no newline")
    try:
        size_text = body[4:end].decode("ascii")
    except UnicodeDecodeError:
        raise MalformedError("old size is not ASCII") from None
    old = parse_uint63(size_text, what="old size")
    proof: list[bytes] = []
    pos = end + 1
    while True:
        nl = body.find(b"\n", pos)
        if nl < 0:
            raise MalformedError("request body has no empty line before the checkpoint")
        line = body[pos:nl]
        pos = nl + 1
        if not line:
            break
        if len(proof) == MAX_PROOF_LINES:
            raise TooLargeError(f"more than {MAX_PROOF_LINES} consistency proof lines")
        if len(line) != 44:
            raise MalformedError(f"proof line {len(proof) + 1} is not the base64 of a 32-byte hash")
        h = decode_base64(line.decode("ascii", errors="replace"), what=f"proof line {len(proof) + 1}")
        if len(h) != 32:
            raise MalformedError(f"proof line {len(proof) + 1} is not the base64 of a 32-byte hash")
        proof.append(h)
    note = body[pos:]
    if not note:
        raise MalformedError("request body has no checkpoint")
    return AddCheckpoint(old_size=old, proof=tuple(proof), note=bytes(note))


def encode_add_checkpoint(*, old_size: int, proof: list[bytes] | tuple[bytes, ...], note: bytes) -> bytes:
    """An ``add-checkpoint`` request body."""
    if len(proof) > MAX_PROOF_LINES:
        raise TooLargeError(f"more than {MAX_PROOF_LINES} consistency proof lines")
    lines = [f"old {old_size}\n".encode("ascii")]
    lines += [base64.b64encode(h) + b"\n" for h in proof]
    return b"".join(lines) + b"\n" + note


def encode_size(size: int) -> bytes:
    """The body of a 409 answer: the size and a newline."""
    return b"%d\n" % size


def parse_size(body: bytes) -> int:
    """Read the size from a 409 answer's body."""
    if len(body) > 32 or not body.endswith(b"\n"):
        raise MalformedError("witness size answer is not one decimal line")
    try:
        text = body[:-1].decode("ascii")
    except UnicodeDecodeError:
        raise MalformedError("witness size answer is not ASCII") from None
    return parse_uint63(text, what="witness size")
