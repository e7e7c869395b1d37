"""The node benchmark runs end to end with a small log (the figures themselves are for people)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_node_runs() -> None:
    out = subprocess.run(
        [
            *(sys.executable, str(ROOT / "bench" / "bench_node.py")),
            *("--entries", "600", "--requests", "40", "--rounds", "1", "--concurrency", "2"),
            *("--mirror-entries", "600"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "log of 600 entries built" in out.stdout
    assert "tile serving / trivial endpoint = " in out.stdout
    assert "(4 distinct full tiles)" in out.stdout
    assert "mirror catch-up (all checks, 1 process): " in out.stdout
    assert "catch-up / SHA-256 = " in out.stdout and "catch-up / verify = " in out.stdout
    assert "mirror catch-up (tree, chain and root): " in out.stdout and "per core used " in out.stdout
    assert "  RSS: 600 entries " in out.stdout
