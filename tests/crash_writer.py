"""A log writer for the crash test: appends random batches until it is killed.

Usage: ``python crash_writer.py DB SEED``. Statement ``j`` is always ``issue(j)`` signed
with the deterministic test key, so entry ``j``'s bytes depend only on ``j``. After
opening (or creating) the log it prints ``ready SIZE``; after every ``append`` returns it
prints ``ack START STOP`` (entries ``[START, STOP)`` are acknowledged), and after every
few batches it signs a checkpoint with a :class:`~ledger.log.signer.LogSigner` remembering
in ``DB.signer`` and prints ``cp SIZE`` once ``checkpoint`` returned. It never exits on
its own: the test kills it.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from ledger.log.signer import LogSigner
from ledger.log.store import LogStore
from tests.helpers import ORIGIN, issue, log_key


def main() -> None:
    path, seed = Path(sys.argv[1]), int(sys.argv[2])
    rng = random.Random(seed)
    key, _ = log_key()
    signer = LogSigner(key=key, state=Path(f"{path}.signer"))
    store = LogStore.open(path) if path.exists() else LogStore.create(path, origin=ORIGIN)
    n = store.size
    print(f"ready {n}", flush=True)
    while True:
        count = rng.choice((1, 2, 7, rng.randint(1, 50), rng.randint(50, 400)))
        batch = [issue(j) for j in range(n, n + count)]
        indexes = store.append(batch, key=key)
        assert indexes == list(range(n, n + count))
        print(f"ack {n} {n + count}", flush=True)
        n += count
        if rng.random() < 0.2:
            store.checkpoint(signer)
            print(f"cp {n}", flush=True)


if __name__ == "__main__":
    main()
