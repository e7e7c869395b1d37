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
3. reads the new entries' bundles and checks each entry against its authenticated
   level-0 tile hash (a tile or bundle that does not hash to the checkpoint is refused
   and its source named, and the next source is tried);
4. checks the hash chain and every statement's signature, recomputes the tree up to
   the signed root, and judges each statement's key validity (with the compromise rule
   at this checkpoint's witness time), mandate and maker; a statement that fails these
   stays in the copy marked with its problem and never counts for a verdict;
5. stores the checkpoint, entries, hashes and certificate index in one transaction.

A catch-up keeps the bundles it verified as it goes, so an interrupted one resumes
where it stopped. Re-fetching the same checkpoint with newer cosignatures refreshes
the copy's "as of" time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

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
from ledger.log import merkle
from ledger.log.checkpoint import DEFAULT_MAX_SIZE
from ledger.log.statement import GENESIS_PREV, MAX_ENTRY_SIZE, Entry, statement_message
from ledger.replica import tiles
from ledger.replica.checks import entry_problem, open_witnessed
from ledger.replica.fetch import Fetcher, NotFoundError
from ledger.replica.store import IndexRow, ReplicaStore, WitnessedCheckpoint, statement_hash
from ledger.trust.policy import Member, Policy

__all__ = ["Replica", "SyncResult", "get_tile", "tree_reader"]

_MAX_TILE = tiles.TILE_WIDTH * merkle.HASH_SIZE
_MAX_BUNDLE = tiles.TILE_WIDTH * (2 + MAX_ENTRY_SIZE)


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
    """A verified copy of ``member_id``'s log in ``store``, checked against ``policy``."""

    def __init__(
        self,
        *,
        store: ReplicaStore,
        policy: Policy,
        member_id: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.policy = policy
        self.member: Member = policy.require_member(member_id)
        self._clock = clock

    @property
    def origin(self) -> str:
        """The log's origin."""
        return self.member.origin

    def latest(self) -> WitnessedCheckpoint | None:
        """The newest witnessed checkpoint held, with its witness time (freshness)."""
        return self.store.latest_checkpoint(self.origin)

    def _now(self) -> int:
        return int(self._clock())

    def sync(self, sources: Sequence[Fetcher]) -> SyncResult:
        """Bring the copy up to date from the sources, tried in turn.

        The first source whose checkpoint verifies and adds entries ends the sync; a
        source that verifies but has nothing new (a lagging mirror) is noted and the
        next one is tried. ``source`` of the result names the last source that
        verified; ``refused`` says why each other one failed.
        """
        before = self.store.size(self.origin)
        refused: list[str] = []
        verified: str | None = None
        for src in sources:
            try:
                cp = self._checkpoint(src)
                self._resume(src, cp)
                self._advance(src, cp)
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

    def _resume(self, src: Fetcher, newest: WitnessedCheckpoint) -> None:
        """Finish an interrupted catch-up first, if the source still serves its tiles."""
        pending = self.store.pending(self.origin)
        if pending is None:
            return
        try:
            cp = open_witnessed(pending[0], policy=self.policy, member=self.member, now=self._now())
        except LedgerError:
            self.store.drop_staged(self.origin)
            return
        if self.store.size(self.origin) < cp.size <= newest.size and cp.note != newest.note:
            self._advance(src, cp)

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

    def _advance(self, src: Fetcher, cp: WitnessedCheckpoint) -> None:
        store, origin = self.store, self.origin
        held = store.latest_checkpoint(origin)
        m = 0 if held is None else held.size
        if held is not None and cp.size <= m:
            ours = held.root_hash if cp.size == m else merkle.tree_hash(cp.size, store.hash_reader(origin))
            if ours != cp.root_hash:
                proof = [] if cp.size in (0, m) else merkle.prove_tree(m, cp.size, store.hash_reader(origin))
                raise self._fork(src, held, cp, proof, "the roots differ at that size")
            if cp.size == m:
                store.refresh(cp, verified_at=self._now())
            return
        if cp.size == 0:
            self._commit(src, cp, 0, [])
            return
        reader = self._tile_reader(src, cp)
        if held is not None and m > 0:
            try:
                proof = merkle.prove_tree(cp.size, m, reader)
            except ProofError as e:
                raise self._refuse(src, f"tiles for the consistency proof: {e}") from None
            try:
                merkle.check_tree(proof, cp.size, cp.root_hash, m, held.root_hash)
            except ProofError as e:
                raise self._fork(src, held, cp, proof, f"consistency proof fails ({e})") from None
        pending = store.pending(origin)
        if pending is not None and pending[0] != cp.note:
            store.drop_staged(origin)
        staged = store.staged(origin, m, cp.size) if pending is not None and pending[0] == cp.note else []
        fetched = m + len(staged)
        while fetched < cp.size:
            k = fetched // tiles.TILE_WIDTH
            bundle = tiles.tile_for(tiles.ENTRIES, k, cp.size)
            assert bundle is not None
            entries = self._bundle(src, bundle)
            first = k * tiles.TILE_WIDTH
            try:
                leaves = reader([merkle.stored_hash_index(0, first + i) for i in range(bundle.width)])
            except ProofError as e:
                raise self._refuse(src, str(e)) from None
            for i, (item, leaf) in enumerate(zip(entries, leaves, strict=True)):
                if merkle.leaf_hash(item) != leaf:
                    raise self._refuse(
                        src, f"entry {first + i} in {bundle.path} does not hash to the checkpoint"
                    )
            new = [(first + i, e) for i, e in enumerate(entries) if first + i >= fetched]
            store.stage(origin, note=cp.note, source=src.name, entries=new)
            staged.extend(e for _, e in new)
            fetched = first + bundle.width
        self._commit(src, cp, m, staged)

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
        return get_tile(src, t)

    def _tile_reader(self, src: Fetcher, cp: WitnessedCheckpoint) -> merkle.HashReader:
        return tree_reader(src, cp.size, cp.root_hash)

    def _bundle(self, src: Fetcher, t: tiles.Tile) -> list[bytes]:
        data = self._get_tile(src, t)
        try:
            return tiles.decode_bundle(t, data)
        except (MalformedError, TooLargeError) as e:
            raise self._refuse(src, str(e)) from None

    def _commit(self, src: Fetcher, cp: WitnessedCheckpoint, start: int, entries: Sequence[bytes]) -> None:
        """Check chain, signatures and trust of entries ``[start, cp.size)``; store them."""
        store, origin, member, policy = self.store, self.origin, self.member, self.policy
        keys = {member.log_key_id(k): k.public_key for k in member.log_keys}
        known = store.edge(origin, start)
        prev = store.last_leaf(origin, start) or GENESIS_PREV
        hash_index = merkle.stored_hash_count(start)

        def read(indexes: Sequence[int]) -> list[bytes]:
            return [known[i] for i in indexes]

        entry_rows: list[tuple[int, bytes]] = []
        hash_rows: list[tuple[int, bytes]] = []
        index_rows: list[IndexRow] = []
        for n, data in enumerate(entries, start=start):
            try:
                entry = Entry.from_bytes(data)
            except MalformedError as e:
                raise self._bad_log(src, cp, f"entry {n} is malformed: {e}") from None
            if entry.prev != prev:
                raise self._bad_log(src, cp, f"entry {n}: the hash chain is broken")
            signed = entry.signed
            key = keys.get(signed.key_id)
            if key is None or not key.is_valid(signed.signature, statement_message(signed.statement_bytes)):
                raise self._bad_log(src, cp, f"entry {n}: the statement signature does not verify")
            st = signed.statement
            index_rows.append(
                IndexRow(
                    index=n,
                    cert_id=st.cert_id,
                    kind=int(st.kind),
                    issuer=st.issuer,
                    cert_type=st.cert_type,
                    time=st.time,
                    stmt_hash=statement_hash(signed.statement_bytes),
                    replaces=st.replaces,
                    problem=entry_problem(policy, member, signed, witnessed_at=cp.witnessed_at),
                )
            )
            prev = merkle.leaf_hash(data)
            entry_rows.append((n, data))
            for h in merkle.stored_hashes(n, prev, read):
                known[hash_index] = h
                hash_rows.append((hash_index, h))
                hash_index += 1
        root = (
            merkle.tree_hash(cp.size, lambda idx: [known[i] for i in idx]) if cp.size else merkle.EMPTY_ROOT
        )
        if root != cp.root_hash:
            store.drop_staged(origin)
            raise self._refuse(src, f"the entries give root {root.hex()}, not the checkpoint's")
        store.commit(
            cp, entries=entry_rows, hashes=hash_rows, index=index_rows, verified_at=self._now(), start=start
        )

    def _bad_log(self, src: Fetcher, cp: WitnessedCheckpoint, why: str) -> _Refused:
        """The member's signed log itself holds a bad entry: kept as evidence, never stored."""
        self.store.drop_staged(self.origin)
        alert = self.store.add_alert(
            origin=self.origin,
            member_id=self.member.id,
            kind="bad-log",
            message=f"the log of {self.member.id} at size {cp.size} is invalid: {why}",
            created=self._now(),
            note_b=cp.note,
            source=src.name,
        )
        return _Refused(alert.message)
