"""A verifier that keeps its replica: the thin I/O layer around :func:`verifier.core.verify`.

:class:`Verifier` holds the trust policy and the replica database, syncs every
member's log from its sources (on a schedule the caller drives, with
:meth:`Verifier.sync`), and, before answering NOT_IN_LEDGER, syncs the issuer's log on
demand (the certificate may be newer than the replica) and verifies again; before
answering STALE it syncs every member's log and verifies again. With no
sources (offline) it answers from the replica alone and opens no connection. With a
:class:`~verifier.follow.PolicyFollower` and policy sources it also follows the trust
policy: :meth:`Verifier.check_policy` adopts newer versions, and before answering
UNKNOWN_ISSUER, or STALE under an expired policy, it looks for a newer version first.
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
from verifier.follow import PolicyCheck, PolicyFollower
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
        policy: Policy | None = None,
        store: ReplicaStore,
        sources: SourceMap | None = None,
        clock: Callable[[], float] = time.time,
        min_interval: float = 2.0,
        follower: PolicyFollower | None = None,
        policy_sources: Sequence[Fetcher] = (),
    ) -> None:
        if follower is not None:
            policy = follower.policy
        if policy is None:
            raise ValueError("a verifier needs a policy or a policy follower")
        #: The policy verdicts are given under; replaced whole when a newer version is
        #: adopted (read it once per verification).
        self.policy: Policy = policy
        self.store = store
        self.follower = follower
        self._sources = sources
        self._policy_sources = tuple(policy_sources)
        self._clock = clock
        self._min_interval = min_interval
        self._last_sync: dict[str, float] = {}
        self._last_policy_check = -1e18
        self._lock = threading.Lock()
        self._syncing: dict[str, threading.Lock] = {}

    @property
    def offline(self) -> bool:
        """True when there is nowhere to sync from."""
        return self._sources is None

    @property
    def follows_policy(self) -> bool:
        """True when newer policy versions are looked for at the nodes."""
        return self.follower is not None and bool(self._policy_sources)

    def check_policy(self) -> PolicyCheck | None:
        """Look for newer policy versions at the nodes and switch to the newest that
        verifies (see :class:`~verifier.follow.PolicyFollower`); None when not following."""
        if self.follower is None or not self._policy_sources:
            return None
        with self._lock:
            self._last_policy_check = self._clock()
        result = self.follower.check(self._policy_sources)
        self.policy = self.follower.policy
        return result

    def _policy_due(self) -> bool:
        now = self._clock()
        with self._lock:
            return now - self._last_policy_check >= self._min_interval

    def replica(self, member_id: str, *, policy: Policy | None = None) -> Replica:
        """The replica of one member's log, checked against ``policy`` (default: the current one)."""
        return Replica(
            store=self.store,
            policy=self.policy if policy is None else policy,
            member_id=member_id,
            clock=self._clock,
        )

    def sync(self, member_id: str | None = None) -> list[SyncResult]:
        """Sync one member's log (or every member's of the current policy) from its sources."""
        if self._sources is None:
            return []
        policy = self.policy
        ids = [member_id] if member_id is not None else [m.id for m in policy.members]
        out = []
        for mid in ids:
            member = policy.require_member(mid)
            with self._lock:
                self._last_sync[mid] = self._clock()
                one = self._syncing.setdefault(mid, threading.Lock())
            with one:  # one sync of a log at a time: a scheduled one and an on-demand one meet here
                out.append(self.replica(mid, policy=policy).sync(self._sources(member)))
        return out

    def _due(self, member_ids: list[str]) -> list[str]:
        """The members not synced within ``min_interval``."""
        now = self._clock()
        with self._lock:
            return [m for m in member_ids if now - self._last_sync.get(m, -1e18) >= self._min_interval]

    def verify(
        self,
        text_or_presentation: str | Presentation,
        *,
        purpose: str | None = None,
        now: int | None = None,
        skew: int = DEFAULT_CLOCK_SKEW,
    ) -> Verdict:
        """Verify against the replica. Before answering NOT_IN_LEDGER, sync the issuer's
        log and verify again; before answering STALE, sync every member's log and verify
        again (the answer is then as fresh as the sources allow)."""
        t = int(self._clock()) if now is None else now
        policy = self.policy  # one version for the whole verification

        def run() -> Verdict:
            return verify(
                text_or_presentation,
                policy=policy,
                replica_view=self.store,
                now=t,
                purpose=purpose,
                skew=skew,
            )

        verdict = run()
        # a key id the policy does not know, or an expired policy: a newer version may help
        if (
            self.follows_policy
            and (verdict.code is Code.UNKNOWN_ISSUER or (verdict.code is Code.STALE and policy.is_expired(t)))
            and self._policy_due()
        ):
            self.check_policy()
            if self.policy is not policy:
                policy = self.policy
                verdict = run()
        if self._sources is None or verdict.issuer_id is None:
            return verdict
        if verdict.code == Code.NOT_IN_LEDGER:
            wanted = [verdict.issuer_id]
        elif verdict.code == Code.STALE:
            wanted = [m.id for m in policy.members]
        else:
            return verdict
        due = self._due(wanted)
        if not due:
            return verdict
        results = [r for mid in due for r in self.sync(mid)]
        verdict = run()
        if verdict.code in (Code.NOT_IN_LEDGER, Code.STALE):
            mine = next((r for r in results if r.member_id == verdict.issuer_id), None)
            if mine is None:
                return verdict
            note = (
                f"synced {mine.member_id}'s log on demand from {mine.source}"
                + (": not there either" if verdict.code == Code.NOT_IN_LEDGER else "")
                if mine.ok
                else f"could not sync {mine.member_id}'s log on demand: "
                + ("; ".join(mine.refused) if mine.refused else "no source answered")
            )
            verdict = dataclasses.replace(verdict, warnings=(*verdict.warnings, note))
        return verdict
