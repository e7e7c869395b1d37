"""The checks a replica and a verifier share: opening a witnessed checkpoint of a member's
log, and judging whether one logged statement is to be trusted.
"""

from __future__ import annotations

from ledger.clock import CLOCK_SKEW
from ledger.errors import LedgerError, MalformedError, PolicyError, SignatureError
from ledger.log import note
from ledger.log.checkpoint import DEFAULT_MAX_SIZE, open_checkpoint
from ledger.log.statement import Kind, SignedStatement, StatementFields
from ledger.replica.store import WitnessedCheckpoint
from ledger.trust.policy import MAX_TIME, LogKey, Member, Policy

__all__ = ["EntryJudge", "entry_problem", "open_witnessed"]


def open_witnessed(data: bytes, *, policy: Policy, member: Member, now: int) -> WitnessedCheckpoint:
    """Verify a checkpoint of ``member``'s log: signed by one of its log keys, with the
    policy's quorum of other members' witness cosignatures.

    ``witnessed_at`` is when the quorum was reached (the quorum-th earliest counted
    cosignature); ``newest_at`` the newest time a quorum attests (the quorum-th newest
    counted cosignature, so one witness with a fast clock cannot move it); with a
    quorum of 0, the earliest and newest cosignature, or ``now`` when there is none.
    Raises SignatureError, PolicyError (``witness-quorum``) or MalformedError.
    """
    parsed = note.parse(data, max_size=DEFAULT_MAX_SIZE)
    signers = {(s.name, s.key_id) for s in parsed.signatures}
    log_keys = [member.log_verifier_key(k) for k in member.log_keys]
    chosen = [k for k in log_keys if (k.name, k.key_id) in signers]
    if not chosen:
        raise SignatureError(f"checkpoint of {member.id} is not signed by any of its log keys")
    witnesses = policy.witness_keys(member.id)
    by_name = {k.name: mid for mid, k in witnesses.items()}
    last: LedgerError | None = None
    for log_key in chosen:
        try:
            opened = open_checkpoint(data, log_key=log_key, witnesses=list(witnesses.values()))
        except SignatureError as e:
            last = e
            continue
        times = {by_name[name]: t for name, t in opened.cosignatures.items() if name in by_name}
        policy.check_quorum(member.id, times)
        ordered = sorted(times.values())
        q = policy.witness_quorum
        witnessed_at = ordered[q - 1] if q >= 1 else (ordered[0] if ordered else now)
        cp = opened.checkpoint
        return WitnessedCheckpoint(
            origin=cp.origin,
            member_id=member.id,
            size=cp.size,
            root_hash=cp.root_hash,
            note=bytes(data),
            witnessed_at=witnessed_at,
            newest_at=ordered[-q] if q >= 1 else (ordered[-1] if ordered else now),
            cosigners=tuple(sorted(times)),
        )
    assert last is not None
    raise last


def entry_problem(
    policy: Policy, member: Member, signed: SignedStatement, *, witnessed_at: int | None
) -> str | None:
    """Why a statement in ``member``'s log is not to be trusted, or None.

    The statement must name the log's member as its maker; its key must be one of the
    member's log keys valid at the statement's time and, if marked compromised, the
    entry must have been witnessed before that; the member must hold the mandate for
    the statement's kind (issue and replace: issue; revoke, suspend, reinstate:
    revoke) at the statement's time. The signature itself is the caller's check. Returns ``"<rule>: <why>"``.
    """
    st = signed.statement
    if st.issuer != member.id:
        return f"impersonation: a statement in {member.id}'s log names {st.issuer} as its maker"
    try:
        policy.log_key(member.id, signed.key_id, at=st.time, witnessed_at=witnessed_at)
        policy.check_statement_mandate(st)
    except PolicyError as e:
        return str(e)
    except MalformedError as e:
        return f"malformed: {e}"
    return None


_ISSUING = frozenset({int(Kind.ISSUE), int(Kind.REPLACE)})
#: A key's compromise time and the statement times it is trusted in.
_Windows = tuple[int | None, tuple[tuple[int, int], ...]]
_KINDS = _ISSUING | {int(Kind.REVOKE), int(Kind.SUSPEND), int(Kind.REINSTATE)}


class EntryJudge:
    """:func:`entry_problem` for the statements of one member's log under one policy,
    answering the usual case from tables built once: the member's log keys by key ID
    and its mandates per certificate type and action.

    A statement these tables show to be trusted (its maker is the member, its key is
    one of the member's, not compromised, valid at the statement's time, which is not
    after its witnessing plus the clock skew, and a mandate of the member covers that
    time) has no problem; for any other, :func:`entry_problem` decides and names it.
    """

    def __init__(self, *, policy: Policy, member: Member) -> None:
        self.policy = policy
        self.member = member
        keys: dict[bytes, LogKey] = {}
        for k in member.log_keys:  # the first key with an ID, as Policy.log_key picks
            keys.setdefault(member.log_key_id(k), k)
        self._keys = keys
        self._windows: dict[tuple[bytes, str, int], _Windows] = {}

    def _trusted_windows(self, key_id: bytes, cert_type: str, kind: int) -> _Windows:
        """When the key was compromised (None: never), and the statement times ``[lo,
        hi)`` for which this key, type and kind pass the key-validity and mandate rules
        (none for an unknown key, type or kind, or without a mandate)."""
        k = self._keys.get(key_id)
        t = self.policy.certificate_type(cert_type)
        if k is None or t is None or kind not in _KINDS:
            return None, ()
        key_lo, key_hi = k.valid_from, MAX_TIME + 1 if k.valid_until is None else k.valid_until
        out = []
        for m in t.mandates("issue" if kind in _ISSUING else "revoke"):
            if m.member == self.member.id:
                lo = max(key_lo, 0 if m.valid_from is None else m.valid_from)
                hi = min(key_hi, MAX_TIME + 1 if m.valid_until is None else m.valid_until)
                if lo < hi:
                    out.append((lo, hi))
        return k.compromised_at, tuple(out)

    def trusted(self, fields: StatementFields, key_id: bytes, *, witnessed_at: int | None) -> bool:
        """True when the tables show the statement has no problem (False: ask
        :func:`entry_problem`, which may still find none)."""
        found = self._windows.get((key_id, fields.cert_type, fields.kind))
        if found is None:
            found = self._windows[key_id, fields.cert_type, fields.kind] = self._trusted_windows(
                key_id, fields.cert_type, fields.kind
            )
        compromised_at, windows = found
        at = fields.time
        if fields.issuer != self.member.id or type(at) is not int:
            return False
        if witnessed_at is None:
            if compromised_at is not None:
                return False
        elif not (
            type(witnessed_at) is int
            and 0 <= witnessed_at <= MAX_TIME
            and at <= witnessed_at + CLOCK_SKEW
            and (compromised_at is None or witnessed_at < compromised_at)
        ):
            return False
        return any(lo <= at < hi for lo, hi in windows)
