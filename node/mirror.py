"""Mirrors: a verified copy of every other member's log, served as tiles.

Every ``interval`` seconds the node brings its copy of each other member's log up to
date with :class:`ledger.replica.sync.Replica` (checkpoint signature and witness
quorum, consistency with the copy, tiles up to the root, hash chain, every statement's
signature, key validity and mandate), trying in turn the member's own node, any
extra sources configured for it (a static copy of its tiles, say), and every other
member's mirror of it (the data is signed: any source will do). A node that was down
catches up on its next round. The copy is served under ``/mirror/<origin hash>/``
(tlog-mirror's layout): ``checkpoint`` (the witnessed checkpoint as verified) and the
tiles and entry bundles up to it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import httpx

from ledger.errors import LedgerError
from ledger.log import note
from ledger.log.alert import Alert, encode_alert
from ledger.log.checkpoint import Checkpoint
from ledger.log.witness import origin_hash
from ledger.replica import tiles
from ledger.replica.fetch import DirectoryFetcher, Fetcher, HttpFetcher, mirror_prefix
from ledger.replica.store import ReplicaStore, WitnessedCheckpoint
from ledger.replica.sync import Replica, SyncResult
from ledger.trust.policy import Policy

__all__ = ["Mirrors", "source"]

log = logging.getLogger("certledger.node.mirror")


def source(spec: str, client: httpx.Client) -> Fetcher:
    """A fetcher for an http(s) URL or a directory holding a static copy of a log."""
    if spec.startswith(("http://", "https://")):
        return HttpFetcher(base_url=spec, client=client)
    return DirectoryFetcher(root=Path(spec))


class Mirrors:
    """The node's copies of the other members' logs."""

    def __init__(
        self,
        *,
        path: Path,
        member_id: str,
        policy: Callable[[], Policy],
        client: httpx.Client,
        extra_sources: Mapping[str, Sequence[str]],
        clock: Callable[[], float],
    ) -> None:
        self.store = ReplicaStore.open(path)
        self._member_id = member_id
        self._policy = policy
        self.client = client
        self._extra = extra_sources
        self._clock = clock
        self._lock = threading.Lock()
        self.last: dict[str, SyncResult] = {}

    def close(self) -> None:
        """Close the replica database and the HTTP client."""
        self.store.close()
        self.client.close()

    def sources(self, member_id: str) -> list[Fetcher]:
        """Where to read ``member_id``'s log: its node, extra sources, the others' mirrors."""
        policy = self._policy()
        member = policy.require_member(member_id)
        out: list[Fetcher] = [HttpFetcher(base_url=member.base_url, client=self.client)]
        out += [source(s, self.client) for s in self._extra.get(member_id, ())]
        for m in policy.members:
            if m.id not in (member_id, self._member_id):
                base = m.base_url if m.base_url.endswith("/") else m.base_url + "/"
                out.append(HttpFetcher(base_url=base + mirror_prefix(member.origin), client=self.client))
        return out

    def sync_once(self) -> dict[str, SyncResult]:
        """One round: sync every other member's log; returns each result."""
        with self._lock:
            policy = self._policy()
            for m in policy.members:
                if m.id == self._member_id:
                    continue
                replica = Replica(store=self.store, policy=policy, member_id=m.id, clock=self._clock)
                try:
                    result = replica.sync(self.sources(m.id))
                except LedgerError as e:
                    log.error("mirror sync failed", extra={"member": m.id, "error": str(e)})
                    continue
                self.last[m.id] = result
                if result.forked:
                    log.error("fork in a mirrored log", extra={"member": m.id})
                elif not result.ok:
                    log.warning(
                        "mirror not updated", extra={"member": m.id, "refused": "; ".join(result.refused)}
                    )
            return dict(self.last)

    async def run(self, interval: float) -> None:
        """Sync every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.to_thread(self.sync_once)
            await asyncio.sleep(interval)

    # ------------------------------------------------------------------ serving

    def _origin(self, ohash: str) -> str | None:
        for m in self._policy().members:
            if m.id != self._member_id and origin_hash(m.origin) == ohash:
                return m.origin
        return None

    def checkpoint(self, ohash: str) -> WitnessedCheckpoint | None:
        """The newest verified checkpoint of the log with this origin hash."""
        origin = self._origin(ohash)
        return None if origin is None else self.store.latest_checkpoint(origin)

    def tile(self, ohash: str, tile: tiles.Tile) -> bytes | None:
        """A tile of the copy, if the copy's latest checkpoint covers it."""
        cp = self.checkpoint(ohash)
        if cp is None:
            return None
        have = tiles.tile_for(tile.level, tile.index, cp.size)
        if have is None or have.width < tile.width:
            return None
        if tile.is_entries:
            first = tile.index * tiles.TILE_WIDTH
            return tiles.encode_bundle(self.store.entries(cp.origin, first, first + tile.width))
        return tiles.tile_from_hashes(tile, self.store.hash_reader(cp.origin))

    def fork_alerts(self) -> list[bytes]:
        """The forks the mirror sync met, as alerts in :mod:`ledger.log.alert` form (smaller
        checkpoint first), so they verify offline like the witness's."""
        out = []
        for a in self.store.alerts(kind="fork"):
            if a.note_a is None or a.note_b is None:
                continue
            try:
                sizes = [Checkpoint.parse(note.parse(n).text).size for n in (a.note_a, a.note_b)]
            except LedgerError:
                continue
            earlier, later = (a.note_a, a.note_b) if sizes[0] <= sizes[1] else (a.note_b, a.note_a)
            alert = Alert(
                kind="same-size" if sizes[0] == sizes[1] else "inconsistent",
                origin=a.origin,
                observed_by=self._member_id,
                observed_at=a.created,
                earlier=earlier,
                later=later,
                proof=a.proof,
            )
            out.append(encode_alert(alert))
        return out

    def lag(self) -> dict[str, float]:
        """Seconds since each mirrored log's newest verified checkpoint was witnessed."""
        now = self._clock()
        out = {}
        for m in self._policy().members:
            if m.id == self._member_id:
                continue
            cp = self.store.latest_checkpoint(m.origin)
            out[m.id] = -1.0 if cp is None else max(0.0, now - cp.newest_at)
        return out
