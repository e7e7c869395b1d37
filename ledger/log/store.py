"""The durable log store: one department's log in one SQLite database.

Schema (version 1; ``PRAGMA application_id`` marks the file as a certledger log)::

    meta        (key TEXT PRIMARY KEY, value)           schema_version, origin, created
    entries     (idx INTEGER PRIMARY KEY, data BLOB)     entry i: its exact canonical bytes
    hashes      (idx INTEGER PRIMARY KEY, hash BLOB)     stored Merkle hash i (32 bytes),
                                                         in ledger.log.merkle.stored_hash_index order
    checkpoints (id INTEGER PRIMARY KEY, size, root, note, signed_at)
                                                         every checkpoint this log signed
    cert_index  (cert, idx, kind, time, issuer)         certificate id → its statements
                                                         (see ledger.log.index)

The database runs in WAL mode with ``synchronous=FULL``. :meth:`LogStore.append` writes
a batch of entries, their stored hashes and their certificate-index rows in one
transaction and returns only after the commit, i.e. after the write-ahead log has been
fsync'ed: an acknowledged entry is durable, and a crash at any instant leaves either the
whole batch or none of it. The in-memory state (size, last leaf hash, the right edge of
the tree) is updated only after a commit and reloaded from the database after any
failure, so the database is the only truth.

An append hashes ``O(log n)``: each record stores its leaf hash and the hashes of the
subtrees it completes (:func:`ledger.log.merkle.stored_hashes`), whose siblings are the
tree's right edge, kept in memory. A proof or root reads ``O(log n)`` stored hashes.

One process writes: the writer holds an exclusive ``flock`` on ``<database>-lock`` for
as long as the store is open, and a second writer is refused. Readers
(``LogStore.open(path, readonly=True)``) take no lock and may run alongside the writer.

Checkpoints are C2SP tlog-checkpoints signed by the log key (see
:mod:`ledger.log.checkpoint`). The store never signs two inconsistent checkpoints: before
signing it checks the new root against every stored checkpoint of the same size and
proves consistency with the latest stored checkpoint, recomputing that checkpoint's
root from the stored hashes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import secrets
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from ledger.errors import (
    ConflictError,
    MalformedError,
    ProofError,
    SignatureError,
    StorageError,
    TooLargeError,
)
from ledger.files import fsync_path
from ledger.keys import SIG_TYPE_ED25519, SigningKey, check_key_name, key_id
from ledger.log import index as cert_index
from ledger.log import merkle
from ledger.log.checkpoint import Checkpoint, sign_checkpoint
from ledger.log.statement import (
    GENESIS_PREV,
    MAX_ENTRY_SIZE,
    STATEMENT_CONTEXT,
    SignedStatement,
    Statement,
    encode_entry,
    statement_message,
)
from ledger.log.tlogproof import TlogProof, make_proof

__all__ = [
    "APPLICATION_ID",
    "SCHEMA_VERSION",
    "LogStore",
    "StoredCheckpoint",
]

#: ``PRAGMA application_id`` of a certledger log database ("CLG1").
APPLICATION_ID = 0x434C4731
#: The schema version this code reads and writes.
SCHEMA_VERSION = 1
#: Rows fetched per query when streaming entries or hashes.
_CHUNK = 2048
#: SQLite's own limit on bound parameters is far higher; proofs need at most ~130.
_MAX_READ = 512

_SCHEMA = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value ANY NOT NULL
);
CREATE TABLE entries (
    idx  INTEGER PRIMARY KEY CHECK (idx >= 0),
    data BLOB NOT NULL CHECK (typeof(data) = 'blob')
);
CREATE TABLE hashes (
    idx  INTEGER PRIMARY KEY CHECK (idx >= 0),
    hash BLOB NOT NULL CHECK (typeof(hash) = 'blob' AND length(hash) = 32)
);
CREATE TABLE checkpoints (
    id        INTEGER PRIMARY KEY,
    size      INTEGER NOT NULL CHECK (size >= 0),
    root      BLOB NOT NULL CHECK (typeof(root) = 'blob' AND length(root) = 32),
    note      BLOB NOT NULL CHECK (typeof(note) = 'blob'),
    signed_at INTEGER NOT NULL
);
CREATE INDEX checkpoints_by_size ON checkpoints (size, id);
"""
_TABLES = frozenset({"meta", "entries", "hashes", "checkpoints", cert_index.TABLE})
_VALUE_COLUMN = {"entries": "data", "hashes": "hash"}


@dataclass(frozen=True, kw_only=True)
class StoredCheckpoint:
    """A checkpoint as stored: its tree size, root hash and exact signed-note bytes."""

    size: int
    root_hash: bytes
    note: bytes
    signed_at: int


def _uri(path: Path, mode: str) -> str:
    return f"file:{urllib.parse.quote(str(path.absolute()))}?mode={mode}"


class LogStore:
    """One department's append-only log in a SQLite database.

    Use :meth:`create` or :meth:`open`; close with :meth:`close` or a ``with`` block.
    A store opened for writing holds the single-writer lock until it is closed.
    All methods may be called from several threads (one connection, serialised).
    """

    def __init__(self, *, _conn: sqlite3.Connection, _path: Path, _readonly: bool) -> None:
        self._conn = _conn
        self._path = _path
        self._readonly = _readonly
        self._mutex = threading.RLock()
        self._lock_fd: int | None = None
        self._closed = False
        self._key_ids: dict[bytes, bytes] = {}
        self.origin = ""
        # Writer state, valid after _load_state(): the size, the last leaf hash (next
        # entry's prev) and the stored hashes of the tree's right edge.
        self._size = 0
        self._last_leaf = GENESIS_PREV
        self._edge: dict[int, bytes] = {}

    # ----------------------------------------------------------------- opening

    @classmethod
    def create(cls, path: str | os.PathLike[str], *, origin: str) -> LogStore:
        """Create a new, empty log for ``origin`` at ``path`` and open it for writing.

        Refuses to overwrite an existing file. ``origin`` is the log's C2SP origin
        line (also the name of its signing key), e.g. ``ledger.example.gov.cn/amr``.
        The database is built under a temporary name and linked into place only when
        complete, so a crash while creating leaves either no log or an empty one.
        """
        check_key_name(origin)
        p = Path(path)
        if p.exists():
            raise StorageError(f"{p}: file exists; refusing to overwrite it with a new log")
        if not p.parent.is_dir():
            raise StorageError(f"{p}: directory {p.parent} does not exist")
        for suffix in ("-wal", "-shm", "-journal"):
            if Path(f"{p}{suffix}").exists():
                raise StorageError(
                    f"{p}{suffix} exists without its database; move it away before creating a new log"
                )
        tmp = p.with_name(f".{p.name}.creating-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            conn = sqlite3.connect(_uri(tmp, "rwc"), uri=True, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute("BEGIN IMMEDIATE")
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        conn.execute(stmt)
                cert_index.create_table(conn)
                conn.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [("schema_version", SCHEMA_VERSION), ("origin", origin), ("created", int(time.time()))],
                )
                conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                conn.execute("COMMIT")
            finally:
                conn.close()  # the last connection checkpoints the WAL into the file
            fsync_path(tmp)
            os.link(tmp, p)  # atomic, and never replaces an existing file
            fsync_path(p.absolute().parent)
        except FileExistsError:
            raise StorageError(f"{p}: file exists; refusing to overwrite it with a new log") from None
        except sqlite3.Error as e:
            raise StorageError(f"{p}: cannot create the log database: {e}") from None
        except OSError as e:
            raise StorageError(f"{p}: cannot create the log database: {e.strerror}") from None
        finally:
            for suffix in ("", "-wal", "-shm", "-journal"):
                with contextlib.suppress(OSError):
                    os.unlink(f"{tmp}{suffix}")
        return cls.open(p)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, readonly: bool = False) -> LogStore:
        """Open an existing log: for writing (taking the single-writer lock) or read-only.

        Raises :class:`~ledger.errors.StorageError` for a missing, foreign, corrupt or
        newer-schema file, and when another process already writes to the log.
        """
        p = Path(path)
        if not p.exists():
            raise StorageError(f"{p}: no such log database")
        if not p.is_file():
            raise StorageError(f"{p}: not a file")
        try:
            conn = sqlite3.connect(
                _uri(p, "ro" if readonly else "rw"),
                uri=True,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as e:
            raise StorageError(f"{p}: cannot open the log database: {e}") from None
        store = cls(_conn=conn, _path=p, _readonly=readonly)
        try:
            if not readonly:
                store._lock()
            store._configure()
            if not readonly:  # a reader reads the size live and checks nothing: audit does
                store._load_state()
        except BaseException:
            store.close()
            raise
        return store

    def _lock(self) -> None:
        lock_path = Path(f"{self._path}-lock")
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise StorageError(f"{lock_path}: cannot create the writer lock file: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            who = f" by process {holder}" if holder.isdigit() else ""
            raise StorageError(
                f"{self._path}: the log is already open for writing{who}; a log has a single "
                "writer (readers can open it read-only)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def _configure(self) -> None:
        c = self._conn
        try:
            c.execute("PRAGMA busy_timeout=10000")
            app_id = c.execute("PRAGMA application_id").fetchone()[0]
            if app_id != APPLICATION_ID:
                raise StorageError(
                    f"{self._path}: not a certledger log database (SQLite application id {app_id:#x})"
                )
            tables = {r[0] for r in c.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
            if not tables >= _TABLES:
                missing = ", ".join(sorted(_TABLES - tables))
                raise StorageError(f"{self._path}: log database is damaged: table(s) {missing} missing")
            meta = dict(c.execute("SELECT key, value FROM meta").fetchall())
            version = meta.get("schema_version")
            if type(version) is not int:
                raise StorageError(f"{self._path}: log database is damaged: no schema version")
            if version > SCHEMA_VERSION:
                raise StorageError(
                    f"{self._path}: log schema version {version} is newer than this software "
                    f"supports ({SCHEMA_VERSION}); upgrade certledger"
                )
            if version != SCHEMA_VERSION:
                raise StorageError(f"{self._path}: unsupported log schema version {version}")
            origin = meta.get("origin")
            if not isinstance(origin, str):
                raise StorageError(f"{self._path}: log database is damaged: no origin")
            try:
                check_key_name(origin)
            except MalformedError as e:
                raise StorageError(f"{self._path}: log database is damaged: bad origin: {e}") from None
            self.origin = origin
            if not self._readonly:
                mode = c.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if mode != "wal":
                    raise StorageError(f"{self._path}: cannot switch the database to WAL mode ({mode})")
                c.execute("PRAGMA synchronous=FULL")
                c.execute("PRAGMA cache_size=-16384")  # 16 MiB
        except (sqlite3.Error, UnicodeDecodeError) as e:  # a damaged file can hold invalid text
            raise StorageError(f"{self._path}: not a usable log database: {e}") from None

    def _load_state(self) -> None:
        """(Re)load size, last leaf hash and the right edge of the tree from the database."""
        try:
            row = self._conn.execute("SELECT max(idx) FROM entries").fetchone()
            size = 0 if row[0] is None else int(row[0]) + 1
            row = self._conn.execute("SELECT max(idx) FROM hashes").fetchone()
            nhashes = 0 if row[0] is None else int(row[0]) + 1
        except (sqlite3.Error, UnicodeDecodeError) as e:
            raise StorageError(f"{self._path}: cannot read the log database: {e}") from None
        if nhashes != merkle.stored_hash_count(size):
            raise StorageError(
                f"{self._path}: log database is inconsistent: {size} entries but {nhashes} stored "
                f"hashes (expected {merkle.stored_hash_count(size)}); run 'certledger log audit'"
            )
        edge = _edge_indexes(size)
        hashes = self._read(list(edge)) if edge else []
        self._edge = dict(zip(edge, hashes, strict=True))
        self._last_leaf = self._read([merkle.stored_hash_index(0, size - 1)])[0] if size else GENESIS_PREV
        self._size = size

    # ----------------------------------------------------------------- basics

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    @property
    def readonly(self) -> bool:
        """True if this store was opened read-only."""
        return self._readonly

    @property
    def size(self) -> int:
        """The number of entries (a read-only store sees entries committed since it opened)."""
        if not self._readonly:
            return self._size
        with self._mutex:
            self._check_open()
            row = self._query_one("SELECT max(idx) FROM entries")
            return 0 if row[0] is None else int(row[0]) + 1

    def close(self) -> None:
        """Close the database and release the writer lock. Idempotent."""
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = None

    def __enter__(self) -> LogStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "read-only" if self._readonly else "writer"
        return f"LogStore({str(self._path)!r}, origin={self.origin!r}, {mode})"

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError(f"{self._path}: the log store is closed")

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """All rows of a query; any SQLite error (a damaged file too) is a StorageError."""
        try:
            return self._conn.execute(sql, params).fetchall()
        except (sqlite3.Error, UnicodeDecodeError) as e:
            raise StorageError(f"{self._path}: database error: {e}") from None

    def _query_one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = self._query(sql, params)
        return rows[0] if rows else None

    def key_id(self, key: SigningKey) -> bytes:
        """The 4-byte C2SP key ID of ``key`` as this log's key (name = origin, type 0x01)."""
        raw = key.public_key.raw
        kid = self._key_ids.get(raw)
        if kid is None:
            kid = self._key_ids[raw] = key_id(self.origin, SIG_TYPE_ED25519, raw)
        return kid

    # ----------------------------------------------------------------- appending

    def append(
        self,
        statements: Statement | SignedStatement | Iterable[Statement | SignedStatement],
        *,
        key: SigningKey,
    ) -> list[int]:
        """Sign, chain and durably append one statement or a batch; return their indexes.

        Each :class:`Statement` is signed with ``key`` (key ID
        ``key_id(origin, 0x01, public key)``). A pre-signed :class:`SignedStatement` is
        accepted if it carries that key ID and its signature verifies (not checked
        again when :meth:`SignedStatement.sign` made it in this process with ``key``). The batch is
        written in one transaction: either every entry is appended or none is. The
        call returns only once the batch is durable.
        """
        with self._mutex:
            self._check_open()
            if self._readonly:
                raise StorageError(f"{self._path}: the log is open read-only")
            if isinstance(statements, Statement | SignedStatement):
                statements = (statements,)
            kid = self.key_id(key)
            public = key.public_key
            sign = key.sign
            sha256 = hashlib.sha256
            stored_hashes = merkle.stored_hashes
            context = STATEMENT_CONTEXT
            max_entry = MAX_ENTRY_SIZE
            start = n = self._size
            prev = self._last_leaf
            known = dict(self._edge)
            read = _dict_reader(known)
            hash_index = merkle.stored_hash_count(n)
            entry_rows: list[tuple[int, bytes]] = []
            hash_rows: list[tuple[int, bytes]] = []
            index_rows: list[cert_index.IndexRow] = []
            index_rows_for = cert_index.rows_for_statement
            for item in statements:
                if isinstance(item, Statement):
                    data = item.to_bytes()
                    sig = sign(context + data)
                    index_rows += index_rows_for(n, item)
                elif isinstance(item, SignedStatement):
                    data, sig = item.statement_bytes, item.signature
                    index_rows += index_rows_for(n, item.statement)
                    if item.key_id != kid:
                        raise SignatureError(
                            f"statement {n - start} of the batch is signed by key ID "
                            f"{item.key_id.hex()}, not by this log's key {kid.hex()}"
                        )
                    if not item.signed_here_by(public) and not public.is_valid(sig, statement_message(data)):
                        raise SignatureError(f"statement {n - start} of the batch: signature does not verify")
                else:
                    raise MalformedError(
                        f"item {n - start} of the batch is a {type(item).__name__}, "
                        "not a Statement or SignedStatement"
                    )
                entry = encode_entry(statement_bytes=data, key_id=kid, signature=sig, prev=prev)
                if len(entry) > max_entry:
                    raise TooLargeError(f"entry {n} would be {len(entry)} bytes, over {max_entry}")
                prev = sha256(b"\x00" + entry).digest()
                entry_rows.append((n, entry))
                for h in stored_hashes(n, prev, read):
                    known[hash_index] = h
                    hash_rows.append((hash_index, h))
                    hash_index += 1
                n += 1
            if n == start:
                return []
            self._commit(entry_rows, hash_rows, index_rows)
            self._size = n
            self._last_leaf = prev
            self._edge = {i: known[i] for i in _edge_indexes(n)}
            return list(range(start, n))

    def _commit(
        self,
        entry_rows: list[tuple[int, bytes]],
        hash_rows: list[tuple[int, bytes]],
        index_rows: Sequence[cert_index.IndexRow] = (),
    ) -> None:
        c = self._conn
        try:
            c.execute("BEGIN IMMEDIATE")
            try:
                c.executemany("INSERT INTO entries (idx, data) VALUES (?, ?)", entry_rows)
                c.executemany("INSERT INTO hashes (idx, hash) VALUES (?, ?)", hash_rows)
                cert_index.insert(c, index_rows)
                c.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    c.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            # The database is the truth: whatever happened, start again from what it holds.
            with contextlib.suppress(StorageError):
                self._load_state()
            raise StorageError(f"{self._path}: append failed, nothing was acknowledged: {e}") from None
        except BaseException:
            with contextlib.suppress(StorageError):
                self._load_state()
            raise

    # ----------------------------------------------------------------- reading

    def _read(self, indexes: Sequence[int]) -> list[bytes]:
        """Stored hashes by index, in the order asked (a :data:`ledger.log.merkle.HashReader`)."""
        out: dict[int, bytes] = {}
        wanted = sorted(set(indexes))
        for lo in range(0, len(wanted), _MAX_READ):
            part = wanted[lo : lo + _MAX_READ]
            marks = ",".join("?" * len(part))
            for idx, h in self._query(f"SELECT idx, hash FROM hashes WHERE idx IN ({marks})", part):  # noqa: S608
                out[idx] = h
        try:
            return [out[i] for i in indexes]
        except KeyError as e:
            raise StorageError(f"{self._path}: stored hash {e.args[0]} is missing") from None

    def read_hashes(self, indexes: Sequence[int]) -> list[bytes]:
        """Stored Merkle hashes by stored-hash index (see :mod:`ledger.log.merkle`)."""
        with self._mutex:
            self._check_open()
            return self._read(indexes)

    def _check_size(self, size: int | None) -> int:
        current = self.size
        if size is None:
            return current
        if type(size) is not int or size < 0:
            raise StorageError(f"tree size must be a non-negative integer, not {size!r}")
        if size > current:
            raise StorageError(f"tree size {size} is beyond the log's size {current}")
        return size

    def _check_index(self, index: int, size: int) -> None:
        if type(index) is not int or index < 0:
            raise StorageError(f"entry index must be a non-negative integer, not {index!r}")
        if index >= size:
            raise StorageError(f"entry {index} is beyond the tree size {size}")

    def entry(self, index: int) -> bytes:
        """The exact bytes of entry ``index``."""
        with self._mutex:
            self._check_open()
            self._check_index(index, self.size)
            row = self._query_one("SELECT data FROM entries WHERE idx = ?", (index,))
        if row is None:
            raise StorageError(f"{self._path}: entry {index} is missing from the database")
        data: bytes = row[0]
        return data

    def _scan(self, table: str, start: int, stop: int) -> Iterator[tuple[int, Any]]:
        i = start
        while i < stop:
            with self._mutex:
                self._check_open()
                rows = self._query(
                    f"SELECT idx, {_VALUE_COLUMN[table]} FROM {table} "  # noqa: S608
                    "WHERE idx >= ? AND idx < ? ORDER BY idx",
                    (i, min(stop, i + _CHUNK)),
                )
            yield from rows
            i += _CHUNK

    def scan_entries(self, start: int, stop: int) -> Iterator[tuple[int, Any]]:
        """Raw ``(index, data)`` rows of entries in ``[start, stop)``, as stored, in order.

        Missing rows are simply absent and values are not checked: this is what
        :func:`ledger.log.audit.audit` reads.
        """
        return self._scan("entries", start, stop)

    def scan_hashes(self, start: int, stop: int) -> Iterator[tuple[int, Any]]:
        """Raw ``(stored-hash index, hash)`` rows in ``[start, stop)``, as stored, in order."""
        return self._scan("hashes", start, stop)

    def cert_history(self, cert_id: str) -> list[cert_index.IndexedEvent]:
        """Every statement about ``cert_id`` in this log, in log order, from the
        certificate index (see :mod:`ledger.log.index`)."""
        with self._mutex:
            self._check_open()
            return cert_index.CertIndex(self._conn).history(cert_id)

    def scan_cert_index(self) -> Iterator[tuple[Any, ...]]:
        """Raw rows of the certificate index, as stored, in key order (what audit reads)."""
        rows = cert_index.scan(self._conn)
        while True:
            with self._mutex:
                self._check_open()
                try:
                    row = next(rows, None)
                except (sqlite3.Error, UnicodeDecodeError) as e:
                    raise StorageError(f"{self._path}: database error: {e}") from None
            if row is None:
                return
            yield row

    def last_hash_index(self) -> int | None:
        """The largest stored-hash index present, or None if there are none."""
        with self._mutex:
            self._check_open()
            row = self._query_one("SELECT max(idx) FROM hashes")
        return None if row[0] is None else int(row[0])

    def entries(self, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
        """The exact bytes of entries ``start`` to ``stop - 1``, streamed in chunks."""
        stop = self._check_size(stop)
        if type(start) is not int or not 0 <= start <= stop:
            raise StorageError(f"entry range start {start!r} is not within [0, {stop}]")
        return self._entries(start, stop)

    def _entries(self, start: int, stop: int) -> Iterator[bytes]:
        i = start
        for idx, data in self._scan("entries", start, stop):
            if idx != i:
                raise StorageError(f"{self._path}: entry {i} is missing from the database")
            yield data
            i += 1
        if i != stop:
            raise StorageError(f"{self._path}: entry {i} is missing from the database")

    def leaf_hash(self, index: int) -> bytes:
        """The stored RFC 9162 leaf hash of entry ``index``."""
        with self._mutex:
            self._check_open()
            self._check_index(index, self.size)
            return self._read([merkle.stored_hash_index(0, index)])[0]

    def root(self, size: int | None = None) -> bytes:
        """The root hash of the tree of the first ``size`` entries (default: all)."""
        with self._mutex:
            self._check_open()
            n = self._check_size(size)
            return merkle.tree_hash(n, self._read)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 9162 inclusion proof of entry ``index`` in the tree of ``size`` entries."""
        with self._mutex:
            self._check_open()
            n = self._check_size(size)
            self._check_index(index, n)
            return merkle.prove_record(n, index, self._read)

    def entry_proof(self, index: int, size: int | None = None) -> tuple[bytes, list[bytes]]:
        """``(prev, proof)`` for entry ``index``, read in one query.

        ``prev`` is the leaf hash of entry ``index - 1`` (zeros for entry 0) and ``proof``
        the RFC 9162 inclusion proof of entry ``index`` in the tree of ``size`` entries.
        With them a verifier that holds a signed statement rebuilds the entry's exact
        bytes (:func:`ledger.log.statement.encode_entry`) and checks that it is in the log
        without reading the entry.
        """
        with self._mutex:
            self._check_open()
            n = self._check_size(size)
            self._check_index(index, n)
            prev_at = [merkle.stored_hash_index(0, index - 1)] if index else []
            prev: list[bytes] = []

            def read(indexes: Sequence[int]) -> list[bytes]:
                hashes = self._read([*prev_at, *indexes])
                prev.extend(hashes[: len(prev_at)])
                return hashes[len(prev_at) :]

            proof = merkle.prove_record(n, index, read)
            if prev_at and not prev:  # pragma: no cover - entry index > 0 always needs proof hashes
                prev = self._read(prev_at)
        return (prev[0] if prev else GENESIS_PREV), proof

    def consistency_proof(self, old: int, new: int | None = None) -> list[bytes]:
        """RFC 9162 consistency proof from the tree of ``old`` entries to that of ``new``."""
        with self._mutex:
            self._check_open()
            n = self._check_size(new)
            if type(old) is not int or not 1 <= old <= n:
                raise StorageError(
                    f"no consistency proof from size {old!r} to size {n}: need 1 <= old <= new"
                )
            return merkle.prove_tree(n, old, self._read)

    # ----------------------------------------------------------------- checkpoints

    def checkpoints(self) -> Iterator[StoredCheckpoint]:
        """Every stored checkpoint, by size then signing order, streamed."""
        last = (-1, -1)
        while True:
            with self._mutex:
                self._check_open()
                rows = self._query(
                    "SELECT size, id, root, note, signed_at FROM checkpoints "
                    "WHERE (size, id) > (?, ?) ORDER BY size, id LIMIT ?",
                    (*last, _CHUNK),
                )
            if not rows:
                return
            for size, id_, root, note, signed_at in rows:
                yield StoredCheckpoint(size=size, root_hash=root, note=note, signed_at=signed_at)
                last = (size, id_)

    def checkpoint(self, key: SigningKey) -> bytes:
        """Sign, store and return a C2SP checkpoint of the log's current size.

        The note is signed with ``key`` under the origin as key name. Refuses with
        :class:`~ledger.errors.ConflictError` to sign a root that contradicts a stored
        checkpoint: one of the same size with another root, a stored checkpoint larger
        than the log, or a latest checkpoint that the current tree does not extend
        (checked by recomputing its root from the stored hashes and a consistency proof).
        Signing the same checkpoint again with the same key returns the stored note.
        """
        with self._mutex:
            self._check_open()
            if self._readonly:
                raise StorageError(f"{self._path}: the log is open read-only")
            size = self._size
            root = merkle.tree_hash(size, self._read)
            self._check_consistent(size, root)
            note = sign_checkpoint(Checkpoint(origin=self.origin, size=size, root_hash=root), key=key)
            same = self._query_one(
                "SELECT 1 FROM checkpoints WHERE size = ? AND note = ? LIMIT 1", (size, note)
            )
            if same is None:
                try:
                    self._conn.execute("BEGIN IMMEDIATE")
                    try:
                        self._conn.execute(
                            "INSERT INTO checkpoints (size, root, note, signed_at) VALUES (?, ?, ?, ?)",
                            (size, root, note, int(time.time())),
                        )
                        self._conn.execute("COMMIT")
                    except BaseException:
                        with contextlib.suppress(sqlite3.Error):
                            self._conn.execute("ROLLBACK")
                        raise
                except sqlite3.Error as e:
                    raise StorageError(f"{self._path}: cannot store the checkpoint: {e}") from None
            return note

    def _check_consistent(self, size: int, root: bytes) -> None:
        """Raise ConflictError unless a checkpoint (size, root) agrees with every stored one."""
        for (other,) in self._query("SELECT root FROM checkpoints WHERE size = ?", (size,)):
            if other != root:
                raise ConflictError(
                    f"a checkpoint for size {size} was already signed with root {other.hex()}, but "
                    f"the log's root at that size is now {root.hex()}: refusing to sign a "
                    "contradicting checkpoint (the log was rewritten; run 'certledger log audit')"
                )
        latest = self.latest_checkpoint()
        if latest is None or latest.size == size:
            return
        if latest.size > size:
            raise ConflictError(
                f"a checkpoint for size {latest.size} was already signed, but the log has only {size} "
                "entries: entries were lost; refusing to sign a smaller tree"
            )
        if latest.size == 0:
            return
        old_root = merkle.tree_hash(latest.size, self._read)
        if old_root != latest.root_hash:
            raise ConflictError(
                f"the latest signed checkpoint (size {latest.size}) has root {latest.root_hash.hex()}, "
                f"but the stored hashes give {old_root.hex()}: the log was rewritten; refusing to sign"
            )
        proof = merkle.prove_tree(size, latest.size, self._read)
        try:
            merkle.check_tree(proof, size, root, latest.size, latest.root_hash)
        except ProofError as e:
            raise ConflictError(
                f"the tree of size {size} is not consistent with the latest signed checkpoint "
                f"(size {latest.size}): {e}; refusing to sign"
            ) from None

    def checkpoint_at(self, size: int) -> StoredCheckpoint | None:
        """The last checkpoint signed for exactly ``size`` entries, or None."""
        with self._mutex:
            self._check_open()
            row = self._query_one(
                "SELECT size, root, note, signed_at FROM checkpoints WHERE size = ? ORDER BY id DESC LIMIT 1",
                (size,),
            )
        if row is None:
            return None
        return StoredCheckpoint(size=row[0], root_hash=row[1], note=row[2], signed_at=row[3])

    def tlog_proof(self, index: int, *, size: int | None = None) -> TlogProof:
        """A C2SP tlog-proof of entry ``index`` against the stored checkpoint of ``size``
        entries (default: the latest checkpoint)."""
        cp = self.latest_checkpoint() if size is None else self.checkpoint_at(size)
        if cp is None:
            where = "yet" if size is None else f"for size {size}"
            raise StorageError(f"no checkpoint has been signed {where}: sign one first ('log checkpoint')")
        with self._mutex:
            self._check_open()
            self._check_index(index, cp.size)
            proof = make_proof(index=index, signed_checkpoint=cp.note, read=self._read)
            leaf = self._read([merkle.stored_hash_index(0, index)])[0]
        try:  # never hand out a proof that does not check: the stored hashes may be damaged
            merkle.check_record(proof.proof, cp.size, cp.root_hash, index, leaf)
        except ProofError as e:
            raise StorageError(
                f"{self._path}: the stored hashes do not match the checkpoint for size {cp.size} ({e}); "
                "run 'certledger log audit'"
            ) from None
        return proof

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        """The stored checkpoint of the largest size (the last signed among equals), or None."""
        with self._mutex:
            self._check_open()
            row = self._query_one(
                "SELECT size, root, note, signed_at FROM checkpoints ORDER BY size DESC, id DESC LIMIT 1"
            )
        if row is None:
            return None
        return StoredCheckpoint(size=row[0], root_hash=row[1], note=row[2], signed_at=row[3])


def _edge_indexes(size: int) -> list[int]:
    """Stored-hash indexes of the complete subtrees that make up a tree of ``size`` records."""
    out = []
    level = 0
    m = size
    while m:
        if m & 1:
            out.append(merkle.stored_hash_index(level, m - 1))
        m >>= 1
        level += 1
    return out


def _dict_reader(known: dict[int, bytes]) -> merkle.HashReader:
    def read(indexes: Sequence[int]) -> list[bytes]:
        try:
            return [known[i] for i in indexes]
        except KeyError as e:  # pragma: no cover - the right edge holds every sibling needed
            raise StorageError(f"stored hash {e.args[0]} is not on the tree's right edge") from None

    return read
