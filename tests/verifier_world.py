"""A consortium's logs published as static tile copies, and verifier services over them.

The market regulator's log holds the reference licence, a second licence and that
licence's revocation; every log is witnessed by the other two members and copied into
one directory laid out like a node's mirrors, as any web server or CDN could serve it.
No issuing node runs.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ledger.log.statement import Kind
from ledger.replica.fetch import mirror_prefix
from ledger.replica.store import ReplicaStore
from tests.fixtures.consortium import AMR, HEALTH, POLICY, PSB, T0
from tests.replica_fixtures import NOW, Net, licence, status
from verifier.service import ReplicaService
from verifier.verifier import Verifier, node_sources

#: A licence issued and then revoked by the market regulator.
REVOKED = licence("2024000777")
#: A licence that is in no log.
UNLOGGED = licence("2024000404")


class World:
    """The published logs under ``root``; ``public`` is the directory to sync from."""

    def __init__(self, root: Path, *, at: int = NOW - 60) -> None:
        from tests.fixtures.consortium import issue_reference

        self.root = root
        self.net = Net(root / "net")
        self.public = root / "public"
        self.net.append(AMR.id, [issue_reference().signed, REVOKED.signed])
        self.net.append(AMR.id, [status(AMR.id, REVOKED.cert_id, Kind.REVOKE, time=T0 + 86_000)])
        self.publish(at=at)

    def publish(self, *, at: int) -> None:
        """Checkpoint every log, witnessed at ``at``, and copy the tiles to ``public``."""
        for m in (AMR, HEALTH, PSB):
            self.net.publish(m.id, at=at)
            dest = self.public / mirror_prefix(m.origin)
            shutil.rmtree(dest, ignore_errors=True)
            self.net.copy_tiles(m.id, dest)

    def service(self, store: ReplicaStore, *, now: int = NOW, min_interval: float = 2.0) -> ReplicaService:
        """A service over ``store`` syncing from ``public``, its clock fixed at ``now``
        (so with the default ``min_interval`` no on-demand sync follows a scheduled one)."""
        sources = node_sources([str(self.public)])
        verifier = Verifier(
            policy=POLICY, store=store, sources=sources, clock=lambda: now, min_interval=min_interval
        )
        return ReplicaService(verifier=verifier, clock=lambda: now)

    def close(self) -> None:
        self.net.close()
