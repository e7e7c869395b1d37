"""The HTTP issuing benchmark runs at a tiny size and prints every figure it promises."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_bench_issue_http_runs() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "bench/bench_issue_http.py",
            "--blocks",
            "2",
            "--batch",
            "20",
            "--clients",
            "4",
            "--requests",
            "40",
            "--seconds",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    for line in (
        "batch issuing over HTTP:",
        "in-process end to end:",
        "HTTP / in-process:",
        "CPU per certificate:",
    ):
        assert line in out.stdout
    assert "(median of 2 per-block ratios; target >= 0.6)" in out.stdout
    assert "single issuing, 4 clients:" in out.stdout and "p99" in out.stdout
    if "wrk is not installed" not in out.stdout:  # every key sent became exactly one certificate
        assert "log grew by" in out.stdout and "= keys sent" in out.stdout
    assert "GET /healthz, 4 clients:" in out.stdout
    assert "single issuing in-process ASGI, 4 concurrent:" in out.stdout
