"""C2SP tlog-tiles: paths, encodings, which tiles a tree has, and tiles checked against a root."""

from __future__ import annotations

import base64
import contextlib
import json
import re
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import MalformedError, ProofError, TooLargeError
from ledger.log import merkle
from ledger.replica import tiles
from ledger.replica.tiles import ENTRIES, Tile

VECTORS = Path(__file__).resolve().parent / "vectors" / "merkle"

# The eight leaves of the RFC 6962 test tree, which the public happy-path vectors use.
RFC6962_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]


class MemoryLog:
    """A log held in memory that serves its tiles like a server would."""

    def __init__(self, entries: Sequence[bytes]) -> None:
        self.entries = list(entries)
        self.hashes: list[bytes] = []
        for i, e in enumerate(self.entries):
            self.hashes += merkle.stored_hashes(i, merkle.leaf_hash(e), self.read)
        self.fetched: list[Tile] = []

    def read(self, indexes: Sequence[int]) -> list[bytes]:
        return [self.hashes[i] for i in indexes]

    def root(self, size: int) -> bytes:
        return merkle.tree_hash(size, self.read)

    def tile(self, t: Tile) -> bytes:
        if t.is_entries:
            first = t.index * tiles.TILE_WIDTH
            return tiles.encode_bundle(self.entries[first : first + t.width])
        return tiles.tile_from_hashes(t, self.read)

    def fetch(self, ts: Sequence[Tile]) -> list[bytes]:
        self.fetched += ts
        return [self.tile(t) for t in ts]


@pytest.fixture(scope="module")
def big_log() -> MemoryLog:
    # Three tile levels: 66,000 > 256 * 256.
    return MemoryLog([i.to_bytes(4, "big") for i in range(66_000)])


# --- paths -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tile", "path"),
    [
        (Tile(level=0, index=0), "tile/0/000"),
        (Tile(level=0, index=1234067), "tile/0/x001/x234/067"),
        (Tile(level=1, index=5, width=17), "tile/1/005.p/17"),
        (Tile(level=63, index=1000), "tile/63/x001/000"),
        (Tile(level=ENTRIES, index=999, width=1), "tile/entries/999.p/1"),
        (Tile(level=ENTRIES, index=1000), "tile/entries/x001/000"),
    ],
)
def test_path_round_trip(tile: Tile, path: str) -> None:
    assert tile.path == path
    assert tiles.parse_tile_path(path) == tile


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("tile/0/x000/001", "not canonical"),  # a leading zero group
        ("tile/00/001", "not a tile path"),  # a leading zero in the level
        ("tile/64/001", "level 64 is out of range"),
        ("tile/0/1", "not a tile path"),  # not a 3-digit group
        ("tile/0/001/002", "not a tile path"),  # a middle group without its x
        ("tile/0/x001", "not a tile path"),  # the last group with an x
        ("tile/0/001.p/256", "width must be 1 to 255"),
        ("tile/0/001.p/0", "not a tile path"),
        ("tile/0/001.p/012", "not a tile path"),
        ("tile/data/001", "not a tile path"),
        ("/tile/0/001", "not a tile path"),
        ("tile/0/001/", "not a tile path"),
        ("tile/0/001.p/5\n", "not a tile path"),
        ("tile/-1/001", "not a tile path"),
        ("tile/0/x072/x057/x594/x037/x927/936", "index 72057594037927936 is out of range"),
    ],
)
def test_path_refused(path: str, message: str) -> None:
    with pytest.raises(MalformedError, match=message):
        tiles.parse_tile_path(path)


def test_path_too_long() -> None:
    with pytest.raises(TooLargeError, match="longer than 64"):
        tiles.parse_tile_path("tile/0/" + "x000/" * 12 + "001")


@given(st.text(max_size=80))
def test_random_paths_parse_only_canonically(path: str) -> None:
    try:
        tile = tiles.parse_tile_path(path)
    except MalformedError:
        return
    assert tile.path == path


@given(
    st.integers(min_value=ENTRIES, max_value=tiles.MAX_LEVEL),
    st.integers(min_value=0, max_value=(1 << 56) - 1),
    st.integers(min_value=1, max_value=256),
)
def test_every_tile_round_trips(level: int, index: int, width: int) -> None:
    tile = Tile(level=level, index=index, width=width)
    path = tile.path
    assert tiles.parse_tile_path(path) == tile
    # Cut or extended, the path no longer names this tile.
    for bad in (path[:-1], path + "0", path + "/", "x" + path):
        with contextlib.suppress(MalformedError):
            assert tiles.parse_tile_path(bad) != tile


def test_tile_fields_checked() -> None:
    with pytest.raises(MalformedError, match="width 0 is out of range"):
        Tile(level=0, index=0, width=0)
    with pytest.raises(MalformedError, match="level -2 is out of range"):
        Tile(level=-2, index=0)
    with pytest.raises(MalformedError, match="index must be an integer"):
        Tile(level=0, index=True)


# --- which tiles a tree has ----------------------------------------------------------


def test_spec_example_size_70000() -> None:
    # tlog-tiles: 273 full level-0 tiles, one of width 112, one full level-1 tile, one of
    # width 17, and one level-2 tile of width 1.
    hash_tiles = [t for t in tiles.tiles_for_size(70_000) if not t.is_entries]
    level0 = [t for t in hash_tiles if t.level == 0]
    assert sum(t.is_full for t in level0) == 273
    assert [t.width for t in level0 if not t.is_full] == [112]
    assert [(t.level, t.index, t.width) for t in hash_tiles if t.level > 0] == [
        (1, 0, 256),
        (1, 1, 17),
        (2, 0, 1),
    ]
    bundles = [t for t in tiles.tiles_for_size(70_000) if t.is_entries]
    assert [t.width for t in bundles] == [256] * 273 + [112]


def test_spec_example_size_256() -> None:
    assert list(tiles.tiles_for_size(256)) == [
        Tile(level=ENTRIES, index=0),
        Tile(level=0, index=0),
        Tile(level=1, index=0, width=1),
    ]
    assert list(tiles.tiles_for_size(0)) == []


@given(st.integers(0, 200_000), st.integers(0, 200_000))
def test_new_tiles_are_what_the_bigger_tree_adds(a: int, b: int) -> None:
    old, new = min(a, b), max(a, b)
    added = set(tiles.new_tiles(old, new))
    before = set(tiles.tiles_for_size(old))
    after = set(tiles.tiles_for_size(new))
    assert added == after - before
    for t in after:
        assert tiles.tile_for(t.level, t.index, new) == t


# --- encodings -------------------------------------------------------------------------


def test_tile_encoding() -> None:
    hashes = [bytes([i]) * 32 for i in range(3)]
    data = tiles.encode_tile(hashes)
    assert data == b"".join(hashes)
    assert tiles.decode_tile(Tile(level=0, index=0, width=3), data) == hashes
    with pytest.raises(MalformedError, match="is 96 bytes, not 128"):
        tiles.decode_tile(Tile(level=0, index=0, width=4), data)
    with pytest.raises(MalformedError, match="1 to 256 hashes"):
        tiles.encode_tile([])
    with pytest.raises(MalformedError, match="must be 32 bytes"):
        tiles.encode_tile([b"short"])


def test_bundle_encoding_is_big_endian_uint16_prefixed() -> None:
    data = tiles.encode_bundle([b"", b"ab", b"x" * 300])
    assert data == b"\x00\x00" + b"\x00\x02ab" + b"\x01\x2c" + b"x" * 300
    tile = Tile(level=ENTRIES, index=0, width=3)
    assert tiles.decode_bundle(tile, data) == [b"", b"ab", b"x" * 300]
    with pytest.raises(TooLargeError, match="longer than 65535"):
        tiles.encode_bundle([b"x" * 65536])


@pytest.mark.parametrize(
    ("data", "width", "message"),
    [
        (b"\x00\x02a", 1, "truncated"),
        (b"\x00", 1, "truncated"),
        (b"\x00\x01a\x00\x01b", 1, "more than 1 entries"),
        (b"\x00\x01a", 2, "has 1 entries, not 2"),
        (b"", 1, "has 0 entries, not 1"),
    ],
)
def test_bundle_refused(data: bytes, width: int, message: str) -> None:
    with pytest.raises(MalformedError, match=message):
        tiles.decode_bundle(Tile(level=ENTRIES, index=0, width=width), data)


@given(st.lists(st.binary(max_size=300), min_size=1, max_size=256), st.binary(max_size=8))
def test_bundle_round_trip_and_trailing_bytes(entries: list[bytes], junk: bytes) -> None:
    tile = Tile(level=ENTRIES, index=7, width=len(entries))
    data = tiles.encode_bundle(entries)
    assert tiles.decode_bundle(tile, data) == entries
    if junk:
        with pytest.raises(MalformedError):
            tiles.decode_bundle(tile, data + junk)
        with pytest.raises(MalformedError):
            tiles.decode_bundle(tile, data[: -len(junk)] if len(junk) < len(data) else b"")


@given(st.binary(max_size=600), st.integers(1, 256))
def test_random_bundles_never_crash(data: bytes, width: int) -> None:
    try:
        entries = tiles.decode_bundle(Tile(level=ENTRIES, index=0, width=width), data)
    except MalformedError:
        return
    assert tiles.encode_bundle(entries) == data


def test_check_bundle_against_level0() -> None:
    log = MemoryLog(RFC6962_LEAVES)
    bundle = Tile(level=ENTRIES, index=0, width=8)
    level0 = log.tile(Tile(level=0, index=0, width=8))
    assert tiles.check_bundle(bundle, log.tile(bundle), level0) == RFC6962_LEAVES
    forged = tiles.encode_bundle([*RFC6962_LEAVES[:3], b"forged", *RFC6962_LEAVES[4:]])
    with pytest.raises(ProofError, match=re.escape("entry 3 in tile/entries/000.p/8 does not hash")):
        tiles.check_bundle(bundle, forged, level0)


# --- tiles against a trusted root --------------------------------------------------------


def _b64(s: str | None) -> bytes:
    return base64.b64decode(s) if s else b""


def _happy(kind: str) -> list[Path]:
    return sorted((VECTORS / kind).glob("*/happy-path.json"))


@pytest.mark.parametrize("path", _happy("inclusion"), ids=lambda p: p.parent.name)
def test_inclusion_vectors_from_tiles(path: Path) -> None:
    v = json.loads(path.read_text())
    log = MemoryLog(RFC6962_LEAVES[: v["treeSize"]])
    size, root = v["treeSize"], _b64(v["root"])
    assert log.root(size) == root
    read = tiles.tile_hash_reader(size, root, log.fetch)
    assert merkle.leaf_hash(RFC6962_LEAVES[v["leafIdx"]]) == _b64(v["leafHash"])
    proof = merkle.prove_record(size, v["leafIdx"], read)
    assert proof == [_b64(h) for h in v["proof"] or []]


@pytest.mark.parametrize("path", _happy("consistency"), ids=lambda p: p.parent.name)
def test_consistency_vectors_from_tiles(path: Path) -> None:
    v = json.loads(path.read_text())
    log = MemoryLog(RFC6962_LEAVES[: v["size2"]])
    root2 = _b64(v["root2"])
    assert log.root(v["size1"]) == _b64(v["root1"])
    read = tiles.tile_hash_reader(v["size2"], root2, log.fetch)
    proof = merkle.prove_tree(v["size2"], v["size1"], read)
    assert proof == [_b64(h) for h in v["proof"] or []]


@pytest.mark.parametrize("size", [1, 255, 256, 257, 65_535, 65_536, 65_537, 66_000])
def test_proofs_from_tiles_match_the_log(big_log: MemoryLog, size: int) -> None:
    root = big_log.root(size)
    read = tiles.tile_hash_reader(size, root, big_log.fetch)
    for n in sorted({0, size // 3, size - 1}):
        assert merkle.prove_record(size, n, read) == merkle.prove_record(size, n, big_log.read)
    for old in sorted({1, size // 2 or 1, size}):
        proof = merkle.prove_tree(size, old, read)
        merkle.check_tree(proof, size, root, old, big_log.root(old))
    assert merkle.tree_hash(size, read) == root


def test_tampered_tile_is_named(big_log: MemoryLog) -> None:
    size = 66_000
    root = big_log.root(size)
    victim = Tile(level=0, index=3)

    def tampered(ts: Sequence[Tile]) -> list[bytes]:
        out = big_log.fetch(ts)
        return [bytes([d[0] ^ 1]) + d[1:] if t == victim else d for t, d in zip(ts, out, strict=True)]

    read = tiles.tile_hash_reader(size, root, tampered)
    with pytest.raises(ProofError, match="tile tile/0/003 does not hash to its parent tile/1/000"):
        merkle.prove_record(size, 3 * 256 + 5, read)


def test_wrong_root_or_size_refused(big_log: MemoryLog) -> None:
    read = tiles.tile_hash_reader(1000, b"\x00" * 32, big_log.fetch)
    with pytest.raises(ProofError, match="do not hash to the checkpoint root"):
        read([0])
    read = tiles.tile_hash_reader(1000, big_log.root(1000), big_log.fetch)
    with pytest.raises(ProofError, match="not in a tree of size 1000"):
        read([merkle.stored_hash_index(0, 1000)])

    def short(ts: Sequence[Tile]) -> list[bytes]:
        return [d[:-1] for d in big_log.fetch(ts)]

    with pytest.raises(ProofError, match=re.escape("tile tile/1/000.p/3 is 95 bytes, not 96")):
        tiles.tile_hash_reader(1000, big_log.root(1000), short)([0])


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_reader_agrees_with_the_log(big_log: MemoryLog, data: st.DataObject) -> None:
    size = data.draw(st.integers(1, 66_000))
    read = tiles.tile_hash_reader(size, big_log.root(size), big_log.fetch)
    limit = merkle.stored_hash_index(0, size)
    want = data.draw(st.lists(st.integers(0, limit - 1), max_size=5))
    assert read(want) == big_log.read(want)


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_any_flipped_bit_in_any_fetched_tile_is_caught(big_log: MemoryLog, data: st.DataObject) -> None:
    size = data.draw(st.integers(1, 66_000))
    root = big_log.root(size)
    limit = merkle.stored_hash_index(0, size)
    want = data.draw(st.lists(st.integers(0, limit - 1), min_size=1, max_size=3))
    planned: list[Tile] = []

    def recording(ts: Sequence[Tile]) -> list[bytes]:
        planned.extend(ts)
        return big_log.fetch(ts)

    assert tiles.tile_hash_reader(size, root, recording)(want) == big_log.read(want)
    victim = data.draw(st.sampled_from(planned))
    bit = data.draw(st.integers(0, victim.size * 8 - 1))

    def flipped(ts: Sequence[Tile]) -> list[bytes]:
        out = big_log.fetch(ts)
        for i, t in enumerate(ts):
            if t == victim:
                d = bytearray(out[i])
                d[bit // 8] ^= 1 << (bit % 8)
                out[i] = bytes(d)
        return out

    with pytest.raises(ProofError, match="hash to"):
        tiles.tile_hash_reader(size, root, flipped)(want)
