"""The trust-policy document: one policy version as readable, canonical text.

A policy version travels as a C2SP signed note whose text is::

    certledger/policy/v1
    {
      "consortium": "consortium.example.gov.cn",
      "version": 2,
      "issued": "2025-01-01T00:00:00Z",
      "expires": "2026-01-01T00:00:00Z",
      ...
    }

The first line names the format; the rest is the policy as pretty-printed JSON (UTF-8,
two-space indent, arrays and objects of plain values on one line when that line part
is at most 120 characters, Chinese text as itself, keys in the fixed order of :func:`to_json`,
``null`` for an absent optional value, times as RFC 3339 UTC strings, public keys as
signed-note verifier-key strings, a mandate without a window as the member id alone)
followed by a newline. There is exactly one text
for each policy: :func:`parse_text` rebuilds the policy, renders it again with
:func:`render` and rejects the text unless the two are identical, so what a
department reviews is exactly what it signs and what every verifier parses.

The governance signatures are the note's signature lines (Ed25519, signature type
0x01, key name = the governance key's name), made over the exact text bytes. An
unsigned proposal is just the text (a file without the blank line and signatures);
the first governance key holder to sign turns it into a signed note.

Parsing is strict: the size is capped before anything else, the JSON nesting depth is
capped, duplicate keys, unknown or missing fields, floats and non-canonical forms are
rejected, and at most :data:`MAX_SIGNATURES` signatures are accepted. Every failure is
a :class:`~ledger.errors.MalformedError` (a :class:`~ledger.errors.TooLargeError` for a
cap, a :class:`~ledger.errors.SchemaError` for a value the policy model refuses).
Nothing here verifies a signature: :mod:`ledger.trust.trust` does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from json.encoder import encode_basestring  # the C encoder json.dumps uses for str
from typing import Any

from ledger.errors import MalformedError, SchemaError, TooLargeError
from ledger.files import loads_json
from ledger.keys import SIG_TYPE_COSIGNATURE, SIG_TYPE_ED25519, SigningKey, VerifierKey
from ledger.log import note
from ledger.trust.policy import (
    MAX_MANDATES,
    MAX_TIME,
    CertificateType,
    ClaimSpec,
    LogKey,
    Mandate,
    Member,
    Policy,
    format_time,
)

__all__ = [
    "FORMAT_LINE",
    "MAX_DEPTH",
    "MAX_DOCUMENT_SIZE",
    "MAX_SIGNATURES",
    "PolicyDocument",
    "add_signature",
    "from_json",
    "parse_document",
    "parse_proposal",
    "parse_text",
    "parse_time",
    "render",
    "sign_proposal",
    "to_json",
]

#: First line of every policy document's text.
FORMAT_LINE = "certledger/policy/v1"
#: Cap on a policy document's size in bytes (text and signatures).
MAX_DOCUMENT_SIZE = 1024 * 1024
#: Cap on the number of signature lines on one policy document.
MAX_SIGNATURES = 64
#: Cap on the JSON nesting depth (a policy needs 5).
MAX_DEPTH = 8
_MAX_INT_DIGITS = 20
_FLAT_WIDTH = 120
_TIME = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})Z")

_POLICY_FIELDS = (
    "consortium",
    "version",
    "issued",
    "expires",
    "governance",
    "witness_quorum",
    "freshness_seconds",
    "members",
    "types",
)
_GOVERNANCE_FIELDS = ("threshold", "keys")
_MEMBER_FIELDS = ("id", "name", "origin", "issuer_code", "base_url", "witness_key", "log_keys")
_LOG_KEY_FIELDS = ("key", "valid_from", "valid_until", "compromised_at")
_TYPE_FIELDS = (
    "code",
    "name",
    "national_code",
    "max_validity_days",
    "issuers",
    "revokers",
    "claims",
    "purposes",
)
_CLAIM_FIELDS = ("key", "name", "label", "kind", "required", "max_length")
_MANDATE_FIELDS = ("member", "valid_from", "valid_until")


# -- rendering ---------------------------------------------------------------------


def _opt_time(t: int | None) -> str | None:
    return None if t is None else format_time(t)


def _mandate_json(m: Mandate) -> str | dict[str, Any]:
    if m.open:
        return m.member
    return {
        "member": m.member,
        "valid_from": _opt_time(m.valid_from),
        "valid_until": _opt_time(m.valid_until),
    }


def to_json(policy: Policy) -> dict[str, Any]:
    """The policy as a JSON value with every key in its fixed order."""
    return {
        "consortium": policy.consortium,
        "version": policy.version,
        "issued": format_time(policy.issued),
        "expires": format_time(policy.expires),
        "governance": {
            "threshold": policy.governance_threshold,
            "keys": [str(k) for k in policy.governance_keys],
        },
        "witness_quorum": policy.witness_quorum,
        "freshness_seconds": policy.freshness_seconds,
        "members": [
            {
                "id": m.id,
                "name": m.name,
                "origin": m.origin,
                "issuer_code": m.issuer_code,
                "base_url": m.base_url,
                "witness_key": str(m.witness_key),
                "log_keys": [
                    {
                        "key": str(m.log_verifier_key(k)),
                        "valid_from": format_time(k.valid_from),
                        "valid_until": _opt_time(k.valid_until),
                        "compromised_at": _opt_time(k.compromised_at),
                    }
                    for k in m.log_keys
                ],
            }
            for m in policy.members
        ],
        "types": [
            {
                "code": t.code,
                "name": t.name,
                "national_code": t.national_code,
                "max_validity_days": t.max_validity_days,
                "issuers": [_mandate_json(m) for m in t.issuers],
                "revokers": [_mandate_json(m) for m in t.revokers],
                "claims": [
                    {
                        "key": c.key,
                        "name": c.name,
                        "label": c.label,
                        "kind": c.kind,
                        "required": c.required,
                        "max_length": c.max_length,
                    }
                    for c in t.claims
                ],
                "purposes": {p: list(t.purposes[p]) for p in sorted(t.purposes)},
            }
            for t in policy.types
        ],
    }


def _escape(ch: str) -> str:
    code = ord(ch)
    if code > 0xFFFF:
        code -= 0x10000
        return f"\\u{0xD800 | (code >> 10):04x}\\u{0xDC00 | (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if type(value) is int:
        return str(value)
    if isinstance(value, str):
        # json.dumps escapes quotes, backslashes and C0 controls; anything else that is
        # not printable (DEL, C1 controls, format characters, line separators,
        # unassigned code points) is escaped too, so the text stays readable and free
        # of characters a signed note forbids.
        out: str = encode_basestring(value)
        if out.isprintable():
            return out
        return "".join(ch if ch.isprintable() else _escape(ch) for ch in out)
    raise MalformedError(f"cannot render a {type(value).__name__} in a policy document")


def _pretty(value: Any, indent: str = "") -> str:
    """Two-space indented JSON; arrays and objects of plain values on one line if short."""
    inner = indent + "  "
    if isinstance(value, list):
        if not value:
            return "[]"
        if all(not isinstance(v, list | dict) for v in value):
            flat = "[" + ", ".join(_scalar(v) for v in value) + "]"
            if len(flat) <= _FLAT_WIDTH:
                return flat
        return "[\n" + ",\n".join(inner + _pretty(v, inner) for v in value) + "\n" + indent + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        if all(not isinstance(v, list | dict) for v in value.values()):
            flat = "{" + ", ".join(f"{_scalar(k)}: {_scalar(v)}" for k, v in value.items()) + "}"
            if len(flat) <= _FLAT_WIDTH:
                return flat
        items = (f"{inner}{_scalar(k)}: {_pretty(v, inner)}" for k, v in value.items())
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    return _scalar(value)


def render(policy: Policy) -> str:
    """The policy document's text: the format line, the JSON, and a final newline."""
    return f"{FORMAT_LINE}\n{_pretty(to_json(policy))}\n"


# -- parsing -----------------------------------------------------------------------


def parse_time(value: object, where: str = "time") -> int:
    """An RFC 3339 UTC time ``YYYY-MM-DDTHH:MM:SSZ`` as Unix seconds."""
    if not isinstance(value, str) or not (m := _TIME.fullmatch(value)):
        raise MalformedError(f"{where}: expected an RFC 3339 UTC time like 2025-01-01T00:00:00Z")
    year, month, day, hour, minute, second = (int(g) for g in m.groups())
    try:
        t = int(datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp())
    except ValueError:
        raise MalformedError(f"{where}: {value} is not a valid date and time") from None
    if not 0 <= t <= MAX_TIME:
        raise MalformedError(f"{where}: {value} is before 1970")
    return t


def _fields(value: Any, names: tuple[str, ...], where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedError(f"{where}: expected a JSON object")
    unknown = [k for k in value if k not in names]
    if unknown:
        raise MalformedError(f"{where}: unknown field {unknown[0]!r}")
    missing = [k for k in names if k not in value]
    if missing:
        raise MalformedError(f"{where}: missing field {missing[0]!r}")
    return value


def _list(value: Any, where: str, limit: int) -> list[Any]:
    if not isinstance(value, list):
        raise MalformedError(f"{where}: expected a JSON array")
    if len(value) > limit:
        raise TooLargeError(f"{where}: more than {limit} items")
    return value


def _int(value: Any, where: str) -> int:
    if type(value) is not int:
        raise MalformedError(f"{where}: expected an integer")
    return value


def _opt_int(value: Any, where: str) -> int | None:
    return None if value is None else _int(value, where)


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise MalformedError(f"{where}: expected a string")
    return value


def _bool(value: Any, where: str) -> bool:
    if type(value) is not bool:
        raise MalformedError(f"{where}: expected true or false")
    return value


def _opt(value: Any, convert: Callable[[Any, str], int], where: str) -> int | None:
    return None if value is None else convert(value, where)


def _verifier_key(value: Any, where: str, sig_type: int) -> VerifierKey:
    try:
        key = VerifierKey.parse(_str(value, where))
    except MalformedError as e:
        raise MalformedError(f"{where}: {e}") from None
    if key.sig_type != sig_type:
        raise SchemaError(f"{where}: expected a signature type 0x{sig_type:02x} key")
    return key


def _log_key(value: Any, where: str, origin: str) -> LogKey:
    f = _fields(value, _LOG_KEY_FIELDS, where)
    key = _verifier_key(f["key"], f"{where}.key", SIG_TYPE_ED25519)
    if key.name != origin:
        raise SchemaError(f"{where}.key: a log key is named by its member's origin {origin!r}")
    return LogKey(
        public_key=key.public_key,
        valid_from=parse_time(f["valid_from"], f"{where}.valid_from"),
        valid_until=_opt(f["valid_until"], parse_time, f"{where}.valid_until"),
        compromised_at=_opt(f["compromised_at"], parse_time, f"{where}.compromised_at"),
    )


def _member(value: Any, where: str) -> Member:
    f = _fields(value, _MEMBER_FIELDS, where)
    origin = _str(f["origin"], f"{where}.origin")
    keys = _list(f["log_keys"], f"{where}.log_keys", 64)
    return Member(
        id=_str(f["id"], f"{where}.id"),
        name=_str(f["name"], f"{where}.name"),
        origin=origin,
        issuer_code=_str(f["issuer_code"], f"{where}.issuer_code"),
        base_url=_str(f["base_url"], f"{where}.base_url"),
        witness_key=_verifier_key(f["witness_key"], f"{where}.witness_key", SIG_TYPE_COSIGNATURE),
        log_keys=tuple(_log_key(k, f"{where}.log_keys[{i}]", origin) for i, k in enumerate(keys)),
    )


def _claim(value: Any, where: str) -> ClaimSpec:
    f = _fields(value, _CLAIM_FIELDS, where)
    return ClaimSpec(
        key=_int(f["key"], f"{where}.key"),
        name=_str(f["name"], f"{where}.name"),
        label=_str(f["label"], f"{where}.label"),
        kind=_str(f["kind"], f"{where}.kind"),
        required=_bool(f["required"], f"{where}.required"),
        max_length=_int(f["max_length"], f"{where}.max_length"),
    )


def _mandate(value: Any, where: str) -> Mandate:
    if isinstance(value, str):
        return Mandate(member=value)
    f = _fields(value, _MANDATE_FIELDS, where)
    return Mandate(
        member=_str(f["member"], f"{where}.member"),
        valid_from=_opt(f["valid_from"], parse_time, f"{where}.valid_from"),
        valid_until=_opt(f["valid_until"], parse_time, f"{where}.valid_until"),
    )


def _mandates(value: Any, where: str) -> tuple[Mandate, ...]:
    return tuple(_mandate(v, f"{where}[{i}]") for i, v in enumerate(_list(value, where, MAX_MANDATES)))


def _names(value: Any, where: str, limit: int) -> tuple[str, ...]:
    return tuple(_str(v, f"{where}[{i}]") for i, v in enumerate(_list(value, where, limit)))


def _type(value: Any, where: str) -> CertificateType:
    f = _fields(value, _TYPE_FIELDS, where)
    purposes = f["purposes"]
    if not isinstance(purposes, dict):
        raise MalformedError(f"{where}.purposes: expected a JSON object")
    if len(purposes) > 32:
        raise TooLargeError(f"{where}.purposes: more than 32 purposes")
    claims = _list(f["claims"], f"{where}.claims", 64)
    return CertificateType(
        code=_str(f["code"], f"{where}.code"),
        name=_str(f["name"], f"{where}.name"),
        national_code=_str(f["national_code"], f"{where}.national_code"),
        max_validity_days=_opt_int(f["max_validity_days"], f"{where}.max_validity_days"),
        issuers=_mandates(f["issuers"], f"{where}.issuers"),
        revokers=_mandates(f["revokers"], f"{where}.revokers"),
        claims=tuple(_claim(c, f"{where}.claims[{i}]") for i, c in enumerate(claims)),
        purposes={p: _names(v, f"{where}.purposes.{p}", 64) for p, v in purposes.items()},
    )


def from_json(value: Any) -> Policy:
    """Build a policy from a parsed JSON value; MalformedError for anything out of place."""
    f = _fields(value, _POLICY_FIELDS, "policy")
    g = _fields(f["governance"], _GOVERNANCE_FIELDS, "governance")
    gkeys = _list(g["keys"], "governance.keys", 32)
    members = _list(f["members"], "members", 256)
    types = _list(f["types"], "types", 256)
    return Policy(
        consortium=_str(f["consortium"], "consortium"),
        version=_int(f["version"], "version"),
        issued=parse_time(f["issued"], "issued"),
        expires=parse_time(f["expires"], "expires"),
        governance_threshold=_int(g["threshold"], "governance.threshold"),
        governance_keys=tuple(
            _verifier_key(k, f"governance.keys[{i}]", SIG_TYPE_ED25519) for i, k in enumerate(gkeys)
        ),
        witness_quorum=_int(f["witness_quorum"], "witness_quorum"),
        freshness_seconds=_int(f["freshness_seconds"], "freshness_seconds"),
        members=tuple(_member(m, f"members[{i}]") for i, m in enumerate(members)),
        types=tuple(_type(t, f"types[{i}]") for i, t in enumerate(types)),
    )


def parse_text(text: str) -> Policy:
    """Parse a policy document's text strictly; it must be exactly :func:`render`'s output."""
    if not isinstance(text, str):
        raise MalformedError("policy text: expected a string")
    if len(text) > MAX_DOCUMENT_SIZE:  # a character is at least one byte
        raise TooLargeError(f"policy text: over the {MAX_DOCUMENT_SIZE}-byte limit")
    first, sep, body = text.partition("\n")
    if first != FORMAT_LINE:
        if first.startswith("certledger/policy/"):
            raise MalformedError(f"policy text: unsupported format {first[:40]!r}; expected {FORMAT_LINE}")
        raise MalformedError(f"policy text: must start with the line {FORMAT_LINE!r}")
    if not sep or not body.endswith("\n"):
        raise MalformedError("policy text: must end with a newline")
    # The leading newline stands for the format line, so JSON errors give the line
    # number in the whole text.
    value = loads_json(
        "\n" + body,
        what="policy text",
        max_size=MAX_DOCUMENT_SIZE,
        max_depth=MAX_DEPTH,
        max_int_digits=_MAX_INT_DIGITS,
    )
    try:
        policy = from_json(value)
    except TooLargeError as e:
        raise TooLargeError(f"policy text: {e}") from None
    except SchemaError as e:
        raise SchemaError(f"policy text: {e}") from None
    except MalformedError as e:
        raise MalformedError(f"policy text: {e}") from None
    if render(policy) != text:
        raise MalformedError(
            "policy text: not in canonical form (render the policy with certledger; "
            "spacing, key order, escapes and time formats are fixed)"
        )
    return policy


# -- documents ---------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class PolicyDocument:
    """A well-formed policy document: its exact bytes, its policy and its signature
    lines. Nothing about it has been verified."""

    data: bytes
    text: str
    policy: Policy
    signatures: tuple[note.Signature, ...]


def _check_size(data: object, max_size: int) -> bytes:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedError("policy document: expected bytes")
    if len(data) > max_size:
        raise TooLargeError(f"policy document: {len(data)} bytes is over the {max_size}-byte limit")
    return bytes(data)


def parse_document(data: bytes, *, max_size: int = MAX_DOCUMENT_SIZE) -> PolicyDocument:
    """Parse a signed policy document strictly, without verifying its signatures."""
    data = _check_size(data, max_size)
    try:
        parsed = note.parse(data, max_size=max_size)
    except TooLargeError as e:
        raise TooLargeError(f"policy document: {e}") from None
    except MalformedError as e:
        raise MalformedError(f"policy document: {e}") from None
    if len(parsed.signatures) > MAX_SIGNATURES:
        raise TooLargeError(
            f"policy document: {len(parsed.signatures)} signatures; at most {MAX_SIGNATURES} are accepted"
        )
    policy = parse_text(parsed.text)
    return PolicyDocument(data=data, text=parsed.text, policy=policy, signatures=parsed.signatures)


def parse_proposal(data: bytes, *, max_size: int = MAX_DOCUMENT_SIZE) -> Policy:
    """Parse an unsigned proposal: the UTF-8 text of a policy document alone."""
    data = _check_size(data, max_size)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MalformedError(f"policy text: not valid UTF-8 (byte offset {e.start})") from None
    return parse_text(text)


def sign_proposal(policy: Policy, signers: list[tuple[str, SigningKey]]) -> bytes:
    """A signed policy document: ``policy`` rendered and signed by each ``(name, key)``."""
    if not signers:
        raise MalformedError("a policy document needs at least one signature")
    return note.sign(render(policy), [note.Ed25519Signer(name=n, key=k) for n, k in signers])


def add_signature(data: bytes, name: str, key: SigningKey) -> bytes:
    """``data`` (a signed policy document) with one more signature appended.

    The document is parsed strictly first, so nobody signs a malformed policy; its
    existing bytes are kept exactly.
    """
    doc = parse_document(data)
    if len(doc.signatures) >= MAX_SIGNATURES:
        raise TooLargeError(f"policy document already carries {MAX_SIGNATURES} signatures")
    return note.add_signatures(doc.data, [note.Ed25519Signer(name=name, key=key)])
