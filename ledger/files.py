"""Files and strict JSON, done one way everywhere.

* :func:`read_capped` reads a whole file, but never more than a cap: it reads one
  byte past the cap, so FIFOs, devices and files that grow while read are capped too.
* :func:`write_file` writes a file durably with exact permission bits (the umask
  neither widens nor narrows them): a new file is created exclusively; with
  ``overwrite=True`` a temporary file in the same directory is renamed over the old
  one, so readers see the old bytes or the new ones, never a mix.
* :func:`loads_json` parses JSON strictly: UTF-8 only, size-capped before parsing,
  no duplicate keys, no floats, NaN or Infinity, integers capped in digits, nesting
  depth capped, no unpaired surrogates.

Every failure is a :class:`~ledger.errors.FileError` (naming the path and the
operating system's reason), a :class:`~ledger.errors.TooLargeError` or a
:class:`~ledger.errors.MalformedError`, and names ``what`` was being read or written.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ledger.errors import FileError, MalformedError, TooLargeError

__all__ = ["fsync_path", "loads_json", "read_capped", "write_file"]


def _reason(e: OSError | ValueError) -> str:
    if isinstance(e, OSError):
        return e.strerror or type(e).__name__
    return str(e)  # e.g. "embedded null byte"


# -- reading and writing -------------------------------------------------------------


def read_capped(path: str | os.PathLike[str], *, limit: int, what: str) -> bytes:
    """The bytes of the file at ``path``, which must be at most ``limit`` bytes.

    ``what`` names the file in messages ("key file", "credential"…). TooLargeError if
    the file holds more than ``limit`` bytes; FileError if it cannot be read.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except (OSError, ValueError) as e:
        raise FileError(f"{path}: cannot read the {what}: {_reason(e)}") from None
    if len(data) > limit:
        raise TooLargeError(f"{path}: the {what} is larger than the {limit}-byte limit")
    return data


def fsync_path(path: str | os.PathLike[str]) -> None:
    """Flush the file or directory at ``path`` to stable storage; OSError on failure."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes, mode: int) -> None:
    os.fchmod(fd, mode)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.fsync(fd)


def write_file(
    path: str | os.PathLike[str], data: bytes, *, mode: int, overwrite: bool = False, what: str
) -> None:
    """Write ``data`` to ``path`` with permission bits exactly ``mode``, durably.

    The data goes to a temporary file in the same directory first, so readers (and a
    restart after a crash) never see a partial file. Without ``overwrite`` the file
    must not exist (FileError "file exists; refusing to overwrite"): the temporary
    file is hard-linked to ``path``, which fails if it exists. With it, the temporary
    file is renamed over ``path``. The file and its directory are fsync'ed before
    this returns. On failure nothing is left behind: no partial file, no temporary file.
    """
    p = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    except (OSError, ValueError) as e:
        raise FileError(
            f"{p}: cannot {'write' if overwrite else 'create'} the {what}: {_reason(e)}"
        ) from None
    created = False
    try:
        try:
            _write_all(fd, data, mode)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, p)
        else:
            try:
                os.link(tmp, p)
            except FileExistsError:
                raise FileError(f"{p}: file exists; refusing to overwrite it with the {what}") from None
            created = True
            os.unlink(tmp)
        fsync_path(p.parent)
    except OSError as e:
        if created:  # a new file is not left behind undurably
            with contextlib.suppress(OSError):
                os.unlink(p)
        raise FileError(f"{p}: cannot write the {what}: {_reason(e)}") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)  # gone already unless something failed


# -- strict JSON ---------------------------------------------------------------------


def loads_json(
    text: str | bytes,
    *,
    what: str,
    max_size: int,
    max_depth: int,
    max_int_digits: int = 30,
) -> Any:
    """Parse JSON ``text`` strictly; errors name ``what`` ("credential: …").

    ``text`` is UTF-8 bytes or a str; either way it must be at most ``max_size``
    bytes of UTF-8 (TooLargeError, checked before parsing). Objects may not repeat a
    key; numbers must be integers of at most ``max_int_digits`` digits (no fraction,
    exponent, NaN or Infinity); arrays and objects may nest at most ``max_depth``
    levels (``[]`` is one level; TooLargeError); strings may not hold unpaired
    surrogates. Anything else is a MalformedError.
    """
    if isinstance(text, str):
        if len(text) > max_size:  # every character is at least one byte
            raise TooLargeError(f"{what}: {len(text)} characters is over the {max_size}-byte limit")
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            raise MalformedError(f"{what}: the text holds an unpaired surrogate") from None
        if size > max_size:
            raise TooLargeError(f"{what}: {size} bytes is over the {max_size}-byte limit")
    elif isinstance(text, bytes | bytearray):
        if len(text) > max_size:
            raise TooLargeError(f"{what}: {len(text)} bytes is over the {max_size}-byte limit")
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as e:
            raise MalformedError(f"{what}: not valid UTF-8 (byte offset {e.start})") from None
    else:
        raise MalformedError(f"{what}: expected JSON text, not {type(text).__name__}")

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in pairs:
            if k in out:
                raise MalformedError(f"{what}: duplicate JSON key {k!r}")
            out[k] = v
        return out

    def no_float(number: str) -> Any:
        raise MalformedError(f"{what}: numbers must be integers, not {number[:20]!r}")

    def no_constant(name: str) -> Any:
        raise MalformedError(f"{what}: {name} is not allowed in JSON")

    def integer(digits: str) -> int:
        if len(digits.lstrip("-")) > max_int_digits:
            raise MalformedError(f"{what}: an integer has more than {max_int_digits} digits")
        return int(digits)

    try:
        value = json.loads(
            text,
            object_pairs_hook=unique,
            parse_float=no_float,
            parse_int=integer,
            parse_constant=no_constant,
        )
    except json.JSONDecodeError as e:
        raise MalformedError(
            f"{what}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})"
        ) from None
    except RecursionError:  # the parser recurses per level; very deep input ends here
        raise TooLargeError(f"{what}: JSON is nested deeper than {max_depth} levels") from None
    except ValueError as e:  # not expected past the hooks, but never let it escape raw
        raise MalformedError(f"{what}: not valid JSON ({e})") from None
    _check_tree(value, what=what, max_depth=max_depth)
    return value


def _check_tree(value: Any, *, what: str, max_depth: int) -> None:
    """Cap the nesting depth and refuse unpaired surrogates (from ``\\ud800`` escapes),
    without recursing."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                raise MalformedError(f"{what}: a string holds an unpaired surrogate escape") from None
            continue
        if isinstance(v, dict):
            children: list[Any] = [*v.keys(), *v.values()]
        elif isinstance(v, list):
            children = v
        else:
            continue
        if depth + 1 > max_depth:
            raise TooLargeError(f"{what}: JSON is nested deeper than {max_depth} levels")
        stack.extend((c, depth + 1) for c in children)
