"""A verification service over the trust policy alone, for the HTTP layer's tests.

It runs the offline steps 1 to 7 (parse, policy, issuer and key, mandate, signature,
claims, validity window) with :func:`check_presentation` and maps each refusal to its
verdict code. It has no replica, so a certificate that passes every offline check is
NOT_IN_LEDGER, never VALID.
"""

from __future__ import annotations

import time
from typing import Any

from ledger.credential.presentation import Validity, check_presentation
from ledger.errors import (
    ClaimMismatchError,
    LedgerError,
    MalformedError,
    PolicyError,
    SchemaError,
    SignatureError,
)
from ledger.trust.policy import Policy
from verifier.verdict import Claim, Code, Verdict

_VALIDITY = {
    Validity.EXPIRED: (Code.EXPIRED, "证照已过期", "the certificate has expired"),
    Validity.NOT_YET_VALID: (Code.NOT_YET_VALID, "证照尚未生效", "the certificate is not yet valid"),
}


def _code_of(error: LedgerError) -> Code:
    message = str(error)
    if isinstance(error, PolicyError):
        if message.startswith("unknown issuer"):
            return Code.UNKNOWN_ISSUER
        if message.startswith("not authorised"):
            return Code.NOT_AUTHORISED
        if "expired" in message:
            return Code.STALE
        return Code.BAD_SIGNATURE
    if isinstance(error, SignatureError):
        return Code.BAD_SIGNATURE
    if isinstance(error, ClaimMismatchError | SchemaError):
        return Code.CLAIM_MISMATCH
    if isinstance(error, MalformedError):
        return Code.MALFORMED
    return Code.MALFORMED


class PolicyOnlyService:
    """Offline checks against ``policy`` at the clock ``now()``; counts for ``stats``."""

    def __init__(self, *, policy: Policy, now: Any = None) -> None:
        self.policy = policy
        self.now = now or (lambda: int(time.time()))
        self.calls = 0

    def verify_text(self, text: str) -> Verdict:
        self.calls += 1
        now = self.now()
        try:
            checked = check_presentation(text, policy=self.policy, now=now)
        except LedgerError as e:
            return Verdict(code=_code_of(e), reason_zh="证照未通过离线核验", reason_en=str(e), checked_at=now)
        code, zh, en = _VALIDITY.get(
            checked.validity,
            (
                Code.NOT_IN_LEDGER,
                "签名有效，但未查询账本",
                "signature valid; no ledger replica was consulted",
            ),
        )
        ctype = checked.certificate_type
        return Verdict(
            code=code,
            reason_zh=zh,
            reason_en=en,
            checked_at=now,
            issuer_id=checked.issuer.id,
            issuer_name=checked.issuer.name,
            cert_id=checked.cert_id,
            cert_type=ctype.code,
            cert_type_name=ctype.name,
            valid_from=checked.valid_from,
            valid_until=checked.valid_until,
            claims=tuple(Claim(name=c.name, label=c.label, value=c.text) for c in checked.claims),
            hidden=checked.hidden,
        )

    def status(self) -> dict[str, Any]:
        return {
            "checked_at": self.now(),
            "policy": {"version": self.policy.version, "expires": self.policy.expires},
            "members": [
                {
                    "id": m.id,
                    "name": m.name,
                    "origin": m.origin,
                    "log_size": None,
                    "witnessed_size": None,
                    "witnessed_at": None,
                    "age_seconds": None,
                    "fresh": False,
                    "last_sync": None,
                    "error": "no replica",
                }
                for m in self.policy.members
            ],
            "alerts": [],
        }

    def stats(self) -> dict[str, Any]:
        return {
            "days": ["2024-06-01", "2024-06-02"],
            "members": [
                {"id": m.id, "name": m.name, "issued": [i + 1, i + 2], "revoked": [0, i]}
                for i, m in enumerate(self.policy.members)
            ],
        }
