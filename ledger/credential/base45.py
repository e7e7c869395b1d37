"""Strict Base45 (RFC 9285), the QR-alphanumeric-friendly text encoding of QR payloads.

Encoding looks up three characters per two bytes in a table. Decoding is strict: a size cap applied before
any work, only the 45 characters of the alphabet, a length that is not ``1 (mod 3)``,
and no group whose value is out of range (``> 0xFFFF`` for three characters, ``> 0xFF``
for two), which is what makes the encoding canonical: every byte string has exactly
one Base45 text, so a decoded text always re-encodes to itself. The decoder turns the
characters into digits with one byte translation (it is on every verification's path).
"""

from __future__ import annotations

import re
import struct

from ledger.errors import MalformedError, TooLargeError

__all__ = ["ALPHABET", "b45decode", "b45encode"]

#: The Base45 alphabet, which is exactly the QR code alphanumeric character set.
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_VALID = re.compile(r"[0-9A-Z $%*+\-./:]*")


def b45encode(data: bytes) -> str:
    """The Base45 text of ``data`` (RFC 9285), a table look-up per two bytes."""
    data = bytes(data)
    full = len(data) - len(data) % 2
    table = _ENCODE
    text = "".join([table[g] for g in struct.unpack(f">{full // 2}H", data[:full])])
    if full < len(data):
        b = data[-1]
        text += ALPHABET[b % 45] + ALPHABET[b // 45]
    return text


def b45decode(text: str, *, max_size: int, what: str = "Base45 text") -> bytes:
    """Decode ``text`` strictly; ``max_size`` caps the decoded length.

    Raises :class:`~ledger.errors.TooLargeError` when ``text`` would decode to more
    than ``max_size`` bytes, and :class:`~ledger.errors.MalformedError` for characters
    outside the alphabet, an impossible length, or an out-of-range group.
    """
    if not isinstance(text, str):
        raise MalformedError(f"{what}: expected text, got {type(text).__name__}")
    if len(text) > (max_size * 3 + 1) // 2:
        raise TooLargeError(f"{what}: {len(text)} characters decode to more than {max_size} bytes")
    if not _VALID.fullmatch(text):
        bad = next(ch for ch in text if ch not in ALPHABET)
        raise MalformedError(f"{what}: character {bad!r} is not in the Base45 alphabet")
    if len(text) % 3 == 1:
        raise MalformedError(f"{what}: {len(text)} characters is not a possible Base45 length")
    digits = text.encode("ascii").translate(_DIGITS)  # each character's value, 0..44
    full = len(digits) - len(digits) % 3
    groups = [
        a + 45 * b + 2025 * c
        for a, b, c in zip(digits[0:full:3], digits[1:full:3], digits[2:full:3], strict=True)
    ]
    tail = digits[full] + 45 * digits[full + 1] if full < len(digits) else None
    if (groups and max(groups) > 0xFFFF) or (tail is not None and tail > 0xFF):
        raise MalformedError(f"{what}: a character group is out of range (not canonical Base45)")
    data = struct.pack(f">{len(groups)}H", *groups)
    return data if tail is None else data + bytes((tail,))


#: Byte translation table from an alphabet character's ASCII code to its value.
_DIGITS = bytes(ALPHABET.index(chr(b)) if chr(b) in ALPHABET else 0 for b in range(256))
#: The three characters of each 16-bit group (low digit first).
_ENCODE = [ALPHABET[n % 45] + ALPHABET[n // 45 % 45] + ALPHABET[n // 2025] for n in range(1 << 16)]
