"""Three node processes on 127.0.0.1: witnessing, mirrors, catch-up, forks refused with evidence."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import httpx
import pytest

from ledger.keys import SIG_TYPE_ED25519, key_id
from ledger.log import merkle
from ledger.log.alert import check_alert
from ledger.log.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from ledger.log.store import LogStore
from ledger.log.witness import encode_add_checkpoint, origin_hash
from ledger.replica.fetch import DirectoryFetcher, mirror_prefix
from ledger.replica.store import ReplicaStore
from ledger.replica.sync import Replica
from tests import nodes
from tests.fixtures import consortium as fx
from tests.helpers import issue

pytestmark = pytest.mark.slow

MEMBERS = (nodes.A, nodes.B, nodes.C)
WITNESSES = [fx.HEALTH.witness_key, fx.PSB.witness_key]
LOG_VKEY = fx.AMR.log_verifier_key(fx.AMR.log_keys[1])


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_until(check: object, what: str, timeout: float = 30.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()  # type: ignore[operator]
        except httpx.HTTPError:
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Network:
    """Three ``certledger node run`` processes; A also writes its tiles to a directory."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        ports = dict(zip(MEMBERS, free_ports(3), strict=True))
        self.ports = ports
        self.urls = {m: f"http://127.0.0.1:{p}/" for m, p in ports.items()}
        self.doc = nodes.sign_policy(nodes.policy_with_urls(self.urls))
        self.static = tmp / "static"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, BinaryIO] = {}
        for m in MEMBERS:
            nodes.init_node(tmp, m, self.doc)

    def start(self, m: str, *extra: str) -> None:
        self.logs[m] = (self.tmp / f"{m}.log").open("ab")
        args = [
            "--checkpoint-interval",
            "0.2",
            "--mirror-interval",
            "0.3",
            "--gossip-interval",
            "0.3",
            *extra,
        ]
        if m == nodes.A:
            args += ["--tiles-dir", str(self.static)]
        self.procs[m] = subprocess.Popen(
            [sys.executable, "-m", "certledger", "node", "run", *args],
            env={
                **os.environ,
                "CERTLEDGER_DATA": str(self.tmp / m),
                "CERTLEDGER_LISTEN": f"127.0.0.1:{self.ports[m]}",
            },
            stdout=self.logs[m],
            stderr=subprocess.STDOUT,
        )
        wait_until(lambda: httpx.get(self.urls[m] + "healthz").status_code == 200, f"{m} to start")

    def kill(self, m: str) -> None:
        self.procs[m].kill()
        self.procs[m].wait()
        self.logs[m].close()

    def stop_all(self) -> None:
        for m in MEMBERS:  # a clean stop: SIGTERM, after which uvicorn re-raises the signal
            self.procs[m].send_signal(signal.SIGTERM)
            assert self.procs[m].wait(timeout=30) in (0, -signal.SIGTERM)
            self.logs[m].close()
            assert '"message": "node stopped"' in (self.tmp / f"{m}.log").read_text()

    def cleanup(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        for f in self.logs.values():
            f.close()


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    net = Network(tmp_path)
    try:
        for m in MEMBERS:
            net.start(m)
        # Each node records the policy version it adopted as entry 0 of its log.
        for m in MEMBERS:
            wait_until(
                lambda m=m: httpx.get(net.urls[m] + "healthz").json()["size"] == 1, f"{m}'s policy entry"
            )
        yield net
        net.stop_all()
    finally:
        net.cleanup()


def _reader(leaves: list[bytes]) -> merkle.HashReader:
    stored: list[bytes] = []

    def read(indexes: Sequence[int]) -> list[bytes]:
        return [stored[i] for i in indexes]

    for i, leaf in enumerate(leaves):
        stored.extend(merkle.stored_hashes(i, leaf, read))
    return read


def mirrored_size(url: str) -> int:
    r = httpx.get(url + mirror_prefix(fx.AMR.origin) + "checkpoint")
    if r.status_code != 200:
        return -1
    return open_checkpoint(r.content, log_key=LOG_VKEY).checkpoint.size


def test_witnessing_mirrors_and_forks_between_processes(network: Network, tmp_path: Path) -> None:
    a, b, c = (network.urls[m] for m in MEMBERS)
    lk = nodes.KEYS[nodes.A][0]
    kid = key_id(fx.AMR.origin, SIG_TYPE_ED25519, lk.public_key.raw)
    r = httpx.post(a + "v1/statements", json=nodes.statements_body([issue(i) for i in range(40)], lk, kid))
    assert r.status_code == 200 and r.json()["indexes"] == list(range(1, 41))

    def witnessed() -> bytes | None:
        note = httpx.get(a + "checkpoint").content
        opened = open_checkpoint(note, log_key=LOG_VKEY, witnesses=WITNESSES)
        return note if opened.checkpoint.size == 41 and len(opened.cosignatures) == 2 else None

    note = wait_until(witnessed, "a checkpoint of size 41 cosigned by B and C")
    assert isinstance(note, bytes)
    # B and C serve what they cosigned to monitors.
    for w in (b, c):
        held = httpx.get(w + origin_hash(fx.AMR.origin) + "/checkpoint")
        assert held.status_code == 200
        assert open_checkpoint(held.content, log_key=LOG_VKEY).checkpoint.size == 41

    # A's key signs a size-45 tree that rewrote entry 3 and sends it to B.
    with LogStore.open(tmp_path / nodes.A / "log.db", readonly=True) as store:
        leaves = [merkle.leaf_hash(e) for e in store.entries(0, 41)]
    leaves[3] = merkle.leaf_hash(b"a rewritten entry")
    leaves += [merkle.leaf_hash(b"more %d" % i) for i in range(4)]
    forked = sign_checkpoint(
        Checkpoint(origin=fx.AMR.origin, size=45, root_hash=merkle.root_from_leaf_hashes(leaves)), key=lk
    )
    proof = merkle.prove_tree(45, 41, _reader(leaves))  # an honest-looking proof of the forked tree
    # Shown to B only: B refuses it and keeps the evidence.
    r = httpx.post(b + "add-checkpoint", content=encode_add_checkpoint(old_size=41, proof=proof, note=forked))
    assert r.status_code == 422 and "bad consistency proof" in r.text
    [held_by_b] = httpx.get(b + "v1/alerts").json()
    assert held_by_b["kind"] == "inconsistent" and held_by_b["observed_by"] == nodes.B

    # C learns it by gossip, and verifies it before keeping it.
    policy = nodes.policy_with_urls({})
    wait_until(lambda: httpx.get(c + "v1/alerts").json() == [held_by_b], "C to learn B's alert by gossip")
    for w in (b, c):
        check_alert(json.dumps(httpx.get(w + "v1/alerts").json()[0]).encode(), policy)
        assert "certledger_alerts 1.0" in httpx.get(w + "metrics").text
        # The cosigned checkpoint did not move.
        kept = httpx.get(w + origin_hash(fx.AMR.origin) + "/checkpoint").content
        assert open_checkpoint(kept, log_key=LOG_VKEY).checkpoint.size == 41
    c_metrics = httpx.get(c + "metrics").text
    assert 'certledger_gossip_alerts_total{how="adopted"} 1.0' in c_metrics
    # C also compares the checkpoints B holds with its own, and finds them consistent.
    assert re.search(r'certledger_gossip_checkpoints_total\{outcome="consistent"\} [1-9]', c_metrics)

    for m, found_by in ((nodes.B, "witness"), (nodes.C, "gossip")):
        out = subprocess.run(
            [sys.executable, "-m", "certledger", "node", "alerts", "--data", str(tmp_path / m)],
            capture_output=True,
            check=True,
        )
        listed = [json.loads(line) for line in out.stdout.splitlines()]
        assert len(listed) == 1 and listed[0]["verified"] is True and listed[0]["origin"] == fx.AMR.origin
        assert listed[0]["found_by"] == found_by
    # From B, or from A, which also adopts it (it is about A's own log): alerts travel on.
    assert listed[0]["source"] in (b + "v1/alerts", a + "v1/alerts")

    # A's own log keeps growing and being witnessed after the refused fork.
    r = httpx.post(
        a + "v1/statements", json=nodes.statements_body([issue(i) for i in range(40, 45)], lk, kid)
    )
    assert r.status_code == 200

    def witnessed_46() -> bool:
        note = httpx.get(a + "checkpoint").content
        opened = open_checkpoint(note, log_key=LOG_VKEY, witnesses=WITNESSES)
        return opened.checkpoint.size == 46 and len(opened.cosignatures) == 2

    wait_until(witnessed_46, "a checkpoint of size 46 cosigned by B and C")
    # The log store keeps the cosignatures with its checkpoint: log proofs carry them.
    with LogStore.open(tmp_path / nodes.A / "log.db", readonly=True) as store:
        kept = store.checkpoint_at(46)
        assert kept is not None and kept.cosigned_note is not None
        assert (
            len(open_checkpoint(kept.cosigned_note, log_key=LOG_VKEY, witnesses=WITNESSES).cosignatures) == 2
        )

    # A split view: A's key extends the real size-46 tree one way for B and another way for
    # C. Each witness sees a consistent history and cosigns; comparing what they hold, the
    # nodes find two roots for one size.
    with LogStore.open(tmp_path / nodes.A / "log.db", readonly=True) as store:
        real = [merkle.leaf_hash(e) for e in store.entries(0, 46)]
    for w, tag in ((b, b"for B"), (c, b"for C")):
        view = real + [merkle.leaf_hash(tag + b" %d" % i) for i in range(4)]
        note50 = sign_checkpoint(
            Checkpoint(origin=fx.AMR.origin, size=50, root_hash=merkle.root_from_leaf_hashes(view)), key=lk
        )
        body = encode_add_checkpoint(old_size=46, proof=merkle.prove_tree(50, 46, _reader(view)), note=note50)
        assert httpx.post(w + "add-checkpoint", content=body).status_code == 200

    def compared(w: str) -> bool:
        return any(x["kind"] == "same-size" for x in httpx.get(w + "v1/alerts").json())

    for w in (b, c):
        wait_until(lambda w=w: compared(w), f"{w} to find the split view by comparing checkpoints")
    out = subprocess.run(
        [sys.executable, "-m", "certledger", "node", "alerts", "--data", str(tmp_path / nodes.C)],
        capture_output=True,
        check=True,
    )
    [split] = [x for x in map(json.loads, out.stdout.splitlines()) if x["kind"] == "same-size"]
    assert split["verified"] is True and split["found_by"] == "gossip"
    assert split["how"] in ("found comparing checkpoints", "adopted from a peer")


def test_mirrors_catch_up_and_sync_from_a_static_copy(network: Network, tmp_path: Path) -> None:
    a, b, c = (network.urls[m] for m in MEMBERS)
    lk = nodes.KEYS[nodes.A][0]
    kid = key_id(fx.AMR.origin, SIG_TYPE_ED25519, lk.public_key.raw)
    r = httpx.post(a + "v1/statements", json=nodes.statements_body([issue(i) for i in range(300)], lk, kid))
    assert r.status_code == 200
    for w in (b, c):
        wait_until(lambda w=w: mirrored_size(w) == 301, f"{w} to mirror A's 301 entries")
    # The mirror serves tiles that check against its checkpoint.
    held = httpx.get(b + mirror_prefix(fx.AMR.origin) + "tile/0/000")
    assert held.status_code == 200 and held.content == httpx.get(a + "tile/0/000").content

    # C dies without warning; A keeps issuing; C restarts and catches up.
    network.kill(nodes.C)
    r = httpx.post(
        a + "v1/statements", json=nodes.statements_body([issue(i) for i in range(300, 310)], lk, kid)
    )
    assert r.status_code == 200
    wait_until(lambda: mirrored_size(b) == 311, "B to mirror 311 entries")
    network.start(nodes.C, "--mirror-source", f"{nodes.A}={network.static}")
    wait_until(lambda: mirrored_size(c) == 311, "C to catch up to 311 entries")

    # Anyone can sync A's log from the plain static copy A writes.
    wait_until((network.static / "checkpoint").exists, "the static checkpoint")
    with ReplicaStore.open(tmp_path / "outsider.db") as store:
        replica = Replica(store=store, policy=nodes.policy_with_urls(network.urls), member_id=nodes.A)
        result = replica.sync([DirectoryFetcher(root=network.static)])
        assert result.ok and result.size >= 300, result.refused


def test_a_node_serving_a_tampered_tile_is_rejected(network: Network, tmp_path: Path) -> None:
    a, b, c = (network.urls[m] for m in MEMBERS)
    lk = nodes.KEYS[nodes.A][0]
    kid = key_id(fx.AMR.origin, SIG_TYPE_ED25519, lk.public_key.raw)
    r = httpx.post(a + "v1/statements", json=nodes.statements_body([issue(i) for i in range(300)], lk, kid))
    assert r.status_code == 200
    wait_until(lambda: mirrored_size(c) == 301, "C to mirror A's 301 entries")
    network.kill(nodes.C)
    r = httpx.post(
        a + "v1/statements", json=nodes.statements_body([issue(i) for i in range(300, 310)], lk, kid)
    )
    assert r.status_code == 200
    wait_until(lambda: mirrored_size(b) == 311, "B to mirror 311 entries")
    static_checkpoint = network.static / "checkpoint"
    wait_until(
        lambda: (
            static_checkpoint.exists()
            and open_checkpoint(static_checkpoint.read_bytes(), log_key=LOG_VKEY).checkpoint.size == 311
        ),
        "A's static copy at 311 entries",
    )
    # A copy of A's tiles with one byte flipped in every tile, served by a plain web server.
    tampered = tmp_path / "tampered"
    shutil.copytree(network.static, tampered)
    for f in (tampered / "tile").rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            f.write_bytes(bytes([data[0] ^ 1]) + data[1:])
    [port] = free_ports(1)
    bad = f"http://127.0.0.1:{port}/"
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tampered)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: httpx.get(bad + "checkpoint").status_code == 200, "the tampered copy's server")
        network.kill(nodes.A)  # C must read A's log from the tampered copy or from B's mirror
        network.start(nodes.C, "--mirror-source", f"{nodes.A}={bad}")
        wait_until(lambda: mirrored_size(c) == 311, "C to catch up from B's mirror")
        refused = httpx.get(c + "v1/refused").json()
        named = [x for x in refused if x["source"] == bad]
        assert named and named[0]["member"] == nodes.A
        assert named[0]["message"].startswith(f"refused data from {bad}: ")
        # The tampered data is refused, not a fork: no fork alert anywhere.
        assert httpx.get(c + "v1/alerts").json() == []
    finally:
        server.terminate()
        server.wait(timeout=10)
    network.start(nodes.A)


def test_a_new_policy_version_is_adopted_by_all(network: Network, tmp_path: Path) -> None:
    v2 = nodes.sign_policy(nodes.policy_with_urls(network.urls, version=2))
    (tmp_path / "v2.note").write_bytes(v2)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "certledger",
            "node",
            "update-policy",
            str(tmp_path / "v2.note"),
            "--data",
            str(tmp_path / nodes.A),
        ],
        check=True,
        capture_output=True,
    )
    for m in MEMBERS:  # A reloads it from disk; B and C take it from A
        wait_until(lambda m=m: httpx.get(network.urls[m] + "policy/latest").content == v2, f"{m} to adopt v2")
    # Each records the version's hash in its own log.
    for m in MEMBERS:
        wait_until(lambda m=m: httpx.get(network.urls[m] + "healthz").json()["size"] == 2, f"{m}'s v2 entry")


def test_a_lost_log_is_recovered_from_a_mirror(network: Network, tmp_path: Path) -> None:
    a, b = network.urls[nodes.A], network.urls[nodes.B]
    lk = nodes.KEYS[nodes.A][0]
    kid = key_id(fx.AMR.origin, SIG_TYPE_ED25519, lk.public_key.raw)
    r = httpx.post(a + "v1/statements", json=nodes.statements_body([issue(i) for i in range(30)], lk, kid))
    assert r.status_code == 200
    wait_until(lambda: mirrored_size(b) == 31, "B to mirror A's 31 entries")
    # a static copy of the log at 31 entries, for later
    stale = tmp_path / "stale-31"
    for path in ("checkpoint", "tile/0/000.p/31", "tile/entries/000.p/31"):
        (stale / path).parent.mkdir(parents=True, exist_ok=True)
        (stale / path).write_bytes(httpx.get(b + mirror_prefix(fx.AMR.origin) + path).content)
    recover = [
        sys.executable,
        "-m",
        "certledger",
        "node",
        "recover",
        "--data",
        str(tmp_path / nodes.A),
        "--from",
        b + mirror_prefix(fx.AMR.origin),
    ]
    # Not under a running node: its acknowledged appends would go to the renamed file.
    out = subprocess.run(recover, capture_output=True, text=True)
    assert out.returncode == 1 and "the node is running; stop it first (rule: node-running)" in out.stderr
    assert sorted(p.name for p in (tmp_path / nodes.A).iterdir() if p.name.startswith("log.db.")) == []
    network.kill(nodes.A)
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / nodes.A / f"log.db{suffix}").unlink(missing_ok=True)
    out = subprocess.run(recover, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "recovered 31 entries from " in out.stdout
    network.start(nodes.A)
    r = httpx.post(
        a + "v1/statements", json=nodes.statements_body([issue(i) for i in range(30, 33)], lk, kid)
    )
    assert r.status_code == 200 and r.json()["indexes"] == [31, 32, 33]

    def witnessed_34() -> bool:
        opened = open_checkpoint(httpx.get(a + "checkpoint").content, log_key=LOG_VKEY, witnesses=WITNESSES)
        return opened.checkpoint.size == 34 and len(opened.cosignatures) == 2

    wait_until(witnessed_34, "the recovered log to grow and be witnessed again")
    # A copy behind what the log key signed is refused, and changes nothing.
    network.kill(nodes.A)
    out = subprocess.run([*recover[:-1], str(stale)], capture_output=True, text=True)
    try:
        assert out.returncode == 1 and "does not extend the last checkpoint the log key signed" in out.stderr
        with LogStore.open(tmp_path / nodes.A / "log.db", readonly=True) as kept:
            assert kept.size == 34
        assert not [p for p in (tmp_path / nodes.A).iterdir() if p.name.startswith("log.db.")]
    finally:
        network.start(nodes.A)
