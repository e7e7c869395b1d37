"""Issuing in batches: claims in, credentials out, statements durably in the issuer's log.

:func:`issue_credentials` is what a department's issuing service calls: it checks and
signs every request as :func:`~ledger.credential.credential.issue_credential` does,
then appends all the statements to the department's log in one durable transaction
(:meth:`ledger.log.store.LogStore.append`). Either every request of the batch is
issued and logged, or none is: a request that fails validation raises before anything
is appended, naming the request.

Nothing is computed twice on the way: claim salts and digests are derived once, the
statement is encoded once and never parsed back, and the store does not verify again
a signature this process has just made with the same key.
"""

from __future__ import annotations

import time as _time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ledger.credential.credential import Credential, issue_credential
from ledger.errors import LedgerError, MalformedError, PolicyError
from ledger.keys import SigningKey
from ledger.log.statement import Reason
from ledger.log.store import LogStore
from ledger.trust.policy import CertificateType, Member

__all__ = ["IssueRequest", "IssuedCredential", "issue_credentials"]

#: Most requests one call takes (one SQLite transaction, a few MB of entries).
MAX_BATCH = 10_000


@dataclass(frozen=True, kw_only=True)
class IssueRequest:
    """One certificate to issue: its type, serial, claims and validity (see
    :func:`~ledger.credential.credential.issue_credential` for each field)."""

    cert_type: CertificateType
    serial: str
    claims: Mapping[str, Any] = field(repr=False)  # personal data: kept out of logs
    operator: str
    valid_from: int
    valid_until: int | None = None
    cert_version: str = "001"
    replaces: str | None = None
    reason: Reason | None = None
    salt_secret: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True, kw_only=True)
class IssuedCredential:
    """An issued credential and the index of its statement in the issuer's log."""

    credential: Credential
    index: int


def issue_credentials(
    requests: Sequence[IssueRequest],
    *,
    issuer: Member,
    key: SigningKey,
    store: LogStore,
    time: int | None = None,
) -> list[IssuedCredential]:
    """Issue every request and append their statements to ``store`` in one transaction.

    ``store`` must be ``issuer``'s log opened for writing, and ``key`` one of the
    issuer's log keys. Every statement gets the time ``time`` (default: now). Returns
    the credentials in request order, each with its log index, once the batch is
    durable. A request that does not validate raises the error of
    :func:`~ledger.credential.credential.issue_credential`, prefixed with its
    position, and nothing is appended.
    """
    if isinstance(requests, IssueRequest) or not isinstance(requests, Sequence):
        raise MalformedError("requests must be a sequence of IssueRequest")
    if len(requests) > MAX_BATCH:
        raise MalformedError(f"a batch holds at most {MAX_BATCH} requests, not {len(requests)}")
    if not isinstance(issuer, Member):
        raise PolicyError("issue_credentials needs the issuing Member")
    if store.origin != issuer.origin:
        raise PolicyError(
            f"the log store is the log of {store.origin!r}, not of {issuer.id} ({issuer.origin!r})"
        )
    at = int(_time.time()) if time is None else time
    credentials: list[Credential] = []
    for n, r in enumerate(requests):
        if not isinstance(r, IssueRequest):
            raise MalformedError(f"request {n} is a {type(r).__name__}, not an IssueRequest")
        try:
            credentials.append(
                issue_credential(
                    cert_type=r.cert_type,
                    issuer=issuer,
                    key=key,
                    serial=r.serial,
                    claims=r.claims,
                    operator=r.operator,
                    time=at,
                    valid_from=r.valid_from,
                    valid_until=r.valid_until,
                    cert_version=r.cert_version,
                    replaces=r.replaces,
                    reason=r.reason,
                    salt_secret=r.salt_secret,
                )
            )
        except PolicyError as e:  # its rule is what a caller maps to a verdict or a status
            raise PolicyError(f"request {n} (serial {r.serial}): {e}", rule=e.rule) from None
        except LedgerError as e:
            raise type(e)(f"request {n} (serial {r.serial}): {e}") from None
    if not credentials:
        return []
    indexes = store.append([c.signed for c in credentials], key=key)
    return [IssuedCredential(credential=c, index=i) for c, i in zip(credentials, indexes, strict=True)]
