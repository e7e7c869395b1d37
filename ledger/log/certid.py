"""Certificate identifiers in the national e-licence structure (GB/T 36904 style).

An identifier reads ``1.2.156.3005.2.<type>.<issuer code>.<serial>.<version>.<check>``:

* ``type`` — the national licence-type code (upper-case letters and digits),
* ``issuer code`` — the issuing authority's code, usually its 18-character unified
  social credit code,
* ``serial`` — the issuer's serial number (digits),
* ``version`` — three digits, ``001`` for the first edition,
* ``check`` — one character computed with ISO/IEC 7064 MOD 37,36 (GB/T 17710) over
  every preceding character of the identifier with the dots left out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from ledger.errors import MalformedError

__all__ = ["PREFIX", "CertId", "check_character", "is_valid_cert_id"]

#: The fixed object-identifier arc every e-licence identifier starts with.
PREFIX = "1.2.156.3005.2"
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_VALUE = {c: i for i, c in enumerate(_ALPHABET)}
_SEGMENT = re.compile(r"[0-9A-Z]{1,40}")
_SERIAL = re.compile(r"[0-9]{1,20}")
_VERSION = re.compile(r"[0-9]{3}")
_MAX_LEN = 160
# A well-formed identifier in one match (the segments' patterns above); parse() then
# only checks the check character, and names the broken rule the slow way otherwise.
_WHOLE = re.compile(
    r"1\.2\.156\.3005\.2\.([0-9A-Z]{1,40})\.([0-9A-Z]{1,40})\.([0-9]{1,20})\.([0-9]{3})\.(.)", re.S
)


# _STEP[p][ch]: the MOD 37,36 state after reading ``ch`` in state ``p`` (1..36).
_STEP = [{c: (((p + v) % 36 or 36) * 2) % 37 for c, v in _VALUE.items()} for p in range(37)]


def _run(p: int, text: str) -> int:
    try:
        for ch in text:
            p = _STEP[p][ch]
    except KeyError:
        bad = next(ch for ch in text if ch not in _VALUE)
        raise MalformedError(f"character {bad!r} cannot be in a check-character computation") from None
    return p


@lru_cache(maxsize=1024)
def _prefix_state(type_code: str, issuer_code: str) -> int:
    """The state after the identifier's prefix, type and issuer code (shared by many ids)."""
    return _run(36, PREFIX.replace(".", "") + type_code + issuer_code)


def check_character(text: str) -> str:
    """ISO/IEC 7064 MOD 37,36 check character of ``text`` (digits and A–Z only)."""
    return _ALPHABET[(37 - _run(36, text)) % 36]


def is_valid_cert_id(text: object) -> bool:
    """True if :meth:`CertId.parse` accepts ``text``, without building the object (a log
    mirror checks a million of them)."""
    if type(text) is not str or len(text) > _MAX_LEN:
        return False
    m = _WHOLE.fullmatch(text)
    if m is None:
        return False
    type_code, issuer_code, serial, version, check = m.groups()
    return check == _ALPHABET[(37 - _run(_prefix_state(type_code, issuer_code), serial + version)) % 36]


@dataclass(frozen=True, kw_only=True)
class CertId:
    """A parsed certificate identifier."""

    type_code: str
    issuer_code: str
    serial: str
    version: str

    def __post_init__(self) -> None:
        for label, value, pattern in (
            ("licence-type code", self.type_code, _SEGMENT),
            ("issuer code", self.issuer_code, _SEGMENT),
            ("serial", self.serial, _SERIAL),
            ("version", self.version, _VERSION),
        ):
            if not isinstance(value, str) or not pattern.fullmatch(value):
                raise MalformedError(f"certificate id: {label} {value!r} is not well-formed")

    @property
    def body(self) -> str:
        """The identifier without its check character (and without the trailing dot)."""
        return f"{PREFIX}.{self.type_code}.{self.issuer_code}.{self.serial}.{self.version}"

    @property
    def check(self) -> str:
        """The check character."""
        p = _run(_prefix_state(self.type_code, self.issuer_code), self.serial + self.version)
        return _ALPHABET[(37 - p) % 36]

    def __str__(self) -> str:
        return f"{self.body}.{self.check}"

    @classmethod
    def parse(cls, text: str) -> CertId:
        """Parse and validate an identifier, including its check character."""
        if not isinstance(text, str) or len(text) > _MAX_LEN:
            raise MalformedError("certificate id is not a string of a sensible length")
        m = _WHOLE.fullmatch(text)
        if m is not None:
            type_code, issuer_code, serial, version, check = m.groups()
            cid = object.__new__(cls)  # the segments matched their patterns just now
            object.__setattr__(cid, "type_code", type_code)
            object.__setattr__(cid, "issuer_code", issuer_code)
            object.__setattr__(cid, "serial", serial)
            object.__setattr__(cid, "version", version)
            if check != cid.check:
                raise MalformedError(f"certificate id check character is {check!r}, expected {cid.check!r}")
            return cid
        if not text.startswith(PREFIX + "."):
            raise MalformedError(f"certificate id must start with {PREFIX}.")
        parts = text[len(PREFIX) + 1 :].split(".")
        if len(parts) != 5:
            raise MalformedError(
                f"certificate id must have the form {PREFIX}.<type>.<issuer code>.<serial>.<version>.<check>"
            )
        type_code, issuer_code, serial, version, check = parts
        cid = cls(type_code=type_code, issuer_code=issuer_code, serial=serial, version=version)
        if len(check) != 1 or check != cid.check:
            raise MalformedError(f"certificate id check character is {check!r}, expected {cid.check!r}")
        return cid
