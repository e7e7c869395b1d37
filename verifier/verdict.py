"""Verdicts: the one answer a verifier gives for a presented certificate.

A :class:`Verdict` carries one machine code (:class:`Code`), a reason in Chinese and
in English, what was disclosed, who issued it, the evidence from the log and the
"as of" time of the replica that was used. Its JSON form (:meth:`Verdict.to_json`) is
what the HTTP API returns and what the web page and the command line show.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["VERDICT_CLASS", "Claim", "Code", "Evidence", "Verdict"]


class Code(StrEnum):
    """Verdict codes, in DESIGN.md's order."""

    VALID = "VALID"
    REVOKED = "REVOKED"
    SUSPENDED = "SUSPENDED"
    REPLACED = "REPLACED"
    EXPIRED = "EXPIRED"
    NOT_YET_VALID = "NOT_YET_VALID"
    UNKNOWN_ISSUER = "UNKNOWN_ISSUER"
    NOT_AUTHORISED = "NOT_AUTHORISED"
    BAD_SIGNATURE = "BAD_SIGNATURE"
    CLAIM_MISMATCH = "CLAIM_MISMATCH"
    NOT_IN_LEDGER = "NOT_IN_LEDGER"
    STALE = "STALE"
    MALFORMED = "MALFORMED"


#: How a person should read a code: "valid" (green), "invalid" (red), "unsure" (amber).
VERDICT_CLASS: dict[Code, str] = {
    Code.VALID: "valid",
    Code.REVOKED: "invalid",
    Code.SUSPENDED: "invalid",
    Code.REPLACED: "invalid",
    Code.EXPIRED: "invalid",
    Code.NOT_YET_VALID: "invalid",
    Code.UNKNOWN_ISSUER: "invalid",
    Code.NOT_AUTHORISED: "invalid",
    Code.BAD_SIGNATURE: "invalid",
    Code.CLAIM_MISMATCH: "invalid",
    Code.NOT_IN_LEDGER: "unsure",
    Code.STALE: "unsure",
    Code.MALFORMED: "invalid",
}


@dataclass(frozen=True, kw_only=True)
class Claim:
    """One disclosed claim as shown to the person verifying."""

    name: str
    label: str
    value: str


@dataclass(frozen=True, kw_only=True)
class Evidence:
    """Where the certificate stands in its issuer's log."""

    origin: str
    entry_index: int
    checkpoint_size: int
    checkpoint_root: str  # hex
    witnessed_at: int  # Unix seconds of the newest cosignature counted
    cosigners: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """One verdict. ``as_of`` is the replica's newest witnessed time for the issuer (or
    ``None`` when no replica was consulted); ``checked_at`` is the verifier's clock."""

    code: Code
    reason_zh: str
    reason_en: str
    checked_at: int
    as_of: int | None = None
    issuer_id: str | None = None
    issuer_name: str | None = None
    cert_id: str | None = None
    cert_type: str | None = None
    cert_type_name: str | None = None
    valid_from: int | None = None
    valid_until: int | None = None
    claims: tuple[Claim, ...] = ()
    hidden: tuple[str, ...] = ()
    evidence: Evidence | None = None
    replaced_by: str | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def verdict_class(self) -> str:
        """``valid``, ``invalid`` or ``unsure``."""
        return VERDICT_CLASS[self.code]

    def to_json(self) -> dict[str, Any]:
        """The JSON form the API returns."""
        return {
            "code": self.code.value,
            "class": self.verdict_class,
            "reason": {"zh": self.reason_zh, "en": self.reason_en},
            "checked_at": self.checked_at,
            "as_of": self.as_of,
            "issuer": None if self.issuer_id is None else {"id": self.issuer_id, "name": self.issuer_name},
            "cert_id": self.cert_id,
            "cert_type": None
            if self.cert_type is None
            else {"code": self.cert_type, "name": self.cert_type_name},
            "valid_from": self.valid_from,
            "valid_until": self.valid_until,
            "claims": [{"name": c.name, "label": c.label, "value": c.value} for c in self.claims],
            "hidden": list(self.hidden),
            "evidence": None
            if self.evidence is None
            else {
                "origin": self.evidence.origin,
                "entry_index": self.evidence.entry_index,
                "checkpoint_size": self.evidence.checkpoint_size,
                "checkpoint_root": self.evidence.checkpoint_root,
                "witnessed_at": self.evidence.witnessed_at,
                "cosigners": list(self.evidence.cosigners),
            },
            "replaced_by": self.replaced_by,
            "warnings": list(self.warnings),
        }
