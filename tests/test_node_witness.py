"""The node's witness (C2SP tlog-witness): every status, atomicity, evidence, monitoring."""

from __future__ import annotations

import base64
import concurrent.futures
import dataclasses
import json
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.errors import SignatureError, VerificationError
from ledger.keys import SigningKey
from ledger.log import merkle, note
from ledger.log.alert import Alert, check_alert, encode_alert, parse_alert
from ledger.log.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from ledger.log.witness import (
    encode_add_checkpoint,
    origin_hash,
    parse_add_checkpoint,
)
from node.app import create_app
from tests import nodes
from tests.fixtures import consortium as fx
from tests.helpers import mutate

ORIGIN = fx.AMR.origin
LEAVES = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(64)]


def root(n: int) -> bytes:
    return merkle.root_from_leaf_hashes(LEAVES[:n])


def _reader(indexes: list[int]) -> list[bytes]:
    return [STORED[i] for i in indexes]


STORED: list[bytes] = []
for _i, _leaf in enumerate(LEAVES):
    STORED += merkle.stored_hashes(_i, _leaf, _reader)


def proof(old: int, new: int) -> list[bytes]:
    return merkle.prove_tree(new, old, _reader) if 0 < old < new else []


def signed(
    size: int, *, root_hash: bytes | None = None, key: SigningKey = fx.AMR_KEY, origin: str = ORIGIN
) -> bytes:
    cp = Checkpoint(origin=origin, size=size, root_hash=root(size) if root_hash is None else root_hash)
    return sign_checkpoint(cp, key=key)


def body(old: int, size: int, **kw: object) -> bytes:
    return encode_add_checkpoint(old_size=old, proof=proof(old, size), note=signed(size, **kw))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def witness_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("witness")
    return nodes.init_node(tmp, nodes.B, nodes.sign_policy(nodes.policy_with_urls({})))


@pytest.fixture
def client(witness_dir: Path, tmp_path: Path) -> TestClient:
    # A fresh witness database per test; the log and keys are shared.
    data = tmp_path / "node"
    data.mkdir()
    for name in ("member", "log.key", "witness.key", "log.db"):
        (data / name).write_bytes((witness_dir / name).read_bytes())
        (data / name).chmod(0o600)
    (data / "policy").mkdir()
    for p in (witness_dir / "policy").iterdir():
        (data / "policy" / p.name).write_bytes(p.read_bytes())
    app = create_app(config=nodes.config(data, submit=False))
    return TestClient(app)


def post(client: TestClient, data: bytes) -> tuple[int, str, str]:
    r = client.post("/add-checkpoint", content=data)
    return r.status_code, r.text, r.headers.get("content-type", "")


def test_cosigns_and_chains(client: TestClient) -> None:
    status, text, _ = post(client, body(0, 5))
    assert status == 200
    assert re.fullmatch(r"— witness\.example\.gov\.cn/hangzhou-health \S+\n", text)
    cosigned = signed(5) + text.encode()
    opened = open_checkpoint(
        cosigned, log_key=fx.AMR.log_verifier_key(fx.AMR.log_keys[1]), witnesses=[fx.HEALTH.witness_key]
    )
    assert list(opened.cosignatures) == ["witness.example.gov.cn/hangzhou-health"]
    assert post(client, body(5, 9))[0] == 200
    assert post(client, body(9, 9))[0] == 200  # the same checkpoint again
    # Monitors read the latest cosigned checkpoint by origin hash.
    r = client.get(f"/{origin_hash(ORIGIN)}/checkpoint")
    assert r.status_code == 200 and r.content.startswith(signed(9))
    assert r.content.count("—".encode()) == 2
    assert r.headers["cache-control"] == "no-cache"


def test_409_carries_the_stored_size(client: TestClient) -> None:
    assert post(client, body(0, 7))[0] == 200
    status, text, ctype = post(client, body(0, 9))
    assert (status, text, ctype) == (409, "7\n", "text/x.tlog.size")
    status, text, ctype = post(client, body(3, 9))
    assert (status, text, ctype) == (409, "7\n", "text/x.tlog.size")
    # A rollback to a smaller tree cannot get past the size check either.
    assert post(client, body(0, 4))[:2] == (409, "7\n")


def test_404_unknown_origin(client: TestClient) -> None:
    stranger = SigningKey.from_seed(b"s" * 32)
    status, text, _ = post(client, body(0, 3, key=stranger, origin="example.com/other-log"))
    assert status == 404 and "unknown log origin" in text
    # The witness's own log is not witnessed by itself.
    status, _, _ = post(client, body(0, 3, key=fx.HEALTH_KEY, origin=fx.HEALTH.origin))
    assert status == 404


def test_403_no_trusted_signature(client: TestClient) -> None:
    impostor = SigningKey.from_seed(b"i" * 32)
    status, text, _ = post(client, body(0, 3, key=impostor))
    assert status == 403 and "no signature from a known key" in text
    # A trusted key's signature that does not verify.
    good = signed(3)
    sig_line = good.rsplit(b"\n", 2)[1]
    raw = base64.b64decode(sig_line.split(b" ")[-1])
    bad_line = sig_line.rsplit(b" ", 1)[0] + b" " + base64.b64encode(raw[:4] + bytes(64))
    forged = good.replace(sig_line, bad_line)
    status, text, _ = post(client, encode_add_checkpoint(old_size=0, proof=[], note=forged))
    assert status == 403 and "invalid signature by trusted key" in text
    # The old log key expired at the rotation: its signatures no longer count.
    assert post(client, body(0, 3, key=fx.AMR_OLD_KEY))[0] == 403


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "does not start with an old size line"),
        (b"old 01\n\n" + signed(1), "leading zero"),
        (b"old 0\n" + signed(1), "no empty line|proof line"),
        (b"old 0\nnot-base64-at-all\n\n" + signed(1), "proof line 1"),
        (b"old 0\n\n", "no checkpoint"),
        (b"old 0\n\nnot a note", "note"),
        (b"old 4\n\n" + signed(3), "old size 4 is larger than the checkpoint size 3"),
        (b"old 0\n" + b"A" * 43 + b"=\n" * 64 + b"\n" + signed(3), "proof line"),
    ],
)
def test_400_malformed(client: TestClient, data: bytes, message: str) -> None:
    status, text, _ = post(client, data)
    assert status == 400
    assert re.search(message, text), text


def test_400_oversized(client: TestClient) -> None:
    status, text, _ = post(client, b"old 0\n\n" + b"x" * 200_000)
    assert status == 400 and "over" in text


def test_422_empty_tree_and_proof_from_zero(client: TestClient) -> None:
    status, text, _ = post(client, body(0, 0, root_hash=bytes(32)))
    assert status == 422 and "empty tree" in text
    bad = encode_add_checkpoint(old_size=0, proof=[bytes(32)], note=signed(4))
    status, text, _ = post(client, bad)
    assert status == 422 and "from size 0 must be empty" in text
    assert post(client, body(0, 0))[0] == 200  # the real empty tree


def _forked_tree(size: int) -> tuple[bytes, list[bytes]]:
    """A size-``size`` tree whose record 5 was rewritten: its root and stored hashes."""
    forked = [*LEAVES[:5], merkle.leaf_hash(b"rewritten"), *LEAVES[6:size]]
    stored: list[bytes] = []

    def read(indexes: list[int]) -> list[bytes]:
        return [stored[j] for j in indexes]

    for i, leaf in enumerate(forked):
        stored += merkle.stored_hashes(i, leaf, read)
    return merkle.root_from_leaf_hashes(forked), stored


def test_422_a_proof_out_of_the_forked_tree_is_kept_as_evidence(client: TestClient) -> None:
    assert post(client, body(0, 6))[0] == 200
    # The log signs a size-12 tree that does not extend the size-6 one it showed, and
    # sends the consistency proof out of that tree: it proves the fork.
    fork_root, stored = _forked_tree(12)
    fork_proof = merkle.prove_tree(12, 6, lambda idx: [stored[j] for j in idx])
    req = encode_add_checkpoint(old_size=6, proof=fork_proof, note=signed(12, root_hash=fork_root))
    status, text, _ = post(client, req)
    assert status == 422 and "bad consistency proof from size 6" in text
    assert client.get(f"/{origin_hash(ORIGIN)}/checkpoint").content.startswith(signed(6))
    alerts = client.get("/v1/alerts").json()
    assert len(alerts) == 1 and alerts[0]["kind"] == "inconsistent"
    alert = check_alert(json.dumps(alerts[0]).encode(), nodes.policy_with_urls({}))
    assert alert.observed_by == nodes.B and alert.origin == ORIGIN
    assert "certledger_alerts 1.0" in client.get("/metrics").text
    # The honest size-12 checkpoint still extends what was cosigned.
    assert post(client, body(6, 12))[0] == 200


def test_false_fork_alert_garbage_proof_is_refused_and_not_kept(client: TestClient) -> None:
    # Anyone can replay the log's honest, public checkpoint with a proof that fails: that
    # proves nothing about the log, so no alert (which every node would adopt) is kept.
    assert post(client, body(0, 6))[0] == 200
    for n in range(5):
        garbage = [bytes([n]) * 32] * len(proof(6, 12))
        req = encode_add_checkpoint(old_size=6, proof=garbage, note=signed(12))
        status, text, _ = post(client, req)
        assert status == 422 and "bad consistency proof from size 6" in text
    # From a power-of-two size the proof leaves out the old tree's hash: never evidence.
    assert post(client, body(6, 8))[0] == 200
    fork_root, stored = _forked_tree(12)
    req = encode_add_checkpoint(
        old_size=8,
        proof=merkle.prove_tree(12, 8, lambda idx: [stored[j] for j in idx]),
        note=signed(12, root_hash=fork_root),
    )
    assert post(client, req)[0] == 422
    assert client.get("/v1/alerts").json() == []
    assert post(client, body(8, 12))[0] == 200


def test_422_a_proof_between_one_size_must_be_empty(client: TestClient) -> None:
    assert post(client, body(0, 5))[0] == 200
    req = encode_add_checkpoint(old_size=5, proof=[root(3)], note=signed(5))
    status, text, _ = post(client, req)
    assert status == 422 and "must be empty" in text
    assert post(client, body(5, 5))[0] == 200


def test_the_monitor_checkpoint_carries_only_verified_log_signatures_and_ours(client: TestClient) -> None:
    # A submitter adds lines: one under our own name and key ID, and many unknown ones.
    assert post(client, body(0, 4))[0] == 200
    served = client.get(f"/{origin_hash(ORIGIN)}/checkpoint").content
    own = note.parse(served).signatures[-1]
    fake_own = note.Signature(name=own.name, key_id=own.key_id, data=bytes(72)).to_line().encode()
    junk = b"".join(
        note.Signature(name=f"junk{i}.example", key_id=bytes(4), data=bytes(64)).to_line().encode()
        for i in range(97)
    )
    assert (
        post(client, encode_add_checkpoint(old_size=4, proof=[], note=signed(4) + fake_own + junk))[0] == 200
    )
    served = client.get(f"/{origin_hash(ORIGIN)}/checkpoint").content
    sigs = note.parse(served).signatures
    assert [s.name for s in sigs] == [ORIGIN, own.name]
    # ... so monitors can open it with the log's key and our witness key.
    witness = nodes.policy_with_urls({}).require_member(nodes.B).witness_key
    opened = open_checkpoint(served, log_key=fx.AMR.log_verifier_key(fx.AMR.log_keys[1]), witnesses=[witness])
    assert opened.checkpoint.size == 4 and witness.name in opened.cosignatures


def test_422_second_root_for_a_cosigned_size(client: TestClient) -> None:
    assert post(client, body(0, 6))[0] == 200
    status, text, _ = post(client, body(6, 6, root_hash=root(7)))
    assert status == 422 and "another root" in text
    alerts = client.get("/v1/alerts").json()
    assert [a["kind"] for a in alerts] == ["same-size"]
    check_alert(json.dumps(alerts[0]).encode(), nodes.policy_with_urls({}))
    # An older size with another root is a fork too, even though the size check answers 409.
    assert post(client, body(6, 10))[0] == 200
    assert post(client, body(0, 6, root_hash=root(5)))[0] == 409
    assert len(client.get("/v1/alerts").json()) == 2


def test_concurrent_requests_never_roll_back(client: TestClient) -> None:
    sizes = list(range(1, 41))
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda n: post(client, body(0, n))[0], sizes))
    assert results.count(200) == 1 and results.count(409) == len(sizes) - 1
    winner = sizes[results.index(200)]
    # Now everyone chains from the winner, concurrently, in both directions.
    later = [n for n in range(1, 64) if n != winner]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda n: post(client, body(winner, n))[0], later))
    assert results.count(200) == 1
    stored = client.get(f"/{origin_hash(ORIGIN)}/checkpoint").content
    size = int(stored.split(b"\n")[1])
    assert size >= winner
    assert client.get("/v1/alerts").json() == []


def test_monitor_endpoint_404s(client: TestClient) -> None:
    assert client.get(f"/{origin_hash(ORIGIN)}/checkpoint").status_code == 404
    assert client.get(f"/{'A' * 64}/checkpoint").status_code == 404
    assert client.get("/xyz/checkpoint").status_code == 404


def test_alert_check_refuses_non_forks() -> None:
    policy = nodes.policy_with_urls({})

    honest = Alert(
        kind="inconsistent",
        origin=ORIGIN,
        observed_by="x",
        observed_at=1,
        earlier=signed(4),
        later=signed(9),
        proof=tuple(proof(4, 9)),
    )
    with pytest.raises(VerificationError, match="not a fork: fork proof failed"):
        check_alert(encode_alert(honest), policy)
    # A fork proof of the honest tree proves it consistent: not a fork either.
    consistent = dataclasses.replace(honest, proof=tuple(merkle.prove_fork(9, 4, _reader)))
    with pytest.raises(VerificationError, match="a prefix of the one of size 9"):
        check_alert(consistent, policy)
    same = Alert(
        kind="same-size", origin=ORIGIN, observed_by="x", observed_at=1, earlier=signed(4), later=signed(4)
    )
    with pytest.raises(VerificationError, match="not one size with two roots"):
        check_alert(same, policy)
    impostor = SigningKey.from_seed(b"i" * 32)
    forged = Alert(
        kind="same-size",
        origin=ORIGIN,
        observed_by="x",
        observed_at=1,
        earlier=signed(4),
        later=signed(4, root_hash=root(5), key=impostor),
    )
    with pytest.raises(SignatureError):
        check_alert(forged, policy)
    assert parse_alert(encode_alert(honest)) == honest


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_mutated_bodies_are_refused_cleanly(client: TestClient, data: st.DataObject) -> None:
    valid = body(0, 5)
    mutated = mutate(data, valid)
    status, _, _ = post(client, mutated)
    assert status in (200, 400, 403, 404, 409, 422)
    if status == 200:  # only edits outside the signed text can pass
        req = parse_add_checkpoint(mutated)
        assert note.parse(req.note).text == note.parse(valid.split(b"\n\n", 1)[1]).text


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400))
def test_random_bodies_are_400(client: TestClient, raw: bytes) -> None:
    status, _, _ = post(client, raw)
    assert status in (400, 403, 404)
