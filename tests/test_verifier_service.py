"""The verification service over a real replica: verdicts, freshness, alerts, daily counts,
and ``certledger verifier run`` as a process with every issuing node stopped."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from certledger.cli import cli
from certledger.cli.verifier import parse_listen
from ledger.credential.qr import render_png
from ledger.replica.store import ReplicaStore
from ledger.trust.policy_doc import sign_proposal
from tests.fixtures.consortium import AMR, GOVERNANCE_KEY, HEALTH, POLICY, PSB, issue_reference
from tests.replica_fixtures import NOW, licence
from tests.verifier_world import REVOKED, UNLOGGED, World
from verifier.app import Limits, create_app
from verifier.service import ReplicaService


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.close()


def _service(world: World, store: ReplicaStore, now: int = NOW) -> ReplicaService:
    return world.service(store, now=now)


def test_valid_and_revoked_over_http(world: World, tmp_path: Path) -> None:
    with ReplicaStore.open(tmp_path / "replica.db") as store:
        service = _service(world, store)
        assert all(r.ok for r in service.sync())
        with TestClient(create_app(service=service, limits=Limits(rate=100, burst=100))) as client:
            text = issue_reference().to_qr_text(["uscc", "name"])
            v = client.post("/v1/verify", json={"text": text}).json()
            assert v["code"] == "VALID" and v["class"] == "valid"
            assert v["as_of"] == NOW - 60
            assert v["evidence"]["entry_index"] == 0
            assert v["evidence"]["cosigners"] == [HEALTH.id, PSB.id]
            png = render_png(REVOKED.to_qr_text())
            r = client.post("/v1/verify/image", content=png, headers={"content-type": "image/png"})
            assert r.json()["code"] == "REVOKED" and r.json()["class"] == "invalid"


def test_a_certificate_issued_after_the_last_sync_is_found_on_demand(world: World, tmp_path: Path) -> None:
    with ReplicaStore.open(tmp_path / "replica.db") as store:
        service = world.service(store, min_interval=0)
        service.sync()
        with TestClient(create_app(service=service)) as client:
            v = client.post("/v1/verify", json={"text": UNLOGGED.to_qr_text()}).json()
            assert v["code"] == "NOT_IN_LEDGER" and v["class"] == "unsure"
            assert any("on demand" in w and "not there either" in w for w in v["warnings"]), v
            # issued seconds ago: in the issuer's log, but not yet in the replica
            world.net.append(AMR.id, [UNLOGGED.signed])
            world.publish(at=NOW - 30)
            v = client.post("/v1/verify", json={"text": UNLOGGED.to_qr_text()}).json()
            assert v["code"] == "VALID" and v["evidence"]["entry_index"] == 3


def test_status_shows_sizes_freshness_and_sync_errors(world: World, tmp_path: Path) -> None:
    with ReplicaStore.open(tmp_path / "replica.db") as store:
        service = _service(world, store)
        service.sync()
        s = service.status()
        amr = next(m for m in s["members"] if m["id"] == AMR.id)
        assert amr["log_size"] == 3 and amr["witnessed_size"] == 3
        assert amr["witnessed_at"] == NOW - 60 and amr["age_seconds"] == 60 and amr["fresh"] is True
        assert amr["cosigners"] == [HEALTH.id, PSB.id]
        assert amr["last_sync"] == NOW and amr["error"] is None
        assert s["alerts"] == []
        shutil.rmtree(world.public)  # every source gone: the replica still answers, with the error shown
        service.sync()
        amr = next(m for m in service.status()["members"] if m["id"] == AMR.id)
        assert amr["log_size"] == 3 and "no file checkpoint" in amr["error"]


def test_stale_members_and_an_expiring_policy_raise_alerts(world: World, tmp_path: Path) -> None:
    with ReplicaStore.open(tmp_path / "replica.db") as store:
        _service(world, store).sync()
        later = _service(world, store, now=NOW + POLICY.freshness_seconds + 3600)
        s = later.status()
        assert {m["id"]: m["fresh"] for m in s["members"]} == {AMR.id: False, HEALTH.id: False, PSB.id: False}
        stale = [a for a in s["alerts"] if a["kind"] == "stale"]
        assert len(stale) == 3 and "the limit is 3600 s" in stale[0]["message"]
        near_expiry = _service(world, store, now=POLICY.expires - 5 * 86400)
        expiry = [a for a in near_expiry.status()["alerts"] if a["kind"] == "policy_expiry"]
        assert expiry[0]["message"] == "trust policy version 1 expires in 5 days"


def test_stats_count_issued_and_revoked_per_day_per_member(world: World, tmp_path: Path) -> None:
    with ReplicaStore.open(tmp_path / "replica.db") as store:
        service = _service(world, store)
        service.sync()
        st = service.stats()
        assert len(st["days"]) == 30 and st["days"][-1] == "2024-06-02"
        amr = next(m for m in st["members"] if m["id"] == AMR.id)
        # both licences were issued on 2024-06-01 (China time); the revocation is on 2024-06-01 too
        day = st["days"].index("2024-06-01")
        assert amr["issued"][day] == 2 and sum(amr["issued"]) == 2
        assert amr["revoked"][day] == 1 and sum(amr["revoked"]) == 1
        # counting is incremental: new entries are added, old ones not counted twice
        world.net.append(AMR.id, [licence("2024000778", time=NOW - 120).signed])
        world.publish(at=NOW - 30)
        service.sync()
        amr = next(m for m in service.stats()["members"] if m["id"] == AMR.id)
        assert amr["issued"][day] == 3 and sum(amr["issued"]) == 3  # 23:58 China time, same day


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_listen("[::1]:0") == ("::1", 0)
    for bad in ("8080", "host:", ":80", "h:99999", "h:x"):
        with pytest.raises(Exception, match="is not HOST:PORT"):
            parse_listen(bad)


def test_run_usage_errors(tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["verifier", "run", "--data", str(tmp_path), "--policy", str(tmp_path / "p")])
    assert r.exit_code != 0
    r = CliRunner().invoke(cli, ["verifier", "run", "--help"])
    assert "CERTLEDGER_NODES" in r.stdout and "CERTLEDGER_LISTEN" in r.stdout


@pytest.mark.slow
def test_verifier_run_serves_verdicts_with_every_issuing_node_stopped(world: World, tmp_path: Path) -> None:
    # the logs were published as static copies: no issuing node runs at all
    now = int(time.time())
    world.publish(at=now - 60)
    policy = tmp_path / "policy.txt"
    policy.write_bytes(sign_proposal(POLICY, [("governance.example.gov.cn", GOVERNANCE_KEY)]))
    env = {
        **os.environ,
        "CERTLEDGER_NODES": str(world.public),
        "CERTLEDGER_DATA": str(tmp_path / "data"),
        "CERTLEDGER_POLICY": str(policy),
        "CERTLEDGER_LISTEN": "127.0.0.1:0",
        "CERTLEDGER_SYNC_INTERVAL": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "certledger", "verifier", "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "serving on http://127.0.0.1:" in line, line + (proc.stderr.read() if proc.stderr else "")
        url = line.rsplit(" ", 1)[1].strip().rstrip("/")
        deadline = time.monotonic() + 30
        while True:
            members = httpx.get(url + "/v1/status", timeout=5).json()["members"]
            if all(m["fresh"] for m in members):
                break
            assert time.monotonic() < deadline, members
            time.sleep(0.2)
        v = httpx.post(url + "/v1/verify", json={"text": issue_reference().to_qr_text()}, timeout=10).json()
        assert v["code"] == "VALID", v
        v = httpx.post(url + "/v1/verify", json={"text": REVOKED.to_qr_text()}, timeout=10).json()
        assert v["code"] == "REVOKED", v
        page = httpx.get(url + "/", timeout=5)
        assert page.status_code == 200 and "证照核验" in page.text
        # the pinned policy is the first of the chain kept in the data directory
        assert (tmp_path / "data" / "policy" / "00000001.note").read_bytes() == policy.read_bytes()
        # static tile copies hold no policy versions: none is asked, and none is reported
        # unreachable at every sync
        followed = httpx.get(url + "/v1/status", timeout=5).json()["policy"]
        assert followed["following"] is False and followed["refusals"] == []
        metrics = httpx.get(url + "/metrics", timeout=5).text
        assert "certledger_verifier_policy_version 1.0" in metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    # uvicorn shuts down gracefully, then re-raises the signal it caught
    assert proc.returncode in (0, -signal.SIGTERM)
    assert "Traceback" not in err
    assert "unreachable" not in err


def test_old_replica_data_is_stale_over_http_with_its_time(world: World, tmp_path: Path) -> None:
    with ReplicaStore.open(tmp_path / "replica.db") as store:
        world.service(store).sync()
        later = world.service(store, now=NOW + POLICY.freshness_seconds + 3600)
        with TestClient(create_app(service=later)) as client:
            v = client.post("/v1/verify", json={"text": issue_reference().to_qr_text()}).json()
    assert v["code"] == "STALE" and v["class"] == "unsure"
    assert v["as_of"] == NOW - 60
