"""The consortium trust policy: who belongs, which keys speak for them, who may do what.

This module holds the policy's data model and the small, pure queries the rest of the
system asks of one policy version:

* :meth:`Policy.check_mandate` — may member M issue (or revoke) certificate type T;
* :meth:`Policy.log_key` — which log key of member M verifies key ID K for a statement
  made at time t, given when its entry was witnessed;
* :meth:`Policy.witness_keys` / :meth:`Policy.check_quorum` — the witnesses of a log
  and whether enough of them cosigned;
* :meth:`Policy.check_fresh` / :meth:`Policy.check_not_expired` — time limits.

Every value is validated on construction (:class:`~ledger.errors.SchemaError`); times
are Unix seconds (UTC), from 1970 to the end of year 9999. A failed query raises
:class:`~ledger.errors.PolicyError` whose ``rule`` names the broken rule (one of
:data:`RULES`) and whose message says why.

The signed document format is in :mod:`ledger.trust.policy_doc`, the version-update rules in
:mod:`ledger.trust.trust`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Literal

from ledger.errors import MalformedError, PolicyError, SchemaError
from ledger.keys import SIG_TYPE_COSIGNATURE, SIG_TYPE_ED25519, PublicKey, VerifierKey, check_key_name, key_id

__all__ = [
    "CLAIM_KINDS",
    "MAX_GOVERNANCE_KEYS",
    "MAX_TIME",
    "RULES",
    "CertificateType",
    "ClaimSpec",
    "LogKey",
    "Member",
    "Policy",
    "format_time",
    "rule_error",
]

_MEMBER_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_TYPE_CODE = re.compile(r"[a-z0-9][a-z0-9_]{0,62}")
_CLAIM_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
_PURPOSE = re.compile(r"[a-z][a-z0-9_]{0,62}")
_CODE = re.compile(r"[0-9A-Z]{1,40}")
#: Value kinds a claim may have. ``text``: a Unicode string; ``date``: ``YYYY-MM-DD``;
#: ``integer``: a whole number; ``code``: upper-case letters and digits (identifiers).
CLAIM_KINDS = frozenset({"text", "date", "integer", "code"})
#: The latest representable time: 9999-12-31T23:59:59Z.
MAX_TIME = 253_402_300_799
#: Caps that keep one policy version (and the work of checking it) bounded.
MAX_GOVERNANCE_KEYS = 32
MAX_MEMBERS = 256
MAX_TYPES = 256
MAX_LOG_KEYS = 64
MAX_PURPOSES = 32
_MAX_URL = 2048

#: Every rule a :class:`~ledger.errors.PolicyError` can name, with what it means.
RULES: Mapping[str, str] = MappingProxyType(
    {
        # version updates (ledger.trust.trust)
        "rollback": "a version is never replaced by an older or equal one",
        "skipped-version": "version N is followed only by version N+1",
        "old-threshold": "version N+1 is signed by a threshold of version N's governance keys",
        "own-threshold": "every version is signed by a threshold of its own governance keys",
        "bad-signature": "a signature by a governance key must verify over the exact document",
        "expired": "the newest version must not be expired (freeze attack)",
        "chain-too-long": "one update walks at most a capped number of versions",
        # queries (this module)
        "unknown-member": "statements are accepted only from consortium members",
        "unknown-type": "certificate types are those the policy defines",
        "mandate": "a member issues or revokes only the types that name it",
        "unknown-key": "a statement's key ID must name one of its member's log keys",
        "key-validity": "a log key is trusted only for statements made in its validity window",
        "key-compromised": "a key compromised at T is trusted only for entries witnessed before T",
        "witness-quorum": "a checkpoint counts as witnessed with cosignatures from a quorum of other members",
        "stale": "the newest witnessed checkpoint must be within the freshness limit",
    }
)


def rule_error(rule: str, detail: str) -> PolicyError:
    """A PolicyError for ``rule`` (one of :data:`RULES`): message ``"<rule>: <detail>"``."""
    assert rule in RULES, f"unknown policy rule {rule!r}"
    return PolicyError(f"{rule}: {detail}", rule=rule)


_fail = rule_error


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise SchemaError(message)


def _is_time(value: object) -> bool:
    return type(value) is int and 0 <= value <= MAX_TIME


def _is_text(value: object, max_length: int) -> bool:
    """Non-empty printable text without surrounding spaces (names people read and sign)."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= max_length
        and value.isprintable()
        and value == value.strip()
    )


def format_time(t: int) -> str:
    """``t`` (Unix seconds) as an RFC 3339 UTC time, e.g. ``2025-01-01T00:00:00Z``."""
    if not _is_time(t):
        raise MalformedError(f"time {t!r} is outside 1970-01-01 .. 9999-12-31")
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, kw_only=True)
class LogKey:
    """A member's log key (signs statements and checkpoints) and when it may be trusted.

    The key is trusted for statements made in ``[valid_from, valid_until)``; if
    ``compromised_at`` is set, only for entries covered by a checkpoint witnessed
    before that time.
    """

    public_key: PublicKey
    valid_from: int
    valid_until: int | None = None
    compromised_at: int | None = None

    def __post_init__(self) -> None:
        _require(isinstance(self.public_key, PublicKey), "log key: public_key must be a PublicKey")
        _require(_is_time(self.valid_from), "log key: valid_from must be a time")
        if self.valid_until is not None:
            _require(
                _is_time(self.valid_until) and self.valid_until > self.valid_from,
                "log key: valid_until must be a time after valid_from",
            )
        if self.compromised_at is not None:
            _require(_is_time(self.compromised_at), "log key: compromised_at must be a time")

    def window(self) -> str:
        """The validity window, for messages: ``[from, until)``."""
        until = format_time(self.valid_until) if self.valid_until is not None else "open-ended"
        return f"[{format_time(self.valid_from)}, {until})"


@dataclass(frozen=True, kw_only=True)
class Member:
    """A department in the consortium."""

    id: str
    name: str
    origin: str
    issuer_code: str
    base_url: str
    log_keys: tuple[LogKey, ...]
    witness_key: VerifierKey

    def __post_init__(self) -> None:
        _require(isinstance(self.id, str) and bool(_MEMBER_ID.fullmatch(self.id)), f"member id {self.id!r}")
        _require(_is_text(self.name, 200), f"member {self.id}: name must be 1..200 printable characters")
        try:
            check_key_name(self.origin)
        except MalformedError as e:
            raise SchemaError(f"member {self.id}: log origin: {e}") from None
        _require(
            isinstance(self.issuer_code, str) and bool(_CODE.fullmatch(self.issuer_code)),
            f"member {self.id}: issuer_code must be upper-case letters and digits",
        )
        _require(
            _is_text(self.base_url, _MAX_URL)
            and self.base_url.startswith(("https://", "http://"))
            and " " not in self.base_url,
            f"member {self.id}: base_url must be an http(s) URL",
        )
        object.__setattr__(self, "log_keys", tuple(self.log_keys))
        _require(0 < len(self.log_keys) <= MAX_LOG_KEYS, f"member {self.id}: 1 to {MAX_LOG_KEYS} log keys")
        _require(
            all(isinstance(k, LogKey) for k in self.log_keys), f"member {self.id}: log keys must be LogKeys"
        )
        _require(
            len({k.public_key for k in self.log_keys}) == len(self.log_keys),
            f"member {self.id}: a log key is listed twice",
        )
        _require(
            isinstance(self.witness_key, VerifierKey) and self.witness_key.sig_type == SIG_TYPE_COSIGNATURE,
            f"member {self.id}: witness_key must be a cosignature (type 0x04) verifier key",
        )

    def log_key_id(self, key: LogKey) -> bytes:
        """The 4-byte C2SP key ID of ``key`` under this member's origin."""
        return key_id(self.origin, SIG_TYPE_ED25519, key.public_key.raw)

    def log_verifier_key(self, key: LogKey) -> VerifierKey:
        """``key`` as a signed-note verifier key named by this member's origin."""
        return VerifierKey(name=self.origin, public_key=key.public_key, sig_type=SIG_TYPE_ED25519)


@dataclass(frozen=True, kw_only=True)
class ClaimSpec:
    """One claim of a certificate type.

    ``key`` is the compact key used in statements and QR codes; ``name`` the key used
    in files and APIs; ``label`` the Chinese label shown to people.
    """

    key: int
    name: str
    label: str
    kind: str = "text"
    required: bool = True
    max_length: int = 256

    def __post_init__(self) -> None:
        _require(type(self.key) is int and 0 <= self.key <= 255, f"claim {self.name!r}: key must be 0..255")
        _require(
            isinstance(self.name, str) and bool(_CLAIM_NAME.fullmatch(self.name)), f"claim name {self.name!r}"
        )
        _require(_is_text(self.label, 100), f"claim {self.name}: label must be 1..100 printable characters")
        _require(self.kind in CLAIM_KINDS, f"claim {self.name}: kind must be one of {sorted(CLAIM_KINDS)}")
        _require(type(self.required) is bool, f"claim {self.name}: required must be true or false")
        _require(
            type(self.max_length) is int and 0 < self.max_length <= 4096,
            f"claim {self.name}: max_length must be 1..4096",
        )


@dataclass(frozen=True, kw_only=True)
class CertificateType:
    """A kind of certificate, its claims, and which members may issue and revoke it.

    ``national_code`` is the licence-type segment of GB/T 36904 certificate ids.
    ``purposes`` maps a verification purpose to the claim names it needs disclosed.
    ``max_validity_days`` of ``None`` allows open-ended certificates. Revokers also
    suspend and reinstate; issuers also replace.
    """

    code: str
    name: str
    national_code: str
    claims: tuple[ClaimSpec, ...]
    issuers: frozenset[str]
    revokers: frozenset[str]
    max_validity_days: int | None = None
    purposes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _require(
            isinstance(self.code, str) and bool(_TYPE_CODE.fullmatch(self.code)), f"type code {self.code!r}"
        )
        _require(_is_text(self.name, 100), f"type {self.code}: name must be 1..100 printable characters")
        _require(
            isinstance(self.national_code, str) and bool(_CODE.fullmatch(self.national_code)),
            f"type {self.code}: national_code must be upper-case letters and digits",
        )
        claims = tuple(self.claims)
        _require(
            all(isinstance(c, ClaimSpec) for c in claims), f"type {self.code}: claims must be ClaimSpecs"
        )
        claims = tuple(sorted(claims, key=lambda c: c.key))
        object.__setattr__(self, "claims", claims)
        _require(0 < len(claims) <= 64, f"type {self.code}: 1 to 64 claims")
        _require(len({c.key for c in claims}) == len(claims), f"type {self.code}: claim keys must be unique")
        names = {c.name for c in claims}
        _require(len(names) == len(claims), f"type {self.code}: claim names must be unique")
        for attr in ("issuers", "revokers"):
            who = tuple(getattr(self, attr))
            _require(all(isinstance(w, str) for w in who), f"type {self.code}: {attr} must be member ids")
            object.__setattr__(self, attr, frozenset(who))
        if self.max_validity_days is not None:
            _require(
                type(self.max_validity_days) is int and 0 < self.max_validity_days <= 100 * 366,
                f"type {self.code}: max_validity_days must be 1..36600",
            )
        purposes = {}
        items = dict(self.purposes).items()
        _require(len(items) <= MAX_PURPOSES, f"type {self.code}: at most {MAX_PURPOSES} purposes")
        for purpose, wanted in items:
            _require(isinstance(purpose, str) and bool(_PURPOSE.fullmatch(purpose)), f"purpose {purpose!r}")
            needed = tuple(wanted)
            for n in needed:
                _require(n in names, f"type {self.code}: purpose {purpose} names unknown claim {n!r}")
            _require(len(set(needed)) == len(needed), f"type {self.code}: purpose {purpose} repeats a claim")
            purposes[purpose] = needed
        object.__setattr__(self, "purposes", MappingProxyType(purposes))

    def claim(self, name: str) -> ClaimSpec:
        """The claim called ``name``; SchemaError if the type has none."""
        for c in self.claims:
            if c.name == name:
                return c
        raise SchemaError(f"certificate type {self.code} has no claim {name!r}")

    def claim_by_key(self, key: int) -> ClaimSpec:
        """The claim with compact key ``key``; SchemaError if the type has none."""
        for c in self.claims:
            if c.key == key:
                return c
        raise SchemaError(f"certificate type {self.code} has no claim with key {key}")


@dataclass(frozen=True, kw_only=True)
class Policy:
    """One version of the trust policy."""

    version: int
    expires: int
    members: tuple[Member, ...]
    types: tuple[CertificateType, ...]
    witness_quorum: int
    freshness_seconds: int
    governance_keys: tuple[VerifierKey, ...]
    governance_threshold: int

    def __post_init__(self) -> None:
        _require(
            type(self.version) is int and 1 <= self.version < 2**53,
            "policy version must be a positive integer",
        )
        _require(_is_time(self.expires) and self.expires > 0, "policy expiry must be a time")
        object.__setattr__(self, "members", tuple(self.members))
        object.__setattr__(self, "types", tuple(self.types))
        object.__setattr__(self, "governance_keys", tuple(self.governance_keys))
        _require(len(self.members) <= MAX_MEMBERS, f"at most {MAX_MEMBERS} members")
        _require(len(self.types) <= MAX_TYPES, f"at most {MAX_TYPES} certificate types")
        _require(all(isinstance(m, Member) for m in self.members), "members must be Members")
        _require(all(isinstance(t, CertificateType) for t in self.types), "types must be CertificateTypes")
        ids = [m.id for m in self.members]
        _require(len(set(ids)) == len(ids), "member ids must be unique")
        _require(len({m.origin for m in self.members}) == len(ids), "log origins must be unique")
        owner: dict[PublicKey, str] = {}
        for m in self.members:
            for k in m.log_keys:
                other = owner.setdefault(k.public_key, m.id)
                _require(other == m.id, f"member {m.id} lists a log key that belongs to {other}")
        _require(
            len({m.witness_key.public_key for m in self.members}) == len(ids),
            "each member needs its own witness key",
        )
        codes = [t.code for t in self.types]
        _require(len(set(codes)) == len(codes), "certificate type codes must be unique")
        for t in self.types:
            for who in sorted(t.issuers | t.revokers):
                _require(who in ids, f"type {t.code} names unknown member {who!r}")
        _require(
            type(self.witness_quorum) is int and 0 <= self.witness_quorum < max(len(ids), 1),
            "witness quorum must be between 0 and the number of other members",
        )
        _require(
            type(self.freshness_seconds) is int and 0 < self.freshness_seconds <= MAX_TIME,
            "freshness limit must be positive",
        )
        _require(
            0 < len(self.governance_keys) <= MAX_GOVERNANCE_KEYS,
            f"1 to {MAX_GOVERNANCE_KEYS} governance keys",
        )
        for g in self.governance_keys:
            _require(
                isinstance(g, VerifierKey) and g.sig_type == SIG_TYPE_ED25519,
                "governance keys must be Ed25519 (type 0x01) verifier keys",
            )
        _require(
            len({g.public_key for g in self.governance_keys}) == len(self.governance_keys),
            "governance keys must be distinct",
        )
        _require(
            len({g.name for g in self.governance_keys}) == len(self.governance_keys),
            "governance key names must be distinct",
        )
        _require(
            type(self.governance_threshold) is int
            and 1 <= self.governance_threshold <= len(self.governance_keys),
            "governance threshold must be between 1 and the number of governance keys",
        )

    # -- lookups ---------------------------------------------------------------------

    def member(self, member_id: str) -> Member | None:
        """The member with this id, or None."""
        for m in self.members:
            if m.id == member_id:
                return m
        return None

    def member_by_origin(self, origin: str) -> Member | None:
        """The member whose log has this origin, or None."""
        for m in self.members:
            if m.origin == origin:
                return m
        return None

    def certificate_type(self, code: str) -> CertificateType | None:
        """The certificate type with this code, or None."""
        for t in self.types:
            if t.code == code:
                return t
        return None

    def require_member(self, member_id: str) -> Member:
        """The member with this id; PolicyError (``unknown-member``) if there is none."""
        m = self.member(member_id)
        if m is None:
            raise _fail("unknown-member", f"{member_id!r} is not a member in policy version {self.version}")
        return m

    def require_type(self, code: str) -> CertificateType:
        """The certificate type with this code; PolicyError (``unknown-type``) if there is none."""
        t = self.certificate_type(code)
        if t is None:
            raise _fail("unknown-type", f"policy version {self.version} has no certificate type {code!r}")
        return t

    # -- mandates --------------------------------------------------------------------

    def may_issue(self, member_id: str, type_code: str) -> bool:
        """True if the member may issue (and replace) certificates of this type."""
        t = self.certificate_type(type_code)
        return t is not None and self.member(member_id) is not None and member_id in t.issuers

    def may_revoke(self, member_id: str, type_code: str) -> bool:
        """True if the member may revoke, suspend and reinstate certificates of this type."""
        t = self.certificate_type(type_code)
        return t is not None and self.member(member_id) is not None and member_id in t.revokers

    def check_mandate(
        self, member_id: str, type_code: str, action: Literal["issue", "revoke"]
    ) -> CertificateType:
        """The certificate type, if ``member_id`` may ``action`` it; else PolicyError.

        ``"issue"`` covers issue and replace statements; ``"revoke"`` covers revoke,
        suspend and reinstate. Rules: ``unknown-member``, ``unknown-type``, ``mandate``.
        """
        if action not in ("issue", "revoke"):
            raise MalformedError(f"unknown mandate action {action!r}; expected 'issue' or 'revoke'")
        self.require_member(member_id)
        t = self.require_type(type_code)
        allowed = t.issuers if action == "issue" else t.revokers
        if member_id not in allowed:
            who = ", ".join(sorted(allowed)) or "no member"
            raise _fail(
                "mandate",
                f"{member_id} may not {action} {type_code} under policy version {self.version} "
                f"(allowed to {action}: {who})",
            )
        return t

    # -- keys ------------------------------------------------------------------------

    def log_key(self, member_id: str, kid: bytes, *, at: int, witnessed_at: int | None) -> LogKey:
        """The log key of ``member_id`` with key ID ``kid`` trusted for this statement.

        ``at`` is the statement's time; ``witnessed_at`` is when a checkpoint covering
        its entry was first witnessed (``None`` if it has not been). The key must be
        valid at ``at`` (``valid_from <= at < valid_until``) and, if it was marked
        compromised at T, the entry must have been witnessed before T. Raises
        PolicyError naming the rule: ``unknown-member``, ``unknown-key``,
        ``key-compromised`` or ``key-validity``.
        """
        if not isinstance(kid, bytes) or len(kid) != 4:
            raise MalformedError("a key ID is exactly 4 bytes")
        if not _is_time(at):
            raise MalformedError(f"statement time {at!r} is not a time")
        if witnessed_at is not None and not _is_time(witnessed_at):
            raise MalformedError(f"witness time {witnessed_at!r} is not a time")
        m = self.require_member(member_id)
        candidates = [k for k in m.log_keys if m.log_key_id(k) == kid]
        if not candidates:
            raise _fail(
                "unknown-key",
                f"member {member_id} has no log key with key ID {kid.hex()} in policy version {self.version}",
            )
        first: PolicyError | None = None
        for k in candidates:
            problem = self._key_problem(m, k, kid, at=at, witnessed_at=witnessed_at)
            if problem is None:
                return k
            first = first or problem
        assert first is not None
        raise first

    def _key_problem(
        self, m: Member, k: LogKey, kid: bytes, *, at: int, witnessed_at: int | None
    ) -> PolicyError | None:
        name = f"log key {kid.hex()} of {m.id}"
        if k.compromised_at is not None and (witnessed_at is None or witnessed_at >= k.compromised_at):
            seen = (
                "this entry has not been witnessed"
                if witnessed_at is None
                else f"this entry was first witnessed at {format_time(witnessed_at)}"
            )
            return _fail(
                "key-compromised",
                f"{name} was compromised at {format_time(k.compromised_at)}; it is trusted only for "
                f"entries witnessed before then, and {seen}",
            )
        if at < k.valid_from or (k.valid_until is not None and at >= k.valid_until):
            return _fail(
                "key-validity",
                f"{name} is valid for statements made in {k.window()}, not at {format_time(at)}",
            )
        return None

    # -- witnesses -------------------------------------------------------------------

    def witness_keys(self, log_member_id: str) -> dict[str, VerifierKey]:
        """The witness key of every member except the log's own, by member id."""
        self.require_member(log_member_id)
        return {m.id: m.witness_key for m in self.members if m.id != log_member_id}

    def check_quorum(self, log_member_id: str, cosigned_by: Iterable[str]) -> None:
        """PolicyError (``witness-quorum``) unless enough other members cosigned.

        ``cosigned_by`` holds the ids of the members whose witness cosignatures on a
        checkpoint of ``log_member_id``'s log verified; the log's own member, unknown
        ids and repeats do not count.
        """
        others = self.witness_keys(log_member_id)
        counted = sorted({w for w in cosigned_by if w in others})
        if len(counted) < self.witness_quorum:
            names = f" ({', '.join(counted)})" if counted else ""
            raise _fail(
                "witness-quorum",
                f"checkpoint of {log_member_id} is cosigned by {len(counted)}/{len(others)} other "
                f"members' witnesses{names}; quorum {self.witness_quorum}",
            )

    # -- time ------------------------------------------------------------------------

    def is_expired(self, now: int) -> bool:
        """True if this version has expired at ``now``."""
        return now >= self.expires

    def check_not_expired(self, now: int) -> None:
        """PolicyError (``expired``) if this version has expired at ``now``."""
        if self.is_expired(now):
            raise _fail(
                "expired",
                f"policy version {self.version} expired at {format_time(self.expires)} "
                f"(now {format_time(now)}); fetch a newer version",
            )

    def check_fresh(self, witnessed_at: int, *, now: int) -> None:
        """PolicyError (``stale``) if the newest witnessed checkpoint is too old at ``now``."""
        age = now - witnessed_at
        if age > self.freshness_seconds:
            raise _fail(
                "stale",
                f"the newest witnessed checkpoint is from {format_time(witnessed_at)}, {age} s before "
                f"{format_time(now)}; the freshness limit is {self.freshness_seconds} s",
            )
