"""The issuing, verifying and log benchmarks run at a tiny size and print their ratios."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*argv: str) -> str:
    out = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_bench_issue_runs() -> None:
    out = run("bench/bench_issue.py", "--batches", "2", "--batch", "20")
    assert "issued end to end:" in out
    assert "raw libsodium signing:" in out
    assert "issuing / raw signing:" in out and "(median of 2 per-block ratios)" in out


def test_bench_log_runs_with_the_yardstick_interleaved() -> None:
    out = run("bench/bench_log.py", "--entries", "3000", "--every", "1000", "--batch", "500", "--no-audit")
    assert "ratio appends / raw signing:" in out and "median of 3 per-block ratios" in out
    assert "raw Ed25519 signatures/s (libsodium):" in out
    assert "certificate index lookup:" in out
    assert "table cert_index" in out
    assert "certificate index rows:        1.00 per entry" in out


def test_bench_verify_runs() -> None:
    out = run("bench/bench_verify.py", "--certificates", "60", "--blocks", "2")
    assert "full verifications:" in out
    assert "raw libsodium verification:" in out
    assert "verifying / raw verify:" in out and "(median of 2 per-block ratios)" in out
    assert "check against the policy (rebuild, verify)" in out
    assert "verdicts (verifier.core.verify):" in out
    assert "verdicts / raw verify:" in out
    assert "steps of verifier.core.verify" in out and "the whole verifier.core.verify" in out
