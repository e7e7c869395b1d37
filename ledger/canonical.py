"""Canonical msgpack: one byte string per value, and a strict decoder.

The canonical form of a value is its msgpack encoding with

* the smallest representation of every integer, string, binary, array and map header
  (what msgpack's packer already does),
* map keys that are integers or strings only, sorted by their encoded bytes (so small
  integer keys sort numerically and come before string keys; short strings sort by
  length, then bytewise), with no duplicates,
* strings as valid UTF-8 (``str`` family) and byte strings as ``bin`` family,
* no floats, no extension types, integers within ``[-2**63, 2**64)``.

:func:`decode` accepts exactly the canonical encodings: it decodes, re-encodes and
compares, so any other encoding of the same value (a wider integer, unsorted or
duplicate keys, ``str`` used for bytes, …) is rejected, as are trailing bytes.
Inputs are size- and depth-capped before any work is done.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import msgpack

from ledger.errors import MalformedError, TooLargeError

__all__ = ["DEFAULT_MAX_DEPTH", "DEFAULT_MAX_SIZE", "decode", "encode"]

#: Default cap on the size of an encoded value handed to :func:`decode`.
DEFAULT_MAX_SIZE = 64 * 1024
#: Default cap on nesting depth (a scalar has depth 0, ``[1]`` has depth 1).
DEFAULT_MAX_DEPTH = 16
_HARD_MAX_SIZE = 16 * 1024 * 1024
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1


def encode(value: Any) -> bytes:
    """Return the canonical msgpack encoding of ``value``.

    Raises :class:`~ledger.errors.MalformedError` for values that have no canonical
    form (floats, unsupported types, non-integer/non-string map keys, integers out of
    range, strings that are not valid Unicode).
    """
    try:
        data: bytes = msgpack.packb(_normalise(value, 0), use_bin_type=True)
        return data
    except (ValueError, TypeError, OverflowError, UnicodeEncodeError) as e:
        raise MalformedError(f"cannot encode value canonically: {e}") from None


@lru_cache(maxsize=8192)
def _key_bytes(key: int | str) -> bytes:
    return msgpack.packb(key)  # type: ignore[no-any-return]


def _normalise(value: Any, depth: int) -> Any:
    t = type(value)
    if t is str or t is bytes or t is bool or value is None:
        return value
    if t is int:
        if not _INT_MIN <= value <= _INT_MAX:
            raise MalformedError(f"integer {value} is out of the msgpack range")
        return value
    if depth >= 64:
        raise MalformedError("value is nested too deeply to encode")
    if isinstance(value, Mapping):
        items = []
        for k, v in value.items():
            if type(k) is not str and type(k) is not int:
                raise MalformedError(f"map key {k!r} is not an integer or a string")
            items.append((_key_bytes(k), k, _normalise(v, depth + 1)))
        items.sort(key=lambda item: item[0])
        for a, b in itertools.pairwise(items):
            if a[0] == b[0]:
                raise MalformedError(f"duplicate map key {a[1]!r}")
        return {k: v for _, k, v in items}
    if isinstance(value, list | tuple):
        return [_normalise(v, depth + 1) for v in value]
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, int):  # bool was handled above; int subclasses such as IntEnum
        return _normalise(int(value), depth)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, float):
        raise MalformedError("floats have no canonical encoding; use an integer or a string")
    if isinstance(value, msgpack.Timestamp):
        raise MalformedError("msgpack extension type -1 (timestamp) is not allowed")
    raise MalformedError(f"cannot encode a value of type {type(value).__name__}")


def _reject_ext(code: int, data: bytes) -> Any:
    raise MalformedError(f"msgpack extension type {code} is not allowed")


def _check_tree(value: Any, limit: int, what: str) -> bool:
    """Raise TooLargeError if ``value`` nests deeper than ``limit``; return True if
    every map has int or str keys in strictly increasing encoded order and every
    scalar is a str, bytes, int, bool or None (the decoder's quick canonical check;
    False means "check the slow way", not "not canonical"). One walk for both."""
    quick = True
    stack: list[tuple[Any, int]] = [(value, 0)]
    scalars = _SCALARS
    while stack:
        v, d = stack.pop()
        if d >= limit:
            raise TooLargeError(f"{what}: nested deeper than {limit} levels")
        if type(v) is dict:
            if quick:
                quick = _keys_in_order(v)
            children: Any = v.values()
        else:
            children = v
        for c in children:
            t = type(c)
            if t is dict or t is list:
                stack.append((c, d + 1))
            elif t not in scalars:
                quick = False
    return quick


def _keys_in_order(m: dict[Any, Any]) -> bool:
    """True if ``m``'s keys are ints or strs in strictly increasing encoded order."""
    previous_int = -1
    for k in m:  # non-negative ints: numeric order is msgpack's encoded order
        if type(k) is not int or k <= previous_int:
            break
        previous_int = k
    else:
        return True
    previous = b""
    for k in m:
        tk = type(k)
        if tk is not int and tk is not str:
            return False
        kb = _key_bytes(k)
        if kb <= previous:
            return False
        previous = kb
    return True


_SCALARS = frozenset({str, bytes, int, bool, type(None)})


def decode(
    data: bytes | bytearray | memoryview,
    *,
    max_size: int = DEFAULT_MAX_SIZE,
    max_depth: int = DEFAULT_MAX_DEPTH,
    what: str = "value",
) -> Any:
    """Decode one canonical msgpack value, rejecting anything else.

    ``what`` names the value in error messages ("statement", "entry", …). Raises
    :class:`~ledger.errors.TooLargeError` when ``data`` is longer than ``max_size``
    or nested deeper than ``max_depth``, and :class:`~ledger.errors.MalformedError`
    for truncated, trailing, invalid or non-canonical input.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedError(f"{what}: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    max_size = min(max_size, _HARD_MAX_SIZE)
    if len(data) > max_size:
        raise TooLargeError(f"{what}: {len(data)} bytes is over the {max_size}-byte limit")
    if not data:
        raise MalformedError(f"{what}: empty input")
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=False,
            ext_hook=_reject_ext,
            timestamp=0,
        )
    except MalformedError as e:
        raise MalformedError(f"{what}: {e}") from None
    except msgpack.ExtraData:
        raise MalformedError(f"{what}: trailing bytes after the encoded value") from None
    except UnicodeDecodeError:
        raise MalformedError(f"{what}: a string is not valid UTF-8") from None
    except (msgpack.StackError, RecursionError):
        raise TooLargeError(f"{what}: nested too deeply") from None
    except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as e:
        detail = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        raise MalformedError(f"{what}: not valid msgpack ({detail})") from None
    type_of = type(value)
    is_tree = type_of is dict or type_of is list
    quick = _check_tree(value, max_depth, what) if is_tree else type_of in _SCALARS
    if quick and msgpack.packb(value, use_bin_type=True) == data:
        # Map keys are integers or strings, strictly increasing in encoded order, and
        # nothing is a float: re-packing in the decoded order is the canonical encoding.
        return value
    try:
        again = encode(value)
    except MalformedError as e:
        raise MalformedError(f"{what}: {e}") from None
    if again != data:
        raise MalformedError(f"{what}: encoding is not canonical")
    return value
