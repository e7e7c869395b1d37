"""C2SP tlog-tiles: paths, tile and entry-bundle encodings, and checking tiles against a tree.

A log of ``size`` entries is served as *tiles* (``tile/<L>/<N>[.p/<W>]``): tile ``N`` at
level ``L`` holds up to 256 consecutive Merkle hashes from tree level ``8 * L``, i.e. the
stored hashes ``(8L, 256N + i)`` for ``i < W`` (see :mod:`ledger.log.merkle`). The
entries themselves are served as *entry bundles* (``tile/entries/<N>[.p/<W>]``), each a
sequence of big-endian uint16 length-prefixed entries; entry ``i`` of bundle ``N`` is
leaf ``256N + i``. Here an entry bundle is a :class:`Tile` whose level is
:data:`ENTRIES`.

Pure: no I/O. A client passes a function that fetches tiles (:data:`TileFetcher`) to
:func:`tile_hash_reader`, which authenticates every tile it reads against a trusted
``(size, root)`` before giving out hashes, so :func:`ledger.log.merkle.prove_tree` and
``prove_record`` can compute proofs from a log's tiles alone (after Go's
``golang.org/x/mod/sumdb/tlog`` ``TileHashReader``). A server builds tiles from its own
stored hashes with :func:`tile_from_hashes` and lists what a new tree size adds with
:func:`new_tiles`.

Every refusal raises :class:`~ledger.errors.MalformedError` (bad path or encoding) or
:class:`~ledger.errors.ProofError` (a tile that does not hash to the trusted tree).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from ledger.errors import MalformedError, ProofError, TooLargeError
from ledger.log import merkle

__all__ = [
    "ENTRIES",
    "MAX_ENTRY_SIZE",
    "MAX_LEVEL",
    "MAX_PATH_LENGTH",
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "Tile",
    "TileFetcher",
    "check_bundle",
    "decode_bundle",
    "decode_tile",
    "encode_bundle",
    "encode_index",
    "encode_tile",
    "new_tiles",
    "parse_tile_path",
    "tile_for",
    "tile_from_hashes",
    "tile_hash_reader",
    "tiles_for_size",
]

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
#: The level of an entry bundle (Go's ``sumdb/tlog`` calls these data tiles, level -1).
ENTRIES = -1
#: The highest hash-tile level the spec allows.
MAX_LEVEL = 63
#: Longest entry an entry bundle can carry (a big-endian uint16 length).
MAX_ENTRY_SIZE = 0xFFFF
#: Longest tile path :func:`parse_tile_path` reads (a 2**64 index needs 7 groups).
MAX_PATH_LENGTH = 64
#: Largest tile index accepted: enough for a tree of 2**64 entries at level 0.
_MAX_INDEX = (1 << 64) >> TILE_HEIGHT
_HASH = merkle.HASH_SIZE

#: Fetches tiles: returns each tile's bytes, in the order asked.
TileFetcher = Callable[[Sequence["Tile"]], Sequence[bytes]]


@dataclass(frozen=True, kw_only=True, order=True)
class Tile:
    """One tile (``level >= 0``) or entry bundle (``level == ENTRIES``) of ``width`` items.

    ``width`` is 256 for a full tile and 1..255 for a partial one.
    """

    level: int
    index: int
    width: int = TILE_WIDTH

    def __post_init__(self) -> None:
        for name in ("level", "index", "width"):
            if type(getattr(self, name)) is not int:
                raise MalformedError(f"tile {name} must be an integer")
        if not ENTRIES <= self.level <= MAX_LEVEL:
            raise MalformedError(f"tile level {self.level} is out of range")
        if not 0 <= self.index < _MAX_INDEX:
            raise MalformedError(f"tile index {self.index} is out of range")
        if not 1 <= self.width <= TILE_WIDTH:
            raise MalformedError(f"tile width {self.width} is out of range")

    @property
    def is_entries(self) -> bool:
        """Whether this is an entry bundle rather than a hash tile."""
        return self.level == ENTRIES

    @property
    def is_full(self) -> bool:
        """Whether the tile holds all 256 items (and so never changes)."""
        return self.width == TILE_WIDTH

    @property
    def path(self) -> str:
        """The tlog-tiles path, e.g. ``tile/0/x001/234.p/5`` or ``tile/entries/000``."""
        level = "entries" if self.is_entries else str(self.level)
        suffix = "" if self.is_full else f".p/{self.width}"
        return f"tile/{level}/{encode_index(self.index)}{suffix}"

    @property
    def full(self) -> Tile:
        """The full tile this one is (or will become) a prefix of."""
        return Tile(level=self.level, index=self.index)

    @property
    def size(self) -> int:
        """Bytes of a hash tile (``32 * width``); for a bundle, the number of entries."""
        return self.width if self.is_entries else self.width * _HASH


def encode_index(n: int) -> str:
    """The zero-padded 3-digit path groups of a tile index: 1234067 → ``x001/x234/067``."""
    if type(n) is not int or n < 0:
        raise MalformedError("tile index must be a non-negative integer")
    groups = [f"{n % 1000:03d}"]
    n //= 1000
    while n:
        groups.append(f"x{n % 1000:03d}")
        n //= 1000
    return "/".join(reversed(groups))


_PATH = re.compile(
    r"tile/(?P<level>entries|0|[1-9][0-9]?)/(?P<index>(?:x[0-9]{3}/)*[0-9]{3})(?:\.p/(?P<width>[1-9][0-9]{0,2}))?"
)


def parse_tile_path(path: str) -> Tile:
    """Parse a canonical tile path (``tile/<L>/<N>[.p/<W>]`` or ``tile/entries/<N>[.p/<W>]``).

    Only the one canonical spelling of each tile is accepted: no leading zero groups
    (``x000/001``), no leading zeros in the level or width, no ``.p/256``.
    """
    if not isinstance(path, str):
        raise MalformedError("tile path must be text")
    if len(path) > MAX_PATH_LENGTH:
        raise TooLargeError(f"tile path is longer than {MAX_PATH_LENGTH} characters")
    m = _PATH.fullmatch(path)
    if m is None:
        raise MalformedError("not a tile path")
    level = ENTRIES if m["level"] == "entries" else int(m["level"])
    index = int(m["index"].replace("x", "").replace("/", ""))
    width = int(m["width"]) if m["width"] else TILE_WIDTH
    if m["width"] and width >= TILE_WIDTH:
        raise MalformedError("partial tile width must be 1 to 255")
    tile = Tile(level=level, index=index, width=width)
    if tile.path != path:
        raise MalformedError("tile path is not canonical")
    return tile


def _level_count(level: int, size: int) -> int:
    """How many items a tree of ``size`` entries has at a tile level (bundles: entries)."""
    return size if level == ENTRIES else size >> (TILE_HEIGHT * level)


def tile_for(level: int, index: int, size: int) -> Tile | None:
    """Tile ``index`` at ``level`` as it is in a tree of ``size`` entries, or ``None`` if empty."""
    count = _level_count(level, size) - index * TILE_WIDTH
    if count <= 0:
        return None
    return Tile(level=level, index=index, width=min(count, TILE_WIDTH))


def _levels(size: int) -> Iterator[int]:
    yield ENTRIES
    level = 0
    while level <= MAX_LEVEL and _level_count(level, size) > 0:
        yield level
        level += 1


def tiles_for_size(size: int) -> Iterator[Tile]:
    """Every tile and entry bundle of a tree of ``size`` entries (bundles first, then by level)."""
    yield from new_tiles(0, size)


def new_tiles(old_size: int, new_size: int) -> Iterator[Tile]:
    """The tiles and bundles a tree of ``new_size`` has that one of ``old_size`` has not.

    A tile that grew is listed at its new width; tiles that are unchanged are not.
    """
    if not 0 <= old_size <= new_size:
        raise ValueError("tree sizes must satisfy 0 <= old_size <= new_size")
    for level in _levels(new_size):
        old_count = _level_count(level, old_size)
        new_count = _level_count(level, new_size)
        if old_count == new_count:
            continue
        for n in range(old_count // TILE_WIDTH, (new_count - 1) // TILE_WIDTH + 1):
            tile = tile_for(level, n, new_size)
            if tile is not None:
                yield tile


def encode_tile(hashes: Sequence[bytes]) -> bytes:
    """A hash tile's bytes: 1 to 256 concatenated 32-byte hashes."""
    if not 1 <= len(hashes) <= TILE_WIDTH:
        raise MalformedError("a tile holds 1 to 256 hashes")
    for h in hashes:
        if not isinstance(h, bytes) or len(h) != _HASH:
            raise MalformedError("tile hashes must be 32 bytes")
    return b"".join(hashes)


def decode_tile(tile: Tile, data: bytes) -> list[bytes]:
    """The hashes of a hash tile; ``data`` must be exactly ``32 * tile.width`` bytes."""
    if tile.is_entries:
        raise MalformedError("an entry bundle is not a hash tile")
    if len(data) != tile.width * _HASH:
        raise MalformedError(f"tile {tile.path} is {len(data)} bytes, not {tile.width * _HASH}")
    return [bytes(data[i : i + _HASH]) for i in range(0, len(data), _HASH)]


def encode_bundle(entries: Sequence[bytes]) -> bytes:
    """An entry bundle's bytes: 1 to 256 entries, each behind its big-endian uint16 length."""
    if not 1 <= len(entries) <= TILE_WIDTH:
        raise MalformedError("an entry bundle holds 1 to 256 entries")
    out = bytearray()
    for e in entries:
        if len(e) > MAX_ENTRY_SIZE:
            raise TooLargeError(f"entry is longer than {MAX_ENTRY_SIZE} bytes")
        out += len(e).to_bytes(2, "big")
        out += e
    return bytes(out)


def decode_bundle(tile: Tile, data: bytes) -> list[bytes]:
    """The entries of an entry bundle: exactly ``tile.width`` of them and no trailing bytes."""
    if not tile.is_entries:
        raise MalformedError("a hash tile is not an entry bundle")
    entries: list[bytes] = []
    pos = 0
    view = memoryview(data)
    while pos < len(data):
        if len(entries) == tile.width:
            raise MalformedError(f"entry bundle {tile.path} has more than {tile.width} entries")
        if pos + 2 > len(data):
            raise MalformedError(f"entry bundle {tile.path} is truncated")
        n = int.from_bytes(view[pos : pos + 2], "big")
        pos += 2
        if pos + n > len(data):
            raise MalformedError(f"entry bundle {tile.path} is truncated")
        entries.append(bytes(view[pos : pos + n]))
        pos += n
    if len(entries) != tile.width:
        raise MalformedError(f"entry bundle {tile.path} has {len(entries)} entries, not {tile.width}")
    return entries


def check_bundle(tile: Tile, data: bytes, level0: bytes) -> list[bytes]:
    """The entries of a bundle, checked against the (already trusted) level-0 tile of the same index.

    ``level0`` may be wider than the bundle (a later tree's tile); only its first
    ``tile.width`` hashes are compared.
    """
    entries = decode_bundle(tile, data)
    if len(level0) < tile.width * _HASH or len(level0) % _HASH:
        raise MalformedError(f"level-0 tile for {tile.path} is too short")
    for i, e in enumerate(entries):
        if merkle.leaf_hash(e) != level0[i * _HASH : (i + 1) * _HASH]:
            raise ProofError(f"entry {tile.index * TILE_WIDTH + i} in {tile.path} does not hash to its leaf")
    return entries


def tile_from_hashes(tile: Tile, read: merkle.HashReader) -> bytes:
    """Build a hash tile's bytes from a log's stored hashes (what a server serves)."""
    if tile.is_entries:
        raise MalformedError("an entry bundle is not built from hashes")
    level = tile.level * TILE_HEIGHT
    first = tile.index * TILE_WIDTH
    hashes = read([merkle.stored_hash_index(level, first + i) for i in range(tile.width)])
    return encode_tile(list(hashes))


def _subtree(data: bytes | memoryview) -> bytes:
    """The Merkle hash of a power-of-two run of hashes in a tile."""
    raw = bytes(data)
    level = [raw[i : i + _HASH] for i in range(0, len(raw), _HASH)]
    sha256 = hashlib.sha256
    while len(level) > 1:
        level = [sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level), 2)]
    return level[0]


def _locate(index: int) -> tuple[int, int, int, int]:
    """Where stored hash ``index`` lives: ``(tile level, tile index, start, end)``.

    ``start`` and ``end`` are byte offsets into the tile of the hashes whose subtree
    hash it is; the minimal tile width holding it is ``end // 32``.
    """
    level, n = merkle.split_stored_hash_index(index)
    tile_level = level // TILE_HEIGHT
    sub = level - tile_level * TILE_HEIGHT  # height inside the tile
    tile_index = (n << sub) >> TILE_HEIGHT
    within = n - ((tile_index << TILE_HEIGHT) >> sub)
    return tile_level, tile_index, (within << sub) * _HASH, ((within + 1) << sub) * _HASH


def _hash_in(data: bytes, start: int, end: int, what: str) -> bytes:
    if len(data) < end:
        raise ProofError(f"tile {what} is too short")
    return _subtree(memoryview(data)[start:end])


def _root_indexes(size: int) -> list[int]:
    """The stored hashes of the complete subtrees that make up ``[0, size)``, left to right."""
    out = []
    lo = 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            out.append(merkle.stored_hash_index(level, lo >> level))
            lo += 1 << level
    return out


def tile_hash_reader(size: int, root: bytes, fetch: TileFetcher) -> merkle.HashReader:
    """A :data:`~ledger.log.merkle.HashReader` for the tree ``(size, root)`` backed by tiles.

    Each read fetches the tiles that hold the asked hashes together with the tiles that
    recompute ``root``, checks that they do (and that each lower full tile hashes to its
    entry in the tile above), and only then returns the hashes. A tile that does not fit
    raises :class:`~ledger.errors.ProofError` naming the tile.
    """
    if size < 1:
        raise ValueError("a tile hash reader needs a non-empty tree")
    if len(root) != _HASH:
        raise ValueError("root must be a 32-byte hash")
    top_indexes = _root_indexes(size)
    verified_top: list[bytes] = []
    limit = merkle.stored_hash_index(0, size)

    def tile_at(level: int, index: int) -> Tile:
        t = tile_for(level, index, size)
        if t is None:  # a stored hash below size always has its tile
            raise ProofError(f"tile {level}/{index} is not in a tree of size {size}")
        return t

    def read(indexes: Sequence[int]) -> list[bytes]:
        order: dict[Tile, int] = {}
        tiles: list[Tile] = []

        def want(t: Tile) -> None:
            if t not in order:
                order[t] = len(tiles)
                tiles.append(t)

        # The tiles that recompute the root come first: they are checked against it.
        top = []
        for x in top_indexes:
            lvl, n, start, end = _locate(x)
            t = tile_at(lvl, n)
            want(t)
            top.append((t, start, end))
        checked = len(tiles)  # tiles[:checked] are checked against the root itself
        # Then each asked hash's tile, after the parents that authenticate it.
        located = []
        for x in indexes:
            if not 0 <= x < limit:
                raise ProofError(f"stored hash {x} is not in a tree of size {size}")
            lvl, n, start, end = _locate(x)
            chain = []
            k = 0
            while True:
                t = tile_at(lvl + k, n >> (TILE_HEIGHT * k))
                if t in order:
                    break
                chain.append(t)
                k += 1
            for t in reversed(chain):
                want(t)
            located.append((tile_at(lvl, n), start, end))
        data = list(fetch(tiles))
        if len(data) != len(tiles):
            raise ProofError("tile fetcher returned the wrong number of tiles")
        for t, d in zip(tiles, data, strict=True):
            if len(d) != t.size:
                raise ProofError(f"tile {t.path} is {len(d)} bytes, not {t.size}")
        if data[:checked] != verified_top:  # the same tiles as last time need no second check
            h = None
            for t, start, end in reversed(top):
                sub = _hash_in(data[order[t]], start, end, t.path)
                h = sub if h is None else merkle.node_hash(sub, h)
            if h != root:
                names = ", ".join(t.path for t, _, _ in top)
                raise ProofError(f"tiles {names} do not hash to the checkpoint root")
            verified_top[:] = data[:checked]
        for i in range(checked, len(tiles)):
            t = tiles[i]
            parent = tile_at(t.level + 1, t.index >> TILE_HEIGHT)
            j = order.get(parent)
            if j is None or not t.is_full:
                raise ProofError(f"tile {t.path} cannot be authenticated")
            within = t.index % TILE_WIDTH
            want_hash = _hash_in(data[j], within * _HASH, (within + 1) * _HASH, parent.path)
            if _subtree(data[i]) != want_hash:
                raise ProofError(f"tile {t.path} does not hash to its parent {parent.path}")
        return [_hash_in(data[order[t]], start, end, t.path) for t, start, end in located]

    return read
