"""HTTP verifications per second and latency, next to a trivial endpoint of the same server.

Not a test. Starts the verifier under uvicorn in a separate process on 127.0.0.1 (an
ephemeral port), over a replica synced from static tile copies of three members' logs
(the full verification: policy, signature, claims, inclusion proof under the witnessed
checkpoint, status from every log, freshness). Load comes from wrk (Debian's ``wrk``
package) with ``--clients`` concurrent keep-alive connections. Rounds alternate between ``POST /v1/verify``
with the selective reference licence and ``GET /healthz``, ``--seconds`` each, so both
see the same load and the same machine state. Prints requests/s, p50 and p99 latency
of each and the ratio verify / healthz (target >= 0.6). Every verify response is
checked to carry the expected verdict code.

Usage, from the repository root with the ``test`` extra installed:
``python bench/bench_verify_http.py [--clients N] [--seconds S] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def serve() -> None:
    """The server process: print the port, then serve until stdin closes."""
    import socket
    import threading

    import uvicorn

    from ledger.replica.store import ReplicaStore
    from tests.verifier_world import World
    from verifier.app import Limits, create_app

    work = tempfile.TemporaryDirectory(prefix="bench-verify-http-server-")
    world = World(Path(work.name))
    store = ReplicaStore.open(Path(work.name) / "replica.db")
    service = world.service(store)
    if not all(r.ok for r in service.sync()):
        raise SystemExit("the replica did not sync")
    limits = Limits(rate=1e9, burst=10**9)
    app = create_app(service=service, limits=limits)
    text, _ = _text()
    app.mount("/layer", create_app(service=_Precomputed(service, service.verify_text(text)), limits=limits))
    sock = socket.socket(
        socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP
    )  # proto set: asyncio then sets TCP_NODELAY
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))

    def watch_stdin() -> None:
        sys.stdin.read()
        server.should_exit = True

    threading.Thread(target=watch_stdin, daemon=True).start()
    print(sock.getsockname()[1], flush=True)
    server.run(sockets=[sock])
    store.close()
    world.close()
    work.cleanup()


class _Precomputed:
    """The same service, but ``verify_text`` returns a verdict computed once: what the HTTP
    layer costs by itself."""

    on_demand_sync = False

    def __init__(self, service: Any, verdict: Any) -> None:
        self.service = service
        self.verdict = verdict

    def verify_text(self, text: str, *, purpose: str | None = None, sync: bool = True) -> Any:
        return self.verdict

    def status(self) -> dict[str, Any]:
        return self.service.status()  # type: ignore[no-any-return]

    def stats(self) -> dict[str, Any]:
        return self.service.stats()  # type: ignore[no-any-return]


def _text() -> tuple[str, str]:
    from tests.fixtures.consortium import all_credentials

    licence = all_credentials()["business_licence"]
    return licence.to_qr_text(["uscc", "name", "legal_representative"]), "VALID"


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def _seconds(text: str) -> float:
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text)
    if m is None:
        raise SystemExit(f"cannot read wrk's latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _wrk(url: str, clients: int, seconds: int, script: Path | None) -> tuple[int, float, float, float]:
    """Run wrk once: (requests, seconds, p50, p99). Any non-2xx answer or socket error aborts."""
    argv = ["wrk", "-t1", f"-c{clients}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    if script is not None:
        argv += ["-s", str(script)]
    out = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"wrk saw failed requests:\n{out}")
    done = re.search(r"([0-9]+) requests in ([0-9.]+)(us|ms|s|m)", out)
    p50 = re.search(r"^\s*50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s*99%\s+(\S+)", out, re.M)
    if done is None or p50 is None or p99 is None:
        raise SystemExit(f"cannot read wrk's output:\n{out}")
    took = float(done.group(2)) * _UNITS[done.group(3)]
    return int(done.group(1)), took, _seconds(p50.group(1)), _seconds(p99.group(1))


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=16, help="concurrent connections (default 16)")
    ap.add_argument("--seconds", type=int, default=3, help="whole seconds per endpoint per round (default 3)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve()
        return
    text, expect = _text()
    body = json.dumps({"text": text}).encode()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed for the load (Debian: apt-get install wrk)")
    work = tempfile.TemporaryDirectory(prefix="bench-verify-http-")
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        url = f"http://127.0.0.1:{int(proc.stdout.readline())}"
        for _ in range(100):
            try:
                httpx.get(url + "/healthz", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        answer = httpx.post(url + "/v1/verify", content=body, headers={"content-type": "application/json"})
        if answer.json()["code"] != expect:
            raise SystemExit(f"unexpected verdict: {answer.text[:300]}")
        script = Path(work.name) / "post.lua"
        script.write_text(
            'wrk.method = "POST"\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            f"wrk.body = {json.dumps(body.decode())}\n"
        )
        _wrk(url + "/v1/verify", args.clients, 1, script)  # warm-up
        targets = {
            "verify": ("POST /v1/verify (selective licence)", "/v1/verify", script),
            "layer": ("POST /v1/verify, verdict precomputed", "/layer/v1/verify", script),
            "healthz": ("GET /healthz (trivial)", "/healthz", None),
        }
        results: dict[str, list[tuple[int, float, float, float, float]]] = {k: [] for k in targets}
        for _ in range(args.rounds):
            for make, (_, path, lua) in targets.items():
                cpu = _cpu_seconds(proc.pid)
                n, took, p50, p99 = _wrk(url + path, args.clients, args.seconds, lua)
                results[make].append((n, took, p50, p99, _cpu_seconds(proc.pid) - cpu))
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)
        work.cleanup()
    print(
        f"verifier on 127.0.0.1 (uvicorn, one process), {args.clients} concurrent clients, "
        f"{args.rounds} alternating rounds of {args.seconds:g} s per endpoint"
    )
    rates = {}
    for make, runs in results.items():
        n = sum(r[0] for r in runs)
        total = sum(r[1] for r in runs)
        busy = sum(r[4] for r in runs)
        rates[make] = n / total
        label = targets[make][0]
        print(
            f"{label:38s} {rates[make]:7.0f} req/s  "
            f"p50 {statistics.median(r[2] for r in runs) * 1e3:6.2f} ms  "
            f"p99 {max(r[3] for r in runs) * 1e3:6.2f} ms  server CPU {busy / total:4.0%}  "
            f"({n} requests, {busy / n * 1e6:.0f} us server CPU each)"
        )
    print("(server CPU near 100% means the server, not the client, sets the rate)")
    layer = rates["layer"] / rates["healthz"]
    print(f"HTTP layer alone: precomputed verify / healthz = {layer:.2f}")
    ratio = rates["verify"] / rates["healthz"]
    print(f"verify / healthz = {ratio:.2f} (target >= 0.6): {'met' if ratio >= 0.6 else 'NOT met'}")


if __name__ == "__main__":
    main()
