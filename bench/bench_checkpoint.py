"""What the signer's memory costs: signing checkpoints with and without it.

Not a test. Two logs grow side by side with the same batches; after every batch one
signs a checkpoint with a bare key (checked against its database only) and the other
with a :class:`~ledger.log.signer.LogSigner` (also checked against the key's state
file, which is then rewritten durably: temporary file, fsync, rename, fsync of the
directory), the order alternating; a raw Ed25519 signature of a checkpoint text is
timed in the same round. Prints the median time of each and the ratios of the medians of
per-round ratios, so that machine noise affects both sides alike.

Usage, with the package installed: ``python bench/bench_checkpoint.py [--rounds N]
[--batch B] [--dir DIR]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from ledger.keys import SigningKey
from ledger.log.certid import CertId
from ledger.log.signer import LogSigner
from ledger.log.statement import Kind, Reason, Statement
from ledger.log.store import LogStore

ORIGIN = "ledger.example.gov.cn/hangzhou-xihu-amr"
T0 = 1_717_171_200


def statement(serial: int) -> Statement:
    cert = CertId(
        type_code="11100000000013338W032", issuer_code="11330106MB1234567X", serial=str(serial), version="001"
    )
    return Statement(
        kind=Kind.REVOKE,
        issuer="hangzhou-xihu-amr",
        cert_id=str(cert),
        cert_type="business_licence",
        time=T0 + serial,
        operator="op:bench",
        reason=Reason.ISSUED_IN_ERROR,
    )


def run(work: Path, rounds: int, batch: int) -> None:
    key = SigningKey.from_seed(b"checkpoint-bench".ljust(32, b"."))
    signer = LogSigner(key=key, state=work / "log.pem.last-checkpoint")
    bare_store = LogStore.create(work / "bare.db", origin=ORIGIN)
    memory_store = LogStore.create(work / "memory.db", origin=ORIGIN)
    text = f"{ORIGIN}\n123456\n{'A' * 43}=\n".encode()
    bare: list[float] = []
    memory: list[float] = []
    raw: list[float] = []
    n = 0
    for r in range(rounds):
        items = [statement(j) for j in range(n, n + batch)]
        n += batch
        bare_store.append(items, key=key)
        memory_store.append(items, key=key)
        order = ((bare_store, key, bare), (memory_store, signer, memory))
        for store, k, out in order if r % 2 == 0 else reversed(order):
            t = time.perf_counter()
            store.checkpoint(k)
            out.append(time.perf_counter() - t)
        t = time.perf_counter()
        key.sign(text)
        raw.append(time.perf_counter() - t)
    bare_store.close()
    memory_store.close()
    per_round = statistics.median(m / b for m, b in zip(memory, bare, strict=True))
    ms = 1e3
    print(f"checkpoints signed per log: {rounds} (batches of {batch}, {n:,} entries at the end)")
    print(f"raw Ed25519 signature:                   {statistics.median(raw) * ms:8.3f} ms (median)")
    print(f"checkpoint, bare key (database only):    {statistics.median(bare) * ms:8.3f} ms (median)")
    print(f"checkpoint, LogSigner (key's memory):    {statistics.median(memory) * ms:8.3f} ms (median)")
    print(f"ratio LogSigner / bare key:              {per_round:8.2f} (median of per-round ratios)")
    print(
        f"ratio LogSigner / raw signature:         {statistics.median(memory) / statistics.median(raw):8.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--dir", type=Path, default=None, help="work directory (default: a temporary one)")
    args = parser.parse_args()
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
        run(args.dir, args.rounds, args.batch)
        return
    with tempfile.TemporaryDirectory() as tmp:
        run(Path(tmp), args.rounds, args.batch)


if __name__ == "__main__":
    main()
