"""The verification core: a presented certificate, the trust policy, a replica and a clock
in; one :class:`~verifier.verdict.Verdict` out. No network, no writes.

:func:`verify` runs the steps of "Verifying a presented certificate" in order, each
numbered below, and stops at the first that decides the verdict:

1. parse the ``CL1:`` text strictly (MALFORMED for anything else, including text
   that is not a certledger code at all);
2. the trust policy is current (an expired policy never yields VALID: STALE);
3. the issuer is a member and the key one of its keys, valid at the statement's time
   (UNKNOWN_ISSUER, BAD_SIGNATURE) and, if marked compromised, its entry was first
   witnessed before the compromise (BAD_SIGNATURE); a statement dated after its entry
   was first witnessed gives a time that cannot be trusted (NOT_AUTHORISED);
4. the issuer holds the mandate for the type (NOT_AUTHORISED);
5. the statement signature (BAD_SIGNATURE);
6. disclosed claims match their digests and the purpose's claims are disclosed
   (CLAIM_MISMATCH);
7. the validity window against the clock, with a skew allowance (EXPIRED,
   NOT_YET_VALID);
8. the entry is in the issuer's log copy, proven included in its newest witnessed
   checkpoint, which is re-verified here (NOT_IN_LEDGER; an issuer whose log forked
   is refused with the fork alert: STALE);
9. status from every member's log: a revoke or suspend counts only when made, in a
   witnessed entry, by a member allowed to revoke the type at the statement's time;
   a reinstate lifts a suspension; a replace by a member allowed to issue both the
   old and the new type supersedes (REVOKED, SUSPENDED, REPLACED);
10. freshness of the issuer's and every revoker's log copy (STALE, saying how old; a
    revoker whose log forked is STALE too, as a revocation could be hidden); the
    verdict's "as of" is the oldest of those copies;
11. VALID.

The clock: the newest witnessed time in the replica is a floor on ``now``. A clock
more than the skew allowance behind it is not trusted for the validity window; the
verdict carries a plain warning instead of a wrong NOT_YET_VALID.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ledger.clock import CLOCK_SKEW
from ledger.credential.presentation import (
    DEFAULT_CLOCK_SKEW,
    CheckedPresentation,
    Presentation,
    Validity,
    verify_presentation,
)
from ledger.errors import (
    ClaimMismatchError,
    LedgerError,
    MalformedError,
    PolicyError,
    ProofError,
    SchemaError,
    SignatureError,
)
from ledger.log import merkle
from ledger.log.statement import Kind, encode_entry, statement_message
from ledger.replica.checks import open_witnessed
from ledger.replica.store import LoggedEntry, Lookup, ReplicaState, ReplicaView, WitnessedCheckpoint
from ledger.trust.policy import CertificateType, Member, Policy, format_time
from verifier.verdict import Claim, Code, Evidence, Verdict

__all__ = ["verify"]

_T = TypeVar("_T")

_UNKNOWN_ISSUER_RULES = frozenset({"unknown-member", "unknown-key"})
_BAD_KEY_RULES = frozenset({"key-validity", "key-compromised"})
_NOT_AUTHORISED_RULES = frozenset({"mandate", "mandate-validity", "unknown-type", "max-validity"})


def _age(seconds: int) -> tuple[str, str]:
    """A duration for people, in Chinese and English."""
    s = max(seconds, 0)
    if s < 120:
        return f"{s} 秒", f"{s} s"
    if s < 7200:
        return f"{s // 60} 分钟", f"{s // 60} min"
    if s < 2 * 86400:
        return f"{s // 3600} 小时", f"{s // 3600} h"
    return f"{s // 86400} 天", f"{s // 86400} days"


class _CheckpointCache:
    """Witnessed checkpoints already verified under a policy (a verifier re-verifies the
    same few notes for every certificate)."""

    _MAX = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[tuple[int, str, bytes], tuple[Policy, WitnessedCheckpoint]] = {}

    def open(self, note: bytes, *, policy: Policy, member: Member, now: int) -> WitnessedCheckpoint:
        key = (id(policy), member.id, note)
        with self._lock:
            hit = self._items.get(key)
        if hit is not None and hit[0] is policy:
            return hit[1]
        cp = open_witnessed(note, policy=policy, member=member, now=now)
        with self._lock:
            if len(self._items) >= self._MAX:
                self._items.clear()
            self._items[key] = (policy, cp)
        return cp


_CACHE = _CheckpointCache()


class _Trees:
    """Merkle trees of witnessed checkpoints, with the nodes proven so far
    (:class:`ledger.log.merkle.VerifiedTree`), by origin, size and root hash."""

    _MAX = 64

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[tuple[str, int, bytes], merkle.VerifiedTree] = {}

    def get(self, cp: WitnessedCheckpoint) -> merkle.VerifiedTree:
        key = (cp.origin, cp.size, cp.root_hash)
        tree = self._items.get(key)
        if tree is not None:
            return tree
        with self._lock:
            tree = self._items.get(key)
            if tree is None:
                if len(self._items) >= self._MAX:
                    self._items.clear()
                tree = self._items[key] = merkle.VerifiedTree(size=cp.size, root=cp.root_hash)
            return tree


_TREES = _Trees()


class _Run:
    """One verification: the clock, the warnings, and what is known so far."""

    def __init__(self, *, now: int, policy: Policy, view: ReplicaView, state: ReplicaState) -> None:
        self.checked_at = now
        self.policy = policy
        self.view = view
        self.state = state
        self.current: bool | None = None  # whether ``state`` was current when the entry was read
        self.warnings: list[str] = []
        self.as_of: int | None = None
        self.checked: CheckedPresentation | None = None
        self.evidence: Evidence | None = None
        floor = state.newest_witnessed_time
        self.now = now
        if floor is not None and floor > now + CLOCK_SKEW:  # within the skew: a correct clock
            self.now = floor
            self.warnings.append(
                f"本机时钟比账本中最新的见证时间慢 {_age(floor - now)[0]}，"
                f"已按 {format_time(floor)} 核验；请校准时钟 / this device's clock is "
                f"{_age(floor - now)[1]} behind the newest witnessed time in the replica; "
                f"checked as of {format_time(floor)}; set the clock"
            )

    def verdict(self, code: Code, zh: str, en: str, *, replaced_by: str | None = None) -> Verdict:
        c = self.checked
        if c is None:
            return Verdict(
                code=code,
                reason_zh=zh,
                reason_en=en,
                checked_at=self.checked_at,
                as_of=self.as_of,
                warnings=tuple(self.warnings),
            )
        ctype = c.certificate_type
        return _made(
            Verdict,
            code=code,
            reason_zh=zh,
            reason_en=en,
            checked_at=self.checked_at,
            as_of=self.as_of,
            issuer_id=c.issuer.id,
            issuer_name=c.issuer.name,
            cert_id=c.cert_id,
            cert_type=ctype.code,
            cert_type_name=ctype.name,
            valid_from=c.valid_from,
            valid_until=c.valid_until,
            claims=tuple([_made(Claim, name=x.name, label=x.label, value=x.text) for x in c.claims]),
            hidden=c.hidden,
            evidence=self.evidence,
            replaced_by=replaced_by,
            warnings=tuple(self.warnings),
        )


def _made(cls: type[_T], **fields: Any) -> _T:
    """An instance of the frozen dataclass ``cls`` with every field given, built from
    values of the right types (its constructor only assigns them)."""
    obj = object.__new__(cls)
    obj.__dict__.update(fields)
    return obj


#: Per certificate type: who may revoke it, sorted (the type is immutable).
_REVOKERS: dict[int, tuple[CertificateType, tuple[str, ...]]] = {}


def _revokers(ctype: CertificateType) -> tuple[str, ...]:
    hit = _REVOKERS.get(id(ctype))
    if hit is not None and hit[0] is ctype:
        return hit[1]
    out = ctype.members_with("revoke")
    if len(_REVOKERS) >= 1024:
        _REVOKERS.clear()
    _REVOKERS[id(ctype)] = (ctype, out)
    return out


def _from_policy_error(run: _Run, e: PolicyError) -> Verdict:
    """Steps 2 to 4 and 6: a policy rule broke; its ``rule`` picks the code."""
    rule = e.rule
    if rule == "expired":
        return run.verdict(
            Code.STALE,
            "信任策略已过期，本核验服务未能从节点取得新版本，无法确认证照状态：请联系核验服务管理员",
            f"the trust policy is out of date and this verifier could not get a newer version from its "
            f"nodes, so the certificate's status cannot be confirmed; tell the verifier's operator "
            f"(GET /v1/status shows why): {e}",
        )
    if rule in _UNKNOWN_ISSUER_RULES:
        return run.verdict(
            Code.UNKNOWN_ISSUER, "签发密钥不属于任何联盟成员：签发机构无法确认", f"unknown issuer: {e}"
        )
    if rule in _BAD_KEY_RULES:
        return run.verdict(
            Code.BAD_SIGNATURE,
            "签名所用密钥在签发时不受信任（不在有效期内或已泄露）",
            f"untrusted signing key: {e}",
        )
    if rule == "future-time":
        return run.verdict(
            Code.NOT_YET_VALID,
            "证照的签发时间晚于本机时间：请检查本机时钟",
            f"the statement is dated in the future; check this device's clock: {e}",
        )
    if rule in _NOT_AUTHORISED_RULES:
        return run.verdict(Code.NOT_AUTHORISED, "签发部门无权签发此类证照", f"not authorised: {e}")
    return run.verdict(Code.CLAIM_MISMATCH, "所需信息与证照类型不符", f"{e}")


def verify(
    text_or_presentation: str | Presentation,
    *,
    policy: Policy,
    replica_view: ReplicaView,
    now: int,
    purpose: str | None = None,
    skew: int = DEFAULT_CLOCK_SKEW,
) -> Verdict:
    """Verify a presented certificate (``CL1:`` text or a parsed presentation) offline.

    ``now`` is the verifier's clock (Unix seconds); ``purpose`` names the claims the
    verification needs disclosed; ``skew`` is the allowance for the validity window.
    Always returns a verdict for any input; StorageError if the replica cannot be read
    (a fault of this verifier, not of the certificate).
    """
    # The replica's state as last read; the entry lookup tells whether it is still
    # current (a sync may have committed since), and if not, verify again on a fresh one.
    state = replica_view.last_state()
    run = _Run(now=now, policy=policy, view=replica_view, state=state)
    verdict = _verify(text_or_presentation, run=run, purpose=purpose, skew=skew)
    current = run.current if run.current is not None else replica_view.state() is state
    if current:
        return verdict
    run = _Run(now=now, policy=policy, view=replica_view, state=replica_view.state())
    return _verify(text_or_presentation, run=run, purpose=purpose, skew=skew)


def _verify(given: str | Presentation, *, run: _Run, purpose: str | None, skew: int) -> Verdict:
    policy, view = run.policy, run.view
    # 1. Parse the QR text strictly (prefix, sizes, canonical encoding).
    if isinstance(given, Presentation):
        presentation = given
    else:
        try:
            presentation = Presentation.from_text(given)
        except (LedgerError, ValueError, TypeError) as e:
            return run.verdict(
                Code.MALFORMED, "无法识别：这不是有效的证照二维码", f"not a valid certledger code: {e}"
            )
    # 2. Trust policy current and not expired.
    try:
        policy.check_not_expired(run.now)
    except PolicyError as e:
        return _from_policy_error(run, e)
    # 3.-6. Issuer and key (valid at the statement's time), mandate, signature, claims.
    try:
        checked = verify_presentation(presentation, policy=policy, now=run.now, purpose=purpose, skew=skew)
    except PolicyError as e:
        return _from_policy_error(run, e)
    except SignatureError as e:
        return run.verdict(Code.BAD_SIGNATURE, "签名无效：证照被篡改或伪造", f"bad signature: {e}")
    except (ClaimMismatchError, SchemaError) as e:
        return run.verdict(Code.CLAIM_MISMATCH, "出示的信息与签发记录不符或不完整", f"claim mismatch: {e}")
    except LedgerError as e:
        return run.verdict(Code.MALFORMED, "证照内容格式错误", f"malformed presentation: {e}")
    run.checked = checked
    issuer = checked.issuer
    state = run.state
    latest = state.latest.get(issuer.id)
    run.as_of = None if latest is None else latest.newest_at
    found = view.lookup(issuer.id, checked.signed.statement_bytes, checked.cert_id, state=state)
    run.current = found.current
    entry = found.entry
    # 3. (continued) A key marked compromised is trusted only for entries witnessed before
    # then; a statement dated after its entry was first witnessed claims a time (and so a
    # key and mandate judged at it) that cannot be trusted.
    if entry is not None or checked.log_key.compromised_at is not None:
        witnessed = None if entry is None else entry.first_witnessed.witnessed_at
        try:
            policy.log_key(
                issuer.id, checked.signed.key_id, at=checked.statement.time, witnessed_at=witnessed
            )
        except PolicyError as e:
            if e.rule == "future-time":
                return run.verdict(
                    Code.NOT_AUTHORISED,
                    "证照的签发时间晚于其在账本中被见证的时间：签发时间不可信，无法确认签发资格",
                    f"the statement is dated after its entry was witnessed, so its time, and the key "
                    f"and mandate judged at it, cannot be trusted: {e}",
                )
            return _from_policy_error(run, e)
    # 7. Validity window against the clock (with the skew allowance).
    if checked.validity == Validity.EXPIRED:
        assert checked.valid_until is not None
        return run.verdict(
            Code.EXPIRED,
            f"证照已于 {format_time(checked.valid_until)} 过期",
            f"expired at {format_time(checked.valid_until)}",
        )
    if checked.validity == Validity.NOT_YET_VALID:
        return run.verdict(
            Code.NOT_YET_VALID,
            f"证照自 {format_time(checked.valid_from)} 起生效，尚未生效",
            f"not valid before {format_time(checked.valid_from)}",
        )
    # 8. In the issuer's log replica, covered by a witnessed checkpoint (inclusion proof).
    forks = state.forks.get(issuer.id, ())
    if forks:
        f = forks[0]
        run.warnings.append(f"alert {f.id}: {f.message}")
        return run.verdict(
            Code.STALE,
            f"{issuer.name}的账本出现分叉（向不同方展示了相互矛盾的历史），状态不可信；已记录告警 #{f.id}",
            f"the log of {issuer.id} forked (it showed contradicting histories); "
            f"its status cannot be trusted (alert {f.id}: {f.message})",
        )
    if latest is None:
        return run.verdict(
            Code.NOT_IN_LEDGER,
            f"本地没有{issuer.name}账本的副本，无法确认证照已登记",
            f"the replica holds no copy of {issuer.id}'s log, so the certificate cannot be found in it",
        )
    if entry is None:
        return run.verdict(
            Code.NOT_IN_LEDGER,
            f"在{issuer.name}账本（截至 {format_time(latest.newest_at)}，共 {latest.size} 条）中找不到此证照",
            f"not in {issuer.id}'s log as of {format_time(latest.newest_at)} "
            f"({latest.size} entries witnessed)",
        )
    try:
        wcp = _CACHE.open(latest.note, policy=policy, member=issuer, now=run.now)
        _prove(view, state, found, wcp, checked)
    except (LedgerError, ValueError) as e:
        return run.verdict(
            Code.NOT_IN_LEDGER,
            "本地账本副本无法证明此证照已登记",
            f"the replica does not prove entry {entry.index} of {issuer.id}'s log: {e}",
        )
    run.as_of = wcp.newest_at
    run.evidence = _made(
        Evidence,
        origin=wcp.origin,
        entry_index=entry.index,
        checkpoint_size=wcp.size,
        checkpoint_root=wcp.root_hash.hex(),
        witnessed_at=wcp.newest_at,
        cosigners=wcp.cosigners,
    )
    # 9. Status: revoke/suspend (unless reinstated) by a member allowed to revoke; replaced.
    status = _status(run, checked, found.status)
    if status is not None:
        return status
    # 10. Freshness of the issuer's log copy and of every log a revocation could be in.
    revokers = _revokers(checked.certificate_type)
    watched = [issuer.id, *(m for m in revokers if m != issuer.id)]
    for member_id in watched:
        cp = latest if member_id == issuer.id else state.latest.get(member_id)
        member = policy.member(member_id)
        name = member.name if member is not None else member_id
        revoker_forks = state.forks.get(member_id, ()) if member_id != issuer.id else ()
        if revoker_forks:
            f = revoker_forks[0]
            run.warnings.append(f"alert {f.id}: {f.message}")
            return run.verdict(
                Code.STALE,
                f"{name}的账本出现分叉（向不同方展示了相互矛盾的历史），其中可能隐藏了撤销记录，"
                f"证照状态不可信；已记录告警 #{f.id}",
                f"the log of {member_id}, which may revoke this certificate, forked (it showed "
                f"contradicting histories), so a revocation could be hidden from this copy; the "
                f"status cannot be trusted (alert {f.id}: {f.message})",
            )
        if cp is not None and (run.as_of is None or cp.newest_at < run.as_of):
            run.as_of = cp.newest_at  # the verdict is as current as its oldest copy
        if cp is None:
            return run.verdict(
                Code.STALE,
                f"本地没有{name}账本的副本，无法确认证照是否被撤销",
                f"the replica holds no copy of {member_id}'s log, so a revocation could be missed",
            )
        age = run.now - cp.newest_at
        if age > policy.freshness_seconds:
            zh_age, en_age = _age(age)
            return run.verdict(
                Code.STALE,
                f"{name}账本的本地副本已 {zh_age} 未更新（截至 {format_time(cp.newest_at)}），超过策略允许的 "
                f"{_age(policy.freshness_seconds)[0]}：证照真实，但当前状态无法确认",
                f"the copy of {member_id}'s log is {en_age} old (as of {format_time(cp.newest_at)}), "
                f"over the policy's limit of {_age(policy.freshness_seconds)[1]}: "
                "genuine, but its status is not current",
            )
    # 11. One verdict.
    return run.verdict(
        Code.VALID,
        f"有效：{issuer.name}签发的{checked.certificate_type.name}，已登记于其账本并经见证",
        f"valid: a {checked.certificate_type.code} issued by {issuer.id}, in its witnessed log",
    )


def _prove(
    view: ReplicaView,
    state: ReplicaState,
    found: Lookup,
    cp: WitnessedCheckpoint,
    checked: CheckedPresentation,
) -> None:
    """Check that the found entry holds exactly the presented signed statement and is
    leaf ``entry.index`` of the tree ``cp`` signs: an inclusion proof from the replica's
    data up to the checkpoint's root (or up to a node of that tree an earlier proof
    reached: :class:`ledger.log.merkle.VerifiedTree`). The lowest siblings of the proof
    were read with the entry; any others are read from the stored hashes."""
    entry = found.entry
    assert entry is not None
    signed = checked.signed
    leaf_data = encode_entry(
        statement_bytes=signed.statement_bytes,
        key_id=signed.key_id,
        signature=signed.signature,
        prev=entry.data[-32:],
    )
    if leaf_data != entry.data:
        raise ProofError("the stored entry holds another statement")
    if entry.index >= cp.size:
        raise ProofError(f"entry {entry.index} is beyond the witnessed checkpoint of size {cp.size}")
    n = entry.index
    known = dict(found.siblings)

    def read(indexes: Sequence[int]) -> list[bytes]:
        missing = [i for i in indexes if i not in known]
        if missing:
            known.update(
                zip(missing, view.proof_hashes(entry.member_id, cp.size, state=state)(missing), strict=True)
            )
        return [known[i] for i in indexes]

    _TREES.get(cp).check_record(n, merkle.leaf_hash(leaf_data), read)


def _status(run: _Run, checked: CheckedPresentation, entries: list[LoggedEntry]) -> Verdict | None:
    """Step 9: the status statements that count, in statement-time order."""
    policy = run.policy
    ctype = checked.certificate_type
    revoked: LoggedEntry | None = None
    suspended: LoggedEntry | None = None
    replaced: LoggedEntry | None = None
    for ev in entries:
        why = _ignored(policy, ev, ctype.code, checked)
        if why is not None:
            run.warnings.append(
                f"ignored the {ev.statement.kind.label} in entry {ev.index} of {ev.member_id}'s log: {why}"
            )
            continue
        kind = ev.statement.kind
        if kind == Kind.REVOKE and revoked is None:
            revoked = ev
        elif kind == Kind.SUSPEND:
            suspended = ev
        elif kind == Kind.REINSTATE:
            suspended = None
        elif kind == Kind.REPLACE and replaced is None:
            replaced = ev
    members: Callable[[str], str] = lambda mid: m.name if (m := policy.member(mid)) else mid  # noqa: E731
    if revoked is not None:
        st = revoked.statement
        reason = st.reason
        return run.verdict(
            Code.REVOKED,
            f"已撤销：{members(revoked.member_id)}于 {format_time(st.time)} 撤销"
            + (f"，原因：{reason.label_zh}" if reason is not None else ""),
            f"revoked by {revoked.member_id} at {format_time(st.time)}"
            + (f" ({reason.label_en})" if reason is not None else ""),
        )
    if suspended is not None:
        st = suspended.statement
        reason = st.reason
        return run.verdict(
            Code.SUSPENDED,
            f"已暂停：{members(suspended.member_id)}于 {format_time(st.time)} 暂停"
            + (f"，原因：{reason.label_zh}" if reason is not None else ""),
            f"suspended by {suspended.member_id} at {format_time(st.time)}"
            + (f" ({reason.label_en})" if reason is not None else ""),
        )
    if replaced is not None:
        new_id = replaced.statement.cert_id
        return run.verdict(
            Code.REPLACED,
            f"已被新证照 {new_id} 取代（{format_time(replaced.statement.time)}）",
            f"replaced by {new_id} at {format_time(replaced.statement.time)}",
            replaced_by=new_id,
        )
    return None


def _ignored(policy: Policy, ev: LoggedEntry, type_code: str, checked: CheckedPresentation) -> str | None:
    """Why a status entry does not count, or None when it does: it must be made by the
    log's own member, with a log key trusted at its time and witness time, under a valid
    signature, by a member allowed to revoke (or, for a replace, issue the old and the
    new) type."""
    st = ev.statement
    if st.issuer != ev.member_id:
        return f"impersonation: it sits in {ev.member_id}'s log but names {st.issuer} as its maker"
    if st.kind != Kind.REPLACE and st.cert_type != type_code:
        return f"it names type {st.cert_type}, but the certificate is a {type_code}"
    member = policy.member(ev.member_id)
    if member is None:
        return f"{ev.member_id} is not a member in policy version {policy.version}"
    try:
        key = policy.log_key(
            member.id, ev.signed.key_id, at=st.time, witnessed_at=ev.first_witnessed.witnessed_at
        )
    except (PolicyError, MalformedError) as e:
        return str(e)
    signed = ev.signed
    if not key.public_key.is_valid(signed.signature, statement_message(signed.statement_bytes)):
        return "its signature does not verify"
    try:
        policy.check_mandate(
            member.id, type_code, "issue" if st.kind == Kind.REPLACE else "revoke", at=st.time
        )
        if st.kind == Kind.REPLACE and st.cert_type != type_code:  # and the new certificate's type
            policy.check_mandate(member.id, st.cert_type, "issue", at=st.time)
    except PolicyError as e:
        return str(e)
    return None
