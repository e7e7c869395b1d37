"""Presentations: what a holder shows, as ``CL1:`` QR text, and their offline check.

A :class:`Presentation` carries everything a verifier needs to rebuild the exact bytes
of the issue (or replace) statement the department signed, plus the disclosed claims:

* **full disclosure** carries every claim value and the certificate's 16-byte salt
  secret; the verifier derives each salt, recomputes each digest and so rebuilds the
  statement without any digest travelling in the QR;
* **selective disclosure** carries the disclosed values with their salts, and the
  digests of the hidden claims. It never carries the secret.

Either way the verifier rebuilds the canonical statement bytes and checks the issuer's
Ed25519 signature over them, so a changed value, salt, digest or signature fails.

Text form: ``CL1:`` + Base45(raw deflate(canonical msgpack map), preset dictionary
:data:`ledger.credential.qrdict.PRESET_DICTIONARY`). The map (keys are small integers)::

    1  kind         1 issue, 5 replace
    2  key id       4-byte C2SP key ID of the signing log key (identifies the issuer)
    3  type         certificate type code
    4  serial       certificate id serial: an integer, or a string only when it has
                    a leading zero or does not fit in 64 bits
    5  edition      certificate id version segment as an integer 0..999 ("001" is 1)
    6  time         statement time (Unix seconds)
    7  operator     the clerk's pseudonymous operator id
    8  valid_from   Unix seconds
    9  valid_until  Unix seconds; absent for open-ended certificates
    10 reason       replace only, optional: reason code
    11 replaces     replace only: the certificate id it supersedes
    12 signature    64-byte Ed25519 signature of the statement
    13 values       {claim key: value} of the disclosed claims: an integer, or text;
                    text with a non-ASCII character travels as GB 18030 bytes (bin)
                    when :mod:`ledger.credential.gbtext` allows, else as UTF-8 (str)
    14 secret       full disclosure only: the 16-byte salt secret
    15 salts        selective only: {claim key: 16-byte salt}, the keys of ``values``
    16 digests      selective only: {claim key: 32-byte digest} of the hidden claims

The issuer's member id and the certificate id are not carried: the member is the one
whose log key has the key ID, and the id is rebuilt from the type's national code,
the member's issuer code, the serial and edition, with its check character recomputed.

The GB 18030 form is transport only: the claim's canonical value, which is hashed and
signed, is the Unicode string, and the reader turns the bytes back into it first.

The decoder caps the text at :data:`MAX_TEXT_LENGTH` characters (the most a QR code
holds) and the inflated size at :data:`MAX_INFLATED_SIZE` bytes before inflating, and
rejects non-canonical Base45 and msgpack, a text value in the encoding that is not its
one form (or GB 18030 bytes that do not decode), unknown versions and trailing data. Deflate
itself has many encodings of the same bytes, so the QR text is not unique: identify a
certificate by its id or its statement, never by its QR text.
"""

from __future__ import annotations

import datetime as _dt
import re
import time as _time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any, TypeVar

import msgpack

from ledger import canonical
from ledger.clock import CLOCK_SKEW, check_not_future
from ledger.credential.base45 import b45decode, b45encode
from ledger.credential.claims import (
    DIGEST_SIZE,
    SALT_SIZE,
    SECRET_SIZE,
    CanonicalValue,
    ClaimValue,
    check_canonical,
    claim_digest,
    digests_from_secret,
    display_value,
    value_text,
)
from ledger.credential.gbtext import from_gb18030, gb18030_form, is_gb18030_transportable
from ledger.credential.qrdict import PRESET_DICTIONARY
from ledger.errors import (
    ClaimMismatchError,
    MalformedError,
    PolicyError,
    SchemaError,
    SignatureError,
    TooLargeError,
)
from ledger.log.certid import CertId
from ledger.log.statement import (
    MAX_CLAIMS,
    STATEMENT_VERSION,
    Kind,
    Reason,
    SignedStatement,
    Statement,
    statement_message,
)
from ledger.trust.policy import CertificateType, ClaimSpec, LogKey, Member, Policy

__all__ = [
    "DEFAULT_CLOCK_SKEW",
    "FORMAT_VERSION",
    "MAX_INFLATED_SIZE",
    "MAX_TEXT_LENGTH",
    "PREFIX",
    "CheckedPresentation",
    "DisclosedClaim",
    "Presentation",
    "PresentationFields",
    "Validity",
    "check_presentation",
    "text_of",
    "verify_presentation",
]

FORMAT_VERSION = 1
PREFIX = f"CL{FORMAT_VERSION}:"
#: The most characters a QR code holds (version 40, level L, alphanumeric mode).
MAX_TEXT_LENGTH = 4296
#: Cap on the inflated (msgpack) size of a presentation.
MAX_INFLATED_SIZE = 16 * 1024
_MAX_DEFLATED = (MAX_TEXT_LENGTH - len(PREFIX)) * 2 // 3
#: Clock skew allowed when judging the validity window and times from the future
#: (:data:`ledger.clock.CLOCK_SKEW`).
DEFAULT_CLOCK_SKEW = CLOCK_SKEW

_K_KIND, _K_KEY_ID, _K_TYPE, _K_SERIAL, _K_EDITION, _K_TIME, _K_OPERATOR = 1, 2, 3, 4, 5, 6, 7
_K_VALID_FROM, _K_VALID_UNTIL, _K_REASON, _K_REPLACES, _K_SIGNATURE = 8, 9, 10, 11, 12
_K_VALUES, _K_SECRET, _K_SALTS, _K_DIGESTS = 13, 14, 15, 16
_FIELD_NAMES = {
    _K_KIND: "kind",
    _K_KEY_ID: "key_id",
    _K_TYPE: "cert_type",
    _K_SERIAL: "serial",
    _K_EDITION: "edition",
    _K_TIME: "time",
    _K_OPERATOR: "operator",
    _K_VALID_FROM: "valid_from",
    _K_VALID_UNTIL: "valid_until",
    _K_REASON: "reason",
    _K_REPLACES: "replaces",
    _K_SIGNATURE: "signature",
    _K_VALUES: "values",
    _K_SECRET: "secret",
    _K_SALTS: "salts",
    _K_DIGESTS: "digests",
}
_PREFIX_LIKE = re.compile(r"CL([0-9]+):")
_SERIAL = re.compile(r"[0-9]{1,20}")
_EDITION = re.compile(r"[0-9]{3}")
_TYPE_CODE = re.compile(r"[a-z0-9][a-z0-9_]{0,62}")
_OPERATOR = re.compile(r"[A-Za-z0-9:_.-]{1,64}")
_PACKB = msgpack.packb
_FIELDS = (
    "kind",
    "key_id",
    "cert_type",
    "serial",
    "cert_version",
    "time",
    "operator",
    "valid_from",
    "valid_until",
    "reason",
    "replaces",
    "signature",
    "values",
    "secret",
    "salts",
    "digests",
)
#: :meth:`Presentation.to_fields`: every field in declaration order, as plain values.
PresentationFields = tuple[
    int,
    bytes,
    str,
    str,
    str,
    int,
    str,
    int,
    "int | None",
    "int | None",
    "str | None",
    bytes,
    "dict[int, CanonicalValue]",
    "bytes | None",
    "dict[int, bytes] | None",
    "dict[int, bytes] | None",
]
_MAX_TIME = 2**40
_U64 = 2**64 - 1
_T = TypeVar("_T")


def _serial_is_integer(serial: str) -> bool:
    """True when a serial travels as an integer: no leading zero, and it fits in 64 bits."""
    return serial == str(int(serial)) and int(serial) <= _U64


def _fail(message: str) -> MalformedError:
    return MalformedError(f"presentation: {message}")


def _time_field(value: Any, name: str) -> int:
    if type(value) is not int or not 0 <= value < _MAX_TIME:
        raise _fail(f"{name} must be a non-negative integer number of seconds")
    return value


def _claim_map(value: Any, name: str, check: Any) -> dict[int, Any]:
    if not isinstance(value, Mapping):
        raise _fail(f"{name} must be a map of claim keys")
    out: dict[int, Any] = {}
    for k, v in value.items():
        if type(k) is not int or not 0 <= k <= 255:
            raise _fail(f"{name}: claim key {k!r} must be an integer 0..255")
        out[k] = check(k, v)
    keys = list(out)
    if keys == sorted(keys):  # as decoded from canonical msgpack: already in order
        return out
    return dict(sorted(out.items()))


def _check_value(k: int, v: Any) -> CanonicalValue:
    if type(v) is str:
        if not v:
            raise _fail(f"value of claim {k} is empty")
        return v
    if type(v) is int:
        return v
    raise _fail(f"value of claim {k} must be a string or an integer")


def _wire_value(v: CanonicalValue) -> CanonicalValue | bytes:
    """The form a canonical value travels in: GB 18030 bytes for text that allows it."""
    if type(v) is str:
        data = gb18030_form(v)
        if data is not None:
            return data
    return v


def _value_from_wire(k: int, v: Any) -> CanonicalValue:
    """The canonical value a travelling value carries, strictly (one form per value)."""
    if type(v) is bytes:
        if not v:
            raise _fail(f"value of claim {k} is empty")
        try:
            return from_gb18030(v, what=f"value of claim {k}")
        except MalformedError as e:
            raise _fail(str(e)) from None
    if type(v) is str and is_gb18030_transportable(v):
        raise _fail(f"value of claim {k} is not canonical: this text travels as GB 18030 bytes")
    return _check_value(k, v)


def _bytes_of(size: int, what: str) -> Any:
    def check(k: int, v: Any) -> bytes:
        if type(v) is not bytes or len(v) != size:
            raise _fail(f"{what} of claim {k} must be {size} bytes")
        return v

    return check


_CHECK_SALT = _bytes_of(SALT_SIZE, "salt")
_CHECK_DIGEST = _bytes_of(DIGEST_SIZE, "digest")


@dataclass(frozen=True, kw_only=True)
class Presentation:
    """A full or selective presentation of one certificate. Validated on construction.

    ``cert_version`` is the certificate id's three-digit version segment. Exactly one
    of ``secret`` (full disclosure) or ``salts`` + ``digests`` (selective) is given.
    """

    kind: Kind
    key_id: bytes
    cert_type: str
    serial: str
    cert_version: str
    time: int
    operator: str
    valid_from: int
    valid_until: int | None = None
    reason: Reason | None = None
    replaces: str | None = None
    signature: bytes
    values: Mapping[int, CanonicalValue]
    secret: bytes | None = None
    salts: Mapping[int, bytes] | None = None
    digests: Mapping[int, bytes] | None = None

    def __post_init__(self) -> None:
        try:
            kind = Kind(self.kind)
        except (ValueError, TypeError):
            raise _fail(f"unknown statement kind {self.kind!r}") from None
        if kind not in (Kind.ISSUE, Kind.REPLACE):
            raise _fail(f"only issue and replace statements can be presented, not {kind.label}")
        object.__setattr__(self, "kind", kind)
        if type(self.key_id) is not bytes or len(self.key_id) != 4:
            raise _fail("key id must be 4 bytes")
        if type(self.signature) is not bytes or len(self.signature) != 64:
            raise _fail("signature must be 64 bytes")
        if not isinstance(self.cert_type, str) or not _TYPE_CODE.fullmatch(self.cert_type):
            raise _fail(f"certificate type {self.cert_type!r} is not a valid type code")
        if not isinstance(self.serial, str) or not _SERIAL.fullmatch(self.serial):
            raise _fail(f"serial {self.serial!r} must be 1 to 20 digits")
        if not isinstance(self.cert_version, str) or not _EDITION.fullmatch(self.cert_version):
            raise _fail(f"certificate version {self.cert_version!r} must be three digits")
        _time_field(self.time, "time")
        if not isinstance(self.operator, str) or not _OPERATOR.fullmatch(self.operator):
            raise _fail(f"operator id {self.operator!r} is not valid")
        _time_field(self.valid_from, "valid_from")
        if self.valid_until is not None:
            _time_field(self.valid_until, "valid_until")
            if self.valid_until <= self.valid_from:
                raise _fail("valid_until must be after valid_from")
        if kind == Kind.ISSUE and (self.reason is not None or self.replaces is not None):
            raise _fail("an issue statement has no reason and replaces nothing")
        if kind == Kind.REPLACE and self.replaces is None:
            raise _fail("a replace statement needs the id of the certificate it replaces")
        if self.reason is not None:
            try:
                object.__setattr__(self, "reason", Reason(self.reason))
            except (ValueError, TypeError):
                raise _fail(f"unknown reason code {self.reason!r}") from None
        if self.replaces is not None:
            if not isinstance(self.replaces, str):
                raise _fail("replaces must be a certificate id")
            CertId.parse(self.replaces)
        values = _claim_map(self.values, "values", _check_value)
        object.__setattr__(self, "values", MappingProxyType(values))
        if self.secret is not None:
            if type(self.secret) is not bytes or len(self.secret) != SECRET_SIZE:
                raise _fail(f"the salt secret must be {SECRET_SIZE} bytes")
            if self.salts is not None or self.digests is not None:
                raise _fail("a full disclosure carries the salt secret, not salts or digests")
            if not values:
                raise _fail("a full disclosure discloses at least one claim")
            total = len(values)
        else:
            if self.salts is None or self.digests is None:
                raise _fail("a selective disclosure needs salts and digests (or the salt secret)")
            salts = _claim_map(self.salts, "salts", _CHECK_SALT)
            digests = _claim_map(self.digests, "digests", _CHECK_DIGEST)
            if salts.keys() != values.keys():
                raise _fail("a selective disclosure has exactly one salt per disclosed value")
            if not digests:
                raise _fail("a selective disclosure hides at least one claim (else it is a full one)")
            both = digests.keys() & values.keys()
            if both:
                raise _fail(f"claim {min(both)} is both disclosed and hidden")
            object.__setattr__(self, "salts", MappingProxyType(salts))
            object.__setattr__(self, "digests", MappingProxyType(digests))
            total = len(values) + len(digests)
        if total > MAX_CLAIMS:
            raise TooLargeError(f"presentation: {total} claims is over the limit of {MAX_CLAIMS}")

    @property
    def full(self) -> bool:
        """True for full disclosure."""
        return self.secret is not None

    def __repr__(self) -> str:
        """Ids, types and counts only: never a claim value, salt, digest or the salt secret."""
        hidden = 0 if self.digests is None else len(self.digests)
        return (
            f"Presentation(kind={self.kind.label}, cert_type={self.cert_type!r}, key_id={self.key_id.hex()}, "
            f"{'full' if self.full else 'selective'}, disclosed={sorted(self.values)}, hidden={hidden})"
        )

    def claim_digests(self) -> dict[int, bytes]:
        """Every claim digest of the statement: recomputed for disclosed claims."""
        if self.secret is not None:
            return digests_from_secret(self.secret, self.values)
        assert self.salts is not None and self.digests is not None
        out = dict(self.digests)
        for k, v in self.values.items():
            out[k] = claim_digest(self.salts[k], k, v)
        return dict(sorted(out.items()))

    def cert_id(self, *, national_code: str, issuer_code: str) -> str:
        """The certificate id, from the type's national code and the issuer's code."""
        return str(
            CertId(
                type_code=national_code,
                issuer_code=issuer_code,
                serial=self.serial,
                version=self.cert_version,
            )
        )

    def statement(self, *, issuer: str, national_code: str, issuer_code: str) -> Statement:
        """The statement the issuer signed, rebuilt (its bytes are what the signature covers).

        The id is built here and the digests are computed or were checked with this
        presentation ({claim key 0..255: 32 bytes}); every other field is checked again
        by the statement's rules.
        """
        return Statement._certificate(
            kind=self.kind,
            issuer=issuer,
            cert_id=CertId(
                type_code=national_code,
                issuer_code=issuer_code,
                serial=self.serial,
                version=self.cert_version,
            ),
            cert_type=self.cert_type,
            time=self.time,
            operator=self.operator,
            valid_from=self.valid_from,
            valid_until=self.valid_until,
            claim_digests=self.claim_digests(),
            reason=self.reason,
            replaces=self.replaces,
        )

    @classmethod
    def _of_credential(
        cls,
        *,
        statement: Statement,
        serial: str,
        cert_version: str,
        key_id: bytes,
        signature: bytes,
        values: Mapping[int, CanonicalValue],
        secret: bytes | None,
        salts: Mapping[int, bytes] | None,
        digests: Mapping[int, bytes] | None,
    ) -> Presentation:
        """A presentation of a credential's signed issue or replace ``statement``, built
        without the construction checks: every field was checked by the same rules
        already. The statement's own validation (kind, type code, times, operator id,
        reason, replaced id) uses the same patterns and ranges; ``serial`` and
        ``cert_version`` come from its parsed certificate id; the signed statement
        checked the key ID and signature sizes; the credential checked ``values``
        against its schema (non-empty text or integers, claim keys 0..255, at most
        :data:`MAX_CLAIMS`, as many as the statement's digests) and the secret's size;
        ``salts`` are derived and ``digests`` taken from the statement. The tests hold
        the result equal to the checked construction for every certificate type."""
        p = object.__new__(cls)
        fields = p.__dict__
        fields["kind"] = statement.kind
        fields["key_id"] = key_id
        fields["cert_type"] = statement.cert_type
        fields["serial"] = serial
        fields["cert_version"] = cert_version
        fields["time"] = statement.time
        fields["operator"] = statement.operator
        fields["valid_from"] = statement.valid_from
        fields["valid_until"] = statement.valid_until
        fields["reason"] = statement.reason
        fields["replaces"] = statement.replaces
        fields["signature"] = signature
        fields["values"] = MappingProxyType(dict(sorted(values.items())))
        fields["secret"] = secret
        fields["salts"] = None if salts is None else MappingProxyType(dict(sorted(salts.items())))
        fields["digests"] = None if digests is None else MappingProxyType(dict(sorted(digests.items())))
        return p

    def to_fields(self) -> PresentationFields:
        """Every field as plain values (enums as integers, maps as dicts), in declaration
        order: what :meth:`from_fields` takes back, for another process."""
        return (
            int(self.kind),
            self.key_id,
            self.cert_type,
            self.serial,
            self.cert_version,
            self.time,
            self.operator,
            self.valid_from,
            self.valid_until,
            None if self.reason is None else int(self.reason),
            self.replaces,
            self.signature,
            dict(self.values),
            self.secret,
            None if self.salts is None else dict(self.salts),
            None if self.digests is None else dict(self.digests),
        )

    @classmethod
    def from_fields(cls, fields: PresentationFields) -> Presentation:
        """The presentation :meth:`to_fields` came from, without the construction checks
        (it was checked where it was made): only for fields from :meth:`to_fields`."""
        p = object.__new__(cls)
        out = p.__dict__
        for name, value in zip(_FIELDS, fields, strict=True):
            out[name] = value
        out["kind"] = _KINDS[out["kind"]]
        if out["reason"] is not None:
            out["reason"] = _REASONS[out["reason"]]
        for name in ("values", "salts", "digests"):
            if out[name] is not None:
                out[name] = MappingProxyType(out[name])
        return p

    # -- the wire form ------------------------------------------------------------

    def to_map(self) -> dict[int, Any]:
        """The msgpack map (before canonical encoding), text values in their travelling form.

        Built in key order, with the claim maps in key order as construction left them.
        """
        serial: int | str = int(self.serial) if _serial_is_integer(self.serial) else self.serial
        out: dict[int, Any] = {
            _K_KIND: int(self.kind),
            _K_KEY_ID: self.key_id,
            _K_TYPE: self.cert_type,
            _K_SERIAL: serial,
            _K_EDITION: int(self.cert_version),
            _K_TIME: self.time,
            _K_OPERATOR: self.operator,
            _K_VALID_FROM: self.valid_from,
        }
        if self.valid_until is not None:
            out[_K_VALID_UNTIL] = self.valid_until
        if self.reason is not None:
            out[_K_REASON] = int(self.reason)
        if self.replaces is not None:
            out[_K_REPLACES] = self.replaces
        out[_K_SIGNATURE] = self.signature
        out[_K_VALUES] = {k: _wire_value(v) for k, v in self.values.items()}
        if self.secret is not None:
            out[_K_SECRET] = self.secret
        else:
            assert self.salts is not None and self.digests is not None
            out[_K_SALTS] = dict(self.salts)
            out[_K_DIGESTS] = dict(self.digests)
        return out

    def to_bytes(self) -> bytes:
        """The canonical msgpack encoding (before deflate).

        :meth:`to_map` puts every key in order (top-level keys ascending, each claim map
        sorted by construction) and every value is an int, str or bytes of an exact type,
        so msgpack's own smallest-form packing is the canonical encoding (the tests hold
        it to :func:`ledger.canonical.encode`). A value msgpack refuses (an integer out
        of range, text that is not valid Unicode) goes the canonical way, which names it.
        """
        m = self.to_map()
        try:
            data: bytes = _PACKB(m, use_bin_type=True)
        except (ValueError, TypeError, OverflowError, UnicodeEncodeError):
            return canonical.encode(m)
        return data

    def to_text(self) -> str:
        """The ``CL1:`` QR text. TooLargeError if it would not fit in a QR code."""
        return text_of(self.to_bytes())

    @classmethod
    def from_map(cls, raw: Any) -> Presentation:
        """Build from a decoded msgpack map, checking every field's type."""
        if not isinstance(raw, dict):
            raise _fail("not a map")
        unknown = sorted((k for k in raw if k not in _FIELD_NAMES), key=repr)
        if unknown:
            raise _fail(f"unknown field {unknown[0]!r}")
        nil = sorted(k for k, v in raw.items() if v is None)
        if nil:
            # An absent optional field is left out; an explicit nil would be a second
            # encoding of the same presentation.
            raise _fail(f"field {nil[0]} ({_FIELD_NAMES[nil[0]]}) is nil: leave an absent field out")
        for k in (_K_KIND, _K_KEY_ID, _K_TYPE, _K_SERIAL, _K_EDITION, _K_TIME, _K_OPERATOR):
            if k not in raw:
                raise _fail(f"missing field {k} ({_FIELD_NAMES[k]})")
        for k in (_K_VALID_FROM, _K_SIGNATURE, _K_VALUES):
            if k not in raw:
                raise _fail(f"missing field {k} ({_FIELD_NAMES[k]})")
        if type(raw[_K_KIND]) is not int:
            raise _fail("kind must be an integer")
        serial = raw[_K_SERIAL]
        if type(serial) is int:
            serial = str(serial)
        elif type(serial) is str:
            if _SERIAL.fullmatch(serial) and _serial_is_integer(serial):
                raise _fail("serial is not canonical: it must be encoded as an integer")
        else:
            raise _fail("serial must be an integer or a string of digits")
        edition = raw[_K_EDITION]
        if type(edition) is not int or not 0 <= edition <= 999:
            raise _fail("edition must be an integer 0..999")
        reason: Reason | None = None
        if _K_REASON in raw:
            if type(raw[_K_REASON]) is not int:
                raise _fail("reason must be an integer")
            try:
                reason = Reason(raw[_K_REASON])
            except ValueError:
                raise _fail(f"unknown reason code {raw[_K_REASON]}") from None
        return cls(
            kind=raw[_K_KIND],
            key_id=raw[_K_KEY_ID],
            cert_type=raw[_K_TYPE],
            serial=serial,
            cert_version=f"{edition:03d}",
            time=raw[_K_TIME],
            operator=raw[_K_OPERATOR],
            valid_from=raw[_K_VALID_FROM],
            valid_until=raw.get(_K_VALID_UNTIL),
            reason=reason,
            replaces=raw.get(_K_REPLACES),
            signature=raw[_K_SIGNATURE],
            values=_claim_map(raw[_K_VALUES], "values", _value_from_wire),
            secret=raw.get(_K_SECRET),
            salts=raw.get(_K_SALTS),
            digests=raw.get(_K_DIGESTS),
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Presentation:
        """Parse canonical msgpack bytes strictly.

        A well-formed presentation takes one pass (:func:`_parse_well_formed`); anything
        that pass does not accept is parsed again the general way, which names the rule
        it breaks.
        """
        if cls is Presentation and type(data) is bytes:
            fast = _parse_well_formed(data)
            if fast is not None:
                return fast
        raw = canonical.decode(data, max_size=MAX_INFLATED_SIZE, max_depth=2, what="presentation")
        return cls.from_map(raw)

    @classmethod
    def from_text(cls, text: str) -> Presentation:
        """Parse ``CL1:`` QR text strictly (step 1 of verification).

        Raises :class:`~ledger.errors.TooLargeError` or
        :class:`~ledger.errors.MalformedError`, naming the layer that failed.
        """
        if not isinstance(text, str):
            raise _fail(f"expected text, got {type(text).__name__}")
        if len(text) > MAX_TEXT_LENGTH:
            raise TooLargeError(
                f"presentation: {len(text)} characters is over the {MAX_TEXT_LENGTH}-character limit "
                "(the most a QR code holds)"
            )
        if not text.startswith(PREFIX):
            m = _PREFIX_LIKE.match(text)
            if m:
                raise _fail(f"unknown format version CL{m.group(1)} (this reader knows {PREFIX[:-1]})")
            raise _fail(f"not a certledger presentation: the text must start with {PREFIX}")
        deflated = b45decode(text[len(PREFIX) :], max_size=_MAX_DEFLATED, what="presentation: Base45")
        inflater = zlib.decompressobj(-15, zdict=PRESET_DICTIONARY)
        try:
            data = inflater.decompress(deflated, MAX_INFLATED_SIZE + 1)
        except zlib.error as e:
            raise _fail(f"not valid deflate data ({e})") from None
        if inflater.unconsumed_tail or len(data) > MAX_INFLATED_SIZE:
            raise TooLargeError(f"presentation: inflates to more than {MAX_INFLATED_SIZE} bytes")
        if not inflater.eof:
            raise _fail("the deflate stream is truncated")
        if inflater.unused_data:
            raise _fail(f"{len(inflater.unused_data)} trailing bytes after the deflate stream")
        return cls.from_bytes(data)


def text_of(data: bytes) -> str:
    """The ``CL1:`` QR text of a presentation's bytes (:meth:`Presentation.to_bytes`).
    TooLargeError if it would not fit in a QR code."""
    if len(data) > MAX_INFLATED_SIZE:
        raise TooLargeError(
            f"presentation: {len(data)} bytes is over the {MAX_INFLATED_SIZE}-byte limit; "
            "disclose fewer or shorter claims"
        )
    # A fresh compressor per text: priming one with the dictionary is cheaper than
    # copying a primed one (zlib's copy duplicates every buffer of the state).
    # memLevel 8, zlib's default: at 9 the hash table and pending buffer are 128 KiB
    # each, which the C library may map and unmap on every call (several times the
    # cost of the compression). Over a text and the dictionary the match search finds
    # the same matches: the bytes are those of memLevel 9 (the tests hold it to that).
    packer = zlib.compressobj(9, zlib.DEFLATED, -15, 8, zdict=PRESET_DICTIONARY)
    text = PREFIX + b45encode(packer.compress(data) + packer.flush())
    if len(text) > MAX_TEXT_LENGTH:
        raise TooLargeError(
            f"presentation: {len(text)} characters is more than a QR code holds "
            f"({MAX_TEXT_LENGTH}); disclose fewer or shorter claims"
        )
    return text


_KINDS = {int(Kind.ISSUE): Kind.ISSUE, int(Kind.REPLACE): Kind.REPLACE}
_REASONS = {int(r): r for r in Reason}


def _claim_keys_ok(m: Any) -> bool:
    """``m`` is a map whose keys are claim keys 0..255 in strictly increasing order."""
    if type(m) is not dict:
        return False
    previous = -1
    for k in m:
        if type(k) is not int or k <= previous or k > 255:
            return False
        previous = k
    return True


def _parse_well_formed(data: bytes) -> Presentation | None:
    """The presentation canonical msgpack ``data`` holds, checked in one pass, or None
    when the data breaks any rule (or uses a form this pass leaves to the general
    parser): then :meth:`Presentation.from_bytes` parses it the general way, which
    raises with the rule's name. It accepts exactly what the general way accepts for
    the inputs it does not hand on (the tests compare the two on fuzzed inputs).

    Canonical form: every map key here is a small non-negative integer, checked to be
    strictly increasing, and every value has one of the types the fields allow (no
    float, no extension), so re-packing the decoded map reproduces ``data`` exactly when
    ``data`` is canonical msgpack.
    """
    if len(data) > MAX_INFLATED_SIZE:
        return None
    try:
        raw = msgpack.unpackb(data, raw=False, strict_map_key=False, ext_hook=_refuse_ext, timestamp=0)
    except Exception:
        return None
    if type(raw) is not dict:
        return None
    previous = 0
    for k, v in raw.items():
        if type(k) is not int or k <= previous or k > _K_DIGESTS or v is None:
            return None
        previous = k
    get = raw.get
    kind_code = get(_K_KIND)
    kind = _KINDS.get(kind_code) if type(kind_code) is int else None
    key_id, cert_type, serial, edition = get(_K_KEY_ID), get(_K_TYPE), get(_K_SERIAL), get(_K_EDITION)
    t, operator, valid_from, valid_until = (
        get(_K_TIME),
        get(_K_OPERATOR),
        get(_K_VALID_FROM),
        get(_K_VALID_UNTIL),
    )
    signature, secret = get(_K_SIGNATURE), get(_K_SECRET)
    values: Any = get(_K_VALUES)
    if (
        kind is None
        or type(key_id) is not bytes
        or len(key_id) != 4
        or type(signature) is not bytes
        or len(signature) != 64
        or type(cert_type) is not str
        or not _TYPE_CODE.fullmatch(cert_type)
        or not (
            (type(serial) is int and serial >= 0)
            or (type(serial) is str and _SERIAL.fullmatch(serial) and not _serial_is_integer(serial))
        )
        or type(edition) is not int
        or not 0 <= edition <= 999
        or type(t) is not int
        or not 0 <= t < _MAX_TIME
        or type(operator) is not str
        or not _OPERATOR.fullmatch(operator)
        or type(valid_from) is not int
        or not 0 <= valid_from < _MAX_TIME
        or not _claim_keys_ok(values)
    ):
        return None
    if valid_until is not None and (type(valid_until) is not int or not valid_from < valid_until < _MAX_TIME):
        return None
    reason: Reason | None = None
    replaces = get(_K_REPLACES)
    if kind is Kind.ISSUE:
        if _K_REASON in raw or replaces is not None:
            return None
    else:
        if type(replaces) is not str:
            return None
        if _K_REASON in raw:
            if type(raw[_K_REASON]) is not int:
                return None
            reason = _REASONS.get(raw[_K_REASON])
            if reason is None:
                return None
        try:
            CertId.parse(replaces)
        except MalformedError:
            return None
    out_values: dict[int, CanonicalValue] = {}
    for k, v in values.items():
        tv = type(v)
        if tv is bytes:
            if not v:
                return None
            try:
                v = from_gb18030(v)  # noqa: PLW2901
            except MalformedError:
                return None
        elif tv is str:
            if not v or is_gb18030_transportable(v):
                return None
        elif tv is not int:
            return None
        out_values[k] = v
    salts: Any = get(_K_SALTS)
    digests: Any = get(_K_DIGESTS)
    if secret is not None:
        if (
            type(secret) is not bytes
            or len(secret) != SECRET_SIZE
            or salts is not None
            or digests is not None
        ):
            return None
        if not out_values:
            return None
        total = len(out_values)
    else:
        if not _claim_keys_ok(salts) or not _claim_keys_ok(digests) or not digests:
            return None
        if salts.keys() != values.keys() or not digests.keys().isdisjoint(values.keys()):
            return None
        for v in salts.values():
            if type(v) is not bytes or len(v) != SALT_SIZE:
                return None
        for v in digests.values():
            if type(v) is not bytes or len(v) != DIGEST_SIZE:
                return None
        total = len(out_values) + len(digests)
    if total > MAX_CLAIMS:
        return None
    try:
        if msgpack.packb(raw, use_bin_type=True) != data:
            return None
    except Exception:
        return None
    p = object.__new__(Presentation)
    p.__dict__.update(
        kind=kind,
        key_id=key_id,
        cert_type=cert_type,
        serial=str(serial),
        cert_version=f"{edition:03d}",
        time=t,
        operator=operator,
        valid_from=valid_from,
        valid_until=valid_until,
        reason=reason,
        replaces=replaces,
        signature=signature,
        values=MappingProxyType(out_values),
        secret=secret,
        salts=None if salts is None else MappingProxyType(salts),
        digests=None if digests is None else MappingProxyType(digests),
    )
    return p


def _refuse_ext(code: int, data: bytes) -> Any:
    raise MalformedError(f"msgpack extension type {code} is not allowed")


# -- the offline check ------------------------------------------------------------


class Validity(StrEnum):
    """Where the verifier's clock falls in the certificate's validity window."""

    VALID = "valid"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"


@dataclass(frozen=True, kw_only=True)
class DisclosedClaim:
    """One disclosed claim, named and labelled by the certificate type."""

    key: int
    name: str
    label: str
    kind: str
    value: ClaimValue

    @property
    def text(self) -> str:
        """The value as text (dates as ``YYYY-MM-DD``)."""
        return value_text(self.value)

    def __repr__(self) -> str:
        """The claim's key, name and kind; never its value."""
        return f"DisclosedClaim(key={self.key}, name={self.name!r}, kind={self.kind!r})"


@dataclass(frozen=True, kw_only=True)
class CheckedPresentation:
    """A presentation whose signature, issuer and mandate checked out.

    ``signed`` is the rebuilt signed statement: byte-identical to what the issuer
    signed and logged, so the verifier can look it up in the issuer's log.
    ``validity`` is judged against ``now`` with ``skew`` seconds of allowance; it is
    reported, not enforced. Key compromise, log inclusion and status are the
    verifier's later steps.
    """

    presentation: Presentation
    signed: SignedStatement
    issuer: Member
    log_key: LogKey
    certificate_type: CertificateType
    cert_id: str
    claims: tuple[DisclosedClaim, ...]
    hidden: tuple[str, ...]
    valid_from: int
    valid_until: int | None
    validity: Validity
    checked_at: int

    @property
    def statement(self) -> Statement:
        """The rebuilt statement."""
        return self.signed.statement

    @property
    def full(self) -> bool:
        """True when every claim is disclosed."""
        return self.presentation.full

    def __repr__(self) -> str:
        """Ids, names and the verdict only: never a claim value or secret."""
        return (
            f"CheckedPresentation(cert_id={self.cert_id!r}, issuer={self.issuer.id!r}, "
            f"cert_type={self.certificate_type.code!r}, disclosed={[c.name for c in self.claims]}, "
            f"hidden={list(self.hidden)}, validity={self.validity.value})"
        )

    def claim(self, name: str) -> DisclosedClaim:
        """The disclosed claim called ``name``; SchemaError if it was not disclosed."""
        for c in self.claims:
            if c.name == name:
                return c
        raise SchemaError(f"claim {name!r} was not disclosed")

    def values(self) -> dict[str, ClaimValue]:
        """``{name: value}`` of the disclosed claims."""
        return {c.name: c.value for c in self.claims}


def _iso(t: int) -> str:
    return _dt.datetime.fromtimestamp(t, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def verify_presentation(
    presentation: Presentation,
    *,
    policy: Policy,
    now: int | None = None,
    purpose: str | None = None,
    skew: int = DEFAULT_CLOCK_SKEW,
) -> CheckedPresentation:
    """Check a parsed presentation against the trust policy alone (steps 2 to 6).

    2. the policy has not expired at ``now`` (default: the current time);
    3. the signing key (found by key ID) belongs to a member and was valid at the
       statement's time;
    4. the certificate type lets that member issue it, by a mandate that held at the
       statement's time, and the validity the statement gives is no longer than the
       type allows (never open-ended when the type has a maximum);
    5. the disclosed values fit their claims' kinds, and the issuer's signature over
       the rebuilt statement (which holds every claim digest) verifies; then the
       statement's (now authentic) time is not more than ``skew`` seconds ahead of ``now``;
    6. for ``purpose``, every claim the type needs for it is disclosed.

    Raises PolicyError (``rule`` names the rule: ``expired``, ``future-time``,
    ``unknown-key``, ``key-validity``, ``unknown-type``, ``mandate``,
    ``mandate-validity``, ``max-validity``, ``unknown-purpose``), SignatureError, SchemaError or
    ClaimMismatchError; each message says which step failed and what had been checked
    before it.
    """
    p = presentation
    now = int(_time.time()) if now is None else now
    if policy.expires <= now:
        raise PolicyError(
            f"expired: trust policy version {policy.version} expired at {_iso(policy.expires)}; "
            "get the current policy (parsed; nothing verified)",
            rule="expired",
        )
    try:
        member, log_key = policy.find_log_key(p.key_id)
    except PolicyError as e:
        raise PolicyError(f"{e} (parsed; nothing verified)", rule=e.rule) from None
    if p.time < log_key.valid_from or (log_key.valid_until is not None and p.time >= log_key.valid_until):
        raise PolicyError(
            f"key-validity: log key {p.key_id.hex()} of {member.id} is valid for statements made in "
            f"{log_key.window()}, not at the statement time {_iso(p.time)} "
            "(issuer found; signature not checked)",
            rule="key-validity",
        )
    try:
        ctype = policy.check_mandate(member.id, p.cert_type, "issue", at=p.time)
        ctype.check_validity(p.valid_from, p.valid_until)
    except PolicyError as e:
        raise PolicyError(f"{e} (issuer {member.id} found; signature not checked)", rule=e.rule) from None
    specs, names = _claims_of(ctype)
    disclosed: list[DisclosedClaim] = []
    for key, value in p.values.items():
        spec = specs.get(key)
        try:
            if spec is None:
                spec = ctype.claim_by_key(key)  # raises SchemaError naming the key
            check_canonical(spec, value, check_length=False)
        except SchemaError as e:
            raise SchemaError(f"{e} (issuer and mandate checked; signature not checked)") from None
        disclosed.append(
            _made(
                DisclosedClaim,
                key=key,
                name=spec.name,
                label=spec.label,
                kind=spec.kind,
                value=display_value(spec, value) if spec.kind == "date" else value,
            )
        )
    signed = _signed_statement(p, member=member, ctype=ctype)
    if not log_key.public_key.is_valid(p.signature, statement_message(signed.statement_bytes)):
        what = (
            "a disclosed value, the salt secret or the signature"
            if p.full
            else "a disclosed value, a salt, a digest or the signature"
        )
        raise SignatureError(
            f"statement signature does not verify: {what} was altered, or the certificate is forged "
            f"(issuer {member.id}, key {p.key_id.hex()} and mandate checked)"
        )
    # Only a signed time can blame a clock: an altered time is a bad signature above.
    try:
        check_not_future(p.time, now=now, what="statement time", skew=skew)
    except PolicyError as e:
        raise PolicyError(f"{e} (signature valid)", rule=e.rule) from None
    hidden = tuple(names.get(k) or f"claim {k}" for k in (p.digests or ()))
    if purpose is not None:
        wanted = ctype.purposes.get(purpose)
        if wanted is None:
            raise PolicyError(
                f"unknown-purpose: certificate type {ctype.code} has no purpose {purpose!r} "
                "(signature valid)",
                rule="unknown-purpose",
            )
        shown = {c.name for c in disclosed}
        missing = [n for n in wanted if n not in shown]
        if missing:
            raise ClaimMismatchError(
                f"purpose {purpose} needs {', '.join(missing)} disclosed, but the presentation hides "
                f"{'it' if len(missing) == 1 else 'them'} (signature valid)"
            )
    if now < p.valid_from - skew:
        validity = Validity.NOT_YET_VALID
    elif p.valid_until is not None and now >= p.valid_until + skew:
        validity = Validity.EXPIRED
    else:
        validity = Validity.VALID
    return _made(
        CheckedPresentation,
        presentation=p,
        signed=signed,
        issuer=member,
        log_key=log_key,
        certificate_type=ctype,
        cert_id=signed.statement.cert_id,
        claims=tuple(disclosed),
        hidden=hidden,
        valid_from=p.valid_from,
        valid_until=p.valid_until,
        validity=validity,
        checked_at=now,
    )


def _made(cls: type[_T], **fields: Any) -> _T:
    """An instance of the frozen dataclass ``cls`` with ``fields``, which the caller has
    checked already (what its constructor would do, without re-checking)."""
    obj = object.__new__(cls)
    obj.__dict__.update(fields)
    return obj


#: Per certificate type: its claims by key and their names (the type is immutable).
_CLAIMS_OF: dict[int, tuple[CertificateType, dict[int, ClaimSpec], dict[int, str]]] = {}


def _claims_of(ctype: CertificateType) -> tuple[dict[int, ClaimSpec], dict[int, str]]:
    hit = _CLAIMS_OF.get(id(ctype))
    if hit is not None and hit[0] is ctype:
        return hit[1], hit[2]
    specs = {c.key: c for c in ctype.claims}
    names = {k: c.name for k, c in specs.items()}
    if len(_CLAIMS_OF) >= 1024:
        _CLAIMS_OF.clear()
    _CLAIMS_OF[id(ctype)] = (ctype, specs, names)
    return specs, names


def _signed_statement(p: Presentation, *, member: Member, ctype: CertificateType) -> SignedStatement:
    """The signed statement ``p`` stands for, rebuilt: what :meth:`Presentation.statement`
    and :meth:`SignedStatement.from_statement` give, without re-checking what is already
    checked. Every field of ``p`` passed the statement's own rules when ``p`` was built
    (same patterns, ranges and kinds), the member id, its issuer code and the type's
    national code passed the policy's (the certificate id's segment rules), and the
    claim digests are computed here; so the one rule left is that a certificate does
    not replace itself. The tests hold this to the general route."""
    cid = _made(
        CertId,
        type_code=ctype.national_code,
        issuer_code=member.issuer_code,
        serial=p.serial,
        version=p.cert_version,
    )
    text = str(cid)
    if p.replaces is not None and p.replaces == text:
        raise MalformedError("statement: a certificate cannot replace itself")
    statement = _made(
        Statement,
        kind=p.kind,
        issuer=member.id,
        cert_id=text,
        cert_type=p.cert_type,
        time=p.time,
        operator=p.operator,
        valid_from=p.valid_from,
        valid_until=p.valid_until,
        claim_digests=MappingProxyType(p.claim_digests()),
        reason=p.reason,
        replaces=p.replaces,
        policy_version=None,
        policy_hash=None,
        version=STATEMENT_VERSION,
    )
    return SignedStatement._from_parts(statement, statement.to_bytes(), p.key_id, p.signature)


def check_presentation(
    text: str,
    *,
    policy: Policy,
    now: int | None = None,
    purpose: str | None = None,
    skew: int = DEFAULT_CLOCK_SKEW,
) -> CheckedPresentation:
    """Parse ``CL1:`` text strictly and check it offline against the trust policy.

    See :meth:`Presentation.from_text` (step 1) and :func:`verify_presentation`
    (steps 2 to 6). The replica checks (log inclusion, status, freshness) are the
    verifier's.
    """
    return verify_presentation(
        Presentation.from_text(text), policy=policy, now=now, purpose=purpose, skew=skew
    )
