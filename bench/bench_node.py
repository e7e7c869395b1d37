"""Tile serving next to a trivial endpoint of the same node server.

Not a test. Builds a node data directory holding a log of ``--entries`` entries
(default 65,536: 256 full level-0 tiles and entry bundles), starts ``certledger``'s
node app under uvicorn in a child process on 127.0.0.1 (witnessing off, so nothing
else is contacted), and then, in alternating rounds from one client process with
``--concurrency`` connections:

* requests random full tiles (hash tiles and entry bundles) through ``/tile/...``;
* requests ``/healthz`` (a trivial JSON endpoint of the same app).

It prints requests per second for each, per round and as the median, and the ratio
tile / trivial.

Then it measures a mirror's catch-up (``--mirror-entries``, default 1,000,000; 0
skips): the node's tiles written as a static copy (``node.static.TilesDir``), and fresh
replicas each syncing all of it from that directory end to end through
``ledger.replica.sync.Replica.sync`` (checkpoint signature and witness quorum first):

* checking the tree, the hash chain and the root (``statements=False``), next to the
  machine's raw SHA-256 rate (hashes of an entry-sized message);
* with every statement's signature, key validity and mandate checked as well, in one
  process and with two worker processes for the signatures, next to the raw Ed25519
  verify rate of one core, also per core used (CPU time of the process and its workers
  over the wall-clock time).

The raw rates are measured right before and after each catch-up in the same run. The
resident set size of the syncing process is printed at 100,000, 500,000 entries and at
the end.

Usage: ``python bench/bench_node.py [--entries N] [--requests R] [--rounds K]
[--concurrency C] [--mirror-entries M]``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import nacl.bindings

from ledger.keys import SIG_TYPE_COSIGNATURE, SigningKey, VerifierKey
from ledger.log.certid import CertId
from ledger.log.checkpoint import CosignatureSigner, cosign
from ledger.log.statement import Kind, Statement
from ledger.log.store import LogStore
from ledger.replica import tiles
from ledger.replica.fetch import DirectoryFetcher
from ledger.replica.store import ReplicaStore
from ledger.replica.sync import Replica
from ledger.trust.policy import CertificateType, ClaimSpec, LogKey, Mandate, Member, Policy
from ledger.trust.policy_doc import sign_proposal
from node.config import load_config
from node.static import TilesDir

ORIGIN = "ledger.example.gov.cn/bench-a"


def _members(keys: dict[str, tuple[SigningKey, SigningKey]]) -> tuple[Member, ...]:
    return tuple(
        Member(
            id=mid,
            name=f"Department {mid}",
            origin=f"ledger.example.gov.cn/{mid}",
            issuer_code="11330106MB1234567X" if mid == "bench-a" else f"1133010600000000{i}X",
            base_url="http://127.0.0.1:9/",
            log_keys=(LogKey(public_key=lk.public_key, valid_from=0),),
            witness_key=VerifierKey(
                name=f"witness.example.gov.cn/{mid}", public_key=wk.public_key, sig_type=SIG_TYPE_COSIGNATURE
            ),
        )
        for i, (mid, (lk, wk)) in enumerate(keys.items())
    )


def build(data: Path, entries: int) -> dict[str, tuple[SigningKey, SigningKey]]:
    """A node data directory with a log of ``entries`` issue statements and a checkpoint;
    returns every member's (log key, witness key)."""
    keys = {m: (SigningKey.generate(), SigningKey.generate()) for m in ("bench-a", "bench-b", "bench-c")}
    governance = SigningKey.generate()
    now = int(time.time())
    policy = Policy(
        consortium="bench",
        version=1,
        issued=now - 60,
        expires=now + 86400,
        members=_members(keys),
        types=(
            CertificateType(
                code="business_licence",
                name="licence",
                national_code="11100000000013338W032",
                claims=(ClaimSpec(key=0, name="uscc", label="code", kind="code", max_length=18),),
                issuers=(Mandate(member="bench-a"),),
                revokers=(Mandate(member="bench-a"),),
                purposes={"identity": ("uscc",)},
            ),
        ),
        witness_quorum=1,
        freshness_seconds=3600,
        governance_keys=(VerifierKey(name="governance.example", public_key=governance.public_key),),
        governance_threshold=1,
    )
    (data / "policy").mkdir(parents=True)
    (data / "policy" / "00000001.note").write_bytes(
        sign_proposal(policy, [("governance.example", governance)])
    )
    (data / "member").write_text("bench-a\n")
    keys["bench-a"][0].save(data / "log.key")
    keys["bench-a"][1].save(data / "witness.key")
    with LogStore.create(data / "log.db", origin=ORIGIN) as store:
        for start in range(0, entries, 4096):
            batch = [
                Statement(
                    kind=Kind.ISSUE,
                    issuer="bench-a",
                    cert_id=str(
                        CertId(
                            type_code="11100000000013338W032",
                            issuer_code="11330106MB1234567X",
                            serial=str(i),
                            version="001",
                        )
                    ),
                    cert_type="business_licence",
                    time=1_717_171_200 + i,
                    operator="op:bench",
                    valid_from=1_717_171_200,
                    claim_digests={0: bytes(32)},
                )
                for i in range(start, min(entries, start + 4096))
            ]
            store.append(batch, key=keys["bench-a"][0])
        store.checkpoint(keys["bench-a"][0])
    return keys


def serve(data: Path, port: int) -> None:
    """Run the node app (witnessing off) until killed."""
    import uvicorn

    from node.app import create_app

    app = create_app(config=load_config(data, submit=False, mirror=False))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


async def _round(base: str, paths: list[str], concurrency: int) -> float:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits) as client:
        queue = list(paths)

        async def worker() -> None:
            while queue:
                r = await client.get(queue.pop())
                if r.status_code != 200:
                    raise SystemExit(f"{r.request.url}: {r.status_code}")

        t = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return len(paths) / (time.perf_counter() - t)


def _raw_rates(message: bytes, key: SigningKey, seconds: float = 1.0) -> tuple[float, float, float, float]:
    """Raw SHA-256 hashes of ``message`` and raw libsodium Ed25519 verifications on one
    core: per second of wall-clock time, then per second of CPU time."""
    n, t, c = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t < seconds:
        for _ in range(1000):
            hashlib.sha256(message).digest()
        n += 1000
    sha, sha_cpu = n / (time.perf_counter() - t), n / (time.process_time() - c)
    signed = key.sign(message) + message
    public = key.public_key.raw
    n, t, c = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t < seconds:
        for _ in range(100):
            nacl.bindings.crypto_sign_open(signed, public)
        n += 100
    return sha, n / (time.perf_counter() - t), sha_cpu, n / (time.process_time() - c)


def _rss() -> int:
    """This process's resident set size in bytes (Linux), else its peak."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class _RssProbe:
    """A source that notes the RSS when the catch-up first asks for entries past each mark."""

    def __init__(self, inner: DirectoryFetcher, marks: list[int]) -> None:
        self.inner = inner
        self.marks = sorted(marks)
        self.seen: dict[int, int] = {}

    @property
    def name(self) -> str:
        return self.inner.name

    def get(self, path: str, *, max_size: int) -> bytes:
        if path.startswith("tile/entries/"):
            first = tiles.parse_tile_path(path).index * tiles.TILE_WIDTH
            for mark in self.marks:
                if first >= mark and mark not in self.seen:
                    self.seen[mark] = _rss()
        return self.inner.get(path, max_size=max_size)


def _catch_up(
    static: Path, db: Path, policy: Policy, entries: int, *, statements: bool, workers: int
) -> tuple[float, float, dict[int, int]]:
    """One fresh replica's catch-up through ``Replica.sync``: (seconds, CPU seconds of this
    process and its workers, RSS of this process at marks)."""
    marks = [m for m in (100_000, 500_000) if m < entries]
    probe = _RssProbe(DirectoryFetcher(root=static), marks)
    with ReplicaStore.open(db) as replica_store:
        replica = Replica(store=replica_store, policy=policy, member_id="bench-a", workers=workers)
        cpu = os.times()
        t = time.perf_counter()
        result = replica.sync([probe], statements=statements)
        took = time.perf_counter() - t
        after = os.times()
    if not result.ok or result.size != entries:
        raise SystemExit(f"mirror sync failed: {result.refused}")
    probe.seen[entries] = _rss()
    used = sum(after[:4]) - sum(cpu[:4])  # user + system, this process and finished children
    # os.times counts whole clock ticks: a catch-up shorter than one tick still used some
    return took, max(used, 1 / os.sysconf("SC_CLK_TCK")), probe.seen


def mirror_catch_up(entries: int) -> None:
    """Time fresh replicas syncing a static copy of a log of ``entries`` entries."""
    with tempfile.TemporaryDirectory() as tmp:
        data, static = Path(tmp) / "node", Path(tmp) / "static"
        t = time.perf_counter()
        keys = build(data, entries)
        config = load_config(data, submit=False, mirror=False)
        with LogStore.open(data / "log.db", readonly=True) as store:
            TilesDir(static).write_tiles(store, entries)
            latest = store.latest_checkpoint()
            assert latest is not None
            sample = store.entry(entries // 2)
        built = time.perf_counter() - t
        print(f"log of {entries:,} entries built and written as a static tile copy in {built:.0f} s")
        (data / "log.db").unlink()
        policy = config.policy.policy
        witness = policy.require_member("bench-b").witness_key
        note = cosign(latest.note, CosignatureSigner(name=witness.name, key=keys["bench-b"][1]))
        (static / "checkpoint").write_bytes(note)
        cores = min(2, os.cpu_count() or 1)
        runs = [("tree, chain and root", False, 1), ("all checks, 1 process", True, 1)]
        if cores > 1:
            runs.append((f"all checks, {cores} worker processes", True, cores))
        print(f"RSS before the catch-ups: {_rss() / 2**20:,.0f} MiB")
        for n, (what, statements, workers) in enumerate(runs):
            before = _raw_rates(sample, keys["bench-a"][0])
            took, cpu, rss = _catch_up(
                static, Path(tmp) / f"replica{n}.db", policy, entries, statements=statements, workers=workers
            )
            after = _raw_rates(sample, keys["bench-a"][0])
            sha_rate, verify_rate, sha_cpu, verify_cpu = (
                (x + y) / 2 for x, y in zip(before, after, strict=True)
            )
            rate, rate_cpu = entries / took, entries / cpu
            print(
                f"mirror catch-up ({what}): {rate:,.0f} entries/s in {took:.1f} s; "
                f"{cpu / took:.2f} cores busy, {rate_cpu:,.0f} entries per CPU-second"
            )
            if statements:
                print(
                    f"  raw libsodium Ed25519 verify (one core, same run): {verify_rate:,.0f} /s, "
                    f"{verify_cpu:,.0f} per CPU-second; catch-up / verify = {rate / verify_rate:.2f}, "
                    f"per core used {rate_cpu / verify_cpu:.2f}"
                )
            else:
                print(
                    f"  raw SHA-256 of a {len(sample)}-byte entry (one core, same run): {sha_rate:,.0f} /s, "
                    f"{sha_cpu:,.0f} per CPU-second; catch-up / SHA-256 = {rate / sha_rate:.3f}, "
                    f"per core used {rate_cpu / sha_cpu:.3f}"
                )
            print(
                "  RSS: " + ", ".join(f"{k:,} entries {v / 2**20:,.0f} MiB" for k, v in sorted(rss.items()))
            )
            (Path(tmp) / f"replica{n}.db").unlink()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=65_536)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--mirror-entries", type=int, default=1_000_000)
    ap.add_argument("--serve", nargs=2, metavar=("DATA", "PORT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(Path(args.serve[0]), int(args.serve[1]))
        return
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "node"
        t = time.perf_counter()
        build(data, args.entries)
        print(f"log of {args.entries:,} entries built in {time.perf_counter() - t:.1f} s")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen([sys.executable, __file__, "--serve", str(data), str(port)])
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(300):
                try:
                    if httpx.get(base + "/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            full = [t for t in tiles.tiles_for_size(args.entries) if t.is_full and t.level <= 0]
            rng = random.Random(1)
            tile_rps, trivial_rps = [], []
            for n in range(args.rounds):
                paths = ["/" + rng.choice(full).path for _ in range(args.requests)]
                tile_rps.append(asyncio.run(_round(base, paths, args.concurrency)))
                trivial_rps.append(asyncio.run(_round(base, ["/healthz"] * args.requests, args.concurrency)))
                print(
                    f"round {n + 1}: tiles {tile_rps[-1]:,.0f} req/s, /healthz {trivial_rps[-1]:,.0f} req/s, "
                    f"ratio {tile_rps[-1] / trivial_rps[-1]:.2f}"
                )
            ts, hs = statistics.median(tile_rps), statistics.median(trivial_rps)
            print(f"median: full tiles {ts:,.0f} req/s, trivial endpoint {hs:,.0f} req/s")
            print(f"tile serving / trivial endpoint = {ts / hs:.2f} ({len(full)} distinct full tiles)")
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    if args.mirror_entries:
        mirror_catch_up(args.mirror_entries)


if __name__ == "__main__":
    main()
