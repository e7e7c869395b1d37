"""Printing a story told in numbered steps, wrapped for a terminal, Chinese included."""

from __future__ import annotations

import re
import unicodedata

import click

__all__ = ["WIDTH", "Out"]

#: Output width in terminal columns.
WIDTH = 100


def _columns(text: str) -> int:
    """Terminal columns ``text`` takes: two for each wide (CJK) character."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _spaced(text: str) -> list[tuple[str, str]]:
    """The breakable pieces of ``text`` with the spaces before each: words, and each wide
    character on its own."""
    out: list[tuple[str, str]] = []
    for m in re.finditer(r"(\s*)(\S+)", text):
        gap, run = m.group(1), ""
        for c in m.group(2):
            if unicodedata.east_asian_width(c) in "WF":
                if run:
                    out.append((run, gap))
                    run, gap = "", ""
                out.append((c, gap))
                gap = ""
            else:
                run += c
        if run:
            out.append((run, gap))
    return out


def _pack(pieces: list[tuple[str, str]], width: int, first: str, rest: str) -> list[str]:
    """The pieces in lines of at most ``width`` columns (a longer piece gets a line of its own)."""
    lines: list[str] = []
    line, empty = first, True
    for piece, space in pieces:
        gap = "" if empty else space
        if not empty and _columns(line + gap + piece) > width:
            lines.append(line)
            line, empty, gap = rest, True, ""
        line += gap + piece
        empty = False
    lines.append(line)
    return lines


class Out:
    """Prints the demo's lines wrapped at :data:`WIDTH` columns; nothing when quiet."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def __call__(self, text: str = "", indent: int = 3, *, wrap: bool = True, hang: int = 2) -> None:
        """Print ``text`` indented, its further lines by ``hang`` more."""
        if self.quiet:
            return
        if not text or not wrap:
            click.echo(" " * indent + text if text else "")
            return
        click.echo("\n".join(_pack(_spaced(text), WIDTH, " " * indent, " " * (indent + hang))))

    def step(self, n: int, title: str) -> None:
        self()
        self(f"{n}. {title}", 0)
