"""The certificate index: from a certificate id to every statement about it in a log.

Finding the status of a certificate must not scan the log. Next to its entries, a log
database keeps one table (``cert_index``), written in the same transaction as the
entries it indexes::

    cert    8 bytes   first 8 bytes of SHA-256(certificate id, UTF-8)
    idx     integer   log index of the entry
    kind    integer   the statement's kind (1 issue .. 5 replace), or 6 "replaced":
                      the entry replaces this certificate by another one
    time    integer   the statement's time (Unix seconds)
    issuer  text      the statement's issuer (member id)
    PRIMARY KEY (cert, idx, kind), WITHOUT ROWID

An issue, revoke, suspend or reinstate statement gives one row, under its certificate
id; a replace statement gives two: ``replace`` under the new certificate's id and
``replaced`` under the id it replaces. A lookup is one B-tree search: microseconds at
millions of entries. The table holds no certificate id, only its truncated hash, to
stay small (a few dozen bytes per entry; see docs/log-store.md). Two ids share a key
with probability 2⁻⁶⁴ per pair; whoever acts on an event reads its entry, whose
statement names the certificate in full (:meth:`IndexedEvent.matches`).

The functions here take any :class:`sqlite3.Connection`, so a department's own log
(:class:`ledger.log.store.LogStore`) and a mirror of another member's log keep the same
index: :func:`create_table` once, :func:`insert` inside the transaction that adds the
entries, :class:`CertIndex` to read. :func:`ledger.log.audit.audit` checks that the
index holds exactly the rows the entries give.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from ledger.errors import StorageError
from ledger.log.statement import Entry, Kind, Statement

__all__ = [
    "KEY_SIZE",
    "SCHEMA",
    "TABLE",
    "CertIndex",
    "IndexKind",
    "IndexRow",
    "IndexedEvent",
    "cert_key",
    "create_table",
    "insert",
    "rows_for_entry",
    "rows_for_statement",
    "scan",
]

#: The index table's name.
TABLE = "cert_index"
#: Bytes of SHA-256(certificate id) kept as the key.
KEY_SIZE = 8
_SCAN_CHUNK = 4096

SCHEMA = f"""CREATE TABLE {TABLE} (
    cert   BLOB NOT NULL CHECK (typeof(cert) = 'blob' AND length(cert) = {KEY_SIZE}),
    idx    INTEGER NOT NULL CHECK (typeof(idx) = 'integer' AND idx >= 0),
    kind   INTEGER NOT NULL CHECK (typeof(kind) = 'integer' AND kind BETWEEN 1 AND 6),
    time   INTEGER NOT NULL CHECK (typeof(time) = 'integer'),
    issuer TEXT NOT NULL CHECK (typeof(issuer) = 'text'),
    PRIMARY KEY (cert, idx, kind)
) WITHOUT ROWID"""

#: One row: (cert key, log index, kind, time, issuer).
IndexRow = tuple[bytes, int, int, int, str]


class IndexKind(IntEnum):
    """What an indexed statement does to the certificate it is listed under."""

    ISSUE = 1
    REVOKE = 2
    SUSPEND = 3
    REINSTATE = 4
    REPLACE = 5
    #: The statement at this index replaced this certificate by another one.
    REPLACED = 6

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, kw_only=True)
class IndexedEvent:
    """One statement about a certificate: where it is in the log, what it does, when, by whom."""

    index: int
    kind: IndexKind
    time: int
    issuer: str

    def matches(self, cert_id: str, statement: Statement) -> bool:
        """True if ``statement`` (the entry at :attr:`index`) is this event of ``cert_id``."""
        if self.kind == IndexKind.REPLACED:
            return statement.kind == Kind.REPLACE and statement.replaces == cert_id
        return int(statement.kind) == int(self.kind) and statement.cert_id == cert_id


def cert_key(cert_id: str) -> bytes:
    """The index key of a certificate id."""
    return hashlib.sha256(cert_id.encode("utf-8")).digest()[:KEY_SIZE]


def rows_for_statement(index: int, statement: Statement) -> list[IndexRow]:
    """The index rows of the entry at ``index`` holding ``statement``."""
    rows: list[IndexRow] = [
        (cert_key(statement.cert_id), index, int(statement.kind), statement.time, statement.issuer)
    ]
    if statement.replaces is not None:
        rows.append(
            (cert_key(statement.replaces), index, IndexKind.REPLACED, statement.time, statement.issuer)
        )
    return rows


def rows_for_entry(index: int, data: bytes) -> list[IndexRow]:
    """The index rows of entry ``index`` from its stored bytes (parsed strictly)."""
    return rows_for_statement(index, Entry.from_bytes(data).signed.statement)


def create_table(conn: sqlite3.Connection) -> None:
    """Create the index table (inside the caller's transaction)."""
    conn.execute(SCHEMA)


def insert(conn: sqlite3.Connection, rows: Iterable[IndexRow]) -> None:
    """Add index rows (inside the transaction that adds their entries)."""
    conn.executemany(f"INSERT INTO {TABLE} (cert, idx, kind, time, issuer) VALUES (?, ?, ?, ?, ?)", rows)  # noqa: S608


def scan(conn: sqlite3.Connection) -> Iterator[tuple[Any, ...]]:
    """Every stored row as stored (unchecked), in key order, a chunk at a time."""
    last: tuple[Any, ...] | None = None
    while True:
        if last is None:
            rows = conn.execute(
                f"SELECT cert, idx, kind, time, issuer FROM {TABLE} ORDER BY cert, idx, kind LIMIT ?",  # noqa: S608
                (_SCAN_CHUNK,),
            ).fetchall()
        else:
            rows = conn.execute(
                f"SELECT cert, idx, kind, time, issuer FROM {TABLE} "  # noqa: S608
                "WHERE (cert, idx, kind) > (?, ?, ?) ORDER BY cert, idx, kind LIMIT ?",
                (*last[:3], _SCAN_CHUNK),
            ).fetchall()
        if not rows:
            return
        yield from rows
        last = rows[-1]


class CertIndex:
    """Reads the certificate index of a log database through ``conn``.

    Any connection to a database that has the table will do: a log store's, or a
    mirror's. Calls are not serialised here; share a connection between threads only
    under the owner's lock (:meth:`ledger.log.store.LogStore.cert_history` does).
    """

    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def history(self, cert_id: str) -> list[IndexedEvent]:
        """Every statement about ``cert_id``, in log order (empty if the log has none)."""
        if not isinstance(cert_id, str):
            raise StorageError(f"a certificate id is a string, not {type(cert_id).__name__}")
        try:
            rows = self._conn.execute(
                f"SELECT idx, kind, time, issuer FROM {TABLE} WHERE cert = ? ORDER BY idx, kind",  # noqa: S608
                (cert_key(cert_id),),
            ).fetchall()
        except sqlite3.Error as e:
            raise StorageError(f"cannot read the certificate index: {e}") from None
        return _events(rows)

    def latest(self, cert_id: str) -> IndexedEvent | None:
        """The last statement about ``cert_id``, or None."""
        events = self.history(cert_id)
        return events[-1] if events else None


def _events(rows: Sequence[tuple[Any, ...]]) -> list[IndexedEvent]:
    out = []
    for idx, kind, t, issuer in rows:
        if type(idx) is not int or type(t) is not int or type(issuer) is not str or type(kind) is not int:
            raise StorageError(
                f"the certificate index is damaged at entry {idx!r}; run 'certledger log audit'"
            )
        kind_ = _KINDS.get(kind)
        if kind_ is None:
            raise StorageError(f"the certificate index is damaged at entry {idx}; run 'certledger log audit'")
        out.append(IndexedEvent(index=idx, kind=kind_, time=t, issuer=issuer))
    return out


_KINDS = {int(k): k for k in IndexKind}
