"""A verifier follows the trust policy from its nodes: a new version is walked from the
pinned one, stored and used by the next sync and verdict; a rollback, a forged version, a
freeze and an unreachable node leave the current version in place and show in the status;
a restart walks the stored chain; a replica that cannot be read answers 503."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from certledger.cli import cli
from ledger.errors import FileError, PolicyError, StorageError
from ledger.keys import VerifierKey
from ledger.replica.store import ReplicaStore
from ledger.trust.policy import Policy
from ledger.trust.policy_doc import add_signature, parse_document, sign_proposal
from node import app as node_app
from tests import nodes as nodes_fx
from tests.fixtures.consortium import (
    AMR,
    BUSINESS_LICENCE,
    FOOD_PERMIT,
    GOVERNANCE_KEY,
    HEALTH,
    PSB,
    TYPES,
    issue_health_certificate,
    issue_reference,
    key,
    policy,
)
from tests.replica_fixtures import NOW
from tests.verifier_world import UNLOGGED, World
from verifier import follow
from verifier.app import Limits, create_app
from verifier.follow import PolicyFollower, policy_sources
from verifier.service import ReplicaService
from verifier.verifier import Verifier, node_sources

GOV = ("governance.example.gov.cn", GOVERNANCE_KEY)
EXPIRES = NOW + 200 * 86400
#: Version 1: the health commission is not a member yet.
V1 = policy(version=1, expires=EXPIRES, members=(AMR, PSB), types=(BUSINESS_LICENCE, FOOD_PERMIT))
#: Version 2 adds the health commission and its health certificates.
V2 = policy(version=2, expires=EXPIRES + 86400, members=(AMR, HEALTH, PSB), types=TYPES)
V3 = dataclasses.replace(V2, version=3, issued=V2.issued + 60, freshness_seconds=7200)
DOC1, DOC2, DOC3 = (sign_proposal(p, [GOV]) for p in (V1, V2, V3))
HEALTH_CERT = issue_health_certificate()
NODE_A, NODE_B = "http://127.0.0.1:8001/", "http://127.0.0.1:8002/"


def _forged(p: Policy) -> bytes:
    """``p`` handed to a key the consortium never gave governance to, and signed by it only."""
    forger = key(99)
    gov = (VerifierKey(name="forger.example", public_key=forger.public_key),)
    return sign_proposal(dataclasses.replace(p, governance_keys=gov), [("forger.example", forger)])


class PolicyNodes:
    """Nodes that serve ``GET /policy/latest`` and ``GET /policy/<N>`` in-process; each
    node's chain can be changed (to what an attacker would serve) or taken offline."""

    def __init__(self) -> None:
        self.chains: dict[str, list[bytes]] = {}
        self.latest: dict[str, bytes] = {}
        self.requests = 0

    def serve(self, node: str, *docs: bytes, latest: bytes | None = None) -> None:
        self.chains[node] = list(docs)
        self.latest[node] = latest if latest is not None else docs[-1]

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        base = f"http://{request.url.host}:{request.url.port}/"
        if base not in self.chains:
            raise httpx.ConnectError("connection refused", request=request)
        if request.url.path == "/policy/latest":
            return httpx.Response(200, content=self.latest[base])
        m = re.fullmatch(r"/policy/([0-9]+)", request.url.path)
        for doc in self.chains[base]:
            if m and parse_document(doc).policy.version == int(m.group(1)):
                return httpx.Response(200, content=doc)
        return httpx.Response(404, text="no such policy version")


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path / "world")
    w.net.append(HEALTH.id, [HEALTH_CERT.signed])
    w.publish(at=NOW - 60)
    yield w
    w.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ReplicaStore]:
    with ReplicaStore.open(tmp_path / "replica.db") as s:
        yield s


@pytest.fixture
def nodes() -> PolicyNodes:
    return PolicyNodes()


def _service(
    world: World, store: ReplicaStore, nodes: PolicyNodes, data: Path, *, clock: Clock | None = None
) -> ReplicaService:
    now = clock or Clock(NOW)
    follower = PolicyFollower(directory=data / "policy", pinned=DOC1, clock=now)
    client = httpx.Client(transport=httpx.MockTransport(nodes.handler))
    verifier = Verifier(
        store=store,
        sources=node_sources([str(world.public)]),
        clock=now,
        min_interval=0,
        follower=follower,
        policy_sources=policy_sources([NODE_A, NODE_B], client=client),
    )
    return ReplicaService(verifier=verifier, clock=now)


def _client(service: ReplicaService) -> TestClient:
    registry = service.verifier.follower.registry if service.verifier.follower else None
    return TestClient(create_app(service=service, limits=Limits(rate=1000, burst=1000), registry=registry))


def test_a_member_added_in_a_new_version_is_verifiable_after_the_next_sync(
    world: World, store: ReplicaStore, nodes: PolicyNodes, tmp_path: Path
) -> None:
    nodes.serve(NODE_A, DOC1)
    nodes.serve(NODE_B, DOC1)
    service = _service(world, store, nodes, tmp_path)
    service.sync()
    text = HEALTH_CERT.to_qr_text()
    assert service.verify_text(text, sync=False).code.value == "UNKNOWN_ISSUER"
    assert service.status()["policy"]["last_refusal"] is None
    nodes.serve(NODE_B, DOC1, DOC2)  # the consortium adopts version 2; one node has it
    service.sync()
    assert service.verifier.policy.version == 2
    assert [m["id"] for m in service.status()["members"]] == [AMR.id, HEALTH.id, PSB.id]
    v = service.verify_text(text, sync=False)
    assert v.code.value == "VALID", v.reason_en
    assert v.issuer_id == HEALTH.id
    assert service.verify_text(issue_reference().to_qr_text(), sync=False).code.value == "VALID"
    assert (tmp_path / "policy" / "00000002.note").read_bytes() == DOC2


def test_a_key_the_policy_does_not_know_fetches_the_new_version_on_demand(
    world: World, store: ReplicaStore, nodes: PolicyNodes, tmp_path: Path
) -> None:
    nodes.serve(NODE_A, DOC1)
    service = _service(world, store, nodes, tmp_path)
    service.sync()
    nodes.serve(NODE_A, DOC1, DOC2, DOC3)  # two versions at once, walked in one go
    with _client(service) as client:
        v = client.post("/v1/verify", json={"text": HEALTH_CERT.to_qr_text()}).json()
        assert v["code"] == "VALID", v
        s = client.get("/v1/status").json()["policy"]
    assert (s["version"], s["last_adopted"], s["following"]) == (3, NOW, True)
    assert s["last_refusal"]["rule"] == "unreachable" and NODE_B in s["last_refusal"]["source"]
    assert "ConnectError" in s["last_refusal"]["message"]
    assert [r["source"] for r in s["refusals"]] == [NODE_B]


def test_policy_rollback_offered_by_a_node_is_refused(
    world: World, store: ReplicaStore, nodes: PolicyNodes, tmp_path: Path
) -> None:
    nodes.serve(NODE_A, DOC1, DOC2)
    nodes.serve(NODE_B, DOC1, DOC2)
    service = _service(world, store, nodes, tmp_path)
    service.sync()
    assert service.verifier.policy.version == 2
    nodes.serve(NODE_B, DOC1)  # a node that serves the old version as the newest
    service.sync()
    assert service.verifier.policy.version == 2
    s = service.status()
    refusal = s["policy"]["last_refusal"]
    assert refusal["rule"] == "rollback" and refusal["source"] == NODE_B
    assert "version 1, not newer than the trusted version 2" in refusal["message"]
    assert any(a["kind"] == "policy_refused" and "rollback" in a["message"] for a in s["alerts"])
    assert service.verify_text(HEALTH_CERT.to_qr_text(), sync=False).code.value == "VALID"
    with _client(service) as client:
        metrics = client.get("/metrics").text
    assert 'certledger_verifier_policy_refused_total{rule="rollback"} 1.0' in metrics
    assert "certledger_verifier_policy_version 2.0" in metrics


def test_a_forged_version_signed_by_too_few_governance_keys_is_refused(
    world: World, store: ReplicaStore, nodes: PolicyNodes, tmp_path: Path
) -> None:
    nodes.serve(NODE_A, DOC1, _forged(V2))
    nodes.serve(NODE_B, DOC1)
    service = _service(world, store, nodes, tmp_path)
    check = service.verifier.check_policy()
    assert check is not None and not check.adopted
    assert service.verifier.policy.version == 1
    refusal = service.status()["policy"]["last_refusal"]
    assert refusal["rule"] == "old-threshold" and refusal["source"] == NODE_A
    assert "signed by 0/1 of version 1's governance keys" in refusal["message"]
    assert "still trusting version 1" in refusal["message"]
    assert not (tmp_path / "policy" / "00000002.note").exists()
    # a tampered copy of a genuine version: the governance signature no longer verifies
    altered = DOC2.replace(b'"freshness_seconds": 3600', b'"freshness_seconds": 36000')
    assert altered != DOC2
    nodes.serve(NODE_A, DOC1, altered)
    service.verifier.check_policy()
    refusal = service.status()["policy"]["last_refusal"]
    assert refusal["rule"] == "bad-signature" and "changed after it was signed" in refusal["message"]
    assert service.verifier.policy.version == 1


def test_a_frozen_policy_shows_its_expiry_then_every_verdict_says_it_expired(
    world: World, store: ReplicaStore, nodes: PolicyNodes, tmp_path: Path
) -> None:
    nodes.serve(NODE_A, DOC1)  # the nodes keep serving version 1: a freeze
    nodes.serve(NODE_B, DOC1)
    clock = Clock(NOW)
    service = _service(world, store, nodes, tmp_path, clock=clock)
    service.sync()
    text = issue_reference().to_qr_text()
    assert service.verify_text(text, sync=False).code.value == "VALID"
    clock.now = V1.expires - 5 * 86400
    world.publish(at=clock.now - 60)
    service.sync()
    s = service.status()
    assert s["policy"]["seconds_left"] == 5 * 86400 and not s["policy"]["expired"]
    assert any(a["kind"] == "policy_expiry" and "expires in 5 days" in a["message"] for a in s["alerts"])
    assert service.verify_text(text, sync=False).code.value == "VALID"
    clock.now = V1.expires + 1
    world.publish(at=clock.now - 60)
    service.sync()
    s = service.status()
    assert s["policy"]["expired"] and s["policy"]["last_refusal"]["rule"] == "expired"
    assert "no source offers a newer one" in s["policy"]["last_refusal"]["message"]
    assert any(a["kind"] == "policy_expired" for a in s["alerts"])
    with _client(service) as client:
        v = client.post("/v1/verify", json={"text": text}).json()
    assert v["code"] == "STALE"
    assert "could not get a newer version" in v["reason"]["en"]
    assert "tell the verifier's operator" in v["reason"]["en"]
    assert "联系核验服务管理员" in v["reason"]["zh"]
    # a node that serves a newer chain whose newest version has expired too is refused
    late = sign_proposal(dataclasses.replace(V2, expires=V1.expires + 10), [GOV])
    nodes.serve(NODE_A, DOC1, late)
    clock.now = V1.expires + 20
    service.verifier.check_policy()
    assert service.status()["policy"]["last_refusal"]["rule"] == "expired"
    assert service.verifier.policy.version == 1


def test_a_restart_walks_the_stored_chain_from_the_pinned_version(
    world: World, store: ReplicaStore, nodes: PolicyNodes, tmp_path: Path
) -> None:
    nodes.serve(NODE_A, DOC1, DOC2, DOC3)
    service = _service(world, store, nodes, tmp_path)
    service.sync()
    assert service.verifier.policy.version == 3
    directory = tmp_path / "policy"
    again = PolicyFollower(directory=directory, pinned=DOC1, clock=Clock(NOW))
    assert again.policy.version == 3 and again.document == DOC3
    assert again.versions() == [1, 2, 3]
    assert Verifier(store=store, follower=again).policy.freshness_seconds == 7200
    # another pin does not take over a directory that follows this one
    with pytest.raises(FileError, match=r"not in the stored policy chain \(versions 1 to 3\).*rollback"):
        PolicyFollower(directory=directory, pinned=_forged(V1), clock=Clock(NOW))
    # the next version, pinned by hand, is taken when it follows the stored chain
    v4 = dataclasses.replace(V3, version=4, issued=V3.issued + 60)
    doc4 = sign_proposal(v4, [GOV])
    assert PolicyFollower(directory=directory, pinned=doc4, clock=Clock(NOW)).policy.version == 4
    assert PolicyFollower(directory=directory, pinned=DOC1, clock=Clock(NOW)).policy.version == 4
    (directory / "00000004.note").unlink()
    # a stored version changed on disk is refused at start, naming the file
    (directory / "00000003.note").write_bytes(_forged(V3))
    with pytest.raises(PolicyError, match=r"00000003\.note: .*signed by 0/1 of version 2's") as e:
        PolicyFollower(directory=directory, pinned=DOC1, clock=Clock(NOW))
    assert e.value.rule == "old-threshold"


def test_a_replica_that_cannot_be_read_answers_503_with_a_reason(
    world: World, store: ReplicaStore, nodes: PolicyNodes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nodes.serve(NODE_A, DOC1)
    service = _service(world, store, nodes, tmp_path)
    service.sync()

    def full(self: Verifier, member_id: str | None = None) -> object:
        raise StorageError("replica.db: cannot write the replica: database or disk is full")

    monkeypatch.setattr(Verifier, "sync", full)
    with _client(service) as client:  # not in the replica: the on-demand sync fails to store
        r = client.post("/v1/verify", json={"text": UNLOGGED.to_qr_text()})
        assert r.status_code == 503 and "disk is full" in r.json()["reason"]["en"]

    def unreadable(self: ReplicaStore) -> object:
        raise StorageError("replica.db: disk I/O error")

    monkeypatch.setattr(ReplicaStore, "last_state", unreadable)
    with _client(service) as client:
        r = client.post("/v1/verify", json={"text": issue_reference().to_qr_text()})
        assert r.status_code == 503 and r.headers["retry-after"] == "30"
        v = r.json()
        assert v["code"] == "STALE"
        assert v["reason"]["en"].startswith("this verifier cannot read its ledger replica right now")
        assert "disk I/O error" in v["reason"]["en"]
        assert "请稍后再试" in v["reason"]["zh"]
        assert client.get("/healthz").status_code == 200


def test_a_version_that_cannot_be_stored_is_not_used(
    world: World, store: ReplicaStore, nodes: PolicyNodes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nodes.serve(NODE_A, DOC1, DOC2)
    service = _service(world, store, nodes, tmp_path)

    def disk_full(*args: object, **kwargs: object) -> None:
        raise FileError("00000002.note: cannot write: No space left on device")

    monkeypatch.setattr(follow, "write_file", disk_full)
    service.sync()
    assert service.verifier.policy.version == 1
    refusal = service.status()["policy"]["last_refusal"]
    assert refusal["rule"] == "storage" and "No space left on device" in refusal["message"]
    monkeypatch.undo()
    service.sync()
    assert service.verifier.policy.version == 2


def test_a_version_installed_at_a_real_node_is_adopted_from_its_policy_endpoints(tmp_path: Path) -> None:
    urls = {m.id: f"http://127.0.0.1:{8101 + i}/" for i, m in enumerate((AMR, HEALTH, PSB))}
    doc1 = nodes_fx.sign_policy(nodes_fx.policy_with_urls(urls))
    doc2 = nodes_fx.sign_policy(
        nodes_fx.policy_with_urls(urls, version=2, expires=nodes_fx.NODE_POLICY_EXPIRES + 60)
    )
    data = nodes_fx.init_node(tmp_path, AMR.id, doc1)
    (tmp_path / "v2.note").write_bytes(doc2)
    result = CliRunner().invoke(
        cli, ["node", "update-policy", str(tmp_path / "v2.note"), "--data", str(data)]
    )
    assert result.exit_code == 0, result.output
    app = node_app.create_app(config=nodes_fx.config(data, submit=False))
    with TestClient(app, base_url=urls[AMR.id]) as node:
        follower = PolicyFollower(directory=tmp_path / "verifier" / "policy", pinned=doc1)
        check = follower.check(policy_sources([urls[AMR.id]], client=node))
    assert check.adopted and (check.before, check.after) == (1, 2) and check.refused == ()
    assert follower.document == doc2 and follower.versions() == [1, 2]


def test_a_node_serving_another_document_for_the_version_in_use_is_a_split_view(
    world: World, store: ReplicaStore, nodes: PolicyNodes, tmp_path: Path
) -> None:
    other = add_signature(DOC1, "someone.example", key(98))  # same version 1, other bytes
    nodes.serve(NODE_A, other)
    nodes.serve(NODE_B, DOC1)
    service = _service(world, store, nodes, tmp_path)
    check = service.verifier.check_policy()
    assert check is not None and [r.rule for r in check.refused] == ["split-view"]
    assert "differs from the one trusted here" in check.refused[0].message
    assert service.verifier.follower is not None and service.verifier.follower.document == DOC1


def test_a_static_tile_copy_without_policy_files_is_not_asked_for_the_policy(tmp_path: Path) -> None:
    bare, with_policy = tmp_path / "tiles", tmp_path / "copy"
    bare.mkdir()
    (with_policy / "policy").mkdir(parents=True)
    (with_policy / "policy" / "latest").write_bytes(b"")
    sources = policy_sources([str(bare), str(with_policy), "http://127.0.0.1:9/"], client=httpx.Client())
    assert [type(s).__name__ for s in sources] == ["DirectoryFetcher", "HttpFetcher"]
