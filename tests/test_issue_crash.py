"""SIGKILL a real node again and again while clerks issue, singly and in batches.

Every request carries an idempotency key. After the kills: every certificate whose
request got a 2xx is in the log exactly once and verifies, the log passes audit, and
retrying every request with its key returns the certificates it returned before; no
request ever produced a second certificate (the log holds exactly the certificates the
retries name).
"""

from __future__ import annotations

import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from ledger.log.audit import audit
from ledger.log.statement import Entry, Kind
from ledger.log.store import LogStore
from tests import window
from tests.fixtures import consortium as fx

#: Kills per run (CERTLEDGER_CRASH_KILLS overrides, for a longer soak).
KILLS = int(os.environ.get("CERTLEDGER_CRASH_KILLS", "20"))
BATCH = 25


class Load:
    """Clerk clients issuing against the node's URL until told to stop."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token
        self.lock = threading.Lock()
        self.bodies: dict[str, tuple[str, dict[str, object]]] = {}
        self.acked: dict[str, list[str]] = {}
        self.counter = 0
        self.stop = threading.Event()

    def next(self) -> int:
        with self.lock:
            self.counter += 1
            return self.counter

    def send(self, client: httpx.Client, key: str) -> list[str] | None:
        path, body = self.bodies[key]
        r = client.post(path, json=body, headers={"Idempotency-Key": key})
        if r.status_code not in (200, 201):
            return None
        doc = r.json()
        return [c["cert_id"] for c in doc["certificates"]] if "certificates" in doc else [doc["cert_id"]]

    def worker(self, batch: bool) -> None:
        with httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=10.0
        ) as c:
            key = None
            while not self.stop.is_set():
                if key is not None:  # a clerk whose request failed sends it again, same key
                    try:
                        got = self.send(c, key)
                    except httpx.TransportError:
                        time.sleep(0.05)
                        continue
                    if got is not None:
                        with self.lock:
                            self.acked[key] = got
                    key = None
                    continue
                n = self.next()
                key = f"crash-{n}"
                if batch:
                    items = [{"claims": window.food_claims(n * 1000 + i)} for i in range(BATCH)]
                    self.bodies[key] = (
                        "/v1/certificates/batch",
                        {"type": "food_business_permit", "items": items},
                    )
                else:
                    self.bodies[key] = (
                        "/v1/certificates",
                        {"type": "food_business_permit", "claims": window.food_claims(n * 1000)},
                    )
                try:
                    got = self.send(c, key)
                except httpx.TransportError:
                    time.sleep(0.05)
                    continue
                if got is not None:
                    with self.lock:
                        self.acked[key] = got
                key = None


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sigkill_under_sustained_issuing_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    data = window.make_node(tmp_path)
    token = window.add_clerk(data, "窗口一", "issue")
    port = window.free_port()
    load = Load(f"http://127.0.0.1:{port}", token)
    rng = random.Random(9)
    threads = [threading.Thread(target=load.worker, args=(i < 2,), daemon=True) for i in range(8)]
    node = window.NodeProcess(data, port=port, interval=0.1)
    t0 = time.monotonic()
    try:
        node.start()
        for t in threads:
            t.start()
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.1, 0.8))
            node.kill()
            node.start()
        load.stop.set()
        for t in threads:
            t.join()
        took = time.monotonic() - t0
        print(f"{KILLS} kills in {took:.1f}s; {len(load.bodies)} requests, {len(load.acked)} acknowledged")
        assert len(load.acked) > KILLS, "too little was acknowledged to mean anything"
        # Retry every request ever sent, with its key.
        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=node.url, headers=auth, timeout=60.0) as c, ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda key: (key, load.send(c, key)), list(load.bodies)))
        retried: dict[str, list[str]] = {}
        for key, got in answers:
            assert got is not None, key
            retried[key] = got
        print(f"retried every request by {time.monotonic() - t0:.1f}s")
    finally:
        node.stop()
    for key, ids in load.acked.items():
        assert retried[key] == ids, f"retrying {key} gave other certificates"
    store = LogStore.open(data / "log.db", readonly=True)
    try:
        logged = [
            s.cert_id
            for e in store.entries()
            if (s := Entry.from_bytes(e).signed.statement).kind == Kind.ISSUE
        ]
        report = audit(store, keys=[fx.AMR_KEY.public_key])
        store_size = store.size
    finally:
        store.close()
    assert report.size == store_size
    assert len(logged) == len(set(logged)), "a certificate is in the log twice"
    every = [cid for ids in retried.values() for cid in ids]
    assert len(every) == len(set(every))
    assert set(logged) == set(every), "the log and the requests' certificates differ"
    acked = {cid for ids in load.acked.values() for cid in ids}
    assert acked <= set(logged)
