"""A verifier that keeps its replica: the thin I/O layer around :func:`verifier.core.verify`.

:class:`Verifier` holds the trust policy and the replica database, syncs every
member's log from its sources (on a schedule the caller drives, with
:meth:`Verifier.sync`), and, before answering NOT_IN_LEDGER, syncs the issuer's log on
demand (the certificate may be newer than the replica) and verifies again. With no
sources (offline) it answers from the replica alone and opens no connection.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

from ledger.credential.presentation import DEFAULT_CLOCK_SKEW, Presentation
from ledger.replica.fetch import DirectoryFetcher, Fetcher, HttpFetcher, mirror_prefix
from ledger.replica.store import ReplicaStore
from ledger.replica.sync import Replica, SyncResult
from ledger.trust.policy import Member, Policy
from verifier.core import verify
from verifier.verdict import Code, Verdict

__all__ = ["SourceMap", "Verifier", "node_sources"]

#: Gives the sources of a member's log, in the order to try them.
SourceMap = Callable[[Member], Sequence[Fetcher]]


def node_sources(nodes: Sequence[str], *, client: httpx.Client | None = None) -> SourceMap:
    """Sources for each member, in the order of ``nodes``: a node's own log when the node
    is that member's (the policy's base URL), else the node's mirror of the member's log
    under ``mirror/<origin hash>/``. An entry that is not an http(s) URL is a directory
    holding a static copy of a node's public files (the same layout)."""
    shared = client if client is not None else httpx.Client(timeout=5.0)
    bases = [n if n.endswith("/") else n + "/" for n in nodes]

    def sources(member: Member) -> list[Fetcher]:
        own = member.base_url if member.base_url.endswith("/") else member.base_url + "/"
        out: list[Fetcher] = []
        for b in bases:
            if not b.startswith(("http://", "https://")):
                out.append(DirectoryFetcher(root=Path(b) / mirror_prefix(member.origin)))
            elif b == own:
                out.append(HttpFetcher(base_url=own, client=shared))
            else:
                out.append(HttpFetcher(base_url=b + mirror_prefix(member.origin), client=shared))
        return out

    return sources


class Verifier:
    """The policy, the replica and where to sync it from. Thread-safe.

    ``min_interval`` bounds on-demand syncs of one member (seconds), so a flood of
    unknown certificates cannot turn into a flood of fetches.
    """

    def __init__(
        self,
        *,
        policy: Policy,
        store: ReplicaStore,
        sources: SourceMap | None = None,
        clock: Callable[[], float] = time.time,
        min_interval: float = 2.0,
    ) -> None:
        self.policy = policy
        self.store = store
        self._sources = sources
        self._clock = clock
        self._min_interval = min_interval
        self._last_sync: dict[str, float] = {}
        self._lock = threading.Lock()

    @property
    def offline(self) -> bool:
        """True when there is nowhere to sync from."""
        return self._sources is None

    def replica(self, member_id: str) -> Replica:
        """The replica of one member's log."""
        return Replica(store=self.store, policy=self.policy, member_id=member_id, clock=self._clock)

    def sync(self, member_id: str | None = None) -> list[SyncResult]:
        """Sync one member's log (or every member's) from its sources."""
        if self._sources is None:
            return []
        ids = [member_id] if member_id is not None else [m.id for m in self.policy.members]
        out = []
        for mid in ids:
            member = self.policy.require_member(mid)
            with self._lock:
                self._last_sync[mid] = self._clock()
            out.append(self.replica(mid).sync(self._sources(member)))
        return out

    def verify(
        self,
        text_or_presentation: str | Presentation,
        *,
        purpose: str | None = None,
        now: int | None = None,
        skew: int = DEFAULT_CLOCK_SKEW,
    ) -> Verdict:
        """Verify against the replica; on NOT_IN_LEDGER, sync the issuer and verify again."""
        t = int(self._clock()) if now is None else now
        verdict = verify(
            text_or_presentation,
            policy=self.policy,
            replica_view=self.store,
            now=t,
            purpose=purpose,
            skew=skew,
        )
        if verdict.code != Code.NOT_IN_LEDGER or verdict.issuer_id is None or self._sources is None:
            return verdict
        with self._lock:
            last = self._last_sync.get(verdict.issuer_id)
            recent = last is not None and self._clock() - last < self._min_interval
        if not recent:
            results = self.sync(verdict.issuer_id)
            verdict = verify(
                text_or_presentation,
                policy=self.policy,
                replica_view=self.store,
                now=t,
                purpose=purpose,
                skew=skew,
            )
            if verdict.code == Code.NOT_IN_LEDGER:
                note = (
                    f"synced {verdict.issuer_id}'s log on demand from {results[0].source}: not there either"
                    if results and results[0].ok
                    else f"could not sync {verdict.issuer_id}'s log on demand: "
                    + (
                        "; ".join(results[0].refused)
                        if results and results[0].refused
                        else "no source answered"
                    )
                )
                verdict = dataclasses.replace(verdict, warnings=(*verdict.warnings, note))
        return verdict
