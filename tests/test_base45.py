import contextlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.credential.base45 import ALPHABET, b45decode, b45encode
from ledger.errors import MalformedError, TooLargeError

# RFC 9285 section 4.3 and 4.4 examples.
RFC_VECTORS = [
    (b"AB", "BB8"),
    (b"Hello!!", "%69 VD92EX0"),
    (b"base-45", "UJCLQE7W581"),
    (b"ietf!", "QED8WEX0"),
]


@pytest.mark.parametrize(("data", "text"), RFC_VECTORS)
def test_rfc9285_examples(data: bytes, text: str) -> None:
    assert b45encode(data) == text
    assert b45decode(text, max_size=100) == data


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("GGW", "out of range"),  # 65536: the RFC's example of an invalid group
        ("ZZZ", "out of range"),
        ("Z6", "out of range"),  # a two-character group over 255
        ("bb8", "character 'b' is not in the Base45 alphabet"),
        ("BB8\n", "character '\\n' is not in the Base45 alphabet"),
        ("BB8é", "character 'é' is not in the Base45 alphabet"),
        ("A", "1 characters is not a possible Base45 length"),
        ("BB8A", "4 characters is not a possible Base45 length"),
    ],
)
def test_rejects_non_canonical_and_invalid(text: str, message: str) -> None:
    with pytest.raises(MalformedError, match=re.escape(message)) as e:
        b45decode(text, max_size=100)
    assert not isinstance(e.value, TooLargeError)


def test_size_cap_is_checked_before_decoding() -> None:
    assert b45decode("BB8" * 5, max_size=10) == b"AB" * 5
    with pytest.raises(TooLargeError, match="16 characters decode to more than 10 bytes"):
        b45decode("BB8" * 5 + "B", max_size=10)
    with pytest.raises(TooLargeError):
        b45decode("%" * 1_000_000, max_size=3000)


def test_rejects_non_text() -> None:
    with pytest.raises(MalformedError, match="expected text, got bytes"):
        b45decode(b"BB8", max_size=10)  # type: ignore[arg-type]


@given(st.binary(max_size=300))
def test_round_trip(data: bytes) -> None:
    text = b45encode(data)
    assert set(text) <= set(ALPHABET)
    assert b45decode(text, max_size=300) == data


@given(st.text(alphabet=ALPHABET, max_size=60))
def test_every_accepted_text_is_the_canonical_encoding(text: str) -> None:
    try:
        data = b45decode(text, max_size=100)
    except MalformedError:
        return
    assert b45encode(data) == text


@given(st.text(max_size=60))
def test_random_text_raises_only_malformed(text: str) -> None:
    with contextlib.suppress(MalformedError):
        b45decode(text, max_size=100)


@given(st.text(alphabet=ALPHABET, max_size=60))
def test_the_table_decoder_agrees_with_the_reference_package(text: str) -> None:
    import base45 as reference

    try:
        want: bytes | None = reference.b45decode(text)
    except ValueError:
        want = None
    try:
        got: bytes | None = b45decode(text, max_size=100)
    except MalformedError:
        got = None
    assert got == want


@given(st.text(alphabet=ALPHABET + "\x00\x7f\xff\u0100ab=_", max_size=60))
def test_a_character_outside_the_alphabet_is_named_wherever_it_is(text: str) -> None:
    bad = [ch for ch in text if ch not in ALPHABET]
    try:
        b45decode(text, max_size=100)
    except MalformedError as e:
        if bad:
            assert f"character {bad[0]!r} is not in the Base45 alphabet" in str(e)
        return
    assert not bad
