"""The HTTP verification benchmark runs and prints its figures (the figures are for people)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.mark.skipif(
    shutil.which("wrk") is None and not os.environ.get("CI"),
    reason="wrk is absent (Debian's wrk package; the README's test command installs it)",
)
def test_bench_verify_http_runs() -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "bench_verify_http.py"),
            "--seconds",
            "1",
            "--rounds",
            "1",
            "--clients",
            "4",
            "--certificates",
            "7",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("verifier on 127.0.0.1 (uvicorn, one process), 4 concurrent clients")
    assert lines[0].endswith("8 distinct certificates")
    assert lines[1].startswith("POST /v1/verify (selective licence)") and "req/s" in lines[1]
    assert lines[2].startswith("POST /v1/verify, verdict precomputed")
    assert lines[3].startswith("GET /healthz (trivial)") and "p99" in lines[3]
    assert "every answer checked: each verify VALID, each /healthz ok" in lines
    assert lines[-3].startswith("server CPU per request, healthz / verify = ")
    assert lines[-2].startswith("HTTP layer alone: precomputed verify / healthz = ")
    assert lines[-1].startswith("verify / healthz = ")
