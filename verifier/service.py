"""What the HTTP service needs from a verifier, and verdicts the service itself gives.

The web layer (:mod:`verifier.app`) depends only on :class:`VerificationService`, so it
runs over any implementation: the replica-backed verifier in production, a smaller one
in tests. ``status()`` and ``stats()`` return plain JSON-ready dicts whose shapes are
documented on the protocol and in the OpenAPI schema.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from verifier.verdict import Code, Verdict

__all__ = ["VerificationService", "malformed"]


class VerificationService(Protocol):
    """A verifier as the HTTP service sees it.

    ``verify_text`` never raises for bad input: every text ends in a :class:`Verdict`.

    ``status()`` returns ``{"checked_at": int, "policy": {"version": int, "expires":
    int} | None, "members": [member], "alerts": [alert]}`` where a member is ``{"id",
    "name", "origin", "log_size", "witnessed_size", "witnessed_at", "age_seconds",
    "fresh", "last_sync", "error"}`` (sizes and times may be None before the first
    sync) and an alert is ``{"member", "kind", "message", "at"}``.

    ``stats()`` returns ``{"days": ["YYYY-MM-DD", ...], "members": [{"id", "name",
    "issued": [int, ...], "revoked": [int, ...]}]}``: counts per day, one per entry of
    ``days``, from the public logs.
    """

    def verify_text(self, text: str) -> Verdict:
        """The verdict for one presented QR text."""
        ...

    def status(self) -> dict[str, Any]:
        """Replica freshness per member and alerts."""
        ...

    def stats(self) -> dict[str, Any]:
        """Certificates issued and revoked per day per member."""
        ...


def malformed(reason_zh: str, reason_en: str, *, warnings: tuple[str, ...] = ()) -> Verdict:
    """A MALFORMED verdict given before any certificate could be read."""
    return Verdict(
        code=Code.MALFORMED,
        reason_zh=reason_zh,
        reason_en=reason_en,
        checked_at=int(time.time()),
        warnings=warnings,
    )
