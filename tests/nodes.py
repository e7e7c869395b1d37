"""A consortium of nodes for tests: data directories, apps, and in-process routing between them."""

from __future__ import annotations

import base64
import dataclasses
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

import httpx
from click.testing import CliRunner

from certledger.cli import cli
from ledger.keys import SigningKey
from ledger.log.statement import SignedStatement, Statement
from ledger.trust.policy import Member, Policy
from ledger.trust.policy_doc import sign_proposal
from node.config import NodeConfig, load_config
from tests.fixtures import consortium as fx

#: Each member's log key and witness key (the fixture consortium's).
KEYS: dict[str, tuple[SigningKey, SigningKey]] = {
    fx.AMR.id: (fx.AMR_KEY, fx.key(51)),
    fx.HEALTH.id: (fx.HEALTH_KEY, fx.key(52)),
    fx.PSB.id: (fx.PSB_KEY, fx.key(53)),
}
A, B, C = fx.AMR.id, fx.HEALTH.id, fx.PSB.id


def sign_policy(policy: Policy) -> bytes:
    """The policy as a document signed by the fixture's governance key."""
    return sign_proposal(policy, [("governance.example.gov.cn", fx.GOVERNANCE_KEY)])


#: Nodes judge their policy by the real clock, so their policy expires half a year from
#: now (a version is issued at most a year before it expires, and never in the future).
NODE_POLICY_EXPIRES = int(time.time()) + 180 * 86400


def policy_with_urls(urls: dict[str, str], *, version: int = 1, expires: int = NODE_POLICY_EXPIRES) -> Policy:
    """The fixture policy with the given base URLs."""
    members: list[Member] = [
        dataclasses.replace(m, base_url=urls.get(m.id, m.base_url)) for m in (fx.AMR, fx.HEALTH, fx.PSB)
    ]
    return fx.policy(version=version, expires=expires, members=tuple(members))


def init_node(tmp: Path, member_id: str, doc: bytes) -> Path:
    """``certledger node init`` with the member's fixture keys imported; returns the data dir."""
    data = tmp / member_id
    keys = tmp / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    lk, wk = KEYS[member_id]
    lpath, wpath = keys / f"{member_id}.log.pem", keys / f"{member_id}.witness.pem"
    if not lpath.exists():
        lk.save(lpath)
        wk.save(wpath)
    policy_file = tmp / "policy.note"
    policy_file.write_bytes(doc)
    result = CliRunner().invoke(
        cli,
        [
            *("node", "init", "--policy", str(policy_file), "--member", member_id, "--data", str(data)),
            *("--log-key", str(lpath), "--witness-key", str(wpath)),
        ],
    )
    assert result.exit_code == 0, result.output
    return data


class Router(httpx.AsyncBaseTransport):
    """Routes requests to in-process apps by host name; any other host is refused."""

    def __init__(self) -> None:
        self.apps: dict[str, httpx.AsyncBaseTransport] = {}
        self.down: set[str] = set()
        self.requests: list[str] = []

    def add(self, base_url: str, transport: httpx.AsyncBaseTransport) -> None:
        self.apps[urllib.parse.urlsplit(base_url).netloc] = transport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.netloc.decode()
        self.requests.append(f"{request.method} {request.url}")
        if host not in self.apps or host in self.down:
            raise httpx.ConnectError(f"{host} is down", request=request)
        return await self.apps[host].handle_async_request(request)


def config(data: Path, **kw: object) -> NodeConfig:
    """The node's configuration, with a short checkpoint interval."""
    kw.setdefault("checkpoint_interval", 0.05)
    kw.setdefault("mirror", False)  # in process, mirrors are synced by the test itself
    kw.setdefault("gossip", False)  # and gossip rounds are run by the test itself
    record_policy = kw.pop("record_policy", False)  # tests count entries from 0
    cfg = load_config(data, **kw)  # type: ignore[arg-type]
    cfg.record_policy = bool(record_policy)
    cfg.policy_interval = 0.2
    return cfg


def statements_body(stmts: Sequence[Statement], key: SigningKey, kid: bytes) -> dict[str, object]:
    """The JSON body of ``POST /v1/statements``."""
    out = []
    for s in stmts:
        signed = SignedStatement.sign(s, key=key, key_id=kid)
        out.append(
            {
                "statement": base64.b64encode(signed.statement_bytes).decode(),
                "key_id": signed.key_id.hex(),
                "signature": base64.b64encode(signed.signature).decode(),
            }
        )
    return {"statements": out}
