"""The QR benchmark runs and prints every figure (the figures themselves are for people)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_qr_runs() -> None:
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
        "held-out licences: tests/fixtures/heldout_licences.json (13 licences)",
        "CL1 full, deflate without the dictionary: chars",
        "held-out CL1 full / HC1 <= 0.60 (target): ",
        "us per QR",
    ):
        assert expected in out.stdout, out.stdout


def test_bench_qr_variants_runs() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_qr_variants.py")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "reference licence and 13 held-out licences; full disclosure length / HC1 length"
    for expected in (
        "CL1: GB 18030 text, GB 18030 dictionary, raw deflate 9",
        "UTF-8 text, the same dictionary in UTF-8",
        "zlib stream (header and Adler-32) instead of raw",
        "bound: dictionary less all terms found in held-out licences",
    ):
        assert any(line.startswith(expected) for line in lines), out.stdout
