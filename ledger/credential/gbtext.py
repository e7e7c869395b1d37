"""GB 18030 transport of text in CL1 presentations.

UTF-8 spends three bytes on each Chinese character, GB 18030 two. A CL1 presentation
therefore carries a text value as its GB 18030 bytes when it can do so unambiguously,
and as UTF-8 otherwise. This is transport only: the claim's canonical value (what is
hashed, signed and logged) is always the Unicode string, and a reader turns the bytes
back into exactly that string before checking anything.

A value is carried as GB 18030 (:func:`gb18030_form` returns its bytes) exactly when

* it has at least one non-ASCII character (an ASCII value is the same bytes in both
  encodings, so it stays UTF-8), and
* every non-ASCII character has a **two-byte** GB 18030 code and is not a private-use
  character.

The two-byte codes whose character is not private-use are mapped identically by
GB 18030-2000, -2005 and -2022 (the editions differ only on codes that an older
edition mapped to the private-use area, and on four-byte codes), so every conforming
reader gets the same string back. Characters outside that set (rare characters that
only have four-byte codes, emoji, private-use characters) make the whole value travel
as UTF-8: nothing is refused, and each value has exactly one form.

GB 18030 is not GBK/CP936: they map a few two-byte codes to other characters (for
example A1A4 is U+00B7 MIDDLE DOT in GB 18030 and U+30FB in CP936), so a reader must
decode with GB 18030.
"""

from __future__ import annotations

import codecs
import re

from ledger.errors import MalformedError

__all__ = ["from_gb18030", "gb18030_form", "is_gb18030_transportable"]

_PRIVATE_USE = re.compile("[\ue000-\uf8ff]")
# The codec functions, looked up once (naming the codec looks it up on every call).
_ENCODE = codecs.getencoder("gb18030")
_DECODE = codecs.getdecoder("gb18030")


def _form(value: str) -> bytes | None:
    if value.isascii() or _PRIVATE_USE.search(value):
        return None
    try:
        data: bytes = _ENCODE(value)[0]
    except UnicodeEncodeError:  # lone surrogates
        return None
    ascii_count = len(value.encode("ascii", "ignore"))
    # one byte per ASCII character and two per other character: no four-byte code
    if len(data) != 2 * len(value) - ascii_count:
        return None
    return data


def gb18030_form(value: str) -> bytes | None:
    """The GB 18030 bytes that carry ``value``, or None if it travels as UTF-8."""
    return _form(value)


def is_gb18030_transportable(value: str) -> bool:
    """True when ``value`` travels as GB 18030 (see the module docstring)."""
    return _form(value) is not None


def from_gb18030(data: bytes, *, what: str = "value") -> str:
    """The text that GB 18030 ``data`` carries; MalformedError unless it is the one form.

    Strict: the bytes must decode, must be exactly what :func:`gb18030_form` gives for
    the decoded text (no four-byte codes, no private-use characters), and the text must
    not be ASCII only (that travels as UTF-8).
    """
    try:
        value: str = _DECODE(data)[0]
    except UnicodeDecodeError as e:
        raise MalformedError(f"{what} is not valid GB 18030 (byte {e.start})") from None
    if _form(value) != data:
        raise MalformedError(
            f"{what} is not canonical: GB 18030 carries only text with a non-ASCII character "
            "and two-byte codes that are not private-use; send other text as UTF-8"
        )
    return value
