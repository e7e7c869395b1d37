"""HTTP verifications per second and latency, next to a trivial endpoint of the same server.

Not a test. Starts the verifier under uvicorn in a separate process on 127.0.0.1 (an
ephemeral port), over a replica synced from static tile copies of three members' logs
(the full verification: policy, signature, claims, inclusion proof under the witnessed
checkpoint, status from every log, freshness). The market regulator's log holds the
reference licence and ``--certificates`` more licences of the same type and claims; the
verify requests cycle through their selective presentations (the reference licence's
disclosure: USCC, name, legal representative), so no two requests in a row carry the
same certificate. Load comes from wrk (Debian's ``wrk`` package) with ``--clients``
concurrent keep-alive connections. Rounds alternate between ``POST /v1/verify`` and
``GET /healthz`` (an ordinary route of the same application, behind the same
middleware), ``--seconds`` each, so both see the same load and the same machine state.
Every response is checked by wrk's script: each verify answer must be 200 with the
VALID verdict, each /healthz answer 200 ``{"ok":true}``.

A third row runs a second server process whose service returns one precomputed verdict:
what the HTTP layer costs by itself. Prints requests/s, p50 and p99 latency and server
CPU per request of each, and the ratio verify / healthz (target >= 0.6).

Usage, from the repository root with the ``test`` extra installed:
``python bench/bench_verify_http.py [--clients N] [--seconds S] [--rounds R] [--certificates N]``.
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

REVEAL = ("uscc", "name", "legal_representative")  # the reference licence's selective disclosure


def serve(*, certificates: int, precomputed: bool) -> None:
    """The server process: print the port, then serve until stdin closes."""
    import socket
    import threading

    import uvicorn

    from ledger.replica.store import ReplicaStore
    from tests.fixtures.consortium import AMR
    from tests.replica_fixtures import NOW
    from tests.verifier_world import World
    from verifier.app import Limits, create_app

    work = tempfile.TemporaryDirectory(prefix="bench-verify-http-server-")
    world = World(Path(work.name))
    world.net.append(AMR.id, [c.signed for c in _licences(certificates)])
    world.publish(at=NOW - 60)
    store = ReplicaStore.open(Path(work.name) / "replica.db")
    service: Any = world.service(store)
    if not all(r.ok for r in service.sync()):
        raise SystemExit("the replica did not sync")
    if precomputed:
        service = _Precomputed(service, service.verify_text(_texts(0)[0]))
    app = create_app(service=service, limits=Limits(rate=1e9, burst=10**9))
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


def _licences(n: int) -> list[Any]:
    """``n`` more business licences by the market regulator, with the reference one's claims."""
    from tests.replica_fixtures import licence

    return [licence(f"2025{i:06d}") for i in range(n)]


def _texts(certificates: int) -> list[str]:
    """The selective QR texts: the reference licence first, then the others."""
    from tests.fixtures.consortium import all_credentials

    reference = all_credentials()["business_licence"]
    return [c.to_qr_text(REVEAL) for c in [reference, *_licences(certificates)]]


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def _seconds(text: str) -> float:
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text)
    if m is None:
        raise SystemExit(f"cannot read wrk's latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


_CHECKS = """
checked = 0
bad = 0
response = function(status, headers, body)
  checked = checked + 1
  if status ~= 200 or not string.find(body, expected, 1, true) then
    bad = bad + 1
  end
end
local threads = {}
setup = function(thread)
  table.insert(threads, thread)
end
done = function(summary, latency, requests)
  local c, b = 0, 0
  for _, t in ipairs(threads) do
    c = c + t:get("checked")
    b = b + t:get("bad")
  end
  io.write(string.format("checked %d bad %d\\n", c, b))
end
"""


def _script(path: Path, *, expected: str, bodies: list[str] | None = None) -> Path:
    """A wrk script checking every answer for ``expected``; POSTing ``bodies`` in turn if given."""
    lua = f"expected = {json.dumps(expected)}\n" + _CHECKS
    if bodies is not None:
        lua += (
            "local bodies = {\n"
            + "".join(f"  {json.dumps(b)},\n" for b in bodies)
            + "}\n"
            + "local requests = {}\n"
            "local i = 0\n"
            "init = function(args)\n"
            "  for k, b in ipairs(bodies) do\n"
            '    requests[k] = wrk.format("POST", nil, {["Content-Type"] = "application/json"}, b)\n'
            "  end\n"
            "end\n"
            "request = function()\n"
            "  i = i % #requests + 1\n"
            "  return requests[i]\n"
            "end\n"
        )
    path.write_text(lua)
    return path


def _wrk(url: str, clients: int, seconds: int, script: Path) -> tuple[int, float, float, float]:
    """Run wrk once: (requests, seconds, p50, p99). A failed request, a socket error or
    an answer without the expected content aborts."""
    argv = ["wrk", "-t1", f"-c{clients}", f"-d{seconds}s", "--latency", "--timeout", "10s", "-s", str(script)]
    out = subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"wrk saw failed requests:\n{out}")
    done = re.search(r"([0-9]+) requests in ([0-9.]+)(us|ms|s|m)", out)
    p50 = re.search(r"^\s*50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s*99%\s+(\S+)", out, re.M)
    checked = re.search(r"^checked ([0-9]+) bad ([0-9]+)$", out, re.M)
    if done is None or p50 is None or p99 is None or checked is None:
        raise SystemExit(f"cannot read wrk's output:\n{out}")
    n = int(done.group(1))
    if int(checked.group(2)) or int(checked.group(1)) != n:
        raise SystemExit(f"not every answer was the expected one:\n{out}")
    took = float(done.group(2)) * _UNITS[done.group(3)]
    return n, took, _seconds(p50.group(1)), _seconds(p99.group(1))


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start(certificates: int, precomputed: bool) -> tuple[subprocess.Popen[str], str]:
    argv = [sys.executable, __file__, "--serve", "--certificates", str(certificates)]
    if precomputed:
        argv.append("--precomputed")
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.strip().isdigit():
        proc.kill()
        raise SystemExit("the server did not start")
    url = f"http://127.0.0.1:{int(line)}"
    for _ in range(100):
        try:
            httpx.get(url + "/healthz", timeout=1).raise_for_status()
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    return proc, url


def _stop(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=16, help="concurrent connections (default 16)")
    ap.add_argument("--seconds", type=int, default=3, help="whole seconds per endpoint per round (default 3)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    ap.add_argument(
        "--certificates", type=int, default=255, help="licences besides the reference one (default 255)"
    )
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--precomputed", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(certificates=args.certificates, precomputed=args.precomputed)
        return
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed for the load (Debian: apt-get install wrk)")
    bodies = [json.dumps({"text": t}) for t in _texts(args.certificates)]
    work = tempfile.TemporaryDirectory(prefix="bench-verify-http-")
    procs: list[subprocess.Popen[str]] = []
    try:
        proc, url = _start(args.certificates, precomputed=False)
        procs.append(proc)
        layer_proc, layer_url = _start(args.certificates, precomputed=True)
        procs.append(layer_proc)
        for b in bodies:  # every certificate is VALID before the clock starts (and warms nothing
            answer = httpx.post(  # but the connection: the server keeps no verdicts)
                url + "/v1/verify", content=b, headers={"content-type": "application/json"}
            )
            if answer.json()["code"] != "VALID":
                raise SystemExit(f"unexpected verdict: {answer.text[:300]}")
        post = _script(Path(work.name) / "post.lua", expected='"code":"VALID"', bodies=bodies)
        get = _script(Path(work.name) / "get.lua", expected='{"ok":true}')
        for u in (url, layer_url):
            _wrk(u + "/v1/verify", args.clients, 1, post)  # warm-up
        targets = {
            "verify": ("POST /v1/verify (selective licence)", proc, url + "/v1/verify", post),
            "layer": ("POST /v1/verify, verdict precomputed", layer_proc, layer_url + "/v1/verify", post),
            "healthz": ("GET /healthz (trivial)", proc, url + "/healthz", get),
        }
        results: dict[str, list[tuple[int, float, float, float, float]]] = {k: [] for k in targets}
        for _ in range(args.rounds):
            for make, (_, server, target, script) in targets.items():
                cpu = _cpu_seconds(server.pid)
                n, took, p50, p99 = _wrk(target, args.clients, args.seconds, script)
                results[make].append((n, took, p50, p99, _cpu_seconds(server.pid) - cpu))
    finally:
        for p in procs:
            _stop(p)
        work.cleanup()
    print(
        f"verifier on 127.0.0.1 (uvicorn, one process), {args.clients} concurrent clients, "
        f"{args.rounds} alternating rounds of {args.seconds:g} s per endpoint, "
        f"{len(bodies)} distinct certificates"
    )
    rates, cpu_each = {}, {}
    for make, runs in results.items():
        n = sum(r[0] for r in runs)
        total = sum(r[1] for r in runs)
        busy = sum(r[4] for r in runs)
        rates[make] = n / total
        cpu_each[make] = busy / n
        label = targets[make][0]
        print(
            f"{label:38s} {rates[make]:7.0f} req/s  "
            f"p50 {statistics.median(r[2] for r in runs) * 1e3:6.2f} ms  "
            f"p99 {max(r[3] for r in runs) * 1e3:6.2f} ms  server CPU {busy / total:4.0%}  "
            f"({n} requests, {busy / n * 1e6:.0f} us server CPU each)"
        )
    print("(server CPU near 100% means the server, not the client, sets the rate)")
    print("every answer checked: each verify VALID, each /healthz ok")
    print(
        f"server CPU per request, healthz / verify = {cpu_each['healthz'] / cpu_each['verify']:.2f} "
        "(the rate ratio when the server has a core of its own)"
    )
    print(f"HTTP layer alone: precomputed verify / healthz = {rates['layer'] / rates['healthz']:.2f}")
    ratio = rates["verify"] / rates["healthz"]
    print(f"verify / healthz = {ratio:.2f} (target >= 0.6): {'met' if ratio >= 0.6 else 'NOT met'}")


if __name__ == "__main__":
    main()
