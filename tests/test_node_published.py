"""The node's published checkpoint (``node.db``): only the latest is kept, widened by
late cosignatures, never rolled back by a late smaller one."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from node.published import Published


def _rows(path: Path) -> list[tuple[int, bytes, int, int]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT size, note, cosigners, published_at FROM cosigned ORDER BY size"
        ).fetchall()
    finally:
        conn.close()


def test_only_the_latest_published_checkpoint_is_kept(tmp_path: Path) -> None:
    db = tmp_path / "node.db"
    p = Published(db)
    try:
        for size in range(1, 51):
            p.add(size=size, note=b"note %d" % size, cosigners=2, now=1000 + size)
        latest = p.latest()
        assert latest is not None and (latest.size, latest.note, latest.published_at) == (
            50,
            b"note 50",
            1050,
        )
    finally:
        p.close()
    assert _rows(db) == [(50, b"note 50", 2, 1050)]  # the history is the log store's, not copied here


def test_late_cosignatures_widen_the_latest_and_a_smaller_one_never_replaces_it(tmp_path: Path) -> None:
    db = tmp_path / "node.db"
    p = Published(db)
    try:
        p.add(size=10, note=b"ten, 2 cosigners", cosigners=2, now=100)
        p.add(size=10, note=b"ten, 3 cosigners", cosigners=3, now=105)  # a late cosignature
        p.add(size=10, note=b"ten, 1 cosigner", cosigners=1, now=106)  # fewer: ignored
        p.add(size=7, note=b"seven, 3 cosigners", cosigners=3, now=107)  # an older one arriving late
        latest = p.latest()
        assert latest is not None
        assert (latest.size, latest.note, latest.cosigners, latest.published_at) == (
            10,
            b"ten, 3 cosigners",
            3,
            100,
        )
    finally:
        p.close()
    assert [r[0] for r in _rows(db)] == [10]


def test_an_existing_history_is_trimmed_at_the_next_publication(tmp_path: Path) -> None:
    db = tmp_path / "node.db"
    p = Published(db)
    p.close()
    conn = sqlite3.connect(db)  # a node.db written by an earlier version, which kept every one
    conn.executemany(
        "INSERT INTO cosigned (size, note, cosigners, published_at) VALUES (?, ?, 2, ?)",
        [(n, b"old %d" % n, n) for n in range(1, 6)],
    )
    conn.commit()
    conn.close()
    p = Published(db)
    try:
        latest = p.latest()
        assert latest is not None and latest.size == 5
        p.add(size=6, note=b"six", cosigners=2, now=6)
    finally:
        p.close()
    assert [r[0] for r in _rows(db)] == [6]
