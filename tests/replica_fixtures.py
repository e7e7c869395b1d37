"""A live consortium for replica and verifier tests: each member's real log (LogStore),
checkpoints cosigned by the other members' witness keys, and the log published as
C2SP tiles to a directory, as a static copy on any web server would be."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterable
from pathlib import Path

from ledger.credential.credential import Credential, issue_credential
from ledger.keys import SigningKey
from ledger.log.checkpoint import CosignatureSigner, cosign
from ledger.log.statement import Kind, Reason, SignedStatement, Statement
from ledger.log.store import LogStore
from ledger.replica import tiles
from ledger.replica.fetch import DirectoryFetcher
from ledger.replica.store import ReplicaStore
from ledger.replica.sync import Replica, SyncResult
from ledger.trust.policy import Policy, mandates
from tests.fixtures.consortium import (
    AMR,
    AMR_KEY,
    BUSINESS_LICENCE,
    HEALTH,
    HEALTH_KEY,
    POLICY,
    PSB,
    PSB_KEY,
    T0,
    issue_reference,
    key,
)

#: The verifier's clock in these tests: a day after the reference licence was issued.
NOW = T0 + 86_400
LOG_KEYS: dict[str, SigningKey] = {AMR.id: AMR_KEY, HEALTH.id: HEALTH_KEY, PSB.id: PSB_KEY}
WITNESS_KEYS: dict[str, SigningKey] = {AMR.id: key(51), HEALTH.id: key(52), PSB.id: key(53)}


def write_tiles(store: LogStore, directory: Path, note: bytes) -> None:
    """Publish ``store`` at the size of ``note`` as tlog-tiles files under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    size = store.size
    for t in tiles.tiles_for_size(size):
        if t.is_entries:
            first = t.index * tiles.TILE_WIDTH
            data = tiles.encode_bundle(list(store.entries(first, first + t.width)))
        else:
            data = tiles.tile_from_hashes(t, store.read_hashes)
        path = directory / t.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (directory / "checkpoint").write_bytes(note)


class Net:
    """Three departments' logs, published under ``root/<member id>/`` after each checkpoint."""

    def __init__(self, root: Path, *, policy: Policy = POLICY) -> None:
        self.root = root
        self.policy = policy
        (root / "logs").mkdir(parents=True)
        self.stores = {
            m.id: LogStore.create(root / "logs" / f"{m.id}.db", origin=m.origin) for m in (AMR, HEALTH, PSB)
        }
        self.notes: dict[str, bytes] = {}

    def close(self) -> None:
        for s in self.stores.values():
            s.close()

    def tiles_dir(self, member_id: str) -> Path:
        return self.root / "tiles" / member_id

    def source(self, member_id: str) -> DirectoryFetcher:
        return DirectoryFetcher(root=self.tiles_dir(member_id))

    def append(self, member_id: str, items: Iterable[Statement | SignedStatement]) -> list[int]:
        return self.stores[member_id].append(list(items), key=LOG_KEYS[member_id])

    def publish(self, member_id: str, *, at: int = NOW - 60, witnesses: int | None = None) -> bytes:
        """Sign a checkpoint, have the other members' witnesses cosign it at ``at``, write tiles."""
        store = self.stores[member_id]
        note = store.checkpoint(LOG_KEYS[member_id])
        others = [w for w in sorted(WITNESS_KEYS) if w != member_id]
        for wid in others[:witnesses]:
            name = self.policy.require_member(wid).witness_key.name
            note = cosign(note, CosignatureSigner(name=name, key=WITNESS_KEYS[wid]), timestamp=at)
        self.notes[member_id] = note
        write_tiles(store, self.tiles_dir(member_id), note)
        return note

    def copy_tiles(self, member_id: str, dest: Path) -> Path:
        shutil.copytree(self.tiles_dir(member_id), dest)
        return dest


def replica(path: Path, policy: Policy = POLICY) -> ReplicaStore:
    return ReplicaStore.open(path)


def sync(store: ReplicaStore, net: Net, member_id: str, *, policy: Policy | None = None) -> SyncResult:
    r = Replica(store=store, policy=policy or net.policy, member_id=member_id, clock=lambda: NOW)
    return r.sync([net.source(member_id)])


def status(
    member_id: str, cert_id: str, kind: Kind, *, time: int, cert_type: str = BUSINESS_LICENCE.code
) -> Statement:
    """A revoke, suspend or reinstate statement made by ``member_id``."""
    return Statement(
        kind=kind,
        issuer=member_id,
        cert_id=cert_id,
        cert_type=cert_type,
        time=time,
        operator="op:status",
        reason=Reason.ADMINISTRATIVE_PENALTY if kind != Kind.REINSTATE else Reason.RESOLVED,
    )


def licence(
    serial: str,
    *,
    time: int = T0 + 3600,
    replaces: str | None = None,
    issuer_key: SigningKey = AMR_KEY,
    valid_from: int = T0,
    valid_until: int | None = None,
) -> Credential:
    """Another business licence by the market regulator (same claims as the reference one)."""
    ref = issue_reference()
    return issue_credential(
        cert_type=BUSINESS_LICENCE,
        issuer=AMR,
        key=issuer_key,
        serial=serial,
        claims=dict(ref.claims),
        operator="op:7f3a9c",
        time=time,
        valid_from=valid_from,
        valid_until=valid_until,
        replaces=replaces,
        reason=Reason.INFORMATION_CHANGED if replaces else None,
        salt_secret=bytes(range(16)),
    )


def outside_mandate() -> Credential:
    """A business licence correctly signed by the public security bureau, which may not issue one."""
    ref = issue_reference()
    widened = dataclasses.replace(BUSINESS_LICENCE, issuers=mandates(AMR.id, PSB.id))
    return issue_credential(
        cert_type=widened,
        issuer=PSB,
        key=PSB_KEY,
        serial="900001",
        claims=dict(ref.claims),
        operator="psb:op-1",
        time=T0 + 7200,
        valid_from=T0,
        salt_secret=bytes(range(16)),
    )
