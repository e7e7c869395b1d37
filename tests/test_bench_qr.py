"""The QR benchmark runs and prints every figure (the figures themselves are for people)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_bench_qr_runs() -> None:
    pytest.importorskip("cbor2", reason="the bench extra (cbor2) is not installed")
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_qr.py"), "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    for expected in (
        "check character 'F'",
        "recomputed: 'M'",
        "CL1 full disclosure (11 claims + salt secret)",
        "CL1 selective disclosure (3 of 11 claims)",
        "HC1 (CWT in COSE_Sign1/ES256, zlib, Base45)",
        "full disclosure / HC1 = ",
        "us per QR",
    ):
        assert expected in out.stdout, out.stdout
