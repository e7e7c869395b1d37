"""Keeping a verified copy of one member's log: :class:`Replica`.

:meth:`Replica.sync` tries its sources in turn (the data is signed, so any node, mirror
or static copy will do, and the issuer is never needed) and, before storing anything:

1. opens the source's checkpoint: signed by one of the member's log keys, cosigned by
   the policy's witness quorum (:func:`ledger.replica.checks.open_witnessed`);
2. checks it against the copy already held: the same size must have the same root, a
   smaller one must be a prefix, a larger one must be consistent (a consistency proof
   read from the source's tiles, every tile authenticated against the new root). A
   contradiction between two signed checkpoints is a **fork**: refused and kept as an
   alert with both notes and the failed proof;
3. reads the new entries' bundles and checks each entry against its level-0 tile,
   authenticated up to the signed root (a tile or bundle that does not hash to the
   checkpoint is refused and its source named, and the next source is tried);
4. checks the hash chain and every statement's signature, recomputes the tree, and
   judges each statement's key validity (with the compromise rule at this
   checkpoint's witness time), mandate and maker; a statement that fails these stays
   in the copy marked with its problem and never counts for a verdict;
5. keeps the checked entries, hashes and certificate index rows batch by batch (one
   transaction per :data:`BATCH_BUNDLES` bundles, so memory stays flat however long
   the log), and once the tree gives the signed root, stores the checkpoint, which
   makes them replica data in one transaction. Until then nothing past the copy's
   size is read as replica data.

A catch-up keeps the batches it checked, so an interrupted one resumes where it
stopped. Re-fetching the same checkpoint with newer cosignatures refreshes the copy's
"as of" time. ``sync(statements=False)`` checks the checkpoint, tree, chain and root
only (what serving the copy as tiles needs); verdicts then keep reading the prefix
whose statements are checked until :meth:`Replica.check_statements` checks the rest.
"""

from __future__ import annotations

import hashlib
import itertools
import multiprocessing
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from ledger.errors import (
    ConflictError,
    FileError,
    LedgerError,
    MalformedError,
    PolicyError,
    ProofError,
    SignatureError,
    TooLargeError,
)
from ledger.keys import PublicKey
from ledger.log import merkle
from ledger.log.checkpoint import DEFAULT_MAX_SIZE
from ledger.log.statement import (
    GENESIS_PREV,
    MAX_ENTRY_SIZE,
    STATEMENT_CONTEXT,
    Entry,
    SignedStatement,
    statement_fields,
)
from ledger.replica import tiles
from ledger.replica.checks import EntryJudge, entry_problem, open_witnessed
from ledger.replica.fetch import Fetcher, NotFoundError
from ledger.replica.store import ReplicaStore, WitnessedCheckpoint
from ledger.trust.policy import Member, Policy

__all__ = ["Replica", "SyncResult", "get_tile", "tree_reader"]

_MAX_TILE = tiles.TILE_WIDTH * merkle.HASH_SIZE
_MAX_BUNDLE = tiles.TILE_WIDTH * (2 + MAX_ENTRY_SIZE)
#: Entry bundles checked and kept per transaction during a catch-up.
BATCH_BUNDLES = 16
#: The last bytes of every canonical entry: key 4, a 32-byte binary string (the chain link).
_LINK_TAG = b"\x04\xc4\x20"
_sha256 = hashlib.sha256
#: Fewest entries to check for which ``workers`` processes are started.
PARALLEL_MIN = 4 * BATCH_BUNDLES * tiles.TILE_WIDTH


def get_tile(src: Fetcher, t: tiles.Tile) -> bytes:
    """A tile at exactly the width asked: the partial tile, else a prefix of the full one."""
    limit = _MAX_BUNDLE if t.is_entries else _MAX_TILE
    try:
        return src.get(t.path, max_size=limit)
    except NotFoundError:
        if t.is_full:
            raise
    full = src.get(t.full.path, max_size=limit)
    if t.is_entries:
        items = tiles.decode_bundle(t.full, full)[: t.width]
        return tiles.encode_bundle(items)
    return full[: t.size]


def tree_reader(src: Fetcher, size: int, root: bytes) -> merkle.HashReader:
    """A hash reader for the tree ``(size, root)`` from a source's tiles, each tile
    authenticated against ``root`` (ProofError or FileError when it cannot be)."""
    cache: dict[tiles.Tile, bytes] = {}

    def fetch(wanted: Sequence[tiles.Tile]) -> list[bytes]:
        out = []
        for t in wanted:
            data = cache.get(t)
            if data is None:
                data = cache[t] = get_tile(src, t)
            out.append(data)
        return out

    return tiles.tile_hash_reader(size, root, fetch)


class _Refused(LedgerError):
    """This source's data did not verify; try the next one."""


class _BadEntry(Exception):
    """Entry ``n`` of the signed log is bad (``why``): the log itself is invalid."""

    def __init__(self, n: int, why: str) -> None:
        super().__init__(why)
        self.n = n
        self.why = why


class _Forked(LedgerError):
    """Two signed checkpoints of the log contradict each other."""


@dataclass(frozen=True, kw_only=True)
class SyncResult:
    """What one sync did. ``refused`` names each source that failed and why."""

    member_id: str
    size_before: int
    size: int
    checkpoint: WitnessedCheckpoint | None
    source: str | None
    refused: tuple[str, ...]
    forked: bool

    @property
    def ok(self) -> bool:
        """True when a source's checkpoint verified (the copy is current as of it)."""
        return self.source is not None and not self.forked


class Replica:
    """A verified copy of ``member_id``'s log in ``store``, checked against ``policy``.

    With ``workers`` above 1, a long catch-up checks statement signatures in that many
    processes while this one parses the entries; nothing is stored before its checks
    have passed.
    """

    def __init__(
        self,
        *,
        store: ReplicaStore,
        policy: Policy,
        member_id: str,
        clock: Callable[[], float] = time.time,
        workers: int = 1,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.store = store
        self.policy = policy
        self.member: Member = policy.require_member(member_id)
        self._clock = clock
        self.workers = workers

    @property
    def origin(self) -> str:
        """The log's origin."""
        return self.member.origin

    def latest(self) -> WitnessedCheckpoint | None:
        """The newest witnessed checkpoint held, with its witness time (freshness)."""
        return self.store.latest_checkpoint(self.origin)

    def _now(self) -> int:
        return int(self._clock())

    def sync(self, sources: Sequence[Fetcher], *, statements: bool = True) -> SyncResult:
        """Bring the copy up to date from the sources, tried in turn.

        The first source whose checkpoint verifies and adds entries ends the sync; a
        source that verifies but has nothing new (a lagging mirror) is noted and the
        next one is tried. ``source`` of the result names the last source that
        verified; ``refused`` says why each other one failed.

        With ``statements`` false only the checkpoint, the tree, the hash chain and the
        root are checked (what serving the copy as tiles needs): the new entries are
        kept but not indexed, and verdicts keep reading the prefix whose statements are
        checked, until :meth:`check_statements` (or a sync with ``statements``) checks
        them.
        """
        before = self.store.size(self.origin)
        refused: list[str] = []
        verified: str | None = None
        if statements and self.store.checked_size(self.origin) < before:
            try:
                self.check_statements()
            except (_Refused, ConflictError) as e:
                return self._result(before, None, [f"statement check: {e}"], forked=False)
        for src in sources:
            try:
                cp = self._checkpoint(src)
                self._resume(src, cp, statements)
                self._advance(src, cp, statements)
            except _Forked:
                return self._result(before, None, refused, forked=True)
            except (
                _Refused,
                ConflictError,
                FileError,
                MalformedError,
                SignatureError,
                PolicyError,
                ProofError,
            ) as e:
                refused.append(f"{src.name}: {e}")
                continue
            verified = src.name
            if self.store.size(self.origin) > before:
                break
        return self._result(before, verified, refused, forked=False)

    def _result(self, before: int, source: str | None, refused: list[str], *, forked: bool) -> SyncResult:
        return SyncResult(
            member_id=self.member.id,
            size_before=before,
            size=self.store.size(self.origin),
            checkpoint=self.latest(),
            source=source,
            refused=tuple(refused),
            forked=forked,
        )

    def _checkpoint(self, src: Fetcher) -> WitnessedCheckpoint:
        data = src.get("checkpoint", max_size=DEFAULT_MAX_SIZE)
        try:
            return open_witnessed(data, policy=self.policy, member=self.member, now=self._now())
        except (MalformedError, SignatureError, PolicyError) as e:
            raise _Refused(f"checkpoint refused: {e}") from None

    def _resume(self, src: Fetcher, newest: WitnessedCheckpoint, statements: bool) -> None:
        """Finish an interrupted catch-up first, if the source still serves its tiles.

        The checkpoint it was heading for verified (log signature, witness quorum): a
        ``newest`` that contradicts it is a fork, as with a checkpoint the copy holds."""
        store, origin = self.store, self.origin
        pending = store.pending(origin)
        if pending is None:
            return
        try:
            cp = open_witnessed(pending[0], policy=self.policy, member=self.member, now=self._now())
        except LedgerError:
            store.drop_staged(origin)
            return
        size = store.size(origin)
        if cp.note == newest.note or cp.size <= size:
            return
        if cp.size <= newest.size:
            self._pending_fork_from_tiles(src, cp, newest)
            self._advance(src, cp, statements)
        elif (  # the pending tree's first entries are staged, checked against its root
            size < newest.size <= store.resume_point(origin)
            and merkle.tree_hash(newest.size, store.hash_reader(origin)) != newest.root_hash
        ):
            raise self._fork(
                src, cp, newest, [], f"the roots at size {newest.size} differ from the pending catch-up's"
            )

    def _pending_fork_from_tiles(
        self, src: Fetcher, pending: WitnessedCheckpoint, newest: WitnessedCheckpoint
    ) -> None:
        """_Forked if the source's own tree (``newest``) proves that it does not extend
        ``pending``; nothing if it does, or if its tiles cannot tell."""
        try:
            reader, _ = self._tile_reader(src, newest)
            proof = merkle.prove_fork(newest.size, pending.size, reader)
            merkle.check_fork(proof, newest.size, newest.root_hash, pending.size, pending.root_hash)
        except (ProofError, FileError, MalformedError, TooLargeError):
            return
        raise self._fork(
            src, pending, newest, proof, "it does not extend the checkpoint a catch-up was heading for"
        )

    # -- one step to a verified checkpoint -------------------------------------------------

    def _fork(
        self,
        src: Fetcher,
        held: WitnessedCheckpoint,
        new: WitnessedCheckpoint,
        proof: Sequence[bytes],
        why: str,
    ) -> _Forked:
        alert = self.store.add_alert(
            origin=self.origin,
            member_id=self.member.id,
            kind="fork",
            message=f"fork: the checkpoint of size {new.size} contradicts the one of size {held.size} "
            f"held before: {why}",
            created=self._now(),
            note_a=held.note,
            note_b=new.note,
            proof=proof,
            source=src.name,
        )
        return _Forked(alert.message)

    def _advance(self, src: Fetcher, cp: WitnessedCheckpoint, statements: bool) -> None:
        store, origin = self.store, self.origin
        held = store.latest_checkpoint(origin)
        m = 0 if held is None else held.size
        if held is not None and cp.size <= m:
            ours = held.root_hash if cp.size == m else merkle.tree_hash(cp.size, store.hash_reader(origin))
            if ours != cp.root_hash:
                proof = [] if cp.size in (0, m) else merkle.prove_fork(m, cp.size, store.hash_reader(origin))
                raise self._fork(src, held, cp, proof, "the roots differ at that size")
            if cp.size == m:
                store.refresh(cp, verified_at=self._now())
            return
        if cp.size == 0:
            store.commit(cp, verified_at=self._now(), start=0, statements_checked=statements)
            return
        reader, seen = self._tile_reader(src, cp)
        if held is not None and m > 0:
            try:
                proof = merkle.prove_tree(cp.size, m, reader)
            except ProofError as e:
                raise self._refuse(src, f"tiles for the consistency proof: {e}") from None
            try:
                merkle.check_tree(proof, cp.size, cp.root_hash, m, held.root_hash)
            except ProofError as e:  # the tiles are cp's own: its first m records differ
                try:
                    evidence = merkle.prove_fork(cp.size, m, reader)
                except ProofError as e2:
                    raise self._refuse(src, f"tiles for the fork proof: {e2}") from None
                raise self._fork(src, held, cp, evidence, f"consistency proof fails ({e})") from None
        pending = store.pending(origin)
        fetched = m
        if pending is not None:
            fetched = store.resume_point(origin) if pending[0] == cp.note else -1
            # the kept entries must have been checked the way this sync checks them
            indexed = store.index_tip(origin) == fetched
            if not m <= fetched <= cp.size or (fetched > m and indexed != statements):
                store.drop_staged(origin)
                fetched = m
        tree = _Tree.resume(store, origin, fetched)
        pool = self._pool(cp.size - fetched) if statements else None
        width = tiles.TILE_WIDTH
        try:
            waiting: _Batch | None = None
            while fetched < cp.size:
                start = fetched
                datas: list[bytes] = []
                leaves: list[bytes] = []
                last_bundle = fetched // width + BATCH_BUNDLES
                failed: LedgerError | None = None
                while fetched < cp.size and fetched // width < last_bundle:
                    k = fetched // width
                    try:
                        got, hashed = self._checked_bundle(src, reader, seen, k, cp.size)
                    except LedgerError as e:  # keep the bundles checked so far, then stop
                        failed = e
                        break
                    skip = fetched - k * width
                    datas.extend(got[skip:])
                    leaves.extend(hashed[skip:])
                    fetched = k * width + len(got)
                batch = self._check_batch(src.name, cp, tree, start, datas, leaves, statements, pool)
                if waiting is not None:
                    self._keep(src, cp, m, waiting)
                waiting = batch
                if failed is not None:
                    self._keep(src, cp, m, waiting)
                    raise failed
            if waiting is not None:
                self._keep(src, cp, m, waiting)
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        root = tree.root()
        if root != cp.root_hash:
            store.drop_staged(origin)
            raise self._refuse(src, f"the entries give root {root.hex()}, not the checkpoint's")
        store.commit(cp, verified_at=self._now(), start=m, statements_checked=statements)

    def _checked_bundle(
        self, src: Fetcher, reader: merkle.HashReader, seen: dict[tiles.Tile, bytes], k: int, size: int
    ) -> tuple[list[bytes], list[bytes]]:
        """Entry bundle ``k`` of the tree of ``size`` and its entries' leaf hashes, each
        checked against its level-0 tile, authenticated up to the root as a whole."""
        bundle = tiles.tile_for(tiles.ENTRIES, k, size)
        hash_tile = tiles.tile_for(0, k, size)
        assert bundle is not None and hash_tile is not None
        entries = self._bundle(src, bundle)
        first = k * tiles.TILE_WIDTH
        last = first + bundle.width - 1
        try:
            # Reading one hash authenticates its whole level-0 tile: a full one against
            # its parent, a partial one (at the tree's edge) against the root.
            reader([2 * last - last.bit_count()])  # stored_hash_index(0, last)
        except ProofError as e:
            raise self._refuse(src, str(e)) from None
        authentic = seen[hash_tile]
        leaves = [_sha256(b"\x00" + e).digest() for e in entries]
        if b"".join(leaves) != authentic[: len(leaves) * merkle.HASH_SIZE]:
            size_ = merkle.HASH_SIZE
            i = next(i for i, h in enumerate(leaves) if h != authentic[i * size_ : (i + 1) * size_])
            raise self._refuse(src, f"entry {first + i} in {bundle.path} does not hash to the checkpoint")
        return entries, leaves

    def _check_batch(  # noqa: PLR0917
        self,
        source: str,
        cp: WitnessedCheckpoint,
        tree: _Tree,
        start: int,
        datas: list[bytes],
        leaves: list[bytes],
        statements: bool,
        pool: Executor | None,
    ) -> _Batch:
        """Check the chain of entries ``start, ...`` (and, with ``statements``, parse them
        and start their signature checks) and extend ``tree`` with them."""
        hash_start = tree.hash_index
        hashes: list[bytes] = []
        index: list[tuple[Any, ...]] = []
        jobs: list[_Job] = []
        bad: _BadEntry | None = None
        if statements:
            try:
                index = self._statement_rows(start, datas, itertools.repeat(cp.witnessed_at), jobs)
            except _BadEntry as e:
                bad = e
        prev = tree.prev
        add = tree.add
        for n, (data, leaf) in enumerate(zip(datas, leaves, strict=True), start):
            if bad is not None and n >= bad.n:
                break
            if data[-32:] != prev or data[-35:-32] != _LINK_TAG:
                bad = _BadEntry(n, f"entry {n}: the hash chain is broken")
                break
            prev = leaf
            add(leaf, hashes)
        if bad is not None:
            raise self._bad_log(source, cp, bad.why)
        tree.prev = prev
        return _Batch(
            start=start,
            entries=datas,
            hash_start=hash_start,
            hashes=hashes,
            index=index,
            checks=_signature_checks(jobs, pool, self.workers),
        )

    def _keep(self, src: Fetcher, cp: WitnessedCheckpoint, base: int, batch: _Batch) -> None:
        """Store a checked batch once its signature checks have passed."""
        _raise_bad_signature(self, src.name, cp, batch.checks)
        self.store.write_checked(
            self.origin,
            note=cp.note,
            source=src.name,
            base=base,
            start=batch.start,
            entries=batch.entries,
            hash_start=batch.hash_start,
            hashes=batch.hashes,
            index=batch.index,
        )

    def _pool(self, count: int) -> Executor | None:
        """Processes for the signature checks of ``count`` entries, when worth starting."""
        if self.workers < 2 or count < PARALLEL_MIN:
            return None
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"))

    def _keys(self) -> dict[bytes, PublicKey]:
        return {self.member.log_key_id(k): k.public_key for k in self.member.log_keys}

    def _judge(self) -> EntryJudge:
        return EntryJudge(policy=self.policy, member=self.member)

    def _statement_rows(
        self, start: int, datas: Sequence[bytes], witnessed: Iterable[int], jobs: list[_Job]
    ) -> list[tuple[Any, ...]]:
        """Parse entries ``start, ...`` strictly, queue their signature checks in ``jobs``
        and judge their statements (each at its witness time): their index rows, with
        the origin first. _BadEntry for the first that does not parse or names a key the
        member does not have."""
        keys = self._keys()
        judge = self._judge()
        trusted = judge.trusted
        origin = self.origin
        rows: list[tuple[Any, ...]] = []
        for n, data, witnessed_at in zip(itertools.count(start), datas, witnessed):
            try:
                statement_bytes, key_id, signature = _entry_parts(data)
                fields = statement_fields(statement_bytes)
            except MalformedError as e:
                raise _BadEntry(n, f"entry {n} is malformed: {e}") from None
            key = keys.get(key_id)
            if key is None:
                raise _BadEntry(n, f"entry {n}: the statement signature does not verify")
            jobs.append((n, key.raw, signature, _CONTEXT + statement_bytes))
            if trusted(fields, key_id, witnessed_at=witnessed_at):
                problem = None
            else:  # the rule that fails, named the usual way
                signed = SignedStatement(statement_bytes=statement_bytes, key_id=key_id, signature=signature)
                problem = entry_problem(self.policy, self.member, signed, witnessed_at=witnessed_at)
            rows.append(
                (
                    origin,
                    n,
                    fields.cert_id,
                    fields.kind,
                    fields.issuer,
                    fields.cert_type,
                    fields.time,
                    _sha256(statement_bytes).digest(),
                    fields.replaces,
                    problem,
                )
            )
        return rows

    def check_statements(self) -> int:
        """Check and index the statements of entries a tree-only sync kept (signature, key
        validity at the first checkpoint covering each, mandate, maker); returns how many.

        A statement that fails its signature or does not parse is a bad log: kept as a
        ``bad-log`` alert, and verdicts stay on the prefix before it.
        """
        store, origin = self.store, self.origin
        start, size = store.checked_size(origin), store.size(origin)
        held = store.latest_checkpoint(origin)
        if start >= size or held is None:
            return 0
        covering = store.checkpoint_sizes(origin, start, size)
        pool = self._pool(size - start)
        done, c = start, 0
        try:
            while done < size:
                stop = min(size, done + BATCH_BUNDLES * tiles.TILE_WIDTH)
                jobs: list[_Job] = []
                witnessed = []
                for n in range(done, stop):
                    while covering[c][0] <= n:
                        c += 1
                    witnessed.append(covering[c][1])
                try:
                    index = self._statement_rows(done, store.entries(origin, done, stop), witnessed, jobs)
                except _BadEntry as e:
                    raise self._bad_log(None, held, e.why) from None
                _raise_bad_signature(self, None, held, _signature_checks(jobs, pool, self.workers))
                store.index_checked(origin, start=done, index=index)
                done = stop
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        return size - start

    def _refuse(self, src: Fetcher, why: str) -> _Refused:
        self.store.add_alert(
            origin=self.origin,
            member_id=self.member.id,
            kind="bad-source",
            message=f"refused data from {src.name}: {why}",
            created=self._now(),
            source=src.name,
        )
        return _Refused(why)

    def _get_tile(self, src: Fetcher, t: tiles.Tile) -> bytes:
        try:
            return get_tile(src, t)
        except MalformedError as e:  # oversize, or a full bundle that does not decode: the source's
            raise self._refuse(src, str(e)) from None

    def _tile_reader(
        self, src: Fetcher, cp: WitnessedCheckpoint
    ) -> tuple[merkle.HashReader, dict[tiles.Tile, bytes]]:
        """A reader of the source's hashes authenticated against ``cp``, and the tiles it
        read: the upper and partial ones, and the last full level-0 tile."""
        cache: dict[tiles.Tile, bytes] = {}
        level0: tiles.Tile | None = None

        def fetch(wanted: Sequence[tiles.Tile]) -> list[bytes]:
            nonlocal level0
            out = []
            for t in wanted:
                data = cache.get(t)
                if data is None:
                    data = cache[t] = self._get_tile(src, t)
                    if t.level == 0 and t.is_full:  # full level-0 tiles are read once
                        if level0 is not None:
                            del cache[level0]
                        level0 = t
                out.append(data)
            return out

        return tiles.tile_hash_reader(cp.size, cp.root_hash, fetch), cache

    def _bundle(self, src: Fetcher, t: tiles.Tile) -> list[bytes]:
        data = self._get_tile(src, t)
        try:
            return tiles.decode_bundle(t, data)
        except (MalformedError, TooLargeError) as e:
            raise self._refuse(src, str(e)) from None

    def _bad_log(self, source: str | None, cp: WitnessedCheckpoint, why: str) -> _Refused:
        """The member's signed log itself holds a bad entry: kept as evidence, never stored."""
        self.store.drop_staged(self.origin)
        alert = self.store.add_alert(
            origin=self.origin,
            member_id=self.member.id,
            kind="bad-log",
            message=f"the log of {self.member.id} at size {cp.size} is invalid: {why}",
            created=self._now(),
            note_b=cp.note,
            source=source,
        )
        return _Refused(alert.message)


def _entry_parts(data: bytes) -> tuple[bytes, bytes, bytes]:
    """The statement bytes, key ID and signature of an entry, parsed as strictly as
    :meth:`Entry.from_bytes` up to the statement (which :func:`statement_fields` parses).

    An entry in the one canonical layout (the bytes ``encode_entry`` gives for its parts:
    the map header, keys 0..4 in order, version 1, the shortest binary header for the
    statement, a 4-byte key ID, a 64-byte signature and a 32-byte link) is cut at
    those offsets; anything else goes through ``Entry.from_bytes``, which accepts or
    names the problem.
    """
    size = len(data)
    if 7 < size <= MAX_ENTRY_SIZE and data[:4] == _HEAD:
        length, off = 0, 0  # off 0: not a bin 8 or a needed bin 16 header
        if data[4] == 0xC4:
            length, off = data[5], 6
        elif data[4] == 0xC5 and data[5]:  # bin 16 only for 256 bytes or more
            length, off = int.from_bytes(data[5:7], "big"), 7
        end = off + length
        if (
            off
            and size == end + _TAIL
            and data[end : end + 3] == _KEY_ID_TAG
            and data[end + 7 : end + 10] == _SIGNATURE_TAG
            and data[end + 74 : end + 77] == _LINK_TAG
        ):
            return data[off:end], data[end + 3 : end + 7], data[end + 10 : end + 74]
    signed = Entry.from_bytes(data).signed
    return signed.statement_bytes, signed.key_id, signed.signature


def _signed_statement(data: bytes) -> SignedStatement:
    """The signed statement of an entry, parsed as strictly as :meth:`Entry.from_bytes`."""
    statement_bytes, key_id, signature = _entry_parts(data)
    return SignedStatement(statement_bytes=statement_bytes, key_id=key_id, signature=signature)


#: The canonical entry's first bytes: a map of 5, key 0 with version 1, key 1.
_HEAD = b"\x85\x00\x01\x01"
#: Key 2 with a 4-byte binary string (the key ID), key 3 with a 64-byte one (the signature).
_KEY_ID_TAG = b"\x02\xc4\x04"
_SIGNATURE_TAG = b"\x03\xc4\x40"
#: The canonical entry's bytes after the statement: key 2 with a 4-byte key ID, key 3
#: with a 64-byte signature, key 4 with the 32-byte chain link.
_TAIL = 3 + 4 + 3 + 64 + 3 + 32
_CONTEXT = STATEMENT_CONTEXT

_Job = tuple[int, bytes, bytes, bytes]  # entry index, public key, signature, signed message


def _first_bad(jobs: Sequence[_Job]) -> int | None:
    """The index of the first entry whose statement signature does not verify, or None."""
    keys: dict[bytes, PublicKey] = {}
    for n, raw, signature, message in jobs:
        key = keys.get(raw)
        if key is None:
            key = keys[raw] = PublicKey(raw=raw)
        if not key.is_valid(signature, message):
            return n
    return None


def _signature_checks(jobs: list[_Job], pool: Executor | None, workers: int) -> list[Future[int | None]]:
    """Start checking the signatures, split over the pool's processes (or here, without one)."""
    if pool is None:
        done: Future[int | None] = Future()
        done.set_result(_first_bad(jobs))
        return [done]
    step = -(-len(jobs) // workers) or 1
    return [pool.submit(_first_bad, jobs[i : i + step]) for i in range(0, len(jobs), step)]


def _raise_bad_signature(
    replica: Replica, source: str | None, cp: WitnessedCheckpoint, checks: Sequence[Future[int | None]]
) -> None:
    bad = [n for n in (f.result() for f in checks) if n is not None]
    if bad:
        raise replica._bad_log(source, cp, f"entry {min(bad)}: the statement signature does not verify")


@dataclass(frozen=True, kw_only=True)
class _Batch:
    """Entries checked up to their signatures, which ``checks`` are checking."""

    start: int
    entries: list[bytes]
    hash_start: int
    hashes: list[bytes]
    index: list[tuple[Any, ...]]
    checks: list[Future[int | None]]


class _Tree:
    """The right edge of a Merkle tree being extended, and the chain link to its last entry."""

    __slots__ = ("hash_index", "prev", "size", "stack")

    def __init__(self, *, size: int, stack: list[bytes], prev: bytes) -> None:
        self.size = size
        self.stack = stack  # the complete subtrees of [0, size), largest first
        self.hash_index = merkle.stored_hash_count(size)
        self.prev = prev

    @classmethod
    def resume(cls, store: ReplicaStore, origin: str, size: int) -> _Tree:
        edge = store.edge(origin, size)  # smallest subtree first
        return cls(
            size=size, stack=list(reversed(edge.values())), prev=store.last_leaf(origin, size) or GENESIS_PREV
        )

    def add(self, leaf: bytes, out: list[bytes]) -> None:
        """Add a leaf; append the hashes to store to ``out`` (ledger.log.merkle order:
        they are stored hashes ``hash_index, hash_index + 1, ...`` before the call)."""
        stack, n, added = self.stack, self.size, 1
        out.append(leaf)
        h = leaf
        while n & 1:
            h = _sha256(b"\x01" + stack.pop() + h).digest()
            out.append(h)
            added += 1
            n >>= 1
        stack.append(h)
        self.hash_index += added
        self.size += 1

    def root(self) -> bytes:
        """The tree's root hash."""
        if not self.stack:
            return merkle.EMPTY_ROOT
        h = self.stack[-1]
        for left in reversed(self.stack[:-1]):
            h = _sha256(b"\x01" + left + h).digest()
        return h
