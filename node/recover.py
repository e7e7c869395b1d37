"""Rebuilding a lost or restored log from any copy of it (a mirror, or a static copy).

The copy is synced into a scratch replica with :class:`ledger.replica.sync.Replica`, so
everything is verified first (the witness quorum's cosignatures on its checkpoint, the
tiles up to the root, the hash chain, every statement's signature). The entries are
then appended again to a new log database with the node's key: each entry's bytes are
determined by its signed statement and the entry before it, so the rebuilt log must
have exactly the copy's root, which is checked. Finally the log key's memory of the
last checkpoint it signed must be satisfied: the rebuilt log must extend it. The old
database is kept beside the new one, renamed.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from ledger.errors import ConflictError, StorageError, VerificationError
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
    """Rebuild ``config``'s log from the copy at ``where`` (a URL or a directory)."""
    d = config.data_dir
    policy = config.policy.policy
    origin = config.member.origin
    scratch = d / "recover.db"
    for p in (scratch, Path(f"{scratch}-wal"), Path(f"{scratch}-shm")):
        p.unlink(missing_ok=True)
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
        log_db = d / "log.db"
        kept = None
        if log_db.exists():
            kept = d / f"log.db.before-recovery-{int(time.time())}"
            os.replace(log_db, kept)
            for suffix in ("-wal", "-shm"):
                side = Path(f"{log_db}{suffix}")
                if side.exists():
                    os.replace(side, Path(f"{kept}{suffix}"))
        with LogStore.create(log_db, origin=origin) as store:
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
                    f"the copy at {where} has {cp.size} entries, but the log key signed a later "
                    f"checkpoint: {e}; recover from a copy that is up to date"
                ) from None
        return Recovered(size=cp.size, source=result.source or where, kept_old=kept)
    finally:
        if client is None:
            http.close()
        for p in (scratch, Path(f"{scratch}-wal"), Path(f"{scratch}-shm")):
            p.unlink(missing_ok=True)
