"""``certledger demo``: three node processes and a verifier on 127.0.0.1, the story told
over HTTP, every process stopped at the end; a second run with the same ``--dir`` resumes
and stops cleanly on Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
MEMBERS = ("hangzhou-xihu-amr", "hangzhou-psb", "hangzhou-hrss")


def alive(pid: int) -> bool:
    """Whether ``pid`` is still a running certledger process (not a zombie, not reused)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return b"certledger" in cmdline and "\nState:\tZ" not in status


def pids(output: str) -> list[int]:
    return [int(p) for p in re.findall(r"^ +\S+ +pid (\d+) +http://127\.0\.0\.1:\d+/", output, re.M)]


def running_under(directory: Path) -> list[int]:
    """Live processes whose command line names ``directory`` (every node and verifier the
    demo starts is given its data directory there)."""
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if str(directory).encode() in cmdline and alive(int(proc.name)):
                out.append(int(proc.name))
    return out


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[int]]:
    """Process ids the test learns of; at the end, any of them still running, and any
    process working under the test's directory, is killed."""
    seen: list[int] = []
    yield seen
    for pid in {*seen, *running_under(tmp_path)}:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def demo(*args: str | Path, **kw: object) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-m", "certledger", "demo", *map(str, args)],
        env=env,
        text=True,
        start_new_session=True,
        **kw,
    )


def verdicts(output: str) -> list[str]:
    return re.findall(r"→ [✓✗?] ([A-Z_]+)  ", output)


def test_the_consortium_runs_tells_its_story_and_resumes(tmp_path: Path, started: list[int]) -> None:
    work = tmp_path / "demo"
    first = demo("--exit", "--dir", work, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    started.append(first.pid)
    try:
        out, err = first.communicate(timeout=240)
    finally:
        first.kill()
    started.extend(pids(out))
    assert first.returncode == 0, out + err
    assert len(pids(out)) == 4
    assert "hangzhou-psb       杭州市公安局: issues residence_permit 居住证; node http://127.0.0.1:" in out
    # issued at each node through the clerks' API, QR codes in the terminal and as PNG files
    for m in MEMBERS:
        assert f"certificates/{m}.png" in out
        assert (work / "certificates" / f"{m}.png").read_bytes().startswith(b"\x89PNG")
    assert out.count("▀▀▀▀▀▀▀▀▀▀") >= 3
    # one of each VALID, then REVOKED after the revocation, then VALID with its issuer stopped
    assert verdicts(out) == ["VALID", "VALID", "VALID", "REVOKED", "VALID"]
    assert "有效：杭州市公安局签发的居住证" in out and "已撤销：杭州市西湖区市场监督管理局于" in out
    assert "hangzhou-psb stopped (SIGTERM" in out
    assert re.search(r"verifier page +http://127\.0\.0\.1:\d+/", out)
    assert re.search(r"consortium page +http://127\.0\.0\.1:\d+/consortium", out)
    assert "stopping every process" in out
    time.sleep(0.5)
    assert [p for p in pids(out) if alive(p)] == []
    state = json.loads((work / "demo.json").read_text())
    assert [c["expected"] for c in state["certificates"]] == ["REVOKED", "VALID", "VALID"]
    assert oct((work / "demo.json").stat().st_mode & 0o777) == "0o600"

    # a second run resumes the same consortium, and Ctrl-C stops every process
    log = tmp_path / "second.out"
    with log.open("w") as f:
        second = demo("--dir", work, stdout=f, stderr=subprocess.STDOUT)
    started.append(second.pid)
    deadline = time.monotonic() + 180
    while "The consortium runs until Ctrl-C." not in log.read_text():
        assert second.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    text = log.read_text()
    started.extend(pids(text))
    assert verdicts(text) == ["REVOKED", "VALID", "VALID"]
    assert all(alive(p) for p in pids(text))
    urls = re.findall(r"(http://127\.0\.0\.1:\d+/\S*)", text[text.index("addresses") :])
    assert len(urls) == 5 and urls[1].endswith("/consortium") and all(u.endswith("/clerk/") for u in urls[2:])
    with httpx.Client(trust_env=False, timeout=10) as client:
        for url in urls:  # the pages the demo points to answer while it runs
            assert client.get(url).status_code == 200, url
    second.send_signal(signal.SIGINT)
    assert second.wait(timeout=60) == 0, log.read_text()
    assert "Stopping every process." in log.read_text()
    assert [p for p in pids(text) if alive(p)] == []
    assert running_under(tmp_path) == []


def test_a_directory_of_something_else_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    done = demo("--exit", "--dir", tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = done.communicate(timeout=60)
    assert done.returncode == 1
    assert (
        f"Error: {tmp_path} is neither empty nor an earlier demo's directory; give a new or empty --dir"
        in err
    )
    assert list(tmp_path.iterdir()) == [tmp_path / "notes.txt"]
