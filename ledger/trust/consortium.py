"""The consortium ceremony's pure parts: genesis from a spec, changes, summaries.

* :func:`read_toml` reads a spec or change file (TOML, size-capped).
* :func:`genesis` builds policy version 1 from a spec; keys the spec does not give
  are asked of a callback (the command line generates and saves them).
* :func:`parse_change` / :func:`apply_changes` build version N+1 from version N and
  changes such as ``compromise=hz-amr:eebf79c9@2025-03-01T00:00:00Z``
  (:data:`CHANGES` lists them).
* :func:`summary` describes a policy in Chinese and English, for people.

A spec file looks like this (every field is checked; unknown fields are errors)::

    consortium = "hangzhou.example.gov.cn"   # the consortium's name, in every version
    expires = "+365d"            # or an RFC 3339 UTC time / TOML date-time
    witness_quorum = 1
    freshness_seconds = 86400

    [governance]
    threshold = 2
    keys = [{ name = "gov.amr.example.gov.cn" },           # generated
            { name = "gov.psb.example.gov.cn", key = "gov.psb.example.gov.cn+1a2b3c4d+AQ…" }]

    [[members]]
    id = "hz-amr"
    name = "杭州市市场监督管理局"
    origin = "ledger.example.gov.cn/hz-amr"
    issuer_code = "11330100002489657X"
    base_url = "https://hz-amr.example.gov.cn/ledger"
    # log_key = "…", witness_key = "…", witness_name = "…": generated when absent

    [[types]]
    code = "business_licence"
    name = "营业执照"
    national_code = "11100000000013338W032"
    issuers = ["hz-amr"]         # or { member = "hz-amr", valid_from = …, valid_until = … }
    revokers = ["hz-amr"]
    claims = [{ key = 0, name = "entity_name", label = "名称" }]
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from ledger.errors import LedgerError, MalformedError, PolicyError, SchemaError, TooLargeError
from ledger.keys import SIG_TYPE_COSIGNATURE, SIG_TYPE_ED25519, PublicKey, VerifierKey, check_key_name
from ledger.trust.policy import (
    MAX_TIME,
    CertificateType,
    ClaimSpec,
    LogKey,
    Mandate,
    Member,
    Policy,
    format_time,
)
from ledger.trust.policy_doc import parse_time

__all__ = [
    "CHANGES",
    "MAX_SPEC_SIZE",
    "Change",
    "KeyRequest",
    "apply_changes",
    "genesis",
    "member_from_table",
    "parse_change",
    "read_toml",
    "spec_time",
    "summary",
    "type_from_table",
    "warnings",
]

#: Cap on a spec or change file's size.
MAX_SPEC_SIZE = 256 * 1024
_DAY = 86_400
_RELATIVE = re.compile(r"\+([0-9]{1,5})d")
_KEY_ID = re.compile(r"[0-9a-f]{8}")

#: Every change ``propose`` understands: ``kind=value`` and what it does.
CHANGES: dict[str, str] = {
    "add-member": "add-member=FILE.toml: add the member in FILE (fields of a [[members]] table)",
    "rotate-log-key": "rotate-log-key=MEMBER:KEY[@TIME]: new log key from TIME (default now); "
    "older keys end then",
    "compromise": "compromise=MEMBER:KEYID@TIME: mark a log key compromised at TIME",
    "add-type": "add-type=FILE.toml: add the certificate type in FILE (fields of a [[types]] table)",
    "issuers": "issuers=TYPE:ID,ID…[@TIME]: set who may issue (and replace) TYPE from TIME "
    "(default now); mandates of others end then",
    "revokers": "revokers=TYPE:ID,ID…[@TIME]: set who may revoke, suspend and reinstate TYPE "
    "from TIME (default now); mandates of others end then",
    "witness-key": "witness-key=MEMBER:VERIFIERKEY: replace a member's witness key",
    "base-url": "base-url=MEMBER:URL: change a member's base URL",
    "add-governance-key": "add-governance-key=VERIFIERKEY: add a governance key",
    "remove-governance-key": "remove-governance-key=NAME: remove the governance key called NAME",
    "threshold": "threshold=N: governance signatures needed",
    "witness-quorum": "witness-quorum=N: witness cosignatures needed from other members",
    "freshness": "freshness=SECONDS: verifier freshness limit",
    "expires": "expires=TIME|+DAYSd: expiry of the new version (default: unchanged)",
}


@dataclass(frozen=True, kw_only=True)
class KeyRequest:
    """A key the spec does not give, to be made by the caller.

    ``role`` is ``"governance"``, ``"log"`` or ``"witness"``; ``name`` is the key's
    signed-note name; ``member`` the member id (``None`` for governance keys).
    """

    role: str
    name: str
    member: str | None = None


def read_toml(data: bytes, *, what: str = "spec") -> dict[str, Any]:
    """Parse a TOML file strictly (size-capped, UTF-8); MalformedError on any problem."""
    if len(data) > MAX_SPEC_SIZE:
        raise TooLargeError(f"{what}: {len(data)} bytes is over the {MAX_SPEC_SIZE}-byte limit")
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise MalformedError(f"{what}: not valid UTF-8 (byte offset {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        raise MalformedError(f"{what}: not valid TOML ({e})") from None
    except RecursionError:
        raise TooLargeError(f"{what}: nested too deeply") from None


# -- fields ----------------------------------------------------------------------------


def _table(value: Any, where: str, required: set[str], optional: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedError(f"{where}: expected a table")
    unknown = sorted(set(value) - required - optional)
    if unknown:
        raise MalformedError(f"{where}: unknown field {unknown[0]!r}")
    missing = sorted(required - set(value))
    if missing:
        raise MalformedError(f"{where}: missing field {missing[0]!r}")
    return value


def _typed(value: Any, kind: type, where: str) -> Any:
    if type(value) is not kind:
        raise MalformedError(f"{where}: expected {'an integer' if kind is int else 'a ' + kind.__name__}")
    return value


def _strs(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MalformedError(f"{where}: expected a list of strings")
    return tuple(value)


def spec_time(value: Any, where: str, *, now: int) -> int:
    """A time from a spec or change: TOML date-time with offset, RFC 3339 UTC text,
    ``now``, or ``+Nd`` (N days from ``now``)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise MalformedError(f"{where}: give a time zone (e.g. 2025-01-01T00:00:00Z)")
        t = int(value.timestamp())
    elif isinstance(value, date):
        raise MalformedError(f"{where}: give a full date and time, e.g. {value.isoformat()}T00:00:00Z")
    elif isinstance(value, str) and value == "now":
        t = now
    elif isinstance(value, str) and (m := _RELATIVE.fullmatch(value)):
        t = now + int(m.group(1)) * _DAY
    else:
        t = parse_time(value, where)
    if not 0 <= t <= MAX_TIME:
        raise MalformedError(f"{where}: time out of range")
    return t


def _public_key(text: Any, where: str, *, name: str, sig_type: int) -> VerifierKey:
    """A verifier-key string (whose name must be ``name``) or base64 of 32 raw bytes."""
    if not isinstance(text, str):
        raise MalformedError(f"{where}: expected a verifier key or base64 public key")
    try:
        if text.startswith(f"{name}+"):
            key = VerifierKey.parse(text)
        else:
            raw = base64.b64decode(text, validate=True)
            if len(raw) != 32:
                raise MalformedError("expected 32 bytes")
            key = VerifierKey(name=name, public_key=PublicKey(raw=raw), sig_type=sig_type)
    except (MalformedError, binascii.Error, ValueError) as e:
        raise MalformedError(
            f"{where}: expected a verifier key named {name!r} or base64 of a 32-byte Ed25519 key ({e})"
        ) from None
    if key.sig_type != sig_type:
        raise SchemaError(f"{where}: expected a signature type 0x{sig_type:02x} key")
    return key


KeyMaker = Callable[[KeyRequest], PublicKey]


def _no_keys(request: KeyRequest) -> PublicKey:
    raise MalformedError(
        f"the {request.role} key {request.name!r} must be given "
        "(make one with `certledger consortium keygen`)"
    )


def member_from_table(value: Any, where: str, *, valid_from: int, make_key: KeyMaker = _no_keys) -> Member:
    """A member from a spec table; absent keys are asked of ``make_key``."""
    t = _table(
        value,
        where,
        {"id", "name", "origin", "issuer_code", "base_url"},
        {"log_key", "witness_key", "witness_name"},
    )
    mid = _typed(t["id"], str, f"{where}.id")
    origin = _typed(t["origin"], str, f"{where}.origin")
    witness_name = _typed(t.get("witness_name", f"{origin}/witness"), str, f"{where}.witness_name")
    if "log_key" in t:
        log = _public_key(t["log_key"], f"{where}.log_key", name=origin, sig_type=SIG_TYPE_ED25519)
        log_public = log.public_key
    else:
        log_public = make_key(KeyRequest(role="log", name=origin, member=mid))
    if "witness_key" in t:
        witness = _public_key(
            t["witness_key"], f"{where}.witness_key", name=witness_name, sig_type=SIG_TYPE_COSIGNATURE
        )
    else:
        public = make_key(KeyRequest(role="witness", name=witness_name, member=mid))
        witness = VerifierKey(name=witness_name, public_key=public, sig_type=SIG_TYPE_COSIGNATURE)
    try:
        return Member(
            id=mid,
            name=_typed(t["name"], str, f"{where}.name"),
            origin=origin,
            issuer_code=_typed(t["issuer_code"], str, f"{where}.issuer_code"),
            base_url=_typed(t["base_url"], str, f"{where}.base_url"),
            log_keys=(LogKey(public_key=log_public, valid_from=valid_from),),
            witness_key=witness,
        )
    except SchemaError as e:
        raise SchemaError(f"{where}: {e}") from None


def _claim(value: Any, where: str) -> ClaimSpec:
    t = _table(value, where, {"key", "name", "label"}, {"kind", "required", "max_length"})
    return ClaimSpec(
        key=_typed(t["key"], int, f"{where}.key"),
        name=_typed(t["name"], str, f"{where}.name"),
        label=_typed(t["label"], str, f"{where}.label"),
        kind=_typed(t.get("kind", "text"), str, f"{where}.kind"),
        required=_typed(t.get("required", True), bool, f"{where}.required"),
        max_length=_typed(t.get("max_length", 256), int, f"{where}.max_length"),
    )


def _spec_mandates(value: Any, where: str, *, now: int) -> tuple[Mandate, ...]:
    """Mandates from a spec list: member ids (no window) or tables with a window."""
    if not isinstance(value, list):
        raise MalformedError(f"{where}: expected a list of member ids or tables")
    out = []
    for i, item in enumerate(value):
        at = f"{where}[{i}]"
        if isinstance(item, str):
            out.append(Mandate(member=item))
            continue
        t = _table(item, at, {"member"}, {"valid_from", "valid_until"})
        start, end = t.get("valid_from"), t.get("valid_until")
        out.append(
            Mandate(
                member=_typed(t["member"], str, f"{at}.member"),
                valid_from=None if start is None else spec_time(start, f"{at}.valid_from", now=now),
                valid_until=None if end is None else spec_time(end, f"{at}.valid_until", now=now),
            )
        )
    return tuple(out)


def type_from_table(value: Any, where: str, *, now: int) -> CertificateType:
    """A certificate type from a spec table (``now`` for relative mandate times)."""
    t = _table(
        value,
        where,
        {"code", "name", "national_code", "issuers", "revokers", "claims"},
        {"max_validity_days", "purposes"},
    )
    claims = t["claims"]
    if not isinstance(claims, list):
        raise MalformedError(f"{where}.claims: expected a list of tables")
    purposes = t.get("purposes", {})
    if not isinstance(purposes, dict):
        raise MalformedError(f"{where}.purposes: expected a table of claim-name lists")
    mvd = t.get("max_validity_days")
    try:
        return CertificateType(
            code=_typed(t["code"], str, f"{where}.code"),
            name=_typed(t["name"], str, f"{where}.name"),
            national_code=_typed(t["national_code"], str, f"{where}.national_code"),
            issuers=_spec_mandates(t["issuers"], f"{where}.issuers", now=now),
            revokers=_spec_mandates(t["revokers"], f"{where}.revokers", now=now),
            claims=tuple(_claim(c, f"{where}.claims[{i}]") for i, c in enumerate(claims)),
            max_validity_days=None if mvd is None else _typed(mvd, int, f"{where}.max_validity_days"),
            purposes={p: _strs(v, f"{where}.purposes.{p}") for p, v in purposes.items()},
        )
    except SchemaError as e:
        raise SchemaError(f"{where}: {e}") from None


def genesis(spec: dict[str, Any], *, now: int, make_key: KeyMaker, consortium: str | None = None) -> Policy:
    """Policy version 1, issued at ``now``, from a parsed spec; keys it does not give
    come from ``make_key``. The consortium's name is the spec's ``consortium`` or
    ``consortium`` (they must agree when both are given)."""
    t = _table(
        spec,
        "spec",
        {"governance", "members"},
        {"consortium", "expires", "witness_quorum", "freshness_seconds", "keys_valid_from", "types"},
    )
    named = _typed(t["consortium"], str, "consortium") if "consortium" in t else None
    if named is not None and consortium is not None and named != consortium:
        raise MalformedError(f"consortium: the spec names {named!r}, but {consortium!r} was given")
    consortium_name = named if named is not None else consortium
    if consortium_name is None:
        raise MalformedError(
            'consortium: name the consortium (consortium = "…" in the spec); every version carries '
            "the name, and verifiers refuse versions of another consortium"
        )
    g = _table(t["governance"], "governance", {"threshold", "keys"}, set())
    gkeys = g["keys"]
    if not isinstance(gkeys, list) or not gkeys:
        raise MalformedError("governance.keys: expected a list of tables")
    governance = []
    for i, entry in enumerate(gkeys):
        e = _table(entry, f"governance.keys[{i}]", {"name"}, {"key"})
        name = _typed(e["name"], str, f"governance.keys[{i}].name")
        if "key" in e:
            governance.append(
                _public_key(e["key"], f"governance.keys[{i}].key", name=name, sig_type=SIG_TYPE_ED25519)
            )
        else:
            try:
                check_key_name(name)  # before a key is made for it
            except MalformedError as err:
                raise MalformedError(f"governance.keys[{i}].name: {err}") from None
            public = make_key(KeyRequest(role="governance", name=name))
            governance.append(VerifierKey(name=name, public_key=public))
    valid_from = spec_time(t.get("keys_valid_from", "now"), "keys_valid_from", now=now)
    members = t["members"]
    if not isinstance(members, list):
        raise MalformedError("members: expected a list of tables ([[members]])")
    types = t.get("types", [])
    if not isinstance(types, list):
        raise MalformedError("types: expected a list of tables ([[types]])")
    built = tuple(
        member_from_table(m, f"members[{i}]", valid_from=valid_from, make_key=make_key)
        for i, m in enumerate(members)
    )
    quorum_default = 1 if len(built) > 1 else 0
    return Policy(
        consortium=consortium_name,
        version=1,
        issued=now,
        expires=spec_time(t.get("expires", "+365d"), "expires", now=now),
        members=built,
        types=tuple(type_from_table(x, f"types[{i}]", now=now) for i, x in enumerate(types)),
        witness_quorum=_typed(t.get("witness_quorum", quorum_default), int, "witness_quorum"),
        freshness_seconds=_typed(t.get("freshness_seconds", _DAY), int, "freshness_seconds"),
        governance_keys=tuple(governance),
        governance_threshold=_typed(g["threshold"], int, "governance.threshold"),
    )


# -- changes ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Change:
    """One parsed ``kind=value`` change."""

    kind: str
    value: str

    def __str__(self) -> str:
        return f"{self.kind}={self.value}"


def parse_change(text: str) -> Change:
    """Split ``kind=value`` and check the kind is known."""
    kind, sep, value = text.partition("=")
    if not sep or kind not in CHANGES:
        known = ", ".join(CHANGES)
        raise MalformedError(f"change {text[:60]!r}: expected KIND=VALUE with KIND one of: {known}")
    return Change(kind=kind, value=value)


def _split(change: Change, sep: str = ":") -> tuple[str, str]:
    head, ok, tail = change.value.partition(sep)
    if not ok or not head:
        raise MalformedError(f"change {change}: see `{CHANGES[change.kind]}`")
    return head, tail


def _at(text: str, *, now: int) -> tuple[str, int | None]:
    body, sep, when = text.rpartition("@")
    if sep and when:
        return body, spec_time(when, "time", now=now)
    return text, None


def _member(p: Policy, member_id: str) -> Member:
    m = p.member(member_id)
    if m is None:
        raise MalformedError(f"no member {member_id!r} in version {p.version}")
    return m


def _replace_member(p: Policy, member_id: str, **changes: Any) -> Policy:
    new = dataclasses.replace(_member(p, member_id), **changes)
    return dataclasses.replace(p, members=tuple(new if x.id == member_id else x for x in p.members))


def _replace_type(p: Policy, code: str, **changes: Any) -> Policy:
    t = p.certificate_type(code)
    if t is None:
        raise MalformedError(f"no certificate type {code!r} in version {p.version}")
    new = dataclasses.replace(t, **changes)
    return dataclasses.replace(p, types=tuple(new if x.code == code else x for x in p.types))


def _int_value(change: Change) -> int:
    if not re.fullmatch(r"[0-9]{1,12}", change.value):
        raise MalformedError(f"change {change}: expected a whole number")
    return int(change.value)


def _apply(p: Policy, change: Change, *, now: int, read_file: Callable[[str], bytes]) -> Policy:
    kind = change.kind
    if kind == "add-member":
        data = read_file(change.value)
        m = member_from_table(read_toml(data, what=change.value), change.value, valid_from=now)
        return dataclasses.replace(p, members=(*p.members, m))
    if kind == "add-type":
        data = read_file(change.value)
        t = type_from_table(read_toml(data, what=change.value), change.value, now=now)
        return dataclasses.replace(p, types=(*p.types, t))
    if kind == "rotate-log-key":
        member_id, rest = _split(change)
        key_text, when = _at(rest, now=now)
        start = now if when is None else when
        owner = _member(p, member_id)
        new = _public_key(key_text, f"change {change}", name=owner.origin, sig_type=SIG_TYPE_ED25519)
        ended = tuple(
            dataclasses.replace(k, valid_until=start) if k.valid_until is None or k.valid_until > start else k
            for k in owner.log_keys
        )
        for k in ended:
            if k.valid_from >= start:
                raise MalformedError(
                    f"change {change}: key {owner.log_key_id(k).hex()} only becomes valid at "
                    f"{format_time(k.valid_from)}; rotate at a later time"
                )
        fresh = LogKey(public_key=new.public_key, valid_from=start)
        return _replace_member(p, member_id, log_keys=(*ended, fresh))
    if kind == "compromise":
        member_id, rest = _split(change)
        kid, when = _at(rest, now=now)
        if when is None or not _KEY_ID.fullmatch(kid):
            raise MalformedError(f"change {change}: see `{CHANGES[kind]}`")
        owner = _member(p, member_id)
        hits = [k for k in owner.log_keys if owner.log_key_id(k).hex() == kid]
        if len(hits) != 1:
            raise MalformedError(
                f"change {change}: member {member_id} has {len(hits)} log keys with ID {kid}"
            )
        marked = tuple(
            dataclasses.replace(k, compromised_at=when) if k is hits[0] else k for k in owner.log_keys
        )
        return _replace_member(p, member_id, log_keys=marked)
    if kind in ("issuers", "revokers"):
        code, rest = _split(change)
        names, when = _at(rest, now=now)
        who = frozenset(x for x in names.split(",") if x)
        ctype = p.certificate_type(code)
        if ctype is None:
            raise MalformedError(f"no certificate type {code!r} in version {p.version}")
        held = ctype.issuers if kind == "issuers" else ctype.revokers
        updated = _set_mandates(held, who, at=now if when is None else when, change=change)
        return _replace_type(p, code, **{kind: updated})
    if kind == "witness-key":
        member_id, rest = _split(change)
        key = _change_key(change, rest)
        if key.sig_type != SIG_TYPE_COSIGNATURE:
            raise SchemaError(f"change {change}: a witness key has signature type 0x04")
        return _replace_member(p, member_id, witness_key=key)
    if kind == "base-url":
        member_id, rest = _split(change)
        return _replace_member(p, member_id, base_url=rest)
    if kind == "add-governance-key":
        key = _change_key(change, change.value)
        return dataclasses.replace(p, governance_keys=(*p.governance_keys, key))
    if kind == "remove-governance-key":
        kept = tuple(k for k in p.governance_keys if k.name != change.value)
        if len(kept) == len(p.governance_keys):
            raise MalformedError(f"change {change}: version {p.version} has no governance key of that name")
        return dataclasses.replace(p, governance_keys=kept)
    if kind == "threshold":
        return dataclasses.replace(p, governance_threshold=_int_value(change))
    if kind == "witness-quorum":
        return dataclasses.replace(p, witness_quorum=_int_value(change))
    if kind == "freshness":
        return dataclasses.replace(p, freshness_seconds=_int_value(change))
    if kind == "expires":
        return dataclasses.replace(p, expires=spec_time(change.value, "expires", now=now))
    raise AssertionError(kind)  # parse_change admits only the kinds above


def _set_mandates(
    held: tuple[Mandate, ...], who: frozenset[str], *, at: int, change: Change
) -> tuple[Mandate, ...]:
    """Mandates for exactly the members ``who`` from ``at`` on; earlier ones are kept,
    so what was done under them stays valid."""
    out: list[Mandate] = []
    for m in held:
        if m.member in who or (m.valid_until is not None and m.valid_until <= at):
            out.append(m)
        elif m.valid_from is not None and m.valid_from >= at:
            raise MalformedError(
                f"change {change}: the mandate of {m.member} only starts at {format_time(m.valid_from)}; "
                "withdraw it at a later time"
            )
        else:
            out.append(dataclasses.replace(m, valid_until=at))
    for member in sorted(who):
        mine = [m for m in out if m.member == member]
        if not any(m.covers(at) or (m.valid_from is not None and m.valid_from > at) for m in mine):
            out.append(Mandate(member=member, valid_from=at))
    return tuple(out)


def _prefixed(e: LedgerError, prefix: str) -> LedgerError:
    """``e`` with ``prefix`` before its message (a PolicyError keeps its rule)."""
    if isinstance(e, PolicyError):
        return PolicyError(f"{prefix}{e}", rule=e.rule)
    return type(e)(f"{prefix}{e}")


def _change_key(change: Change, text: str) -> VerifierKey:
    """The verifier key a change names; MalformedError naming the change and the broken rule."""
    try:
        return VerifierKey.parse(text)
    except MalformedError as e:
        raise MalformedError(f"change {change}: {e}") from None


def _no_files(path: str) -> bytes:
    raise MalformedError(f"cannot read {path!r} here")


def apply_changes(
    current: Policy,
    changes: Sequence[Change],
    *,
    now: int,
    read_file: Callable[[str], bytes] = _no_files,
) -> Policy:
    """Version N+1: ``current`` with every change applied in order.

    Changes that leave a policy the model refuses fail with the change named.
    ``read_file`` reads the TOML files named by ``add-member`` and ``add-type``.
    """
    # The new version is issued now; its expiry is set first, so that the bounds on
    # it (after the issue time, at most 366 days later) hold at every step.
    last = [c for c in changes if c.kind == "expires"][-1:]
    try:
        expires = spec_time(last[0].value, "expires", now=now) if last else current.expires
        if expires <= now:
            raise MalformedError(
                f"version {current.version + 1} would already be expired at {format_time(expires)}; "
                "add a change such as expires=+365d"
            )
        p = dataclasses.replace(current, version=current.version + 1, issued=now, expires=expires)
    except LedgerError as e:
        if not last:
            raise
        raise _prefixed(e, f"change {last[0]}: ") from None
    for change in changes:
        try:
            p = _apply(p, change, now=now, read_file=read_file)
        except LedgerError as e:
            if str(change) in str(e):
                raise
            raise _prefixed(e, f"change {change}: ") from None
    return p


def warnings(p: Policy, *, now: int) -> list[str]:
    """Things a proposer should know about ``p`` at ``now`` that are not errors."""
    out = []
    for m in p.members:
        usable = [
            k
            for k in m.log_keys
            if k.compromised_at is None and (k.valid_until is None or k.valid_until > now)
        ]
        if not usable:
            out.append(f"member {m.id} has no uncompromised log key valid now or later: it cannot issue")
    for t in p.types:
        if not any(m.valid_until is None or m.valid_until > now for m in t.issuers):
            out.append(f"nobody may issue certificate type {t.code}")
    if p.expires - now < 30 * _DAY:
        out.append(f"version {p.version} expires soon, at {format_time(p.expires)}")
    return out


# -- summary ---------------------------------------------------------------------------


def _duration(seconds: int) -> str:
    if seconds % _DAY == 0:
        return f"{seconds} s ({seconds // _DAY} d)"
    if seconds % 3600 == 0:
        return f"{seconds} s ({seconds // 3600} h)"
    return f"{seconds} s"


def _mandate_list(held: tuple[Mandate, ...]) -> str:
    if not held:
        return "无 none"
    return ", ".join(m.member if m.open else f"{m.member} {m.window()}" for m in held)


def summary(p: Policy) -> list[str]:
    """A readable description of ``p`` with Chinese and English labels, line by line."""
    out = [
        f"信任策略 Trust policy: {p.consortium} 版本 version {p.version}",
        f"  发布 Issued: {format_time(p.issued)}",
        f"  有效期至 Expires: {format_time(p.expires)}",
        f"  治理密钥 Governance keys: 门限 threshold {p.governance_threshold} of {len(p.governance_keys)}",
    ]
    out += [f"    {k.name}+{k.key_id.hex()}" for k in p.governance_keys]
    out += [
        f"  见证法定数 Witness quorum: {p.witness_quorum} other member(s)",
        f"  新鲜度限制 Freshness limit: {_duration(p.freshness_seconds)}",
        f"  成员 Members: {len(p.members)}",
    ]
    for m in p.members:
        out += [
            f"    {m.id}  {m.name}",
            f"      日志 Log origin: {m.origin}",
            f"      统一社会信用代码 Issuer code: {m.issuer_code}",
            f"      地址 Base URL: {m.base_url}",
            f"      见证密钥 Witness key: {m.witness_key.name}+{m.witness_key.key_id.hex()}",
            "      日志密钥 Log keys:",
        ]
        for k in m.log_keys:
            line = f"        {m.log_key_id(k).hex()}  有效 valid {k.window()}"
            if k.compromised_at is not None:
                line += f"  已泄露 COMPROMISED at {format_time(k.compromised_at)}"
            out.append(line)
    out.append(f"  证书类型 Certificate types: {len(p.types)}")
    for t in p.types:
        validity = f"{t.max_validity_days} d" if t.max_validity_days else "不限 open-ended"
        out += [
            f"    {t.code}  {t.name}",
            f"      国家代码 National code: {t.national_code}",
            f"      最长有效期 Maximum validity: {validity}",
            f"      签发 Issuers: {_mandate_list(t.issuers)}",
            f"      撤销 Revokers: {_mandate_list(t.revokers)}",
            "      字段 Claims:",
        ]
        for c in t.claims:
            need = "必填 required" if c.required else "选填 optional"
            out.append(f"        {c.key:>3}  {c.name}  {c.label}  ({c.kind}, {need}, ≤{c.max_length})")
        for purpose, names in sorted(t.purposes.items()):
            out.append(f"      用途 Purpose {purpose}: {', '.join(names)}")
    return out
