"""A department node for the clerks' tests and benchmarks: data directory, clerks, a real process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner

from certledger.cli import cli
from tests import nodes
from tests.fixtures import consortium as fx

ROOT = Path(__file__).resolve().parent.parent
#: A loopback port nothing listens on: the other members' "base URLs", so a node never
#: contacts anything but 127.0.0.1.
DEAD = "http://127.0.0.1:9/"


def policy_doc(version: int = 1) -> bytes:
    """The fixture policy, current at the real clock (a node runs at it), the other members
    reachable only at a dead loopback port."""
    expires = int(time.time()) + 200 * 86400
    return nodes.sign_policy(
        nodes.policy_with_urls({nodes.B: DEAD, nodes.C: DEAD}, version=version, expires=expires)
    )


def make_node(tmp: Path, member_id: str = nodes.A) -> Path:
    """``certledger node init`` for ``member_id`` under ``tmp``; returns the data directory."""
    return nodes.init_node(tmp, member_id, policy_doc())


def add_clerk(data: Path, name: str, role: str) -> str:
    """``certledger node add-clerk``; returns the token it printed."""
    r = CliRunner().invoke(cli, ["node", "add-clerk", name, "--role", role, "--data", str(data)])
    assert r.exit_code == 0, r.output
    return r.stdout.strip().splitlines()[-1]


def free_port() -> int:
    """A loopback port free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NodeProcess:
    """``certledger node run`` as a child process on 127.0.0.1."""

    def __init__(self, data: Path, *, port: int | None = None, interval: float = 0.2) -> None:
        self.data = data
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.interval = interval
        self.proc: subprocess.Popen[bytes] | None = None
        self._err: Any = None

    def start(self, timeout: float = 30.0) -> NodeProcess:
        code = "from certledger.cli import main; main()"
        self._err = open(self.data / "node.stderr", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                code,
                "node",
                "run",
                "--data",
                str(self.data),
                "--listen",
                f"127.0.0.1:{self.port}",
                "--checkpoint-interval",
                str(self.interval),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=self._err,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = (self.data / "node.stderr").read_text()[-2000:]
                raise RuntimeError(f"node exited with {self.proc.returncode}: {err}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError("node did not come up")

    def kill(self) -> None:
        """SIGKILL: no chance to flush or sign anything."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self._close()

    def _close(self) -> None:
        if self._err is not None:
            self._err.close()
            self._err = None

    def stop(self) -> None:
        """SIGTERM and wait (a clean shutdown)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close()


FOOD = fx.FOOD_CLAIMS


def food_claims(n: int) -> dict[str, object]:
    """Food permit claims made distinct by ``n``."""
    return {**FOOD, "licence_no": f"JY{13301060000000 + n}", "name": f"{FOOD['name']}{n}"}
