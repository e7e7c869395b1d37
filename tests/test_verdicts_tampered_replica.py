"""A replica database changed behind the verifier's back.

A certificate the issuer signed but never logged, written into the replica's tables, is
NOT_IN_LEDGER, whether the verifier has proven other entries of the same tree before
(its remembered proof nodes) or not; and a revocation another connection synced counts
at the very next verdict (the verifier keeps the replica's state between verdicts)."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.log import merkle
from ledger.log.statement import Kind, encode_entry
from ledger.replica.store import ReplicaStore
from tests.fixtures.consortium import AMR, HEALTH, POLICY, PSB, T0, issue_reference
from tests.replica_fixtures import NOW, Net, licence, status, sync
from verifier import core
from verifier.core import verify
from verifier.verdict import Code

LOGGED = [licence(f"20240005{i:02d}") for i in range(7)]


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    n = Net(tmp_path)
    n.append(AMR.id, [issue_reference().signed, *(c.signed for c in LOGGED)])
    for m in (AMR.id, HEALTH.id, PSB.id):
        n.publish(m)
    yield n
    n.close()


@pytest.fixture
def store(tmp_path: Path, net: Net) -> Iterator[ReplicaStore]:
    s = ReplicaStore.open(tmp_path / "replica.db")
    for m in (AMR.id, HEALTH.id, PSB.id):
        assert sync(s, net, m).ok
    yield s
    s.close()


def _plant(db: Path, index: int, *, leaf_hash_too: bool) -> str:
    """Write a never-logged licence over entry ``index`` of the issuer's copy (entry,
    index row and, optionally, the stored leaf hash); return its QR text."""
    forged = licence("2024000999")
    signed = forged.signed
    conn = sqlite3.connect(db)
    try:
        (data,) = conn.execute(
            "SELECT data FROM entries WHERE idx = ? AND origin = ?", (index, AMR.origin)
        ).fetchone()
        entry = encode_entry(
            statement_bytes=signed.statement_bytes,
            key_id=signed.key_id,
            signature=signed.signature,
            prev=data[-32:],
        )
        conn.execute("UPDATE entries SET data = ? WHERE idx = ? AND origin = ?", (entry, index, AMR.origin))
        conn.execute(
            "UPDATE certs SET stmt_hash = ?, cert_id = ? WHERE idx = ? AND origin = ?",
            (hashlib.sha256(signed.statement_bytes).digest(), forged.cert_id, index, AMR.origin),
        )
        if leaf_hash_too:
            conn.execute(
                "UPDATE hashes SET hash = ? WHERE idx = ? AND origin = ?",
                (merkle.leaf_hash(entry), merkle.stored_hash_index(0, index), AMR.origin),
            )
        conn.commit()
    finally:
        conn.close()
    return forged.to_qr_text()


@pytest.mark.parametrize("leaf_hash_too", [False, True])
@pytest.mark.parametrize("warm", [False, True])
def test_statement_planted_in_the_replica_is_not_in_ledger(
    store: ReplicaStore, warm: bool, leaf_hash_too: bool
) -> None:
    if warm:  # prove every genuine entry first: the tree's nodes are remembered
        for c in [issue_reference(), *LOGGED]:
            v = verify(c.to_qr_text(), policy=POLICY, replica_view=store, now=NOW)
            assert v.code == Code.VALID, v.reason_en
    text = _plant(store.path, 3, leaf_hash_too=leaf_hash_too)
    v = verify(text, policy=POLICY, replica_view=store, now=NOW)
    assert v.code == Code.NOT_IN_LEDGER, v.reason_en
    assert "does not prove entry 3" in v.reason_en and "root hash mismatch" in v.reason_en
    # genuine entries whose proofs do not pass through the edited leaf still verify
    for c in (issue_reference(), LOGGED[4]):
        assert verify(c.to_qr_text(), policy=POLICY, replica_view=store, now=NOW).code == Code.VALID


def test_a_revocation_synced_by_another_connection_counts_at_once(tmp_path: Path, net: Net) -> None:
    """The verifier keeps the replica's state between verdicts; a sync committed through
    another connection (another process) is seen by the very next verdict."""
    ref = issue_reference()
    reader = ReplicaStore.open(tmp_path / "shared.db")
    writer = ReplicaStore.open(tmp_path / "shared.db")
    try:
        for m in (AMR.id, HEALTH.id, PSB.id):
            assert sync(writer, net, m).ok
        assert verify(ref.to_qr_text(), policy=POLICY, replica_view=reader, now=NOW).code == Code.VALID
        net.append(AMR.id, [status(AMR.id, ref.cert_id, Kind.REVOKE, time=T0 + 7200)])
        for m in (AMR.id, HEALTH.id, PSB.id):
            net.publish(m)
        assert sync(writer, net, AMR.id).ok
        v = verify(ref.to_qr_text(), policy=POLICY, replica_view=reader, now=NOW)
        assert v.code == Code.REVOKED, v.reason_en
        assert v.evidence is not None and v.evidence.checkpoint_size == 1 + len(LOGGED) + 1
    finally:
        reader.close()
        writer.close()


def test_a_tampered_proof_hash_read_with_the_entry_is_caught(store: ReplicaStore) -> None:
    """The stored hashes read with the entry (the proof's lower siblings) are checked by
    the proof like any other: one edited in the replica makes the entries whose proofs
    use it unprovable (NOT_IN_LEDGER), and the others still verify."""
    core._TREES._items.clear()  # no remembered nodes: every proof runs to the root
    conn = sqlite3.connect(store.path)
    try:
        conn.execute(
            "UPDATE hashes SET hash = ? WHERE idx = ? AND origin = ?",
            (bytes(32), merkle.stored_hash_index(2, 1), AMR.origin),  # the subtree of entries 4..7
        )
        conn.commit()
    finally:
        conn.close()
    v = verify(issue_reference().to_qr_text(), policy=POLICY, replica_view=store, now=NOW)
    assert v.code == Code.NOT_IN_LEDGER, v.reason_en
    assert "root hash mismatch" in v.reason_en
    # entry 5 does not use that node for its own proof
    assert verify(LOGGED[4].to_qr_text(), policy=POLICY, replica_view=store, now=NOW).code == Code.VALID
