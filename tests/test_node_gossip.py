"""Gossip in process: nodes compare the checkpoints they hold and pass verified fork alerts on."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from certledger.cli import cli
from ledger.log import merkle
from ledger.log.alert import Alert, check_alert, encode_alert
from ledger.log.checkpoint import DEFAULT_MAX_SIZE, Checkpoint, sign_checkpoint
from ledger.log.store import LogStore
from ledger.log.witness import encode_add_checkpoint, origin_hash
from ledger.replica.store import ReplicaStore
from node.gossip import Gossip, read_learned
from node.witness import Witness
from tests import nodes
from tests.fixtures import consortium as fx
from tests.test_node import A_KEY, Net, append, net, wait_cosigned

pytestmark = pytest.mark.anyio

POLICY = nodes.policy_with_urls({})
A_HASH = origin_hash(fx.AMR.origin)
B_URL, C_URL = fx.HEALTH.base_url, fx.PSB.base_url


__all__ = ["net"]  # the three-node fixture, shared with the node's tests


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _reader(leaves: list[bytes]) -> merkle.HashReader:
    stored: list[bytes] = []

    def read(indexes: Sequence[int]) -> list[bytes]:
        return [stored[i] for i in indexes]

    for i, leaf in enumerate(leaves):
        stored.extend(merkle.stored_hashes(i, leaf, read))
    return read


def signed(leaves: list[bytes]) -> bytes:
    root = merkle.root_from_leaf_hashes(leaves)
    return sign_checkpoint(Checkpoint(origin=fx.AMR.origin, size=len(leaves), root_hash=root), key=A_KEY)


def a_leaves(net: Net) -> list[bytes]:
    a = net.apps[nodes.A].state.node
    return [merkle.leaf_hash(e) for e in a.reader.entries(0, a.store.size)]


async def post_to_witness(net: Net, member: str, body: bytes) -> httpx.Response:
    async with net.client(member) as c:
        return await c.post("/add-checkpoint", content=body)


async def test_a_fork_shown_only_to_b_reaches_c_by_gossip(net: Net, tmp_path: Path) -> None:
    b, c = (net.apps[m].state.node for m in (nodes.B, nodes.C))
    async with net.client(nodes.A) as ca:
        await append(ca, range(12))
        await wait_cosigned(ca, 12)
    leaves = a_leaves(net)
    leaves[3] = merkle.leaf_hash(b"a rewritten entry")
    leaves += [merkle.leaf_hash(b"more")]
    proof = merkle.prove_tree(13, 12, _reader(leaves))
    r = await post_to_witness(
        net, nodes.B, encode_add_checkpoint(old_size=12, proof=proof, note=signed(leaves))
    )
    assert r.status_code == 422 and "bad consistency proof" in r.text
    [held_by_b] = b.alerts()
    assert c.alerts() == []

    assert await asyncio.to_thread(c.gossip.gossip_once) == 1
    assert c.alerts() == [held_by_b]  # the same bytes: observed by B, verified by C
    async with net.client(nodes.C) as cc:
        served = (await cc.get("/v1/alerts")).json()
        assert [x["observed_by"] for x in served] == [nodes.B]
        check_alert(json.dumps(served[0]).encode(), POLICY)
        metrics = (await cc.get("/metrics")).text
        assert "certledger_alerts 1.0" in metrics
        assert 'certledger_gossip_alerts_total{how="adopted"} 1.0' in metrics
    # Nothing learned twice; B does not adopt its own alert back from C.
    assert await asyncio.to_thread(c.gossip.gossip_once) == 0
    assert await asyncio.to_thread(b.gossip.gossip_once) == 0
    assert len(b.alerts()) == 1

    out = CliRunner().invoke(cli, ["node", "alerts", "--data", str(tmp_path / nodes.C)])
    assert out.exit_code == 0, out.output
    [line] = [json.loads(x) for x in out.stdout.splitlines()]
    assert line["verified"] is True and line["found_by"] == "gossip"
    assert line["how"] == "adopted from a peer" and line["source"] == B_URL + "v1/alerts"


async def test_a_split_view_is_found_by_comparing_cosigned_checkpoints(net: Net, tmp_path: Path) -> None:
    """A's key shows B one tree of size 5 and C another; each witness cosigns its own."""
    net.router.down |= {h for h in net.router.apps if not h.startswith(nodes.A)}  # A's submitter stays out
    c = net.apps[nodes.C].state.node
    one = [merkle.leaf_hash(b"one %d" % i) for i in range(5)]
    two = [merkle.leaf_hash(b"two %d" % i) for i in range(5)]
    for member, leaves in ((nodes.B, one), (nodes.C, two)):
        r = await post_to_witness(
            net, member, encode_add_checkpoint(old_size=0, proof=[], note=signed(leaves))
        )
        assert r.status_code == 200, r.text
    assert c.alerts() == []
    assert await asyncio.to_thread(c.gossip.gossip_once) == 1
    [raw] = c.alerts()
    alert = check_alert(raw, POLICY)
    assert alert.kind == "same-size" and alert.observed_by == nodes.C
    assert alert.later.startswith(signed(one).split(b"\n\n")[0])  # B's view, as B's witness serves it
    out = CliRunner().invoke(cli, ["node", "alerts", "--data", str(tmp_path / nodes.C)])
    [line] = [json.loads(x) for x in out.stdout.splitlines()]
    assert line["how"] == "found comparing checkpoints"
    assert line["source"] == f"{B_URL}{A_HASH}/checkpoint" and line["verified"] is True


async def test_a_checkpoint_inconsistent_with_our_own_log_is_evidence(net: Net, tmp_path: Path) -> None:
    """B's witness is shown a size-15 tree that extends A's real size-12 one; A's real log
    then grows differently. A compares B's checkpoint with its own log and proves the fork."""
    a = net.apps[nodes.A].state.node
    async with net.client(nodes.A) as ca:
        await append(ca, range(12))
        await wait_cosigned(ca, 12)
        net.router.down |= {h for h in net.router.apps if not h.startswith(nodes.A)}
        leaves = a_leaves(net) + [merkle.leaf_hash(b"forked %d" % i) for i in range(3)]
        body = encode_add_checkpoint(
            old_size=12, proof=merkle.prove_tree(15, 12, _reader(leaves)), note=signed(leaves)
        )
        r = await post_to_witness(net, nodes.B, body)
        assert r.status_code == 200, r.text
        await append(ca, range(12, 20))
        for _ in range(200):
            latest = a.store.latest_checkpoint()
            if latest is not None and latest.size == 20:
                break
            await asyncio.sleep(0.05)
    assert await asyncio.to_thread(a.gossip.gossip_once) == 1
    [raw] = a.gossip.alerts()
    alert = check_alert(raw, POLICY)
    assert alert.kind == "inconsistent" and alert.origin == fx.AMR.origin
    assert Checkpoint.parse(alert.later.split(b"\n\n")[0].decode() + "\n").size == 20
    assert Checkpoint.parse(alert.earlier.split(b"\n\n")[0].decode() + "\n").size == 15
    [learned] = read_learned(tmp_path / nodes.A / "gossip.db")
    assert learned.how == "compared" and learned.source == f"{B_URL}{A_HASH}/checkpoint"
    # Consistent checkpoints raise nothing, and the same fork is not kept twice.
    assert await asyncio.to_thread(a.gossip.gossip_once) == 0


class LyingPeer:
    """B's host serves forged evidence; every other request is a 404."""

    def __init__(self, alerts: list[bytes], checkpoint: bytes) -> None:
        self.alerts = alerts
        self.checkpoint = checkpoint
        self.raw_alerts: bytes | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        if url == B_URL + "v1/alerts":
            if self.raw_alerts is not None:
                return httpx.Response(200, content=self.raw_alerts)
            return httpx.Response(200, json=[json.loads(a) for a in self.alerts])
        if url == f"{B_URL}{A_HASH}/checkpoint":
            return httpx.Response(200, content=self.checkpoint)
        return httpx.Response(404)


async def test_a_lying_peer_cannot_plant_a_false_alert(net: Net, tmp_path: Path) -> None:
    c = net.apps[nodes.C].state.node
    leaves = [merkle.leaf_hash(b"%d" % i) for i in range(8)]
    honest = signed(leaves)
    not_the_logs_key = sign_checkpoint(
        Checkpoint(origin=fx.AMR.origin, size=8, root_hash=bytes(32)), key=fx.key(99)
    )

    def alert(kind: str, earlier: bytes, later: bytes, proof: Sequence[bytes] = ()) -> bytes:
        return encode_alert(
            Alert(
                kind=kind,
                origin=fx.AMR.origin,
                observed_by=nodes.B,
                observed_at=1,
                earlier=earlier,
                later=later,
                proof=tuple(proof),
            )
        )

    forged_signature = alert("same-size", honest, not_the_logs_key)
    no_fork_at_all = alert("same-size", honest, honest)
    proof_that_verifies = alert(
        "inconsistent", signed(leaves[:5]), honest, merkle.prove_tree(8, 5, _reader(leaves))
    )
    unknown_origin = json.loads(forged_signature)
    unknown_origin["origin"] = "example.org/not-a-member"
    registry = CollectorRegistry()
    gossip = Gossip(
        path=tmp_path / "lied-to.db",
        member_id=nodes.C,
        policy=lambda: POLICY,
        client=httpx.Client(
            transport=httpx.MockTransport(
                LyingPeer(
                    [
                        forged_signature,
                        no_fork_at_all,
                        proof_that_verifies,
                        json.dumps(unknown_origin).encode(),
                    ],
                    not_the_logs_key,
                )
            )
        ),
        witness=c.witness,
        replicas=c.mirrors.store,
        own_log=c.reader,
        known_alerts=list,
        mirror_sources=lambda member: [],
        registry=registry,
    )
    try:
        assert gossip.gossip_once() == 0
        assert gossip.alerts() == []
        assert (
            registry.get_sample_value("certledger_gossip_refused_total", {"peer": nodes.B, "what": "alert"})
            == 4
        )
        assert (
            registry.get_sample_value(
                "certledger_gossip_refused_total", {"peer": nodes.B, "what": "checkpoint"}
            )
            == 1
        )
    finally:
        gossip.close()


@pytest.mark.parametrize(
    "checkpoint", [b"not a checkpoint", b"x" * (DEFAULT_MAX_SIZE + 1)], ids=["garbage", "oversized"]
)
async def test_gossip_tolerates_peers_that_are_down_or_serve_garbage(net: Net, checkpoint: bytes) -> None:
    c = net.apps[nodes.C].state.node
    garbage = LyingPeer([], checkpoint)
    c.gossip._client = httpx.Client(transport=httpx.MockTransport(garbage))
    try:
        assert await asyncio.to_thread(c.gossip.gossip_once) == 0
        # An oversized alert list is refused too.
        garbage.raw_alerts = b"[" + b" " * (16 << 20) + b"]"
        assert await asyncio.to_thread(c.gossip.gossip_once) == 0
        refused = {"peer": nodes.B, "what": "alerts"}
        assert c.registry.get_sample_value("certledger_gossip_refused_total", refused) == 1
        assert c.registry.get_sample_value(
            "certledger_gossip_refused_total", {**refused, "what": "checkpoint"}
        )
    finally:
        c.gossip._client.close()
    async with net.client(nodes.C) as cc:
        assert (await cc.get("/v1/alerts")).json() == []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
            max_leaves=12,
        ).map(lambda doc: json.dumps(doc).encode()),
    ),
    checkpoint=st.binary(max_size=300),
)
def test_random_answers_from_a_peer_are_refused(tmp_path: Path, body: bytes, checkpoint: bytes) -> None:
    def peer(request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        if url == B_URL + "v1/alerts":
            return httpx.Response(200, content=body)
        if url.startswith(B_URL):
            return httpx.Response(200, content=checkpoint)
        return httpx.Response(404)

    d = tmp_path / "fuzz"
    d.mkdir(exist_ok=True)
    witness = Witness(path=d / "w.db", member_id=nodes.C, key=nodes.KEYS[nodes.C][1], policy=lambda: POLICY)
    replicas = ReplicaStore.open(d / "m.db")
    if not (d / "log.db").exists():
        LogStore.create(d / "log.db", origin=fx.PSB.origin).close()
    own = LogStore.open(d / "log.db", readonly=True)
    gossip = Gossip(
        path=d / "g.db",
        member_id=nodes.C,
        policy=lambda: POLICY,
        client=httpx.Client(transport=httpx.MockTransport(peer)),
        witness=witness,
        replicas=replicas,
        own_log=own,
        known_alerts=list,
        mirror_sources=lambda member: [],
        registry=CollectorRegistry(),
    )
    try:
        assert gossip.gossip_once() == 0
        assert gossip.alerts() == []
    finally:
        gossip.close()
        witness.close()
        replicas.close()
        own.close()
