"""The Ed25519 benchmark runs and prints every rate and ratio (the figures themselves are for people)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_ed25519_runs() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_ed25519.py"), "--rounds", "2", "--block", "20"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "Ed25519, 300-byte message, 2 interleaved rounds of 20 calls" in out.stdout
    for op in ("sign", "verify"):
        for name in ("libsodium", "openssl", "certledger"):
            assert f"{op:6} {name:10}  median" in out.stdout, out.stdout
    for label in (
        "sign libsodium/openssl",
        "sign certledger/openssl",
        "verify libsodium/openssl",
        "verify certledger/openssl",
        "verify certledger/libsodium",
    ):
        assert f"  {label:28} " in out.stdout, out.stdout
