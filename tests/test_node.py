"""The node in process: public log (tiles), sequencing, witnessing by peers, policy, operations."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import re
import socket
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from certledger.cli import cli
from ledger.errors import ConflictError, PolicyError
from ledger.keys import SIG_TYPE_ED25519, SigningKey, key_id
from ledger.log import merkle, note
from ledger.log.alert import check_alert
from ledger.log.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from ledger.log.statement import Entry, Kind
from ledger.log.store import LogStore
from ledger.log.witness import origin_hash
from ledger.replica import tiles
from node.app import IMMUTABLE, create_app
from node.config import load_config
from node.static import TilesDir
from tests import nodes
from tests.fixtures import consortium as fx
from tests.helpers import T0, issue

pytestmark = pytest.mark.anyio

A_KEY = nodes.KEYS[nodes.A][0]
A_KID = key_id(fx.AMR.origin, SIG_TYPE_ED25519, A_KEY.public_key.raw)
LOG_VKEY = fx.AMR.log_verifier_key(fx.AMR.log_keys[1])


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Net:
    """Three nodes in one process, talking through a router."""

    def __init__(self, tmp: Path, *, quorum: int = 1, tiles_dir: Path | None = None) -> None:
        policy = nodes.policy_with_urls({})
        if quorum != 1:
            policy = dataclasses.replace(policy, witness_quorum=quorum)
        self.doc = nodes.sign_policy(policy)
        self.router = nodes.Router()
        self.apps: dict[str, FastAPI] = {}
        self.tamper: str | None = None  # tiles from this host reach the mirrors with a bit flipped
        self._sync_clients: dict[str, TestClient] = {}
        for m in (nodes.A, nodes.B, nodes.C):
            d = nodes.init_node(tmp, m, self.doc)
            cfg = nodes.config(d, transport=self.router, tiles_dir=tiles_dir if m == nodes.A else None)
            cfg.max_backoff = 0.2
            cfg.mirror_client = httpx.Client(transport=httpx.MockTransport(self._blocking))
            app = create_app(config=cfg)
            self.apps[m] = app
            self.router.add(cfg.member.base_url, httpx.ASGITransport(app=app))

    def _blocking(self, request: httpx.Request) -> httpx.Response:
        """What the mirrors' blocking client gets: the in-process node for that host."""
        host = request.url.host
        member = host.removesuffix(".example.gov.cn")
        if member not in self.apps:
            raise httpx.ConnectError(f"{host} is not in the test network", request=request)
        client = self._sync_clients.setdefault(member, TestClient(self.apps[member]))
        r = client.request(request.method, request.url.raw_path.decode(), content=request.content)
        body = r.content
        if host == self.tamper and "/tile/" in request.url.path and body:
            body = bytes([body[0] ^ 1]) + body[1:]
        # the body is decoded already: pass it on without its content encoding
        headers = {k: v for k, v in r.headers.items() if k not in ("content-encoding", "content-length")}
        return httpx.Response(r.status_code, headers=headers, content=body)

    def client(self, member: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.apps[member]), base_url="http://node")


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[Net]:
    n = Net(tmp_path, tiles_dir=tmp_path / "static")
    a = n.apps[nodes.A]
    async with a.router.lifespan_context(a):
        yield n


async def append(c: httpx.AsyncClient, serials: Sequence[int]) -> list[int]:
    r = await c.post("/v1/statements", json=nodes.statements_body([issue(i) for i in serials], A_KEY, A_KID))
    assert r.status_code == 200, r.text
    indexes: list[int] = r.json()["indexes"]
    return indexes


async def wait_cosigned(c: httpx.AsyncClient, size: int, cosigners: int = 2) -> bytes:
    for _ in range(200):
        r = await c.get("/checkpoint")
        if r.status_code == 200:
            opened = open_checkpoint(
                r.content, log_key=LOG_VKEY, witnesses=[fx.HEALTH.witness_key, fx.PSB.witness_key]
            )
            if opened.checkpoint.size >= size and len(opened.cosignatures) >= cosigners:
                return r.content
        await asyncio.sleep(0.05)
    raise AssertionError(f"no checkpoint of size {size} with {cosigners} cosignatures")


async def test_appends_are_witnessed_and_served_as_tiles(net: Net) -> None:
    async with net.client(nodes.A) as c:
        assert await append(c, range(300)) == list(range(300))
        assert await append(c, range(300, 310)) == list(range(300, 310))
        note = await wait_cosigned(c, 310)
        cp = open_checkpoint(note, log_key=LOG_VKEY).checkpoint
        r = await c.get("/checkpoint")
        assert r.headers["cache-control"] == "no-cache"
        assert r.headers["content-type"] == "text/plain; charset=utf-8"

        async def fetch_all(ts: Sequence[tiles.Tile]) -> list[bytes]:
            out = []
            for t in ts:
                resp = await c.get("/" + t.path)
                assert resp.status_code == 200, t.path
                assert resp.headers["content-type"] == "application/octet-stream"
                want = IMMUTABLE if t.is_full else "no-cache"
                assert resp.headers["cache-control"] == want
                out.append(resp.content)
            return out

        # A client holding only the checkpoint checks every tile and entry bundle.
        all_tiles = list(tiles.tiles_for_size(cp.size))
        data = dict(zip(all_tiles, await fetch_all(all_tiles), strict=True))
        read = tiles.tile_hash_reader(cp.size, cp.root_hash, lambda ts: [data[t] for t in ts])
        assert merkle.tree_hash(cp.size, read) == cp.root_hash
        for t in all_tiles:
            if t.is_entries:
                level0 = data[tiles.Tile(level=0, index=t.index, width=t.width)]
                tiles.check_bundle(t, data[t], level0)
        # Tiles beyond the log are 404, bad paths 400.
        assert (await c.get("/tile/0/002")).status_code == 404
        assert (await c.get("/tile/0/001.p/255")).status_code == 404
        assert (await c.get("/tile/0/x000/001")).status_code == 400
        assert (await c.get("/tile/entries/1")).status_code == 400


async def test_the_static_copy_matches_what_is_served(net: Net, tmp_path: Path) -> None:
    async with net.client(nodes.A) as c:
        await append(c, range(520))
        note = await wait_cosigned(c, 520)
        static = tmp_path / "static"
        for _ in range(100):
            if (static / "checkpoint").exists() and (static / "checkpoint").read_bytes().startswith(
                note.split(b"\n\n")[0]
            ):
                break
            await asyncio.sleep(0.05)
        cp = open_checkpoint((static / "checkpoint").read_bytes(), log_key=LOG_VKEY).checkpoint
        assert cp.size == 520
        for t in tiles.tiles_for_size(cp.size):
            assert (static / t.path).read_bytes() == (await c.get("/" + t.path)).content, t.path


async def test_witness_down_delays_only_the_quorum(tmp_path: Path) -> None:
    n = Net(tmp_path, quorum=2)
    n.router.down.add("hangzhou-psb.example.gov.cn")
    a = n.apps[nodes.A]
    async with a.router.lifespan_context(a), n.client(nodes.A) as c:
        await append(c, range(5))  # issuing goes on
        await asyncio.sleep(0.5)
        r = await c.get("/checkpoint")
        cosigs = open_checkpoint(r.content, log_key=LOG_VKEY, witnesses=[fx.HEALTH.witness_key]).cosignatures
        assert len(cosigs) == 0  # not published yet: only the log-signed checkpoint is served
        assert (
            'certledger_witness_submissions_total{outcome="error",peer="hangzhou-psb"}'
            in (await c.get("/metrics")).text
        )
        n.router.down.clear()
        await wait_cosigned(c, 5, cosigners=2)


class _ExtraLine(httpx.AsyncBaseTransport):
    """A witness whose add-checkpoint answers carry one more signature line (another key's)."""

    LINE = note.Signature(name="witness.example/second-key", key_id=b"\x01\x02\x03\x04", data=b"\x05" * 72)

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        r = await self.inner.handle_async_request(request)
        if request.url.path != "/add-checkpoint":
            return r
        body = await r.aread()
        if r.status_code == 200:
            body += self.LINE.to_line().encode()
        return httpx.Response(r.status_code, headers=r.headers, content=body)


async def test_extra_lines_in_a_witness_answer_are_ignored(tmp_path: Path) -> None:
    # tlog-witness: clients ignore cosignatures from unknown keys. Publishing them made
    # the store refuse the cosigned checkpoint, and the node never published it.
    n = Net(tmp_path)
    for host in ("hangzhou-health.example.gov.cn", "hangzhou-psb.example.gov.cn"):
        n.router.apps[host] = _ExtraLine(n.router.apps[host])
    a = n.apps[nodes.A]
    async with a.router.lifespan_context(a), n.client(nodes.A) as c:
        await append(c, range(5))
        served = await wait_cosigned(c, 5, cosigners=2)
        names = [s.name for s in note.parse(served).signatures]
        assert _ExtraLine.LINE.name not in names and len(names) == 3


async def test_graceful_shutdown_signs_what_it_acknowledged(tmp_path: Path) -> None:
    n = Net(tmp_path)
    a = n.apps[nodes.A]
    a.state.node.config.checkpoint_interval = 3600.0  # only shutdown will sign
    async with a.router.lifespan_context(a), n.client(nodes.A) as c:
        await append(c, range(7))
    with LogStore.open(tmp_path / nodes.A / "log.db", readonly=True) as store:
        latest = store.latest_checkpoint()
        assert latest is not None and latest.size == 7


async def test_operations_endpoints(net: Net) -> None:
    async with net.client(nodes.A) as c:
        await append(c, range(3))
        await wait_cosigned(c, 3, cosigners=1)
        health = (await c.get("/healthz")).json()
        assert health == {"status": "ok", "member": nodes.A, "size": 3}
        text = (await c.get("/metrics")).text
        assert "certledger_log_size 3.0" in text
        assert re.search(r"certledger_checkpoint_cosignatures [12]\.0", text)
        assert re.search(r"certledger_checkpoint_age_seconds \d", text)
        assert "certledger_alerts 0.0" in text
        r = await c.get("/policy/latest")
        assert r.status_code == 200 and r.content == net.doc
        assert (await c.get("/policy/1")).content == net.doc
        assert (await c.get("/policy/2")).status_code == 404
        assert (await c.get("/v1/alerts")).json() == []


async def test_statements_must_carry_the_log_key(net: Net) -> None:
    other = SigningKey.from_seed(b"o" * 32)
    async with net.client(nodes.A) as c:
        r = await c.post("/v1/statements", json=nodes.statements_body([issue(1)], other, A_KID))
        assert r.status_code == 400 and "signature does not verify" in r.text
        r = await c.post("/v1/statements", json=nodes.statements_body([issue(1)], other, b"abcd"))
        assert r.status_code == 400 and "not signed with this log's key" in r.text
        r = await c.post("/v1/statements", content=b"[1]")
        assert r.status_code == 400
        assert (await c.get("/healthz")).json()["size"] == 0


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.text(max_size=60))
async def test_random_tile_paths(net: Net, path: str) -> None:
    async with net.client(nodes.A) as c:
        try:
            r = await c.get("/tile/" + path)
        except httpx.InvalidURL:
            return
        assert r.status_code in (400, 404)


async def test_a_replayed_statement_is_refused_and_others_still_go_in(net: Net) -> None:
    # Signed statements are public in the tiles; anyone could post one back. A replay
    # is a 409 and appends nothing, and does not fail the requests it is batched with.
    async with net.client(nodes.A) as c:
        assert await append(c, range(3)) == [0, 1, 2]
        replay = nodes.statements_body([issue(1)], A_KEY, A_KID)
        for _ in range(3):
            fresh = [issue(i) for i in range(10 + _ * 5, 15 + _ * 5)]
            r_replay, r_fresh = await asyncio.gather(
                c.post("/v1/statements", json=replay),
                c.post("/v1/statements", json=nodes.statements_body(fresh, A_KEY, A_KID)),
            )
            assert r_replay.status_code == 409 and "already in the log, at index 1" in r_replay.text
            assert r_fresh.status_code == 200 and len(r_fresh.json()["indexes"]) == 5
        r = await c.post("/v1/statements", json=nodes.statements_body([issue(2, time=T0 + 5)], A_KEY, A_KID))
        assert r.status_code == 409 and "which entry 2 already issues" in r.text


def test_tiles_no_checkpoint_covers_are_not_served(tmp_path: Path) -> None:
    # A full tile is cached for a year: it is served only once a signed checkpoint
    # covers it, as the static copy does.
    data = nodes.init_node(tmp_path, nodes.A, nodes.sign_policy(nodes.policy_with_urls({})))
    app = create_app(config=nodes.config(data, checkpoint_interval=3600, submit=False))
    key = nodes.KEYS[nodes.A][0]
    with TestClient(app) as c:
        kid = app.state.node.store.key_id(key)
        r = c.post("/v1/statements", json=nodes.statements_body([issue(i) for i in range(300)], key, kid))
        assert r.status_code == 200
        for path in ("/tile/0/000", "/tile/entries/000", "/tile/0/001.p/44", "/tile/1/000.p/1"):
            r = c.get(path)
            assert r.status_code == 404 and "not in the log yet" in r.text
    # shutting down signed what was acknowledged: now the tiles are there
    with TestClient(create_app(config=nodes.config(data, submit=False))) as c:
        r = c.get("/tile/0/000")
        assert r.status_code == 200 and r.headers["cache-control"] == IMMUTABLE
        assert c.get("/tile/0/001.p/44").status_code == 200


def test_entry_bundles_are_gzipped_for_clients_that_accept_it(tmp_path: Path) -> None:
    # tlog-tiles: entry bundles SHOULD be compressed at the HTTP layer.
    data = nodes.init_node(tmp_path, nodes.A, nodes.sign_policy(nodes.policy_with_urls({})))
    key = nodes.KEYS[nodes.A][0]
    with LogStore.open(data / "log.db") as store:
        store.append([issue(i) for i in range(300)], key=key)
        store.checkpoint(key)
    with TestClient(create_app(config=nodes.config(data, submit=False))) as c:
        for path in ("/tile/entries/000", "/tile/entries/001.p/44"):
            plain = c.get(path, headers={"Accept-Encoding": "identity"})
            assert plain.status_code == 200 and "content-encoding" not in plain.headers
            for _ in range(2):  # the second time from the cache
                packed = c.get(path, headers={"Accept-Encoding": "gzip"})
                assert (
                    packed.headers["content-encoding"] == "gzip"
                    and packed.headers["vary"] == "Accept-Encoding"
                )
                assert packed.content == plain.content  # decoded by the client
            refused = c.get(path, headers={"Accept-Encoding": "gzip;q=0, identity"})
            assert "content-encoding" not in refused.headers
        hashes = c.get("/tile/0/000", headers={"Accept-Encoding": "gzip"})
        assert "content-encoding" not in hashes.headers  # hashes do not compress


def test_tiles_are_written_once(tmp_path: Path) -> None:
    with LogStore.create(tmp_path / "log.db", origin=fx.AMR.origin) as store:
        store.append([issue(i) for i in range(257)], key=A_KEY)
        d = TilesDir(tmp_path / "static")
        assert d.write_tiles(store, 257) == 5  # bundles 000 and 001.p/1, tiles 0/000, 0/001.p/1, 1/000.p/1
        assert d.write_tiles(store, 257) == 0
        full = tmp_path / "static" / "tile" / "0" / "000"
        full.write_bytes(bytes(8192))
        d2 = TilesDir(tmp_path / "static")
        with pytest.raises(ConflictError, match="a different full tile is already written"):
            d2.write_tiles(store, 257)


def test_refuses_expired_policy_and_unlisted_keys(tmp_path: Path) -> None:
    expired = nodes.sign_policy(nodes.policy_with_urls({}, expires=fx.T0))
    data = nodes.init_node(tmp_path / "x", nodes.A, expired)
    with pytest.raises(PolicyError, match="expired"):
        load_config(data)
    # Keys the policy does not list for the member.
    policy_file = tmp_path / "policy.note"
    policy_file.write_bytes(nodes.sign_policy(nodes.policy_with_urls({})))
    fresh = tmp_path / "fresh"
    result = CliRunner().invoke(
        cli, ["node", "init", "--policy", str(policy_file), "--member", nodes.A, "--data", str(fresh)]
    )
    assert result.exit_code == 0, result.output
    assert re.search(r"log key:     ledger\.example\.gov\.cn/hangzhou-xihu-amr\+[0-9a-f]{8}\+", result.output)
    assert "witness key: witness.example.gov.cn/hangzhou-xihu-amr+" in result.output
    assert "not yet the member's keys" in result.output
    assert oct((fresh / "log.key").stat().st_mode & 0o777) == "0o600"
    with pytest.raises(PolicyError, match="not one of hangzhou-xihu-amr's log keys"):
        load_config(fresh)
    result = CliRunner(env={"CERTLEDGER_DATA": str(fresh)}).invoke(
        cli, ["node", "run", "--listen", "127.0.0.1:0"]
    )
    assert result.exit_code == 1 and "not one of hangzhou-xihu-amr's log keys" in result.output


def test_update_policy(tmp_path: Path) -> None:
    data = nodes.init_node(tmp_path, nodes.A, nodes.sign_policy(nodes.policy_with_urls({})))
    v2 = tmp_path / "v2.note"
    v2.write_bytes(nodes.sign_policy(nodes.policy_with_urls({}, version=2)))
    result = CliRunner().invoke(cli, ["node", "update-policy", str(v2), "--data", str(data)])
    assert result.exit_code == 0 and "installed policy version 2" in result.output
    assert load_config(data).policy.versions() == [1, 2]
    result = CliRunner().invoke(cli, ["node", "update-policy", str(v2), "--data", str(data)])
    assert result.exit_code == 1 and "not newer than the trusted version 2" in result.output


def test_an_expired_policy_is_moved_on_from_through_expired_versions_too(tmp_path: Path) -> None:
    # "Nothing stops when something expires": the node's newest version expired, and the
    # next one is expired as well (TUF walks through expired intermediate versions).
    now = int(time.time())
    data = nodes.init_node(
        tmp_path, nodes.A, nodes.sign_policy(nodes.policy_with_urls({}, expires=now - 3600))
    )
    files = {}
    for version, expires in ((2, now - 60), (3, now + 200 * 86400)):
        files[version] = tmp_path / f"v{version}.note"
        files[version].write_bytes(
            nodes.sign_policy(nodes.policy_with_urls({}, version=version, expires=expires))
        )
    with pytest.raises(PolicyError, match="expired: policy version 1 expired"):
        load_config(data)
    result = CliRunner().invoke(cli, ["node", "update-policy", str(files[3]), "--data", str(data)])
    assert result.exit_code == 1 and "skipped-version" in result.output
    result = CliRunner().invoke(cli, ["node", "update-policy", str(files[2]), "--data", str(data)])
    assert result.exit_code == 0 and "installed policy version 2" in result.output
    assert "has expired already: install the version after it too" in result.output
    result = CliRunner().invoke(cli, ["node", "update-policy", str(files[3]), "--data", str(data)])
    assert result.exit_code == 0 and "installed policy version 3" in result.output
    config = load_config(data)
    assert config.policy.versions() == [1, 2, 3] and config.policy.policy.version == 3


def test_a_port_in_use_is_refused_before_the_log_is_touched(tmp_path: Path) -> None:
    data = nodes.init_node(tmp_path, nodes.A, nodes.sign_policy(nodes.policy_with_urls({})))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = CliRunner().invoke(
            cli, ["node", "run", "--data", str(data), "--listen", f"127.0.0.1:{port}"]
        )
    assert result.exit_code == 1 and f"cannot listen on 127.0.0.1:{port}" in result.output
    with LogStore.open(data / "log.db", readonly=True) as store:
        assert store.size == 0 and store.latest_checkpoint() is None  # no policy entry, nothing signed


def test_a_member_a_newer_policy_adds_gets_mirror_metrics(tmp_path: Path) -> None:
    v1 = nodes.policy_with_urls({})
    data = nodes.init_node(tmp_path, nodes.A, nodes.sign_policy(v1))
    newcomer = fx._member("hangzhou-newdept", "新部门", "11330100002489737N", [(fx.key(71), 0, None)], 72)
    app = create_app(config=nodes.config(data, submit=False, mirror=False))
    with TestClient(app) as c:
        assert 'certledger_mirror_size{member="hangzhou-newdept"}' not in c.get("/metrics").text
        v2 = dataclasses.replace(v1, version=2, members=(*v1.members, newcomer))
        app.state.node.config.policy.install(nodes.sign_policy(v2))
        text = c.get("/metrics").text
    assert 'certledger_mirror_lag_seconds{member="hangzhou-newdept"} -1.0' in text
    assert 'certledger_mirror_size{member="hangzhou-newdept"} 0.0' in text
    assert 'certledger_mirror_size{member="hangzhou-health"} 0.0' in text


def test_help_for_every_command() -> None:
    for args in (["node"], ["node", "init"], ["node", "run"], ["node", "update-policy"], ["node", "alerts"]):
        result = CliRunner().invoke(cli, [*args, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output
    run_help = CliRunner().invoke(cli, ["node", "run", "--help"]).output
    for var in ("CERTLEDGER_DATA", "CERTLEDGER_LISTEN", "CERTLEDGER_TLS_CERT", "CERTLEDGER_TILES_DIR"):
        assert var in run_help


async def test_mirrors_serve_a_verified_copy(net: Net) -> None:
    b = net.apps[nodes.B].state.node
    async with net.client(nodes.A) as ca, net.client(nodes.B) as cb:
        await append(ca, range(300))
        await wait_cosigned(ca, 300)
        results = await asyncio.to_thread(b.mirrors.sync_once)
        assert results[nodes.A].ok and results[nodes.A].size == 300
        prefix = "/mirror/" + origin_hash(fx.AMR.origin) + "/"
        r = await cb.get(prefix + "checkpoint")
        assert r.status_code == 200
        cp = open_checkpoint(r.content, log_key=LOG_VKEY).checkpoint
        assert cp.size == 300

        async def fetch(ts: Sequence[tiles.Tile]) -> list[bytes]:
            return [(await cb.get(prefix + t.path)).content for t in ts]

        wanted = [t for t in tiles.tiles_for_size(300) if not t.is_entries]
        data = dict(zip(wanted, await fetch(wanted), strict=True))
        read = tiles.tile_hash_reader(300, cp.root_hash, lambda ts: [data[t] for t in ts])
        assert merkle.tree_hash(300, read) == cp.root_hash
        bundle = (await cb.get(prefix + "tile/entries/001.p/44")).content
        assert bundle == (await ca.get("/tile/entries/001.p/44")).content
        assert (await cb.get(prefix + "tile/0/002")).status_code == 404
        assert (await cb.get("/mirror/" + "0" * 64 + "/checkpoint")).status_code == 404
        assert re.search(
            r'certledger_mirror_size\{member="hangzhou-xihu-amr"\} 300\.0', (await cb.get("/metrics")).text
        )


async def test_a_tampered_tile_is_refused_and_its_source_named(net: Net) -> None:
    c = net.apps[nodes.C].state.node
    net.tamper = "hangzhou-xihu-amr.example.gov.cn"
    async with net.client(nodes.A) as ca:
        await append(ca, range(20))
        await wait_cosigned(ca, 20)
    results = await asyncio.to_thread(c.mirrors.sync_once)
    assert not results[nodes.A].ok and results[nodes.A].size == 0
    assert any(r.startswith("https://hangzhou-xihu-amr.example.gov.cn/") for r in results[nodes.A].refused)


async def test_policy_versions_travel_and_are_recorded_in_the_log(tmp_path: Path) -> None:
    n = Net(tmp_path)
    a = n.apps[nodes.A].state.node
    a.config.record_policy = True
    v2 = nodes.sign_policy(dataclasses.replace(nodes.policy_with_urls({}), version=2))
    n.apps[nodes.B].state.node.config.policy.install(v2)
    app = n.apps[nodes.A]
    async with app.router.lifespan_context(app), n.client(nodes.A) as c:
        for _ in range(100):
            if (await c.get("/policy/latest")).content == v2 and a.store.size >= 2:
                break
            await asyncio.sleep(0.05)
        assert (await c.get("/policy/2")).content == v2
        assert a.config.policy.versions() == [1, 2]
        recorded = {}
        for data in a.store.entries(0, a.store.size):
            st_ = Entry.from_bytes(data).signed.statement
            if st_.kind == Kind.POLICY:
                recorded[st_.policy_version] = st_.policy_hash
        assert recorded == {1: hashlib.sha256(n.doc).digest(), 2: hashlib.sha256(v2).digest()}
    # A version that does not follow from the held chain is not adopted.
    bad = nodes.sign_policy(dataclasses.replace(nodes.policy_with_urls({}), version=4))
    with pytest.raises(PolicyError, match="only version 3 can follow"):
        load_config(tmp_path / nodes.A).policy.install(bad)


async def test_concurrent_appends_share_commits(net: Net) -> None:
    node = net.apps[nodes.A].state.node
    calls: list[int] = []
    real = node.store.append

    def counting(items: Sequence[object], *, key: SigningKey) -> list[int]:
        calls.append(len(items))
        return real(items, key=key)  # type: ignore[arg-type]

    node.store.append = counting
    async with net.client(nodes.A) as c:
        results = await asyncio.gather(*(append(c, [i]) for i in range(60)))
    assert sorted(i for r in results for i in r) == list(range(60))
    assert sum(calls) == 60 and len(calls) < 60, calls


async def test_forks_met_as_a_mirror_are_alerts_too(net: Net, tmp_path: Path) -> None:
    b = net.apps[nodes.B].state.node
    notes = [
        sign_checkpoint(Checkpoint(origin=fx.AMR.origin, size=5, root_hash=bytes([i]) * 32), key=A_KEY)
        for i in (1, 2)
    ]
    b.mirrors.store.add_alert(
        origin=fx.AMR.origin,
        member_id=nodes.A,
        kind="fork",
        message="fork: two roots for size 5",
        created=1,
        note_a=notes[0],
        note_b=notes[1],
        source="https://hangzhou-xihu-amr.example.gov.cn/",
    )
    async with net.client(nodes.B) as cb:
        alerts = (await cb.get("/v1/alerts")).json()
        assert [a["kind"] for a in alerts] == ["same-size"]
        check_alert(json.dumps(alerts[0]).encode(), nodes.policy_with_urls({}))
        assert "certledger_alerts 1.0" in (await cb.get("/metrics")).text
    out = CliRunner().invoke(cli, ["node", "alerts", "--data", str(tmp_path / nodes.B)])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output.splitlines()[0])["verified"] is True


async def test_a_restored_backup_behind_the_key_is_refused(tmp_path: Path) -> None:
    n = Net(tmp_path)
    app = n.apps[nodes.A]
    async with app.router.lifespan_context(app), n.client(nodes.A) as c:
        await append(c, range(3))
        await wait_cosigned(c, 3, cosigners=1)
        backup = {
            s: (tmp_path / nodes.A / f"log.db{s}").read_bytes()
            for s in ("", "-wal")
            if (tmp_path / nodes.A / f"log.db{s}").exists()
        }
        await append(c, range(3, 6))
        await wait_cosigned(c, 6, cosigners=1)
    (tmp_path / nodes.A / "log.db-shm").unlink(missing_ok=True)
    for s, data in backup.items():
        (tmp_path / nodes.A / f"log.db{s}").write_bytes(data)
    with pytest.raises(ConflictError, match="rule: signer-smaller"):
        create_app(config=nodes.config(tmp_path / nodes.A, submit=False))
