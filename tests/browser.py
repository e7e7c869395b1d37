"""What both browser tests share: Debian's Chromium, its flags, and uvicorn in a thread.

Chromium runs with background networking off, so the only address it contacts is the
server on 127.0.0.1. Outside CI a browser test skips when /usr/bin/chromium is absent
(:func:`require_chromium`); in CI it must run (the README's test command installs it).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import uvicorn

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require_chromium() -> None:
    """Skip the calling test module when Chromium is absent, except in CI."""
    if not Path(CHROMIUM).exists() and not os.environ.get("CI"):
        pytest.skip(
            f"{CHROMIUM} is absent (install Debian's chromium package; the README's test command does)",
            allow_module_level=True,
        )


class Server:
    """uvicorn serving ``app`` on 127.0.0.1 at an ephemeral port, in a thread."""

    def __init__(self, app: Any, *, what: str = "the server") -> None:
        self.what = what
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, f"{self.what} did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
        self.sock.close()
        assert not self.thread.is_alive()
