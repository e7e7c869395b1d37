"""Audit: a sound log passes; any change to an entry, a stored hash or a checkpoint is
caught and the first bad index (or the checkpoint) is named."""

from __future__ import annotations

import base64
import sqlite3
from pathlib import Path

import pytest

from ledger.errors import AuditError, MalformedError
from ledger.keys import SIG_TYPE_COSIGNATURE, VerifierKey
from ledger.log import merkle
from ledger.log.audit import AuditReport, audit, log_key_map
from ledger.log.statement import Entry, Kind, SignedStatement, Statement
from ledger.log.store import LogStore
from tests.helpers import ORIGIN, issue, log_key, revoke

N = 40
CHECKPOINTS = (0, 9, 16, 33, 40)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A log of 40 entries with checkpoints at sizes 0, 9, 16, 33 and 40."""
    path = tmp_path / "log.db"
    key, _ = log_key()
    with LogStore.create(path, origin=ORIGIN) as store:
        size = 0
        for cp in CHECKPOINTS:
            store.append([issue(i) for i in range(size, cp)], key=key)
            size = cp
            store.checkpoint(key)
    return path


def _pub() -> list[VerifierKey]:
    key, _ = log_key()
    return [VerifierKey(name=ORIGIN, public_key=key.public_key)]


def _sql(db: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db)
    rows = conn.execute(sql, params).fetchall()
    conn.commit()
    conn.close()
    return rows


def _flip(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0x01]) + data[offset + 1 :]


def _rebuild_hashes(db: Path) -> None:
    """Recompute every stored hash from the entries, as a careful forger would."""
    entries = [bytes(r[0]) for r in _sql(db, "SELECT data FROM entries ORDER BY idx")]  # type: ignore[arg-type]
    out: list[bytes] = []

    def read(idx: object) -> list[bytes]:
        return [out[j] for j in idx]  # type: ignore[attr-defined]

    for i, data in enumerate(entries):
        out += merkle.stored_hashes(i, merkle.leaf_hash(data), read)
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM hashes")
    conn.executemany("INSERT INTO hashes (idx, hash) VALUES (?, ?)", list(enumerate(out)))
    conn.commit()
    conn.close()


def _audit_error(db: Path, **kw: object) -> AuditError:
    with pytest.raises(AuditError) as info:
        audit(db, keys=kw.get("keys", _pub()))  # type: ignore[arg-type]
    return info.value


# ---------------------------------------------------------------- sound logs


def test_sound_log_passes_and_reports_what_was_checked(db: Path) -> None:
    progress: list[tuple[int, int]] = []
    report = audit(db, keys=_pub(), progress=lambda done, total: progress.append((done, total)))
    assert isinstance(report, AuditReport)
    with LogStore.open(db, readonly=True) as store:
        root = store.root()
    assert report.size == N and report.origin == ORIGIN and report.root_hash == root
    assert report.signatures_checked == N
    assert report.hashes_checked == merkle.stored_hash_count(N)
    assert report.checkpoints_checked == len(CHECKPOINTS)
    assert report.latest_checkpoint_size == 40
    assert progress[-1] == (N, N)
    text = report.summary()
    assert "audit passed" in text and f"{N} entries" in text and root.hex() in text
    assert "5 checkpoint(s), latest at size 40 verified" in text


def test_empty_log_passes(tmp_path: Path) -> None:
    LogStore.create(tmp_path / "e.db", origin=ORIGIN).close()
    report = audit(tmp_path / "e.db", keys=_pub())
    assert report.size == 0 and report.root_hash == merkle.EMPTY_ROOT and report.checkpoints_checked == 0
    assert "no checkpoints" in report.summary()


def test_audit_accepts_an_open_store_and_public_keys(db: Path) -> None:
    key, _ = log_key()
    with LogStore.open(db) as store:
        assert audit(store, keys=[key.public_key]).size == N
        assert store.size == N  # still open and usable
        store.append(issue(1000), key=key)
        assert audit(store, keys=[key.public_key]).size == N + 1


def test_key_rotation_needs_every_key(db: Path) -> None:
    old, _ = log_key()
    new, new_kid = log_key(2)
    with LogStore.open(db) as store:
        store.append([revoke(1), revoke(2)], key=new)
        store.checkpoint(new)
    both = [old.public_key, new.public_key]
    assert audit(db, keys=both).size == N + 2
    err = _audit_error(db, keys=[old.public_key])
    assert err.index == N
    assert f"entry {N}: signed by key ID {new_kid.hex()}, which is not one of the 1 log key(s) given" in str(
        err
    )


def test_key_arguments_are_checked() -> None:
    key, _ = log_key()
    with pytest.raises(MalformedError, match="at least one log public key"):
        log_key_map(ORIGIN, [])
    with pytest.raises(MalformedError, match="is not a key of the log"):
        log_key_map(ORIGIN, [VerifierKey(name="other.example/log", public_key=key.public_key)])
    with pytest.raises(MalformedError, match="signature type 0x04 is not a log key"):
        log_key_map(
            ORIGIN, [VerifierKey(name=ORIGIN, public_key=key.public_key, sig_type=SIG_TYPE_COSIGNATURE)]
        )
    with pytest.raises(MalformedError, match="not a public key: str"):
        log_key_map(ORIGIN, ["AcrFGJKZ"])  # type: ignore[list-item]


def test_wrong_key_fails_at_the_first_signature(db: Path) -> None:
    other, _ = log_key(3)
    err = _audit_error(db, keys=[other.public_key])
    assert err.index is None  # the checkpoint of the empty tree comes first
    assert "checkpoint for size 0" in str(err) and "none of the 1 log key(s) given" in str(err)
    _sql(db, "DELETE FROM checkpoints WHERE size = 0")
    err = _audit_error(db, keys=[other.public_key])
    assert err.index == 0
    assert "entry 0: signed by key ID" in str(err)


# ---------------------------------------------------------------- tampering: entries


@pytest.mark.parametrize("index", [0, 1, 17, N - 1])
@pytest.mark.parametrize("where", ["statement", "key id", "signature", "prev", "header"])
def test_one_changed_byte_in_an_entry_is_caught_at_that_index(db: Path, index: int, where: str) -> None:
    (data,) = _sql(db, "SELECT data FROM entries WHERE idx = ?", index)[0]
    assert isinstance(data, bytes)
    entry = Entry.from_bytes(data)
    offsets = {
        "header": 0,  # the map header
        "statement": data.index(entry.signed.statement_bytes) + 20,
        "key id": data.index(entry.signed.key_id),
        "signature": data.index(entry.signed.signature) + 10,
        "prev": data.rindex(entry.prev) + 31,
    }
    _sql(db, "UPDATE entries SET data = ? WHERE idx = ?", _flip(data, offsets[where]), index)
    err = _audit_error(db)
    assert err.index == index, str(err)
    assert str(err).startswith(f"entry {index}")


def test_a_rewritten_entry_with_recomputed_hashes_breaks_the_chain_at_the_next(db: Path) -> None:
    key, kid = log_key()
    (data,) = _sql(db, "SELECT data FROM entries WHERE idx = 12")[0]
    assert isinstance(data, bytes)
    forged = Entry(
        signed=SignedStatement.sign(revoke(3), key=key, key_id=kid), prev=Entry.from_bytes(data).prev
    )
    _sql(db, "UPDATE entries SET data = ? WHERE idx = 12", forged.to_bytes())
    _rebuild_hashes(db)
    err = _audit_error(db)
    assert err.index == 13
    assert "entry 13: prev does not match the leaf hash of entry 12: the hash chain is broken" in str(err)


def test_a_fully_rewritten_history_contradicts_the_checkpoints(db: Path, tmp_path: Path) -> None:
    # The forger holds the log key: rewrites entry 20 onwards, re-chains, re-hashes.
    key, _ = log_key()
    _sql(db, "DELETE FROM entries WHERE idx >= 20")
    _sql(db, "DELETE FROM hashes WHERE idx >= ?", merkle.stored_hash_count(20))
    with LogStore.open(db) as store:
        store.append([revoke(i) for i in range(20)], key=key)
    err = _audit_error(db)
    assert err.index is None
    assert "checkpoint for size 33" in str(err)
    assert "the first 33 entries were rewritten after it was signed" in str(err)


def test_a_missing_entry_is_named(db: Path) -> None:
    _sql(db, "DELETE FROM entries WHERE idx = 7")
    err = _audit_error(db)
    assert err.index == 7 and "entry 7 is missing (next stored entry is 8)" in str(err)


def test_a_truncated_log_is_caught(db: Path) -> None:
    _sql(db, "DELETE FROM entries WHERE idx >= 35")
    err = _audit_error(db)
    assert err.index == 35
    assert "lies beyond the hashes of the 35 entries: the log was truncated" in str(err)
    _sql(db, "DELETE FROM hashes WHERE idx >= ?", merkle.stored_hash_count(35))
    err = _audit_error(db)
    assert err.index == 35
    assert "a checkpoint signed for size 40 is beyond the log's 35 entries: the log was truncated" in str(err)


# ---------------------------------------------------------------- tampering: stored hashes


@pytest.mark.parametrize("j", [0, 1, 2, 5, 30, merkle.stored_hash_count(N) - 1])
def test_one_changed_byte_in_a_stored_hash_is_caught(db: Path, j: int) -> None:
    (h,) = _sql(db, "SELECT hash FROM hashes WHERE idx = ?", j)[0]
    assert isinstance(h, bytes)
    _sql(db, "UPDATE hashes SET hash = ? WHERE idx = ?", _flip(h, 13), j)
    level, n = merkle.split_stored_hash_index(j)
    completing = ((n + 1) << level) - 1  # the entry whose append stored this hash
    err = _audit_error(db)
    assert err.index == completing
    assert f"entry {completing}: stored hash {j} (level {level}, subtree {n}) does not match" in str(err)


def test_a_missing_stored_hash_is_named(db: Path) -> None:
    j = merkle.stored_hash_index(2, 1)  # the subtree of entries 4..7
    _sql(db, "DELETE FROM hashes WHERE idx = ?", j)
    err = _audit_error(db)
    assert err.index == 7
    assert f"entry 7: stored hash {j} (level 2, subtree 1) is missing" in str(err)


# ---------------------------------------------------------------- tampering: checkpoints


def _checkpoint_rows(db: Path) -> list[tuple[int, int, bytes]]:
    return _sql(db, "SELECT id, size, note FROM checkpoints ORDER BY size")  # type: ignore[return-value]


@pytest.mark.parametrize("which", range(len(CHECKPOINTS)))
def test_one_changed_byte_in_a_checkpoint_signature_is_caught(db: Path, which: int) -> None:
    id_, size, note = _checkpoint_rows(db)[which]
    text, sig_line = note.rstrip(b"\n").rsplit(b"\n", 1)
    prefix, b64 = sig_line.rsplit(b" ", 1)
    raw = base64.b64decode(b64)
    bad = _flip(raw, 4 + 20)  # a byte of the Ed25519 signature, after the key ID
    tampered = text + b"\n" + prefix + b" " + base64.b64encode(bad) + b"\n"
    _sql(db, "UPDATE checkpoints SET note = ? WHERE id = ?", tampered, id_)
    err = _audit_error(db)
    assert err.index is None
    assert f"checkpoint for size {size} (signed at" in str(err)
    assert "does not verify: invalid signature by trusted key" in str(err)


def test_a_changed_byte_in_the_checkpoint_text_is_caught(db: Path) -> None:
    id_, size, note = _checkpoint_rows(db)[2]
    root_line_at = note.index(b"\n", note.index(b"\n") + 1) + 1
    _sql(db, "UPDATE checkpoints SET note = ? WHERE id = ?", _flip(note, root_line_at + 3), id_)
    err = _audit_error(db)
    assert f"checkpoint for size {size}" in str(err) and "does not verify" in str(err)


def test_a_checkpoint_by_an_unknown_key_is_caught(db: Path) -> None:
    other, _ = log_key(4)
    with LogStore.open(db) as store:
        store.checkpoint(other)
    err = _audit_error(db)
    assert "checkpoint for size 40" in str(err)
    assert "none of the 1 log key(s) given" in str(err)


def test_stored_checkpoint_columns_must_match_the_note(db: Path) -> None:
    id_, size, _ = _checkpoint_rows(db)[3]
    _sql(db, "UPDATE checkpoints SET root = ? WHERE id = ?", bytes(32), id_)
    err = _audit_error(db)
    assert f"checkpoint for size {size}" in str(err)
    assert "the stored size and root do not match the signed note" in str(err)


def test_checkpoints_at_every_size_check_against_the_recomputed_root(tmp_path: Path) -> None:
    key, _ = log_key()
    path = tmp_path / "every.db"
    with LogStore.create(path, origin=ORIGIN) as store:
        store.checkpoint(key)
        for i in range(70):
            store.append(issue(i), key=key)
            store.checkpoint(key)
    report = audit(path, keys=_pub())
    assert report.checkpoints_checked == 71 and report.latest_checkpoint_size == 70
    # a wrong stored root at any one size is caught at that checkpoint
    _sql(path, "UPDATE checkpoints SET root = ? WHERE size = 45", bytes(32))
    err = _audit_error(path)
    assert "checkpoint for size 45" in str(err) and "do not match the signed note" in str(err)


def test_a_log_holding_policy_adoptions_passes_audit(tmp_path: Path) -> None:
    key, _ = log_key()
    path = tmp_path / "policy.db"
    adopt = [
        Statement.policy_adoption(
            issuer="hangzhou-xihu-amr",
            time=1_717_171_200 + v,
            operator="node",
            policy_version=v,
            document=doc,
        )
        for v, doc in ((1, b"policy one\n"), (2, b"policy two\n"))
    ]
    with LogStore.create(path, origin=ORIGIN) as store:
        store.append([adopt[0], issue(1), adopt[1], revoke(1)], key=key)
        store.checkpoint(key)
        kinds = [Entry.from_bytes(d).signed.statement.kind for d in store.entries()]
    assert kinds == [Kind.POLICY, Kind.ISSUE, Kind.POLICY, Kind.REVOKE]
    report = audit(path, keys=_pub())
    assert report.size == 4 and report.signatures_checked == 4
