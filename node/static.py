"""Writing the log as static files: the same tiles and checkpoint the node serves.

After each checkpoint the new tiles (:func:`ledger.replica.tiles.new_tiles`) are written
under ``<dir>/tile/...`` and then ``<dir>/checkpoint`` is replaced atomically, so a
static web server, CDN or object store serving ``<dir>`` serves the log. A full tile is
written once: finding one already there with other bytes is a
:class:`~ledger.errors.ConflictError` (the log, or the directory, was tampered with).
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

from ledger.errors import ConflictError, FileError
from ledger.files import read_capped, write_file
from ledger.log.store import LogStore
from ledger.replica import tiles

__all__ = ["TilesDir", "tile_bytes"]


def tile_bytes(store: LogStore, tile: tiles.Tile) -> bytes:
    """The bytes of a tile or entry bundle from the store (which must hold it)."""
    if tile.is_entries:
        first = tile.index * tiles.TILE_WIDTH
        return tiles.encode_bundle(list(store.entries(first, first + tile.width)))
    return tiles.tile_from_hashes(tile, store.read_hashes)


class TilesDir:
    """A directory that mirrors the log's tiles and checkpoint."""

    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self._lock = threading.Lock()
        self._size = self._read_size()

    def _read_size(self) -> int:
        """The size of the checkpoint already in the directory (0 if none)."""
        p = self._dir / "checkpoint"
        if not p.exists():
            return 0
        lines = read_capped(p, limit=1 << 20, what="checkpoint").split(b"\n")
        with contextlib.suppress(ValueError, IndexError):
            return int(lines[1])
        return 0

    def write_tiles(self, store: LogStore, size: int) -> int:
        """Write the tiles a tree of ``size`` adds to what is there; returns how many."""
        with self._lock:
            written = 0
            start = min(self._size, size)
            for t in tiles.new_tiles(start, size):
                self._write_tile(t, tile_bytes(store, t))
                written += 1
            self._size = max(self._size, size)
            return written

    def _write_tile(self, tile: tiles.Tile, data: bytes) -> None:
        path = self._dir / tile.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise FileError(f"{path.parent}: cannot create the tile directory: {e.strerror}") from None
        if path.exists():
            old = read_capped(path, limit=len(data) + 1, what="tile")
            if old == data:
                return
            if tile.is_full:
                raise ConflictError(
                    f"{path}: a different full tile is already written; refusing to replace it"
                )
        write_file(path, data, mode=0o644, overwrite=not tile.is_full, what="tile")

    def write_checkpoint(self, note: bytes) -> None:
        """Replace ``<dir>/checkpoint`` atomically."""
        os.makedirs(self._dir, exist_ok=True)
        write_file(self._dir / "checkpoint", note, mode=0o644, overwrite=True, what="checkpoint")
