"""Audit a stored log: recompute everything it claims, from its entries up.

:func:`audit` streams the log once, in index order, with memory bounded by a chunk of
rows and the ``O(log n)`` right edge of the tree, and checks

1. that entries are contiguous from index 0 and every stored hash exists;
2. that every entry parses strictly (canonical entry and statement encodings);
3. the hash chain: entry ``i``'s ``prev`` is the leaf hash of entry ``i-1`` (zeros for 0);
4. that every statement is signed by one of the caller's log keys: the key ID must be
   that key's (``key_id(origin, 0x01, key)``) and the signature must verify;
5. every stored Merkle hash, recomputed from the entries with
   :func:`ledger.log.merkle.stored_hashes`, and that no stored hash lies beyond the last entry;
6. every stored checkpoint: it opens (signature by one of the log keys, origin of this
   log), its size and root are the stored ones, its size is within the log, and its
   root equals the root recomputed from the entries at that size;
7. every stored cosigned note: its checkpoint text is byte-for-byte that of a stored
   checkpoint of its size, it carries a valid log signature, and every cosignature by
   one of the ``witnesses`` given verifies;
8. that the certificate index (:mod:`ledger.log.index`) holds exactly the rows the
   entries give: compared as multisets through a sum of row hashes, in constant memory.

The whole audit reads one snapshot of the database (one read transaction), so a log
audited while its writer appends is seen as it was when the audit began. Indexes are
read in order, one chunk per query, so a gap is reported at once with the first
missing index, however far away the next stored row is.

The first failure raises :class:`~ledger.errors.AuditError` whose ``index`` names the
first bad entry (``None`` for a fault not tied to one entry, such as a checkpoint
signature) and whose message says what is wrong and how far the audit got.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from ledger.errors import AuditError, LedgerError, MalformedError, SignatureError, StorageError
from ledger.keys import SIG_TYPE_ED25519, PublicKey, VerifierKey, key_id
from ledger.log import index as cert_index
from ledger.log import merkle, note
from ledger.log.checkpoint import DEFAULT_MAX_SIZE as CHECKPOINT_MAX_SIZE
from ledger.log.checkpoint import OpenedCheckpoint, open_checkpoint
from ledger.log.statement import GENESIS_PREV, Entry, statement_message
from ledger.log.store import LogStore, StoredCheckpoint

__all__ = ["AuditReport", "Progress", "audit", "log_key_map"]

#: Called as ``progress(done, total)`` every few thousand entries and at the end.
Progress = Callable[[int, int], None]
_PROGRESS_EVERY = 4096


@dataclass(frozen=True, kw_only=True)
class AuditReport:
    """What a successful audit checked."""

    origin: str
    size: int
    root_hash: bytes
    hashes_checked: int
    signatures_checked: int
    checkpoints_checked: int
    latest_checkpoint_size: int | None
    seconds: float
    cosigned_checked: int = 0

    def summary(self) -> str:
        """A few readable lines."""
        cp = (
            f"{self.checkpoints_checked} checkpoint(s), latest at size {self.latest_checkpoint_size}"
            if self.checkpoints_checked
            else "no checkpoints"
        )
        return (
            f"log {self.origin}: audit passed in {self.seconds:.1f}s\n"
            f"  {self.size} entries: chain, encoding and {self.signatures_checked} signatures ok\n"
            f"  {self.hashes_checked} stored hashes recomputed and equal\n"
            f"  {cp} verified\n"
            f"  {self.cosigned_checked} cosigned checkpoint note(s) verified\n"
            f"  root hash at size {self.size}: {self.root_hash.hex()}"
        )


def log_key_map(origin: str, keys: Iterable[PublicKey | VerifierKey]) -> dict[bytes, PublicKey]:
    """Key ID → public key for the given log keys of the log ``origin``.

    A :class:`PublicKey` is taken as an Ed25519 log key named ``origin``; a
    :class:`VerifierKey` must be an Ed25519 (type 0x01) key named ``origin``.
    """
    out: dict[bytes, PublicKey] = {}
    for k in keys:
        if isinstance(k, VerifierKey):
            if k.sig_type != SIG_TYPE_ED25519:
                raise MalformedError(f"key {k.name}: signature type 0x{k.sig_type:02x} is not a log key")
            if k.name != origin:
                raise MalformedError(f"key {k.name!r} is not a key of the log {origin!r}")
            out[k.key_id] = k.public_key
        elif isinstance(k, PublicKey):
            out[key_id(origin, SIG_TYPE_ED25519, k.raw)] = k
        else:
            raise MalformedError(f"not a public key: {type(k).__name__}")
    if not out:
        raise MalformedError("audit needs at least one log public key")
    return out


def _root_of_edge(edge: list[bytes]) -> bytes:
    """The root from the right-edge subtree hashes, largest first."""
    if not edge:
        return merkle.EMPTY_ROOT
    h = edge[-1]
    for left in reversed(edge[:-1]):
        h = merkle.node_hash(left, h)
    return h


class _RowSum:
    """A multiset of rows as a count and a sum of row hashes modulo 2**256."""

    __slots__ = ("count", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0

    def add(self, row: Sequence[Any]) -> None:
        try:
            data = msgpack.packb(list(row), use_bin_type=True)
        except (TypeError, ValueError, OverflowError):  # a value no entry can give
            data = repr(row).encode()
        self.count += 1
        self.total = (self.total + int.from_bytes(hashlib.sha256(data).digest(), "big")) % _MOD


_MOD = 1 << 256


class _Auditor:
    def __init__(
        self,
        store: LogStore,
        keys: dict[bytes, PublicKey],
        progress: Progress | None,
        witnesses: Sequence[VerifierKey] = (),
    ) -> None:
        self.store = store
        self.keys = keys
        self.progress = progress
        self.witnesses = tuple(witnesses)
        self.checked: dict[int, str] = {}  # size -> checkpoint text of a verified stored checkpoint

    def run(self) -> AuditReport:
        t0 = time.monotonic()
        store = self.store
        size = store.size
        first_entry, first_hash = store.first_indexes()
        for what, first in (("entry", first_entry), ("stored hash", first_hash)):
            if first is not None and first < 0:
                raise AuditError(f"{what} index {first} is negative: the log was tampered with", index=0)
        checkpoints = store.checkpoints()
        next_cp = next(checkpoints, None)
        n_checkpoints = 0
        latest_cp: int | None = None
        while next_cp is not None and next_cp.size == 0:
            self._check_checkpoint(next_cp, merkle.EMPTY_ROOT)
            n_checkpoints += 1
            latest_cp = 0
            next_cp = next(checkpoints, None)
        # The right edge of the tree recomputed so far: (stored-hash index, hash) of each
        # complete subtree, largest first. The siblings stored_hashes asks for when
        # adding entry i are its smallest subtrees, in order; the last hash it returns
        # is the subtree that replaces them.
        edge: list[tuple[int, bytes]] = []

        def read(want: Sequence[int]) -> list[bytes]:
            out = []
            for k, w in enumerate(want):
                j, h = edge[-1 - k]
                if j != w:  # pragma: no cover - merkle asks for the right edge only
                    raise AuditError(f"internal error: stored hash {w} is not on the right edge")
                out.append(h)
            return out

        prev = GENESIS_PREV
        index_rows = _RowSum()
        hashes = self._hash_rows(merkle.stored_hash_count(size))
        expect = hash_count = signatures = 0
        for idx, data in store.scan_entries(0, size):
            if idx != expect:
                raise AuditError(f"entry {expect} is missing (next stored entry is {idx})", index=expect)
            i = idx
            if type(data) is not bytes:
                raise AuditError(f"entry {i} is stored as {type(data).__name__}, not bytes", index=i)
            try:
                entry = Entry.from_bytes(data)
            except LedgerError as e:
                raise AuditError(f"entry {i} is malformed: {e}", index=i) from None
            if entry.prev != prev:
                raise AuditError(
                    f"entry {i}: prev does not match the leaf hash of entry {i - 1}: the hash chain is broken"
                    if i
                    else "entry 0: prev is not 32 zero bytes: the hash chain does not start at genesis",
                    index=i,
                )
            signed = entry.signed
            for row in cert_index.rows_for_statement(i, signed.statement):
                index_rows.add(row)
            key = self.keys.get(signed.key_id)
            if key is None:
                raise AuditError(
                    f"entry {i}: signed by key ID {signed.key_id.hex()}, which is not one of the "
                    f"{len(self.keys)} log key(s) given",
                    index=i,
                )
            if not key.is_valid(signed.signature, statement_message(signed.statement_bytes)):
                raise AuditError(
                    f"entry {i}: statement signature does not verify under key {signed.key_id.hex()}",
                    index=i,
                )
            signatures += 1
            leaf = merkle.leaf_hash(data)
            computed = merkle.stored_hashes(i, leaf, read)
            for h in computed:
                j, stored = next(hashes, (None, None))
                if j is None or stored is None:
                    raise AuditError(f"entry {i}: its stored hashes are missing", index=i)
                if stored != h:
                    level, n = merkle.split_stored_hash_index(j)
                    raise AuditError(
                        f"entry {i}: stored hash {j} (level {level}, subtree {n}) does not match "
                        "the hash recomputed from the entries",
                        index=i,
                    )
            hash_count += len(computed)
            del edge[len(edge) - (len(computed) - 1) :]
            edge.append((hash_count - 1, computed[-1]))
            prev = leaf
            expect = i + 1
            while next_cp is not None and next_cp.size == expect:
                self._check_checkpoint(next_cp, _root_of_edge([h for _, h in edge]))
                n_checkpoints += 1
                latest_cp = next_cp.size
                next_cp = next(checkpoints, None)
            if self.progress is not None and expect % _PROGRESS_EVERY == 0:
                self.progress(expect, size)
        if expect != size:
            raise AuditError(f"entry {expect} is missing (the log should have {size} entries)", index=expect)
        last = store.last_hash_index()
        if last is not None and last >= merkle.stored_hash_count(size):
            raise AuditError(
                f"stored hash {last} lies beyond the hashes of the {size} entries: the log was truncated "
                "or a hash was added",
                index=size,
            )
        if next_cp is not None:
            raise AuditError(
                f"a checkpoint signed for size {next_cp.size} is beyond the log's {size} entries: "
                "the log was truncated",
                index=size,
            )
        cosigned = self._check_cosigned()
        stored_rows = _RowSum()
        if store.has_cert_index:  # a file from before the index is audited without it
            for row in store.scan_cert_index():
                stored_rows.add(row)
        else:
            stored_rows = index_rows
        if (stored_rows.count, stored_rows.total) != (index_rows.count, index_rows.total):
            raise AuditError(
                f"the certificate index does not match the entries: it has {stored_rows.count} row(s), "
                f"the {size} entries give {index_rows.count}"
                + ("" if stored_rows.count != index_rows.count else ", but different ones")
            )
        if self.progress is not None:
            self.progress(size, size)
        root = _root_of_edge([h for _, h in edge])
        return AuditReport(
            origin=store.origin,
            size=size,
            root_hash=root,
            hashes_checked=merkle.stored_hash_count(size),
            signatures_checked=signatures,
            checkpoints_checked=n_checkpoints,
            latest_checkpoint_size=latest_cp,
            seconds=time.monotonic() - t0,
            cosigned_checked=cosigned,
        )

    def _check_cosigned(self) -> int:
        """Check every stored cosigned note against the verified stored checkpoints."""
        count = 0
        for size, data in self.store.cosigned_notes():
            what = f"cosigned note for size {size}"
            if type(data) is not bytes:
                raise AuditError(f"{what} is stored as {type(data).__name__}, not bytes")
            text = self.checked.get(size)
            if text is None:
                raise AuditError(
                    f"{what}: no stored checkpoint of that size: it cosigns nothing this log signed"
                )
            try:
                parsed = note.parse(data, max_size=CHECKPOINT_MAX_SIZE)
                if parsed.text != text:
                    raise AuditError(
                        f"{what}: its checkpoint text differs from the stored checkpoint of size {size}"
                    )
                self._open(data)
            except LedgerError as e:
                if isinstance(e, AuditError):
                    raise
                raise AuditError(f"{what} does not verify: {e}") from None
            count += 1
        return count

    def _hash_rows(self, count: int) -> Iterator[tuple[int, Any]]:
        for expect, (j, h) in enumerate(self.store.scan_hashes(0, count)):
            if j != expect:
                message, index = self._missing_hash(expect)
                raise AuditError(message, index=index)
            yield j, h

    def _missing_hash(self, j: int) -> tuple[str, int]:
        level, n = merkle.split_stored_hash_index(j)
        i = ((n + 1) << level) - 1  # the entry that completes this subtree
        return f"entry {i}: stored hash {j} (level {level}, subtree {n}) is missing", i

    def _check_checkpoint(self, cp: StoredCheckpoint, root: bytes) -> None:
        """Check one stored checkpoint against the root recomputed from the entries."""
        what = f"checkpoint for size {cp.size} (signed at {cp.signed_at})"
        data = cp.note
        if type(data) is not bytes:
            raise AuditError(f"{what} is stored as {type(data).__name__}, not bytes")
        try:
            opened = self._open(data)
        except LedgerError as e:
            raise AuditError(f"{what} does not verify: {e}") from None
        signed = opened.checkpoint
        if signed.size != cp.size or signed.root_hash != cp.root_hash:
            raise AuditError(
                f"{what}: the stored size and root do not match the signed note "
                f"(it signs size {signed.size}, root {signed.root_hash.hex()})"
            )
        if signed.root_hash != root:
            raise AuditError(
                f"{what}: it signs root {signed.root_hash.hex()}, but the entries give {root.hex()}: "
                f"the first {cp.size} entries were rewritten after it was signed"
            )
        self.checked[cp.size] = signed.to_text()

    def _open(self, data: bytes) -> OpenedCheckpoint:
        """Open a signed checkpoint with whichever given log key signed it."""
        parsed = note.parse(data, max_size=CHECKPOINT_MAX_SIZE)
        origin = self.store.origin
        signers = {(s.name, s.key_id) for s in parsed.signatures}
        for kid, public_key in self.keys.items():
            if (origin, kid) in signers:
                log_key = VerifierKey(name=origin, public_key=public_key)
                return open_checkpoint(data, log_key=log_key, witnesses=self.witnesses)
        seen = ", ".join(sorted({s.key for s in parsed.signatures}))
        raise SignatureError(f"signed by {seen}, none of the {len(self.keys)} log key(s) given")


def audit(
    path_or_store: str | os.PathLike[str] | LogStore,
    *,
    keys: Iterable[PublicKey | VerifierKey],
    progress: Progress | None = None,
    witnesses: Iterable[VerifierKey] = (),
) -> AuditReport:
    """Audit a log (a path, opened read-only, or an open store) against its public keys.

    ``witnesses`` are witness keys (type 0x04) whose cosignatures on stored checkpoints
    must verify; cosignatures by other keys are not checked. The audit reads one
    snapshot of the database (see the module docstring). Returns an
    :class:`AuditReport` when everything holds; raises
    :class:`~ledger.errors.AuditError` naming the first bad index otherwise, and
    :class:`~ledger.errors.StorageError` when the file is not a readable log.
    """
    if isinstance(path_or_store, LogStore):
        store, own = path_or_store, False
    else:
        store, own = LogStore.open(path_or_store, readonly=True), True
    try:
        key_map = log_key_map(store.origin, keys)
        try:
            with store.snapshot():
                return _Auditor(store, key_map, progress, tuple(witnesses)).run()
        except StorageError as e:
            raise AuditError(f"cannot read the log: {e}") from None
    finally:
        if own:
            store.close()
