"""Credentials: what an issuing department hands the holder of a certificate.

A :class:`Credential` is the signed issue (or replace) statement, the claim values,
the schema of those claims (compact key, name, label, kind), and the certificate's
16-byte salt secret, from which every claim's salt is derived (see
:mod:`ledger.credential.claims`). With it the holder makes presentations: full disclosure, or
any subset of the claims (:meth:`Credential.present`).

:func:`issue_credential` validates the claims against the certificate type's schema
(required claims, kinds, lengths), the issuer's mandate and signing key, and the
type's longest validity, then signs.

A credential is saved as readable JSON (``certledger-credential`` version 1,
:meth:`Credential.dumps` / :meth:`Credential.loads`), read back strictly: a size cap,
no duplicate keys, exact field sets, and every digest recomputed against the signed
statement. Its QR form is its full-disclosure presentation
(:meth:`Credential.to_qr_text`, :meth:`Credential.from_qr_text`), which carries the
salt secret and so lets the holder make selective presentations later.
"""

from __future__ import annotations

import base64
import json
import os
import secrets as _secrets
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

from ledger.credential.claims import (
    SECRET_SIZE,
    CanonicalValue,
    ClaimValue,
    canonical_reader,
    canonical_value,
    claim_digest,
    claim_salt,
    claim_salts,
    digests_from_secret,
    display_value,
    value_text,
)
from ledger.credential.presentation import (
    DEFAULT_CLOCK_SKEW,
    CheckedPresentation,
    Presentation,
    check_presentation,
)
from ledger.errors import ClaimMismatchError, MalformedError, SchemaError
from ledger.files import loads_json, read_capped, write_file
from ledger.keys import SigningKey
from ledger.log.certid import CertId
from ledger.log.note import decode_base64
from ledger.log.statement import Kind, Reason, SignedStatement, Statement
from ledger.trust.policy import CertificateType, ClaimSpec, Member, Policy, rule_error

__all__ = [
    "CREDENTIAL_FORMAT",
    "MAX_CREDENTIAL_FILE",
    "Credential",
    "issue_credential",
]

CREDENTIAL_FORMAT = "certledger-credential"
CREDENTIAL_VERSION = 1
#: Cap on the size of a credential file.
MAX_CREDENTIAL_FILE = 256 * 1024
_MAX_DEPTH = 4  # a credential needs 3: credential, statement, claim digests
_TOP_KEYS = frozenset({"format", "version", "statement", "signed", "claims", "schema", "salt_secret"})
_SIGNED_KEYS = frozenset({"statement", "key_id", "signature"})
_SPEC_KEYS = frozenset({"key", "name", "label", "kind", "required", "max_length"})


@dataclass(frozen=True, kw_only=True)
class Credential:
    """A holder's certificate: signed statement, claims, their schema and the salt secret.

    ``schema`` lists the :class:`~ledger.trust.policy.ClaimSpec` of every claim the
    certificate has (copied from the certificate type when it was issued), so the
    holder can present without the trust policy. Validated on construction: the
    claims fit the schema and their digests are the ones in the signed statement.
    The signature itself is checked by whoever trusts the issuer's key
    (:func:`ledger.credential.presentation.check_presentation`).
    """

    signed: SignedStatement
    schema: tuple[ClaimSpec, ...]
    claims: Mapping[str, ClaimValue]
    salt_secret: bytes = field(repr=False)
    # {claim key: canonical value}, derived from ``claims`` on construction
    _canonical: Mapping[int, CanonicalValue] = field(init=False, repr=False, compare=False)
    # the statement's certificate id, parsed (set by the issuing path; else parsed when needed)
    _cert_id: CertId | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        stmt = self.signed.statement
        if stmt.kind not in (Kind.ISSUE, Kind.REPLACE) or stmt.claim_digests is None:
            raise SchemaError(f"credential: a {stmt.kind.label} statement carries no claims")
        if type(self.salt_secret) is not bytes or len(self.salt_secret) != SECRET_SIZE:
            raise SchemaError(f"credential: the salt secret must be {SECRET_SIZE} bytes")
        if not all(isinstance(s, ClaimSpec) for s in self.schema):
            raise SchemaError("credential: schema entries must be claim specs")
        schema = tuple(sorted(self.schema, key=lambda s: s.key))
        if len({s.key for s in schema}) != len(schema) or len({s.name for s in schema}) != len(schema):
            raise SchemaError("credential: claim keys and names in the schema must be unique")
        object.__setattr__(self, "schema", schema)
        if not isinstance(self.claims, Mapping):
            raise SchemaError("credential: claims must be a map of claim names to values")
        names = [s.name for s in schema]
        if set(self.claims) != set(names):
            extra = sorted(set(self.claims) - set(names))
            missing = sorted(set(names) - set(self.claims))
            raise SchemaError(
                f"credential: claims and schema differ (no schema for {extra}; no value for {missing})"
            )
        if {s.key for s in schema} != set(stmt.claim_digests):
            raise ClaimMismatchError("credential: the schema's claim keys are not those of the statement")
        claims: dict[str, ClaimValue] = {}
        canonical: dict[int, CanonicalValue] = {}
        salts = claim_salts(self.salt_secret, (s.key for s in schema))
        for s in schema:
            value = self.claims[s.name]
            canon = canonical_value(s, value)
            digest = claim_digest(salts[s.key], s.key, canon)
            if digest != stmt.claim_digests[s.key]:
                raise ClaimMismatchError(
                    f"credential: claim {s.name!r} does not match the digest in the signed statement"
                )
            claims[s.name] = display_value(s, canon)
            canonical[s.key] = canon
        object.__setattr__(self, "claims", MappingProxyType(claims))
        object.__setattr__(self, "_canonical", MappingProxyType(canonical))

    @classmethod
    def _issued(
        cls,
        *,
        signed: SignedStatement,
        schema: tuple[ClaimSpec, ...],
        claims: dict[str, ClaimValue],
        canonical: dict[int, CanonicalValue],
        salt_secret: bytes,
        cert_id: CertId,
    ) -> Credential:
        """A credential just built by :func:`issue_credential`, whose claims (and their
        ``canonical`` values), digests and statement were computed from ``salt_secret``
        there, with ``schema`` in key order: nothing is derived again."""
        cred = object.__new__(cls)
        object.__setattr__(cred, "signed", signed)
        object.__setattr__(cred, "schema", schema)  # the type's claims, in key order
        object.__setattr__(cred, "claims", MappingProxyType(claims))
        object.__setattr__(cred, "salt_secret", salt_secret)
        object.__setattr__(cred, "_canonical", MappingProxyType(canonical))
        object.__setattr__(cred, "_cert_id", cert_id)
        return cred

    @property
    def statement(self) -> Statement:
        """The signed statement."""
        return self.signed.statement

    @property
    def cert_id(self) -> str:
        """The certificate id."""
        return self.signed.statement.cert_id

    def __repr__(self) -> str:
        """Ids, type and claim names only: never a claim value or the salt secret."""
        stmt = self.signed.statement
        return (
            f"Credential(cert_id={stmt.cert_id!r}, issuer={stmt.issuer!r}, cert_type={stmt.cert_type!r}, "
            f"claims={[s.name for s in self.schema]})"
        )

    def canonical_values(self) -> dict[int, CanonicalValue]:
        """``{claim key: canonical value}`` of every claim, in key order."""
        return {s.key: self._canonical[s.key] for s in self.schema}

    # -- presentations --------------------------------------------------------------

    def present(self, reveal: Collection[str] | None = None) -> Presentation:
        """A presentation disclosing the claims named in ``reveal`` (all when None).

        Disclosing every claim gives a full disclosure (it carries the salt secret and
        no digests); anything less gives a selective one, which carries only the salts
        of the disclosed claims and the digests of the others.
        """
        names = [s.name for s in self.schema]
        if reveal is None:
            wanted = set(names)
        else:
            if isinstance(reveal, str):
                raise SchemaError("reveal must be a collection of claim names, not one string")
            wanted = set(reveal)
            unknown = sorted(wanted - set(names))
            if unknown:
                raise SchemaError(
                    f"this certificate has no claim {', '.join(map(repr, unknown))}; "
                    f"its claims are {', '.join(names)}"
                )
        stmt = self.signed.statement
        cid = self._cert_id or CertId.parse(stmt.cert_id)
        values = self._canonical
        keys = {s.key for s in self.schema if s.name in wanted}
        full = len(keys) == len(self.schema)
        assert stmt.valid_from is not None and stmt.claim_digests is not None
        return Presentation._of_credential(  # every field was checked when this credential was made
            statement=stmt,
            serial=cid.serial,
            cert_version=cid.version,
            key_id=self.signed.key_id,
            signature=self.signed.signature,
            values=values if full else {k: v for k, v in values.items() if k in keys},
            secret=self.salt_secret if full else None,
            salts=None if full else {k: claim_salt(self.salt_secret, k) for k in keys},
            digests=None if full else {k: d for k, d in stmt.claim_digests.items() if k not in keys},
        )

    def to_qr_text(self, reveal: Collection[str] | None = None) -> str:
        """The ``CL1:`` text of :meth:`present`."""
        return self.present(reveal).to_text()

    @classmethod
    def from_qr_text(
        cls,
        text: str,
        *,
        policy: Policy,
        now: int | None = None,
        skew: int = DEFAULT_CLOCK_SKEW,
    ) -> Credential:
        """Rebuild a credential from its full-disclosure QR text, checking it first."""
        checked = check_presentation(text, policy=policy, now=now, skew=skew)
        return cls.from_checked(checked)

    @classmethod
    def from_checked(cls, checked: CheckedPresentation) -> Credential:
        """The credential behind a checked full-disclosure presentation."""
        p = checked.presentation
        if p.secret is None:
            raise SchemaError("a credential can only be rebuilt from a full disclosure")
        ctype = checked.certificate_type
        return cls(
            signed=checked.signed,
            schema=tuple(ctype.claim_by_key(k) for k in p.values),
            claims={c.name: c.value for c in checked.claims},
            salt_secret=p.secret,
        )

    # -- JSON -----------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The readable JSON object (see the module docstring)."""
        return {
            "format": CREDENTIAL_FORMAT,
            "version": CREDENTIAL_VERSION,
            "statement": self.signed.statement.to_json(),
            "signed": {
                "statement": base64.b64encode(self.signed.statement_bytes).decode(),
                "key_id": self.signed.key_id.hex(),
                "signature": base64.b64encode(self.signed.signature).decode(),
            },
            "claims": {s.name: _json_value(self.claims[s.name]) for s in self.schema},
            "schema": _schema_json(self.schema),
            "salt_secret": self.salt_secret.hex(),
        }

    def dumps(self) -> str:
        """The credential as indented JSON text (UTF-8, Chinese kept readable)."""
        return json.dumps(self.to_json(), ensure_ascii=False, indent=2) + "\n"

    @classmethod
    def from_json(cls, obj: Any) -> Credential:
        """Build from a parsed JSON object, strictly."""
        return _from_json(obj)

    @classmethod
    def loads(cls, text: str | bytes) -> Credential:
        """Parse credential JSON text strictly (size-capped, no duplicate keys)."""
        obj = loads_json(text, what="credential", max_size=MAX_CREDENTIAL_FILE, max_depth=_MAX_DEPTH)
        return cls.from_json(obj)

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
        """Write the JSON to ``path`` (mode 0600: it holds personal data).

        Refuses to overwrite an existing file unless ``overwrite``; then the old file
        is replaced atomically.
        """
        write_file(path, self.dumps().encode("utf-8"), mode=0o600, overwrite=overwrite, what="credential")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Credential:
        """Read a credential file written by :meth:`save`."""
        data = read_capped(path, limit=MAX_CREDENTIAL_FILE, what="credential")
        try:
            return cls.loads(data)
        except (MalformedError, ClaimMismatchError) as e:
            raise type(e)(f"{path}: {e}") from None


#: JSON entries of schemas, keyed by the schema tuple's identity (credentials issued
#: with every claim of a type share the type's tuple); holding the tuple keeps its id
#: from being reused while the entry lives.
_SCHEMA_JSON: dict[int, tuple[tuple[ClaimSpec, ...], tuple[dict[str, Any], ...]]] = {}
_MAX_SCHEMA_JSON = 256


def _schema_json(schema: tuple[ClaimSpec, ...]) -> list[dict[str, Any]]:
    """The JSON entries of ``schema``: fresh dicts, so a caller may change them."""
    hit = _SCHEMA_JSON.get(id(schema))
    if hit is not None and hit[0] is schema:
        entries = hit[1]
    else:
        entries = tuple(
            {
                "key": s.key,
                "name": s.name,
                "label": s.label,
                "kind": s.kind,
                "required": s.required,
                "max_length": s.max_length,
            }
            for s in schema
        )
        if len(_SCHEMA_JSON) >= _MAX_SCHEMA_JSON:
            _SCHEMA_JSON.clear()
        _SCHEMA_JSON[id(schema)] = (schema, entries)
    return [e.copy() for e in entries]


def _json_value(value: ClaimValue) -> str | int:
    return value if isinstance(value, int) else value_text(value)


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise MalformedError(f"{what} must be a base64 string")
    return decode_base64(value, what=what)


def _hex(value: Any, what: str, size: int) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * size or value != value.lower():
        raise MalformedError(f"{what} must be {2 * size} lower-case hex digits")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise MalformedError(f"{what} must be {2 * size} lower-case hex digits") from None


def _keys(obj: Any, want: frozenset[str], what: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise MalformedError(f"{what} must be a JSON object")
    if set(obj) != want:
        extra, missing = sorted(set(obj) - want), sorted(want - set(obj))
        detail = "; ".join(
            part
            for part in (
                f"unknown {', '.join(extra)}" if extra else "",
                f"missing {', '.join(missing)}" if missing else "",
            )
            if part
        )
        raise MalformedError(f"{what}: {detail}")
    return obj


def _from_json(obj: Any) -> Credential:
    top = _keys(obj, _TOP_KEYS, "credential")
    if top["format"] != CREDENTIAL_FORMAT:
        raise MalformedError(f"credential: format must be {CREDENTIAL_FORMAT!r}")
    if type(top["version"]) is not int or top["version"] != CREDENTIAL_VERSION:
        raise MalformedError(f"credential: unknown version {top['version']!r}")
    sig = _keys(top["signed"], _SIGNED_KEYS, "credential: signed")
    signed = SignedStatement(
        statement_bytes=_b64(sig["statement"], "credential: signed statement"),
        key_id=_hex(sig["key_id"], "credential: key id", 4),
        signature=_b64(sig["signature"], "credential: signature"),
    )
    if top["statement"] != signed.statement.to_json():
        raise MalformedError("credential: the readable statement does not match the signed one")
    if not isinstance(top["schema"], list) or len(top["schema"]) > 64:
        raise MalformedError("credential: schema must be a list of at most 64 claims")
    specs = []
    for i, entry in enumerate(top["schema"]):
        e = _keys(entry, _SPEC_KEYS, f"credential: schema entry {i}")
        if type(e["key"]) is not int or type(e["max_length"]) is not int:
            raise MalformedError(f"credential: schema entry {i}: key and max_length must be integers")
        if (
            not all(isinstance(e[f], str) for f in ("name", "label", "kind"))
            or type(e["required"]) is not bool
        ):
            raise MalformedError(
                f"credential: schema entry {i}: name, label and kind must be strings, required true or false"
            )
        specs.append(ClaimSpec(**e))
    if not isinstance(top["claims"], dict):
        raise MalformedError("credential: claims must be a JSON object")
    by_name = {s.name: s for s in specs}
    claims: dict[str, ClaimValue] = {}
    for name, value in top["claims"].items():
        spec = by_name.get(name)
        if spec is None:
            raise SchemaError(f"credential: claim {name!r} is not in the credential's schema")
        claims[name] = display_value(spec, canonical_value(spec, value))
    return Credential(
        signed=signed,
        schema=tuple(specs),
        claims=claims,
        salt_secret=_hex(top["salt_secret"], "credential: salt secret", SECRET_SIZE),
    )


class _ClaimTable(NamedTuple):
    """What checking claims against one certificate type needs, worked out once."""

    names: frozenset[str]
    required: tuple[str, ...]  # in key order
    readers: tuple[tuple[ClaimSpec, Callable[[Any], CanonicalValue]], ...]  # in key order


#: Tables by certificate type, keyed by the type's identity (a type is immutable and
#: unhashable); holding the type keeps its id from being reused while the entry lives.
_CLAIM_TABLES: dict[int, tuple[CertificateType, _ClaimTable]] = {}
_MAX_CLAIM_TABLES = 256


def _claim_table(cert_type: CertificateType) -> _ClaimTable:
    hit = _CLAIM_TABLES.get(id(cert_type))
    if hit is not None and hit[0] is cert_type:
        return hit[1]
    table = _ClaimTable(
        names=frozenset(c.name for c in cert_type.claims),
        required=tuple(c.name for c in cert_type.claims if c.required),
        readers=tuple((c, canonical_reader(c)) for c in cert_type.claims),
    )
    if len(_CLAIM_TABLES) >= _MAX_CLAIM_TABLES:  # types of many policy versions: start again
        _CLAIM_TABLES.clear()
    _CLAIM_TABLES[id(cert_type)] = (cert_type, table)
    return table


def issue_credential(
    *,
    cert_type: CertificateType,
    issuer: Member,
    key: SigningKey,
    serial: str,
    claims: Mapping[str, Any],
    operator: str,
    time: int,
    valid_from: int,
    valid_until: int | None = None,
    cert_version: str = "001",
    replaces: str | None = None,
    reason: Reason | None = None,
    salt_secret: bytes | None = None,
) -> Credential:
    """Validate the claims, build the issue (or, with ``replaces``, replace) statement and sign.

    The certificate id is built from the type's national code, the issuer's code,
    ``serial`` and ``cert_version``. ``key`` must be one of the issuer's log keys,
    valid and not compromised at ``time``. ``salt_secret`` defaults to 16 fresh
    random bytes; pass one only for reproducible tests. Raises SchemaError for claims
    that do not fit the type (naming the claim), PolicyError for a missing mandate at
    ``time`` (``mandate``, ``mandate-validity``), a validity longer than the type
    allows (``max-validity``) or an unusable key.
    """
    if not isinstance(cert_type, CertificateType) or not isinstance(issuer, Member):
        raise SchemaError("issue_credential needs a CertificateType and a Member")
    cert_type.check_mandate(issuer.id, "issue", at=time)
    log_key = next((k for k in issuer.log_keys if k.public_key == key.public_key), None)
    if log_key is None:
        raise rule_error("unknown-key", f"the signing key is not one of {issuer.id}'s log keys")
    if time < log_key.valid_from or (log_key.valid_until is not None and time >= log_key.valid_until):
        raise rule_error(
            "key-validity",
            f"the signing key of {issuer.id} is valid in {log_key.window()}, not at time {time}",
        )
    if log_key.compromised_at is not None and time >= log_key.compromised_at:
        raise rule_error("key-compromised", f"the signing key of {issuer.id} is marked compromised")
    cert_type.check_validity(valid_from, valid_until)
    if not isinstance(claims, Mapping):
        raise SchemaError("claims must be a map of claim names to values")
    table = _claim_table(cert_type)
    if not table.names.issuperset(claims):
        unknown = sorted(set(claims) - table.names, key=str)
        raise SchemaError(
            f"{cert_type.code} has no claim {', '.join(map(repr, unknown))}; "
            f"its claims are {', '.join(c.name for c in cert_type.claims)}"
        )
    missing = [name for name in table.required if name not in claims]
    if missing:
        raise SchemaError(f"{cert_type.code} needs the claim(s) {', '.join(missing)}")
    if len(claims) == len(table.names):  # every claim given
        schema = cert_type.claims
        values = {c.key: read(claims[c.name]) for c, read in table.readers}  # checked, lengths too
    else:
        schema = tuple(c for c in cert_type.claims if c.name in claims)
        values = {c.key: read(claims[c.name]) for c, read in table.readers if c.name in claims}
    secret = _secrets.token_bytes(SECRET_SIZE) if salt_secret is None else salt_secret
    if type(secret) is not bytes or len(secret) != SECRET_SIZE:
        raise SchemaError(f"the salt secret must be {SECRET_SIZE} bytes")
    cid = CertId(
        type_code=cert_type.national_code, issuer_code=issuer.issuer_code, serial=serial, version=cert_version
    )
    statement = Statement._certificate(  # the id and digests were built just now: not parsed again
        kind=Kind.REPLACE if replaces is not None else Kind.ISSUE,
        issuer=issuer.id,
        cert_id=cid,
        cert_type=cert_type.code,
        time=time,
        operator=operator,
        valid_from=valid_from,
        valid_until=valid_until,
        claim_digests=digests_from_secret(secret, values),
        reason=reason,
        replaces=replaces,
    )
    signed = SignedStatement.sign(statement, key=key, key_id=issuer.log_key_id(log_key))
    return Credential._issued(
        signed=signed,
        schema=schema,
        claims={c.name: display_value(c, values[c.key]) for c in schema},
        canonical=values,
        salt_secret=secret,
        cert_id=cid,
    )
