import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import canonical
from ledger.errors import LedgerError, MalformedError, TooLargeError

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.integers(-5, 300) | st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


@given(values)
def test_round_trip(value: object) -> None:
    data = canonical.encode(value)
    assert canonical.decode(data) == value
    assert canonical.encode(canonical.decode(data)) == data


def test_map_keys_sorted_by_encoded_bytes() -> None:
    assert canonical.encode({"b": 1, "a": 2, 1: 3, "aa": 4}) == b"\x84\x01\x03\xa1a\x02\xa1b\x01\xa2aa\x04"
    assert canonical.encode({"b": 1, "a": 2}) == canonical.encode({"a": 2, "b": 1})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xcc\x01", "not canonical"),  # 1 as uint8
        (b"\xd0\x05", "not canonical"),  # 5 as int8
        (b"\xd9\x01a", "not canonical"),  # str8 for a 1-byte string
        (b"\x82\xa1b\x01\xa1a\x02", "not canonical"),  # unsorted keys
        (b"\x82\xa1a\x01\xa1a\x02", "not canonical"),  # duplicate keys
        (b"\xa1\xff", "not valid UTF-8"),
        (b"\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00", "floats"),
        (b"\xd4\x01\x00", "extension type 1"),
        (b"\xd6\xff\x00\x00\x00\x00", "extension type -1"),
        (b"\x01\x02", "trailing bytes"),
        (b"\x92\x01", "not valid msgpack"),
        (b"\xc1", "not valid msgpack"),
        (b"", "empty"),
        (b"\x81\x91\x01\x02", "not valid msgpack"),  # array as a map key
        (b"\x81\xc4\x01k\x01", "not an integer or a string"),  # bytes as a map key
    ],
)
def test_rejects_non_canonical_and_invalid(data: bytes, message: str) -> None:
    with pytest.raises(MalformedError, match=message):
        canonical.decode(data)


def test_size_and_depth_caps() -> None:
    with pytest.raises(TooLargeError, match="over the 10-byte limit"):
        canonical.decode(canonical.encode(b"x" * 20), max_size=10)
    nested = b"\x91" * 20 + b"\x00"
    with pytest.raises(TooLargeError, match="nested deeper than 16"):
        canonical.decode(nested)
    with pytest.raises(TooLargeError, match="nested"):
        canonical.decode(b"\x91" * 5000 + b"\x00", max_size=10_000)
    assert canonical.decode(b"\x91" * 3 + b"\x00", max_depth=3) == [[[0]]]


def test_huge_declared_lengths_fail_fast() -> None:
    for data in (b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff", b"\xc6\xff\xff\xff\xff"):
        with pytest.raises(MalformedError):
            canonical.decode(data)


def test_encode_rejects_values_without_canonical_form() -> None:
    for value, message in [
        (1.5, "floats"),
        ({(1, 2): 1}, "not an integer or a string"),
        (2**64, "out of the msgpack range"),
        (object(), "cannot encode"),
        ("\ud800", "cannot encode"),
        ({True: 2}, "not an integer or a string"),
    ]:
        with pytest.raises(MalformedError, match=message):
            canonical.encode(value)


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_random_bytes_never_crash(data: bytes) -> None:
    try:
        value = canonical.decode(data)
    except LedgerError:
        return
    assert canonical.encode(value) == data


@given(values)
def test_non_canonical_re_encodings_rejected(value: object) -> None:
    # msgpack's own encoder with float-free input differs from ours only in key order
    plain = msgpack.packb(value, use_bin_type=True)
    canon = canonical.encode(value)
    if plain != canon:
        with pytest.raises(MalformedError, match="not canonical"):
            canonical.decode(plain)


_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.text(max_size=5),
    st.binary(max_size=5),
    st.floats(allow_nan=False),
)
_VALUE = st.recursive(
    _SCALAR,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.integers(-300, 300), st.text(max_size=3)), inner, max_size=4),
    ),
    max_leaves=12,
)


@given(_VALUE)
def test_the_quick_canonical_check_agrees_with_re_encoding(value: object) -> None:
    # maps are packed in the generated key order, canonical or not
    data = msgpack.packb(value, use_bin_type=True)
    try:
        unpacked = msgpack.unpackb(data, raw=False, strict_map_key=False)
        want = canonical.encode(unpacked) == data
    except MalformedError:
        want = False
    try:
        canonical.decode(data, max_depth=64)
        got = True
    except MalformedError:
        got = False
    assert got == want
