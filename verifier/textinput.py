"""Typed or scanned QR text: trimming what scanners add and spotting altered input.

A USB "keyboard wedge" scanner types the QR text into a focused field. It usually ends
with Enter, and when a Chinese input method is active some characters arrive in their
full-width forms (``ＣＬ１：``), or letters arrive in lower case under Caps Lock. Such
text is not what the code holds, so the verifier says "input mangled" instead of
judging the certificate from it.
"""

from __future__ import annotations

import re
import unicodedata

from ledger.credential.base45 import ALPHABET
from ledger.credential.presentation import PREFIX

__all__ = ["MANGLED_WARNING", "clean_text", "mangled_reason"]

#: The warning a verdict carries when the input was altered on its way in.
MANGLED_WARNING = "input_mangled"
_ALLOWED = frozenset(ALPHABET)
_BASE45_ONLY = re.compile(r"[0-9A-Z $%*+\-./:]*")
_TRIM = "\r\n\t\ufeff"


def clean_text(text: str) -> str:
    """``text`` without the line ends, tabs and byte-order mark a scanner or a paste adds
    at either end. Spaces are kept: a space is a Base45 character."""
    return text.strip(_TRIM)


def mangled_reason(text: str) -> tuple[str, str] | None:
    """``(zh, en)`` saying how ``text`` looks altered, or None if it does not.

    Text is mangled when it becomes a ``CL1:`` code only after undoing full-width forms
    or lower case, or when it starts with ``CL1:`` but carries characters outside the
    Base45 alphabet. Text that is not meant as a certledger code at all is not mangled.
    """
    if text.startswith(PREFIX):
        if _BASE45_ONLY.fullmatch(text, len(PREFIX)):
            return None
        bad = sorted({c for c in text[len(PREFIX) :] if c not in _ALLOWED})
        shown = " ".join(_describe(c) for c in bad[:5])
        if any(_is_wide(c) for c in bad):
            return (
                f"输入被改动：含有全角字符（{shown}），请关闭中文输入法后重新扫描",
                f"input mangled: full-width characters ({shown}); switch off the Chinese input method "
                "and scan again",
            )
        if any(c.islower() for c in bad):
            return (
                f"输入被改动：含有小写字母（{shown}），请关闭大写锁定后重新扫描",
                f"input mangled: lower-case letters ({shown}); switch off Caps Lock and scan again",
            )
        return (
            f"输入被改动：含有二维码中不可能出现的字符（{shown}），请重新扫描",
            f"input mangled: characters a certledger code cannot hold ({shown}); scan again",
        )
    folded = unicodedata.normalize("NFKC", text).upper()
    if folded.startswith(PREFIX):
        if any(_is_wide(c) for c in text):
            return (
                "输入被改动：含有全角字符，请关闭中文输入法后重新扫描",
                "input mangled: full-width characters; switch off the Chinese input method and scan again",
            )
        return (
            "输入被改动：含有小写字母，请关闭大写锁定后重新扫描",
            "input mangled: lower-case letters; switch off Caps Lock and scan again",
        )
    return None


def _is_wide(c: str) -> bool:
    return unicodedata.east_asian_width(c) in ("F", "W")


def _describe(c: str) -> str:
    return repr(c) if c.isprintable() else f"U+{ord(c):04X}"
