import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.credential.gbtext import from_gb18030, gb18030_form, is_gb18030_transportable
from ledger.errors import MalformedError

# Two-byte codes that GB 18030-2000/-2005 map to private-use characters and a later
# edition maps to standard characters (vertical forms, CJK components, U+1E3F).
EDITION_DEPENDENT = [
    *("A6D9", "A6DA", "A6DB", "A6DC", "A6DD", "A6DE", "A6DF", "A6EC", "A6ED", "A6F3"),
    *("FE51", "FE52", "FE53", "FE59", "FE61", "FE66", "FE67", "FE6C", "FE6D", "FE76"),
    *("FE7E", "FE90", "FE91", "FEA0", "A8BC"),
]


@pytest.mark.parametrize(
    ("value", "form"),
    [
        ("王小红", "cdf5d0a1baec"),
        ("阿依古丽·买买提", "b0a2d2c0b9c5c0f6a1a4c2f2c2f2cce1"),  # U+00B7 is A1A4 (CP936: U+30FB)
        ("浙江省杭州市文三路90号1号楼301室", None),  # checked below: mixed text is fine
        ("—", "a1aa"),  # U+2014 (CP936 maps A1AA to U+2015)
        ("é", "a8a6"),
    ],
)
def test_text_with_two_byte_codes_travels_as_gb18030(value: str, form: str | None) -> None:
    data = gb18030_form(value)
    assert data is not None and is_gb18030_transportable(value)
    assert data == value.encode("gb18030")
    if form is not None:
        assert data.hex() == form
    assert from_gb18030(data) == value
    # one byte per ASCII character, two per other character
    assert len(data) == sum(1 if ch.isascii() else 2 for ch in value)


@pytest.mark.parametrize(
    "value",
    [
        "MARIE-CLAIRE DUPONT",  # ASCII: the same bytes either way, so UTF-8
        "91330106MA2J8K7Q5L",
        "王𠮷",  # U+20BB7 has only a four-byte code
        "㐀",  # CJK extension A with a four-byte code
        "😀",
        "ḿ",  # U+1E3F: A8BC in GB 18030-2005, four bytes in -2000
        "\ufe10",  # vertical comma: A6D9 in GB 18030-2022, four bytes before
        "\u9fb4",  # A6D9/FE59-style change of GB 18030-2022
        "有限公司\ue000",  # private use
        "\ud800",  # a lone surrogate cannot be encoded at all
    ],
)
def test_other_text_travels_as_utf8(value: str) -> None:
    assert gb18030_form(value) is None and not is_gb18030_transportable(value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xff\xfe", "value is not valid GB 18030 \\(byte 0\\)"),
        (b"\xcd\xf5\xd0", "not valid GB 18030 \\(byte 2\\)"),  # truncated
        (b"\xcd\x20", "not valid GB 18030"),
        (b"abc", "value is not canonical: GB 18030 carries only text with a non-ASCII"),
        (b"", "not canonical"),
        ("王𠮷".encode("gb18030"), "not canonical"),  # four-byte code
        (b"\x81\x30\x81\x30", "not canonical"),  # U+0080 as a four-byte code
        (b"\xaa\xa1", "not canonical"),  # user-defined area: private use
    ],
)
def test_strict_decoding(data: bytes, message: str) -> None:
    with pytest.raises(MalformedError, match=message):
        from_gb18030(data)


@pytest.mark.parametrize("code", EDITION_DEPENDENT)
def test_codes_whose_mapping_changed_between_editions_are_refused(code: str) -> None:
    with pytest.raises(MalformedError, match="not canonical"):
        from_gb18030(bytes.fromhex(code))
    with pytest.raises(MalformedError, match="not canonical"):
        from_gb18030("王".encode("gb18030") + bytes.fromhex(code))


def test_what_names_the_value() -> None:
    with pytest.raises(MalformedError, match=r"^value of claim 3 is not valid GB 18030"):
        from_gb18030(b"\xff", what="value of claim 3")


@given(st.text(max_size=40))
def test_any_text_has_exactly_one_form(value: str) -> None:
    data = gb18030_form(value)
    if data is None:
        # it travels as UTF-8 (if it is valid Unicode at all)
        assert value.isascii() or not is_gb18030_transportable(value)
    else:
        assert from_gb18030(data) == value
        assert not value.isascii()


@given(st.binary(max_size=40))
def test_random_bytes_decode_only_to_their_one_form(data: bytes) -> None:
    try:
        value = from_gb18030(data)
    except MalformedError:
        return
    assert gb18030_form(value) == data


_GB_LIKE = st.lists(
    st.binary(min_size=1, max_size=1).filter(lambda b: b[0] < 0x80)
    | st.tuples(st.integers(0x81, 0xFE), st.integers(0x30, 0xFE)).map(bytes)
    | st.tuples(
        st.integers(0x81, 0xFE), st.integers(0x30, 0x39), st.integers(0x81, 0xFE), st.integers(0x30, 0x39)
    ).map(bytes),
    max_size=12,
).map(b"".join)


@given(_GB_LIKE)
def test_gb18030_like_bytes_decode_only_to_their_one_form(data: bytes) -> None:
    try:
        value = from_gb18030(data)
    except MalformedError:
        return
    assert gb18030_form(value) == data
    assert all(len(ch.encode("gb18030")) <= 2 for ch in value)
