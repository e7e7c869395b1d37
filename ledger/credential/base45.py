"""Strict Base45 (RFC 9285), the QR-alphanumeric-friendly text encoding of QR payloads.

Encoding looks up three characters per two bytes in a table. Decoding is strict: a
size cap applied before any work, only the 45 characters of the alphabet, a length that is not ``1 (mod 3)``,
and no group whose value is out of range (``> 0xFFFF`` for three characters, ``> 0xFF``
for two), which is what makes the encoding canonical: every byte string has exactly
one Base45 text, so a decoded text always re-encodes to itself. The decoder turns the
characters into digits with one byte translation and computes every group in a few
operations on one large integer (it is on every verification's path).
"""

from __future__ import annotations

import array
import functools
import sys
from operator import itemgetter

from ledger.errors import MalformedError, TooLargeError

__all__ = ["ALPHABET", "b45decode", "b45encode"]

#: The Base45 alphabet, which is exactly the QR code alphanumeric character set.
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"


def b45encode(data: bytes) -> str:
    """The Base45 text of ``data`` (RFC 9285), a table look-up per two bytes."""
    data = bytes(data)
    full = len(data) - len(data) % 2
    groups = array.array("H", data[:full])  # the 16-bit groups, in one C call
    if _SWAP:
        groups.byteswap()  # Base45 reads each group big-endian
    # One C call looks every group up: a tuple of the characters, or one string for one group.
    text = "".join(itemgetter(*groups)(_ENCODE)) if groups else ""
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
    try:
        digits = text.encode("ascii").translate(_DIGITS)  # each character's value, 0..44
    except UnicodeEncodeError:
        digits = b"\xff"  # not in the alphabet: named below
    if b"\xff" in digits:
        bad = next(ch for ch in text if ch not in ALPHABET)
        raise MalformedError(f"{what}: character {bad!r} is not in the Base45 alphabet")
    if len(text) % 3 == 1:
        raise MalformedError(f"{what}: {len(text)} characters is not a possible Base45 length")
    n = len(digits) // 3
    # All groups at once: the digits as one little-endian integer hold group i in
    # bits 24i..24i+23 (a, b, c one byte each); a + 45b + 2025c <= 91124 < 2**24 stays
    # in its own 24 bits, and a group over 0xFFFF shows as a bit in its lane's top byte.
    whole = int.from_bytes(digits if 3 * n == len(digits) else digits[: 3 * n], "little")
    low, top = _lanes(n)
    groups = (whole & low) + 45 * ((whole >> 8) & low) + 2025 * ((whole >> 16) & low)
    tail = digits[3 * n] + 45 * digits[3 * n + 1] if 3 * n < len(digits) else None
    if groups & top or (tail is not None and tail > 0xFF):
        raise MalformedError(f"{what}: a character group is out of range (not canonical Base45)")
    lanes = groups.to_bytes(3 * n, "little")  # per group: low byte, high byte, zero
    out = bytearray(2 * n + (tail is not None))
    out[0 : 2 * n : 2] = lanes[1::3]
    out[1 : 2 * n : 2] = lanes[0::3]
    if tail is not None:
        out[-1] = tail
    return bytes(out)


@functools.lru_cache(maxsize=64)
def _lanes(n: int) -> tuple[int, int]:
    """Masks of ``n`` 24-bit lanes: each lane's low byte, and each lane's top byte."""
    low = int.from_bytes(b"\xff\x00\x00" * n, "little")
    return low, low << 16


#: Byte translation table from an alphabet character's ASCII code to its value (0xFF:
#: not in the alphabet).
_DIGITS = bytes(ALPHABET.index(chr(b)) if chr(b) in ALPHABET else 0xFF for b in range(256))
_SWAP = sys.byteorder == "little"
#: The three characters of each 16-bit group (low digit first): 65,536 short strings,
#: about 4 MB, built in a few milliseconds at import.
_ENCODE = [ALPHABET[n % 45] + ALPHABET[n // 45 % 45] + ALPHABET[n // 2025] for n in range(1 << 16)]
