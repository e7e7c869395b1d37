"""The disk benchmark runs end to end on a small real consortium (the figures are for people)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_bench_disk_runs(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            *(sys.executable, str(ROOT / "bench" / "bench_disk.py")),
            *("--entries", "60", "--batch", "25", "--single", "3", "--dir", str(tmp_path)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "busy spell: 60 issued in batches of 25" in out.stdout
    assert "quiet spell: 3 issued one at a time" in out.stdout
    # 63 licences and the entry recording the policy version the node adopted
    assert "the regulator's log: 64 entries (63 licences; " in out.stdout
    assert re.search(r"the issuing node +log\.db +\w+ ", out.stdout)
    assert re.search(r" log\.db +entries +64 ", out.stdout)
    assert re.search(r"each other node +(witness|mirrors)\.db ", out.stdout)
    assert re.search(r"a verifier +replica\.db ", out.stdout)
    totals = re.findall(
        r"=> per certificate ([\d,]+) bytes \(([\d.]+)× the entry\); per checkpoint ([\d,]+)", out.stdout
    )
    assert len(totals) == 3
    for per_entry, ratio, per_checkpoint in totals:
        assert (
            int(per_entry.replace(",", "")) > 0
            and float(ratio) > 1
            and int(per_checkpoint.replace(",", "")) > 0
        )
    assert list(tmp_path.iterdir()) == []  # the consortium's temporary directory is gone
