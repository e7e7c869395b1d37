"""Gossip: nodes compare the checkpoints they hold, and pass fork evidence on.

Every ``interval`` seconds the node asks every other member's node for what it holds
of each log: the checkpoint its witness last cosigned (``/<origin hash>/checkpoint``),
its mirror's checkpoint (``/mirror/<origin hash>/checkpoint``), its own log's
``/checkpoint``, and the fork alerts it holds (``/v1/alerts``).

* A checkpoint must be signed by one of the log's keys in the policy, else it is
  ignored (and counted). It is then compared with the checkpoints this node holds for
  that log (cosigned by its witness, verified by its mirror, or signed by itself):
  another root for a size held is a ``same-size`` fork; otherwise the nearest held
  checkpoints below and above are checked for consistency, with a proof computed from
  the hashes this node holds or from tiles (of the peer's mirror, the log's node, the
  other mirrors), every tile authenticated against the larger checkpoint's root. If
  that tree's first records hash to another root than the smaller checkpoint's, the
  proof of it is an ``inconsistent`` fork. Either way the evidence (both signed
  notes and the proof) becomes a local alert, verified with
  :func:`ledger.log.alert.check_alert` before it is kept.
* An alert a peer serves is adopted only if :func:`check_alert` verifies it against
  the policy: a peer cannot plant a false alert.

Alerts learned this way are kept in ``gossip.db`` with where they came from.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry, Counter

from ledger.errors import (
    FileError,
    LedgerError,
    MalformedError,
    ProofError,
    SignatureError,
    StorageError,
    TooLargeError,
)
from ledger.files import loads_json
from ledger.log import merkle, note
from ledger.log.alert import Alert, check_alert, encode_alert, parse_alert
from ledger.log.checkpoint import DEFAULT_MAX_SIZE, Checkpoint
from ledger.log.store import LogStore
from ledger.log.witness import origin_hash
from ledger.replica.fetch import Fetcher, HttpFetcher, mirror_prefix
from ledger.replica.store import ReplicaStore
from ledger.replica.sync import tree_reader
from ledger.trust.policy import Member, Policy
from node.witness import Witness

__all__ = ["Gossip", "Held", "LearnedAlert", "read_learned"]

log = logging.getLogger("certledger.node.gossip")

#: Most alerts read from one peer in one round, and the largest ``/v1/alerts`` body read.
MAX_PEER_ALERTS = 1000
MAX_ALERTS_BODY = 16 << 20
_JUDGED_CACHE = 4096

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY, origin TEXT NOT NULL, kind TEXT NOT NULL, how TEXT NOT NULL,
    source TEXT NOT NULL, learned_at INTEGER NOT NULL, evidence TEXT NOT NULL UNIQUE,
    alert BLOB NOT NULL
);
"""


@dataclass(frozen=True, kw_only=True)
class Held:
    """A log-signed checkpoint: its size, root and exact note bytes."""

    size: int
    root: bytes
    note: bytes


@dataclass(frozen=True, kw_only=True)
class LearnedAlert:
    """An alert learned by gossip: ``how`` is ``adopted`` (served by a peer, verified)
    or ``compared`` (found comparing checkpoints); ``source`` is the peer's URL."""

    alert: bytes
    how: str
    source: str
    learned_at: int


def read_learned(path: Path) -> list[LearnedAlert]:
    """The alerts in a ``gossip.db`` (read-only), oldest first."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = conn.execute("SELECT alert, how, source, learned_at FROM alerts ORDER BY id").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as e:
        raise StorageError(f"{path}: cannot read the gossip alerts: {e}") from None
    return [LearnedAlert(alert=bytes(r[0]), how=r[1], source=r[2], learned_at=r[3]) for r in rows]


def evidence_key(alert: Alert) -> str:
    """What makes two alerts the same evidence: their pair of notes, in either order."""
    a, b = sorted(hashlib.sha256(n).hexdigest() for n in (alert.earlier, alert.later))
    return f"{alert.origin}\n{a}\n{b}"


def _open(data: bytes, member: Member) -> Held:
    """The checkpoint in ``data`` if one of the member's log keys signed it."""
    verifiers = [note.Ed25519Verifier(key=member.log_verifier_key(k)) for k in member.log_keys]
    opened = note.open(data, verifiers, max_size=DEFAULT_MAX_SIZE)
    cp = Checkpoint.parse(opened.text)
    if cp.origin != member.origin:
        raise MalformedError(f"checkpoint is for {cp.origin!r}, not {member.origin!r}")
    return Held(size=cp.size, root=cp.root_hash, note=data)


class Gossip:
    """Compares this node's checkpoints with the other members' nodes; keeps the forks."""

    def __init__(
        self,
        *,
        path: Path,
        member_id: str,
        policy: Callable[[], Policy],
        client: httpx.Client,
        witness: Witness,
        replicas: ReplicaStore,
        own_log: LogStore,
        known_alerts: Callable[[], list[bytes]],
        mirror_sources: Callable[[str], list[Fetcher]],
        registry: CollectorRegistry,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._member_id = member_id
        self._policy = policy
        self._client = client
        self._witness = witness
        self._replicas = replicas
        self._log = own_log
        self._known = known_alerts
        self._mirror_sources = mirror_sources
        self._clock = clock
        self._lock = threading.Lock()
        self._judged: OrderedDict[tuple[object, ...], None] = OrderedDict()
        try:
            self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.executescript(_SCHEMA)
        except sqlite3.Error as e:
            raise StorageError(f"{path}: cannot open the gossip database: {e}") from None
        self.alerts_learned = Counter(
            "certledger_gossip_alerts",
            "Fork alerts learned by gossip: adopted from a peer, or found comparing checkpoints.",
            ["how"],
            registry=registry,
        )
        self.refused = Counter(
            "certledger_gossip_refused",
            "Checkpoints or alerts a peer served that did not verify against the policy.",
            ["peer", "what"],
            registry=registry,
        )
        self.compared = Counter(
            "certledger_gossip_checkpoints",
            "Peers' checkpoints compared with ours, by outcome.",
            ["outcome"],
            registry=registry,
        )

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._conn.close()

    # ------------------------------------------------------------------ stored alerts

    def alerts(self) -> list[bytes]:
        """The alerts learned by gossip, oldest first."""
        with self._lock:
            return [bytes(r[0]) for r in self._conn.execute("SELECT alert FROM alerts ORDER BY id")]

    def _held_elsewhere(self, key: str) -> bool:
        """Whether the witness or the mirror already keeps this evidence."""
        for data in self._known():
            try:
                if evidence_key(parse_alert(data)) == key:
                    return True
            except MalformedError:
                continue
        return False

    def _keep(self, alert: Alert, *, how: str, source: str) -> bool:
        """Keep evidence not held yet; True if it is new."""
        key = evidence_key(alert)
        with self._lock:
            row = self._conn.execute("SELECT 1 FROM alerts WHERE evidence = ?", (key,)).fetchone()
        if row is not None or self._held_elsewhere(key):
            return False
        with self._lock:
            cur = self._conn.execute(
                "INSERT OR IGNORE INTO alerts (origin, kind, how, source, learned_at, evidence, alert) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (alert.origin, alert.kind, how, source, int(self._clock()), key, encode_alert(alert)),
            )
        if cur.rowcount:
            self.alerts_learned.labels(how=how).inc()
            log.error(
                "fork alert learned by gossip",
                extra={"origin": alert.origin, "kind": alert.kind, "how": how, "source": source},
            )
            return True
        return False

    # ------------------------------------------------------------------ a round

    async def run(self, interval: float) -> None:
        """Gossip every ``interval`` seconds until cancelled."""
        while True:
            try:
                await asyncio.to_thread(self.gossip_once)
            except LedgerError as e:  # our own database failing: say so, and try again next round
                log.error("gossip round failed", extra={"error": str(e)})
            await asyncio.sleep(interval)

    def gossip_once(self) -> int:
        """One round with every other member's node; returns how many alerts were learned."""
        policy = self._policy()
        learned = 0
        for peer in policy.members:
            if peer.id == self._member_id:
                continue
            learned += self._adopt(peer, policy)
            for m in policy.members:
                for path, tiles_at in self._offers(peer, m):
                    learned += self._compare(peer, m, path, tiles_at, policy)
        return learned

    @staticmethod
    def _base(member: Member) -> str:
        return member.base_url if member.base_url.endswith("/") else member.base_url + "/"

    def _offers(self, peer: Member, m: Member) -> list[tuple[str, list[str]]]:
        """The checkpoints of ``m``'s log to ask ``peer`` for, each with where its tiles are."""
        base = self._base(peer)
        if m.id == peer.id:
            return [("checkpoint", [base])]
        ohash, mirror = origin_hash(m.origin), base + mirror_prefix(m.origin)
        return [(f"{ohash}/checkpoint", [mirror]), (mirror_prefix(m.origin) + "checkpoint", [mirror])]

    def _adopt(self, peer: Member, policy: Policy) -> int:
        base = self._base(peer)
        try:
            raw = HttpFetcher(base_url=base, client=self._client).get("v1/alerts", max_size=MAX_ALERTS_BODY)
            items = loads_json(raw, what="alert list", max_size=MAX_ALERTS_BODY, max_depth=3)
            if not isinstance(items, list):
                raise MalformedError("alert list: not a JSON list")
        except FileError as e:
            log.debug("peer's alerts not read", extra={"peer": peer.id, "error": str(e)})
            return 0
        except (MalformedError, TooLargeError) as e:
            self.refused.labels(peer=peer.id, what="alerts").inc()
            log.warning("peer served a malformed alert list", extra={"peer": peer.id, "error": str(e)})
            return 0
        learned = 0
        for item in items[:MAX_PEER_ALERTS]:
            data = json.dumps(item, sort_keys=True, separators=(",", ":")).encode("utf-8")
            try:
                alert = check_alert(data, policy)
            except LedgerError as e:
                self.refused.labels(peer=peer.id, what="alert").inc()
                log.warning(
                    "peer served an alert that does not verify", extra={"peer": peer.id, "error": str(e)}
                )
                continue
            learned += self._keep(alert, how="adopted", source=base + "v1/alerts")
        return learned

    def _compare(self, peer: Member, m: Member, path: str, tiles_at: list[str], policy: Policy) -> int:
        url = self._base(peer) + path
        try:
            data = HttpFetcher(base_url=self._base(peer), client=self._client).get(
                path, max_size=DEFAULT_MAX_SIZE
            )
        except FileError:
            return 0  # not held there (404) or the peer is down: nothing to compare
        except TooLargeError as e:
            self.refused.labels(peer=peer.id, what="checkpoint").inc()
            log.warning("peer served an oversized checkpoint", extra={"url": url, "error": str(e)})
            return 0
        try:
            got = _open(data, m)
        except (MalformedError, TooLargeError, SignatureError) as e:
            self.refused.labels(peer=peer.id, what="checkpoint").inc()
            log.warning("peer served a checkpoint the log did not sign", extra={"url": url, "error": str(e)})
            return 0
        sources: list[Fetcher] = [HttpFetcher(base_url=t, client=self._client) for t in tiles_at]
        if m.id != self._member_id:
            sources += self._mirror_sources(m.id)
        alert = self.judge(m, got, sources)
        if alert is None:
            return 0
        try:
            check_alert(alert, policy)
        except LedgerError as e:  # pragma: no cover - judge builds only evidence that verifies
            log.error("gossip evidence does not verify", extra={"url": url, "error": str(e)})
            return 0
        return int(self._keep(alert, how="compared", source=url))

    # ------------------------------------------------------------------ judging one checkpoint

    def _held_near(self, m: Member, size: int) -> list[Held]:
        out = [Held(size=s, root=r, note=n) for s, r, n in self._witness.near(m.origin, size)]
        if m.id == self._member_id:
            at, latest = self._log.checkpoint_at(size), self._log.latest_checkpoint()
            out += [Held(size=c.size, root=c.root_hash, note=c.note) for c in (at, latest) if c is not None]
        else:
            out += [
                Held(size=c.size, root=c.root_hash, note=c.note)
                for c in self._replicas.checkpoints_near(m.origin, size)
            ]
        return out

    def _local(self, m: Member) -> tuple[int, merkle.HashReader] | None:
        """The tree of ``m``'s log whose hashes this node holds: its size and a reader."""
        if m.id == self._member_id:
            latest = self._log.latest_checkpoint()
            return None if latest is None else (latest.size, self._log.read_hashes)
        cp = self._replicas.latest_checkpoint(m.origin)
        return None if cp is None else (cp.size, self._replicas.hash_reader(m.origin))

    def _proof(self, m: Member, big: Held, small: Held, sources: Sequence[Fetcher]) -> list[bytes] | None:
        """A fork proof (:func:`ledger.log.merkle.prove_fork`) about ``small.size`` out of
        the tree of ``big`` (its hashes authenticated against ``big.root``), or None if no
        one serves that tree."""
        local = self._local(m)
        if local is not None and local[0] >= big.size and merkle.tree_hash(big.size, local[1]) == big.root:
            return merkle.prove_fork(big.size, small.size, local[1])
        for src in sources:
            try:
                return merkle.prove_fork(big.size, small.size, tree_reader(src, big.size, big.root))
            except (ProofError, FileError, MalformedError, TooLargeError) as e:
                log.debug("no tiles for a consistency check", extra={"source": src.name, "error": str(e)})
        return None

    def _remember(self, key: tuple[object, ...]) -> None:
        """Judged already: not judged again while the checkpoints held near it stay the same."""
        self._judged[key] = None
        while len(self._judged) > _JUDGED_CACHE:
            self._judged.popitem(last=False)

    def judge(self, m: Member, got: Held, sources: Sequence[Fetcher]) -> Alert | None:
        """Fork evidence if ``got`` contradicts a checkpoint of ``m``'s log held here."""
        held = self._held_near(m, got.size)
        key = (m.origin, got.size, got.root, *sorted((h.size, h.root) for h in held))
        if key in self._judged:
            return None

        def evidence(kind: str, earlier: Held, later: Held, proof: Sequence[bytes]) -> Alert:
            self.compared.labels(outcome="fork").inc()
            self._remember(key)
            return Alert(
                kind=kind,
                origin=m.origin,
                observed_by=self._member_id,
                observed_at=int(self._clock()),
                earlier=earlier.note,
                later=later.note,
                proof=tuple(proof),
            )

        for h in held:
            if h.size == got.size and h.root != got.root:
                return evidence("same-size", h, got, [])
        below = max((h for h in held if 0 < h.size < got.size), key=lambda h: h.size, default=None)
        above = min((h for h in held if h.size > got.size), key=lambda h: h.size, default=None)
        checked = True
        for small, big in ((below, got), (got, above)):
            if small is None or big is None or small.size == 0:
                continue
            proof = self._proof(m, big, small, sources)
            if proof is None:
                checked = False
                continue
            try:  # the hashes come from big's tree: either a fork or a prefix
                merkle.check_fork(proof, big.size, big.root, small.size, small.root)
            except ProofError:
                continue
            return evidence("inconsistent", small, big, proof)
        if checked:
            self.compared.labels(outcome="consistent").inc()
            self._remember(key)
        else:
            self.compared.labels(outcome="unchecked").inc()
        return None
