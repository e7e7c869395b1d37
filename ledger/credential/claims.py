"""Claim values, their salts and their digests.

Every claim has a *canonical value*, which is what is hashed and what travels in a
QR code, chosen by the claim's kind in the certificate type's schema:

========  ==================================  ===============================
kind      value shown to people / in files    canonical value
========  ==================================  ===============================
text      a Unicode string                    the same string
code      upper-case letters and digits       the same string
integer   a whole number                      the same integer
date      ``YYYY-MM-DD``                      days since 1970-01-01 (integer)
========  ==================================  ===============================

Salts and digests (``key`` is the claim's compact key, 0..255)::

    salt(secret, key)          = HMAC-SHA256(secret, SALT_CONTEXT || u8(key))[:16]
    digest(salt, key, value)   = SHA-256(DIGEST_CONTEXT || msgpack([salt, key, value]))

where ``secret`` is the certificate's 16-byte random salt secret and ``msgpack`` is the
canonical encoding of :mod:`ledger.canonical`. Each salt carries 128 bits of entropy
(the secret's), salts of different claims are independent to anyone who does not hold
the secret, and the canonical encoding makes ``(salt, key, value)`` unambiguous, so a
digest binds one value to one claim of one certificate.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import msgpack

from ledger import canonical
from ledger.errors import SchemaError
from ledger.trust.policy import ClaimSpec

__all__ = [
    "DIGEST_CONTEXT",
    "DIGEST_SIZE",
    "SALT_CONTEXT",
    "SALT_SIZE",
    "SECRET_SIZE",
    "CanonicalValue",
    "ClaimValue",
    "canonical_reader",
    "canonical_value",
    "check_canonical",
    "claim_digest",
    "claim_salt",
    "claim_salts",
    "date_from_days",
    "days_from_date",
    "digests_from_secret",
    "display_value",
    "value_text",
]

#: Domain separation of claim salts and claim digests.
SALT_CONTEXT = b"certledger/claim-salt/v1\n"
DIGEST_CONTEXT = b"certledger/claim-digest/v1\n"
SECRET_SIZE = 16
SALT_SIZE = 16
DIGEST_SIZE = 32

#: A claim value as people and files see it.
ClaimValue = str | int | _dt.date
#: A claim value as it is hashed and carried in QR codes.
CanonicalValue = str | int

_EPOCH = _dt.date(1970, 1, 1).toordinal()
_MIN_DAY = _dt.date.min.toordinal() - _EPOCH
_MAX_DAY = _dt.date.max.toordinal() - _EPOCH
_DATE_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_CODE = re.compile(r"[0-9A-Z]+")
# Unicode categories Cc (C0 and C1 controls, DEL) and Cs (surrogates): never in claim text.
_CONTROL_OR_SURROGATE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1


def days_from_date(d: _dt.date) -> int:
    """Days since 1970-01-01 (negative before it)."""
    return d.toordinal() - _EPOCH


def date_from_days(days: int) -> _dt.date:
    """The date ``days`` after 1970-01-01; SchemaError outside years 1..9999."""
    if type(days) is not int or not _MIN_DAY <= days <= _MAX_DAY:
        raise SchemaError(f"day number {days!r} is not a date between years 1 and 9999")
    return _dt.date.fromordinal(days + _EPOCH)


def _where(spec: ClaimSpec) -> str:
    return f"claim {spec.name!r} ({spec.label})"


def check_canonical(spec: ClaimSpec, value: Any, *, check_length: bool = True) -> CanonicalValue:
    """Return ``value`` if it is a valid canonical value for ``spec``, else raise SchemaError.

    ``check_length`` applies ``spec.max_length`` (issuers always do; a verifier skips
    it so that a later, stricter schema does not invalidate issued certificates).
    """
    if spec.kind in ("text", "code"):
        if type(value) is not str:
            raise SchemaError(f"{_where(spec)}: expected a string, got {type(value).__name__}")
        if not value:
            raise SchemaError(f"{_where(spec)}: must not be empty")
        if check_length and len(value) > spec.max_length:
            raise SchemaError(
                f"{_where(spec)}: {len(value)} characters is over the limit of {spec.max_length}"
            )
        if spec.kind == "code":
            if not _CODE.fullmatch(value):
                raise SchemaError(f"{_where(spec)}: a code is upper-case letters A-Z and digits only")
        else:
            bad = _CONTROL_OR_SURROGATE.search(value)
            if bad is not None:
                raise SchemaError(f"{_where(spec)}: contains the control character U+{ord(bad.group()):04X}")
        return value
    if spec.kind == "integer":
        if type(value) is not int:
            raise SchemaError(f"{_where(spec)}: expected an integer, got {type(value).__name__}")
        if not _INT_MIN <= value <= _INT_MAX:
            raise SchemaError(f"{_where(spec)}: integer is out of range")
        if check_length and len(str(abs(value))) > spec.max_length:
            raise SchemaError(f"{_where(spec)}: more than {spec.max_length} digits")
        return value
    if spec.kind == "date":
        if type(value) is not int:
            raise SchemaError(f"{_where(spec)}: expected a day number, got {type(value).__name__}")
        if not _MIN_DAY <= value <= _MAX_DAY:
            raise SchemaError(f"{_where(spec)}: the day number is not a date between years 1 and 9999")
        return value
    raise SchemaError(f"{_where(spec)}: unknown kind {spec.kind!r}")


def canonical_value(spec: ClaimSpec, value: Any) -> CanonicalValue:
    """The canonical value of ``value`` as given by an issuer or read from a file.

    Dates may be given as :class:`datetime.date` or ``YYYY-MM-DD`` text; every other
    kind must already have its canonical Python type. Raises SchemaError naming the
    claim and what was wrong.
    """
    if spec.kind == "date":
        if isinstance(value, _dt.datetime):
            raise SchemaError(f"{_where(spec)}: expected a date, got a date and time")
        if isinstance(value, _dt.date):
            return days_from_date(value)
        if type(value) is not str or not _DATE_TEXT.fullmatch(value):
            got = f"{len(value)} characters" if type(value) is str else type(value).__name__
            raise SchemaError(f"{_where(spec)}: expected a date written YYYY-MM-DD, got {got}")
        try:
            return days_from_date(_dt.date.fromisoformat(value))
        except ValueError:
            raise SchemaError(f"{_where(spec)}: not a calendar date") from None
    return check_canonical(spec, value)


def canonical_reader(spec: ClaimSpec) -> Callable[[Any], CanonicalValue]:
    """``canonical_value(spec, ·)`` specialised for ``spec``, for checking many values.

    A text, code or integer value that is valid passes one combined test of exactly
    the rules of :func:`check_canonical`; anything else (and every date) goes through
    :func:`canonical_value` itself, so the result and every error are the same.
    """
    limit = spec.max_length

    def slow(value: Any) -> CanonicalValue:
        return canonical_value(spec, value)

    if spec.kind == "text":
        control = _CONTROL_OR_SURROGATE.search

        def text(value: Any) -> CanonicalValue:
            if type(value) is str and 0 < len(value) <= limit and control(value) is None:
                return value
            return slow(value)

        return text
    if spec.kind == "code":
        code = _CODE.fullmatch  # one or more characters: never empty

        def code_value(value: Any) -> CanonicalValue:
            if type(value) is str and len(value) <= limit and code(value) is not None:
                return value
            return slow(value)

        return code_value
    if spec.kind == "integer":

        def integer(value: Any) -> CanonicalValue:
            if type(value) is int and _INT_MIN <= value <= _INT_MAX and len(str(abs(value))) <= limit:
                return value
            return slow(value)

        return integer
    return slow


def display_value(spec: ClaimSpec, value: CanonicalValue) -> ClaimValue:
    """The value people see: a :class:`datetime.date` for dates, else ``value``."""
    if spec.kind == "date":
        assert type(value) is int
        return date_from_days(value)
    return value


def value_text(value: ClaimValue) -> str:
    """``value`` as text (dates as ``YYYY-MM-DD``)."""
    return value.isoformat() if isinstance(value, _dt.date) else str(value)


def claim_salt(secret: bytes, key: int) -> bytes:
    """The 16-byte salt of claim ``key`` derived from the certificate's salt secret."""
    if type(secret) is not bytes or len(secret) != SECRET_SIZE:
        raise SchemaError(f"the salt secret must be {SECRET_SIZE} bytes")
    if type(key) is not int or not 0 <= key <= 255:
        raise SchemaError(f"claim key {key!r} must be an integer 0..255")
    return hmac.digest(secret, SALT_CONTEXT + bytes([key]), "sha256")[:SALT_SIZE]


_IPAD = bytes(i ^ 0x36 for i in range(256))  # HMAC's pads, as byte translation tables
_OPAD = bytes(i ^ 0x5C for i in range(256))


def claim_salts(secret: bytes, keys: Iterable[int]) -> dict[int, bytes]:
    """``{key: claim_salt(secret, key)}`` for many claims of one certificate.

    The same HMAC-SHA256 as :func:`claim_salt`, with the key's inner and outer pads
    hashed once for the whole certificate.
    """
    if type(secret) is not bytes or len(secret) != SECRET_SIZE:
        raise SchemaError(f"the salt secret must be {SECRET_SIZE} bytes")
    padded = secret + bytes(64 - SECRET_SIZE)
    inner = hashlib.sha256(padded.translate(_IPAD))
    outer = hashlib.sha256(padded.translate(_OPAD))
    inner.update(SALT_CONTEXT)
    out: dict[int, bytes] = {}
    for key in keys:
        if type(key) is not int or not 0 <= key <= 255:
            raise SchemaError(f"claim key {key!r} must be an integer 0..255")
        i = inner.copy()
        i.update(bytes((key,)))
        o = outer.copy()
        o.update(i.digest())
        out[key] = o.digest()[:SALT_SIZE]
    return out


#: SHA-256 state after DIGEST_CONTEXT: each digest copies it instead of hashing the context again.
_DIGEST_STATE = hashlib.sha256(DIGEST_CONTEXT)
_KEY_BYTE = tuple(bytes((k,)) for k in range(256))


def claim_digest(salt: bytes, key: int, value: CanonicalValue) -> bytes:
    """The 32-byte digest of a claim's canonical value under its salt."""
    if type(salt) is not bytes or len(salt) != SALT_SIZE:
        raise SchemaError(f"a claim salt must be {SALT_SIZE} bytes")
    h = _DIGEST_STATE.copy()
    if type(key) is int and 0 <= key <= 255 and (type(value) is str or type(value) is int):
        # A list of bytes, a small int and a str or int: msgpack's own smallest-form
        # encoding is the canonical one (the tests compare it with canonical.encode).
        try:
            h.update(msgpack.packb([salt, key, value], use_bin_type=True))
        except (ValueError, OverflowError, UnicodeEncodeError):
            h.update(canonical.encode([salt, key, value]))  # raises MalformedError
        return h.digest()
    h.update(canonical.encode([salt, key, value]))
    return h.digest()


def digests_from_secret(secret: bytes, values: Mapping[int, CanonicalValue]) -> dict[int, bytes]:
    """``{key: digest}`` for canonical ``values`` with salts derived from ``secret``.

    The same HMAC-SHA256 and SHA-256 as :func:`claim_salt` and :func:`claim_digest`,
    with the HMAC pads and the digest context hashed once, and one msgpack packer for
    the certificate.
    """
    if type(secret) is not bytes or len(secret) != SECRET_SIZE:
        raise SchemaError(f"the salt secret must be {SECRET_SIZE} bytes")
    padded = secret + bytes(64 - SECRET_SIZE)
    inner = hashlib.sha256(padded.translate(_IPAD))
    outer = hashlib.sha256(padded.translate(_OPAD))
    inner.update(SALT_CONTEXT)
    state, key_byte = _DIGEST_STATE, _KEY_BYTE
    pack = msgpack.Packer(use_bin_type=True).pack  # one per call: a packer is not shared between threads
    out: dict[int, bytes] = {}
    for k in sorted(values):
        if type(k) is not int or not 0 <= k <= 255:
            raise SchemaError(f"claim key {k!r} must be an integer 0..255")
        i = inner.copy()
        i.update(key_byte[k])
        o = outer.copy()
        o.update(i.digest())
        salt = o.digest()[:SALT_SIZE]
        v = values[k]
        if type(v) is str or type(v) is int:
            h = state.copy()
            try:  # see claim_digest: msgpack's smallest form is the canonical one here
                h.update(pack([salt, k, v]))
            except (ValueError, OverflowError, UnicodeEncodeError):
                pack = msgpack.Packer(use_bin_type=True).pack  # a failed pack may leave its buffer dirty
            else:
                out[k] = h.digest()
                continue
        out[k] = claim_digest(salt, k, v)
    return out
