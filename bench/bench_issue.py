"""Issuing end to end next to raw Ed25519 signing, interleaved in one run.

Not a test. Each block issues one batch of business licences through the public entry
point, :func:`ledger.credential.issuing.issue_credentials`: claims in, credentials out,
every claim checked against the certificate type, salts and digests derived, the
statement signed, chained, hashed and appended in one fsync'ed SQLite transaction.
Right before or after it (the order alternates) the same single core signs as many
messages of the same size with libsodium through PyNaCl directly: the yardstick.
Prints each block's rates and their ratio, then the median of the per-block ratios.

Building the request objects (the caller's work) is not timed.

Usage, with the package installed (``pip install -e .``):
``python bench/bench_issue.py [--batches N] [--batch B] [--dir DIR]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nacl.signing

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ledger.credential.issuing import IssueRequest, issue_credentials
from ledger.log.statement import STATEMENT_CONTEXT
from ledger.log.store import LogStore
from tests.fixtures.consortium import AMR, AMR_KEY, BUSINESS_LICENCE, reference_licence


def requests(ref: dict[str, object], start: int, count: int) -> list[IssueRequest]:
    claims = dict(ref["claims"])  # type: ignore[call-overload]
    out = []
    for serial in range(start, start + count):
        out.append(
            IssueRequest(
                cert_type=BUSINESS_LICENCE,
                serial=str(serial),
                claims={**claims, "name": f"{claims['name']}{serial}"},
                operator="op:7f3a9c",
                valid_from=ref["valid_from"],  # type: ignore[arg-type]
                valid_until=ref["valid_until"],  # type: ignore[arg-type]
            )
        )
    return out


def raw_sign(key: nacl.signing.SigningKey, messages: list[bytes]) -> float:
    """Seconds libsodium takes to sign ``messages`` on this core."""
    sign = key.sign
    t = time.perf_counter()
    for m in messages:
        sign(m)
    return time.perf_counter() - t


def run(args: argparse.Namespace, work: Path) -> None:
    ref = reference_licence()
    raw_key = nacl.signing.SigningKey(b"\x07" * 32)
    store = LogStore.create(work / "issue.db", origin=AMR.origin)
    at = ref["valid_from"] + 10 * 3600
    # warm up both paths (imports, caches, the database file)
    issued = issue_credentials(requests(ref, 1, args.batch), issuer=AMR, key=AMR_KEY, store=store, time=at)
    messages = [STATEMENT_CONTEXT + i.credential.signed.statement_bytes for i in issued]
    raw_sign(raw_key, messages)
    size = statistics.mean(len(m) for m in messages)
    print(
        f"business licences with {len(BUSINESS_LICENCE.claims)} claims, {size:.0f}-byte signed messages; "
        f"batches of {args.batch:,}"
    )
    print(f"{'block':>5} {'issued/s':>10} {'raw sign/s':>10} {'ratio':>6}")
    ratios: list[float] = []
    total_issue = total_raw = 0.0
    serial = 1 + args.batch
    for block in range(args.batches):
        batch = requests(ref, serial, args.batch)
        serial += args.batch
        raw_first = block % 2 == 1
        t_raw = raw_sign(raw_key, messages) if raw_first else 0.0
        t = time.perf_counter()
        issued = issue_credentials(batch, issuer=AMR, key=AMR_KEY, store=store, time=at)
        t_issue = time.perf_counter() - t
        messages = [STATEMENT_CONTEXT + i.credential.signed.statement_bytes for i in issued]
        if not raw_first:
            t_raw = raw_sign(raw_key, messages)
        issue_rate, raw_rate = args.batch / t_issue, args.batch / t_raw
        ratios.append(issue_rate / raw_rate)
        total_issue += t_issue
        total_raw += t_raw
        print(f"{block + 1:5d} {issue_rate:10,.0f} {raw_rate:10,.0f} {ratios[-1]:6.2f}", flush=True)
    store.close()
    n = args.batches * args.batch
    print()
    print(
        f"issued end to end:           {n / total_issue:10,.0f} /s  "
        f"({n:,} credentials, log size {serial - 1:,})"
    )
    print(f"raw libsodium signing:       {n / total_raw:10,.0f} /s  (PyNaCl, same messages, interleaved)")
    print(
        f"issuing / raw signing:       {statistics.median(ratios):10.2f}   "
        f"(median of {len(ratios)} per-block ratios)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=20, help="measured batches (default 20)")
    ap.add_argument("--batch", type=int, default=1000, help="credentials per batch (default 1,000)")
    ap.add_argument("--dir", type=Path, help="where to put the log (default: a temporary directory)")
    args = ap.parse_args()
    if args.dir:
        args.dir.mkdir(parents=True, exist_ok=True)
        run(args, args.dir)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-issue-") as tmp:
            run(args, Path(tmp))


if __name__ == "__main__":
    main()
