"""Getting our checkpoints witnessed: C2SP tlog-witness ``add-checkpoint`` client.

One worker per other member submits our newest checkpoint to that member's witness
(``<base URL>/add-checkpoint``) with a consistency proof from the size the witness last
cosigned (learnt from its ``409`` answers), checks the cosignature it returns against
the policy, and keeps it. Once the policy's quorum has cosigned one checkpoint it is
published (:class:`~node.published.Published`). A witness that is down or refuses is
tried again with exponential backoff; it delays the quorum and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from ledger.errors import LedgerError
from ledger.log import note
from ledger.log.checkpoint import open_checkpoint
from ledger.log.store import LogStore, StoredCheckpoint
from ledger.log.witness import encode_add_checkpoint, parse_size
from ledger.trust.policy import Member, Policy

__all__ = ["Submitter"]

log = logging.getLogger("certledger.node.submitter")


@dataclass
class _Round:
    """Cosignatures gathered for one checkpoint of ours."""

    checkpoint: StoredCheckpoint
    lines: dict[str, bytes] = field(default_factory=dict)


def witness_url(member: Member) -> str:
    """Where a member's witness takes ``add-checkpoint`` requests."""
    return member.base_url.rstrip("/") + "/add-checkpoint"


class Submitter:
    """Collects cosignatures on our checkpoints from the other members' witnesses."""

    def __init__(
        self,
        *,
        store: LogStore,
        member_id: str,
        policy: Callable[[], Policy],
        publish: Callable[[int, bytes, int], None],
        transport: httpx.AsyncBaseTransport | None,
        max_backoff: float,
        clock: Callable[[], float] = time.time,
        on_result: Callable[[str, str], None] = lambda peer, outcome: None,
    ) -> None:
        self._store = store
        self._member_id = member_id
        self._policy = policy
        self._publish = publish
        self._transport = transport
        self._max_backoff = max_backoff
        self._clock = clock
        self._on_result = on_result
        self._events: dict[str, asyncio.Event] = {}
        self._rounds: dict[int, _Round] = {}
        self._published = -1
        self._tasks: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = None
        self._peer_size: dict[str, int] = {}

    def notify(self) -> None:
        """A new checkpoint was signed."""
        for e in self._events.values():
            e.set()

    def start(self) -> None:
        """Start one worker per other member (and publish at once if the quorum is 0)."""
        self._client = httpx.AsyncClient(transport=self._transport, timeout=10.0)
        policy = self._policy()
        self._events[""] = asyncio.Event()
        for peer in policy.witness_keys(self._member_id):
            self._events[peer] = asyncio.Event()
            self._tasks.append(asyncio.create_task(self._worker(peer), name=f"submit-{peer}"))
        self._tasks.append(asyncio.create_task(self._quorum_zero(), name="quorum-zero"))

    async def stop(self) -> None:
        """Stop the workers."""
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        if self._client is not None:
            await self._client.aclose()

    def peer_sizes(self) -> dict[str, int]:
        """The size each witness last cosigned, as far as we know."""
        return dict(self._peer_size)

    async def _wait_new(self, name: str, timeout: float) -> None:
        event = self._events.setdefault(name, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await event.wait()
        event.clear()

    async def _quorum_zero(self) -> None:
        while True:
            if self._policy().witness_quorum == 0:
                cp = await asyncio.to_thread(self._store.latest_checkpoint)
                if cp is not None and cp.size > self._published:
                    self._published = cp.size
                    self._publish(cp.size, cp.note, 0)
            await self._wait_new("", 1.0)

    def _target(self, peer: str, latest: StoredCheckpoint | None) -> StoredCheckpoint | None:
        """What to submit to ``peer``: a pending round it can complete, else the newest checkpoint."""
        size = self._peer_size.get(peer, 0)
        for s in sorted(self._rounds, reverse=True):
            r = self._rounds[s]
            if s > self._published and s > size and peer not in r.lines:
                return r.checkpoint
        if latest is None or latest.size < size:
            return None
        current = self._rounds.get(latest.size)
        if current is not None and peer in current.lines:
            return None
        return latest

    async def _worker(self, peer: str) -> None:
        backoff = 0.1
        while True:
            try:
                latest = await asyncio.to_thread(self._store.latest_checkpoint)
                target = self._target(peer, latest)
                if target is None:
                    await self._wait_new(peer, 5.0)
                    continue
                done = await self._submit(peer, target)
            except (httpx.HTTPError, LedgerError, OSError) as e:
                self._on_result(peer, "error")
                log.warning("witness unreachable", extra={"peer": peer, "error": str(e), "retry_in": backoff})
                done = False
            if done:
                backoff = 0.1
            else:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)

    async def _submit(self, peer: str, target: StoredCheckpoint) -> bool:
        """One add-checkpoint request; True if it moved things forward."""
        policy = self._policy()
        member = policy.require_member(peer)
        old = self._peer_size.get(peer, 0)
        if old > target.size:
            return False
        proof: list[bytes] = []
        if 0 < old < target.size:
            proof = await asyncio.to_thread(self._store.consistency_proof, old, target.size)
        body = encode_add_checkpoint(old_size=old, proof=proof, note=target.note)
        assert self._client is not None
        resp = await self._client.post(witness_url(member), content=body)
        if resp.status_code == 409:
            self._peer_size[peer] = parse_size(resp.content)
            self._on_result(peer, "409")
            return self._peer_size[peer] <= target.size
        if resp.status_code != 200:
            self._on_result(peer, str(resp.status_code))
            log.warning(
                "witness refused our checkpoint",
                extra={
                    "peer": peer,
                    "status": resp.status_code,
                    "body": resp.text[:200],
                    "size": target.size,
                },
            )
            return False
        self._accept(peer, member, policy, target, resp.content)
        return True

    def _accept(
        self, peer: str, member: Member, policy: Policy, target: StoredCheckpoint, lines: bytes
    ) -> None:
        me = policy.require_member(self._member_id)
        kid = _kid(target.note, me.origin)
        keys = [k for k in me.log_keys if me.log_key_id(k) == kid]
        if not keys:
            raise LedgerError(f"our checkpoint is signed by key {kid.hex()}, which the policy does not list")
        key = keys[0]
        opened = open_checkpoint(
            target.note + lines, log_key=me.log_verifier_key(key), witnesses=[member.witness_key]
        )
        wk = member.witness_key
        if wk.name not in opened.cosignatures:
            raise LedgerError(f"witness {peer} answered without a valid cosignature")
        # Only the member's own cosignature is kept (it verified above); any other line in
        # the answer is ignored, as tlog-witness asks of clients.
        line = next(
            s.to_line().encode("utf-8")
            for s in note.parse(target.note + lines).signatures
            if s.name == wk.name and s.key_id == wk.key_id
        )
        self._peer_size[peer] = target.size
        self._on_result(peer, "200")
        r = self._rounds.setdefault(target.size, _Round(checkpoint=target))
        r.lines[peer] = line
        if len(r.lines) >= policy.witness_quorum and target.size >= self._published:
            cosigned = target.note + b"".join(r.lines[p] for p in sorted(r.lines))
            self._publish(target.size, cosigned, len(r.lines))
            self._published = target.size  # only once published: the next cosignature retries
            for s in [s for s in self._rounds if s < target.size]:
                del self._rounds[s]


def _kid(note_bytes: bytes, origin: str) -> bytes:
    """The key ID of the log's own signature on one of our notes."""
    for s in note.parse(note_bytes).signatures:
        if s.name == origin:
            return s.key_id
    raise LedgerError("our checkpoint carries no signature by our origin")
