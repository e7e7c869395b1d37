"""The replica database: verified copies of consortium members' logs in one SQLite file.

Only :mod:`ledger.replica.sync` writes here, and only what it verified: a witnessed
checkpoint (log signature and witness quorum checked) with every entry it covers
(hash chain, statement signatures, key validity and mandate checked; the tree
recomputed up to the signed root). Everything is stored per log origin::

    logs         (origin PK, member_id, size, root, note, witnessed_at, newest_at,
                  cosigners, verified_at)         the newest verified witnessed checkpoint
    checkpoints  (origin, size PK, root, note, witnessed_at, newest_at, cosigners)
                                                  every verified witnessed checkpoint, first
                                                  seen per size (the key-compromise rule
                                                  asks for the first one covering an entry)
    entries      (origin, idx PK, data)           exact entry bytes
    hashes       (origin, idx PK, hash)           stored Merkle hashes (ledger.log.merkle order)
    certs        (origin, idx PK, cert_id, kind, issuer, cert_type, time, stmt_hash,
                  replaces, problem)              the certificate index of every statement
    pending      (origin PK, note, source)        a catch-up in progress: entries, hashes and
                                                  index rows at or past the log's ``size`` were
                                                  checked towards ``note`` but its root is not
                                                  reached yet; never read as replica data
    checked      (origin PK, size)                present only while a log's statements are
                                                  checked for ``[0, size)`` alone (a sync that
                                                  checked the tree and chain only); verdicts
                                                  read that prefix and its checkpoint
    staged       (origin, idx PK, data)           unused (kept for older databases)
    alerts       (id PK, origin, member_id, kind, message, note_a, note_b, proof,
                  source, created)                forks and refused data, kept as evidence

``witnessed_at`` of a checkpoint is the time its witness quorum was reached (the
quorum-th earliest counted cosignature); ``newest_at`` the newest time a quorum of
witnesses attests (the quorum-th newest), which is the replica's "as of" time for
that log. ``problem`` holds the
rule and reason for which an entry is not to be trusted (a key used outside its
window, a compromised key, a statement outside its member's mandate, a member
writing in another's name); such entries stay in the copy (they are in the signed
log) but never count for a verdict.

:class:`ReplicaStore` also answers :class:`ReplicaView`, what the verifier core reads.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from ledger.errors import ConflictError, LedgerError, StorageError
from ledger.log import merkle
from ledger.log.statement import Entry, SignedStatement, Statement, statement_fields

__all__ = [
    "Alert",
    "LoggedEntry",
    "Lookup",
    "ReplicaState",
    "ReplicaStore",
    "ReplicaView",
    "WitnessedCheckpoint",
    "statement_hash",
]

#: ``PRAGMA application_id`` of a replica database ("CLR1").
APPLICATION_ID = 0x434C5231
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE logs (
    origin TEXT PRIMARY KEY NOT NULL, member_id TEXT NOT NULL, size INTEGER NOT NULL,
    root BLOB NOT NULL, note BLOB NOT NULL, witnessed_at INTEGER NOT NULL,
    newest_at INTEGER NOT NULL, cosigners TEXT NOT NULL, verified_at INTEGER NOT NULL
);
CREATE TABLE checkpoints (
    origin TEXT NOT NULL, size INTEGER NOT NULL, root BLOB NOT NULL, note BLOB NOT NULL,
    witnessed_at INTEGER NOT NULL, newest_at INTEGER NOT NULL, cosigners TEXT NOT NULL,
    PRIMARY KEY (origin, size)
) WITHOUT ROWID;
CREATE TABLE entries (
    origin TEXT NOT NULL, idx INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (origin, idx)
) WITHOUT ROWID;
CREATE TABLE hashes (
    origin TEXT NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL, PRIMARY KEY (origin, idx)
) WITHOUT ROWID;
CREATE TABLE certs (
    origin TEXT NOT NULL, idx INTEGER NOT NULL, cert_id TEXT NOT NULL, kind INTEGER NOT NULL,
    issuer TEXT NOT NULL, cert_type TEXT NOT NULL, time INTEGER NOT NULL, stmt_hash BLOB NOT NULL,
    replaces TEXT, problem TEXT, PRIMARY KEY (origin, idx)
) WITHOUT ROWID;
CREATE INDEX certs_by_id ON certs (cert_id);
CREATE INDEX certs_by_replaces ON certs (replaces) WHERE replaces IS NOT NULL;
CREATE TABLE staged (
    origin TEXT NOT NULL, idx INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (origin, idx)
) WITHOUT ROWID;
CREATE TABLE pending (origin TEXT PRIMARY KEY NOT NULL, note BLOB NOT NULL, source TEXT NOT NULL);
CREATE TABLE checked (origin TEXT PRIMARY KEY NOT NULL, size INTEGER NOT NULL);
CREATE TABLE alerts (
    id INTEGER PRIMARY KEY, origin TEXT NOT NULL, member_id TEXT NOT NULL, kind TEXT NOT NULL,
    message TEXT NOT NULL, note_a BLOB, note_b BLOB, proof TEXT, source TEXT, created INTEGER NOT NULL
);
"""


# A verified entry (from an index row) with the first stored checkpoint covering it.
_FIND_SQL = """
SELECT c.idx, c.problem, e.data, k.size, k.root, k.note, k.witnessed_at, k.newest_at, k.cosigners
FROM certs c INDEXED BY certs_by_id JOIN entries e ON e.origin = c.origin AND e.idx = c.idx
LEFT JOIN checkpoints k ON k.origin = c.origin
    AND k.size = (SELECT min(size) FROM checkpoints WHERE origin = c.origin AND size > c.idx)
WHERE c.cert_id = ? AND c.origin = ? AND c.stmt_hash = ? AND c.idx < ? ORDER BY c.idx LIMIT 1
"""
_STATUS_SQL = """
SELECT c.origin, c.idx, c.problem, e.data, k.size, k.root, k.note, k.witnessed_at, k.newest_at, k.cosigners
FROM certs c JOIN entries e ON e.origin = c.origin AND e.idx = c.idx
LEFT JOIN checkpoints k ON k.origin = c.origin
    AND k.size = (SELECT min(size) FROM checkpoints WHERE origin = c.origin AND size > c.idx)
WHERE ((c.cert_id = ? AND c.kind IN (2, 3, 4)) OR c.replaces = ?) AND c.idx < coalesce(
    (SELECT size FROM checked x WHERE x.origin = c.origin),
    (SELECT size FROM logs l WHERE l.origin = c.origin),
    0
)
ORDER BY c.time, c.origin, c.idx
"""
# Both at once: part 0 is the entry (at most one row), part 1 the status entries.
_LOOKUP_SQL = """
SELECT * FROM (
    SELECT 0, 0, c.origin, c.idx, c.problem, e.data, k.size, k.root, k.note, k.witnessed_at, k.newest_at,
        k.cosigners, h0.idx, h0.hash, h1.idx, h1.hash, h2.idx, h2.hash, h3.idx, h3.hash, h4.idx, h4.hash
    FROM certs c INDEXED BY certs_by_id JOIN entries e ON e.origin = c.origin AND e.idx = c.idx
    LEFT JOIN hashes h0 ON h0.origin = c.origin AND h0.idx = merkle_sibling(0, c.idx, ?1)
    LEFT JOIN hashes h1 ON h1.origin = c.origin AND h1.idx = merkle_sibling(1, c.idx, ?1)
    LEFT JOIN hashes h2 ON h2.origin = c.origin AND h2.idx = merkle_sibling(2, c.idx, ?1)
    LEFT JOIN hashes h3 ON h3.origin = c.origin AND h3.idx = merkle_sibling(3, c.idx, ?1)
    LEFT JOIN hashes h4 ON h4.origin = c.origin AND h4.idx = merkle_sibling(4, c.idx, ?1)
    LEFT JOIN checkpoints k ON k.origin = c.origin
        AND k.size = (SELECT min(size) FROM checkpoints WHERE origin = c.origin AND size > c.idx)
    WHERE c.cert_id = ?4 AND c.origin = ?2 AND c.stmt_hash = ?3 AND c.idx < ?1 ORDER BY c.idx LIMIT 1
)
UNION ALL
SELECT 1, c.time, c.origin, c.idx, c.problem, e.data, k.size, k.root, k.note, k.witnessed_at, k.newest_at,
    k.cosigners, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM certs c JOIN entries e ON e.origin = c.origin AND e.idx = c.idx
LEFT JOIN checkpoints k ON k.origin = c.origin
    AND k.size = (SELECT min(size) FROM checkpoints WHERE origin = c.origin AND size > c.idx)
WHERE ((c.cert_id = ?4 AND c.kind IN (2, 3, 4)) OR c.replaces = ?4) AND c.idx < coalesce(
    (SELECT size FROM checked x WHERE x.origin = c.origin),
    (SELECT size FROM logs l WHERE l.origin = c.origin),
    0
)
UNION ALL
SELECT 2, data_version, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM pragma_data_version
"""


def _merkle_sibling(level: int, index: int, size: int) -> int | None:
    """The stored-hash index of the sibling, at ``level``, of the subtree holding entry
    ``index``, or None unless that sibling is a complete subtree of the first ``size``
    entries (SQL function ``merkle_sibling``)."""
    sibling = (index >> level) ^ 1
    if (sibling + 1) << level > size:
        return None
    return merkle.stored_hash_index(level, sibling)


def statement_hash(statement_bytes: bytes) -> bytes:
    """SHA-256 of a statement's exact bytes: how the verifier finds a presented one."""
    return hashlib.sha256(statement_bytes).digest()


@dataclass(frozen=True, kw_only=True)
class WitnessedCheckpoint:
    """A checkpoint whose log signature and witness quorum verified.

    ``cosigners`` are the member ids whose cosignatures counted.
    """

    origin: str
    member_id: str
    size: int
    root_hash: bytes
    note: bytes
    witnessed_at: int
    newest_at: int
    cosigners: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class LoggedEntry:
    """One entry in a member's verified log copy, with the first witnessed checkpoint
    that covers it and, if it is not to be trusted, why (``problem``). The entry is
    parsed only when its statement is asked for."""

    member_id: str
    index: int
    data: bytes
    problem: str | None
    first_witnessed: WitnessedCheckpoint

    @functools.cached_property
    def signed(self) -> SignedStatement:
        """The signed statement the entry holds."""
        return Entry.from_bytes(self.data).signed

    @property
    def statement(self) -> Statement:
        """The statement the entry holds."""
        return self.signed.statement


@dataclass(frozen=True, kw_only=True)
class Alert:
    """Evidence of misbehaviour: a fork (both signed notes and the failed proof) or
    data refused from a named source."""

    id: int
    origin: str
    member_id: str
    kind: str
    message: str
    note_a: bytes | None
    note_b: bytes | None
    proof: tuple[bytes, ...]
    source: str | None
    created: int

    def to_json(self) -> dict[str, Any]:
        """A JSON form for APIs and the command line."""
        return {
            "id": self.id,
            "origin": self.origin,
            "member": self.member_id,
            "kind": self.kind,
            "message": self.message,
            "note_a": None if self.note_a is None else self.note_a.decode("utf-8", "replace"),
            "note_b": None if self.note_b is None else self.note_b.decode("utf-8", "replace"),
            "proof": [h.hex() for h in self.proof],
            "source": self.source,
            "created": self.created,
        }


@dataclass(frozen=True, kw_only=True)
class ReplicaState:
    """Every log's state in the replica at one moment, read in one transaction: what
    a verdict reads first. ``latest`` follows :meth:`ReplicaView.latest` (the newest
    checkpoint whose statements are all checked); ``limits`` is, by origin, how many
    entries verdicts read (the checked prefix); ``sizes`` the verified entries held."""

    newest_witnessed_time: int | None
    origins: Mapping[str, str]
    latest: Mapping[str, WitnessedCheckpoint | None]
    forks: Mapping[str, tuple[Alert, ...]]
    limits: Mapping[str, int]
    sizes: Mapping[str, int]


@dataclass(frozen=True, kw_only=True)
class Lookup:
    """What a verdict reads about one presented certificate: the entry holding its
    statement (or None), every status entry about it, and ``siblings``: the stored
    hashes of the entry's first proof siblings (levels 0 to 4) that are complete
    subtrees of the checked prefix, by stored-hash index. The siblings are unchecked
    data: a proof that uses them still has to reach the witnessed root. ``current``
    tells whether the
    :class:`ReplicaState` the lookup was made with was still the replica's current one
    when these rows were read (else the caller reads the state again and starts over)."""

    entry: LoggedEntry | None
    status: list[LoggedEntry]
    siblings: dict[int, bytes]
    current: bool


class ReplicaView(Protocol):
    """What the verifier core reads from a replica (no network, no writes)."""

    def state(self) -> ReplicaState:
        """Every log's state now (cheap when nothing changed since the last call)."""
        ...

    def last_state(self) -> ReplicaState:
        """The state :meth:`state` last read (no read to check it is still current:
        :meth:`lookup` says whether it was)."""
        ...

    def latest(self, member_id: str) -> WitnessedCheckpoint | None:
        """The newest verified witnessed checkpoint of the member's log."""
        ...

    def find_statement(
        self, member_id: str, statement_bytes: bytes, *, state: ReplicaState | None = None
    ) -> LoggedEntry | None:
        """The first entry of the member's log holding exactly these statement bytes
        (read as of ``state`` when given)."""
        ...

    def inclusion_proof(
        self, member_id: str, index: int, size: int, *, state: ReplicaState | None = None
    ) -> list[bytes]:
        """RFC 9162 inclusion proof of entry ``index`` in the tree of ``size`` entries."""
        ...

    def proof_hashes(
        self, member_id: str, size: int, *, state: ReplicaState | None = None
    ) -> merkle.HashReader:
        """Reads the stored Merkle hashes of the member's tree of ``size`` entries by index
        (what an inclusion proof in that tree is made of)."""
        ...

    def lookup(
        self, member_id: str, statement_bytes: bytes, cert_id: str, *, state: ReplicaState | None = None
    ) -> Lookup:
        """:meth:`find_statement` and :meth:`status_entries` at once (one read), with the
        stored hashes of the entry's first proof siblings."""
        ...

    def status_entries(self, cert_id: str) -> list[LoggedEntry]:
        """Every entry in any member's log about ``cert_id`` other than its issue: status
        changes (revoke, suspend, reinstate) and replace statements that supersede it."""
        ...

    def newest_witnessed_time(self) -> int | None:
        """The newest witness time over every log (a floor on the current time)."""
        ...

    def forks(self, member_id: str) -> list[Alert]:
        """Fork alerts on record for the member's log (evidence of a split view)."""
        ...


@functools.lru_cache(maxsize=1024)
def _cosigners(text: str) -> tuple[str, ...]:
    return tuple(json.loads(text))


class ReplicaStore:
    """The replica database. Open with :meth:`open`; thread-safe (one connection, serialised)."""

    def __init__(self, *, _conn: sqlite3.Connection, _path: Path) -> None:
        self._conn = _conn
        self._path = _path
        self._mutex = threading.RLock()
        self._members: dict[str, str] = {}
        self._origins: dict[str, str] = {}
        self._checkpoints: dict[tuple[str, int], WitnessedCheckpoint] = {}
        # What every verdict reads first, kept until the database changes: ``_writes``
        # counts this connection's transactions, ``PRAGMA data_version`` changes when
        # another connection commits.
        self._writes = 0
        self._state: ReplicaState | None = None
        self._state_key: tuple[int, int] = (-1, -1)

    @classmethod
    def open(cls, path: str | Path) -> ReplicaStore:
        """Open (creating if needed) the replica database at ``path``."""
        p = Path(path)
        try:
            conn = sqlite3.connect(str(p), isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=10000")
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
            if app_id == 0 and tables == 0:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(
                    f"BEGIN; {_SCHEMA} PRAGMA application_id={APPLICATION_ID}; "
                    f"PRAGMA user_version={SCHEMA_VERSION}; COMMIT;"
                )
            elif app_id != APPLICATION_ID:
                conn.close()
                raise StorageError(f"{p}: not a certledger replica database")
            elif conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                conn.close()
                raise StorageError(f"{p}: unknown replica schema version")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            # Statements are found through their certificate id (certs_by_id); an index of
            # random statement hashes cost a mirror more than all its other writes.
            conn.execute("DROP INDEX IF EXISTS certs_by_statement")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS checked (origin TEXT PRIMARY KEY NOT NULL, size INTEGER NOT NULL)"
            )
        except sqlite3.Error as e:
            raise StorageError(f"{p}: cannot open the replica database: {e}") from None
        try:
            conn.create_function("merkle_sibling", 3, _merkle_sibling, deterministic=True)
        except sqlite3.Error as e:
            raise StorageError(f"{p}: cannot open the replica database: {e}") from None
        return cls(_conn=conn, _path=p)

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    def close(self) -> None:
        """Close the database."""
        with self._mutex:
            self._conn.close()

    def __enter__(self) -> ReplicaStore:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._mutex:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as e:
                raise StorageError(f"{self._path}: {e}") from None

    @contextlib.contextmanager
    def _transaction(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction. ``durable`` false commits without waiting for the disk
        (WAL with ``synchronous=NORMAL``): atomic and in order, but a power loss may take
        it back, until the next durable commit, whose sync covers the whole WAL before it."""
        with self._mutex:
            c = self._conn
            self._writes += 1
            self._state = None
            try:
                if not durable:
                    c.execute("PRAGMA synchronous=NORMAL")
                try:
                    c.execute("BEGIN IMMEDIATE")
                    try:
                        yield c
                        c.execute("COMMIT")
                    except BaseException:
                        with contextlib.suppress(sqlite3.Error):
                            c.execute("ROLLBACK")
                        raise
                finally:
                    if not durable:
                        c.execute("PRAGMA synchronous=FULL")
            except sqlite3.Error as e:
                raise StorageError(f"{self._path}: cannot write the replica: {e}") from None

    # -- state of one log -----------------------------------------------------------

    def size(self, origin: str) -> int:
        """How many verified entries of the log ``origin`` the replica holds."""
        rows = self._rows("SELECT size FROM logs WHERE origin = ?", (origin,))
        return int(rows[0][0]) if rows else 0

    def latest_checkpoint(self, origin: str) -> WitnessedCheckpoint | None:
        """The newest verified witnessed checkpoint of ``origin``."""
        rows = self._rows(
            "SELECT member_id, size, root, note, witnessed_at, newest_at, cosigners FROM logs "
            "WHERE origin = ?",
            (origin,),
        )
        if not rows:
            return None
        m, size, root, note, w, n, cos = rows[0]
        return WitnessedCheckpoint(
            origin=origin,
            member_id=m,
            size=size,
            root_hash=root,
            note=note,
            witnessed_at=w,
            newest_at=n,
            cosigners=_cosigners(cos),
        )

    def checkpoint_at(self, origin: str, size: int) -> WitnessedCheckpoint | None:
        """The first verified witnessed checkpoint of ``origin`` for exactly ``size`` entries."""
        rows = self._rows(
            "SELECT size FROM checkpoints WHERE origin = ? AND size = ?",
            (origin, size),
        )
        return self._covering(origin, size) if rows else None

    def checkpoints_near(self, origin: str, size: int) -> list[WitnessedCheckpoint]:
        """The verified checkpoints nearest to ``size``: the largest below, the one at it,
        the smallest above (those that exist)."""
        out = []
        for sql in (
            "SELECT size FROM checkpoints WHERE origin = ? AND size < ? ORDER BY size DESC LIMIT 1",
            "SELECT size FROM checkpoints WHERE origin = ? AND size = ?",
            "SELECT size FROM checkpoints WHERE origin = ? AND size > ? ORDER BY size LIMIT 1",
        ):
            for (n,) in self._rows(sql, (origin, size)):
                cp = self.checkpoint_at(origin, int(n))
                if cp is not None:
                    out.append(cp)
        return out

    def _covering(self, origin: str, index_or_size: int) -> WitnessedCheckpoint | None:
        """The first stored checkpoint of ``origin`` whose size is at least ``index_or_size``."""
        rows = self._rows(
            "SELECT size, root, note, witnessed_at, newest_at, cosigners FROM checkpoints "
            "WHERE origin = ? AND size >= ? ORDER BY size LIMIT 1",
            (origin, index_or_size),
        )
        if not rows:
            return None
        return self._checkpoint(origin, self._member_of(origin), rows[0])

    def _member_of(self, origin: str) -> str:
        m = self._members.get(origin)
        if m is None:
            rows = self._rows("SELECT member_id FROM logs WHERE origin = ?", (origin,))
            if not rows:
                raise StorageError(f"the replica holds no log {origin!r}")
            m = self._members[origin] = str(rows[0][0])
        return m

    def _origin_of(self, member_id: str) -> str | None:
        origin = self._origins.get(member_id)
        if origin is None:
            rows = self._rows("SELECT origin FROM logs WHERE member_id = ?", (member_id,))
            if not rows:
                return None
            origin = self._origins[member_id] = str(rows[0][0])
        return origin

    def hash_reader(self, origin: str) -> merkle.HashReader:
        """Reads stored Merkle hashes of ``origin`` by index."""

        def read(indexes: Sequence[int]) -> list[bytes]:
            want = list(indexes)
            found: dict[int, bytes] = {}
            if want:
                rows = self._rows(
                    "SELECT idx, hash FROM hashes WHERE origin = ? "
                    "AND idx IN (SELECT value FROM json_each(?))",
                    (origin, json.dumps(want)),
                )
                found.update(rows)
            missing = [i for i in want if i not in found]
            if missing:
                raise StorageError(f"the replica of {origin} has no stored hash {missing[0]}")
            return [found[i] for i in want]

        return read

    def edge(self, origin: str, size: int) -> dict[int, bytes]:
        """The stored hashes on the right edge of the tree of ``size`` entries, by index."""
        want = []
        m, level = size, 0
        while m:
            if m & 1:
                want.append(merkle.stored_hash_index(level, m - 1))
            m >>= 1
            level += 1
        return dict(zip(want, self.hash_reader(origin)(want), strict=True))

    def last_leaf(self, origin: str, size: int) -> bytes | None:
        """The leaf hash of entry ``size - 1`` (the hash chain's link), or None for 0."""
        if size == 0:
            return None
        return self.hash_reader(origin)([merkle.stored_hash_index(0, size - 1)])[0]

    def entry(self, origin: str, index: int) -> bytes:
        """The exact bytes of a verified entry."""
        rows = self._rows("SELECT data FROM entries WHERE origin = ? AND idx = ?", (origin, index))
        if not rows:
            raise StorageError(f"the replica of {origin} has no entry {index}")
        return bytes(rows[0][0])

    def entries(self, origin: str, start: int, stop: int) -> list[bytes]:
        """Verified entries ``[start, stop)`` of ``origin``."""
        rows = self._rows(
            "SELECT data FROM entries WHERE origin = ? AND idx >= ? AND idx < ? ORDER BY idx",
            (origin, start, stop),
        )
        return [bytes(r[0]) for r in rows]

    # -- writing (the sync only) ------------------------------------------------------

    def _tip(self, c: sqlite3.Connection, origin: str) -> int:
        """One past the last entry row of ``origin``, verified or in progress."""
        row = c.execute("SELECT max(idx) FROM entries WHERE origin = ?", (origin,)).fetchone()
        return 0 if row is None or row[0] is None else int(row[0]) + 1

    def resume_point(self, origin: str) -> int:
        """Where a catch-up of ``origin`` continues: one past the last entry checked,
        whether its checkpoint is reached yet or not."""
        with self._mutex:
            try:
                return self._tip(self._conn, origin)
            except sqlite3.Error as e:
                raise StorageError(f"{self._path}: {e}") from None

    def index_tip(self, origin: str) -> int:
        """One past the last certificate index row of ``origin`` (0 for none)."""
        rows = self._rows("SELECT max(idx) FROM certs WHERE origin = ?", (origin,))
        return 0 if not rows or rows[0][0] is None else int(rows[0][0]) + 1

    def write_checked(
        self,
        origin: str,
        *,
        note: bytes,
        source: str,
        base: int,
        start: int,
        entries: Sequence[bytes],
        hash_start: int,
        hashes: Sequence[bytes],
        index: Sequence[tuple[Any, ...]],
    ) -> None:
        """Keep one checked batch of a catch-up towards ``note`` from a copy of ``base``
        entries: entries ``start, start + 1, ...``, the stored hashes they add (indexes
        ``hash_start, hash_start + 1, ...``) and their index rows
        (``(origin, idx, cert_id, kind, issuer, cert_type, time, stmt_hash, replaces, problem)``),
        in one transaction. They are not replica data until :meth:`commit` reaches the
        checkpoint. ConflictError if another sync moved the copy or the catch-up on.

        The batch is not replica data yet, so it is committed without waiting for the
        disk: a power loss can only take back the last batches of the catch-up (the WAL
        is replayed as a prefix), which then resumes earlier; :meth:`commit`, which makes
        them replica data, syncs the WAL with everything before it."""
        with self._transaction(durable=False) as c:
            row = c.execute("SELECT size FROM logs WHERE origin = ?", (origin,)).fetchone()
            if (0 if row is None else int(row[0])) != base or max(self._tip(c, origin), base) != start:
                raise ConflictError(f"the copy of {origin} changed during the sync; sync again")
            c.execute(
                "INSERT OR REPLACE INTO pending (origin, note, source) VALUES (?, ?, ?)",
                (origin, note, source),
            )
            c.executemany(
                "INSERT INTO entries (origin, idx, data) VALUES (?, ?, ?)",
                zip(itertools.repeat(origin), itertools.count(start), entries),
            )
            c.executemany(
                "INSERT INTO hashes (origin, idx, hash) VALUES (?, ?, ?)",
                zip(itertools.repeat(origin), itertools.count(hash_start), hashes),
            )
            if index:
                c.executemany(
                    "INSERT INTO certs (origin, idx, cert_id, kind, issuer, cert_type, time, stmt_hash, "
                    "replaces, problem) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    index,
                )

    def commit(
        self, checkpoint: WitnessedCheckpoint, *, verified_at: int, start: int, statements_checked: bool
    ) -> None:
        """Make the checked entries of a catch-up from a copy of ``start`` entries up to
        ``checkpoint`` replica data, storing the checkpoint, in one transaction.

        With ``statements_checked`` false the entries were checked for tree and chain
        only: verdicts keep reading the prefix whose statements are checked (see
        :meth:`checked_size`). ConflictError if the copy no longer has ``start`` entries
        or the checked entries do not reach the checkpoint."""
        o = checkpoint.origin
        cos = json.dumps(list(checkpoint.cosigners))
        with self._transaction() as c:
            row = c.execute("SELECT size FROM logs WHERE origin = ?", (o,)).fetchone()
            if (0 if row is None else int(row[0])) != start or max(self._tip(c, o), start) != checkpoint.size:
                raise ConflictError(f"the copy of {o} changed during the sync; sync again")
            if statements_checked:
                if c.execute("SELECT 1 FROM checked WHERE origin = ?", (o,)).fetchone() is not None:
                    raise ConflictError(f"the statements of {o} are not all checked; sync again")
            else:
                c.execute("INSERT OR IGNORE INTO checked (origin, size) VALUES (?, ?)", (o, start))
            c.execute(
                "INSERT OR IGNORE INTO checkpoints (origin, size, root, note, witnessed_at, newest_at, "
                "cosigners) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    o,
                    checkpoint.size,
                    checkpoint.root_hash,
                    checkpoint.note,
                    checkpoint.witnessed_at,
                    checkpoint.newest_at,
                    cos,
                ),
            )
            c.execute(
                "INSERT OR REPLACE INTO logs (origin, member_id, size, root, note, witnessed_at, newest_at, "
                "cosigners, verified_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    o,
                    checkpoint.member_id,
                    checkpoint.size,
                    checkpoint.root_hash,
                    checkpoint.note,
                    checkpoint.witnessed_at,
                    checkpoint.newest_at,
                    cos,
                    verified_at,
                ),
            )
            c.execute("DELETE FROM staged WHERE origin = ?", (o,))
            c.execute("DELETE FROM pending WHERE origin = ?", (o,))

    # -- statements checked after the tree ---------------------------------------------

    def checked_size(self, origin: str) -> int:
        """How many entries of ``origin`` have their statements checked and indexed (the
        prefix verdicts read); equal to :meth:`size` unless a sync checked the tree only."""
        rows = self._rows(
            "SELECT coalesce((SELECT size FROM checked WHERE origin = ?), "
            "(SELECT size FROM logs WHERE origin = ?), 0)",
            (origin, origin),
        )
        return int(rows[0][0])

    def checkpoint_sizes(self, origin: str, start: int, stop: int) -> list[tuple[int, int]]:
        """``(size, witnessed_at)`` of the stored checkpoints of ``origin`` with ``start < size <= stop``."""
        rows = self._rows(
            "SELECT size, witnessed_at FROM checkpoints WHERE origin = ? AND size > ? AND size <= ? "
            "ORDER BY size",
            (origin, start, stop),
        )
        return [(int(a), int(b)) for a, b in rows]

    def index_checked(self, origin: str, *, start: int, index: Sequence[tuple[Any, ...]]) -> None:
        """Add the index rows (as :meth:`write_checked` takes them) of entries whose
        statements were checked after their tree, from ``start``; the checked prefix
        grows past them (and ends when it is the whole copy). ConflictError if another
        check moved it on."""
        with self._transaction() as c:
            row = c.execute("SELECT size FROM checked WHERE origin = ?", (origin,)).fetchone()
            if row is None or int(row[0]) != start:
                raise ConflictError(f"the statement check of {origin} moved on; sync again")
            c.executemany(
                "INSERT INTO certs (origin, idx, cert_id, kind, issuer, cert_type, time, stmt_hash, "
                "replaces, problem) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                index,
            )
            stop = start + len(index)
            size = c.execute("SELECT size FROM logs WHERE origin = ?", (origin,)).fetchone()[0]
            if stop >= size:
                c.execute("DELETE FROM checked WHERE origin = ?", (origin,))
            else:
                c.execute("UPDATE checked SET size = ? WHERE origin = ?", (stop, origin))

    # -- a catch-up in progress --------------------------------------------------------

    def pending(self, origin: str) -> tuple[bytes, str] | None:
        """The checkpoint note an interrupted catch-up was heading for, and its source."""
        rows = self._rows("SELECT note, source FROM pending WHERE origin = ?", (origin,))
        return (bytes(rows[0][0]), str(rows[0][1])) if rows else None

    def drop_staged(self, origin: str) -> None:
        """Forget a catch-up in progress (its data did not verify, or it heads elsewhere)."""
        with self._transaction() as c:
            row = c.execute("SELECT size FROM logs WHERE origin = ?", (origin,)).fetchone()
            size = 0 if row is None else int(row[0])
            c.execute("DELETE FROM entries WHERE origin = ? AND idx >= ?", (origin, size))
            c.execute(
                "DELETE FROM hashes WHERE origin = ? AND idx >= ?", (origin, merkle.stored_hash_count(size))
            )
            c.execute("DELETE FROM certs WHERE origin = ? AND idx >= ?", (origin, size))
            c.execute("DELETE FROM staged WHERE origin = ?", (origin,))
            c.execute("DELETE FROM pending WHERE origin = ?", (origin,))

    def refresh(self, checkpoint: WitnessedCheckpoint, *, verified_at: int) -> None:
        """Record newer cosignatures on the checkpoint the replica already holds."""
        with self._transaction() as c:
            c.execute(
                "UPDATE logs SET note = ?, newest_at = ?, cosigners = ?, verified_at = ? "
                "WHERE origin = ? AND size = ? AND root = ? AND newest_at < ?",
                (
                    checkpoint.note,
                    checkpoint.newest_at,
                    json.dumps(list(checkpoint.cosigners)),
                    verified_at,
                    checkpoint.origin,
                    checkpoint.size,
                    checkpoint.root_hash,
                    checkpoint.newest_at,
                ),
            )

    # -- alerts ------------------------------------------------------------------------

    def add_alert(
        self,
        *,
        origin: str,
        member_id: str,
        kind: str,
        message: str,
        created: int,
        note_a: bytes | None = None,
        note_b: bytes | None = None,
        proof: Sequence[bytes] = (),
        source: str | None = None,
    ) -> Alert:
        """Keep evidence; the same evidence twice is kept once."""
        proof_text = json.dumps([h.hex() for h in proof])
        with self._transaction() as c:
            row = c.execute(
                "SELECT id, created FROM alerts WHERE origin = ? AND kind = ? AND message = ? "
                "AND note_a IS ? AND note_b IS ? AND source IS ?",
                (origin, kind, message, note_a, note_b, source),
            ).fetchone()
            if row is None:
                cur = c.execute(
                    "INSERT INTO alerts (origin, member_id, kind, message, note_a, note_b, proof, source, "
                    "created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (origin, member_id, kind, message, note_a, note_b, proof_text, source, created),
                )
                alert_id, when = int(cur.lastrowid or 0), created
            else:
                alert_id, when = int(row[0]), int(row[1])
        return Alert(
            id=alert_id,
            origin=origin,
            member_id=member_id,
            kind=kind,
            message=message,
            note_a=note_a,
            note_b=note_b,
            proof=tuple(proof),
            source=source,
            created=when,
        )

    def alerts(self, member_id: str | None = None, *, kind: str | None = None) -> list[Alert]:
        """Stored alerts, oldest first, optionally for one member and/or of one kind."""
        rows = self._rows(
            "SELECT id, origin, member_id, kind, message, note_a, note_b, proof, source, created FROM alerts "
            "WHERE (? IS NULL OR member_id = ?) AND (? IS NULL OR kind = ?) ORDER BY id",
            (member_id, member_id, kind, kind),
        )
        return self._alerts(rows)

    @staticmethod
    def _alerts(rows: Sequence[Any]) -> list[Alert]:
        return [
            Alert(
                id=r[0],
                origin=r[1],
                member_id=r[2],
                kind=r[3],
                message=r[4],
                note_a=None if r[5] is None else bytes(r[5]),
                note_b=None if r[6] is None else bytes(r[6]),
                proof=tuple(bytes.fromhex(h) for h in json.loads(r[7] or "[]")),
                source=r[8],
                created=r[9],
            )
            for r in rows
        ]

    def forks(self, member_id: str) -> list[Alert]:
        """Fork alerts on record for the member's log."""
        return list(self.state().forks.get(member_id, ()))

    # -- ReplicaView ---------------------------------------------------------------------

    def state(self) -> ReplicaState:
        """Every log's state, re-read only when the database changed since the last call
        (a write through this store, or a commit by another connection)."""
        with self._mutex:
            c = self._conn
            try:
                version = int(c.execute("PRAGMA data_version").fetchone()[0])
                state = self._state
                if state is not None and (self._writes, version) == self._state_key:
                    return state
                c.execute("BEGIN")  # one snapshot for every log
                try:
                    version = int(c.execute("PRAGMA data_version").fetchone()[0])
                    state = self._read_state(c)
                finally:
                    c.execute("COMMIT")
            except sqlite3.Error as e:
                raise StorageError(f"{self._path}: {e}") from None
            self._state, self._state_key = state, (self._writes, version)
            return state

    def last_state(self) -> ReplicaState:
        """The state :meth:`state` last read, without a read to check that it is still
        current, unless this store wrote since (then it is read again)."""
        state = self._state
        if state is not None and self._state_key[0] == self._writes:
            return state
        return self.state()

    def _read_state(self, c: sqlite3.Connection) -> ReplicaState:
        logs = c.execute(
            "SELECT origin, member_id, size, root, note, witnessed_at, newest_at, cosigners FROM logs"
        ).fetchall()
        checked = dict(c.execute("SELECT origin, size FROM checked").fetchall())
        origins: dict[str, str] = {}
        latest: dict[str, WitnessedCheckpoint | None] = {}
        limits: dict[str, int] = {}
        sizes: dict[str, int] = {}
        for origin, member, size, root, note, w, n, cos in logs:
            origins[member] = origin
            sizes[origin] = int(size)
            if origin in checked:
                limits[origin] = int(checked[origin])
                row = c.execute(
                    "SELECT size, root, note, witnessed_at, newest_at, cosigners FROM checkpoints "
                    "WHERE origin = ? AND size = ?",
                    (origin, limits[origin]),
                ).fetchone()
                latest[member] = None if row is None else self._checkpoint(origin, member, row)
            else:
                limits[origin] = int(size)
                latest[member] = self._checkpoint(origin, member, (size, root, note, w, n, cos))
        forks: dict[str, list[Alert]] = {}
        for alert in self._alerts(
            c.execute(
                "SELECT id, origin, member_id, kind, message, note_a, note_b, proof, source, created "
                "FROM alerts WHERE kind = 'fork' ORDER BY id"
            ).fetchall()
        ):
            forks.setdefault(alert.member_id, []).append(alert)
        newest = max((int(r[6]) for r in logs), default=None)
        return ReplicaState(
            newest_witnessed_time=newest,
            origins=origins,
            latest=latest,
            forks={m: tuple(a) for m, a in forks.items()},
            limits=limits,
            sizes=sizes,
        )

    def _checkpoint(self, origin: str, member: str, row: Sequence[Any]) -> WitnessedCheckpoint:
        """A stored checkpoint row ``(size, root, note, witnessed_at, newest_at, cosigners)``
        as an object (one object per stored checkpoint)."""
        size, root, note, w, n, cos = row
        key = (origin, size)
        cached = self._checkpoints.get(key)
        if cached is not None and cached.note == note:
            return cached
        cp = WitnessedCheckpoint(
            origin=origin,
            member_id=member,
            size=size,
            root_hash=root,
            note=note,
            witnessed_at=w,
            newest_at=n,
            cosigners=_cosigners(cos),
        )
        self._checkpoints[key] = cp
        return cp

    def latest(self, member_id: str) -> WitnessedCheckpoint | None:
        """The newest verified witnessed checkpoint of the member's log whose statements
        are all checked (the newest one, unless a sync checked the tree only)."""
        return self.state().latest.get(member_id)

    def _logged(self, origin: str, idx: int, problem: str | None, data: bytes | None = None) -> LoggedEntry:
        first = self._covering(origin, idx + 1)
        if first is None:
            raise StorageError(f"entry {idx} of {origin} is covered by no stored checkpoint")
        return LoggedEntry(
            member_id=self._member_of(origin),
            index=idx,
            data=self.entry(origin, idx) if data is None else data,
            problem=problem,
            first_witnessed=first,
        )

    def _logged_row(self, origin: str, member: str, row: Sequence[Any]) -> LoggedEntry:
        """A LoggedEntry from ``(idx, problem, data, size, root, note, witnessed_at,
        newest_at, cosigners)``: the entry and the first stored checkpoint covering it."""
        idx, problem, data, size = row[0], row[1], row[2], row[3]
        if size is None:
            raise StorageError(f"entry {idx} of {origin} is covered by no stored checkpoint")
        entry = object.__new__(LoggedEntry)  # the fields' types are the columns' (no checks to run)
        entry.__dict__.update(
            member_id=member,
            index=idx,
            data=bytes(data),
            problem=problem,
            first_witnessed=self._checkpoint(origin, member, row[3:]),
        )
        return entry

    def find_statement(
        self, member_id: str, statement_bytes: bytes, *, state: ReplicaState | None = None
    ) -> LoggedEntry | None:
        """The first entry of the member's log whose statement hashes like ``statement_bytes``
        (the caller compares the bytes), in the checked prefix as of ``state`` (default: now)."""
        st = self.state() if state is None else state
        origin = st.origins.get(member_id)
        if origin is None:
            return None
        try:
            cert_id = statement_fields(statement_bytes).cert_id
        except LedgerError:  # every indexed statement parsed: these bytes are in no entry
            return None
        rows = self._rows(_FIND_SQL, (cert_id, origin, statement_hash(statement_bytes), st.limits[origin]))
        return self._logged_row(origin, member_id, rows[0]) if rows else None

    def inclusion_proof(
        self, member_id: str, index: int, size: int, *, state: ReplicaState | None = None
    ) -> list[bytes]:
        """RFC 9162 inclusion proof of entry ``index`` in the tree of ``size`` entries
        (verified entries as of ``state``, default: now)."""
        st = self.state() if state is None else state
        origin = st.origins.get(member_id)
        if origin is None or not 0 <= index < size <= st.sizes[origin]:
            raise StorageError(f"the replica cannot prove entry {index} of {member_id} in size {size}")
        return merkle.prove_record(size, index, self._hashes_of(origin, merkle.stored_hash_count(size)))

    def proof_hashes(
        self, member_id: str, size: int, *, state: ReplicaState | None = None
    ) -> merkle.HashReader:
        """Reads the stored hashes of the member's tree of ``size`` verified entries (as of
        ``state``, default: now) by index, each call in one query."""
        st = self.state() if state is None else state
        origin = st.origins.get(member_id)
        if origin is None or not 0 < size <= st.sizes[origin]:
            raise StorageError(f"the replica holds no tree of {size} entries of {member_id}")
        return self._hashes_of(origin, merkle.stored_hash_count(size))

    def _hashes_of(self, origin: str, count: int) -> merkle.HashReader:
        """Reads stored hashes ``[0, count)`` of ``origin`` in one query (a few at a time: a proof)."""

        def read(indexes: Sequence[int]) -> list[bytes]:
            want = list(indexes)
            if not want:
                return []
            if not all(0 <= i < count for i in want):
                raise StorageError(f"the replica of {origin} holds no stored hash {want} for this tree")
            marks = ",".join("?" * len(want))
            found = dict(
                self._rows(
                    f"SELECT idx, hash FROM hashes WHERE origin = ? AND idx IN ({marks})",  # noqa: S608
                    (origin, *want),
                )
            )
            missing = [i for i in want if i not in found]
            if missing:
                raise StorageError(f"the replica of {origin} has no stored hash {missing[0]}")
            return [found[i] for i in want]

        return read

    def lookup(
        self, member_id: str, statement_bytes: bytes, cert_id: str, *, state: ReplicaState | None = None
    ) -> Lookup:
        """The first entry of the member's log holding ``statement_bytes`` (as
        :meth:`find_statement`, as of ``state``), its first proof siblings, and every
        status entry about ``cert_id`` (as :meth:`status_entries`), in one query.

        ``cert_id`` is the certificate id of the statement in ``statement_bytes``: the
        entry is found through it (an index of certificate ids; statement hashes are
        compared, not indexed), so with another id no entry is found."""
        st = self.state() if state is None else state
        origin = st.origins.get(member_id)
        if origin is None:
            entries = self.status_entries(cert_id)
            return Lookup(entry=None, status=entries, siblings={}, current=st is self.state())
        limit = st.limits[origin]
        rows = self._rows(_LOOKUP_SQL, (limit, origin, statement_hash(statement_bytes), cert_id))
        entry: LoggedEntry | None = None
        siblings: dict[int, bytes] = {}
        status: list[tuple[int, str, int, LoggedEntry]] = []
        current = False
        for r in rows:
            part = r[0]
            if part == 0:
                entry = self._logged_row(origin, member_id, r[3:12])
                siblings = {r[i]: bytes(r[i + 1]) for i in range(12, 22, 2) if r[i] is not None}
            elif part == 1:
                status.append((r[1], r[2], r[3], self._logged_row(r[2], self._member_of(r[2]), r[3:12])))
            else:  # read in the same statement as the rows: was the state current for them?
                current = st is self._state and self._state_key == (self._writes, r[1])
        if len(status) > 1:
            status.sort(key=lambda x: x[:3])
        found = object.__new__(Lookup)  # the fields' types are the columns' (no checks to run)
        found.__dict__.update(
            entry=entry,
            status=[x[3] for x in status],
            siblings=siblings,
            current=current,
        )
        return found

    def status_entries(self, cert_id: str) -> list[LoggedEntry]:
        """Every entry in any log about ``cert_id`` other than its issue."""
        rows = self._rows(
            _STATUS_SQL,
            (cert_id, cert_id),
        )
        return [self._logged_row(r[0], self._member_of(r[0]), r[1:]) for r in rows]

    def newest_witnessed_time(self) -> int | None:
        """The newest witness time over every log."""
        return self.state().newest_witnessed_time

    def members(self) -> list[str]:
        """Member ids of every log the replica holds."""
        return [str(r[0]) for r in self._rows("SELECT member_id FROM logs ORDER BY member_id")]
