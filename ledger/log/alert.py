"""Fork evidence: two checkpoints of one log that cannot both be honest.

A node that meets a checkpoint contradicting one it cosigned or mirrored keeps both
signed notes and a proof, as an *alert* (JSON)::

    {"format": "certledger/alert/v1", "kind": "same-size" | "inconsistent",
     "origin": "<log origin>", "observed_by": "<member id>", "observed_at": <unix s>,
     "earlier": "<base64 signed note>", "later": "<base64 signed note>",
     "proof": ["<base64 hash>", ...]}

``earlier`` is the smaller checkpoint, ``later`` the larger. ``same-size``: both are
signed by the log, for one tree size, with different roots. ``inconsistent``: both are
signed by the log, ``later`` is larger, and ``proof`` (:func:`ledger.log.merkle.prove_fork`,
out of the later tree) hashes up to ``later``'s root while giving another hash than
``earlier``'s root for its first ``earlier.size`` records. Both kinds are conclusive.
A consistency proof that merely fails is not evidence: anyone can send one.

:func:`check_alert` verifies a bundle offline with nothing but the trust policy.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from ledger.errors import MalformedError, PolicyError, ProofError, VerificationError
from ledger.files import loads_json
from ledger.log import merkle, note
from ledger.log.checkpoint import DEFAULT_MAX_SIZE, Checkpoint
from ledger.trust.policy import Policy

__all__ = ["FORMAT", "KINDS", "MAX_ALERT_SIZE", "Alert", "check_alert", "encode_alert", "parse_alert"]

FORMAT = "certledger/alert/v1"
KINDS = frozenset({"same-size", "inconsistent"})
MAX_ALERT_SIZE = 4 * DEFAULT_MAX_SIZE
_FIELDS = {"format", "kind", "origin", "observed_by", "observed_at", "earlier", "later", "proof"}


@dataclass(frozen=True, kw_only=True)
class Alert:
    """A fork alert (not yet verified: see :func:`check_alert`)."""

    kind: str
    origin: str
    observed_by: str
    observed_at: int
    earlier: bytes
    later: bytes
    proof: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise MalformedError(f"alert: unknown kind {self.kind!r}")
        if len(self.proof) > 64:
            raise MalformedError("alert: proof is longer than 64 hashes")


def _b64(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise MalformedError(f"alert: {what} must be base64 text")
    return note.decode_base64(value, what=f"alert {what}")


def encode_alert(alert: Alert) -> bytes:
    """The alert as compact JSON (keys sorted)."""
    doc: dict[str, Any] = {
        "format": FORMAT,
        "kind": alert.kind,
        "origin": alert.origin,
        "observed_by": alert.observed_by,
        "observed_at": alert.observed_at,
        "earlier": base64.b64encode(alert.earlier).decode("ascii"),
        "later": base64.b64encode(alert.later).decode("ascii"),
        "proof": [base64.b64encode(h).decode("ascii") for h in alert.proof],
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")


def parse_alert(data: bytes) -> Alert:
    """Parse an alert strictly (size-capped; exact fields)."""
    doc = loads_json(data, what="alert", max_size=MAX_ALERT_SIZE, max_depth=2)
    if not isinstance(doc, dict) or set(doc) != _FIELDS:
        raise MalformedError(f"alert: must be an object with exactly the fields {', '.join(sorted(_FIELDS))}")
    if doc["format"] != FORMAT:
        raise MalformedError(f"alert: unknown format {doc['format']!r}")
    for name in ("kind", "origin", "observed_by"):
        if not isinstance(doc[name], str):
            raise MalformedError(f"alert: {name} must be text")
    if type(doc["observed_at"]) is not int or doc["observed_at"] < 0:
        raise MalformedError("alert: observed_at must be a non-negative integer")
    if not isinstance(doc["proof"], list):
        raise MalformedError("alert: proof must be a list")
    return Alert(
        kind=doc["kind"],
        origin=doc["origin"],
        observed_by=doc["observed_by"],
        observed_at=doc["observed_at"],
        earlier=_b64(doc["earlier"], "earlier"),
        later=_b64(doc["later"], "later"),
        proof=tuple(_b64(h, "proof hash") for h in doc["proof"]),
    )


def _open(data: bytes, policy: Policy, origin: str, what: str) -> Checkpoint:
    member = policy.member_by_origin(origin)
    if member is None:
        raise PolicyError(f"alert: origin {origin!r} is not a member's log", rule="unknown-member")
    verifiers = [note.Ed25519Verifier(key=member.log_verifier_key(k)) for k in member.log_keys]
    opened = note.open(data, verifiers, max_size=DEFAULT_MAX_SIZE)
    cp = Checkpoint.parse(opened.text)
    if cp.origin != origin:
        raise MalformedError(f"alert: the {what} checkpoint is for {cp.origin!r}, not {origin!r}")
    return cp


def check_alert(data: bytes | Alert, policy: Policy) -> Alert:
    """Verify that an alert proves its log signed two contradicting checkpoints.

    Both notes must be signed by one of the log's keys in ``policy``. Returns the alert;
    raises :class:`~ledger.errors.VerificationError` (a :class:`SignatureError` for a
    signature) if it proves nothing.
    """
    alert = data if isinstance(data, Alert) else parse_alert(data)
    earlier = _open(alert.earlier, policy, alert.origin, "earlier")
    later = _open(alert.later, policy, alert.origin, "later")
    if alert.kind == "same-size":
        if earlier.size != later.size or earlier.root_hash == later.root_hash:
            raise VerificationError("alert: not a fork: the checkpoints are not one size with two roots")
        return alert
    if later.size <= earlier.size:
        raise VerificationError("alert: an inconsistency needs the later checkpoint to be larger")
    if earlier.size == 0:
        raise VerificationError("alert: the empty tree is consistent with every tree")
    try:
        merkle.check_fork(alert.proof, later.size, later.root_hash, earlier.size, earlier.root_hash)
    except ProofError as e:
        raise VerificationError(f"alert: not a fork: {e}") from None
    return alert
