"""``certledger log …``: output, files and exit codes (``certledger demo``: test_demo.py)."""

from __future__ import annotations

import base64
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import serialization

from certledger.cli import cli
from ledger.keys import SigningKey, VerifierKey
from ledger.log import merkle, tlogproof
from ledger.log.store import LogStore
from tests.helpers import ORIGIN, issue

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def log(tmp_path: Path) -> tuple[Path, Path, VerifierKey]:
    """A log of 25 entries with checkpoints at 10 and 25, its key file and verifier key."""
    db, key_file = tmp_path / "log.db", tmp_path / "log-key.pem"
    result = run("log", "init", db, "--origin", ORIGIN, "--key", key_file, "--generate-key")
    assert result.exit_code == 0, result.output
    vkey = VerifierKey.parse(Path(f"{key_file}.pub").read_text().strip())
    key = SigningKey.load(key_file)
    with LogStore.open(db) as store:
        store.append([issue(i) for i in range(10)], key=key)
        store.checkpoint(key)
        store.append([issue(i) for i in range(10, 25)], key=key)
        store.checkpoint(key)
    return db, key_file, vkey


def test_init_generates_a_private_key_0600_and_a_verifier_key(tmp_path: Path) -> None:
    db, key_file = tmp_path / "a.db", tmp_path / "k.pem"
    result = run("log", "init", db, "--origin", ORIGIN, "--key", key_file, "--generate-key")
    assert result.exit_code == 0
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    vkey = VerifierKey.parse(Path(f"{key_file}.pub").read_text().strip())
    assert vkey.name == ORIGIN and vkey.public_key == SigningKey.load(key_file).public_key
    assert f"created log {db} for origin {ORIGIN}" in result.output
    assert f"log verifier key: {vkey}" in result.output
    with LogStore.open(db, readonly=True) as store:
        assert store.origin == ORIGIN and store.size == 0


def test_init_with_an_existing_key_and_refusals(tmp_path: Path) -> None:
    key_file = tmp_path / "k.pem"
    SigningKey.from_seed(bytes(32)).save(key_file)
    result = run("log", "init", tmp_path / "a.db", "--origin", ORIGIN, "--key", key_file)
    assert result.exit_code == 0
    assert not Path(f"{key_file}.pub").exists()
    result = run("log", "init", tmp_path / "a.db", "--origin", ORIGIN, "--key", key_file)
    assert result.exit_code == 1
    assert "file exists; refusing to overwrite it with a new log" in result.output
    result = run("log", "init", tmp_path / "b.db", "--origin", ORIGIN, "--key", key_file, "--generate-key")
    assert result.exit_code == 1
    assert "k.pem: file exists; refusing to overwrite a key" in result.output
    assert not (tmp_path / "b.db").exists()
    result = run("log", "init", tmp_path / "c.db", "--origin", "bad origin", "--key", key_file)
    assert result.exit_code == 1 and "contains a space" in result.output
    result = run("log", "init", tmp_path / "d.db", "--origin", ORIGIN, "--key", tmp_path / "none.pem")
    assert result.exit_code == 1 and "none.pem: cannot read the key file: No such file" in result.output


def test_init_encrypts_the_key_with_the_passphrase_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CERTLEDGER_KEY_PASSPHRASE", "correct horse")
    key_file = tmp_path / "k.pem"
    assert (
        run(
            "log", "init", tmp_path / "a.db", "--origin", ORIGIN, "--key", key_file, "--generate-key"
        ).exit_code
        == 0
    )
    assert b"ENCRYPTED" in key_file.read_bytes()
    assert run("log", "checkpoint", tmp_path / "a.db", "--key", key_file).exit_code == 0
    monkeypatch.delenv("CERTLEDGER_KEY_PASSPHRASE")
    result = run("log", "checkpoint", tmp_path / "a.db", "--key", key_file)
    assert result.exit_code == 1 and "a passphrase is needed" in result.output


def test_audit_passes_with_each_kind_of_public_key(
    log: tuple[Path, Path, VerifierKey], tmp_path: Path
) -> None:
    db, key_file, vkey = log
    pem = tmp_path / "pub.pem"
    pem.write_bytes(
        serialization.load_pem_private_key(key_file.read_bytes(), None)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    for key_arg in (str(vkey), f"{key_file}.pub", str(pem)):
        result = run("log", "audit", db, "--key", key_arg)
        assert result.exit_code == 0, result.output
        assert f"log {ORIGIN}: audit passed" in result.output
        assert "25 entries: chain, encoding and 25 signatures ok" in result.output
        assert "2 checkpoint(s), latest at size 25 verified" in result.output


def test_audit_refuses_bad_key_arguments(log: tuple[Path, Path, VerifierKey], tmp_path: Path) -> None:
    db, key_file, vkey = log
    result = run("log", "audit", db, "--key", key_file)
    assert result.exit_code == 1 and "is a private key; give the public key" in result.output
    result = run("log", "audit", db, "--key", "nonsense")
    assert result.exit_code == 1 and "no such file, and not a verifier key string" in result.output
    empty = tmp_path / "empty.pub"
    empty.write_text("# no keys here\n")
    result = run("log", "audit", db, "--key", empty)
    assert result.exit_code == 1 and "holds no verifier key" in result.output
    huge = tmp_path / "huge.pub"
    huge.write_text(f"{vkey}\n" * 2000)
    result = run("log", "audit", db, "--key", huge)
    assert result.exit_code == 1
    assert f"Error: {huge}: the public key file is larger than the 65536-byte limit" in result.output
    result = run("log", "audit", db)
    assert result.exit_code == 2 and "Missing option '--key'" in result.output


def test_audit_fails_naming_the_first_bad_entry(log: tuple[Path, Path, VerifierKey]) -> None:
    db, _, vkey = log
    conn = sqlite3.connect(db)
    (data,) = conn.execute("SELECT data FROM entries WHERE idx = 17").fetchone()
    conn.execute(
        "UPDATE entries SET data = ? WHERE idx = 17", (data[:-40] + bytes([data[-40] ^ 1]) + data[-39:],)
    )
    conn.commit()
    conn.close()
    result = run("log", "audit", db, "--key", str(vkey))
    assert result.exit_code == 1
    assert (
        "audit FAILED (first bad entry: 17): entry 17: statement signature does not verify" in result.output
    )


def test_audit_of_a_bad_file_fails_cleanly(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(os.urandom(4096))
    result = run("log", "audit", junk, "--key", "x+00000000+AA==")
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and "not a usable log database" in result.output
    result = run("log", "audit", tmp_path / "missing.db", "--key", "x")
    assert result.exit_code == 1 and "no such log database" in result.output


def test_checkpoint_prints_or_signs(log: tuple[Path, Path, VerifierKey], tmp_path: Path) -> None:
    db, key_file, vkey = log
    result = run("log", "checkpoint", db)
    assert result.exit_code == 0
    from ledger.log.checkpoint import open_checkpoint

    assert open_checkpoint(result.output.encode(), log_key=vkey).checkpoint.size == 25
    with LogStore.open(db) as store:
        store.append(issue(99), key=SigningKey.load(key_file))
    result = run("log", "checkpoint", db, "--key", key_file)
    assert result.exit_code == 0
    assert open_checkpoint(result.output.encode(), log_key=vkey).checkpoint.size == 26
    LogStore.create(tmp_path / "new.db", origin=ORIGIN).close()
    result = run("log", "checkpoint", tmp_path / "new.db")
    assert result.exit_code == 1 and "no checkpoint has been signed yet; sign one with --key" in result.output


def test_checkpoint_refuses_while_another_process_writes(log: tuple[Path, Path, VerifierKey]) -> None:
    db, key_file, _ = log
    with LogStore.open(db):
        result = run("log", "checkpoint", db, "--key", key_file)
    assert result.exit_code == 1 and "already open for writing" in result.output


def test_proof_is_a_tlog_proof_that_verifies(log: tuple[Path, Path, VerifierKey]) -> None:
    db, _, vkey = log
    with LogStore.open(db, readonly=True) as store:
        entries = list(store.entries())
    result = run("log", "proof", db, "--index", "13")
    assert result.exit_code == 0
    assert result.output.startswith("c2sp.org/tlog-proof@v1\nindex 13\n")
    proof = tlogproof.parse(result.output.encode())
    assert tlogproof.verify(proof, log_key=vkey, leaf=entries[13]).checkpoint.size == 25
    result = run("log", "proof", db, "--index", "3", "--size", "10")
    opened = tlogproof.verify(tlogproof.parse(result.output.encode()), log_key=vkey, leaf=entries[3])
    assert opened.checkpoint.size == 10
    result = run("log", "proof", db, "--index", "13", "--size", "10")
    assert result.exit_code == 1 and "entry 13 is beyond the tree size 10" in result.output
    result = run("log", "proof", db, "--index", "3", "--size", "11")
    assert result.exit_code == 1 and "no checkpoint has been signed for size 11" in result.output
    result = run("log", "proof", db, "--index", "-1")
    assert result.exit_code == 2


def test_consistency_states_sizes_and_roots(log: tuple[Path, Path, VerifierKey]) -> None:
    db, _, _ = log
    with LogStore.open(db, readonly=True) as store:
        roots = {n: store.root(n) for n in (7, 10, 25)}
    for args, old, new in ((["--old", "10"], 10, 25), (["--old", "7", "--new", "10"], 7, 10)):
        result = run("log", "consistency", db, *args)
        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        b64 = base64.b64encode
        assert lines[:5] == [
            f"origin {ORIGIN}",
            f"old size {old}",
            f"old root {b64(roots[old]).decode()}",
            f"new size {new}",
            f"new root {b64(roots[new]).decode()}",
        ]
        proof = [base64.b64decode(x) for x in lines[5:]]
        merkle.check_tree(proof, new, roots[new], old, roots[old])
    result = run("log", "consistency", db, "--old", "26")
    assert result.exit_code == 1 and "no consistency proof from size 26 to size 25" in result.output
    result = run("log", "consistency", db, "--old", "3", "--new", "30")
    assert result.exit_code == 1 and "tree size 30 is beyond the log's size 25" in result.output


def test_info(log: tuple[Path, Path, VerifierKey]) -> None:
    db, _, _ = log
    result = run("log", "info", db)
    assert result.exit_code == 0
    assert f"origin {ORIGIN}\nsize 25\n" in result.output and "latest checkpoint at size 25" in result.output


@pytest.mark.parametrize(
    "args",
    [[], ["log"], ["log", "init"], ["log", "audit"], ["log", "checkpoint"], ["log", "proof"],
     ["log", "consistency"], ["log", "info"], ["demo"]],
)  # fmt: skip
def test_every_command_has_help(args: list[str]) -> None:
    result = run(*args, "--help")
    assert result.exit_code == 0
    assert result.output.startswith("Usage: ")
    assert len(result.output.splitlines()) > 4


def test_the_real_command_line_in_a_subprocess(log: tuple[Path, Path, VerifierKey]) -> None:
    db, _, vkey = log
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ok = subprocess.run(
        [sys.executable, "-m", "certledger", "log", "audit", str(db), "--key", str(vkey)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert ok.returncode == 0, ok.stderr
    assert "audit passed" in ok.stdout and ok.stderr == ""
    conn = sqlite3.connect(db)
    conn.execute("UPDATE hashes SET hash = ? WHERE idx = 3", (bytes(32),))
    conn.commit()
    conn.close()
    bad = subprocess.run(
        [sys.executable, "-m", "certledger", "log", "audit", str(db), "--key", str(vkey)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert bad.returncode == 1
    assert "audit FAILED (first bad entry: 2): entry 2: stored hash 3" in bad.stderr
    assert bad.stdout == ""
