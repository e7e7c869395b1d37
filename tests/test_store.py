"""The SQLite log store: appends, reads, proofs, checkpoints, reopening and bad files."""

from __future__ import annotations

import functools
import os
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import AuditError, ConflictError, LedgerError, MalformedError, SignatureError, StorageError
from ledger.keys import SigningKey, VerifierKey, key_id
from ledger.log import merkle
from ledger.log.audit import audit
from ledger.log.checkpoint import Checkpoint, open_checkpoint
from ledger.log.statement import GENESIS_PREV, Entry, SignedStatement
from ledger.log.store import APPLICATION_ID, SCHEMA_VERSION, LogStore
from ledger.log.tlogproof import TlogProof, verify
from tests.helpers import ORIGIN, T0, issue, log_key, revoke

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "log.db"


@pytest.fixture
def store(db: Path) -> Iterator[LogStore]:
    s = LogStore.create(db, origin=ORIGIN)
    yield s
    s.close()


def _reference_entries(statements: list[object], key: SigningKey, kid: bytes) -> list[bytes]:
    """What a correct writer stores, computed with the slow, obvious code."""
    out = []
    prev = GENESIS_PREV
    for st_ in statements:
        signed = st_ if isinstance(st_, SignedStatement) else SignedStatement.sign(st_, key=key, key_id=kid)  # type: ignore[arg-type]
        data = Entry(signed=signed, prev=prev).to_bytes()
        out.append(data)
        prev = merkle.leaf_hash(data)
    return out


def _log_vkey(key: SigningKey) -> VerifierKey:
    return VerifierKey(name=ORIGIN, public_key=key.public_key)


# ---------------------------------------------------------------- create / open


def test_new_log_is_empty_and_durable_by_configuration(store: LogStore, db: Path) -> None:
    assert store.size == 0
    assert store.origin == ORIGIN
    assert store.root() == merkle.EMPTY_ROOT
    assert list(store.entries()) == []
    assert store.latest_checkpoint() is None
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == SCHEMA_VERSION
    conn.close()
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert not [p for p in db.parent.iterdir() if ".creating-" in p.name]


def test_create_refuses_existing_file_and_bad_origin(db: Path) -> None:
    db.write_bytes(b"precious")
    with pytest.raises(StorageError, match="file exists; refusing to overwrite"):
        LogStore.create(db, origin=ORIGIN)
    assert db.read_bytes() == b"precious"
    with pytest.raises(MalformedError, match="contains a space"):
        LogStore.create(db.with_name("other.db"), origin="has space")
    with pytest.raises(StorageError, match="does not exist"):
        LogStore.create(db.parent / "nowhere" / "log.db", origin=ORIGIN)


def test_create_refuses_a_stale_wal_file(db: Path) -> None:
    Path(f"{db}-wal").write_bytes(b"old")
    with pytest.raises(StorageError, match="-wal exists without its database"):
        LogStore.create(db, origin=ORIGIN)


def test_open_bad_files(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="no such log database"):
        LogStore.open(tmp_path / "missing.db")
    with pytest.raises(StorageError, match="not a file"):
        LogStore.open(tmp_path)
    junk = tmp_path / "junk.db"
    junk.write_bytes(os.urandom(8192))
    with pytest.raises(StorageError, match="not a usable log database"):
        LogStore.open(junk, readonly=True)
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    with pytest.raises(StorageError, match="not a certledger log database"):
        LogStore.open(empty)
    foreign = tmp_path / "foreign.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(StorageError, match=r"not a certledger log database \(SQLite application id 0x0\)"):
        LogStore.open(foreign)


def test_open_refuses_newer_schema_and_damage(db: Path) -> None:
    LogStore.create(db, origin=ORIGIN).close()
    conn = sqlite3.connect(db)
    conn.execute("UPDATE meta SET value = 7 WHERE key = 'schema_version'")
    conn.execute("PRAGMA user_version = 7")
    conn.commit()
    with pytest.raises(StorageError, match="schema version 7 is newer than this software supports"):
        LogStore.open(db)
    conn.execute("PRAGMA user_version = 3")
    conn.commit()
    with pytest.raises(StorageError, match="damaged: no schema version"):
        LogStore.open(db)
    conn.execute("UPDATE meta SET value = 3 WHERE key = 'schema_version'")
    conn.execute("DROP TABLE hashes")
    conn.commit()
    conn.close()
    with pytest.raises(StorageError, match=r"damaged: hashes missing \(rule: exact-schema\)"):
        LogStore.open(db)


def test_open_refuses_entries_without_their_hashes(store: LogStore, db: Path) -> None:
    key, _ = log_key()
    store.append([issue(i) for i in range(5)], key=key)
    store.close()
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM hashes WHERE idx = (SELECT max(idx) FROM hashes)")
    conn.commit()
    conn.close()
    with pytest.raises(StorageError, match=r"inconsistent: 5 entries but 7 stored hashes \(expected 8\)"):
        LogStore.open(db)


def test_closed_store_refuses_work(store: LogStore) -> None:
    store.close()
    store.close()  # idempotent
    with pytest.raises(StorageError, match="closed"):
        store.root()
    with pytest.raises(StorageError, match="closed"):
        store.append(issue(1), key=log_key()[0])


# ---------------------------------------------------------------- appends


def test_append_signs_chains_and_returns_indexes(store: LogStore) -> None:
    key, kid = log_key()
    assert store.key_id(key) == kid == key_id(ORIGIN, 1, key.public_key.raw)
    assert store.append(issue(1), key=key) == [0]
    assert store.append([issue(2), issue(3), revoke(1)], key=key) == [1, 2, 3]
    assert store.append([], key=key) == []
    assert store.size == 4
    want = _reference_entries([issue(1), issue(2), issue(3), revoke(1)], key, kid)
    assert list(store.entries()) == want
    prev = GENESIS_PREV
    for i, data in enumerate(store.entries()):
        entry = Entry.from_bytes(data)
        assert entry.prev == prev
        assert entry.signed.key_id == kid
        entry.signed.verify(key.public_key)
        assert entry.to_bytes() == data  # stored bytes are canonical
        assert store.entry(i) == data
        assert store.leaf_hash(i) == merkle.leaf_hash(data)
        prev = merkle.leaf_hash(data)


def test_append_accepts_presigned_statements(store: LogStore) -> None:
    key, kid = log_key()
    signed = SignedStatement.sign(issue(5), key=key, key_id=kid)
    assert store.append([issue(4), signed], key=key) == [0, 1]
    assert list(store.entries()) == _reference_entries([issue(4), signed], key, kid)


def test_append_refuses_foreign_or_forged_presigned_and_appends_nothing(store: LogStore) -> None:
    key, kid = log_key()
    other, other_kid = log_key(2)
    store.append(issue(1), key=key)
    root = store.root()
    foreign = SignedStatement.sign(issue(2), key=other, key_id=other_kid)
    with pytest.raises(
        SignatureError, match=f"statement 1 of the batch is signed by key ID {other_kid.hex()}"
    ):
        store.append([issue(3), foreign], key=key)
    forged = SignedStatement(statement_bytes=issue(2).to_bytes(), key_id=kid, signature=bytes(64))
    with pytest.raises(SignatureError, match="statement 0 of the batch: signature does not verify"):
        store.append([forged], key=key)
    with pytest.raises(MalformedError, match="item 1 of the batch is a str"):
        store.append([issue(3), "issue"], key=key)  # type: ignore[list-item]
    assert store.size == 1 and store.root() == root
    assert store.append(issue(3), key=key) == [1]
    assert list(store.entries()) == _reference_entries([issue(1), issue(3)], key, kid)


def test_a_failed_commit_acknowledges_nothing_and_the_store_recovers(store: LogStore) -> None:
    key, kid = log_key()
    store.append([issue(1), issue(2)], key=key)
    store._conn.execute("PRAGMA query_only = ON")
    with pytest.raises(StorageError, match="append failed, nothing was acknowledged"):
        store.append([issue(3), issue(4)], key=key)
    store._conn.execute("PRAGMA query_only = OFF")
    assert store.size == 2
    assert store.append(issue(5), key=key) == [2]
    assert list(store.entries()) == _reference_entries([issue(1), issue(2), issue(5)], key, kid)


def test_readonly_store_cannot_append_or_checkpoint(store: LogStore, db: Path) -> None:
    key, _ = log_key()
    with LogStore.open(db, readonly=True) as ro:
        with pytest.raises(StorageError, match="open read-only"):
            ro.append(issue(1), key=key)
        with pytest.raises(StorageError, match="open read-only"):
            ro.checkpoint(key)


def test_many_batches_match_the_reference_and_survive_reopening(db: Path) -> None:
    key, kid = log_key()
    statements = [issue(i) for i in range(700)]
    sizes = [1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 91]
    assert sum(sizes) == 700
    store = LogStore.create(db, origin=ORIGIN)
    pos = 0
    for n, size in enumerate(sizes):
        if n % 4 == 3:
            store.close()
            store = LogStore.open(db)
        assert store.append(statements[pos : pos + size], key=key) == list(range(pos, pos + size))
        pos += size
    want = _reference_entries(statements, key, kid)
    leaves = [merkle.leaf_hash(d) for d in want]
    assert list(store.entries()) == want
    assert store.root() == merkle.root_from_leaf_hashes(leaves)
    assert list(store.entries(100, 103)) == want[100:103]
    assert list(store.entries(700)) == []
    # what was stored is exactly what stored_hashes gives, in stored-hash order
    stored = store.read_hashes(range(merkle.stored_hash_count(700)))
    again: list[bytes] = []

    def read(idx: object) -> list[bytes]:
        return [again[j] for j in idx]  # type: ignore[attr-defined]

    for i, leaf in enumerate(leaves):
        again += merkle.stored_hashes(i, leaf, read)
    assert stored == again
    store.close()


def test_entries_streams_across_chunks(store: LogStore) -> None:
    key, _ = log_key()
    statements = [issue(i) for i in range(4500)]
    for lo in range(0, 4500, 1000):
        store.append(statements[lo : lo + 1000], key=key)
    it = store.entries(1, 4499)
    first = next(it)
    assert first == store.entry(1)
    rest = list(it)
    assert len(rest) == 4497
    assert rest[-1] == store.entry(4498)


def test_read_errors_name_the_problem(store: LogStore) -> None:
    key, _ = log_key()
    store.append([issue(i) for i in range(3)], key=key)
    with pytest.raises(StorageError, match="entry 3 is beyond the tree size 3"):
        store.entry(3)
    with pytest.raises(StorageError, match="non-negative integer"):
        store.entry(-1)
    with pytest.raises(StorageError, match="tree size 4 is beyond the log's size 3"):
        store.root(4)
    with pytest.raises(StorageError, match="entry 2 is beyond the tree size 2"):
        store.inclusion_proof(2, 2)
    with pytest.raises(StorageError, match=r"no consistency proof from size 0 to size 3"):
        store.consistency_proof(0)
    with pytest.raises(StorageError, match=r"no consistency proof from size 3 to size 2"):
        store.consistency_proof(3, 2)
    with pytest.raises(StorageError, match=r"start 5 is not within \[0, 3\]"):
        store.entries(5)


# ---------------------------------------------------------------- proofs


def test_every_proof_checks_against_merkle(store: LogStore) -> None:
    key, _ = log_key()
    n = 37
    store.append([issue(i) for i in range(n)], key=key)
    leaves = [merkle.leaf_hash(d) for d in store.entries()]
    roots = [store.root(t) for t in range(n + 1)]
    for t in range(n + 1):
        assert roots[t] == merkle.root_from_leaf_hashes(leaves[:t])
    for t in range(1, n + 1):
        for i in range(t):
            proof = store.inclusion_proof(i, t)
            merkle.check_record(proof, t, roots[t], i, leaves[i])
            if proof:
                bad = [*proof]
                bad[0] = bytes([bad[0][0] ^ 1]) + bad[0][1:]
                with pytest.raises(merkle.ProofError):
                    merkle.check_record(bad, t, roots[t], i, leaves[i])
        for m in range(1, t + 1):
            merkle.check_tree(store.consistency_proof(m, t), t, roots[t], m, roots[m])
    assert store.inclusion_proof(5) == store.inclusion_proof(5, n)
    assert store.consistency_proof(5) == store.consistency_proof(5, n)


def test_proofs_read_only_a_logarithmic_number_of_hashes(store: LogStore) -> None:
    key, _ = log_key()
    store.append([issue(i) for i in range(1000)], key=key)
    reads: list[int] = []
    real = store._read

    def counting(indexes: list[int]) -> list[bytes]:
        reads.append(len(indexes))
        return real(indexes)

    store._read = counting  # type: ignore[method-assign]
    store.inclusion_proof(377, 1000)
    store.consistency_proof(377, 1000)
    store.root(999)
    assert sum(reads) <= 3 * 2 * 10


# ---------------------------------------------------------------- checkpoints


def test_checkpoint_signs_the_current_tree_and_stores_it(store: LogStore) -> None:
    key, _ = log_key()
    empty = store.checkpoint(key)
    cp0 = open_checkpoint(empty, log_key=_log_vkey(key)).checkpoint
    assert cp0 == Checkpoint(origin=ORIGIN, size=0, root_hash=merkle.EMPTY_ROOT)
    store.append([issue(i) for i in range(10)], key=key)
    note = store.checkpoint(key)
    opened = open_checkpoint(note, log_key=_log_vkey(key))
    assert opened.checkpoint.size == 10 and opened.checkpoint.root_hash == store.root()
    latest = store.latest_checkpoint()
    assert latest is not None and latest.note == note and latest.size == 10
    assert store.checkpoint(key) == note  # same key, same tree: the stored note again
    assert [c.size for c in store.checkpoints()] == [0, 10]
    at0 = store.checkpoint_at(0)
    assert at0 is not None and at0.note == empty
    assert store.checkpoint_at(5) is None


def test_tlog_proof_verifies_against_the_stored_checkpoint(store: LogStore) -> None:
    key, _ = log_key()
    with pytest.raises(StorageError, match="no checkpoint has been signed yet"):
        store.tlog_proof(0)
    store.append([issue(i) for i in range(20)], key=key)
    store.checkpoint(key)
    store.append([issue(i) for i in range(20, 30)], key=key)
    proof = store.tlog_proof(7)
    assert isinstance(proof, TlogProof)
    opened = verify(proof, log_key=_log_vkey(key), leaf=store.entry(7))
    assert opened.checkpoint.size == 20
    with pytest.raises(StorageError, match="entry 25 is beyond the tree size 20"):
        store.tlog_proof(25)
    with pytest.raises(StorageError, match="no checkpoint has been signed for size 30"):
        store.tlog_proof(25, size=30)
    store.checkpoint(key)
    verify(store.tlog_proof(25, size=30), log_key=_log_vkey(key), leaf=store.entry(25))


def _rewrite_from(db: Path, index: int) -> None:
    """Drop entries >= index and their hashes, as an attacker or a bad restore would."""
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM entries WHERE idx >= ?", (index,))
    conn.execute("DELETE FROM hashes WHERE idx >= ?", (merkle.stored_hash_count(index),))
    conn.commit()
    conn.close()


def test_checkpoint_refuses_a_rewritten_history(db: Path) -> None:
    key, _ = log_key()
    with LogStore.create(db, origin=ORIGIN) as store:
        store.append([issue(i) for i in range(10)], key=key)
        store.checkpoint(key)
    _rewrite_from(db, 6)
    with LogStore.open(db) as store:
        with pytest.raises(
            ConflictError, match="checkpoint for size 10 was already signed, but the log has only 6"
        ):
            store.checkpoint(key)
        store.append([revoke(i) for i in range(4)], key=key)  # same size, different history
        with pytest.raises(ConflictError, match="a checkpoint for size 10 was already signed with root"):
            store.checkpoint(key)
        store.append(issue(99), key=key)  # larger, but does not extend the signed tree
        with pytest.raises(ConflictError, match=r"latest signed checkpoint \(size 10\) has root"):
            store.checkpoint(key)
        assert [c.size for c in store.checkpoints()] == [10]


def test_checkpoint_refuses_when_stored_hashes_contradict_it(store: LogStore, db: Path) -> None:
    key, _ = log_key()
    store.append([issue(i) for i in range(8)], key=key)
    store.checkpoint(key)
    store.append([issue(8)], key=key)
    conn = sqlite3.connect(db)
    conn.execute("UPDATE hashes SET hash = ? WHERE idx = ?", (bytes(32), merkle.stored_hash_index(3, 0)))
    conn.commit()
    conn.close()
    with pytest.raises(ConflictError, match="the stored hashes give"):
        store.checkpoint(key)


# ---------------------------------------------------------------- the single writer


def test_a_second_writer_is_refused_readers_are_not(store: LogStore, db: Path) -> None:
    key, _ = log_key()
    with pytest.raises(
        StorageError, match=f"already open for writing by process {os.getpid()}; a log has a single writer"
    ):
        LogStore.open(db)
    code = (
        "import sys\n"
        "from ledger.log.store import LogStore\n"
        "from ledger.errors import StorageError\n"
        "try:\n"
        f"    LogStore.open({str(db)!r})\n"
        "except StorageError as e:\n"
        "    print(e)\n"
        "    sys.exit(3)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 3, out.stderr
    assert "already open for writing" in out.stdout
    with LogStore.open(db, readonly=True) as reader:
        assert reader.size == 0
        store.append([issue(1), issue(2)], key=key)
        assert reader.size == 2
        assert reader.root() == store.root()
    store.close()
    with LogStore.open(db) as again:
        assert again.size == 2


# ---------------------------------------------------------------- damaged files


@functools.cache
def _sound_log_bytes() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "log.db"
        key, _ = log_key()
        with LogStore.create(path, origin=ORIGIN) as s:
            s.append([issue(i) for i in range(30)], key=key)
            s.checkpoint(key)
            s.append([revoke(i) for i in range(5)], key=key)
            s.checkpoint(key)
        return path.read_bytes()  # closed: the WAL is folded into the file


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_damaged_files_give_project_errors_only(data: st.DataObject) -> None:
    """Truncated, bit-flipped or overwritten database files: opening, reading and auditing
    either work or raise a LedgerError (StorageError, AuditError), never anything else."""
    raw = bytearray(_sound_log_bytes())
    how = data.draw(st.sampled_from(["truncate", "flip", "overwrite"]))
    at = data.draw(st.integers(0, len(raw) - 1))
    if how == "truncate":
        del raw[at:]
    elif how == "flip":
        raw[at] ^= 1 << data.draw(st.integers(0, 7))
    else:
        chunk = data.draw(st.binary(min_size=1, max_size=256))
        raw[at : at + len(chunk)] = chunk
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "log.db"
        path.write_bytes(bytes(raw))
        key, _ = log_key()
        try:
            with LogStore.open(path, readonly=True) as store:
                try:
                    report = audit(store, keys=[key.public_key])
                except AuditError as e:
                    assert str(e)
                else:  # the damage missed everything the audit reads: the log is sound
                    assert report.size == 35
                    assert list(store.entries())[-1] == store.entry(34)
        except LedgerError as e:
            assert isinstance(e, StorageError | AuditError), repr(e)
            assert str(e)
        try:
            with LogStore.open(path) as store:
                store.root()
        except StorageError as e:
            assert str(e)


# ---------------------------------------------------------------- repeats


def test_replayed_statement_is_refused(store: LogStore) -> None:
    # Every signed statement is public in the tiles: appending it again (a replay of an
    # old suspend, say) would change what the log says about the certificate.
    key, _ = log_key()
    kid = store.key_id(key)
    store.append([issue(1), revoke(1)], key=key)
    logged = [Entry.from_bytes(d).signed for d in store.entries(0, 2)]
    replayed = [
        SignedStatement(statement_bytes=s.statement_bytes, key_id=kid, signature=s.signature) for s in logged
    ]
    with pytest.raises(ConflictError, match=r"statement 0 of the batch is already in the log, at index 1"):
        store.append([replayed[1]], key=key)
    with pytest.raises(ConflictError, match=r"statement 1 of the batch is already in the log, at index 0"):
        store.append([issue(2), replayed[0]], key=key)
    assert store.size == 2  # nothing of either batch went in


def test_a_certificate_id_is_issued_once(store: LogStore) -> None:
    key, _ = log_key()
    store.append(issue(1), key=key)
    with pytest.raises(ConflictError, match=r"issues certificate .*\.1\..* which entry 0 already issues"):
        store.append(issue(1, time=T0 + 60), key=key)
    with pytest.raises(ConflictError, match=r"statement 1 of the batch issues certificate .* again"):
        store.append([issue(2), issue(2, time=T0 + 1)], key=key)
    assert store.append([issue(2), revoke(1), revoke(2)], key=key) == [1, 2, 3]
