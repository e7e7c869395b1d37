"""``certledger node rotate-key``: a stopped node switches to a log key the policy lists."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import stat
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from certledger.cli import cli
from ledger.keys import SIG_TYPE_ED25519, SigningKey, VerifierKey, key_id
from ledger.log.checkpoint import open_checkpoint
from ledger.log.signer import LogSigner
from ledger.log.statement import SignedStatement
from ledger.log.store import LogStore
from ledger.trust.policy import LogKey, Policy
from node.app import create_app
from tests import nodes
from tests.fixtures import consortium as fx
from tests.helpers import issue

ORIGIN = fx.AMR.origin
OLD_KEY = nodes.KEYS[nodes.A][0]
NEW_KEY = fx.key(77)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def kid(key: SigningKey) -> bytes:
    return key_id(ORIGIN, SIG_TYPE_ED25519, key.public_key.raw)


def cli_run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["node", *args])


def policy_v1() -> Policy:
    return nodes.policy_with_urls({})


def install_rotation(tmp: Path, data: Path, new: SigningKey) -> None:
    """Policy version 2: the old key's window ends, ``new`` starts (a second ago)."""
    v1 = policy_v1()
    now = int(time.time()) - 1
    amr = v1.require_member(nodes.A)
    ended = [dataclasses.replace(k, valid_until=now) if k.valid_until is None else k for k in amr.log_keys]
    keys = (*ended, LogKey(public_key=new.public_key, valid_from=now))
    members = tuple(dataclasses.replace(m, log_keys=keys) if m.id == nodes.A else m for m in v1.members)
    v2 = dataclasses.replace(v1, version=2, members=members)
    doc = tmp / "policy-v2.note"
    doc.write_bytes(nodes.sign_policy(v2))
    r = cli_run("update-policy", str(doc), "--data", str(data))
    assert r.exit_code == 0, r.output


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """Node A's data directory with 5 entries and a signed checkpoint, node stopped."""
    d = nodes.init_node(tmp_path, nodes.A, nodes.sign_policy(policy_v1()))
    with LogStore.open(d / "log.db") as store:
        now = int(time.time())
        signed = [
            SignedStatement.sign(issue(i, time=now), key=OLD_KEY, key_id=kid(OLD_KEY)) for i in range(5)
        ]
        store.append(signed, key=OLD_KEY)
        store.checkpoint(LogSigner.beside(d / "log.key", key=OLD_KEY))
    return d


def test_import_rotates_keeps_the_old_key_and_the_node_signs_with_the_new(tmp_path: Path, data: Path) -> None:
    old_state = (data / "log.key.last-checkpoint").read_bytes()
    old_pem = (data / "log.key").read_bytes()
    install_rotation(tmp_path, data, NEW_KEY)
    new_file = tmp_path / "new.pem"
    NEW_KEY.save(new_file)
    r = cli_run("rotate-key", "--data", str(data), "--key", str(new_file))
    assert r.exit_code == 0, r.output
    assert f"log key is now {kid(NEW_KEY).hex()}" in r.output
    assert "extends size 5" in r.output
    retired = data / "retired-keys" / kid(OLD_KEY).hex()
    assert (retired / "log.key").read_bytes() == old_pem
    assert (retired / "log.key.last-checkpoint").read_bytes() == old_state
    assert stat.S_IMODE(os.stat(data / "log.key").st_mode) == 0o600
    assert SigningKey.load(data / "log.key").public_key == NEW_KEY.public_key
    state = LogSigner.beside(data / "log.key", key=NEW_KEY).last()
    assert state is not None and state.size == 5 and state.key_id == kid(NEW_KEY)
    asyncio.run(_run_and_sign(data, NEW_KEY))


async def _run_and_sign(data: Path, key: SigningKey) -> None:
    cfg = nodes.config(data, submit=False)
    app = create_app(config=cfg)
    vkey = VerifierKey(name=ORIGIN, public_key=key.public_key, sig_type=SIG_TYPE_ED25519)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://node") as c,
    ):
        body = nodes.statements_body([issue(100, time=int(time.time()))], key, kid(key))
        r = await c.post("/v1/statements", json=body)
        assert r.status_code == 200, r.text
        assert r.json()["indexes"] == [5]
        for _ in range(200):
            r = await c.get("/checkpoint")
            if r.status_code == 200 and open_checkpoint(r.content, log_key=vkey).checkpoint.size == 6:
                return
            await asyncio.sleep(0.05)
    raise AssertionError("the node signed no checkpoint of size 6 with the new key")


def test_generate_prints_the_key_then_rotates_once_the_policy_lists_it(tmp_path: Path, data: Path) -> None:
    r = cli_run("rotate-key", "--data", str(data), "--generate")
    assert r.exit_code == 0, r.output
    staged = data / "log.key.next"
    assert stat.S_IMODE(os.stat(staged).st_mode) == 0o600
    new = SigningKey.load(staged)
    vkey = VerifierKey(name=ORIGIN, public_key=new.public_key, sig_type=SIG_TYPE_ED25519)
    assert f"log key: {vkey}" in r.output
    assert f"rotate-log-key={nodes.A}:{vkey}" in r.output
    assert "node update-policy" in r.output
    # not in the policy yet: rotating now is refused, nothing changes
    r = cli_run("rotate-key", "--data", str(data))
    assert r.exit_code != 0
    assert SigningKey.load(data / "log.key").public_key == OLD_KEY.public_key
    install_rotation(tmp_path, data, new)
    r = cli_run("rotate-key", "--data", str(data))
    assert r.exit_code == 0, r.output
    assert not staged.exists()
    assert SigningKey.load(data / "log.key").public_key == new.public_key
    assert (data / "retired-keys" / kid(OLD_KEY).hex() / "log.key").exists()
    asyncio.run(_run_and_sign(data, new))


def test_a_key_the_policy_does_not_list_is_refused_with_what_to_do(tmp_path: Path, data: Path) -> None:
    new_file = tmp_path / "new.pem"
    NEW_KEY.save(new_file)
    r = cli_run("rotate-key", "--data", str(data), "--key", str(new_file))
    assert r.exit_code != 0
    msg = str(r.exception) + r.output
    assert "is not yet one of hangzhou-xihu-amr's log keys in policy version 1" in msg
    assert "rotate-log-key=" in msg and "update-policy" in msg
    assert SigningKey.load(data / "log.key").public_key == OLD_KEY.public_key
    assert not (data / "retired-keys").exists()


def test_refused_while_the_node_runs(tmp_path: Path, data: Path) -> None:
    install_rotation(tmp_path, data, NEW_KEY)
    new_file = tmp_path / "new.pem"
    NEW_KEY.save(new_file)
    with LogStore.open(data / "log.db"):  # the running node holds the writer lock
        r = cli_run("rotate-key", "--data", str(data), "--key", str(new_file))
    assert r.exit_code != 0
    assert "the node is running; stop it first (rule: node-running)" in str(r.exception) + r.output
    assert SigningKey.load(data / "log.key").public_key == OLD_KEY.public_key
    assert not (data / "retired-keys").exists()


def test_rotating_to_the_current_key_is_refused(data: Path) -> None:
    r = cli_run("rotate-key", "--data", str(data), "--key", str(data / "log.key"))
    assert r.exit_code != 0
    assert "rule: same-key" in str(r.exception) + r.output
