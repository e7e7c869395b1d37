"""What the HTTP service needs from a verifier, and the replica-backed implementation.

The web layer (:mod:`verifier.app`) depends only on :class:`VerificationService`;
:class:`ReplicaService` implements it over a :class:`~verifier.verifier.Verifier`.
``status()`` and ``stats()`` return plain JSON-ready dicts whose shapes are documented
on the protocol.
"""

from __future__ import annotations

import datetime as _dt
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ledger.log.statement import Entry, Kind
from ledger.replica.sync import SyncResult
from verifier.core import verify
from verifier.verdict import Code, Verdict
from verifier.verifier import Verifier

__all__ = ["CHINA_OFFSET", "ReplicaService", "SyncRecord", "VerificationService", "malformed"]


class VerificationService(Protocol):
    """A verifier as the HTTP service sees it.

    ``verify_text`` never raises for bad input: every text ends in a :class:`Verdict`.
    With ``sync=False`` it only reads local data and never waits on the network, so it
    may run on the event loop; ``on_demand_sync`` says whether ``sync=True`` could do
    more (fetch an issuer's log before answering NOT_IN_LEDGER).

    ``verify_text`` raises :class:`~ledger.errors.StorageError` when the replica cannot
    be read (the service's fault, not the certificate's).

    ``status()`` returns ``{"checked_at": int, "policy": policy | None, "members":
    [member], "alerts": [alert]}`` where policy is ``{"version", "issued", "expires",
    "expired", "seconds_left", "following", "last_check", "last_adopted",
    "last_refusal": refusal | None, "refusals": [refusal]}`` (a refusal is ``{"at",
    "source", "rule", "message"}``; the refusals are the last check's; a service may give
    only version and expires), a member is ``{"id",
    "name", "origin", "log_size", "witnessed_size", "witnessed_at", "age_seconds",
    "fresh", "last_sync", "error"}`` (sizes and times may be None before the first
    sync) and an alert is ``{"member", "kind", "message", "at"}``.

    ``stats()`` returns ``{"days": ["YYYY-MM-DD", ...], "members": [{"id", "name",
    "issued": [int, ...], "revoked": [int, ...]}]}``: counts per day, one per entry of
    ``days``, from the public logs.
    """

    @property
    def on_demand_sync(self) -> bool:
        """True when ``verify_text(..., sync=True)`` may fetch before NOT_IN_LEDGER."""
        ...

    def verify_text(self, text: str, *, purpose: str | None = None, sync: bool = True) -> Verdict:
        """The verdict for one presented QR text (for ``purpose``, if given)."""
        ...

    def status(self) -> dict[str, Any]:
        """Replica freshness per member and alerts."""
        ...

    def stats(self) -> dict[str, Any]:
        """Certificates issued and revoked per day per member."""
        ...


def malformed(reason_zh: str, reason_en: str, *, warnings: tuple[str, ...] = ()) -> Verdict:
    """A MALFORMED verdict given before any certificate could be read."""
    return Verdict(
        code=Code.MALFORMED,
        reason_zh=reason_zh,
        reason_en=reason_en,
        checked_at=int(time.time()),
        warnings=warnings,
    )


#: Days are counted in China Standard Time (UTC+8) unless told otherwise.
CHINA_OFFSET = 8 * 3600
_CHUNK = 1000


@dataclass(frozen=True, kw_only=True)
class SyncRecord:
    """The last scheduled sync of one member's log."""

    at: int
    ok: bool
    source: str | None
    error: str | None


class ReplicaService:
    """The verification service over a :class:`~verifier.verifier.Verifier`: verdicts from
    the replica, freshness and alerts per member, and daily counts from the logs.

    Counts are kept incrementally: each call reads only entries added since the last.
    Thread-safe.
    """

    def __init__(
        self,
        *,
        verifier: Verifier,
        clock: Callable[[], float] = time.time,
        day_offset: int = CHINA_OFFSET,
        days: int = 30,
        expiry_warning: int = 30 * 86400,
    ) -> None:
        self.verifier = verifier
        self._clock = clock
        self._offset = day_offset
        self._days = days
        self._expiry_warning = expiry_warning
        self._lock = threading.Lock()
        self._syncs: dict[str, SyncRecord] = {}
        self._counted: dict[str, int] = {}
        self._counts: dict[tuple[str, int, str], int] = {}

    @property
    def on_demand_sync(self) -> bool:
        """True when the verifier has sources to sync an issuer's log from."""
        return not self.verifier.offline

    def verify_text(self, text: str, *, purpose: str | None = None, sync: bool = True) -> Verdict:
        """The verdict from the replica; with ``sync``, a certificate not found is looked up
        again after syncing its issuer's log (see :meth:`Verifier.verify`)."""
        now = int(self._clock())
        if sync:
            return self.verifier.verify(text, purpose=purpose, now=now)
        v = self.verifier
        return verify(text, policy=v.policy, replica_view=v.store, now=now, purpose=purpose)

    def sync(self) -> list[SyncResult]:
        """Look for a newer trust-policy version, then sync every member's log (of the
        policy now current) from the sources, recording how each went."""
        self.verifier.check_policy()
        results = self.verifier.sync()
        at = int(self._clock())
        with self._lock:
            for r in results:
                error = None if r.ok else ("; ".join(r.refused) or "no source answered")
                if r.forked:
                    error = "fork: " + (error or "two different histories")
                self._syncs[r.member_id] = SyncRecord(at=at, ok=r.ok, source=r.source, error=error)
        return results

    def status(self) -> dict[str, Any]:
        """Replica freshness per member and alerts (see :class:`VerificationService`)."""
        policy = self.verifier.policy
        store = self.verifier.store
        now = int(self._clock())
        members = []
        alerts: list[dict[str, Any]] = []
        for m in policy.members:
            cp = store.latest_checkpoint(m.origin)
            with self._lock:
                last = self._syncs.get(m.id)
            age = None if cp is None else max(0, now - cp.newest_at)
            fresh = age is not None and age <= policy.freshness_seconds
            members.append(
                {
                    "id": m.id,
                    "name": m.name,
                    "origin": m.origin,
                    "log_size": store.size(m.origin),
                    "witnessed_size": None if cp is None else cp.size,
                    "witnessed_at": None if cp is None else cp.newest_at,
                    "cosigners": [] if cp is None else list(cp.cosigners),
                    "age_seconds": age,
                    "fresh": fresh,
                    "last_sync": None if last is None else last.at,
                    "error": None if last is None else last.error,
                }
            )
            if not fresh:
                alerts.append(
                    {
                        "member": m.id,
                        "kind": "stale",
                        "message": "no witnessed checkpoint in the replica"
                        if cp is None
                        else f"newest witnessed checkpoint is {age} s old; the limit is "
                        f"{policy.freshness_seconds} s",
                        "at": now,
                    }
                )
        for a in store.alerts():
            alerts.append({"member": a.member_id, "kind": a.kind, "message": a.message, "at": a.created})
        follower = self.verifier.follower
        refusal = None if follower is None else follower.last_refusal
        if refusal is not None and follower is not None and refusal.at == follower.last_check:
            alerts.append(
                {
                    "member": None,
                    "kind": "policy_refused",
                    "message": f"policy from {refusal.source or 'the nodes'} not adopted "
                    f"({refusal.rule}): {refusal.message}",
                    "at": refusal.at,
                }
            )
        if policy.is_expired(now):
            alerts.append(
                {
                    "member": None,
                    "kind": "policy_expired",
                    "message": f"trust policy version {policy.version} has expired: every verdict is "
                    "STALE until a newer version is adopted from a node or installed",
                    "at": now,
                }
            )
        elif policy.expires - now < self._expiry_warning:
            alerts.append(
                {
                    "member": None,
                    "kind": "policy_expiry",
                    "message": f"trust policy version {policy.version} expires in "
                    f"{max(0, policy.expires - now) // 86400} days",
                    "at": now,
                }
            )
        return {
            "checked_at": now,
            "policy": {
                "version": policy.version,
                "issued": policy.issued,
                "expires": policy.expires,
                "expired": policy.is_expired(now),
                "seconds_left": policy.expires - now,
                "following": self.verifier.follows_policy,
                "last_check": None if follower is None else follower.last_check,
                "last_adopted": None if follower is None else follower.last_adopted,
                "last_refusal": None if refusal is None else refusal.to_json(),
                "refusals": [] if follower is None else [r.to_json() for r in follower.last_refusals],
            },
            "members": members,
            "alerts": alerts,
        }

    def stats(self) -> dict[str, Any]:
        """Certificates issued (issue and replace statements) and revoked per day per member,
        for the last ``days`` days by the service's clock, counted from the replica's logs."""
        policy = self.verifier.policy
        store = self.verifier.store
        with self._lock:
            for m in policy.members:
                size = store.size(m.origin)
                start = self._counted.get(m.origin, 0)
                while start < size:
                    stop = min(size, start + _CHUNK)
                    for data in store.entries(m.origin, start, stop):
                        statement = Entry.from_bytes(data).signed.statement
                        what = _COUNTED.get(statement.kind)
                        if what is not None:
                            key = (m.id, (statement.time + self._offset) // 86400, what)
                            self._counts[key] = self._counts.get(key, 0) + 1
                    start = stop
                self._counted[m.origin] = size
            today = (int(self._clock()) + self._offset) // 86400
            days = list(range(today - self._days + 1, today + 1))
            return {
                "days": [_dt.date.fromordinal(_EPOCH + d).isoformat() for d in days],
                "members": [
                    {
                        "id": m.id,
                        "name": m.name,
                        "issued": [self._counts.get((m.id, d, "issued"), 0) for d in days],
                        "revoked": [self._counts.get((m.id, d, "revoked"), 0) for d in days],
                    }
                    for m in policy.members
                ],
            }


_COUNTED = {Kind.ISSUE: "issued", Kind.REPLACE: "issued", Kind.REVOKE: "revoked"}
_EPOCH = _dt.date(1970, 1, 1).toordinal()
