"""The checkpoint benchmark runs and prints its ratios (the figures themselves are for people)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_checkpoint_runs(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "bench_checkpoint.py"),
            "--rounds",
            "4",
            "--batch",
            "3",
            "--dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "checkpoints signed per log: 4 (batches of 3, 12 entries at the end)" in out.stdout
    assert "ratio LogSigner / bare key:" in out.stdout
    assert (tmp_path / "log.pem.last-checkpoint").exists()
