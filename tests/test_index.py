"""The certificate index: written with the entries, read in one lookup, checked by audit."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pytest

from ledger.errors import AuditError, StorageError
from ledger.log import index as cert_index
from ledger.log.audit import audit
from ledger.log.index import CertIndex, IndexKind, cert_key
from ledger.log.statement import Entry, Kind, Reason, Statement
from ledger.log.store import LogStore
from tests.helpers import ORIGIN, cert_id, issue, log_key, revoke


def replace(new: int, old: int, *, time: int) -> Statement:
    return dataclasses.replace(
        issue(new), kind=Kind.REPLACE, replaces=cert_id(old), reason=Reason.INFORMATION_CHANGED, time=time
    )


def suspend(serial: int, *, time: int) -> Statement:
    return dataclasses.replace(
        revoke(serial), kind=Kind.SUSPEND, reason=Reason.UNDER_INVESTIGATION, time=time
    )


@pytest.fixture
def store(tmp_path: Path) -> LogStore:
    key, _ = log_key()
    s = LogStore.create(tmp_path / "log.db", origin=ORIGIN)
    s.append([issue(i) for i in range(10)], key=key)
    s.append([suspend(3, time=1), revoke(4), replace(20, 5, time=2)], key=key)
    yield s  # type: ignore[misc]
    s.close()


def _pub() -> list[object]:
    return [log_key()[0].public_key]


def test_history_lists_every_statement_about_a_certificate_in_log_order(store: LogStore) -> None:
    [ev] = store.cert_history(cert_id(0))
    assert (ev.index, ev.kind, ev.issuer) == (0, IndexKind.ISSUE, "hangzhou-xihu-amr")
    assert ev.time == issue(0).time
    assert [(e.index, e.kind) for e in store.cert_history(cert_id(3))] == [
        (3, IndexKind.ISSUE),
        (10, IndexKind.SUSPEND),
    ]
    assert [(e.index, e.kind, e.time) for e in store.cert_history(cert_id(5))] == [
        (5, IndexKind.ISSUE, issue(5).time),
        (12, IndexKind.REPLACED, 2),
    ]
    assert [(e.index, e.kind) for e in store.cert_history(cert_id(20))] == [(12, IndexKind.REPLACE)]
    assert store.cert_history(cert_id(99)) == []
    latest = CertIndex(store._conn).latest(cert_id(4))
    assert latest is not None and latest.kind == IndexKind.REVOKE


def test_an_event_matches_the_statement_of_its_entry(store: LogStore) -> None:
    for cid in (cert_id(3), cert_id(5), cert_id(20)):
        for ev in store.cert_history(cid):
            stmt = Entry.from_bytes(store.entry(ev.index)).signed.statement
            assert ev.matches(cid, stmt)
            assert not ev.matches(cert_id(7), stmt)


def test_rows_come_with_the_entries_in_one_transaction(store: LogStore) -> None:
    # a failed batch leaves neither entries nor index rows
    key, _ = log_key()
    with pytest.raises(Exception, match="statement 1 of the batch is signed by key ID"):
        store.append(
            [issue(30), dataclasses.replace(Entry.from_bytes(store.entry(0)).signed, key_id=b"zzzz")], key=key
        )
    assert store.cert_history(cert_id(30)) == []
    rows = list(store.scan_cert_index())
    assert len(rows) == 14  # 13 entries, the replace gives two rows
    assert store.size == 13


def test_the_index_works_on_any_connection(tmp_path: Path, store: LogStore) -> None:
    # a mirror keeps its own index from the entry bytes it copies
    conn = sqlite3.connect(tmp_path / "mirror.db", isolation_level=None)
    conn.execute("BEGIN")
    cert_index.create_table(conn)
    for i, data in enumerate(store.entries()):
        cert_index.insert(conn, cert_index.rows_for_entry(i, data))
    conn.execute("COMMIT")
    mirror = CertIndex(conn)
    for serial in (0, 3, 5, 20, 99):
        assert mirror.history(cert_id(serial)) == store.cert_history(cert_id(serial))
    assert sorted(cert_index.scan(conn)) == sorted(store.scan_cert_index())
    conn.close()


def test_audit_passes_a_sound_index(store: LogStore) -> None:
    assert audit(store, keys=_pub()).size == 13  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("sql", "params", "message"),
    [
        ("DELETE FROM cert_index WHERE idx = 10", (), "it has 13 row\\(s\\), the 13 entries give 14"),
        (
            "UPDATE cert_index SET kind = 4 WHERE idx = 11",
            (),
            "it has 14 row\\(s\\), the 13 entries give 14, but different ones",
        ),
        (
            "UPDATE cert_index SET idx = 3 WHERE idx = 11",
            (),
            "it has 14 row\\(s\\), the 13 entries give 14, but different ones",
        ),
        (
            "INSERT INTO cert_index VALUES (?, 13, 2, 0, 'hangzhou-xihu-amr')",
            (cert_key(cert_id(1)),),
            "it has 15 row\\(s\\), the 13 entries give 14",
        ),
    ],
    ids=["hidden-revocation", "revoke-turned-reinstate", "moved-event", "forged-revocation"],
)
def test_audit_refuses_a_tampered_index(
    store: LogStore, sql: str, params: tuple[object, ...], message: str
) -> None:
    path = store.path
    store.close()
    conn = sqlite3.connect(path)
    conn.execute(sql, params)
    conn.commit()
    conn.close()
    with pytest.raises(AuditError, match=f"the certificate index does not match the entries: {message}"):
        audit(path, keys=_pub())  # type: ignore[arg-type]


def test_a_damaged_index_row_is_a_storage_error(store: LogStore) -> None:
    path = store.path
    store.close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA ignore_check_constraints = ON")
    conn.execute("UPDATE cert_index SET kind = 9 WHERE idx = 0")
    conn.commit()
    conn.close()
    with LogStore.open(path, readonly=True) as log:
        with pytest.raises(StorageError, match="the certificate index is damaged at entry 0"):
            log.cert_history(cert_id(0))
        with pytest.raises(StorageError, match="a certificate id is a string"):
            log.cert_history(5)  # type: ignore[arg-type]
