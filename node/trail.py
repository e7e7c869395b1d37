"""The operation trail (操作留痕): every change, every read of personal data, every refusal.

The trail is a table in the department's private store (:mod:`node.private`), written in
the same transaction as the change it records. Each event is canonical msgpack::

    {"seq": n, "time": ms since 1970, "actor": clerk name or "-", "operator": id or "",
     "action": "issue" | "revoke" | ... | "refused", "status": HTTP-like status,
     "target": [certificate ids or clerk names], "detail": short text, "prev": 32 bytes}

``prev`` is the hash of event ``n - 1`` (32 zero bytes for the first), and the hash of an
event is its RFC 9162 leaf hash (``SHA-256(0x00 || bytes)``, :func:`ledger.log.merkle.leaf_hash`),
so the trail is both a hash chain and the leaves of a Merkle tree. :func:`verify` walks
the chain and returns the tree's size and root: an operator who notes the head
(``size:root``) can later prove that nothing up to it was changed or removed
(:func:`verify` with ``expect``). No claim value is ever written here: events name
certificates by id only.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ledger import canonical
from ledger.errors import AuditError, MalformedError, StorageError
from ledger.log import merkle

__all__ = [
    "SCHEMA",
    "TrailEvent",
    "TrailRecord",
    "append",
    "parse_head",
    "read",
    "verify",
]

GENESIS = bytes(32)
MAX_EVENT = 1 << 20
_FIELDS = frozenset({"seq", "time", "actor", "operator", "action", "status", "target", "detail", "prev"})

SCHEMA = """CREATE TABLE IF NOT EXISTS trail (
    seq  INTEGER PRIMARY KEY CHECK (seq >= 0),
    data BLOB NOT NULL CHECK (typeof(data) = 'blob'),
    hash BLOB NOT NULL CHECK (typeof(hash) = 'blob' AND length(hash) = 32)
)"""


@dataclass(frozen=True, kw_only=True)
class TrailEvent:
    """One thing to record (before it gets its place in the chain)."""

    actor: str
    action: str
    status: int
    operator: str = ""
    target: tuple[str, ...] = ()
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class TrailRecord:
    """An event as stored: its place, time, hash and the hash it chains to."""

    seq: int
    time_ms: int
    event: TrailEvent
    prev: bytes
    hash: bytes

    def to_json(self) -> dict[str, Any]:
        """The record as JSON-ready data."""
        e = self.event
        return {
            "seq": self.seq,
            "time_ms": self.time_ms,
            "actor": e.actor,
            "operator": e.operator,
            "action": e.action,
            "status": e.status,
            "target": list(e.target),
            "detail": e.detail,
            "hash": self.hash.hex(),
        }


def _encode(seq: int, time_ms: int, e: TrailEvent, prev: bytes) -> bytes:
    return canonical.encode(
        {
            "seq": seq,
            "time": time_ms,
            "actor": e.actor,
            "operator": e.operator,
            "action": e.action,
            "status": e.status,
            "target": list(e.target),
            "detail": e.detail,
            "prev": prev,
        }
    )


def _decode(data: bytes, seq: int) -> tuple[int, TrailEvent, bytes]:
    try:
        doc = canonical.decode(data, max_size=MAX_EVENT, what=f"trail event {seq}")
    except MalformedError as e:
        raise AuditError(f"trail event {seq} is not a valid event: {e}", index=seq) from None
    if not isinstance(doc, dict) or set(doc) != _FIELDS:
        raise AuditError(f"trail event {seq} does not have the trail's fields", index=seq)
    ok = (
        doc["seq"] == seq
        and type(doc["time"]) is int
        and all(type(doc[k]) is str for k in ("actor", "operator", "action", "detail"))
        and type(doc["status"]) is int
        and isinstance(doc["target"], list)
        and all(type(t) is str for t in doc["target"])
        and type(doc["prev"]) is bytes
        and len(doc["prev"]) == 32
    )
    if not ok:
        raise AuditError(f"trail event {seq} has a field of the wrong type or number", index=seq)
    event = TrailEvent(
        actor=doc["actor"],
        operator=doc["operator"],
        action=doc["action"],
        status=doc["status"],
        target=tuple(doc["target"]),
        detail=doc["detail"],
    )
    return doc["time"], event, doc["prev"]


def append(conn: sqlite3.Connection, events: Sequence[TrailEvent], *, time_ms: int) -> None:
    """Chain ``events`` after the last stored one, inside the caller's write transaction."""
    if not events:
        return
    row = conn.execute("SELECT seq, hash FROM trail ORDER BY seq DESC LIMIT 1").fetchone()
    seq, prev = (0, GENESIS) if row is None else (row[0] + 1, bytes(row[1]))
    rows = []
    for e in events:
        data = _encode(seq, time_ms, e, prev)
        h = merkle.leaf_hash(data)
        rows.append((seq, data, h))
        seq, prev = seq + 1, h
    conn.executemany("INSERT INTO trail (seq, data, hash) VALUES (?, ?, ?)", rows)


def read(
    conn: sqlite3.Connection, *, since_ms: int | None = None, actor: str | None = None
) -> Iterator[TrailRecord]:
    """Stored events in order, optionally from ``since_ms`` on and by ``actor`` only."""
    for seq, data, h in _rows(conn):
        t, event, prev = _decode(bytes(data), seq)
        if since_ms is not None and t < since_ms:
            continue
        if actor is not None and event.actor != actor:
            continue
        yield TrailRecord(seq=seq, time_ms=t, event=event, prev=prev, hash=bytes(h))


def _rows(conn: sqlite3.Connection) -> Iterator[tuple[Any, Any, Any]]:
    """Every stored ``(seq, data, hash)`` row in order, read a thousand at a time."""
    last = -1
    while True:
        try:
            rows = conn.execute(
                "SELECT seq, data, hash FROM trail WHERE seq > ? ORDER BY seq LIMIT 1000", (last,)
            ).fetchall()
        except sqlite3.Error as e:
            raise StorageError(f"cannot read the trail: {e}") from None
        if not rows:
            return
        yield from rows
        last = rows[-1][0]


def parse_head(text: str) -> tuple[int, bytes]:
    """``SIZE:ROOT`` (root in hex), as :func:`verify` prints it."""
    size, sep, root = text.partition(":")
    try:
        if not sep or not size.isdigit():
            raise ValueError
        raw = bytes.fromhex(root)
        if len(raw) != 32:
            raise ValueError
    except ValueError:
        raise MalformedError("a trail head is SIZE:ROOT with a 64-digit hex root") from None
    return int(size), raw


def verify(conn: sqlite3.Connection, *, expect: tuple[int, bytes] | None = None) -> tuple[int, bytes]:
    """Check the whole chain; return (size, Merkle root). AuditError names the first bad event.

    With ``expect`` (a head noted earlier), also check that the trail still holds that
    many events and that their root is the noted one: nothing was removed or rewritten.
    """
    leaves: list[bytes] = []
    prev = GENESIS
    last = -1
    for seq, data, h in _rows(conn):
        if type(seq) is not int or seq != last + 1:
            raise AuditError(f"trail event {last + 1} is missing", index=last + 1)
        if type(data) is not bytes or type(h) is not bytes:
            raise AuditError(f"trail event {seq} is not stored as bytes", index=seq)
        _, _, stated_prev = _decode(data, seq)
        if stated_prev != prev:
            raise AuditError(
                f"trail event {seq} does not chain to event {seq - 1}: a change or removal before it",
                index=seq,
            )
        leaf = merkle.leaf_hash(data)
        if leaf != h:
            raise AuditError(f"trail event {seq} was changed: its hash does not match", index=seq)
        leaves.append(leaf)
        prev, last = leaf, seq
    root = merkle.root_from_leaf_hashes(leaves)
    if expect is not None:
        size, want = expect
        if len(leaves) < size:
            raise AuditError(
                f"the trail has {len(leaves)} events, fewer than the {size} noted: events were removed"
            )
        if merkle.root_from_leaf_hashes(leaves[:size]) != want:
            raise AuditError(
                f"the first {size} events of the trail are not the ones noted: the trail was rewritten"
            )
    return len(leaves), root
