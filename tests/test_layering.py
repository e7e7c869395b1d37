"""The pure core must not depend on the web stack."""

import subprocess
import sys
from pathlib import Path

import ledger

FORBIDDEN = ("fastapi", "uvicorn", "starlette", "node", "verifier", "certledger")


def _ledger_modules() -> list[str]:
    root = Path(ledger.__file__).parent
    mods = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        if parts[-1] == "__main__":
            continue
        mods.append(".".join(parts))
    return mods


def test_ledger_imports_no_web_framework() -> None:
    mods = _ledger_modules()
    assert "ledger.canonical" in mods and len(mods) > 5
    code = (
        "import importlib, sys\n"
        f"for m in {mods!r}: importlib.import_module(m)\n"
        f"bad = sorted(n for n in sys.modules if n.split('.')[0] in {FORBIDDEN!r})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"ledger pulled in: {out.stdout.strip()}"


def test_ledger_source_has_no_web_imports() -> None:
    root = Path(ledger.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        for line in path.read_text(encoding="utf-8").splitlines():
            stripped = line.strip()
            if stripped.startswith(("import ", "from ")):
                top = stripped.split()[1].split(".")[0]
                if top in FORBIDDEN:
                    offenders.append(f"{path.name}: {stripped}")
    assert offenders == []
