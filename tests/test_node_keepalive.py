"""The node keeps an idle connection open longer than HTTP client pools keep theirs.

httpx reuses a pooled connection idle for up to 5 s. Had the node closed idle
connections after 5 s too (the server's default), a client could send a request on a
connection just as the node closed it, and that request failed with a connection reset
(httpx.ReadError) under load.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from node.config import KEEP_ALIVE_SECONDS
from tests import window

_REQUEST = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def _reply(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, "the node closed the connection"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(4096)
        assert chunk, "the node closed the connection"
        body += chunk
    return head.split(b"\r\n", 1)[0]


@pytest.mark.slow
def test_an_idle_connection_outlives_a_client_pools_expiry(tmp_path: Path) -> None:
    assert KEEP_ALIVE_SECONDS > 5
    node = window.NodeProcess(window.make_node(tmp_path)).start()
    try:
        with socket.create_connection(("127.0.0.1", node.port), timeout=30) as sock:
            sock.sendall(_REQUEST)
            assert _reply(sock) == b"HTTP/1.1 200 OK"
            time.sleep(6.5)  # longer than httpx keeps an idle connection, and than 5 s
            sock.sendall(_REQUEST)
            assert _reply(sock) == b"HTTP/1.1 200 OK"
    finally:
        node.stop()
