"""Where a replica reads a log from: a node over HTTP, or a directory copy of its tiles.

A :class:`Fetcher` reads one log's public files by their C2SP tlog-tiles path
(``checkpoint``, ``tile/0/000``, ``tile/entries/000.p/7``…) relative to a base: a
node's own log (``https://node/``), its mirror of another member's log
(``https://node/mirror/<origin hash>/``), or a static copy on any web server or disk.
Nothing read here is trusted: the sync verifies everything. This is the only module of
the replica that does I/O.
"""

from __future__ import annotations

import hashlib
import os
import time
import zlib
from pathlib import Path
from typing import Any, Protocol

import httpx

from ledger.errors import FileError, TooLargeError

__all__ = ["DirectoryFetcher", "Fetcher", "HttpFetcher", "NotFoundError", "mirror_prefix"]


class NotFoundError(FileError):
    """The source does not have that file."""


class Fetcher(Protocol):
    """Reads a log's files by path; raises FileError (NotFoundError when absent)."""

    @property
    def name(self) -> str:
        """How errors and alerts name this source."""
        ...

    def get(self, path: str, *, max_size: int) -> bytes:
        """The file at ``path``; TooLargeError past ``max_size`` bytes."""
        ...


def mirror_prefix(origin: str) -> str:
    """The path under a node where it serves its copy of the log ``origin``."""
    return f"mirror/{hashlib.sha256(origin.encode('utf-8')).hexdigest()}/"


def _check_path(path: str) -> str:
    parts = path.split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise FileError(f"refusing to read the path {path!r}")
    return path


class DirectoryFetcher:
    """A log copied to a directory with the tlog-tiles layout."""

    def __init__(self, *, root: str | os.PathLike[str]) -> None:
        self._root = Path(root)

    @property
    def name(self) -> str:
        return f"directory {self._root}"

    def get(self, path: str, *, max_size: int) -> bytes:
        p = self._root / _check_path(path)
        try:
            with open(p, "rb") as f:
                data = f.read(max_size + 1)
        except FileNotFoundError:
            raise NotFoundError(f"{self.name}: no file {path}") from None
        except OSError as e:
            raise FileError(f"{self.name}: cannot read {path}: {e.strerror}") from None
        if len(data) > max_size:
            raise TooLargeError(f"{self.name}: {path} is larger than {max_size} bytes")
        return data


#: Content encodings a source may use (C2SP tlog-tiles: entry bundles SHOULD be
#: compressed at the HTTP layer), with their zlib window bits.
_ENCODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class HttpFetcher:
    """A log served over HTTP(S) at ``base_url`` (a node, a mirror path, or a static copy).

    ``client`` may be shared between fetchers (and, in tests, given a mock transport).
    Every file must arrive within ``deadline`` seconds, however slowly it trickles in,
    and a compressed body is inflated only up to ``max_size`` bytes.
    """

    def __init__(
        self,
        *,
        base_url: str,
        client: httpx.Client | None = None,
        timeout: float = 10.0,
        deadline: float = 60.0,
    ) -> None:
        self._base = base_url if base_url.endswith("/") else base_url + "/"
        self._client = client if client is not None else httpx.Client(timeout=timeout, follow_redirects=False)
        self._deadline = deadline

    @property
    def name(self) -> str:
        return self._base

    def get(self, path: str, *, max_size: int) -> bytes:
        url = self._base + _check_path(path)
        give_up = time.monotonic() + self._deadline
        try:
            with self._client.stream("GET", url, headers={"Accept-Encoding": "gzip, deflate"}) as r:
                if r.status_code == 404:
                    raise NotFoundError(f"{url}: not found")
                if r.status_code != 200:
                    raise FileError(f"{url}: HTTP status {r.status_code}")
                if r.is_stream_consumed:  # a body an in-memory transport read (and decoded) already
                    if len(r.content) > max_size:
                        raise TooLargeError(f"{url}: larger than {max_size} bytes")
                    return r.content
                encoding = r.headers.get("content-encoding", "identity").strip().lower()
                if encoding not in ("identity", "", *_ENCODINGS):
                    raise FileError(f"{url}: unsupported content encoding {encoding!r}")
                inflate = zlib.decompressobj(_ENCODINGS[encoding]) if encoding in _ENCODINGS else None
                out = bytearray()
                for chunk in r.iter_raw():
                    if time.monotonic() > give_up:
                        raise FileError(f"{url}: not received within {self._deadline:g} s")
                    if inflate is None:
                        out += chunk
                    else:
                        _inflate(inflate, chunk, out, max_size)
                    if len(out) > max_size:
                        raise TooLargeError(f"{url}: larger than {max_size} bytes")
                if inflate is not None and not inflate.eof:
                    raise FileError(f"{url}: the {encoding} body is truncated")
                return bytes(out)
        except zlib.error as e:
            raise FileError(f"{url}: the body does not decompress: {e}") from None
        except httpx.HTTPError as e:
            raise FileError(f"{url}: {type(e).__name__}: {e}") from None


def _inflate(inflate: Any, chunk: bytes, out: bytearray, max_size: int) -> None:
    """Inflate ``chunk`` into ``out``, never more than one byte past ``max_size``."""
    data = chunk
    while data and len(out) <= max_size:
        out += inflate.decompress(data, max_size + 1 - len(out))
        data = inflate.unconsumed_tail
