"""Durable log appends next to raw Ed25519 signing, proofs, disk use and memory.

Not a test. Prints, measured in the same run on this machine:

* durable appends per second (``LogStore.append`` in batches of 1,000: signing,
  chaining, hashing, one fsync'ed SQLite transaction per batch), per block of entries
  and overall, up to ``--entries`` (default 1,000,000);
* the raw single-core Ed25519 signing rate (libsodium through PyNaCl) for the same
  messages, interleaved with the appends: each batch's messages are signed right before
  or after the batch is appended (the order alternates), and each block's ratio of the
  two rates is printed, then the median of the per-block ratios;
* where an append's time goes (statement encoding, signing, entry + Merkle hashing,
  the database transaction), measured separately;
* at the final size: proof generation time (inclusion, consistency, tlog-proof),
  certificate-index lookups (history of a random certificate id), bytes on disk per
  entry and per table, and the time to sign a checkpoint and reopen the log;
* resident memory (current and peak) at every block, so that "flat as the log grows"
  is visible; then a full audit of the log with its rate and peak memory.

Statements are issue statements with 11 claim digests, like the reference business
licence. Building them is the caller's work: it is timed separately and not counted
in the append rate.

Usage, with the package installed (``pip install -e .``):
``python bench/bench_log.py [--entries N] [--batch B] [--every K] [--dir DIR] [--no-audit]``.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import nacl.signing

from ledger.keys import SigningKey, VerifierKey
from ledger.log import index as cert_index
from ledger.log import merkle
from ledger.log.audit import audit
from ledger.log.certid import CertId
from ledger.log.statement import STATEMENT_CONTEXT, Kind, Statement, encode_entry
from ledger.log.store import LogStore

ORIGIN = "ledger.example.gov.cn/hangzhou-xihu-amr"
T0 = 1_717_171_200
CLAIMS = 11


def statement(serial: int) -> Statement:
    return Statement(
        kind=Kind.ISSUE,
        issuer="hangzhou-xihu-amr",
        cert_id=str(
            CertId(
                type_code="11100000000013338W032",
                issuer_code="11330106MB1234567X",
                serial=str(serial),
                version="001",
            )
        ),
        cert_type="business_licence",
        time=T0 + serial,
        operator="op:7f3a9c",
        valid_from=T0,
        valid_until=T0 + 5 * 365 * 86400,
        claim_digests={k: hashlib.sha256(b"%d/%d" % (serial, k)).digest() for k in range(CLAIMS)},
    )


def memory() -> tuple[float, float]:
    """(current, peak) resident set size in MiB, from /proc/self/status."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            name, kb, _ = line.split()
            values[name] = int(kb) / 1024
    return values["VmRSS:"], values["VmHWM:"]


RAW_KEY = nacl.signing.SigningKey(b"\x07" * 32)


def raw_sign_seconds(messages: list[bytes]) -> float:
    """Seconds libsodium (PyNaCl) takes to sign ``messages`` on this core."""
    sign = RAW_KEY.sign
    start = time.perf_counter()
    for m in messages:
        sign(m)
    return time.perf_counter() - start


def table_sizes(db: Path) -> list[tuple[str, int]]:
    """Bytes per table and index, if this SQLite has the dbstat table."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC").fetchall()
    except sqlite3.Error:
        rows = []
    finally:
        conn.close()
    return [(name, int(size)) for name, size in rows if size]


def index_rows(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT count(*) FROM cert_index").fetchone()[0])
    finally:
        conn.close()


def disk_bytes(db: Path) -> int:
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*") if p.is_file())


def breakdown(work: Path, key: SigningKey, batch: int, batches: int = 5) -> None:
    """Time the parts of an append separately, on a scratch log."""
    store = LogStore.create(work / "breakdown.db", origin=ORIGIN)
    kid = store.key_id(key)
    t_encode = t_sign = t_entry = t_db = 0.0
    n = 0
    prev = bytes(32)
    for b in range(batches):
        stmts = [statement(10_000_000 + b * batch + i) for i in range(batch)]
        t = time.perf_counter()
        datas = [s.to_bytes() for s in stmts]
        t_encode += time.perf_counter() - t
        t = time.perf_counter()
        sigs = [key.sign(STATEMENT_CONTEXT + d) for d in datas]
        t_sign += time.perf_counter() - t
        t = time.perf_counter()
        known = dict(store._edge)
        entry_rows, hash_rows, index_rows = [], [], []
        hi = merkle.stored_hash_count(n)
        for stmt, data, sig in zip(stmts, datas, sigs, strict=True):
            index_rows += cert_index.rows_for_statement(n, stmt)
            entry = encode_entry(statement_bytes=data, key_id=kid, signature=sig, prev=prev)
            prev = hashlib.sha256(b"\x00" + entry).digest()
            entry_rows.append((n, entry))
            for h in merkle.stored_hashes(n, prev, lambda idx: [known[i] for i in idx]):  # noqa: B023
                known[hi] = h
                hash_rows.append((hi, h))
                hi += 1
            n += 1
        t_entry += time.perf_counter() - t
        t = time.perf_counter()
        store._commit(entry_rows, hash_rows, index_rows)
        t_db += time.perf_counter() - t
        store.close()
        store = LogStore.open(work / "breakdown.db")  # reload the right edge for the next batch
    store.close()
    total = t_encode + t_sign + t_entry + t_db
    print(f"where an append's time goes (µs per entry, {n} entries in batches of {batch}):")
    for name, t in (
        ("statement canonical encoding", t_encode),
        ("Ed25519 signing", t_sign),
        ("entry, index rows, leaf + Merkle hashes", t_entry),
        ("SQLite insert + fsync'ed commit", t_db),
    ):
        print(f"  {name:40s} {t / n * 1e6:7.1f}   {t / total:5.1%}")
    print(f"  {'total':40s} {total / n * 1e6:7.1f}   (= {n / total:,.0f} appends/s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=1_000_000, help="log size to reach (default 1,000,000)")
    ap.add_argument("--batch", type=int, default=1000, help="statements per append (default 1,000)")
    ap.add_argument("--every", type=int, default=100_000, help="report every this many entries")
    ap.add_argument("--dir", type=Path, help="where to put the log (default: a temporary directory)")
    ap.add_argument("--no-audit", action="store_true", help="skip the final full audit")
    args = ap.parse_args()
    if args.dir:
        args.dir.mkdir(parents=True, exist_ok=True)
        run(args, args.dir)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-log-") as tmp:
            run(args, Path(tmp))


def run(args: argparse.Namespace, work: Path) -> None:
    n_total, batch, every = args.entries, args.batch, max(args.every, args.batch)
    key = SigningKey.from_seed(b"\x01" * 32)
    sample = [statement(i) for i in range(2000)]
    messages = [STATEMENT_CONTEXT + s.to_bytes() for s in sample]
    size = statistics.mean(len(m) for m in messages)
    print(f"statements: issue with {CLAIMS} claim digests, {size:.0f}-byte signed messages")
    breakdown(work, key, batch)
    print()

    db = work / "bench.db"
    store = LogStore.create(db, origin=ORIGIN)
    print(
        f"{'entries':>9} {'appends/s':>10} {'cumulative':>10} {'raw sign/s':>10} {'ratio':>6} "
        f"{'RSS MiB':>8} {'peak MiB':>8} {'disk B/entry':>12}"
    )
    t_append = t_build = t_raw = 0.0
    block_t = block_raw = 0.0
    block_n = 0
    ratios: list[float] = []
    n = 0
    while n < n_total:
        count = min(batch, n_total - n)
        t = time.perf_counter()
        stmts = [statement(i) for i in range(n, n + count)]
        batch_messages = [STATEMENT_CONTEXT + s.to_bytes() for s in stmts]
        t_build += time.perf_counter() - t
        raw_first = (n // batch) % 2 == 1
        raw_dt = raw_sign_seconds(batch_messages) if raw_first else 0.0
        t = time.perf_counter()
        store.append(stmts, key=key)
        dt = time.perf_counter() - t
        if not raw_first:
            raw_dt = raw_sign_seconds(batch_messages)
        t_append += dt
        t_raw += raw_dt
        block_t += dt
        block_raw += raw_dt
        block_n += count
        n += count
        if n % every == 0 or n == n_total:
            rate, raw = block_n / block_t, block_n / block_raw
            ratios.append(rate / raw)
            rss, peak = memory()
            print(
                f"{n:9,d} {rate:10,.0f} {n / t_append:10,.0f} {raw:10,.0f} {rate / raw:6.2f} "
                f"{rss:8.1f} {peak:8.1f} {disk_bytes(db) / n:12.0f}",
                flush=True,
            )
            block_t = block_raw = 0.0
            block_n = 0
    overall = n / t_append
    print()
    rows = [
        (
            f"durable appends/s, all {n:,} entries",
            f"{overall:10,.0f}",
            f"batches of {batch:,}, signing included",
        ),
        ("raw Ed25519 signatures/s (libsodium)", f"{n / t_raw:10,.0f}", "the same messages, interleaved"),
        (
            "ratio appends / raw signing",
            f"{statistics.median(ratios):10.2f}",
            f"median of {len(ratios)} per-block ratios",
        ),
        ("building a Statement (caller's work)", f"{t_build / n * 1e6:10.1f}", "µs each, not counted above"),
    ]
    for label, value, comment in rows:
        print(f"{label + ':':42s}{value}  {comment}".rstrip())

    t = time.perf_counter()
    note = store.checkpoint(key)
    t_cp = time.perf_counter() - t
    store.close()
    on_disk = db.stat().st_size
    print()
    print(f"at {n:,} entries:")
    print(f"  bytes on disk per entry:   {on_disk / n:8.1f}  ({on_disk:,} bytes, after closing)")
    for table, size in table_sizes(db):
        if size / n >= 0.05:
            print(f"    table {table:17s} {size / n:8.1f}")
    print(f"  certificate index rows:    {index_rows(db) / n:8.2f} per entry")
    t = time.perf_counter()
    store = LogStore.open(db)
    print(f"  reopen for writing:        {(time.perf_counter() - t) * 1e3:8.2f} ms")
    print(f"  sign a checkpoint:         {t_cp * 1e3:8.2f} ms  ({len(note)}-byte note)")
    rng = random.Random(1)
    trials = 2000
    cases = {
        "inclusion proof": lambda: store.inclusion_proof(rng.randrange(n), n),
        "consistency proof": lambda: store.consistency_proof(rng.randrange(1, n), n),
        "tlog-proof (checked)": lambda: store.tlog_proof(rng.randrange(n)),
    }
    for name, fn in cases.items():
        t = time.perf_counter()
        for _ in range(trials):
            fn()
        per = (time.perf_counter() - t) / trials
        print(f"  {name + ':':26s} {per * 1e6:8.1f} µs each (mean of {trials:,} random ones)")
    cert_ids = [statement(rng.randrange(n)).cert_id for _ in range(trials)]
    history = store.cert_history
    t = time.perf_counter()
    for cid in cert_ids:
        history(cid)
    per = (time.perf_counter() - t) / trials
    missing = [statement(n + i).cert_id for i in range(trials)]
    t = time.perf_counter()
    for cid in missing:
        history(cid)
    per_missing = (time.perf_counter() - t) / trials
    [_found] = history(cert_ids[0])  # exactly one statement about it
    print(
        f"  {'certificate index lookup:':26s} {per * 1e6:8.1f} µs each (history of a random certificate id, "
        f"mean of {trials:,}; {per_missing * 1e6:.1f} µs for an id not in the log)"
    )
    idx = n // 3
    proof = store.inclusion_proof(idx, n)
    merkle.check_record(proof, n, store.root(), idx, merkle.leaf_hash(store.entry(idx)))
    print(f"  inclusion proof length:    {len(proof):8d} hashes (checked)")
    rss, peak = memory()
    print(f"  memory: {rss:.1f} MiB resident, {peak:.1f} MiB peak")
    store.close()

    if not args.no_audit:
        print()
        t = time.perf_counter()
        report = audit(db, keys=[VerifierKey(name=ORIGIN, public_key=key.public_key)])
        dt = time.perf_counter() - t
        rss, peak = memory()
        print(f"audit of {report.size:,} entries: {dt:.1f} s ({report.size / dt:,.0f} entries/s), passed")
        print(f"  memory after the audit: {rss:.1f} MiB resident, {peak:.1f} MiB peak")


if __name__ == "__main__":
    main()
