"""Crash test: SIGKILL a writer at random moments; nothing acknowledged may be lost.

A writer process (``crash_writer.py``) appends random-size batches of deterministic
statements and reports each batch on stdout only after ``append`` returned. The test
kills it with SIGKILL at random instants — during start-up, creation, recovery, signing
and commits — and after every kill checks that the log passes audit (checkpoints included), that
every acknowledged index is present with exactly the bytes a correct writer produces,
that no acknowledged checkpoint was lost, and that the log still extends the checkpoint
its key remembers signing.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledger.log.audit import audit
from ledger.log.merkle import leaf_hash
from ledger.log.signer import LogSigner
from ledger.log.statement import GENESIS_PREV, Entry, SignedStatement
from ledger.log.store import LogStore
from tests.helpers import issue, log_key

ROOT = Path(__file__).resolve().parent.parent
WRITER = Path(__file__).with_name("crash_writer.py")
KILLS = 56
KILLS_PER_LOG = 8  # a fresh log every few kills keeps the audits short


class _Expected:
    """Entry ``j`` as a correct writer must produce it, computed independently of the store."""

    def __init__(self) -> None:
        self.key, self.kid = log_key()
        self.entries: list[bytes] = []
        self.prev = GENESIS_PREV

    def __getitem__(self, j: int) -> bytes:
        while len(self.entries) <= j:
            n = len(self.entries)
            signed = SignedStatement.sign(issue(n), key=self.key, key_id=self.kid)
            data = Entry(signed=signed, prev=self.prev).to_bytes()
            self.entries.append(data)
            self.prev = leaf_hash(data)
        return self.entries[j]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_sigkill_at_random_moments_loses_no_acknowledged_entry(tmp_path: Path) -> None:
    rng = random.Random(0xC0FFEE)
    expected = _Expected()
    env = _env()
    kills = during_appends = 0
    acked = total_acked = acked_cp = 0
    db = tmp_path / "log0.db"
    for cycle in range(KILLS):
        if cycle % KILLS_PER_LOG == 0:
            db = tmp_path / f"log{cycle // KILLS_PER_LOG}.db"
            acked = acked_cp = 0
        proc = subprocess.Popen(
            [sys.executable, str(WRITER), str(db), str(rng.randrange(2**32))],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=tmp_path,
        )
        assert proc.stdout is not None and proc.stderr is not None
        if rng.random() < 0.2:
            # somewhere in start-up: imports, creating the log, or recovering after the last kill
            time.sleep(rng.uniform(0.0, 0.5))
            first = b""
        else:
            first = proc.stdout.readline()
            assert first.startswith(b"ready "), first + proc.stderr.read()
            assert int(first.split()[1]) >= acked
            time.sleep(rng.uniform(0.0, 0.25))
            during_appends += 1
        assert proc.poll() is None, f"writer exited by itself: {proc.stderr.read().decode()}"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        out = first + proc.stdout.read()
        err = proc.stderr.read().decode()
        proc.stdout.close()
        proc.stderr.close()
        assert "Traceback" not in err, err
        for line in out.decode().splitlines():
            if line.startswith("ack "):
                start, stop = map(int, line.split()[1:])
                assert start >= acked or stop <= acked
                total_acked += max(0, stop - max(start, acked))
                acked = max(acked, stop)
            elif line.startswith("cp "):
                acked_cp = max(acked_cp, int(line.split()[1]))

        if not db.exists():
            assert acked == 0, f"kill {kills}: log vanished after {acked} acknowledged entries"
            continue
        report = audit(db, keys=[expected.key.public_key])
        assert report.size >= acked, f"kill {kills}: {acked} acknowledged, only {report.size} present"
        assert (report.latest_checkpoint_size or 0) >= acked_cp, f"kill {kills}: a signed checkpoint was lost"
        with LogStore.open(db, readonly=True) as store:
            # the key's memory is never ahead of the durable log: it can sign again
            store.check_signer(LogSigner(key=expected.key, state=Path(f"{db}.signer")))
            for i, data in enumerate(store.entries()):
                assert data == expected[i], f"kill {kills}: entry {i} differs from what was acknowledged"
    assert kills == KILLS
    assert during_appends >= 40
    # Only that the writer got to append between kills: how much depends on the disk and
    # the machine's load (a busy 2-core machine with slow fsyncs acknowledges far fewer).
    assert total_acked > 300, f"only {total_acked} entries were acknowledged: the writer barely ran"
