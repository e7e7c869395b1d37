"""The department's private store: what must never reach the public log or its tiles.

One SQLite file, ``private.db`` in the node's data directory, mode 0600, WAL with
``synchronous=FULL``::

    clerks      (id, name, role, token_hash, operator, created, removed)
    records     (cert_id, idem_key, fingerprint, type, serial, version, clerk, created, credential)
                every certificate issued here; ``credential`` is the holder's credential JSON,
                claim values and salt secret included; ``fingerprint`` is the SHA-256 of the
                request made under ``idem_key`` (empty when there is no key)
    ops         (id, idem_key, fingerprint, cert_id, kind, clerk, created, result)
                status changes, kept so a retried request gets the same answer
    statements  (id, cert_id, data, key_id, signature)
                every statement signed here, committed before it is appended to the log
    trail       the operation trail (node.trail)
    meta        (key, value): ``recovered`` = the last statements.id known to be logged

A statement goes to ``statements`` (with its record or op and its trail event, in one
transaction) before the log sees it. After a crash the node appends to the log every
statement committed here but missing there, so an idempotency key always names exactly
one certificate and the trail never misses a change that reached the log.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.errors import ConflictError, FileError, StorageError
from node import trail

__all__ = [
    "FILE_NAME",
    "OpRow",
    "PrivateStore",
    "RecordRow",
    "RecordValues",
    "StatementRow",
    "StatementValues",
]

FILE_NAME = "private.db"

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY NOT NULL, value ANY NOT NULL)",
    """CREATE TABLE IF NOT EXISTS clerks (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        token_hash BLOB NOT NULL,
        operator TEXT NOT NULL UNIQUE,
        created INTEGER NOT NULL,
        removed INTEGER
    )""",
    "CREATE UNIQUE INDEX IF NOT EXISTS clerks_by_name ON clerks (name) WHERE removed IS NULL",
    """CREATE TABLE IF NOT EXISTS records (
        cert_id TEXT PRIMARY KEY NOT NULL,
        idem_key TEXT UNIQUE,
        fingerprint BLOB NOT NULL,
        type TEXT NOT NULL,
        serial INTEGER NOT NULL,
        version TEXT NOT NULL,
        clerk INTEGER NOT NULL,
        created INTEGER NOT NULL,
        credential TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS records_by_type ON records (type, serial)",
    """CREATE TABLE IF NOT EXISTS ops (
        id INTEGER PRIMARY KEY,
        idem_key TEXT UNIQUE,
        fingerprint BLOB NOT NULL,
        cert_id TEXT NOT NULL,
        kind INTEGER NOT NULL,
        clerk INTEGER NOT NULL,
        created INTEGER NOT NULL,
        result TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS statements (
        id INTEGER PRIMARY KEY,
        cert_id TEXT NOT NULL,
        data BLOB NOT NULL,
        key_id BLOB NOT NULL,
        signature BLOB NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS statements_by_cert ON statements (cert_id)",
    trail.SCHEMA,
)


@dataclass(frozen=True, kw_only=True)
class RecordRow:
    """A certificate issued here (``credential`` is its JSON, personal data included)."""

    cert_id: str
    idem_key: str | None
    fingerprint: bytes
    type: str
    serial: int
    version: str
    clerk: int
    created: int
    credential: str


@dataclass(frozen=True, kw_only=True)
class OpRow:
    """A status change made here, with the answer its request got."""

    idem_key: str | None
    fingerprint: bytes
    cert_id: str
    kind: int
    clerk: int
    created: int
    result: str


@dataclass(frozen=True, kw_only=True)
class StatementRow:
    """A signed statement, as the log will hold it."""

    cert_id: str
    data: bytes
    key_id: bytes
    signature: bytes


#: A ``records`` row in column order: cert_id, idem_key, fingerprint, type, serial, version,
#: clerk, created, credential (its JSON as text, or as UTF-8: stored as the same text,
#: without making a Python string of it to bind).
RecordValues = tuple[str, str | None, bytes, str, int, str, int, int, str | bytes]
#: A ``statements`` row in column order: cert_id, data, key_id, signature.
StatementValues = tuple[str, bytes, bytes, bytes]

_INSERT_RECORD = (
    "INSERT INTO records (cert_id, idem_key, fingerprint, type, serial, version, clerk, created, credential) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, CAST(? AS TEXT))"
)
_INSERT_STATEMENT = "INSERT INTO statements (cert_id, data, key_id, signature) VALUES (?, ?, ?, ?)"

#: Page size of a new private store. A record (its credential JSON, ~3 KB) nearly fills a
#: 4 KB page, so each insert took a page of its own and rebalanced the tree; with 16 KB
#: pages a 2,000-certificate commit costs ~30% less CPU and a 50-record one less too.
#: (An existing store keeps the page size it was made with.)
PAGE_SIZE = 16384


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute(f"PRAGMA page_size={PAGE_SIZE}")  # before WAL: it only takes on a new file
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


class PrivateStore:
    """The private database of one node. Writes are serialised by a lock; reads share one
    connection under another lock (SQLite WAL lets them run beside a write)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                mode = stat.S_IMODE(os.fstat(fd).st_mode)
                if mode & 0o077:
                    os.fchmod(fd, 0o600)
            finally:
                os.close(fd)
        except OSError as e:
            raise FileError(f"{self.path}: cannot open the private store: {e.strerror}") from None
        # SQLite gives the -wal and -shm files the database file's permissions.
        try:
            self._write = _connect(self.path)
            self._read = _connect(self.path)
            with self._transaction() as conn:
                for sql in _SCHEMA:
                    conn.execute(sql)
        except sqlite3.Error as e:
            raise StorageError(f"{self.path}: cannot open the private store: {e}") from None
        self._wlock = threading.Lock()
        self._rlock = threading.Lock()

    def close(self) -> None:
        """Close both connections."""
        self._write.close()
        self._read.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._write
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE … COMMIT), durable when the block ends."""
        with self._wlock:
            try:
                with self._transaction() as conn:
                    yield conn
            except sqlite3.IntegrityError as e:
                raise ConflictError(f"the private store refused the change: {e}") from None
            except sqlite3.Error as e:
                raise StorageError(f"{self.path}: cannot write the private store: {e}") from None

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read query."""
        with self._rlock:
            try:
                return self._read.execute(sql, args).fetchall()
            except sqlite3.Error as e:
                raise StorageError(f"{self.path}: cannot read the private store: {e}") from None

    @contextlib.contextmanager
    def reader(self) -> Iterator[sqlite3.Connection]:
        """The read connection, held for a longer read (e.g. the whole trail)."""
        with self._rlock:
            self._read.execute("BEGIN")
            try:
                yield self._read
            finally:
                self._read.execute("COMMIT")

    # ------------------------------------------------------------------ commits

    def commit(
        self,
        *,
        records: Sequence[RecordRow] = (),
        ops: Sequence[OpRow] = (),
        statements: Sequence[StatementRow] = (),
        events: Sequence[trail.TrailEvent] = (),
    ) -> None:
        """Write records, ops, statements and trail events in one durable transaction."""
        with self.write() as conn:
            self.insert(conn, records=records, ops=ops, statements=statements, events=events)

    @staticmethod
    def insert(
        conn: sqlite3.Connection,
        *,
        records: Sequence[RecordRow] = (),
        ops: Sequence[OpRow] = (),
        statements: Sequence[StatementRow] = (),
        events: Sequence[trail.TrailEvent] = (),
        record_values: Sequence[RecordValues] = (),
        statement_values: Sequence[StatementValues] = (),
    ) -> None:
        """The inserts of :meth:`commit`, inside the caller's transaction. ``record_values``
        and ``statement_values`` are more rows given as plain tuples, in column order
        (what a large batch builds instead of one object per row)."""
        if record_values:
            conn.executemany(_INSERT_RECORD, record_values)
        if records:
            conn.executemany(
                _INSERT_RECORD,
                [
                    (
                        r.cert_id,
                        r.idem_key,
                        r.fingerprint,
                        r.type,
                        r.serial,
                        r.version,
                        r.clerk,
                        r.created,
                        r.credential,
                    )
                    for r in records
                ],
            )
        if ops:
            conn.executemany(
                "INSERT INTO ops (idem_key, fingerprint, cert_id, kind, clerk, created, result) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(o.idem_key, o.fingerprint, o.cert_id, o.kind, o.clerk, o.created, o.result) for o in ops],
            )
        if statement_values:
            conn.executemany(_INSERT_STATEMENT, statement_values)
        if statements:
            conn.executemany(
                _INSERT_STATEMENT, [(s.cert_id, s.data, s.key_id, s.signature) for s in statements]
            )
        trail.append(conn, events, time_ms=int(time.time() * 1000))

    # ------------------------------------------------------------------ reads

    def record(self, cert_id: str) -> RecordRow | None:
        """The record of a certificate issued here."""
        rows = self.query(_RECORD_SQL + " WHERE cert_id = ?", (cert_id,))
        return _record(rows[0]) if rows else None

    def record_by_key(self, idem_key: str) -> RecordRow | None:
        """The record issued under an idempotency key."""
        rows = self.query(_RECORD_SQL + " WHERE idem_key = ?", (idem_key,))
        return _record(rows[0]) if rows else None

    def records_by_keys(self, keys: Sequence[str]) -> dict[str, RecordRow]:
        """Records issued under any of ``keys``, by key."""
        out: dict[str, RecordRow] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for row in self.query(_RECORD_SQL + f" WHERE idem_key IN ({marks})", chunk):
                r = _record(row)
                assert r.idem_key is not None
                out[r.idem_key] = r
        return out

    def op_by_key(self, idem_key: str) -> OpRow | None:
        """The status change made under an idempotency key."""
        rows = self.query(
            "SELECT idem_key, fingerprint, cert_id, kind, clerk, created, result FROM ops WHERE idem_key = ?",
            (idem_key,),
        )
        if not rows:
            return None
        k, fp, cid, kind, clerk, created, result = rows[0]
        return OpRow(
            idem_key=k,
            fingerprint=bytes(fp),
            cert_id=cid,
            kind=kind,
            clerk=clerk,
            created=created,
            result=result,
        )

    def max_serials(self) -> dict[str, int]:
        """The highest serial issued so far, by certificate type."""
        return {t: s for t, s in self.query("SELECT type, max(serial) FROM records GROUP BY type")}

    def list_records(self, *, type_code: str | None, after: str | None, limit: int) -> list[tuple[Any, ...]]:
        """(cert_id, type, serial, version, clerk, created) of records, in cert id order."""
        where, args = [], []
        if type_code is not None:
            where.append("type = ?")
            args.append(type_code)
        if after is not None:
            where.append("cert_id > ?")
            args.append(after)
        sql = "SELECT cert_id, type, serial, version, clerk, created FROM records"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return self.query(sql + " ORDER BY cert_id LIMIT ?", [*args, limit])

    def statements_after(self, last: int) -> list[tuple[int, StatementRow]]:
        """Statements committed here with an id above ``last``, in order."""
        rows = self.query(
            "SELECT id, cert_id, data, key_id, signature FROM statements WHERE id > ? ORDER BY id", (last,)
        )
        return [
            (i, StatementRow(cert_id=c, data=bytes(d), key_id=bytes(k), signature=bytes(s)))
            for i, c, d, k, s in rows
        ]

    def statements_for(self, cert_id: str) -> list[StatementRow]:
        """Statements signed here about ``cert_id``, in order."""
        rows = self.query(
            "SELECT cert_id, data, key_id, signature FROM statements WHERE cert_id = ? ORDER BY id",
            (cert_id,),
        )
        return [
            StatementRow(cert_id=c, data=bytes(d), key_id=bytes(k), signature=bytes(s)) for c, d, k, s in rows
        ]

    def meta(self, key: str) -> Any:
        """A meta value, or None."""
        rows = self.query("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: Any) -> None:
        """Set a meta value durably."""
        with self.write() as conn:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))


_RECORD_SQL = (
    "SELECT cert_id, idem_key, fingerprint, type, serial, version, clerk, created, credential FROM records"
)


def _record(row: tuple[Any, ...]) -> RecordRow:
    cid, key, fp, t, serial, version, clerk, created, cred = row
    return RecordRow(
        cert_id=cid,
        idem_key=key,
        fingerprint=bytes(fp),
        type=t,
        serial=serial,
        version=version,
        clerk=clerk,
        created=created,
        credential=cred,
    )
