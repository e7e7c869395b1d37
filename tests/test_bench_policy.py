"""The policy benchmark runs and prints every figure (the figures themselves are for people)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_policy_runs() -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "bench_policy.py"),
            "--seconds",
            "0.05",
            "--rounds",
            "1",
            "--chain",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    for expected in (
        "policy document: ",
        "of the 1048576-byte cap",
        "raw Ed25519 verify:",
        "parse document:",
        "verify one update:",
        "update time / 8 raw Ed25519 verifications: ",
        "3-version chain (2 updates) walked in ",
    ):
        assert expected in out.stdout, out.stdout
