"""Statements (what a department signs) and log entries (what its log stores).

A :class:`Statement` is a canonical msgpack map with small integer keys (compact,
because issue statements travel inside QR codes)::

    0  version         1
    1  kind            1 issue, 2 revoke, 3 suspend, 4 reinstate, 5 replace, 6 policy
    2  issuer          member id of the issuing department
    3  cert            certificate id (GB/T 36904 style, check character validated)
    4  type            certificate type code from the trust policy
    5  time            Unix seconds when the department made the statement
    6  operator        the clerk's pseudonymous operator id
    7  valid_from      Unix seconds (issue, replace)
    8  valid_until     Unix seconds, absent for open-ended certificates (issue, replace)
    9  claims          {claim key: 32-byte salted digest} (issue, replace)
    10 reason          reason code (revoke, suspend, reinstate; optional for replace)
    11 replaces        the certificate id this one supersedes (replace)
    12 policy_version  the trust-policy version the member adopted (policy)
    13 policy_hash     SHA-256 of that version's exact document bytes (policy)

A *policy* statement records that the member adopted a trust-policy version; it has
no certificate id or type (``cert_id`` and ``cert_type`` are ``""`` on the object and
absent from the encoding).

A :class:`SignedStatement` is the statement's exact bytes, the signer's 4-byte key ID
and an Ed25519 signature over ``STATEMENT_CONTEXT || statement bytes``.

An :class:`Entry` is leaf ``i`` of the department's log: a canonical msgpack map
``{0: 1, 1: statement bytes, 2: key ID, 3: signature, 4: prev}`` where ``prev`` is the
RFC 9162 leaf hash of entry ``i-1`` (32 zero bytes for entry 0): the hash chain.
Nothing is ever re-serialised: signatures and hashes cover the bytes as stored.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from types import MappingProxyType
from typing import Any, NamedTuple

import msgpack

from ledger import canonical
from ledger.errors import MalformedError, SignatureError
from ledger.keys import PublicKey, SigningKey
from ledger.log.certid import CertId, is_valid_cert_id

__all__ = [
    "CERTIFICATE_KINDS",
    "ENTRY_VERSION",
    "GENESIS_PREV",
    "STATEMENT_CONTEXT",
    "STATEMENT_VERSION",
    "Entry",
    "Kind",
    "Reason",
    "SignedStatement",
    "Statement",
    "StatementFields",
    "encode_entry",
    "statement_fields",
    "statement_message",
]

STATEMENT_VERSION = 1
ENTRY_VERSION = 1
#: Domain separation for statement signatures.
STATEMENT_CONTEXT = b"certledger/statement/v1\n"
#: ``prev`` of entry 0.
GENESIS_PREV = bytes(32)
MAX_STATEMENT_SIZE = 8 * 1024
MAX_ENTRY_SIZE = MAX_STATEMENT_SIZE + 256
MAX_CLAIMS = 64
DIGEST_SIZE = 32
_MAX_TIME = 2**40

_MEMBER_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_TYPE_CODE = re.compile(r"[a-z0-9][a-z0-9_]{0,62}")
_OPERATOR = re.compile(r"[A-Za-z0-9:_.-]{1,64}")


class Kind(IntEnum):
    """What a statement does."""

    ISSUE = 1
    REVOKE = 2
    SUSPEND = 3
    REINSTATE = 4
    REPLACE = 5
    POLICY = 6

    @property
    def label(self) -> str:
        return self.name.lower()


class Reason(IntEnum):
    """Why a status changed. ``label_zh``/``label_en`` are for people."""

    UNSPECIFIED = 0
    ISSUED_IN_ERROR = 1
    HOLDER_REQUEST = 2
    HOLDER_CEASED = 3
    OBTAINED_BY_FRAUD = 4
    INFORMATION_CHANGED = 5
    LOST_OR_DAMAGED = 6
    UNDER_INVESTIGATION = 7
    ADMINISTRATIVE_PENALTY = 8
    RESOLVED = 9

    @property
    def label_en(self) -> str:
        return _REASON_LABELS[self][1]

    @property
    def label_zh(self) -> str:
        return _REASON_LABELS[self][0]


_REASON_LABELS = {
    Reason.UNSPECIFIED: ("未说明", "unspecified"),
    Reason.ISSUED_IN_ERROR: ("错误发证", "issued in error"),
    Reason.HOLDER_REQUEST: ("持证人申请", "at the holder's request"),
    Reason.HOLDER_CEASED: ("持证主体注销或终止", "the holder has ceased to exist"),
    Reason.OBTAINED_BY_FRAUD: ("以欺骗等不正当手段取得", "obtained by fraud"),
    Reason.INFORMATION_CHANGED: ("登记事项变更", "registered information changed"),
    Reason.LOST_OR_DAMAGED: ("遗失或损毁", "lost or damaged"),
    Reason.UNDER_INVESTIGATION: ("立案调查", "under investigation"),
    Reason.ADMINISTRATIVE_PENALTY: ("行政处罚", "administrative penalty"),
    Reason.RESOLVED: ("问题已整改", "the matter is resolved"),
}

_K_VERSION, _K_KIND, _K_ISSUER, _K_CERT, _K_TYPE, _K_TIME, _K_OPERATOR = 0, 1, 2, 3, 4, 5, 6
_K_VALID_FROM, _K_VALID_UNTIL, _K_CLAIMS, _K_REASON, _K_REPLACES = 7, 8, 9, 10, 11
_K_POLICY_VERSION, _K_POLICY_HASH = 12, 13
_KEYS = tuple(range(14))  # every field's key, in order
_ALWAYS = frozenset({_K_VERSION, _K_KIND, _K_ISSUER, _K_CERT, _K_TYPE, _K_TIME, _K_OPERATOR})
_POLICY = frozenset({_K_VERSION, _K_KIND, _K_ISSUER, _K_TIME, _K_OPERATOR, _K_POLICY_VERSION, _K_POLICY_HASH})
#: Kinds that speak about a certificate (all but POLICY).
CERTIFICATE_KINDS = frozenset({Kind.ISSUE, Kind.REVOKE, Kind.SUSPEND, Kind.REINSTATE, Kind.REPLACE})
_MAX_POLICY_VERSION = 2**53
_ALLOWED = {
    Kind.ISSUE: _ALWAYS | {_K_VALID_FROM, _K_VALID_UNTIL, _K_CLAIMS},
    Kind.REPLACE: _ALWAYS | {_K_VALID_FROM, _K_VALID_UNTIL, _K_CLAIMS, _K_REASON, _K_REPLACES},
    Kind.REVOKE: _ALWAYS | {_K_REASON},
    Kind.SUSPEND: _ALWAYS | {_K_REASON},
    Kind.REINSTATE: _ALWAYS | {_K_REASON},
    Kind.POLICY: _POLICY,
}
_REQUIRED = {
    Kind.ISSUE: _ALWAYS | {_K_VALID_FROM, _K_CLAIMS},
    Kind.REPLACE: _ALWAYS | {_K_VALID_FROM, _K_CLAIMS, _K_REPLACES},
    Kind.REVOKE: _ALWAYS | {_K_REASON},
    Kind.SUSPEND: _ALWAYS | {_K_REASON},
    Kind.REINSTATE: _ALWAYS | {_K_REASON},
    Kind.POLICY: _POLICY,
}
_FIELD_NAMES = {
    _K_VERSION: "version",
    _K_KIND: "kind",
    _K_ISSUER: "issuer",
    _K_CERT: "cert_id",
    _K_TYPE: "cert_type",
    _K_TIME: "time",
    _K_OPERATOR: "operator",
    _K_VALID_FROM: "valid_from",
    _K_VALID_UNTIL: "valid_until",
    _K_CLAIMS: "claim_digests",
    _K_REASON: "reason",
    _K_REPLACES: "replaces",
    _K_POLICY_VERSION: "policy_version",
    _K_POLICY_HASH: "policy_hash",
}


def _time(value: Any, name: str) -> int:
    if type(value) is not int or not 0 <= value < _MAX_TIME:
        raise MalformedError(f"statement: {name} must be a non-negative integer number of seconds")
    return value


@dataclass(frozen=True, kw_only=True)
class Statement:
    """A statement a department signs. Validated on construction.

    ``cert_id`` and ``cert_type`` are required for the certificate kinds and must be
    ``""`` (meaning absent) for a :attr:`Kind.POLICY` statement, which carries
    ``policy_version`` and ``policy_hash`` instead.
    """

    kind: Kind
    issuer: str
    cert_id: str = ""
    cert_type: str = ""
    time: int
    operator: str
    valid_from: int | None = None
    valid_until: int | None = None
    claim_digests: Mapping[int, bytes] | None = None
    reason: Reason | None = None
    replaces: str | None = None
    policy_version: int | None = None
    policy_hash: bytes | None = None
    version: int = STATEMENT_VERSION

    def __post_init__(self) -> None:
        if type(self.version) is not int or self.version != STATEMENT_VERSION:
            raise MalformedError(f"statement: unknown version {self.version!r} (the integer 1 is expected)")
        kind: object = self.kind  # a caller may pass anything; bool is an int subclass
        if isinstance(kind, bool):
            raise MalformedError("statement: kind must be an integer, not a boolean")
        try:
            object.__setattr__(self, "kind", Kind(self.kind))
        except (ValueError, TypeError):
            raise MalformedError(f"statement: unknown kind {self.kind!r}") from None
        if not isinstance(self.issuer, str) or not _MEMBER_ID.fullmatch(self.issuer):
            raise MalformedError(f"statement: issuer {self.issuer!r} is not a valid member id")
        if self.kind == Kind.POLICY:
            if self.cert_id != "" or self.cert_type != "":
                raise MalformedError("statement: a policy statement has no certificate id or type")
        else:
            CertId.parse(self.cert_id)
            if not isinstance(self.cert_type, str) or not _TYPE_CODE.fullmatch(self.cert_type):
                raise MalformedError(
                    f"statement: certificate type {self.cert_type!r} is not a valid type code"
                )
        _time(self.time, "time")
        if not isinstance(self.operator, str) or not _OPERATOR.fullmatch(self.operator):
            raise MalformedError(f"statement: operator id {self.operator!r} is not valid")
        present = {k for k, v in zip(_KEYS, self._raw_fields(), strict=True) if v is not None}
        allowed, required = _ALLOWED[self.kind], _REQUIRED[self.kind]
        for k in sorted(present - allowed):
            raise MalformedError(f"statement: a {self.kind.label} statement has no {_FIELD_NAMES[k]}")
        for k in sorted(required - present):
            raise MalformedError(f"statement: a {self.kind.label} statement needs {_FIELD_NAMES[k]}")
        if self.valid_from is not None:
            _time(self.valid_from, "valid_from")
        if self.valid_until is not None:
            _time(self.valid_until, "valid_until")
            if self.valid_from is not None and self.valid_until <= self.valid_from:
                raise MalformedError("statement: valid_until must be after valid_from")
        if self.claim_digests is not None:
            digests = self.claim_digests
            if not isinstance(digests, Mapping) or not 0 < len(digests) <= MAX_CLAIMS:
                raise MalformedError(f"statement: claim digests must be a map of 1 to {MAX_CLAIMS} entries")
            for key, digest in digests.items():
                if type(key) is not int or not 0 <= key <= 255:
                    raise MalformedError(f"statement: claim key {key!r} must be an integer 0..255")
                if type(digest) is not bytes or len(digest) != DIGEST_SIZE:
                    raise MalformedError(f"statement: digest of claim {key} must be {DIGEST_SIZE} bytes")
            object.__setattr__(self, "claim_digests", MappingProxyType(dict(sorted(digests.items()))))
        if self.reason is not None:
            reason: object = self.reason
            if isinstance(reason, bool):
                raise MalformedError("statement: reason must be an integer, not a boolean")
            try:
                object.__setattr__(self, "reason", Reason(self.reason))
            except (ValueError, TypeError):
                raise MalformedError(f"statement: unknown reason code {self.reason!r}") from None
        if self.policy_version is not None and (
            type(self.policy_version) is not int or not 1 <= self.policy_version < _MAX_POLICY_VERSION
        ):
            raise MalformedError("statement: policy_version must be an integer from 1 to 2^53-1")
        if self.policy_hash is not None and (
            type(self.policy_hash) is not bytes or len(self.policy_hash) != DIGEST_SIZE
        ):
            raise MalformedError(f"statement: policy_hash must be {DIGEST_SIZE} bytes (a SHA-256)")
        if self.replaces is not None:
            CertId.parse(self.replaces)
            if self.replaces == self.cert_id:
                raise MalformedError("statement: a certificate cannot replace itself")

    @classmethod
    def _certificate(
        cls,
        *,
        kind: Kind,
        issuer: str,
        cert_id: CertId,
        cert_type: str,
        time: int,
        operator: str,
        valid_from: int,
        valid_until: int | None,
        claim_digests: dict[int, bytes],
        reason: Reason | None,
        replaces: str | None,
    ) -> Statement:
        """An issue or replace statement from parts an issuer has just built: ``cert_id``
        is a :class:`CertId` (well-formed by construction) and ``claim_digests`` were
        computed here ({claim key 0..255: 32-byte digest}). Every other field is checked
        by the rules of construction, with the same messages; the tests hold the two
        paths to the same results."""
        if kind is not Kind.ISSUE and kind is not Kind.REPLACE:
            raise MalformedError(f"statement: only issue and replace statements are built here, not {kind!r}")
        if not isinstance(issuer, str) or not _MEMBER_ID.fullmatch(issuer):
            raise MalformedError(f"statement: issuer {issuer!r} is not a valid member id")
        if not isinstance(cert_type, str) or not _TYPE_CODE.fullmatch(cert_type):
            raise MalformedError(f"statement: certificate type {cert_type!r} is not a valid type code")
        _time(time, "time")
        if not isinstance(operator, str) or not _OPERATOR.fullmatch(operator):
            raise MalformedError(f"statement: operator id {operator!r} is not valid")
        extra: tuple[tuple[int, object], ...] = ((_K_REASON, reason), (_K_REPLACES, replaces))
        for k, v in extra if kind is Kind.ISSUE else ():
            if v is not None:
                raise MalformedError(f"statement: a {kind.label} statement has no {_FIELD_NAMES[k]}")
        needed: tuple[tuple[int, object], ...] = (
            (_K_VALID_FROM, valid_from),
            (_K_REPLACES, replaces if kind is Kind.REPLACE else ""),
        )
        for k, v in needed:
            if v is None:
                raise MalformedError(f"statement: a {kind.label} statement needs {_FIELD_NAMES[k]}")
        _time(valid_from, "valid_from")
        if valid_until is not None:
            _time(valid_until, "valid_until")
            if valid_until <= valid_from:
                raise MalformedError("statement: valid_until must be after valid_from")
        if not 0 < len(claim_digests) <= MAX_CLAIMS:
            raise MalformedError(f"statement: claim digests must be a map of 1 to {MAX_CLAIMS} entries")
        if reason is not None:
            given: object = reason  # a caller may pass anything; bool is an int subclass
            if isinstance(given, bool):
                raise MalformedError("statement: reason must be an integer, not a boolean")
            try:
                reason = Reason(reason)
            except (ValueError, TypeError):
                raise MalformedError(f"statement: unknown reason code {reason!r}") from None
        text = str(cert_id)
        if replaces is not None:
            CertId.parse(replaces)
            if replaces == text:
                raise MalformedError("statement: a certificate cannot replace itself")
        keys = list(claim_digests)
        digests = claim_digests if keys == sorted(keys) else dict(sorted(claim_digests.items()))
        st = object.__new__(cls)
        st.__dict__.update(  # a frozen dataclass: its fields set the way its __init__ would
            kind=kind,
            issuer=issuer,
            cert_id=text,
            cert_type=cert_type,
            time=time,
            operator=operator,
            valid_from=valid_from,
            valid_until=valid_until,
            claim_digests=MappingProxyType(digests),
            reason=reason,
            replaces=replaces,
            policy_version=None,
            policy_hash=None,
            version=STATEMENT_VERSION,
        )
        return st

    @classmethod
    def policy_adoption(
        cls, *, issuer: str, time: int, operator: str, policy_version: int, document: bytes
    ) -> Statement:
        """The statement that member ``issuer`` adopted trust-policy version
        ``policy_version``, whose exact document bytes (the signed policy note, as
        received) are ``document``: it records their SHA-256."""
        if not isinstance(document, bytes):
            raise MalformedError("statement: the policy document must be bytes")
        return cls(
            kind=Kind.POLICY,
            issuer=issuer,
            time=time,
            operator=operator,
            policy_version=policy_version,
            policy_hash=hashlib.sha256(document).digest(),
        )

    def _raw_fields(self) -> tuple[Any, ...]:
        """The fields in key order (:data:`_KEYS`) as given, ``""`` ids as None."""
        return (
            self.version,
            self.kind,
            self.issuer,
            self.cert_id or None,
            self.cert_type or None,
            self.time,
            self.operator,
            self.valid_from,
            self.valid_until,
            self.claim_digests,
            self.reason,
            self.replaces,
            self.policy_version,
            self.policy_hash,
        )

    def to_bytes(self) -> bytes:
        """The canonical encoding (what is signed).

        A validated statement's fields are already canonical values, its integer keys
        come in order and its claim digests are sorted, so plain msgpack of the map is
        the canonical encoding (this is the append hot path; the tests check it against
        :func:`ledger.canonical.encode`).
        """
        out: dict[int, Any] = {_K_VERSION: self.version, _K_KIND: int(self.kind), _K_ISSUER: self.issuer}
        if self.kind is not Kind.POLICY:
            out[_K_CERT] = self.cert_id
            out[_K_TYPE] = self.cert_type
        out[_K_TIME] = self.time
        out[_K_OPERATOR] = self.operator
        if self.valid_from is not None:
            out[_K_VALID_FROM] = self.valid_from
        if self.valid_until is not None:
            out[_K_VALID_UNTIL] = self.valid_until
        if self.claim_digests is not None:
            out[_K_CLAIMS] = dict(self.claim_digests)
        if self.reason is not None:
            out[_K_REASON] = int(self.reason)
        if self.replaces is not None:
            out[_K_REPLACES] = self.replaces
        if self.policy_version is not None:
            out[_K_POLICY_VERSION] = self.policy_version
        if self.policy_hash is not None:
            out[_K_POLICY_HASH] = self.policy_hash
        return _pack(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> Statement:
        """Parse canonical statement bytes strictly."""
        raw = canonical.decode(data, max_size=MAX_STATEMENT_SIZE, max_depth=2, what="statement")
        if not isinstance(raw, dict):
            raise MalformedError("statement: not a map")
        unknown = [k for k in raw if k not in _FIELD_NAMES]
        if unknown:
            raise MalformedError(f"statement: unknown field {unknown[0]!r}")
        nil = [k for k, v in raw.items() if v is None]
        if nil:  # absent is not written at all: a nil would be a second encoding
            raise MalformedError(f"statement: {_FIELD_NAMES[nil[0]]} is nil (an absent field is left out)")
        version = raw.get(_K_VERSION)
        if type(version) is not int or version != STATEMENT_VERSION:
            raise MalformedError(f"statement: unknown version {version!r} (the integer 1 is expected)")
        kwargs = {_FIELD_NAMES[k]: v for k, v in raw.items()}
        kind = kwargs.get("kind")
        if type(kind) is not int:
            raise MalformedError("statement: kind must be an integer")
        for k in (_K_CERT, _K_TYPE):  # "" is how the object says "absent": never encoded
            if k in raw and raw[k] == "":
                raise MalformedError(f"statement: {_FIELD_NAMES[k]} is empty")
        reason = kwargs.get("reason")
        if reason is not None and type(reason) is not int:
            raise MalformedError("statement: reason must be an integer")
        claims = kwargs.get("claim_digests")
        if claims is not None and not isinstance(claims, dict):
            raise MalformedError("statement: claim digests must be a map")
        try:
            return cls(**kwargs)
        except TypeError as e:  # wrong value types that validation did not name
            raise MalformedError(f"statement: {e}") from None

    def to_json(self) -> dict[str, Any]:
        """A readable rendering for tools and logs (not a signed form): the fields in
        key order, absent ones left out."""
        out: dict[str, Any] = {"version": self.version, "kind": _KIND_LABELS[self.kind]}
        out["issuer"] = self.issuer
        if self.cert_id:
            out["cert_id"] = self.cert_id
        if self.cert_type:
            out["cert_type"] = self.cert_type
        out["time"] = self.time
        out["operator"] = self.operator
        if self.valid_from is not None:
            out["valid_from"] = self.valid_from
        if self.valid_until is not None:
            out["valid_until"] = self.valid_until
        if self.claim_digests is not None:
            out["claim_digests"] = {str(k): d.hex() for k, d in self.claim_digests.items()}
        if self.reason is not None:
            out["reason"] = self.reason.name.lower()
        if self.replaces is not None:
            out["replaces"] = self.replaces
        if self.policy_version is not None:
            out["policy_version"] = self.policy_version
        if self.policy_hash is not None:
            out["policy_hash"] = self.policy_hash.hex()
        return out


_KIND_LABELS = {k: k.label for k in Kind}


class StatementFields(NamedTuple):
    """What a log's certificate index keeps of a statement (``""`` ids: a policy statement)."""

    kind: int
    issuer: str
    cert_id: str
    cert_type: str
    time: int
    replaces: str | None


def _layouts() -> dict[tuple[int, ...], frozenset[int]]:
    """Every key sequence a canonical certificate statement can have, with the kinds
    it fits (keys in increasing order, all required keys, only allowed ones)."""
    out: dict[tuple[int, ...], set[int]] = {}
    for kind in CERTIFICATE_KINDS:
        optional = sorted(_ALLOWED[kind] - _REQUIRED[kind])
        for n in range(1 << len(optional)):
            keys = _REQUIRED[kind] | {k for i, k in enumerate(optional) if n >> i & 1}
            out.setdefault(tuple(sorted(keys)), set()).add(int(kind))
    return {k: frozenset(v) for k, v in out.items()}


_LAYOUTS = _layouts()
_WITH_VALIDITY = frozenset({int(Kind.ISSUE), int(Kind.REPLACE)})
_REASON_CODES = frozenset(int(r) for r in Reason)
#: (issuer, type, operator) triples that matched their patterns, up to a bound.
_GOOD_NAMES: set[tuple[str, str, str]] = set()
_MAX_GOOD_NAMES = 4096


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False, ext_hook=_no_ext, timestamp=0)


def _no_ext(code: int, data: bytes) -> Any:
    raise ValueError("extension type")


def _lean_fields(data: bytes) -> StatementFields | None:
    """The fields of a certificate statement in canonical form that passes every rule of
    :meth:`Statement.from_bytes`, or None for anything else (then the strict parser
    decides). One decode, one re-encode compared with the bytes, and the rules checked
    on the decoded map; the tests hold it to accepting exactly what the strict parser
    accepts, with the same fields."""
    if type(data) is not bytes or len(data) > MAX_STATEMENT_SIZE:
        return None
    try:
        raw = _unpack(data)
    except Exception:  # any decoding problem: the strict parser names it
        return None
    if type(raw) is not dict:
        return None
    # Integer keys (True == 1 and 0.0 == 0 in a tuple comparison) in increasing order
    # (msgpack's canonical order for small integers), all required ones and only
    # allowed ones for the kind.
    for k in raw:
        if type(k) is not int:
            return None
    kinds = _LAYOUTS.get(tuple(raw))
    kind = raw.get(_K_KIND)
    if kinds is None or type(kind) is not int or kind not in kinds:
        return None
    version, issuer, cert_id, cert_type = raw[_K_VERSION], raw[_K_ISSUER], raw[_K_CERT], raw[_K_TYPE]
    time, operator = raw[_K_TIME], raw[_K_OPERATOR]
    if (
        type(version) is not int
        or version != STATEMENT_VERSION
        or type(issuer) is not str
        or type(cert_type) is not str
        or type(time) is not int
        or type(operator) is not str
        or not 0 <= time < _MAX_TIME
        or not is_valid_cert_id(cert_id)
        or _pack(raw) != data
    ):
        return None
    names = (issuer, cert_type, operator)  # a log repeats a few of these: remembered
    if names not in _GOOD_NAMES:
        if not (
            _MEMBER_ID.fullmatch(issuer) and _TYPE_CODE.fullmatch(cert_type) and _OPERATOR.fullmatch(operator)
        ):
            return None
        if len(_GOOD_NAMES) < _MAX_GOOD_NAMES:
            _GOOD_NAMES.add(names)
    if kind in _WITH_VALIDITY:
        valid_from, valid_until, claims = raw[_K_VALID_FROM], raw.get(_K_VALID_UNTIL), raw[_K_CLAIMS]
        if type(valid_from) is not int or not 0 <= valid_from < _MAX_TIME:
            return None
        if _K_VALID_UNTIL in raw and (
            type(valid_until) is not int or not valid_from < valid_until < _MAX_TIME
        ):
            return None
        if type(claims) is not dict or not 0 < len(claims) <= MAX_CLAIMS:
            return None
        previous = -1
        for ck, digest in claims.items():
            if type(ck) is not int or not previous < ck <= 255 or type(digest) is not bytes:
                return None
            if len(digest) != DIGEST_SIZE:
                return None
            previous = ck
    if _K_REASON in raw:
        reason = raw[_K_REASON]
        if type(reason) is not int or reason not in _REASON_CODES:
            return None
    replaces = raw.get(_K_REPLACES)
    if _K_REPLACES in raw and (not is_valid_cert_id(replaces) or replaces == cert_id):
        return None
    return StatementFields(kind, issuer, cert_id, cert_type, time, replaces)


def statement_fields(data: bytes) -> StatementFields:
    """The indexed fields of a statement, parsed as strictly as :meth:`Statement.from_bytes`
    (the same refusals with the same messages), without building the full object for
    the usual canonical certificate statement (a log mirror's hot path)."""
    fields = _lean_fields(data)
    if fields is not None:
        return fields
    st = Statement.from_bytes(data)
    return StatementFields(int(st.kind), st.issuer, st.cert_id, st.cert_type, st.time, st.replaces)


def statement_message(statement_bytes: bytes) -> bytes:
    """The exact bytes a statement signature covers."""
    return STATEMENT_CONTEXT + statement_bytes


def _check_signature_parts(key_id: object, signature: object) -> None:
    if type(key_id) is not bytes or len(key_id) != 4:
        raise MalformedError("signed statement: key id must be 4 bytes")
    if type(signature) is not bytes or len(signature) != 64:
        raise MalformedError("signed statement: signature must be 64 bytes")


@dataclass(frozen=True, kw_only=True)
class SignedStatement:
    """A statement's exact bytes with the signer's key ID and signature."""

    statement_bytes: bytes
    key_id: bytes
    signature: bytes
    statement: Statement = field(init=False, repr=False, compare=False)
    # The public key of the SigningKey that made the signature in this process (set
    # only by sign()); a log store appending with that key need not verify it again.
    _signed_by: PublicKey | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        _check_signature_parts(self.key_id, self.signature)
        object.__setattr__(self, "statement", Statement.from_bytes(self.statement_bytes))

    @classmethod
    def sign(cls, statement: Statement, *, key: SigningKey, key_id: bytes) -> SignedStatement:
        """Sign ``statement`` with ``key``, whose 4-byte C2SP key ID is ``key_id``."""
        data = statement.to_bytes()
        signed = cls._from_parts(statement, data, key_id, key.sign(STATEMENT_CONTEXT + data))
        object.__setattr__(signed, "_signed_by", key.public_key)
        return signed

    @classmethod
    def from_statement(cls, statement: Statement, *, key_id: bytes, signature: bytes) -> SignedStatement:
        """A validated ``statement`` with a key ID and signature (nothing verified).

        Its bytes are :meth:`Statement.to_bytes`, the canonical encoding, so they are not
        parsed again.
        """
        if not isinstance(statement, Statement):
            raise MalformedError("signed statement: not a Statement")
        return cls._from_parts(statement, statement.to_bytes(), key_id, signature)

    @classmethod
    def _from_parts(
        cls, statement: Statement, data: bytes, key_id: bytes, signature: bytes
    ) -> SignedStatement:
        _check_signature_parts(key_id, signature)
        signed = object.__new__(cls)
        object.__setattr__(signed, "statement_bytes", data)
        object.__setattr__(signed, "key_id", key_id)
        object.__setattr__(signed, "signature", signature)
        object.__setattr__(signed, "statement", statement)
        object.__setattr__(signed, "_signed_by", None)
        return signed

    def signed_here_by(self, public_key: PublicKey) -> bool:
        """True if :meth:`sign` made this signature in this process with ``public_key``'s key."""
        return self._signed_by is not None and self._signed_by.raw == public_key.raw

    def verify(self, public_key: PublicKey) -> None:
        """Raise :class:`~ledger.errors.SignatureError` unless ``public_key`` signed this."""
        if not public_key.is_valid(self.signature, statement_message(self.statement_bytes)):
            raise SignatureError("statement signature does not verify")


@dataclass(frozen=True, kw_only=True)
class Entry:
    """One log entry: a signed statement chained to the previous entry."""

    signed: SignedStatement
    prev: bytes

    def __post_init__(self) -> None:
        if type(self.prev) is not bytes or len(self.prev) != 32:
            raise MalformedError("entry: prev must be a 32-byte hash")

    def to_bytes(self) -> bytes:
        """The canonical encoding: the Merkle leaf data."""
        return encode_entry(
            statement_bytes=self.signed.statement_bytes,
            key_id=self.signed.key_id,
            signature=self.signed.signature,
            prev=self.prev,
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Entry:
        """Parse canonical entry bytes strictly (including the statement inside)."""
        raw = canonical.decode(data, max_size=MAX_ENTRY_SIZE, max_depth=1, what="entry")
        if not isinstance(raw, dict) or set(raw) != {0, 1, 2, 3, 4}:
            raise MalformedError("entry: must be a map with exactly the keys 0..4")
        if type(raw[0]) is not int or raw[0] != ENTRY_VERSION:
            raise MalformedError(f"entry: unknown version {raw[0]!r} (the integer 1 is expected)")
        for k in (1, 2, 3, 4):
            if type(raw[k]) is not bytes:
                raise MalformedError("entry: fields 1..4 must be byte strings")
        signed = SignedStatement(statement_bytes=raw[1], key_id=raw[2], signature=raw[3])
        return cls(signed=signed, prev=raw[4])


def encode_entry(*, statement_bytes: bytes, key_id: bytes, signature: bytes, prev: bytes) -> bytes:
    """Canonical entry bytes from their parts (no parsing; the writer's fast path).

    Integer keys in order and byte-string values: plain msgpack is the canonical form.
    """
    return _pack({0: ENTRY_VERSION, 1: statement_bytes, 2: key_id, 3: signature, 4: prev})


def _pack(value: dict[int, Any]) -> bytes:
    data: bytes = msgpack.packb(value, use_bin_type=True)
    return data
