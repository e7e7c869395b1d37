"""Clerks, tokens and the operation trail: the command line and the stores underneath."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from certledger.cli import cli
from ledger.errors import AuditError, MalformedError
from node import trail
from node.clerks import Role, TokenError, authenticate
from node.private import PAGE_SIZE, PrivateStore
from tests import nodes, window


def run(*args: str) -> str:
    r = CliRunner().invoke(cli, list(args))
    assert r.exit_code == 0, r.output
    return r.output


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return window.make_node(tmp_path)


def test_add_clerk_prints_a_token_once_and_stores_only_its_hash(data: Path) -> None:
    token = window.add_clerk(data, "王芳", "issue")
    prefix, member, _, secret = token.split(".")
    assert (prefix, member) == ("clk1", nodes.A) and len(secret) == 43  # 256 bits
    raw = b"".join(p.read_bytes() for p in data.iterdir() if p.name.startswith("private.db"))
    assert token.encode() not in raw and secret.encode() not in raw
    store = PrivateStore(data / "private.db")
    try:
        clerk = authenticate(store, member_id=nodes.A, authorization=f"Bearer {token}")
        assert clerk.name == "王芳" and clerk.role is Role.ISSUE and clerk.operator.startswith("op:")
    finally:
        store.close()


def test_two_clerks_get_different_tokens_and_operator_ids(data: Path) -> None:
    a, b = window.add_clerk(data, "a", "issue"), window.add_clerk(data, "b", "issue")
    assert a != b
    lines = run("node", "list-clerks", "--data", str(data)).strip().splitlines()
    ops = [line.split("\t")[2] for line in lines if "\t" in line]
    assert len(set(ops)) == 2


def test_duplicate_name_refused(data: Path) -> None:
    window.add_clerk(data, "a", "issue")
    r = CliRunner().invoke(cli, ["node", "add-clerk", "a", "--role", "admin", "--data", str(data)])
    assert r.exit_code == 1 and "already exists" in r.output


def test_rotate_and_remove_stop_old_tokens(data: Path) -> None:
    old = window.add_clerk(data, "a", "revoke")
    new = run("node", "rotate-token", "a", "--data", str(data)).strip().splitlines()[-1]
    store = PrivateStore(data / "private.db")
    try:
        with pytest.raises(TokenError, match="not valid here"):
            authenticate(store, member_id=nodes.A, authorization=f"Bearer {old}")
        assert authenticate(store, member_id=nodes.A, authorization=f"Bearer {new}").name == "a"
        run("node", "remove-clerk", "a", "--data", str(data))
        with pytest.raises(TokenError, match="not valid here"):
            authenticate(store, member_id=nodes.A, authorization=f"Bearer {new}")
    finally:
        store.close()
    assert "0 clerk(s)" in run("node", "list-clerks", "--data", str(data))


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "no bearer token"),
        ("Basic abc", "must be 'Bearer <clerk token>'"),
        ("Bearer not-a-token", "not a clerk token"),
        ("Bearer clk1." + nodes.B + ".1." + "A" * 43, "not a token of this department's node"),
        ("Bearer clk1." + nodes.A + ".1." + "A" * 43, "not valid here"),
        ("Bearer clk1." + nodes.A + ".99." + "A" * 43, "not valid here"),
    ],
)
def test_bad_tokens_named(data: Path, header: str | None, message: str) -> None:
    window.add_clerk(data, "a", "admin")
    store = PrivateStore(data / "private.db")
    try:
        with pytest.raises(TokenError, match=message):
            authenticate(store, member_id=nodes.A, authorization=header)
    finally:
        store.close()


def test_trail_records_clerk_management_and_verifies(data: Path) -> None:
    window.add_clerk(data, "a", "issue")
    run("node", "rotate-token", "a", "--data", str(data))
    run("node", "remove-clerk", "a", "--data", str(data))
    lines = [
        json.loads(x) for x in run("node", "trail", "--data", str(data)).splitlines() if x.startswith("{")
    ]
    assert [x["action"] for x in lines] == ["add-clerk", "rotate-token", "remove-clerk"]
    assert all(x["target"] == ["a"] for x in lines)
    out = run("node", "trail", "--data", str(data), "--verify")
    assert "trail verified: 3 event(s), head 3:" in out
    head = out.strip().split("head ")[1]
    window.add_clerk(data, "b", "issue")
    assert "4 event(s)" in run("node", "trail", "--data", str(data), "--verify", "--expect", head)
    assert run("node", "trail", "--data", str(data), "--since", "2000-01-01").count("{") == 4
    assert run("node", "trail", "--data", str(data), "--since", "2999-01-01").count("{") == 0


def _tamper(data: Path, sql: str) -> None:
    conn = sqlite3.connect(data / "private.db")
    conn.execute(sql)
    conn.commit()
    conn.close()


def _verify_fails(data: Path, *extra: str) -> str:
    r = CliRunner().invoke(cli, ["node", "trail", "--data", str(data), "--verify", *extra])
    assert r.exit_code == 1
    return r.output


def test_trail_event_rewritten_is_caught(data: Path) -> None:
    for n in range(3):
        window.add_clerk(data, f"c{n}", "issue")
    conn = sqlite3.connect(data / "private.db")
    (blob,) = conn.execute("SELECT data FROM trail WHERE seq = 1").fetchone()
    conn.close()
    forged = blob.replace(b"c1", b"c9")
    conn = sqlite3.connect(data / "private.db")
    conn.execute("UPDATE trail SET data = ? WHERE seq = 1", (forged,))
    conn.commit()
    conn.close()
    assert "trail event 1 was changed" in _verify_fails(data)


def test_trail_event_rewritten_with_its_hash_breaks_the_chain(data: Path) -> None:
    for n in range(3):
        window.add_clerk(data, f"c{n}", "issue")
    conn = sqlite3.connect(data / "private.db")
    (blob,) = conn.execute("SELECT data FROM trail WHERE seq = 1").fetchone()
    forged = blob.replace(b"c1", b"c9")
    from ledger.log import merkle

    conn.execute("UPDATE trail SET data = ?, hash = ? WHERE seq = 1", (forged, merkle.leaf_hash(forged)))
    conn.commit()
    conn.close()
    assert "trail event 2 does not chain to event 1" in _verify_fails(data)


def test_trail_event_removed_is_caught(data: Path) -> None:
    for n in range(3):
        window.add_clerk(data, f"c{n}", "issue")
    _tamper(data, "DELETE FROM trail WHERE seq = 1")
    assert "trail event 1 is missing" in _verify_fails(data)


def test_trail_truncated_after_a_noted_head_is_caught(data: Path) -> None:
    for n in range(3):
        window.add_clerk(data, f"c{n}", "issue")
    head = run("node", "trail", "--data", str(data), "--verify").strip().split("head ")[1]
    _tamper(data, "DELETE FROM trail WHERE seq = 2")
    assert "events were removed" in _verify_fails(data, "--expect", head)


def test_trail_rewritten_wholesale_after_a_noted_head_is_caught(data: Path) -> None:
    window.add_clerk(data, "c0", "issue")
    head = run("node", "trail", "--data", str(data), "--verify").strip().split("head ")[1]
    _tamper(data, "DELETE FROM trail")
    window.add_clerk(data, "c1", "issue")  # a fresh, self-consistent chain
    assert "the trail was rewritten" in _verify_fails(data, "--expect", head)


def test_update_policy_is_in_the_trail(data: Path, tmp_path: Path) -> None:

    doc = window.policy_doc(version=2)
    (tmp_path / "v2.note").write_bytes(doc)
    run("node", "update-policy", str(tmp_path / "v2.note"), "--data", str(data))
    out = run("node", "trail", "--data", str(data))
    assert '"action": "update-policy"' in out and "installed policy version 2" in out


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_trail_head_parser_is_strict(text: str) -> None:
    try:
        size, root = trail.parse_head(text)
    except MalformedError:
        return
    assert text == f"{size}:{root.hex()}" or text.lower() == f"{size}:{root.hex()}"


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_trail_refuses_random_event_bytes(tmp_path_factory: pytest.TempPathFactory, blob: bytes) -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute(trail.SCHEMA)
    from ledger.log import merkle

    conn.execute("INSERT INTO trail VALUES (0, ?, ?)", (blob, merkle.leaf_hash(blob)))
    with pytest.raises(AuditError, match="trail event 0"):
        trail.verify(conn)


def test_a_new_private_store_has_large_pages_and_an_old_one_keeps_its_own(tmp_path: Path) -> None:
    fresh = PrivateStore(tmp_path / "new.db")
    try:
        assert fresh.query("PRAGMA page_size") == [(PAGE_SIZE,)]
    finally:
        fresh.close()
    old = sqlite3.connect(tmp_path / "old.db")
    old.execute("PRAGMA page_size=4096")
    old.execute("PRAGMA journal_mode=WAL")
    old.execute("CREATE TABLE kept (a)")
    old.execute("INSERT INTO kept VALUES (1)")
    old.commit()
    old.close()
    store = PrivateStore(tmp_path / "old.db")
    try:
        assert store.query("PRAGMA page_size") == [(4096,)]
        assert store.query("SELECT a FROM kept") == [(1,)]
    finally:
        store.close()
