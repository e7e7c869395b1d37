"""Issuing over HTTP next to issuing in-process, interleaved in one run.

Not a test. A real node (``certledger node run``) listens on 127.0.0.1; a clerk token is
made with ``certledger node add-clerk``.

1. Batch issuing: each block posts one batch of food business permits to
   ``POST /v1/certificates/batch`` (claims checked, credentials signed, records, statements
   and the trail event committed to the private store, statements appended to the log
   through the sequencer, the reply with every credential and its ``CL1:`` text parsed by
   the client). Right before or after it (the order alternates) the same number of
   permits is issued in this process through
   :func:`ledger.credential.issuing.issue_credentials` into a log of its own, and each
   credential's JSON (with the node's serialiser) and ``CL1:`` text are made: the same
   work without HTTP, private store and trail. The client parses each reply with orjson,
   as the load generator should cost the shared cores as little as it can. Prints each
   block's rates and their ratio, then the median ratio.
2. Single issuing: ``--clients`` concurrent connections each post one permit at a time to
   ``POST /v1/certificates``, each with claims and an ``Idempotency-Key`` of its own;
   prints requests/s, the p50/p99 latency and the node's CPU per request. Concurrent
   requests share durable commits (group commit). The load comes from ``wrk`` (a C load
   generator, with a Lua script that makes each request and checks each reply's status)
   when it is installed, for ``--seconds``; otherwise from ``--clients`` httpx coroutines
   until ``--requests`` are answered. Afterwards every request wrk sent but saw no reply
   to (cut off when the clock ran out) is posted again with its key, and the log must
   have grown by exactly one entry per key: no reply lost, no certificate issued twice.
   ``GET /healthz`` under the same load gives the HTTP stack's own cost.

Client and server share the machine's cores.

Usage, with the package installed (``pip install -e .``):
``python bench/bench_issue_http.py [--blocks N] [--batch B] [--clients C] [--seconds S]
[--requests R] [--no-wrk]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ledger.credential.issuing import IssueRequest, issue_credentials
from ledger.log.store import LogStore
from node.app import create_app
from node.config import load_config
from node.issuing import json_text
from tests import window
from tests.fixtures.consortium import AMR, AMR_KEY, FOOD_PERMIT


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds used so far by process ``pid`` (Linux), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> tuple[float, float] | None:
    """CPU seconds used so far by process ``pid`` and by all its descendants still
    running (the node's render workers), or None (Linux)."""
    own = cpu_seconds(pid)
    if own is None:
        return None
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    family, grew = {pid}, True
    while grew:
        more = {p for p, pp in parents.items() if pp in family} - family
        family |= more
        grew = bool(more)
    children = sum(cpu_seconds(p) or 0.0 for p in family - {pid})
    return own, children


def cpu_note(before: float | None, after: float | None, count: int, what: str) -> str:
    if before is None or after is None:
        return ""
    ms = (after - before) * 1000 / count
    return f"  node CPU {ms:.2f} ms per {what} (~{1000 / ms:,.0f}/s per core)" if ms > 0 else ""


def in_process(store: LogStore, start: int, count: int, at: int) -> tuple[float, float]:
    """Seconds (wall, CPU) to issue ``count`` permits in this process, with their JSON and QR text."""
    reqs = [
        IssueRequest(
            cert_type=FOOD_PERMIT,
            serial=str(n),
            claims=window.food_claims(n),
            operator="op:bench",
            valid_from=at,
            valid_until=at + 365 * 86400,
        )
        for n in range(start, start + count)
    ]
    t, c = time.perf_counter(), time.process_time()
    issued = issue_credentials(reqs, issuer=AMR, key=AMR_KEY, store=store, time=at)
    for i in issued:
        json_text(i.credential.to_json())
        i.credential.to_qr_text()
    return time.perf_counter() - t, time.process_time() - c


def over_http(client: httpx.Client, start: int, count: int) -> float:
    """Seconds for one batch request of ``count`` permits, reply parsed."""
    body = {
        "type": FOOD_PERMIT.code,
        "items": [{"claims": window.food_claims(n)} for n in range(start, start + count)],
    }
    t = time.perf_counter()
    r = client.post(
        "/v1/certificates/batch", content=orjson.dumps(body), headers={"Content-Type": "application/json"}
    )
    got = orjson.loads(r.content)
    elapsed = time.perf_counter() - t
    if r.status_code != 201 or len(got["certificates"]) != count:
        raise SystemExit(f"batch failed: {r.status_code} {r.text[:300]}")
    return elapsed


async def singles(
    url: str, token: str, clients: int, total: int, start: int, *, path: str = "/v1/certificates"
) -> tuple[float, list[float]]:
    """Wall time and per-request latencies of ``total`` single issues by ``clients`` clients
    (or, with ``path="/healthz"``, of as many trivial GETs: the HTTP stack's own cost)."""
    latencies: list[float] = []
    retries: list[int] = []
    counter = iter(range(start, start + total))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, limits=limits, timeout=60.0
    ) as client:

        async def worker() -> None:
            for n in counter:
                body = {"type": FOOD_PERMIT.code, "claims": window.food_claims(n)}
                t = time.perf_counter()
                for attempt in range(5):  # a dropped connection is retried, with the same key
                    try:
                        if path == "/healthz":
                            r = await client.get(path)
                        else:
                            r = await client.post(path, json=body, headers={"Idempotency-Key": f"bench-{n}"})
                        break
                    except httpx.TransportError:
                        retries.append(n)
                        if attempt == 4:
                            raise
                latencies.append(time.perf_counter() - t)
                if r.status_code not in (200, 201):
                    raise SystemExit(f"single issue failed: {r.status_code} {r.text[:300]}")

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        if retries:
            print(f"  ({len(retries)} request(s) retried after a dropped connection, same idempotency key)")
        return time.perf_counter() - t0, latencies


async def asgi_singles(work: Path, clients: int, total: int) -> tuple[float, float, list[float]]:
    """The single-issue load driven straight into the node's ASGI app (no sockets, no HTTP
    parsing, no client): wall time, CPU seconds of this process, latencies."""
    data = window.make_node(work / "asgi")
    token = window.add_clerk(data, "bench", "issue")
    app = create_app(config=load_config(data, checkpoint_interval=1.0, submit=False, mirror=False))
    headers = [(b"host", b"node"), (b"content-type", b"application/json")]
    headers.append((b"authorization", f"Bearer {token}".encode()))

    async def call(n: int) -> float:
        body = json.dumps({"type": FOOD_PERMIT.code, "claims": window.food_claims(n)}).encode()
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/certificates",
            "raw_path": b"/v1/certificates",
            "root_path": "",
            "query_string": b"",
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
            "state": {},
        }
        sent = False
        status: list[int] = []

        async def receive() -> dict[str, object]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, object]) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))  # type: ignore[call-overload]

        t = time.perf_counter()
        await app(scope, receive, send)  # type: ignore[arg-type]
        if status != [201]:
            raise SystemExit(f"in-process single issue failed: {status}")
        return time.perf_counter() - t

    latencies: list[float] = []
    async with app.router.lifespan_context(app):
        await asyncio.gather(*(call(n) for n in range(clients)))  # warm up
        numbers = iter(range(clients, clients + total))

        async def worker() -> None:
            for n in numbers:
                latencies.append(await call(n))

        t0, c0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return time.perf_counter() - t0, time.process_time() - c0, latencies


_WRK_SCRIPT = """
local token, path, start, prefix, out = %(token)s, %(path)s, %(start)d, %(prefix)d, %(out)s
local head, mid, tail = %(head)s, %(mid)s, %(tail)s
local threads, next_id = {}, 0
function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end
function init(args)
  base, sent, ok, bad, answered = start + id * 10000000, 0, 0, 0, {}
  hdrs = {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"}
end
function request()
  if path == "/healthz" then
    sent = sent + 1
    return wrk.format("GET", path, {["Authorization"] = "Bearer " .. token})
  end
  local n = base + sent
  sent = sent + 1
  hdrs["Idempotency-Key"] = "bench-" .. string.format("%%.0f", n)
  return wrk.format("POST", path, hdrs,
    head .. string.format("%%.0f", prefix + n) .. mid .. string.format("%%.0f", n) .. tail)
end
function response(status, headers, body)
  if status == 200 or status == 201 then
    ok = ok + 1
    if path ~= "/healthz" then
      local lic = string.match(body, '"licence_no":"JY(%%d+)"')
      if lic then answered[#answered + 1] = lic end
    end
  else
    bad = bad + 1
    if bad <= 3 then io.stderr:write("reply " .. status .. ": " .. string.sub(body, 1, 300) .. "\\n") end
  end
end
function done(summary, latency, requests)
  local f = io.open(out, "w")
  local p50, p99 = latency:percentile(50), latency:percentile(99)
  f:write(string.format("latency %%.0f %%.0f %%.0f\\n", p50, p99, latency.max))
  for _, t in ipairs(threads) do
    local a = t:get("answered")
    local base, sent = t:get("base"), t:get("sent")
    f:write(string.format("thread %%.0f %%.0f %%d %%d\\n", base, sent, t:get("ok"), t:get("bad")))
    f:write("answered " .. table.concat(a, " ") .. "\\n")
  end
  f:close()
end
"""


def wrk_singles(
    url: str, token: str, *, connections: int, seconds: int, start: int, work: Path, path: str
) -> tuple[float, int, int, float, float, dict[int, int], list[int]]:
    """``seconds`` of load from wrk: wall time, 2xx replies, other replies, p50 and p99 (s),
    {first number of each thread: requests sent} and the numbers whose reply was seen."""
    marker_lic, marker_name = "@@LIC@@", "@@NAME@@"
    claims = window.food_claims(0)
    prefix = int(str(claims["licence_no"])[2:])
    claims["licence_no"] = "JY" + marker_lic
    claims["name"] = str(window.FOOD["name"]) + marker_name
    body = json.dumps({"type": FOOD_PERMIT.code, "claims": claims}, ensure_ascii=False)
    head, rest = body.split(marker_lic)
    mid, tail = rest.split(marker_name)
    out = work / f"wrk-{start}.txt"

    def lua_str(text: str) -> str:  # a Lua string literal of UTF-8 bytes, all escaped as \\ddd
        return '"' + "".join(f"\\{b:03d}" for b in text.encode()) + '"'

    script = work / f"wrk-{start}.lua"
    script.write_text(
        _WRK_SCRIPT
        % {
            "token": lua_str(token),
            "path": lua_str(path),
            "start": start,
            "prefix": prefix,
            "out": lua_str(str(out)),
            "head": lua_str(head),
            "mid": lua_str(mid),
            "tail": lua_str(tail),
        }
    )
    threads = min(2, connections)
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "60s"]
    t0 = time.perf_counter()
    done = subprocess.run([*cmd, "-s", str(script), url + path], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if done.returncode != 0 or not out.exists():
        raise SystemExit(f"wrk failed ({done.returncode}): {done.stdout[-500:]} {done.stderr[-500:]}")
    if "Socket errors" in done.stdout:
        print("  wrk: " + next(line for line in done.stdout.splitlines() if "Socket errors" in line).strip())
    lines = out.read_text().splitlines()
    p50, p99, _ = (int(x) / 1e6 for x in lines[0].split()[1:])
    sent: dict[int, int] = {}
    answered: list[int] = []
    ok = bad = 0
    for line in lines[1:]:
        kind, *fields = line.split()
        if kind == "thread":
            sent[int(fields[0])] = int(fields[1])
            ok += int(fields[2])
            bad += int(fields[3])
        else:
            answered += [int(f) - prefix for f in fields]
    if bad:
        raise SystemExit(f"{bad} single-issue replies were not 2xx: {done.stderr[-500:]}")
    return wall, ok, bad, p50, p99, sent, answered


def log_size(client: httpx.Client) -> int:
    return int(client.get("/healthz").json()["size"])


def settle(client: httpx.Client, sent: dict[int, int], answered: list[int]) -> int:
    """Post again every request wrk sent without seeing its reply (same key, same claims);
    return how many of them were new (201) rather than answered from their key (200)."""
    seen = set(answered)
    fresh = 0
    for base, count in sent.items():
        for n in range(base, base + count):
            if n in seen:
                continue
            r = client.post(
                "/v1/certificates",
                json={"type": FOOD_PERMIT.code, "claims": window.food_claims(n)},
                headers={"Idempotency-Key": f"bench-{n}"},
            )
            if r.status_code not in (200, 201):
                raise SystemExit(f"re-posting bench-{n} failed: {r.status_code} {r.text[:300]}")
            fresh += r.status_code == 201
    return fresh


def run(args: argparse.Namespace, work: Path) -> None:
    data = window.make_node(work)
    token = window.add_clerk(data, "bench", "issue")
    node = window.NodeProcess(data, interval=1.0).start()
    try:
        store = LogStore.create(work / "in-process.db", origin=AMR.origin)
        at = int(time.time())
        with httpx.Client(
            base_url=node.url, headers={"Authorization": f"Bearer {token}"}, timeout=300.0
        ) as c:
            over_http(c, 1, min(args.batch, 200))  # warm up
            in_process(store, 1, min(args.batch, 200), at)
            print(f"food business permits, {len(FOOD_PERMIT.claims)} claims; batches of {args.batch:,}")
            print(f"{'block':>5} {'http/s':>10} {'in-proc/s':>10} {'ratio':>6}")
            ratios: list[float] = []
            t_http = t_local = 0.0
            cpu_http = cpu_workers = cpu_client = cpu_local = 0.0
            pid = node.proc.pid if node.proc is not None else -1
            serial = 1000
            for block in range(args.blocks):
                local_first = block % 2 == 1
                tl, cl = in_process(store, serial, args.batch, at) if local_first else (0.0, 0.0)
                c0, mine = tree_cpu_seconds(pid), time.process_time()
                th = over_http(c, serial, args.batch)
                c1, cpu_client = tree_cpu_seconds(pid), cpu_client + time.process_time() - mine
                if c0 is not None and c1 is not None:
                    cpu_http += c1[0] - c0[0]
                    cpu_workers += c1[1] - c0[1]
                if not local_first:
                    tl, cl = in_process(store, serial, args.batch, at)
                cpu_local += cl
                serial += args.batch
                ratios.append(tl / th)
                t_http += th
                t_local += tl
                print(
                    f"{block + 1:5d} {args.batch / th:10,.0f} {args.batch / tl:10,.0f} {ratios[-1]:6.2f}",
                    flush=True,
                )
        store.close()
        n = args.blocks * args.batch
        print()
        print(
            f"batch issuing over HTTP:     {n / t_http:10,.0f} /s  (target >= 5,000/s)"
            + cpu_note(0.0, (cpu_http + cpu_workers) or None, n, "certificate")
        )
        print(f"in-process end to end:       {n / t_local:10,.0f} /s  (issue_credentials + JSON + QR text)")
        print(
            f"HTTP / in-process:           {statistics.median(ratios):10.2f}   "
            f"(median of {len(ratios)} per-block ratios; target >= 0.6)"
        )
        if cpu_http:  # CPU time is steadier than wall time on a machine shared with other work
            print(
                f"CPU per certificate:         in-process {cpu_local * 1e6 / n:.0f} us; over HTTP "
                f"{cpu_http * 1e6 / n:.0f} us node + {cpu_workers * 1e6 / n:.0f} us its render workers "
                f"+ {cpu_client * 1e6 / n:.0f} us client "
                f"(ratio {cpu_local / (cpu_http + cpu_workers + cpu_client):.2f})"
            )
        if args.wrk:
            with httpx.Client(
                base_url=node.url, headers={"Authorization": f"Bearer {token}"}, timeout=300.0
            ) as c:
                before = log_size(c)
                c0 = cpu_seconds(pid)
                wall, ok, _, p50, p99, sent, answered = wrk_singles(
                    node.url,
                    token,
                    connections=args.clients,
                    seconds=args.seconds,
                    start=10_000_000,
                    work=work,
                    path="/v1/certificates",
                )
                c1 = cpu_seconds(pid)
                fresh = settle(c, sent, answered)
                grown = log_size(c) - before
                total = sum(sent.values())
            print(
                f"single issuing, {args.clients} clients: {ok / wall:8,.0f} requests/s  "
                f"p50 {p50 * 1000:.1f} ms  p99 {p99 * 1000:.1f} ms  ({ok:,} requests, all 2xx; "
                f"wrk, {args.seconds:g} s; target >= 1,000/s)"
            )
            print(f"{'':29}" + cpu_note(c0, c1, ok, "request").strip())
            if grown != total:
                raise SystemExit(
                    f"the log grew by {grown} entries for {total} keys sent ({ok} 2xx replies seen by wrk, "
                    f"{total - ok} posted again, {fresh} of those new)"
                )
            print(
                f"{'':29}log grew by {grown:,} = keys sent: {ok:,} 2xx seen by wrk + {total - ok} cut off "
                f"by the clock, posted again ({total - ok - fresh} answered from their key, {fresh} new)"
            )
            c0 = cpu_seconds(pid)
            wall, ok, _, p50, p99, _, _ = wrk_singles(
                node.url,
                token,
                connections=args.clients,
                seconds=args.seconds,
                start=0,
                work=work,
                path="/healthz",
            )
            c1 = cpu_seconds(pid)
            print(
                f"GET /healthz, {args.clients} clients:   {ok / wall:8,.0f} requests/s  "
                f"p50 {p50 * 1000:.1f} ms  (the HTTP stack and client alone, same run)"
            )
            print(f"{'':29}" + cpu_note(c0, c1, ok, "request").strip())
        else:
            c0 = cpu_seconds(pid)
            wall, lat = asyncio.run(singles(node.url, token, args.clients, args.requests, 10_000_000))
            c1 = cpu_seconds(pid)
            lat.sort()
            p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
            print(
                f"single issuing, {args.clients} clients: {len(lat) / wall:8,.0f} requests/s  "
                f"p50 {lat[len(lat) // 2] * 1000:.1f} ms  p99 {p99 * 1000:.1f} ms  "
                f"({len(lat):,} requests, httpx; target >= 1,000/s)"
            )
            print(f"{'':29}" + cpu_note(c0, c1, len(lat), "request").strip())
            c0 = cpu_seconds(pid)
            wall, lat = asyncio.run(singles(node.url, token, args.clients, args.requests, 0, path="/healthz"))
            c1 = cpu_seconds(pid)
            lat.sort()
            print(
                f"GET /healthz, {args.clients} clients:   {len(lat) / wall:8,.0f} requests/s  "
                f"p50 {lat[len(lat) // 2] * 1000:.1f} ms  (the HTTP stack and client alone, same run)"
            )
            print(f"{'':29}" + cpu_note(c0, c1, len(lat), "request").strip())
    finally:
        node.stop()
    wall, cpu, lat = asyncio.run(asgi_singles(work, args.clients, args.requests))
    lat.sort()
    print(
        f"single issuing in-process ASGI, {args.clients} concurrent: {len(lat) / wall:8,.0f} requests/s  "
        f"p50 {lat[len(lat) // 2] * 1000:.1f} ms  CPU {cpu * 1000 / len(lat):.2f} ms per request "
        "(the app with group commit, no sockets)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=6, help="measured batch blocks (default 6)")
    ap.add_argument("--batch", type=int, default=2000, help="permits per batch (default 2,000)")
    ap.add_argument("--clients", type=int, default=64, help="concurrent single-issue clients (default 64)")
    ap.add_argument(
        "--requests", type=int, default=5000, help="single-issue requests without wrk (default 5,000)"
    )
    ap.add_argument("--seconds", type=int, default=5, help="seconds of wrk load (default 5)")
    ap.add_argument("--no-wrk", dest="wrk", action="store_false", help="load from httpx even if wrk is there")
    args = ap.parse_args()
    if args.wrk and shutil.which("wrk") is None:
        print("wrk is not installed: the single-issue load comes from httpx coroutines")
        args.wrk = False
    with tempfile.TemporaryDirectory(prefix="bench-issue-http-") as tmp:
        run(args, Path(tmp))


if __name__ == "__main__":
    main()
