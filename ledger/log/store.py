"""The durable log store: one department's log in one SQLite database.

Schema (version 2; ``PRAGMA application_id`` marks the file as a certledger log; the
exact SQL is :data:`_SCHEMA`)::

    meta        (key TEXT PRIMARY KEY, value)           schema_version, origin, created
    entries     (idx INTEGER PRIMARY KEY, data BLOB)     entry i: its exact canonical bytes
    hashes      (idx INTEGER PRIMARY KEY, hash BLOB)     stored Merkle hash i (32 bytes),
                                                         in ledger.log.merkle.stored_hash_index order
    checkpoints (id INTEGER PRIMARY KEY, size, root, note, signed_at)
                                                         every checkpoint this log signed
    cosigned    (size INTEGER PRIMARY KEY, note, updated_at)
                                                         the checkpoint of that size with the
                                                         witness cosignatures kept for it (v2)
    cert_index  (cert, idx, kind, time, issuer)         certificate id → its statements
                                                         (see ledger.log.index) (v3)

Opening checks the file holds exactly its version's objects and nothing else (no
trigger, view, extra column or index), caps every value SQLite returns at 1 MiB, and
a writer upgrades an older file by creating the tables added since (and filling the
certificate index from the entries).

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

One process writes: the writer holds an exclusive ``flock`` on the database file
itself for as long as the store is open, so a second writer is refused through any
name of the file (symlink, hard link, bind mount); a writer also refuses a file with
more than one hard link, and records its process id in ``<database>-lock`` (never
following a symlink there). Readers (``LogStore.open(path, readonly=True)``) take no
lock and may run alongside the writer; :meth:`LogStore.snapshot` gives them one
consistent view.

Checkpoints are C2SP tlog-checkpoints signed by the log key (see
:mod:`ledger.log.checkpoint`). The store never signs two inconsistent checkpoints: before
signing it checks the new root against every stored checkpoint of the same size and
proves consistency with the latest stored checkpoint, recomputing that checkpoint's
root from the stored hashes; signing with a :class:`~ledger.log.signer.LogSigner` also
checks the checkpoint the key last signed, remembered outside the database.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import secrets
import sqlite3
import stat
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
    LedgerError,
    MalformedError,
    ProofError,
    SignatureError,
    StorageError,
    TooLargeError,
)
from ledger.files import fsync_path
from ledger.keys import SIG_TYPE_ED25519, SigningKey, VerifierKey, check_key_name, key_id
from ledger.log import index as cert_index
from ledger.log import merkle, note
from ledger.log.checkpoint import DEFAULT_MAX_SIZE as CHECKPOINT_MAX_SIZE
from ledger.log.checkpoint import Checkpoint, CosignatureVerifier, cosignature_timestamp, sign_checkpoint
from ledger.log.signer import LogSigner
from ledger.log.statement import (
    GENESIS_PREV,
    MAX_ENTRY_SIZE,
    STATEMENT_CONTEXT,
    Entry,
    Kind,
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
SCHEMA_VERSION = 3
#: Rows fetched per query when streaming entries or hashes.
_CHUNK = 2048
#: SQLite's own limit on bound parameters is far higher; proofs need at most ~130.
_MAX_READ = 512
#: Statement kinds that bring a certificate id into being (a replace: its new id).
_ISSUING = frozenset({Kind.ISSUE, Kind.REPLACE})

#: Every object of a log database: (type, name, SQL, schema version that added it).
#: Opening a log checks that the file holds exactly the objects of its schema version,
#: with exactly this SQL (whitespace aside), plus SQLite's automatic index on
#: ``meta.key``, and nothing else: no other table, column, index, view or trigger.
#: Adding a table is one line here, with :data:`SCHEMA_VERSION` raised to the line's
#: version; a writer opening an older file creates the missing objects (see
#: :meth:`LogStore._upgrade`).
_SCHEMA: tuple[tuple[str, str, str, int], ...] = (
    ("table", "meta", "CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value ANY NOT NULL)", 1),
    (
        "table",
        "entries",
        "CREATE TABLE entries (idx INTEGER PRIMARY KEY CHECK (idx >= 0), "
        "data BLOB NOT NULL CHECK (typeof(data) = 'blob'))",
        1,
    ),
    (
        "table",
        "hashes",
        "CREATE TABLE hashes (idx INTEGER PRIMARY KEY CHECK (idx >= 0), "
        "hash BLOB NOT NULL CHECK (typeof(hash) = 'blob' AND length(hash) = 32))",
        1,
    ),
    (
        "table",
        "checkpoints",
        "CREATE TABLE checkpoints (id INTEGER PRIMARY KEY, size INTEGER NOT NULL CHECK (size >= 0), "
        "root BLOB NOT NULL CHECK (typeof(root) = 'blob' AND length(root) = 32), "
        "note BLOB NOT NULL CHECK (typeof(note) = 'blob'), signed_at INTEGER NOT NULL)",
        1,
    ),
    ("index", "checkpoints_by_size", "CREATE INDEX checkpoints_by_size ON checkpoints (size, id)", 1),
    (
        "table",
        "cosigned",
        "CREATE TABLE cosigned (size INTEGER PRIMARY KEY CHECK (size >= 0), "
        "note BLOB NOT NULL CHECK (typeof(note) = 'blob'), updated_at INTEGER NOT NULL)",
        2,
    ),
    ("table", cert_index.TABLE, cert_index.SCHEMA, 3),
)
#: Objects SQLite makes itself: (type, name, table).
_AUTOMATIC = {("index", "sqlite_autoindex_meta_1", "meta")}
_VALUE_COLUMN = {"entries": "data", "hashes": "hash"}
#: The largest value SQLite may hand back (``SQLITE_LIMIT_LENGTH``): a crafted file
#: cannot make a query build a bigger string or blob.
_MAX_VALUE = 1 << 20


def _normalise_sql(sql: str) -> str:
    return " ".join(sql.replace("(", " ( ").replace(")", " ) ").replace(",", " , ").split())


@dataclass(frozen=True, kw_only=True)
class StoredCheckpoint:
    """A checkpoint as stored: its tree size, root hash and exact signed-note bytes.

    ``note`` is the note as the log signed it. ``cosigned_note`` is the same checkpoint
    with the witness cosignatures collected for it (the log's signature lines first),
    or None when none were added (:meth:`LogStore.add_cosignatures`).
    """

    size: int
    root_hash: bytes
    note: bytes
    signed_at: int
    cosigned_note: bytes | None = None

    @property
    def full_note(self) -> bytes:
        """The note to publish: the cosigned note if there is one, else the log's own."""
        return self.note if self.cosigned_note is None else self.cosigned_note


def _uri(path: Path, mode: str) -> str:
    return f"file:{urllib.parse.quote(str(path))}?mode={mode}"


class _Inode:
    """What this process holds on one database file (by device and inode number)."""

    __slots__ = ("fd", "readers", "writer")

    def __init__(self) -> None:
        self.fd: int | None = None
        self.readers = 0
        self.writer = False


# The writer lock is an exclusive flock on the database file itself, so every name of
# the file (a hard link, a symlink, a bind mount) meets the same lock. Closing any
# descriptor of a file drops the POSIX locks SQLite holds on it in this process, so
# the descriptor stays open while any store of this process has the file open.
_inodes: dict[tuple[int, int], _Inode] = {}
_inodes_mutex = threading.Lock()


def _identity(path: Path) -> tuple[int, int, int]:
    try:
        st = os.stat(path)
    except OSError as e:
        raise StorageError(f"{path}: cannot open the log database: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise StorageError(f"{path}: not a file")
    return st.st_dev, st.st_ino, st.st_nlink


def _release(ident: tuple[int, int], *, writer: bool) -> None:
    with _inodes_mutex:
        h = _inodes.get(ident)
        if h is None:
            return
        if writer:
            h.writer = False
            if h.fd is not None:
                fcntl.flock(h.fd, fcntl.LOCK_UN)
        else:
            h.readers -= 1
        if not h.writer and h.readers <= 0:
            if h.fd is not None:
                os.close(h.fd)
            del _inodes[ident]


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
        self._ident: tuple[int, int] | None = None
        self._closed = False
        self._snapshot_depth = 0
        self._version = SCHEMA_VERSION
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
        if os.path.lexists(p):
            raise StorageError(f"{p}: file exists; refusing to overwrite it with a new log")
        if not p.parent.is_dir():
            raise StorageError(f"{p}: directory {p.parent} does not exist")
        p = Path(os.path.realpath(p.parent)) / p.name
        for suffix in ("-wal", "-shm", "-journal"):
            if os.path.lexists(f"{p}{suffix}"):
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
                for _, _, sql, _ in _SCHEMA:
                    conn.execute(sql)
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
            fsync_path(p.parent)
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

        Symbolic links in ``path`` are resolved first, so SQLite's ``-wal`` and
        ``-shm`` files always sit next to the real file. Raises
        :class:`~ledger.errors.StorageError` for a missing, foreign, corrupt or
        newer-schema file, for a schema that is not exactly the expected one, and when
        another writer already holds the file, through whichever name (the lock is on
        the file itself). A writer also refuses a database file with more than one
        hard link.
        """
        given = Path(path)
        if not os.path.lexists(given):
            raise StorageError(f"{given}: no such log database")
        p = Path(os.path.realpath(given))
        if not p.exists():
            raise StorageError(f"{given}: no such log database")
        dev, ino, _ = _identity(p)
        ident = (dev, ino)
        cls._register(ident, p, readonly=readonly)
        try:
            _, _, links = _identity(p)
            if not readonly and links != 1:
                raise StorageError(
                    f"{p}: the database file has {links} hard links; a log database must have exactly "
                    "one name (rule: single-name), or a second writer and a second write-ahead log "
                    "could reach it"
                )
            if not readonly:
                cls._write_pid(p)
            conn = sqlite3.connect(
                _uri(p, "ro" if readonly else "rw"),
                uri=True,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as e:
            _release(ident, writer=not readonly)
            raise StorageError(f"{p}: cannot open the log database: {e}") from None
        except BaseException:
            _release(ident, writer=not readonly)
            raise
        store = cls(_conn=conn, _path=p, _readonly=readonly)
        store._ident = ident
        try:
            store._configure()
            if not readonly:  # a reader reads the size live and checks nothing: audit does
                store._load_state()
        except BaseException:
            store.close()
            raise
        return store

    @staticmethod
    def _register(ident: tuple[int, int], path: Path, *, readonly: bool) -> None:
        """Count a reader, or take the writer lock on the file ``ident``."""
        with _inodes_mutex:
            h = _inodes.get(ident)
            if readonly:
                if h is None:
                    h = _inodes[ident] = _Inode()
                h.readers += 1
                return
            if h is not None and h.writer:
                raise StorageError(
                    f"{path}: the log is already open for writing by process {os.getpid()}; a log has a "
                    "single writer (readers can open it read-only)"
                )
            fd = h.fd if h is not None else None
            if fd is None:
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                except OSError as e:
                    raise StorageError(f"{path}: cannot open the log database: {e.strerror}") from None
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino) != ident:
                    os.close(fd)
                    raise StorageError(f"{path}: the file was replaced while being opened")
                if h is None:
                    h = _inodes[ident] = _Inode()
                h.fd = fd
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if h is not None and h.readers == 0:
                    os.close(fd)
                    del _inodes[ident]
                holder = LogStore._read_pid(path)
                who = f" by process {holder}" if holder else ""
                raise StorageError(
                    f"{path}: the log is already open for writing{who} (the lock is on the file itself, "
                    "whichever name, hard link or mount reaches it); a log has a single writer "
                    "(readers can open it read-only)"
                ) from None
            assert h is not None
            h.writer = True

    @staticmethod
    def _lock_file(path: Path) -> Path:
        return Path(f"{path}-lock")

    @staticmethod
    def _open_lock_file(path: Path, flags: int) -> int:
        """Open ``<db>-lock`` without following a symlink; a regular file with one name."""
        lock = LogStore._lock_file(path)
        try:
            fd = os.open(lock, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise StorageError(
                    f"{lock}: the writer's lock file is a symbolic link; refusing to write through it "
                    "(rule: lock-file)"
                ) from None
            raise StorageError(f"{lock}: cannot open the writer's lock file: {e.strerror}") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            os.close(fd)
            raise StorageError(
                f"{lock}: the writer's lock file is not a regular file with one name; refusing to "
                "write to it (rule: lock-file)"
            )
        return fd

    @staticmethod
    def _write_pid(path: Path) -> None:
        """Record the writer's process id in ``<db>-lock`` (for messages only)."""
        fd = LogStore._open_lock_file(path, os.O_RDWR | os.O_CREAT)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        finally:
            os.close(fd)

    @staticmethod
    def _read_pid(path: Path) -> str:
        try:
            fd = LogStore._open_lock_file(path, os.O_RDONLY)
        except StorageError:
            return ""
        try:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        finally:
            os.close(fd)
        return holder if holder.isdigit() else ""

    def _configure(self) -> None:
        c = self._conn
        try:
            c.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, _MAX_VALUE)
            c.execute("PRAGMA trusted_schema=OFF")
            c.execute("PRAGMA cell_size_check=ON")
            c.execute("PRAGMA busy_timeout=10000")
            app_id = c.execute("PRAGMA application_id").fetchone()[0]
            if app_id != APPLICATION_ID:
                raise StorageError(
                    f"{self._path}: not a certledger log database (SQLite application id {app_id:#x})"
                )
            c.execute("BEGIN")  # schema and meta from one state, should a writer upgrade meanwhile
            try:
                version = self._check_schema()
                meta = dict(c.execute("SELECT key, value FROM meta").fetchall())
            finally:
                with contextlib.suppress(sqlite3.Error):
                    c.execute("COMMIT")
            if meta.get("schema_version") != version or type(meta.get("schema_version")) is not int:
                raise StorageError(f"{self._path}: log database is damaged: no schema version")
            if set(meta) != {"schema_version", "origin", "created"}:
                keys = ", ".join(sorted(str(k) for k in meta))
                raise StorageError(f"{self._path}: log database is damaged: meta holds keys {keys}")
            origin = meta.get("origin")
            if not isinstance(origin, str):
                raise StorageError(f"{self._path}: log database is damaged: no origin")
            try:
                check_key_name(origin)
            except MalformedError as e:
                raise StorageError(f"{self._path}: log database is damaged: bad origin: {e}") from None
            self.origin = origin
            self._version = version
            if not self._readonly:
                mode = c.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if mode != "wal":
                    raise StorageError(f"{self._path}: cannot switch the database to WAL mode ({mode})")
                c.execute("PRAGMA synchronous=FULL")
                c.execute("PRAGMA cache_size=-16384")  # 16 MiB
                if version < SCHEMA_VERSION:
                    self._upgrade(version)
        except (sqlite3.Error, UnicodeDecodeError) as e:  # a damaged file can hold invalid text
            raise StorageError(f"{self._path}: not a usable log database: {e}") from None

    def _check_schema(self) -> int:
        """The file's schema version, after checking its objects are exactly that version's."""
        c = self._conn
        version = c.execute("PRAGMA user_version").fetchone()[0]
        if type(version) is not int or version < 1:
            raise StorageError(f"{self._path}: log database is damaged: no schema version")
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"{self._path}: log schema version {version} is newer than this software "
                f"supports ({SCHEMA_VERSION}); upgrade certledger"
            )
        rows = c.execute("SELECT type, name, tbl_name, rootpage, sql FROM sqlite_schema").fetchall()
        want = {(t, n): sql for t, n, sql, since in _SCHEMA if since <= version}
        seen: set[tuple[str, str]] = set()
        roots: set[object] = set()
        for type_, name, table, rootpage, sql in rows:
            what = f"{type_} {name!r}"
            key = (type_, name)
            if (type_, name, table) in _AUTOMATIC and sql is None:
                pass
            elif key not in want:
                raise StorageError(
                    f"{self._path}: log database schema is not exactly version {version}'s: unexpected "
                    f"{what} (rule: exact-schema)"
                )
            elif not isinstance(sql, str) or _normalise_sql(sql) != _normalise_sql(want[key]):
                raise StorageError(
                    f"{self._path}: log database schema is not exactly version {version}'s: {what} is "
                    "defined differently (rule: exact-schema)"
                )
            if key in seen or type(rootpage) is not int or rootpage < 2 or rootpage in roots:
                raise StorageError(f"{self._path}: log database is damaged: {what} has a bad root page")
            seen.add(key)
            roots.add(rootpage)
        missing = sorted(n for (t, n) in want if (t, n) not in seen)
        if missing:
            raise StorageError(
                f"{self._path}: log database is damaged: {', '.join(missing)} missing (rule: exact-schema)"
            )
        return version

    def _upgrade(self, version: int) -> None:
        """Bring a writer's file from schema ``version`` to :data:`SCHEMA_VERSION`, in one
        transaction: create the objects added since, record the new version."""
        c = self._conn
        c.execute("BEGIN IMMEDIATE")
        try:
            for _, _, sql, since in _SCHEMA:
                if since > version:
                    c.execute(sql)
            if version < 3:
                self._fill_cert_index()
            c.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION,))
            c.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            c.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                c.execute("ROLLBACK")
            raise
        self._version = SCHEMA_VERSION

    def _fill_cert_index(self) -> None:
        """Index every entry of a log that had no certificate index (inside the upgrade's
        transaction)."""
        i = 0
        while True:
            rows = self._conn.execute(
                "SELECT idx, data FROM entries WHERE idx >= ? ORDER BY idx LIMIT ?", (i, _CHUNK)
            ).fetchall()
            if not rows:
                return
            index_rows: list[cert_index.IndexRow] = []
            for idx, data in rows:
                try:
                    index_rows += cert_index.rows_for_entry(self._int(idx, "entries"), data)
                except LedgerError as e:
                    raise StorageError(
                        f"{self._path}: cannot index entry {idx} while upgrading the log: {e}; "
                        "run 'certledger log audit'"
                    ) from None
            cert_index.insert(self._conn, index_rows)
            i = rows[-1][0] + 1

    def _load_state(self) -> None:
        """(Re)load size, last leaf hash and the right edge of the tree from the database."""
        try:
            row = self._conn.execute("SELECT max(idx) FROM entries").fetchone()
            size = 0 if row[0] is None else self._int(row[0], "entries") + 1
            row = self._conn.execute("SELECT max(idx) FROM hashes").fetchone()
            nhashes = 0 if row[0] is None else self._int(row[0], "hashes") + 1
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
            return 0 if row[0] is None else self._int(row[0], "entries") + 1

    def close(self) -> None:
        """Close the database and release the writer lock. Idempotent."""
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            if self._ident is not None:
                _release(self._ident, writer=not self._readonly)  # releases the writer's flock
                self._ident = None

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
            # What the batch claims: new certificate ids, and statements signed elsewhere
            # (which could be replays of entries already logged).
            fresh: list[tuple[int, Statement, bytes | None]] = []
            for item in statements:
                if isinstance(item, Statement):
                    data = item.to_bytes()
                    sig = sign(context + data)
                    index_rows += index_rows_for(n, item)
                    if item.kind in _ISSUING:
                        fresh.append((n - start, item, None))
                elif isinstance(item, SignedStatement):
                    data, sig = item.statement_bytes, item.signature
                    index_rows += index_rows_for(n, item.statement)
                    here = item.signed_here_by(public)
                    if not here or item.statement.kind in _ISSUING:
                        fresh.append((n - start, item.statement, None if here else data))
                    if item.key_id != kid:
                        raise SignatureError(
                            f"statement {n - start} of the batch is signed by key ID "
                            f"{item.key_id.hex()}, not by this log's key {kid.hex()}"
                        )
                    if not here and not public.is_valid(sig, statement_message(data)):
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
            self._refuse_repeats(fresh)
            self._commit(entry_rows, hash_rows, index_rows)
            self._size = n
            self._last_leaf = prev
            self._edge = {i: known[i] for i in _edge_indexes(n)}
            return list(range(start, n))

    def _refuse_repeats(self, batch: Sequence[tuple[int, Statement, bytes | None]]) -> None:
        """ConflictError for a certificate id issued twice (in the log or in the batch),
        or for a statement signed elsewhere whose exact bytes the log already holds (a
        replay of a public entry). ``batch``: (position in the batch, statement, its
        bytes if signed elsewhere)."""
        issued: dict[str, int] = {}
        for pos, st, _ in batch:
            if st.kind in _ISSUING:
                if st.cert_id in issued:
                    raise ConflictError(
                        f"statement {pos} of the batch issues certificate {st.cert_id} again "
                        f"(statement {issued[st.cert_id]} issues it)"
                    )
                issued[st.cert_id] = pos
        by_key: dict[bytes, list[tuple[int, Statement, bytes | None]]] = {}
        for item in batch:
            by_key.setdefault(cert_index.cert_key(item[1].cert_id), []).append(item)
        keys = list(by_key)
        for lo in range(0, len(keys), _MAX_READ):
            part = keys[lo : lo + _MAX_READ]
            marks = ",".join("?" * len(part))
            rows = self._query(
                f"SELECT c.cert, c.idx, c.kind, e.data FROM {cert_index.TABLE} c "  # noqa: S608
                f"JOIN entries e ON e.idx = c.idx WHERE c.cert IN ({marks}) AND c.kind != ?",
                [*part, int(cert_index.IndexKind.REPLACED)],
            )
            for key, idx, kind, data in rows:
                logged = Entry.from_bytes(data).signed
                for pos, st, presigned in by_key[key]:
                    if logged.statement.cert_id != st.cert_id:
                        continue  # another id with the same 8-byte key
                    if presigned is not None and presigned == logged.statement_bytes:
                        raise ConflictError(
                            f"statement {pos} of the batch is already in the log, at index {idx}"
                        )
                    if st.kind in _ISSUING and kind in _ISSUING:
                        raise ConflictError(
                            f"statement {pos} of the batch issues certificate {st.cert_id}, "
                            f"which entry {idx} already issues"
                        )

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
                if type(h) is not bytes or len(h) != merkle.HASH_SIZE:
                    raise StorageError(f"{self._path}: stored hash {idx} is not 32 bytes")
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
        """Rows of ``table`` with ``start <= idx < stop`` in order, a chunk per query.

        Each query continues after the last index seen, so a sparse table (one row at
        index 2^40) costs one query, not one per empty range.
        """
        i = start
        while i < stop:
            with self._mutex:
                self._check_open()
                rows = self._query(
                    f"SELECT idx, {_VALUE_COLUMN[table]} FROM {table} "  # noqa: S608
                    "WHERE idx >= ? AND idx < ? ORDER BY idx LIMIT ?",
                    (i, stop, _CHUNK),
                )
            for idx, _ in rows:
                if type(idx) is not int:
                    raise StorageError(f"{self._path}: {table} holds a non-integer index {idx!r}")
            yield from rows
            if len(rows) < _CHUNK:
                return
            i = rows[-1][0] + 1

    def scan_entries(self, start: int, stop: int) -> Iterator[tuple[int, Any]]:
        """Raw ``(index, data)`` rows of entries in ``[start, stop)``, as stored, in order.

        Missing rows are simply absent and values are not checked: this is what
        :func:`ledger.log.audit.audit` reads.
        """
        return self._scan("entries", start, stop)

    def scan_hashes(self, start: int, stop: int) -> Iterator[tuple[int, Any]]:
        """Raw ``(stored-hash index, hash)`` rows in ``[start, stop)``, as stored, in order."""
        return self._scan("hashes", start, stop)

    @property
    def has_cert_index(self) -> bool:
        """False for a file from before the certificate index (read-only, never upgraded)."""
        return self._version >= 3

    def _check_cert_index(self) -> None:
        if not self.has_cert_index:
            raise StorageError(
                f"{self._path}: this log (schema version {self._version}) has no certificate index; "
                "open it for writing once to build it"
            )

    def cert_history(self, cert_id: str) -> list[cert_index.IndexedEvent]:
        """Every statement about ``cert_id`` in this log, in log order, from the
        certificate index (see :mod:`ledger.log.index`)."""
        with self._mutex:
            self._check_open()
            self._check_cert_index()
            return cert_index.CertIndex(self._conn).history(cert_id)

    def scan_cert_index(self) -> Iterator[tuple[Any, ...]]:
        """Raw rows of the certificate index, as stored, in key order (what audit reads)."""
        self._check_cert_index()
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
        return None if row[0] is None else self._int(row[0], "hashes")

    def first_indexes(self) -> tuple[int | None, int | None]:
        """The smallest entry index and stored-hash index present (None for an empty table)."""
        with self._mutex:
            self._check_open()
            e = self._query_one("SELECT min(idx) FROM entries")[0]
            h = self._query_one("SELECT min(idx) FROM hashes")[0]
        return (None if e is None else self._int(e, "entries"), None if h is None else self._int(h, "hashes"))

    def _int(self, value: object, table: str) -> int:
        if type(value) is not int:
            raise StorageError(f"{self._path}: {table} holds a non-integer index {value!r}")
        return value

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[LogStore]:
        """Read one consistent state of the log: every read in the ``with`` block sees
        the database as it was at the block's first read, whatever a writer commits
        meanwhile (one SQLite read transaction). Other threads using this store wait
        until the block ends. Nested blocks share the outer snapshot.
        """
        with self._mutex:
            self._check_open()
            if self._snapshot_depth:
                self._snapshot_depth += 1
                try:
                    yield self
                finally:
                    self._snapshot_depth -= 1
                return
            try:
                self._conn.execute("BEGIN DEFERRED")
                self._conn.execute("SELECT 1 FROM meta LIMIT 1").fetchall()  # starts the read now
            except sqlite3.Error as e:
                raise StorageError(f"{self._path}: cannot start a read snapshot: {e}") from None
            self._snapshot_depth = 1
            try:
                yield self
            finally:
                self._snapshot_depth = 0
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("COMMIT")

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

    def _cosigned(self, size: int) -> bytes | None:
        if self._version < 2:
            return None
        row = self._query_one("SELECT note FROM cosigned WHERE size = ?", (size,))
        return None if row is None else row[0]

    def checkpoints(self) -> Iterator[StoredCheckpoint]:
        """Every stored checkpoint, by size then signing order, streamed (each with the
        cosigned note for its size, if any)."""
        last = (-1, -1)
        while True:
            with self._mutex:
                self._check_open()
                rows = self._query(
                    "SELECT size, id, root, note, signed_at FROM checkpoints "
                    "WHERE (size, id) > (?, ?) ORDER BY size, id LIMIT ?",
                    (*last, _CHUNK),
                )
                cosigned = {size: self._cosigned(size) for size in {r[0] for r in rows}}
            if not rows:
                return
            for size, id_, root, data, signed_at in rows:
                yield StoredCheckpoint(
                    size=size, root_hash=root, note=data, signed_at=signed_at, cosigned_note=cosigned[size]
                )
                last = (size, id_)

    def cosigned_notes(self) -> Iterator[tuple[int, Any]]:
        """Raw ``(size, cosigned note)`` rows, by size, as stored (what audit reads)."""
        if self._version < 2:
            return
        last = -1
        while True:
            with self._mutex:
                self._check_open()
                rows = self._query(
                    "SELECT size, note FROM cosigned WHERE size > ? ORDER BY size LIMIT ?", (last, _CHUNK)
                )
            yield from rows
            if len(rows) < _CHUNK:
                return
            last = rows[-1][0]

    def checkpoint(self, key: SigningKey | LogSigner) -> bytes:
        """Sign, store and return a C2SP checkpoint of the log's current size.

        ``key`` is the log's key: a :class:`~ledger.log.signer.LogSigner` (what a node
        uses: the key with its memory of the last checkpoint it signed, kept outside
        this database) or a bare :class:`~ledger.keys.SigningKey` (checked against this
        database only; for tools and tests). The note is signed under the origin as
        key name. Refuses with :class:`~ledger.errors.ConflictError` to sign a root
        that contradicts a stored checkpoint (one of the same size with another root,
        a stored checkpoint larger than the log, or a latest checkpoint that the
        current tree does not extend, checked by recomputing its root from the stored
        hashes and a consistency proof), or, with a ``LogSigner``, the checkpoint the
        key last signed (whatever this database holds). Signing the same checkpoint
        again with the same key returns the stored note (the log's own signature
        only; see :attr:`StoredCheckpoint.full_note` for the cosigned one).
        """
        with self._mutex:
            self._check_open()
            if self._readonly:
                raise StorageError(f"{self._path}: the log is open read-only")
            size = self._size
            root = merkle.tree_hash(size, self._read)
            self._check_consistent(size, root)
            cp = Checkpoint(origin=self.origin, size=size, root_hash=root)
            if isinstance(key, LogSigner):
                note = key.sign(cp, prove=lambda old: merkle.prove_tree(size, old, self._read))
            else:
                note = sign_checkpoint(cp, key=key)
            same = self._query_one(
                "SELECT 1 FROM checkpoints WHERE size = ? AND note = ? LIMIT 1", (size, note)
            )
            if same is None:
                self._write(
                    "INSERT INTO checkpoints (size, root, note, signed_at) VALUES (?, ?, ?, ?)",
                    (size, root, note, int(time.time())),
                    what="store the checkpoint",
                )
            return note

    def check_signer(self, signer: LogSigner) -> None:
        """ConflictError unless the log's current tree extends the checkpoint ``signer``
        last signed (e.g. at start-up: after a restore the log is behind its key's
        memory, and must be recovered from a mirror before it can be signed again)."""
        with self._mutex:
            self._check_open()
            size = self.size
            root = merkle.tree_hash(size, self._read)
            cp = Checkpoint(origin=self.origin, size=size, root_hash=root)
            signer.check(cp, prove=lambda old: merkle.prove_tree(size, old, self._read))

    def _write(self, sql: str, params: Sequence[Any], *, what: str) -> None:
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute(sql, params)
                self._conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            raise StorageError(f"{self._path}: cannot {what}: {e}") from None

    def add_cosignatures(
        self, cosigned: bytes, *, witnesses: Sequence[VerifierKey], max_size: int = CHECKPOINT_MAX_SIZE
    ) -> bytes:
        """Keep the witness cosignatures of ``cosigned`` with the stored checkpoint it
        cosigns; return the merged cosigned note now stored for that size.

        ``cosigned`` is a signed checkpoint note whose text must be byte-for-byte the
        text of a checkpoint this log signed (ConflictError otherwise, rule
        ``cosigned-body``). Every signature line that is not already stored must be a
        cosignature that verifies under one of ``witnesses`` (SignatureError otherwise,
        nothing is stored); lines already stored are skipped. One line per witness key
        is kept: a newer cosignature by the same key replaces the older one. The
        stored note is the log's signed note followed by the cosignature lines.
        """
        with self._mutex:
            self._check_open()
            if self._readonly:
                raise StorageError(f"{self._path}: the log is open read-only")
            incoming = note.parse(cosigned, max_size=max_size)
            try:
                cp = Checkpoint.parse(incoming.text, max_size=max_size)
            except MalformedError as e:
                raise MalformedError(f"cosigned note: {e}") from None
            stored = self.checkpoint_at(cp.size)
            if stored is None:
                raise ConflictError(
                    f"no checkpoint of size {cp.size} was signed by this log; cosignatures can only be kept "
                    "for a stored checkpoint (rule: cosigned-body)"
                )
            base = note.parse(stored.full_note, max_size=max_size)
            if incoming.text.encode() != base.text.encode():
                raise ConflictError(
                    f"the cosigned note's checkpoint text differs from the checkpoint of size {cp.size} this "
                    "log signed (rule: cosigned-body): refusing to keep it"
                )
            verifiers = {(w.name, w.key_id): CosignatureVerifier(key=w) for w in witnesses}
            message = incoming.text.encode()
            lines = {(s.name, s.key_id): s for s in base.signatures}
            own = note.parse(stored.note, max_size=max_size).signatures
            for sig in incoming.signatures:
                k = (sig.name, sig.key_id)
                if lines.get(k) == sig:
                    continue
                v = verifiers.get(k)
                if v is None:
                    raise SignatureError(
                        f"cosigned note: signature by {sig.key} is not by one of the {len(verifiers)} "
                        "witness key(s) given"
                    )
                if not v.verify(message, sig.data):
                    raise SignatureError(f"cosigned note: cosignature by {sig.key} does not verify")
                old = lines.get(k)
                if old is None or cosignature_timestamp(sig.data) > cosignature_timestamp(old.data):
                    lines[k] = sig
            ordered = list(own) + [s for k, s in lines.items() if k not in {(o.name, o.key_id) for o in own}]
            merged = note.Note(text=incoming.text, signatures=tuple(ordered)).to_bytes()
            if len(merged) > max_size:
                raise TooLargeError(f"cosigned note would be {len(merged)} bytes, over {max_size}")
            if merged not in (stored.cosigned_note, stored.note):
                self._write(
                    "INSERT INTO cosigned (size, note, updated_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (size) DO UPDATE SET note = excluded.note, updated_at = excluded.updated_at",
                    (cp.size, merged, int(time.time())),
                    what="store the cosignatures",
                )
            return merged

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

    def _stored(self, row: Sequence[Any]) -> StoredCheckpoint:
        size, root, data, signed_at = row
        return StoredCheckpoint(
            size=size, root_hash=root, note=data, signed_at=signed_at, cosigned_note=self._cosigned(size)
        )

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
            return StoredCheckpoint(
                size=row[0],
                root_hash=row[1],
                note=row[2],
                signed_at=row[3],
                cosigned_note=self._cosigned(row[0]),
            )

    def tlog_proof(self, index: int, *, size: int | None = None) -> TlogProof:
        """A C2SP tlog-proof of entry ``index`` against the stored checkpoint of ``size``
        entries (default: the latest checkpoint), carrying its cosigned note when
        cosignatures were kept for it (:attr:`StoredCheckpoint.full_note`)."""
        cp = self.latest_checkpoint() if size is None else self.checkpoint_at(size)
        if cp is None:
            where = "yet" if size is None else f"for size {size}"
            raise StorageError(f"no checkpoint has been signed {where}: sign one first ('log checkpoint')")
        with self._mutex:
            self._check_open()
            self._check_index(index, cp.size)
            proof = make_proof(index=index, signed_checkpoint=cp.full_note, read=self._read)
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
            return StoredCheckpoint(
                size=row[0],
                root_hash=row[1],
                note=row[2],
                signed_at=row[3],
                cosigned_note=self._cosigned(row[0]),
            )


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
