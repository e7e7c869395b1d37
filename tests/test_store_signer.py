"""The signer that remembers: the last signed checkpoint is kept next to the key, outside
the database, and nothing inconsistent with it is ever signed, whatever the database says."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from certledger.cli import cli
from ledger.errors import ConflictError, FileError, MalformedError
from ledger.keys import SigningKey
from ledger.log import merkle
from ledger.log import signer as signer_module
from ledger.log.checkpoint import Checkpoint, sign_checkpoint
from ledger.log.signer import STATE_SUFFIX, LogSigner, SignerState
from ledger.log.store import LogStore
from tests.helpers import ORIGIN, issue, log_key, mutate, revoke


@pytest.fixture
def signer(tmp_path: Path) -> LogSigner:
    key_file = tmp_path / "keys" / "log.pem"
    key_file.parent.mkdir()
    return LogSigner.beside(key_file, key=log_key()[0])


def _copy_db(src: Path, dst: Path) -> None:
    """A backup as an operator takes it: the closed database file alone."""
    shutil.copyfile(src, dst)


def _restore(backup: Path, db: Path) -> None:
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(backup, db)


def test_the_state_is_written_next_to_the_key_and_names_the_signed_checkpoint(
    tmp_path: Path, signer: LogSigner
) -> None:
    assert signer.state_path == tmp_path / "keys" / f"log.pem{STATE_SUFFIX}"
    assert signer.last() is None
    with LogStore.create(tmp_path / "log.db", origin=ORIGIN) as store:
        store.append([issue(i) for i in range(7)], key=signer.key)
        store.checkpoint(signer)
        root = store.root()
    state = signer.last()
    assert state == SignerState(origin=ORIGIN, key_id=log_key()[1], size=7, root_hash=root)
    raw = signer.state_path.read_bytes()
    assert json.loads(raw) == {
        "format": "certledger-signer-state/v1",
        "key_id": log_key()[1].hex(),
        "origin": ORIGIN,
        "root": root.hex(),
        "size": 7,
    }
    assert stat.S_IMODE(signer.state_path.stat().st_mode) == 0o600


def test_resign_after_the_database_is_rewritten_is_refused(tmp_path: Path, signer: LogSigner) -> None:
    """The attack: delete the log (or rewrite it wholesale, checkpoints table included) and
    sign another history with the real key. The database has no memory left; the key does."""
    db = tmp_path / "log.db"
    with LogStore.create(db, origin=ORIGIN) as store:
        store.append([issue(i) for i in range(10)], key=signer.key)
        store.checkpoint(signer)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    with LogStore.create(db, origin=ORIGIN) as store:
        store.append([revoke(i) for i in range(6)], key=signer.key)
        with pytest.raises(
            ConflictError,
            match=r"already signed a checkpoint of size 10, but the log has only 6.*signer-smaller",
        ):
            store.checkpoint(signer)
        store.append([revoke(i) for i in range(6, 10)], key=signer.key)
        with pytest.raises(ConflictError, match=r"already signed size 10 with root .*rule: signer-fork"):
            store.checkpoint(signer)
        store.append(issue(99), key=signer.key)
        with pytest.raises(
            ConflictError, match=r"does not extend the checkpoint of size 10.*signer-inconsistent"
        ):
            store.checkpoint(signer)
        assert list(store.checkpoints()) == []  # nothing was signed or stored
        with pytest.raises(ConflictError, match="signer-inconsistent"):
            store.check_signer(signer)
    assert signer.last() is not None and signer.last().size == 10  # type: ignore[union-attr]


def test_sign_after_a_backup_is_restored_is_refused(tmp_path: Path, signer: LogSigner) -> None:
    """Copy the database, append and sign, restore the old copy, append something else:
    the database's own checkpoints agree with it, the key's memory does not."""
    db, backup = tmp_path / "log.db", tmp_path / "backup.db"
    with LogStore.create(db, origin=ORIGIN) as store:
        store.append([issue(i) for i in range(5)], key=signer.key)
        store.checkpoint(signer)
    _copy_db(db, backup)
    with LogStore.open(db) as store:
        store.append([issue(i) for i in range(5, 12)], key=signer.key)
        store.checkpoint(signer)
    _restore(backup, db)
    with LogStore.open(db) as store:
        assert store.size == 5
        with pytest.raises(ConflictError, match="signer-smaller"):
            store.check_signer(signer)
        store.append([revoke(i) for i in range(7)], key=signer.key)  # 12 entries, another history
        with pytest.raises(ConflictError, match=r"rule: signer-fork"):
            store.checkpoint(signer)
        store.append(revoke(8), key=signer.key)
        with pytest.raises(ConflictError, match=r"signer-inconsistent"):
            store.checkpoint(signer)
        assert store.latest_checkpoint() is not None and store.latest_checkpoint().size == 5  # type: ignore[union-attr]


def test_a_restored_log_that_gets_its_entries_back_can_sign_again(tmp_path: Path, signer: LogSigner) -> None:
    """Recovery: once the lost entries are back (from a mirror), the log extends what the
    key signed, and signing goes on."""
    db, backup = tmp_path / "log.db", tmp_path / "backup.db"
    with LogStore.create(db, origin=ORIGIN) as store:
        store.append([issue(i) for i in range(5)], key=signer.key)
        store.checkpoint(signer)
    _copy_db(db, backup)
    with LogStore.open(db) as store:
        lost = [issue(i) for i in range(5, 12)]
        store.append(lost, key=signer.key)
        signed = store.checkpoint(signer)
    _restore(backup, db)
    with LogStore.open(db) as store:
        store.append(lost, key=signer.key)  # what a mirror gives back
        store.check_signer(signer)
        assert store.checkpoint(signer) == signed
        store.append(issue(12), key=signer.key)
        store.checkpoint(signer)
    assert signer.last().size == 13  # type: ignore[union-attr]


def test_nothing_is_signed_when_the_state_cannot_be_written(
    tmp_path: Path, signer: LogSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise FileError("state: cannot write the signer state: No space left on device")

    signed: list[Checkpoint] = []
    real_sign = sign_checkpoint

    def spy(cp: Checkpoint, *, key: SigningKey) -> bytes:
        signed.append(cp)
        return real_sign(cp, key=key)

    monkeypatch.setattr(signer_module, "write_file", fail)
    monkeypatch.setattr(signer_module, "sign_checkpoint", spy)
    with LogStore.create(tmp_path / "log.db", origin=ORIGIN) as store:
        store.append(issue(1), key=signer.key)
        with pytest.raises(FileError, match="No space left"):
            store.checkpoint(signer)
        assert signed == [] and list(store.checkpoints()) == []
    assert signer.last() is None


def test_a_state_file_of_another_log_or_key_or_a_damaged_one_is_refused(
    tmp_path: Path, signer: LogSigner
) -> None:
    with LogStore.create(tmp_path / "log.db", origin=ORIGIN) as store:
        store.append(issue(1), key=signer.key)
        store.checkpoint(signer)
        other = LogSigner(key=log_key(2)[0], state=signer.state_path)
        with pytest.raises(ConflictError, match=r"belongs to log .* key .*rule: signer-state"):
            store.checkpoint(other)
    with (
        LogStore.create(tmp_path / "other.db", origin="ledger.example.gov.cn/other") as store,
        pytest.raises(ConflictError, match="signer-state"),
    ):
        store.checkpoint(signer)
    good = signer.state_path.read_bytes()
    for bad, message in [
        (b"{}", "must hold exactly"),
        (good.replace(b'"size":1', b'"size":-1'), "non-negative"),
        (good.replace(b'"size":1', b'"size":true'), "non-negative"),
        (good.replace(b"}\n", b"} \n"), "canonical"),
        (good[:-3], "not valid JSON"),
        (b"x" * 5000, "limit"),
    ]:
        signer.state_path.write_bytes(bad)
        with pytest.raises(MalformedError, match=message):
            signer.last()


def test_check_accepts_consistent_growth_only(signer: LogSigner) -> None:
    leaves = [merkle.leaf_hash(bytes([i])) for i in range(9)]
    roots = [merkle.root_from_leaf_hashes(leaves[:n]) for n in range(10)]

    def prover(new: int) -> signer_module.ConsistencyProver:
        def prove(old: int) -> list[bytes]:
            return merkle.prove_tree(new, old, lambda idx: [_stored(leaves, i) for i in idx])

        return prove

    def cp(n: int, root: bytes | None = None) -> Checkpoint:
        return Checkpoint(origin=ORIGIN, size=n, root_hash=roots[n] if root is None else root)

    signer.sign(cp(0), prove=prover(0))
    signer.sign(cp(3), prove=prover(3))
    signer.sign(cp(3), prove=prover(3))  # the same again is fine
    signer.sign(cp(9), prove=prover(9))
    with pytest.raises(ConflictError, match="signer-fork"):
        signer.sign(cp(9, bytes(32)), prove=prover(9))
    with pytest.raises(ConflictError, match="signer-smaller"):
        signer.sign(cp(8), prove=prover(8))


def _stored(leaves: list[bytes], index: int) -> bytes:
    """Stored hash ``index`` of a tree with the given leaves (slow and obvious)."""
    level, n = merkle.split_stored_hash_index(index)
    return merkle.root_from_leaf_hashes(leaves[n << level : (n + 1) << level])


def test_cli_checkpoint_remembers_next_to_the_key_and_refuses_after_a_restore(tmp_path: Path) -> None:
    runner = CliRunner()
    db, key_file, backup = tmp_path / "log.db", tmp_path / "log.pem", tmp_path / "backup.db"
    r = runner.invoke(
        cli, ["log", "init", str(db), "--origin", ORIGIN, "--key", str(key_file), "--generate-key"]
    )
    assert r.exit_code == 0, r.output
    key = SigningKey.load(key_file)
    with LogStore.open(db) as store:
        store.append([issue(i) for i in range(3)], key=key)
    assert runner.invoke(cli, ["log", "checkpoint", str(db), "--key", str(key_file)]).exit_code == 0
    _copy_db(db, backup)
    with LogStore.open(db) as store:
        store.append([issue(i) for i in range(3, 6)], key=key)
    assert runner.invoke(cli, ["log", "checkpoint", str(db), "--key", str(key_file)]).exit_code == 0
    assert Path(f"{key_file}{STATE_SUFFIX}").exists()
    _restore(backup, db)
    with LogStore.open(db) as store:
        store.append([revoke(i) for i in range(3)], key=key)
    r = runner.invoke(cli, ["log", "checkpoint", str(db), "--key", str(key_file)])
    assert r.exit_code == 1
    assert "already signed size 6 with root" in r.output and "signer-fork" in r.output


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_mutated_state_files_parse_exactly_or_raise_malformed(data: st.DataObject) -> None:
    good = SignerState(origin=ORIGIN, key_id=b"\x01\x02\x03\x04", size=77, root_hash=bytes(range(32)))
    blob = mutate(data, good.to_bytes())
    try:
        state = SignerState.from_bytes(blob, what="state")
    except MalformedError:
        return
    assert state.to_bytes() == blob
