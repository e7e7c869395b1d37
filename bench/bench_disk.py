"""Bytes on disk per certificate and per checkpoint, in every database of a real consortium.

Not a test. Starts the demo consortium (``certledger demo``'s three department nodes and
its verifier, real processes on 127.0.0.1, the embedded SQLite stores), then has the
market regulator's clerk issue business licences through the clerks' API:

1. a busy spell: ``--entries`` licences in batches of ``--batch``
   (``POST /v1/certificates/batch``), as fast as the node takes them: many entries
   per checkpoint;
2. a quiet spell: ``--single`` licences one at a time (``POST /v1/certificates``),
   each after the node's checkpoint interval has passed: one checkpoint per entry, the
   most checkpoints a log can have.

It waits until the other two nodes' mirrors and the verifier's replica hold the whole
log and its last checkpoint, stops every process (each closes its databases), and
reads each database's tables with SQLite's ``dbstat``: the bytes they use (pages less
their unused bytes) and their rows. It prints, for each database, the bytes per
certificate (tables with a row per entry) and per checkpoint (tables with a row per
checkpoint), and the totals at the issuing node, at each other node and at a
verifier, next to the size of an entry itself (the signed statement as logged), side
by side from the same run.

Usage, with the package installed (``pip install -e .``):
``python bench/bench_disk.py [--entries N] [--batch B] [--single S] [--dir DIR]``.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from certledger.cli.demo_network import AMR, MEMBERS, SAMPLES, Network
from certledger.cli.story import Out

#: The checkpoint interval the nodes run with (seconds), as in the demo.
CHECKPOINT_INTERVAL = 0.2

#: Tables with one row per log entry (or per certificate), and with one row per
#: checkpoint, by database file name. Anything else is listed as "other".
#: (A table's indexes count with it.)
PER_ENTRY = {
    "log.db": {"entries", "hashes", "cert_index"},
    "mirrors.db": {"entries", "hashes", "certs"},
    "replica.db": {"entries", "hashes", "certs"},
    "private.db": {"records", "statements", "trail"},
}
PER_CHECKPOINT = {
    "log.db": {"checkpoints", "cosigned"},
    "witness.db": {"history"},
    "mirrors.db": {"checkpoints"},
    "replica.db": {"checkpoints"},
}


def table_use(db: Path) -> dict[str, tuple[int, int, str]]:
    """``{table or index: (bytes used, rows of its table, its table)}`` of one database."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        used = conn.execute("SELECT name, sum(pgsize - unused) FROM dbstat GROUP BY name").fetchall()
        owner = dict(
            conn.execute("SELECT name, tbl_name FROM sqlite_schema WHERE type IN ('table', 'index')")
        )
        rows: dict[str, int] = {}
        for table in set(owner.values()):
            rows[table] = int(conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])
    finally:
        conn.close()
    return {str(n): (int(b), rows.get(owner.get(n, n), 0), str(owner.get(n, n))) for n, b in used}


def _count(db: Path, sql: str, params: tuple[object, ...] = ()) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = conn.execute(sql, params).fetchone()
    finally:
        conn.close()
    return 0 if row is None or row[0] is None else int(row[0])


@contextmanager
def consortium(work: Path) -> Iterator[Network]:
    net = Network(work, Out(quiet=True), qr=False, checkpoint_interval=CHECKPOINT_INTERVAL)
    net.setup()
    try:
        net.start_all()
        yield net
    finally:
        net.stop_all()


def issue(net: Network, entries: int, batch: int, single: int) -> None:
    """The busy spell, then the quiet one (see the module docstring)."""
    assert net.state is not None
    ctype, claims = SAMPLES[AMR]
    headers = {"Authorization": f"Bearer {net.state.tokens[AMR]}", "Content-Type": "application/json"}
    url = net.url(AMR)
    done, t = 0, time.perf_counter()
    with httpx.Client(timeout=120.0, trust_env=False) as client:
        while done < entries:
            n = min(batch, entries - done)
            items = [{"claims": {**claims, "name": f"{claims['name']}{done + i}"}} for i in range(n)]
            r = client.post(
                url + "v1/certificates/batch",
                content=orjson.dumps({"type": ctype, "items": items}),
                headers=headers,
            )
            if r.status_code != 201:
                raise SystemExit(f"batch failed: HTTP {r.status_code} {r.text[:300]}")
            done += n
        print(f"  busy spell: {done:,} issued in batches of {batch} in {time.perf_counter() - t:.1f} s")
        for k in range(single):
            time.sleep(CHECKPOINT_INTERVAL * 1.5)
            r = client.post(
                url + "v1/certificates",
                content=orjson.dumps({"type": ctype, "claims": {**claims, "name": f"{claims['name']}q{k}"}}),
                headers=headers,
            )
            if r.status_code != 201:
                raise SystemExit(f"issuing failed: HTTP {r.status_code} {r.text[:300]}")
        print(f"  quiet spell: {single} issued one at a time")


def wait_synced(net: Network, work: Path, timeout: float = 300.0) -> int:
    """Until the other nodes' mirrors and the verifier's replica hold the whole of the
    regulator's log (its certificates and the node's own entries, such as the policy
    version it adopted), under a checkpoint of that size; returns the log's size."""
    own = work / "nodes" / AMR / "log.db"
    size = _count(own, "SELECT count(*) FROM entries")
    wanted = [work / "nodes" / m / "mirrors.db" for m in MEMBERS if m != AMR]
    wanted.append(work / "verifier" / "replica.db")
    deadline, shown = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        signed = _count(own, "SELECT max(size) FROM checkpoints")
        held = [_count(db, "SELECT size FROM logs WHERE member_id = ?", (AMR,)) for db in wanted]
        line = f"  waiting: {signed:,} of {size:,} entries signed; the copies hold {held}"
        if line != shown:
            print(line, flush=True)
            shown = line
        if signed >= size and all(h >= size for h in held):
            return size
        time.sleep(0.5)
    raise SystemExit(f"the copies did not reach {size} entries within {timeout:.0f} s")


def report(work: Path, certificates: int) -> None:
    amr = work / "nodes" / AMR
    other = work / "nodes" / next(m for m in MEMBERS if m != AMR)
    verifier = work / "verifier"
    entries = _count(amr / "log.db", "SELECT count(*) FROM entries")
    checkpoints = _count(amr / "log.db", "SELECT count(*) FROM checkpoints")
    entry_bytes = _count(amr / "log.db", "SELECT sum(length(data)) FROM entries")
    print(
        f"\nthe regulator's log: {entries:,} entries ({certificates:,} licences; "
        f"{entry_bytes / entries:,.0f} bytes each as logged), {checkpoints:,} checkpoints signed"
    )
    places = [
        ("the issuing node", amr, ["log.db", "private.db", "node.db"]),
        ("each other node", other, ["witness.db", "mirrors.db"]),
        ("a verifier", verifier, ["replica.db"]),
    ]
    print(f"{'where':17} {'database':11} {'table or index':22} {'rows':>8} {'bytes':>11} {'bytes/row':>9}")
    for place, directory, files in places:
        where = place
        per_entry = per_checkpoint = 0.0
        for name in files:
            use = table_use(directory / name)
            for table, (used, rows, owner) in sorted(use.items(), key=lambda x: -x[1][0]):
                if owner in PER_ENTRY.get(name, ()):
                    per_entry += used / (certificates if name == "private.db" else entries)
                    kind = "entry"
                elif owner in PER_CHECKPOINT.get(name, ()):
                    per_checkpoint += used / max(rows, 1)
                    kind = "checkpoint"
                else:
                    if used < 4096:
                        continue
                    kind = "other"
                per_row = used / max(rows, 1)
                print(f"{where:17} {name:11} {table:22} {rows:8,} {used:11,} {per_row:9,.0f}  ({kind})")
                where = ""
        print(
            f"  => per certificate {per_entry:,.0f} bytes "
            f"({per_entry / (entry_bytes / entries):.2f}× the entry); "
            f"per checkpoint {per_checkpoint:,.0f} bytes"
        )
    print(
        "A busy log has far fewer checkpoints than entries; one with an entry now and then "
        "has up to one checkpoint per entry."
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=20_000, help="licences issued in batches (default 20,000)")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--single", type=int, default=100, help="licences then issued one at a time")
    ap.add_argument("--dir", type=Path, help="keep the consortium's files here (default: a temporary one)")
    args = ap.parse_args()
    if args.entries < 1 or args.batch < 1 or args.single < 0:
        ap.error("--entries and --batch must be positive, --single not negative")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        work = Path(tmp)
        with consortium(work) as net:
            issue(net, args.entries, args.batch, args.single)
            wait_synced(net, work)
        report(work, args.entries + args.single)


if __name__ == "__main__":
    main()
