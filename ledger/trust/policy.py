"""The consortium trust policy: who belongs, which keys speak for them, who may do what.

This module holds the policy's data model and the small, pure queries the rest of the
system asks of one policy version:

* :meth:`Policy.check_mandate` / :meth:`Policy.may_issue` / :meth:`Policy.may_revoke`
  — may member M issue (or revoke) certificate type T in a statement made at time t
  (:meth:`Policy.check_statement_mandate` asks it of a whole statement);
* :meth:`Policy.log_key` / :meth:`Policy.find_log_key` — which log key of member M
  verifies key ID K for a statement made at time t, given when its entry was witnessed;
* :meth:`Policy.witness_keys` / :meth:`Policy.check_quorum` — the witnesses of a log
  and whether enough of them cosigned;
* :meth:`Policy.check_fresh` / :meth:`Policy.check_not_expired` — time limits.

Every value is validated on construction (:class:`~ledger.errors.SchemaError`), and
so are the rules no single version may switch off (:class:`~ledger.errors.PolicyError`
naming the rule): one consortium name, one role per key, unique key IDs, a witness
quorum, bounded freshness and lifetime. Times are Unix seconds (UTC), from 1970 to
the end of year 9999. A failed query raises :class:`~ledger.errors.PolicyError` whose
``rule`` names the broken rule (one of :data:`RULES`) and whose message says why.

The signed document format is in :mod:`ledger.trust.policy_doc`, the version-update rules in
:mod:`ledger.trust.trust`.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property, lru_cache
from types import MappingProxyType
from typing import Literal

from ledger.clock import CLOCK_SKEW, check_not_future
from ledger.errors import MalformedError, PolicyError, SchemaError
from ledger.keys import SIG_TYPE_COSIGNATURE, SIG_TYPE_ED25519, PublicKey, VerifierKey, check_key_name, key_id
from ledger.log.statement import Kind, Statement

__all__ = [
    "CLAIM_KINDS",
    "MAX_FRESHNESS_SECONDS",
    "MAX_GOVERNANCE_KEYS",
    "MAX_LIFETIME_SECONDS",
    "MAX_MANDATES",
    "MAX_TIME",
    "RULES",
    "Action",
    "CertificateType",
    "ClaimSpec",
    "LogKey",
    "Mandate",
    "Member",
    "Policy",
    "format_time",
    "mandates",
    "rule_error",
]

_MEMBER_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_TYPE_CODE = re.compile(r"[a-z0-9][a-z0-9_]{0,62}")
_CLAIM_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
_PURPOSE = re.compile(r"[a-z][a-z0-9_]{0,62}")
_CODE = re.compile(r"[0-9A-Z]{1,40}")
_CONSORTIUM = re.compile(r"[a-z0-9](?:[a-z0-9.-]{0,126}[a-z0-9])?")
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
MAX_MANDATES = 256
_MAX_URL = 2048
_DAY = 86_400
#: The longest freshness limit a version may set: 30 days.
MAX_FRESHNESS_SECONDS = 30 * _DAY
#: The longest a version may live: it expires at most 366 days (a calendar year from
#: any date) after its own ``issued`` time.
MAX_LIFETIME_SECONDS = 366 * _DAY

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
        "consortium": "a chain accepts only versions that name the pinned version's consortium",
        # rules every version obeys (this module)
        "key-reuse": "a public key appears once in a policy: one key, one role",
        "key-id-collision": "key IDs are unique across a policy, whatever their roles",
        "witness-name": "each member's witness has its own name",
        "quorum-bound": "with two or more members the witness quorum is at least 1",
        "freshness-bound": "the freshness limit is at most 30 days",
        "expiry-bound": "a version expires after its issue time and at most 366 days after it",
        # queries (this module)
        "unknown-member": "statements are accepted only from consortium members",
        "unknown-type": "certificate types are those the policy defines",
        "mandate": "a member issues or revokes only the types that name it",
        "mandate-validity": "a mandate is trusted only for statements made in its validity window",
        "max-validity": "a certificate is valid no longer than its type's maximum (never open-ended then)",
        "unknown-purpose": "a verification purpose is one the certificate type defines",
        "unknown-key": "a statement's key ID must name one of its member's log keys",
        "key-validity": "a log key is trusted only for statements made in its validity window",
        "key-compromised": "a key compromised at T is trusted only for entries witnessed before T",
        "witness-quorum": "a checkpoint counts as witnessed with cosignatures from a quorum of other members",
        "stale": "the newest witnessed checkpoint must be within the freshness limit",
        "future-time": "a signed time more than the clock skew ahead of the verifier's clock is refused",
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


# Pure functions of immutable values, asked for on every verification: remembered.
@lru_cache(maxsize=1024)
def _log_key_id(origin: str, raw: bytes) -> bytes:
    return key_id(origin, SIG_TYPE_ED25519, raw)


@lru_cache(maxsize=1024)
def _log_verifier_key(origin: str, public_key: PublicKey) -> VerifierKey:
    return VerifierKey(name=origin, public_key=public_key, sig_type=SIG_TYPE_ED25519)


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
        if len({k.public_key for k in self.log_keys}) != len(self.log_keys):
            raise _fail("key-reuse", f"member {self.id} lists one log key twice")
        _require(
            isinstance(self.witness_key, VerifierKey) and self.witness_key.sig_type == SIG_TYPE_COSIGNATURE,
            f"member {self.id}: witness_key must be a cosignature (type 0x04) verifier key",
        )

    def log_key_id(self, key: LogKey) -> bytes:
        """The 4-byte C2SP key ID of ``key`` under this member's origin."""
        return _log_key_id(self.origin, key.public_key.raw)

    def log_verifier_key(self, key: LogKey) -> VerifierKey:
        """``key`` as a signed-note verifier key named by this member's origin."""
        return _log_verifier_key(self.origin, key.public_key)


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


def _window(start: int | None, end: int | None) -> str:
    since = "open" if start is None else format_time(start)
    until = "open-ended" if end is None else format_time(end)
    return f"[{since}, {until})"


@dataclass(frozen=True, kw_only=True)
class Mandate:
    """A member's mandate to issue (or revoke) one certificate type, and when it holds.

    It is judged at a statement's time, like a log key: it covers statements made in
    ``[valid_from, valid_until)``; ``None`` leaves that end open. Withdrawing a
    mandate from a date on (setting ``valid_until``) keeps what was issued before it
    valid.
    """

    member: str
    valid_from: int | None = None
    valid_until: int | None = None

    def __post_init__(self) -> None:
        _require(
            isinstance(self.member, str) and bool(_MEMBER_ID.fullmatch(self.member)),
            f"mandate: member id {self.member!r}",
        )
        if self.valid_from is not None:
            _require(_is_time(self.valid_from), f"mandate of {self.member}: valid_from must be a time")
        if self.valid_until is not None:
            _require(
                _is_time(self.valid_until)
                and (self.valid_from is None or self.valid_until > self.valid_from),
                f"mandate of {self.member}: valid_until must be a time after valid_from",
            )

    @property
    def open(self) -> bool:
        """True when the mandate has no window (it holds at every time)."""
        return self.valid_from is None and self.valid_until is None

    def covers(self, at: int) -> bool:
        """True if the mandate holds for a statement made at ``at``."""
        return (self.valid_from is None or at >= self.valid_from) and (
            self.valid_until is None or at < self.valid_until
        )

    def window(self) -> str:
        """The validity window, for messages: ``[from, until)``."""
        return _window(self.valid_from, self.valid_until)

    def _order(self) -> tuple[str, int]:
        return (self.member, -1 if self.valid_from is None else self.valid_from)


def mandates(*member_ids: str) -> tuple[Mandate, ...]:
    """Open-ended mandates (no window) for ``member_ids``."""
    return tuple(Mandate(member=m) for m in member_ids)


def _check_mandates(code: str, attr: str, given: object) -> tuple[Mandate, ...]:
    if not isinstance(given, tuple | list | frozenset | set):
        raise SchemaError(f"type {code}: {attr} must be a tuple of Mandates")
    items = tuple(given)
    _require(len(items) <= MAX_MANDATES, f"type {code}: at most {MAX_MANDATES} {attr}")
    _require(all(isinstance(m, Mandate) for m in items), f"type {code}: {attr} must be Mandates")
    ordered = tuple(sorted(items, key=Mandate._order))
    for a, b in itertools.pairwise(ordered):
        if a.member == b.member and (
            a.valid_until is None or b.valid_from is None or b.valid_from < a.valid_until
        ):
            raise SchemaError(
                f"type {code}: {attr} mandates of {a.member} overlap ({a.window()}, {b.window()})"
            )
    return ordered


#: What a mandate allows: ``"issue"`` (issue, replace) or ``"revoke"`` (revoke, suspend,
#: reinstate).
Action = Literal["issue", "revoke"]


@dataclass(frozen=True, kw_only=True)
class CertificateType:
    """A kind of certificate, its claims, and which members may issue and revoke it.

    ``national_code`` is the licence-type segment of GB/T 36904 certificate ids.
    ``purposes`` maps a verification purpose to the claim names it needs disclosed.
    ``max_validity_days`` of ``None`` allows open-ended certificates. ``issuers`` and
    ``revokers`` are :class:`Mandate` s (sorted by member and start; one member's
    windows do not overlap). Revokers also suspend and reinstate; issuers also replace.
    """

    code: str
    name: str
    national_code: str
    claims: tuple[ClaimSpec, ...]
    issuers: tuple[Mandate, ...]
    revokers: tuple[Mandate, ...]
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
            object.__setattr__(self, attr, _check_mandates(self.code, attr, getattr(self, attr)))
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

    def mandates(self, action: Action) -> tuple[Mandate, ...]:
        """The mandates for ``action``: ``"issue"`` (issuers) or ``"revoke"`` (revokers)."""
        if action == "issue":
            return self.issuers
        if action == "revoke":
            return self.revokers
        raise MalformedError(f"unknown mandate action {action!r}; expected 'issue' or 'revoke'")

    def members_with(self, action: Action) -> tuple[str, ...]:
        """The ids of members with any mandate for ``action``, sorted (for people)."""
        return tuple(sorted({m.member for m in self.mandates(action)}))

    def check_mandate(
        self, member_id: str, action: Action, *, at: int, version: int | None = None
    ) -> Mandate:
        """The mandate that lets ``member_id`` ``action`` this type in a statement made at ``at``.

        Raises PolicyError: ``mandate`` if the member has no mandate for ``action``,
        ``mandate-validity`` if none of its mandates covers ``at``. ``version`` (the
        policy version) is named in messages when given.
        """
        if not _is_time(at):
            raise MalformedError(f"statement time {at!r} is not a time")
        held = [m for m in self.mandates(action) if m.member == member_id]
        under = f" under policy version {version}" if version is not None else ""
        if not held:
            who = ", ".join(self.members_with(action)) or "no member"
            raise _fail(
                "mandate",
                f"{member_id} may not {action} {self.code}{under} (allowed to {action}: {who})",
            )
        for m in held:
            if m.covers(at):
                return m
        windows = ", ".join(m.window() for m in held)
        raise _fail(
            "mandate-validity",
            f"{member_id} may {action} {self.code} only in statements made in {windows}{under}, "
            f"not at {format_time(at)}",
        )

    def check_validity(self, valid_from: int, valid_until: int | None) -> None:
        """PolicyError (``max-validity``) if a certificate valid from ``valid_from`` to
        ``valid_until`` (``None``: open-ended) is longer than this type allows."""
        limit = self.max_validity_days
        if limit is None:
            return
        if valid_until is None:
            raise _fail(
                "max-validity",
                f"{self.code} certificates are valid for at most {limit} days; an open-ended one is refused",
            )
        if valid_until - valid_from > limit * _DAY:
            days = (valid_until - valid_from) / _DAY
            raise _fail(
                "max-validity",
                f"{self.code} certificates are valid for at most {limit} days, not {days:.1f}",
            )

    def claim(self, name: str) -> ClaimSpec:
        """The claim called ``name``; SchemaError if the type has none."""
        for c in self.claims:
            if c.name == name:
                return c
        raise SchemaError(f"certificate type {self.code} has no claim {name!r}")

    @cached_property
    def _claims_by_key(self) -> dict[int, ClaimSpec]:
        return {c.key: c for c in self.claims}

    def claim_by_key(self, key: int) -> ClaimSpec:
        """The claim with compact key ``key``; SchemaError if the type has none."""
        c = self._claims_by_key.get(key) if isinstance(key, int) else None
        if c is not None:
            return c
        raise SchemaError(f"certificate type {self.code} has no claim with key {key}")


@dataclass(frozen=True, kw_only=True)
class Policy:
    """One version of the trust policy.

    ``consortium`` names the consortium (a chain never crosses from one to another);
    ``issued`` is the version's own time, and ``expires`` lies at most
    :data:`MAX_LIFETIME_SECONDS` after it.
    """

    consortium: str
    version: int
    issued: int
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
        _require(
            isinstance(self.consortium, str) and bool(_CONSORTIUM.fullmatch(self.consortium)),
            "consortium name must be 1..128 of a-z, 0-9, '.' and '-', "
            "starting and ending with a letter or digit",
        )
        _require(_is_time(self.issued), "policy issue time must be a time")
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
        codes = [t.code for t in self.types]
        _require(len(set(codes)) == len(codes), "certificate type codes must be unique")
        for t in self.types:
            for who in sorted({m.member for m in (*t.issuers, *t.revokers)}):
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
            len({g.name for g in self.governance_keys}) == len(self.governance_keys),
            "governance key names must be distinct",
        )
        _require(
            type(self.governance_threshold) is int
            and 1 <= self.governance_threshold <= len(self.governance_keys),
            "governance threshold must be between 1 and the number of governance keys",
        )
        self._check_bounds()
        self._check_keys()

    def _check_bounds(self) -> None:
        if len(self.members) >= 2 and self.witness_quorum < 1:
            raise _fail(
                "quorum-bound",
                f"version {self.version} has {len(self.members)} members and witness quorum 0; "
                "with two or more members at least one other member must witness each checkpoint",
            )
        if self.freshness_seconds > MAX_FRESHNESS_SECONDS:
            raise _fail(
                "freshness-bound",
                f"version {self.version} sets a freshness limit of {self.freshness_seconds} s; "
                f"at most {MAX_FRESHNESS_SECONDS} s (30 days) is allowed",
            )
        if self.expires <= self.issued:
            raise _fail(
                "expiry-bound",
                f"version {self.version} expires at {format_time(self.expires)}, not after its "
                f"issue time {format_time(self.issued)}",
            )
        if self.expires - self.issued > MAX_LIFETIME_SECONDS:
            raise _fail(
                "expiry-bound",
                f"version {self.version} expires at {format_time(self.expires)}, more than 366 days "
                f"after its issue time {format_time(self.issued)}",
            )

    def _check_keys(self) -> None:
        """One key, one role; unique key IDs; unique witness names (across the policy)."""
        roles: list[tuple[str, PublicKey, bytes]] = [
            (f"governance key {g.name}", g.public_key, g.key_id) for g in self.governance_keys
        ]
        for m in self.members:
            roles += [(f"log key of {m.id}", k.public_key, m.log_key_id(k)) for k in m.log_keys]
            roles.append((f"witness key of {m.id}", m.witness_key.public_key, m.witness_key.key_id))
        by_key: dict[PublicKey, int] = {}
        by_id: dict[bytes, int] = {}
        for i, (role, public, kid) in enumerate(roles):
            first = by_key.setdefault(public, i)
            if first != i:
                raise _fail(
                    "key-reuse",
                    f"one public key is both the {roles[first][0]} and the {role} in version "
                    f"{self.version}; a key holds one role only",
                )
            other = by_id.setdefault(kid, i)
            if other != i:
                raise _fail(
                    "key-id-collision",
                    f"key ID {kid.hex()} names both the {roles[other][0]} and the {role} in version "
                    f"{self.version}; key IDs must be unique across the policy",
                )
        witness_names: dict[str, str] = {}
        for m in self.members:
            owner = witness_names.setdefault(m.witness_key.name, m.id)
            if owner != m.id:
                raise _fail(
                    "witness-name",
                    f"members {owner} and {m.id} both name their witness {m.witness_key.name!r} "
                    f"in version {self.version}",
                )

    # -- lookups ---------------------------------------------------------------------

    # The policy is immutable: its lookups are dicts built on first use (ids, codes and
    # key IDs are unique, as construction checked).
    @cached_property
    def _members_by_id(self) -> dict[str, Member]:
        return {m.id: m for m in self.members}

    @cached_property
    def _types_by_code(self) -> dict[str, CertificateType]:
        return {t.code: t for t in self.types}

    @cached_property
    def _log_keys_by_id(self) -> dict[bytes, tuple[Member, LogKey]]:
        return {m.log_key_id(k): (m, k) for m in self.members for k in m.log_keys}

    def member(self, member_id: str) -> Member | None:
        """The member with this id, or None."""
        return self._members_by_id.get(member_id) if isinstance(member_id, str) else None

    def member_by_origin(self, origin: str) -> Member | None:
        """The member whose log has this origin, or None."""
        for m in self.members:
            if m.origin == origin:
                return m
        return None

    def certificate_type(self, code: str) -> CertificateType | None:
        """The certificate type with this code, or None."""
        return self._types_by_code.get(code) if isinstance(code, str) else None

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

    def may_issue(self, member_id: str, type_code: str, *, at: int) -> bool:
        """True if the member may issue (and replace) certificates of this type in a
        statement made at ``at`` (its mandate is judged at the statement's time)."""
        return self._may(member_id, type_code, "issue", at)

    def may_revoke(self, member_id: str, type_code: str, *, at: int) -> bool:
        """True if the member may revoke, suspend and reinstate certificates of this
        type in a statement made at ``at`` (its mandate is judged at the statement's time)."""
        return self._may(member_id, type_code, "revoke", at)

    def _may(self, member_id: str, type_code: str, action: Action, at: int) -> bool:
        try:
            self.check_mandate(member_id, type_code, action, at=at)
        except PolicyError:
            return False
        return True

    def check_mandate(self, member_id: str, type_code: str, action: Action, *, at: int) -> CertificateType:
        """The certificate type, if ``member_id`` may ``action`` it in a statement made
        at ``at``; else PolicyError.

        ``"issue"`` covers issue and replace statements; ``"revoke"`` covers revoke,
        suspend and reinstate. The mandate is judged at the statement's time, so a
        mandate withdrawn from a date on still covers what was done before that date.
        Rules: ``unknown-member``, ``unknown-type``, ``mandate``, ``mandate-validity``.
        """
        if action not in ("issue", "revoke"):
            raise MalformedError(f"unknown mandate action {action!r}; expected 'issue' or 'revoke'")
        self.require_member(member_id)
        t = self.require_type(type_code)
        t.check_mandate(member_id, action, at=at, version=self.version)
        return t

    def check_statement_mandate(self, statement: Statement) -> CertificateType:
        """The certificate type, if the statement's issuer may make it at its time.

        Issue and replace statements need an ``"issue"`` mandate; revoke, suspend and
        reinstate statements a ``"revoke"`` one, judged at ``statement.time``. Same
        rules as :meth:`check_mandate`.
        """
        action: Action = "issue" if statement.kind in (Kind.ISSUE, Kind.REPLACE) else "revoke"
        return self.check_mandate(statement.issuer, statement.cert_type, action, at=statement.time)

    # -- keys ------------------------------------------------------------------------

    def find_log_key(self, kid: bytes) -> tuple[Member, LogKey]:
        """The member and log key with key ID ``kid`` (key IDs are unique in a policy).

        PolicyError (``unknown-key``) if no member has such a key. Validity is not
        judged here: see :meth:`log_key`.
        """
        if not isinstance(kid, bytes) or len(kid) != 4:
            raise MalformedError("a key ID is exactly 4 bytes")
        found = self._log_keys_by_id.get(kid)
        if found is not None:
            return found
        raise _fail(
            "unknown-key", f"no member has a log key with key ID {kid.hex()} in policy version {self.version}"
        )

    def log_key(self, member_id: str, kid: bytes, *, at: int, witnessed_at: int | None) -> LogKey:
        """The log key of ``member_id`` with key ID ``kid`` trusted for this statement.

        ``at`` is the statement's time; ``witnessed_at`` is when a checkpoint covering
        its entry was first witnessed (``None`` if it has not been). The key must be
        valid at ``at`` (``valid_from <= at < valid_until``) and, if it was marked
        compromised at T, the entry must have been witnessed before T. A statement
        dated more than :data:`~ledger.clock.CLOCK_SKEW` after the witnessing of its
        entry claims a time from the future. Raises PolicyError naming the rule:
        ``unknown-member``, ``unknown-key``, ``future-time``, ``key-compromised`` or
        ``key-validity``.
        """
        if not isinstance(kid, bytes) or len(kid) != 4:
            raise MalformedError("a key ID is exactly 4 bytes")
        if not _is_time(at):
            raise MalformedError(f"statement time {at!r} is not a time")
        if witnessed_at is not None and not _is_time(witnessed_at):
            raise MalformedError(f"witness time {witnessed_at!r} is not a time")
        m = self.require_member(member_id)
        found = [k for k in m.log_keys if m.log_key_id(k) == kid]
        if not found:
            raise _fail(
                "unknown-key",
                f"member {member_id} has no log key with key ID {kid.hex()} in policy version {self.version}",
            )
        if witnessed_at is not None and at > witnessed_at + CLOCK_SKEW:
            raise _fail(
                "future-time",
                f"the statement time {format_time(at)} is {at - witnessed_at} s after its entry was "
                f"first witnessed ({format_time(witnessed_at)}); at most {CLOCK_SKEW} s of clock skew "
                "is allowed",
            )
        problem = self._key_problem(m, found[0], kid, at=at, witnessed_at=witnessed_at)
        if problem is not None:
            raise problem
        return found[0]

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

    def check_issued(self, now: int, *, skew: int = CLOCK_SKEW) -> None:
        """PolicyError (``future-time``) if this version's issue time is more than
        ``skew`` seconds ahead of ``now``."""
        check_not_future(self.issued, now=now, what=f"issue time of policy version {self.version}", skew=skew)

    def check_fresh(self, witnessed_at: int, *, now: int, skew: int = CLOCK_SKEW) -> None:
        """PolicyError unless the newest witnessed checkpoint is fresh at ``now``.

        ``stale`` if it is older than the freshness limit; ``future-time`` if its time
        is more than ``skew`` seconds ahead of ``now`` (a time from the future is never
        counted as fresh).
        """
        check_not_future(witnessed_at, now=now, what="newest witnessed checkpoint's time", skew=skew)
        age = now - witnessed_at
        if age > self.freshness_seconds:
            raise _fail(
                "stale",
                f"the newest witnessed checkpoint is from {format_time(witnessed_at)}, {age} s before "
                f"{format_time(now)}; the freshness limit is {self.freshness_seconds} s",
            )
