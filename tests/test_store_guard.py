"""A store that cannot be confused: one writer per file whatever its name, an exact schema,
integer indexes, bounded reads, and an audit that reads one snapshot and stops at a gap."""

from __future__ import annotations

import os
import resource
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ledger.errors import AuditError, StorageError
from ledger.log import merkle
from ledger.log.audit import audit
from ledger.log.statement import Entry
from ledger.log.store import LogStore
from tests.helpers import ORIGIN, issue, log_key

ROOT = Path(__file__).resolve().parent.parent
WRITER = Path(__file__).with_name("crash_writer.py")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _log(db: Path, n: int = 6, *, checkpoint: bool = True) -> None:
    key, _ = log_key()
    with LogStore.create(db, origin=ORIGIN) as store:
        if n:
            store.append([issue(i) for i in range(n)], key=key)
        if checkpoint:
            store.checkpoint(key)


def _open_in_another_process(path: Path) -> str:
    code = (
        "import sys\n"
        "from ledger.log.store import LogStore\n"
        "from ledger.errors import StorageError\n"
        "try:\n"
        f"    LogStore.open({str(path)!r}).close()\n"
        "except StorageError as e:\n"
        "    print(e)\n"
        "    sys.exit(3)\n"
        "print('opened')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=60)
    assert out.returncode in (0, 3), out.stderr
    return out.stdout.strip()


# ---------------------------------------------------------------- one writer per file


def test_hard_linked_writer_is_refused(tmp_path: Path) -> None:
    """The attack: a second name for the database let a second writer in; both
    acknowledged appends and signed different roots."""
    db, alias = tmp_path / "log.db", tmp_path / "alias.db"
    _log(db, 0, checkpoint=False)
    with LogStore.open(db) as writer:
        os.link(db, alias)
        with pytest.raises(StorageError, match="already open for writing by process"):
            LogStore.open(alias)
        assert "already open for writing" in _open_in_another_process(alias)
        writer.append(issue(1), key=log_key()[0])
    # with no writer, a database with two names is still refused for writing
    with pytest.raises(StorageError, match=r"has 2 hard links; .*rule: single-name"):
        LogStore.open(alias)
    assert "rule: single-name" in _open_in_another_process(db)
    with LogStore.open(alias, readonly=True) as reader:  # reading is harmless
        assert reader.size == 1
    alias.unlink()
    LogStore.open(db).close()


def test_symlinked_writer_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    _log(db, 0, checkpoint=False)
    other = tmp_path / "elsewhere"
    other.mkdir()
    link = other / "log.db"
    link.symlink_to(db)
    with LogStore.open(db):
        with pytest.raises(StorageError, match="already open for writing"):
            LogStore.open(link)
        assert "already open for writing" in _open_in_another_process(link)
    with LogStore.open(link) as store:  # alone, the link leads to the real file
        assert store.path == db
        assert Path(f"{db}-wal").exists() and not Path(f"{link}-wal").exists()
        with pytest.raises(StorageError, match="already open for writing"):
            LogStore.open(db)
        assert "already open for writing" in _open_in_another_process(db)


def test_writer_lock_is_released_for_readers_and_later_writers(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    _log(db, 2, checkpoint=False)
    reader = LogStore.open(db, readonly=True)
    with LogStore.open(db) as w:
        w.append(issue(2), key=log_key()[0])
    assert reader.size == 3  # the writer's close left the reader's locks alone
    with LogStore.open(db) as w:  # a reader in this process does not block a writer
        assert w.size == 3
        assert "the log is already open for writing" in _open_in_another_process(db)
    reader.close()
    assert _open_in_another_process(db) == "opened"


def test_symlinked_lock_file_is_not_followed(tmp_path: Path) -> None:
    """The attack: point <db>-lock at a file the writer may write, and the writer truncates it."""
    db = tmp_path / "log.db"
    _log(db, 0, checkpoint=False)
    victim = tmp_path / "precious.txt"
    victim.write_text("do not truncate me\n")
    lock = Path(f"{db}-lock")
    lock.unlink()
    lock.symlink_to(victim)
    with pytest.raises(
        StorageError, match=r"lock file is a symbolic link; refusing to write through it \(rule: lock-file\)"
    ):
        LogStore.open(db)
    assert victim.read_text() == "do not truncate me\n"
    lock.unlink()
    os.link(victim, lock)  # a hard link to someone else's file is refused too
    with pytest.raises(StorageError, match="not a regular file with one name"):
        LogStore.open(db)
    assert victim.read_text() == "do not truncate me\n"
    lock.unlink()
    with LogStore.open(db):  # and the next writer recreates it
        assert lock.read_text() == f"{os.getpid()}\n"


# ---------------------------------------------------------------- exact schema


def _craft(db: Path, *sql: str) -> None:
    conn = sqlite3.connect(db)
    for s in sql:
        conn.execute(s)
    conn.commit()
    conn.close()


CRAFTED = {
    "extra trigger": (
        "CREATE TRIGGER t AFTER INSERT ON entries BEGIN DELETE FROM checkpoints; END",
        r"unexpected trigger 't'",
    ),
    "view": ("CREATE VIEW v AS SELECT * FROM entries", r"unexpected view 'v'"),
    "extra column": ("ALTER TABLE entries ADD COLUMN note TEXT", r"table 'entries' is defined differently"),
    "generated column": (
        "ALTER TABLE checkpoints ADD COLUMN big BLOB GENERATED ALWAYS AS (zeroblob(900000000)) VIRTUAL",
        r"table 'checkpoints' is defined differently",
    ),
    "extra index": ("CREATE INDEX by_data ON entries (data)", r"unexpected index 'by_data'"),
    "extra table": ("CREATE TABLE sidecar (x)", r"unexpected table 'sidecar'"),
}


@pytest.mark.parametrize("attack", sorted(CRAFTED))
def test_crafted_schemas_are_refused(tmp_path: Path, attack: str) -> None:
    db = tmp_path / "log.db"
    _log(db)
    sql, message = CRAFTED[attack]
    _craft(db, sql)
    for readonly in (True, False):
        with pytest.raises(
            StorageError, match=rf"schema is not exactly version 3's: {message}.*exact-schema"
        ):
            LogStore.open(db, readonly=readonly)
    with pytest.raises(StorageError, match="exact-schema"):
        audit(db, keys=[log_key()[0].public_key])


def _recreate(db: Path, table: str, ddl: str, rows: list[tuple[object, object]]) -> None:
    conn = sqlite3.connect(db)
    conn.execute(f"DROP TABLE {table}")
    conn.execute(ddl)
    conn.executemany(f"INSERT INTO {table} VALUES (?, ?)", rows)
    conn.commit()
    conn.close()


def test_crafted_wrong_column_type_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    _log(db)
    _recreate(db, "hashes", "CREATE TABLE hashes (idx INTEGER PRIMARY KEY, hash TEXT)", [(0, "x")])
    with pytest.raises(StorageError, match="table 'hashes' is defined differently"):
        LogStore.open(db, readonly=True)


def test_text_index_is_a_storage_error_not_a_value_error(tmp_path: Path) -> None:
    """The attack: ``'zz'`` as an entry index escaped as ValueError."""
    db = tmp_path / "log.db"
    _log(db, 0, checkpoint=False)
    _recreate(
        db, "entries", "CREATE TABLE entries (idx TEXT PRIMARY KEY, data BLOB NOT NULL)", [("zz", b"x")]
    )
    for readonly in (True, False):
        with pytest.raises(StorageError, match="table 'entries' is defined differently"):
            LogStore.open(db, readonly=readonly)
    with pytest.raises(StorageError):
        audit(db, keys=[log_key()[0].public_key])


def test_a_missing_table_and_foreign_meta_are_refused(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    _log(db)
    _craft(db, "INSERT INTO meta VALUES ('surprise', 1)")
    with pytest.raises(StorageError, match="meta holds keys created, origin, schema_version, surprise"):
        LogStore.open(db, readonly=True)
    _craft(db, "DELETE FROM meta WHERE key = 'surprise'", "DROP TABLE cosigned")
    with pytest.raises(StorageError, match=r"damaged: cosigned missing \(rule: exact-schema\)"):
        LogStore.open(db, readonly=True)


def test_a_version_1_log_is_read_as_is_and_upgraded_by_its_writer(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    _log(db)
    _craft(
        db,
        "DROP TABLE cosigned",
        "DROP TABLE cert_index",
        "UPDATE meta SET value = 1 WHERE key = 'schema_version'",
        "PRAGMA user_version = 1",
    )
    with LogStore.open(db, readonly=True) as reader:
        assert reader.latest_checkpoint() is not None
        assert list(reader.cosigned_notes()) == []
        assert audit(reader, keys=[log_key()[0].public_key]).size == 6
    with LogStore.open(db) as writer:
        assert writer.latest_checkpoint() is not None
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
    assert conn.execute("SELECT count(*) FROM cosigned").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM cert_index").fetchone()[0] == 6
    conn.close()
    assert audit(db, keys=[log_key()[0].public_key]).size == 6


def test_a_version_2_log_gets_its_certificate_index_filled_by_its_writer(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    _log(db)
    with LogStore.open(db, readonly=True) as log:
        events = {
            i: log.cert_history(Entry.from_bytes(log.entry(i)).signed.statement.cert_id) for i in range(6)
        }
    _craft(
        db,
        "DROP TABLE cert_index",
        "UPDATE meta SET value = 2 WHERE key = 'schema_version'",
        "PRAGMA user_version = 2",
    )
    with LogStore.open(db, readonly=True) as reader:
        assert not reader.has_cert_index
        with pytest.raises(
            StorageError, match="has no certificate index; open it for writing once to build it"
        ):
            reader.cert_history("1.2.156.3005.2.X.Y.1.001.Z")
        assert audit(reader, keys=[log_key()[0].public_key]).size == 6
    with LogStore.open(db) as writer:
        assert writer.has_cert_index
        for i, history in events.items():
            assert writer.cert_history(Entry.from_bytes(writer.entry(i)).signed.statement.cert_id) == history
    assert audit(db, keys=[log_key()[0].public_key]).size == 6


def _peak_rss_of_audit(db: Path) -> tuple[str, int]:
    code = (
        "import resource, sys\n"
        "from ledger.errors import LedgerError\n"
        "from ledger.log.audit import audit\n"
        "from tests.helpers import log_key\n"
        "try:\n"
        f"    audit({str(db)!r}, keys=[log_key()[0].public_key])\n"
        "    print('passed')\n"
        "except LedgerError as e:\n"
        "    print(type(e).__name__, e)\n"
        # VmHWM is this process image's own peak; ru_maxrss would also count the
        # parent's pages from before exec, and pytest grows large in a long run.
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')]\n"
        "print(int(hwm[0].split()[1]) if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120
    )
    assert out.returncode == 0, out.stderr
    message, rss = out.stdout.strip().rsplit("\n", 1)
    return message, int(rss)  # KiB on Linux


@pytest.mark.slow
def test_a_crafted_small_file_cannot_make_audit_use_much_memory(tmp_path: Path) -> None:
    """The attack: a 24 KB file whose generated column builds a gigabyte blob per row."""
    db = tmp_path / "log.db"
    _log(db)
    _craft(db, CRAFTED["generated column"][0])
    assert db.stat().st_size < 64 * 1024
    message, rss_kib = _peak_rss_of_audit(db)
    assert message.startswith("StorageError") and "exact-schema" in message
    assert rss_kib < 200 * 1024, f"audit of a crafted file peaked at {rss_kib} KiB"
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 0


def test_values_larger_than_the_cap_are_refused_not_loaded(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    _log(db, 2)
    _craft(db, "UPDATE entries SET data = zeroblob(2000000) WHERE idx = 1")
    with LogStore.open(db, readonly=True) as store:
        with pytest.raises(StorageError, match="blob too big"):
            list(store.entries())
        with pytest.raises(AuditError, match=r"cannot read the log: .*too big"):
            audit(store, keys=[log_key()[0].public_key])


# ---------------------------------------------------------------- gaps and sparse indexes


def _count_queries(store: LogStore) -> list[str]:
    seen: list[str] = []
    real: Callable[..., list[object]] = store._query

    def counting(sql: str, params: object = ()) -> list[object]:
        seen.append(sql)
        return real(sql, params)

    store._query = counting  # type: ignore[method-assign]
    return seen


def test_sparse_index_fails_at_once_and_names_the_index(tmp_path: Path) -> None:
    """The attack: one row at index 2^40 made audit step through empty ranges for minutes."""
    db = tmp_path / "log.db"
    _log(db, 3)
    far = 2**40
    _craft(db, f"INSERT INTO entries VALUES ({far}, x'00')")
    with LogStore.open(db, readonly=True) as store:
        assert store.size == far + 1
        queries = _count_queries(store)
        with pytest.raises(AuditError, match=rf"entry 3 is missing \(next stored entry is {far}\)") as e:
            audit(store, keys=[log_key()[0].public_key])
        assert e.value.index == 3
        assert len(queries) < 20
        assert list(store.scan_entries(3, far + 1)) == [(far, b"\x00")]
    with pytest.raises(StorageError, match=rf"inconsistent: {far + 1} entries"):
        LogStore.open(db)


def test_a_gap_in_the_middle_names_the_first_missing_index(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    _log(db, 9)
    _craft(db, "DELETE FROM entries WHERE idx IN (4, 5)")
    with pytest.raises(AuditError, match=r"entry 4 is missing \(next stored entry is 6\)") as e:
        audit(db, keys=[log_key()[0].public_key])
    assert e.value.index == 4
    _craft(db, f"DELETE FROM hashes WHERE idx = {merkle.stored_hash_index(0, 2)}")
    with pytest.raises(AuditError, match=r"entry 2: stored hash \d+ \(level 0, subtree 2\) is missing"):
        audit(db, keys=[log_key()[0].public_key])


def test_a_negative_index_is_named(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    _log(db, 3)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA ignore_check_constraints = ON")
    conn.execute("INSERT INTO entries VALUES (-1, x'00')")
    conn.commit()
    conn.close()
    with pytest.raises(AuditError, match="entry index -1 is negative"):
        audit(db, keys=[log_key()[0].public_key])


# ---------------------------------------------------------------- live audit


def test_audit_reads_one_snapshot_while_the_writer_appends(tmp_path: Path) -> None:
    """The attack surface: audit read the size first and hashes and checkpoints later, so
    a log audited while its node appends was reported as truncated."""
    db = tmp_path / "log.db"
    _log(db, 20)
    key, _ = log_key()
    with LogStore.open(db) as writer, LogStore.open(db, readonly=True) as reader:
        real_scan = reader.scan_entries
        appended: list[int] = []

        def scan_while_appending(start: int, stop: int):  # type: ignore[no-untyped-def]
            if not appended:
                appended.extend(writer.append([issue(i) for i in range(20, 27)], key=key))
                writer.checkpoint(key)
            return real_scan(start, stop)

        reader.scan_entries = scan_while_appending  # type: ignore[method-assign]
        report = audit(reader, keys=[key.public_key])
        assert appended == list(range(20, 27))
        assert report.size == 20 and report.latest_checkpoint_size == 20
        assert audit(reader, keys=[key.public_key]).size == 27  # the next audit sees the new state


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_live_audit_in_a_second_process(tmp_path: Path) -> None:
    """A writer process appends and signs without pause; audits of the live log all pass."""
    db = tmp_path / "log.db"
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(db), "7"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
        cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(b"ready")
        sizes: list[int] = []
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline or len(sizes) < 3:
            report = audit(db, keys=[log_key()[0].public_key])
            sizes.append(report.size)
        assert proc.poll() is None
        assert sizes == sorted(sizes) and sizes[-1] > sizes[0]
    finally:
        proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
