"""C2SP transparency-log proofs (https://c2sp.org/tlog-proof): an offline-verifiable
proof that an entry is in a log, as text::

    c2sp.org/tlog-proof@v1
    extra <base64 of opaque extra data>       (optional; not authenticated)
    index <entry index>                       (ASCII decimal, no leading zeros)
    <base64 of a 32-byte hash>                (the RFC 9162 inclusion proof, zero or more
    ...                                        lines, the leaf's sibling first)
    <empty line>
    <the signed checkpoint note, verbatim, cosignatures included>

:func:`parse` is strict (canonical numbers and base64, at most
:data:`MAX_PROOF_HASHES` hashes, a well-formed signed checkpoint, a size cap) and
:func:`verify` checks the log's signature, a quorum of witness cosignatures, and the
inclusion of the entry under the checkpoint's root hash. ``extra`` is carried as is:
nothing vouches for it, so a verifier must not trust it.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from ledger.errors import MalformedError, ProofError, SignatureError, TooLargeError
from ledger.keys import VerifierKey
from ledger.log import merkle, note
from ledger.log.checkpoint import DEFAULT_MAX_SIZE as CHECKPOINT_MAX_SIZE
from ledger.log.checkpoint import Checkpoint, OpenedCheckpoint, open_checkpoint, parse_uint63

__all__ = [
    "DEFAULT_MAX_SIZE",
    "HEADER",
    "MAX_PROOF_HASHES",
    "TlogProof",
    "make_proof",
    "parse",
    "verify",
]

#: The first line of every proof.
HEADER = "c2sp.org/tlog-proof@v1"
#: A tree has at most 2**63 - 1 entries, so an inclusion proof has at most 63 hashes.
MAX_PROOF_HASHES = 63
#: Default cap on a whole proof, in bytes: a maximal signed checkpoint, a maximal
#: inclusion proof, and room for extra data.
DEFAULT_MAX_SIZE = CHECKPOINT_MAX_SIZE + 64 * 1024
_MAX_INDEX = (1 << 63) - 1
_HASH_B64_LEN = 44


@lru_cache(maxsize=256)
def _check_checkpoint_note(data: bytes) -> Checkpoint:
    """The checkpoint a signed-checkpoint note holds (syntax only; nothing verified).

    Remembered by exact bytes: many proofs carry the same checkpoint.
    """
    parsed = note.parse(data, max_size=CHECKPOINT_MAX_SIZE)
    return Checkpoint.parse(parsed.text)


@dataclass(frozen=True, kw_only=True)
class TlogProof:
    """Entry ``index``, its inclusion proof, the signed checkpoint it is proved against
    (exact note bytes), and optional opaque ``extra`` data (non-empty when present)."""

    index: int
    proof: tuple[bytes, ...]
    checkpoint: bytes
    extra: bytes | None = None

    def __post_init__(self) -> None:
        if type(self.index) is not int or not 0 <= self.index <= _MAX_INDEX:
            raise MalformedError("proof index must be an int in [0, 2^63-1]")
        if not isinstance(self.proof, tuple) or not all(
            isinstance(h, bytes) and len(h) == merkle.HASH_SIZE for h in self.proof
        ):
            raise MalformedError("inclusion proof must be a tuple of 32-byte hashes")
        if len(self.proof) > MAX_PROOF_HASHES:
            raise TooLargeError(f"inclusion proof has more than {MAX_PROOF_HASHES} hashes")
        if not isinstance(self.checkpoint, bytes):
            raise MalformedError("checkpoint must be the signed checkpoint note's bytes")
        try:
            _check_checkpoint_note(self.checkpoint)
        except MalformedError as e:
            raise type(e)(f"proof checkpoint: {e}") from None
        if self.extra is not None and (not isinstance(self.extra, bytes) or not self.extra):
            raise MalformedError("extra data must be non-empty bytes when present")

    def to_bytes(self) -> bytes:
        """The proof in the tlog-proof text format."""
        lines = [HEADER]
        if self.extra is not None:
            lines.append("extra " + base64.b64encode(self.extra).decode("ascii"))
        lines.append(f"index {self.index}")
        lines.extend(base64.b64encode(h).decode("ascii") for h in self.proof)
        return ("\n".join(lines) + "\n\n").encode("ascii") + self.checkpoint

    def to_text(self) -> str:
        """:meth:`to_bytes` as a str."""
        return self.to_bytes().decode("utf-8")


def parse(data: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> TlogProof:
    """Parse a tlog-proof strictly, without verifying anything.

    TooLargeError if ``data`` exceeds ``max_size`` bytes or the proof has more than
    :data:`MAX_PROOF_HASHES` hashes; MalformedError for anything else that is not
    exactly a tlog-proof with a well-formed signed checkpoint.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedError("a proof must be bytes")
    data = bytes(data)
    if len(data) > max_size:
        raise TooLargeError(f"proof is {len(data)} bytes, more than the {max_size}-byte limit")
    pos = 0
    lineno = 0

    def next_line() -> str:
        nonlocal pos, lineno
        end = data.find(b"\n", pos)
        if end < 0:
            raise MalformedError(f"proof ends inside line {lineno + 1}, before the checkpoint")
        raw = data[pos:end]
        pos = end + 1
        lineno += 1
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise MalformedError(f"proof line {lineno} is not ASCII") from None

    if next_line() != HEADER:
        raise MalformedError(f"proof does not start with the line {HEADER!r}")
    line = next_line()
    extra = None
    if line.startswith("extra "):
        extra = note.decode_base64(line[len("extra ") :], what="proof extra data")
        if not extra:
            raise MalformedError("proof extra line is empty; omit the line when there is no extra data")
        line = next_line()
    if not line.startswith("index "):
        raise MalformedError(f"proof line {lineno} is not 'index <n>'")
    index = parse_uint63(line[len("index ") :], what="proof index")
    hashes: list[bytes] = []
    while (line := next_line()) != "":
        if len(hashes) == MAX_PROOF_HASHES:
            raise TooLargeError(f"inclusion proof has more than {MAX_PROOF_HASHES} hashes")
        if len(line) != _HASH_B64_LEN:
            raise MalformedError(f"proof line {lineno} is not the base64 of a 32-byte hash")
        h = note.decode_base64(line, what=f"proof line {lineno}")
        if len(h) != merkle.HASH_SIZE:
            raise MalformedError(f"proof line {lineno} is not the base64 of a 32-byte hash")
        hashes.append(h)
    checkpoint = data[pos:]
    if not checkpoint:
        raise MalformedError("proof has no checkpoint after the empty line")
    return TlogProof(index=index, proof=tuple(hashes), checkpoint=checkpoint, extra=extra)


def make_proof(
    *, index: int, signed_checkpoint: bytes, read: merkle.HashReader, extra: bytes | None = None
) -> TlogProof:
    """The proof that entry ``index`` is in the tree ``signed_checkpoint`` commits to.

    ``read`` reads the log's stored hashes (see :mod:`ledger.log.merkle`); the checkpoint's
    signature is not checked here.
    """
    cp = _check_checkpoint_note(bytes(signed_checkpoint))
    if not 0 <= index < cp.size:
        raise ProofError(f"entry {index} is not in the checkpointed tree of size {cp.size}")
    hashes = merkle.prove_record(cp.size, index, read)
    return TlogProof(index=index, proof=tuple(hashes), checkpoint=signed_checkpoint, extra=extra)


def verify(
    proof: TlogProof,
    *,
    log_key: VerifierKey,
    leaf: bytes | None = None,
    leaf_hash: bytes | None = None,
    witnesses: Sequence[VerifierKey] = (),
    quorum: int = 0,
    now: int | None = None,
) -> OpenedCheckpoint:
    """Check ``proof`` for the entry ``leaf`` (its bytes) or ``leaf_hash`` (its RFC 9162
    leaf hash): the log's signature on the checkpoint, cosignatures from at least
    ``quorum`` of ``witnesses``, and the inclusion proof. Returns the opened checkpoint.

    With ``now`` (the verifier's clock), a cosignature from the future is refused
    (PolicyError ``future-time``). Raises SignatureError (signatures, quorum),
    ProofError (inclusion), or the errors of :func:`~ledger.log.checkpoint.open_checkpoint`.
    """
    if (leaf is None) == (leaf_hash is None):
        raise MalformedError("give exactly one of leaf and leaf_hash")
    if type(quorum) is not int or quorum < 0:
        raise MalformedError("witness quorum must be a non-negative int")
    lh = merkle.leaf_hash(leaf) if leaf is not None else leaf_hash
    assert lh is not None
    if not isinstance(lh, bytes) or len(lh) != merkle.HASH_SIZE:
        raise MalformedError("leaf hash must be 32 bytes")
    opened = open_checkpoint(proof.checkpoint, log_key=log_key, witnesses=witnesses, now=now)
    got = len(opened.cosignatures)
    if got < quorum:
        names = ", ".join(sorted(opened.cosignatures)) or "none"
        raise SignatureError(
            f"checkpoint is cosigned by {got}/{quorum} required witnesses "
            f"(verified: {names}; {len(witnesses)} witness key(s) trusted)"
        )
    cp = opened.checkpoint
    if proof.index >= cp.size:
        raise ProofError(f"entry {proof.index} is not in the checkpointed tree of size {cp.size}")
    try:
        merkle.check_record(proof.proof, cp.size, cp.root_hash, proof.index, lh)
    except ProofError as e:
        raise ProofError(f"entry {proof.index} in {cp.origin} at size {cp.size}: {e}") from None
    return opened
