"""Rebuilding a lost or restored log from any copy of it (a mirror, or a static copy).

The copy is synced into a scratch replica with :class:`ledger.replica.sync.Replica`, so
everything is verified first (the witness quorum's cosignatures on its checkpoint, the
tiles up to the root, the hash chain, every statement's signature). The entries are
then appended again to a new log database with the node's key: each entry's bytes are
determined by its signed statement and the entry before it, so the rebuilt log must
have exactly the copy's root, which is checked. Finally the log key's memory of the
last checkpoint it signed must be satisfied: the rebuilt log must extend it. Only then
is the old database moved aside (kept, renamed) and the rebuilt one put in its place.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from ledger.errors import ConflictError, FileError, StorageError, VerificationError
from ledger.log.signer import LogSigner
from ledger.log.statement import Entry
from ledger.log.store import LogStore
from ledger.replica.store import ReplicaStore
from ledger.replica.sync import Replica
from node.config import NodeConfig
from node.mirror import source

__all__ = ["Recovered", "recover"]

_BATCH = 4096


@dataclass(frozen=True, kw_only=True)
class Recovered:
    """What a recovery did."""

    size: int
    source: str
    kept_old: Path | None


def recover(config: NodeConfig, where: str, *, client: httpx.Client | None = None) -> Recovered:
    """Rebuild ``config``'s log from the copy at ``where`` (a URL or a directory).

    The node must be stopped (its log is opened for writing first: ``node-running``
    otherwise). The log is rebuilt beside the old one and checked (root, the log key's
    memory) before anything is renamed: a refused copy changes nothing."""
    d = config.data_dir
    log_db = d / "log.db"
    old: LogStore | None = None
    if log_db.exists():
        try:
            old = LogStore.open(log_db)  # the writer lock: refused while the node runs
        except StorageError as e:
            if "already open for writing" in str(e):
                raise StorageError(f"the node is running; stop it first (rule: node-running): {e}") from None
            old = None  # a damaged log is what recovery is for
    try:
        return _rebuild(config, where, client, old)
    finally:
        if old is not None:
            old.close()


def _rebuild(config: NodeConfig, where: str, client: httpx.Client | None, old: LogStore | None) -> Recovered:
    d = config.data_dir
    policy = config.policy.policy
    origin = config.member.origin
    scratch, rebuilt, log_db = d / "recover.db", d / "log.db.recovering", d / "log.db"
    _remove(scratch, rebuilt)
    http = client or httpx.Client(timeout=30.0, follow_redirects=False)
    try:
        with ReplicaStore.open(scratch) as copy:
            replica = Replica(store=copy, policy=policy, member_id=config.member_id, clock=config.clock)
            result = replica.sync([source(where, http)])
            if not result.ok or result.checkpoint is None:
                why = "; ".join(result.refused) or "no verified checkpoint"
                raise VerificationError(f"the copy at {where} does not verify: {why}")
            cp = result.checkpoint
            entries = copy.entries(origin, 0, cp.size)
        with LogStore.create(rebuilt, origin=origin) as store:
            for start in range(0, len(entries), _BATCH):
                batch = [Entry.from_bytes(e).signed for e in entries[start : start + _BATCH]]
                store.append(batch, key=config.log_key)
            for i in range(0, len(entries), max(1, len(entries) // 64)):
                if store.entry(i) != entries[i]:
                    raise StorageError(f"rebuilt entry {i} differs from the copy's")
            if store.root() != cp.root_hash:
                raise StorageError("the rebuilt log's root differs from the copy's verified checkpoint")
            try:
                store.check_signer(LogSigner.beside(d / "log.key", key=config.log_key))
            except ConflictError as e:
                raise ConflictError(
                    f"the copy at {where} ({cp.size} entries) does not extend the last checkpoint the "
                    f"log key signed: {e}; recover from an up-to-date copy of this log"
                ) from None
        # Checked: only now is the old log moved aside and the rebuilt one put in place.
        if old is not None:
            old.close()
        kept = None
        if log_db.exists():
            kept = d / f"log.db.before-recovery-{int(time.time())}"
            _move(log_db, kept)
        _move(rebuilt, log_db)
        return Recovered(size=cp.size, source=result.source or where, kept_old=kept)
    finally:
        if client is None:
            http.close()
        _remove(scratch, rebuilt)


def _move(src: Path, dst: Path) -> None:
    """Rename a database and its WAL files."""
    try:
        os.replace(src, dst)
        for suffix in ("-wal", "-shm"):
            side = Path(f"{src}{suffix}")
            if side.exists():
                os.replace(side, Path(f"{dst}{suffix}"))
    except OSError as e:
        raise FileError(f"{src}: cannot move it to {dst}: {e.strerror}") from None


def _remove(*paths: Path) -> None:
    """Remove databases with their WAL files and writer's note (``-lock``)."""
    try:
        for p in paths:
            for q in (p, Path(f"{p}-wal"), Path(f"{p}-shm"), Path(f"{p}-lock")):
                q.unlink(missing_ok=True)
    except OSError as e:
        raise FileError(f"{e.filename}: cannot remove it: {e.strerror}") from None
