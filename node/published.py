"""Our own log's latest published checkpoint, and the policy versions recorded in our
log (``node.db``).

A checkpoint is *published* (served at ``/checkpoint``) once the policy's witness
quorum has cosigned it; cosignatures that arrive later are added to the stored note.
Only the latest is kept here: the log store keeps every checkpoint with its
cosignatures (``log.db``, table ``cosigned``), so a second copy of that history would
only grow the disk by about 550 bytes per checkpoint.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from ledger.errors import StorageError

__all__ = ["Published", "PublishedCheckpoint"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cosigned (
    size INTEGER PRIMARY KEY, note BLOB NOT NULL, cosigners INTEGER NOT NULL, published_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS adopted (
    version INTEGER PRIMARY KEY, hash BLOB NOT NULL, idx INTEGER NOT NULL
);
"""


@dataclass(frozen=True, kw_only=True)
class PublishedCheckpoint:
    """A published checkpoint: size, the note with its cosignatures, how many, when."""

    size: int
    note: bytes
    cosigners: int
    published_at: int


class Published:
    """The table of published checkpoints."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.executescript(_SCHEMA)
        except sqlite3.Error as e:
            raise StorageError(f"{path}: cannot open the node database: {e}") from None

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._conn.close()

    def add(self, *, size: int, note: bytes, cosigners: int, now: int) -> None:
        """Store (or widen with more cosignatures) the published checkpoint of ``size``,
        unless a larger one is published already; smaller ones are dropped."""
        # Two statements, no transaction needed: if the node stops between them, the
        # rows left behind are older ones, which latest() never returns and the next
        # publication removes.
        with self._lock:
            try:
                self._conn.execute(
                    "INSERT INTO cosigned (size, note, cosigners, published_at) "
                    "SELECT ?1, ?2, ?3, ?4 WHERE ?1 >= coalesce((SELECT max(size) FROM cosigned), 0) "
                    "ON CONFLICT (size) DO UPDATE SET note = excluded.note, "
                    "cosigners = excluded.cosigners WHERE excluded.cosigners > cosigned.cosigners",
                    (size, note, cosigners, now),
                )
                self._conn.execute("DELETE FROM cosigned WHERE size < (SELECT max(size) FROM cosigned)")
            except sqlite3.Error as e:
                raise StorageError(f"cannot store the published checkpoint: {e}") from None

    def latest(self) -> PublishedCheckpoint | None:
        """The published checkpoint of the largest size, or None."""
        with self._lock:
            row = self._conn.execute(
                "SELECT size, note, cosigners, published_at FROM cosigned ORDER BY size DESC LIMIT 1"
            ).fetchone()
        if row is None:
            return None
        return PublishedCheckpoint(size=row[0], note=row[1], cosigners=row[2], published_at=row[3])

    def adopted(self) -> dict[int, bytes]:
        """The policy versions already recorded in our log, with their document hashes."""
        with self._lock:
            return {v: h for v, h in self._conn.execute("SELECT version, hash FROM adopted")}

    def adopt(self, *, version: int, digest: bytes, index: int) -> None:
        """Remember that ``version`` (document hash ``digest``) is entry ``index`` of our log."""
        with self._lock:
            self._conn.execute(
                "INSERT OR IGNORE INTO adopted (version, hash, idx) VALUES (?, ?, ?)",
                (version, digest, index),
            )
