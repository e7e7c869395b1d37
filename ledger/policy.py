"""The consortium trust policy: who belongs, which keys speak for them, who may do what.

This module holds the policy's data model. Every value is validated on construction;
times are Unix seconds (UTC).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ledger.errors import SchemaError
from ledger.keys import SIG_TYPE_COSIGNATURE, SIG_TYPE_ED25519, PublicKey, VerifierKey, check_key_name, key_id

__all__ = [
    "CLAIM_KINDS",
    "CertificateType",
    "ClaimSpec",
    "LogKey",
    "Member",
    "Policy",
]

_MEMBER_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_TYPE_CODE = re.compile(r"[a-z0-9][a-z0-9_]{0,62}")
_CLAIM_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
_PURPOSE = re.compile(r"[a-z][a-z0-9_]{0,62}")
_CODE = re.compile(r"[0-9A-Z]{1,40}")
#: Value kinds a claim may have. ``text``: a Unicode string; ``date``: ``YYYY-MM-DD``;
#: ``integer``: a whole number; ``code``: upper-case letters and digits (identifiers).
CLAIM_KINDS = frozenset({"text", "date", "integer", "code"})


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise SchemaError(message)


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
        _require(type(self.valid_from) is int and self.valid_from >= 0, "log key: valid_from must be a time")
        if self.valid_until is not None:
            _require(
                type(self.valid_until) is int and self.valid_until > self.valid_from,
                "log key: valid_until must be after valid_from",
            )
        if self.compromised_at is not None:
            _require(
                type(self.compromised_at) is int and self.compromised_at >= 0,
                "log key: compromised_at must be a time",
            )


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
        _require(isinstance(self.name, str) and 0 < len(self.name) <= 200, f"member {self.id}: name")
        try:
            check_key_name(self.origin)
        except Exception as e:
            raise SchemaError(f"member {self.id}: log origin: {e}") from None
        _require(
            isinstance(self.issuer_code, str) and bool(_CODE.fullmatch(self.issuer_code)),
            f"member {self.id}: issuer_code must be upper-case letters and digits",
        )
        _require(
            isinstance(self.base_url, str) and self.base_url.startswith(("https://", "http://")),
            f"member {self.id}: base_url must be an http(s) URL",
        )
        object.__setattr__(self, "log_keys", tuple(self.log_keys))
        _require(len(self.log_keys) > 0, f"member {self.id}: at least one log key")
        _require(
            isinstance(self.witness_key, VerifierKey) and self.witness_key.sig_type == SIG_TYPE_COSIGNATURE,
            f"member {self.id}: witness_key must be a cosignature (type 0x04) verifier key",
        )

    def log_key_id(self, key: LogKey) -> bytes:
        """The 4-byte C2SP key ID of ``key`` under this member's origin."""
        return key_id(self.origin, SIG_TYPE_ED25519, key.public_key.raw)


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
        _require(isinstance(self.label, str) and 0 < len(self.label) <= 100, f"claim {self.name}: label")
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
    ``max_validity_days`` of ``None`` allows open-ended certificates.
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
        _require(isinstance(self.name, str) and 0 < len(self.name) <= 100, f"type {self.code}: name")
        _require(
            isinstance(self.national_code, str) and bool(_CODE.fullmatch(self.national_code)),
            f"type {self.code}: national_code must be upper-case letters and digits",
        )
        claims = tuple(sorted(self.claims, key=lambda c: c.key))
        object.__setattr__(self, "claims", claims)
        _require(0 < len(claims) <= 64, f"type {self.code}: 1 to 64 claims")
        _require(len({c.key for c in claims}) == len(claims), f"type {self.code}: claim keys must be unique")
        names = {c.name for c in claims}
        _require(len(names) == len(claims), f"type {self.code}: claim names must be unique")
        object.__setattr__(self, "issuers", frozenset(self.issuers))
        object.__setattr__(self, "revokers", frozenset(self.revokers))
        if self.max_validity_days is not None:
            _require(
                type(self.max_validity_days) is int and self.max_validity_days > 0,
                f"type {self.code}: max_validity_days must be positive",
            )
        purposes = {}
        for purpose, wanted in dict(self.purposes).items():
            _require(isinstance(purpose, str) and bool(_PURPOSE.fullmatch(purpose)), f"purpose {purpose!r}")
            needed = tuple(wanted)
            for n in needed:
                _require(n in names, f"type {self.code}: purpose {purpose} names unknown claim {n!r}")
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
        _require(type(self.version) is int and self.version >= 1, "policy version must be a positive integer")
        _require(type(self.expires) is int and self.expires > 0, "policy expiry must be a time")
        object.__setattr__(self, "members", tuple(self.members))
        object.__setattr__(self, "types", tuple(self.types))
        object.__setattr__(self, "governance_keys", tuple(self.governance_keys))
        ids = [m.id for m in self.members]
        _require(len(set(ids)) == len(ids), "member ids must be unique")
        _require(len({m.origin for m in self.members}) == len(ids), "log origins must be unique")
        codes = [t.code for t in self.types]
        _require(len(set(codes)) == len(codes), "certificate type codes must be unique")
        for t in self.types:
            for who in t.issuers | t.revokers:
                _require(who in ids, f"type {t.code} names unknown member {who!r}")
        _require(
            type(self.witness_quorum) is int and 0 <= self.witness_quorum < max(len(ids), 1),
            "witness quorum must be between 0 and the number of other members",
        )
        _require(
            type(self.freshness_seconds) is int and self.freshness_seconds > 0,
            "freshness limit must be positive",
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
            type(self.governance_threshold) is int
            and 1 <= self.governance_threshold <= len(self.governance_keys),
            "governance threshold must be between 1 and the number of governance keys",
        )

    def member(self, member_id: str) -> Member | None:
        """The member with this id, or None."""
        for m in self.members:
            if m.id == member_id:
                return m
        return None

    def certificate_type(self, code: str) -> CertificateType | None:
        """The certificate type with this code, or None."""
        for t in self.types:
            if t.code == code:
                return t
        return None
