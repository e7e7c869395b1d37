import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.errors import MalformedError
from ledger.log.certid import CertId, check_character


def test_iso7064_mod37_36_known_values() -> None:
    # ISO/IEC 7064 hybrid MOD 37,36: appending the check character makes the
    # running product land on 1, so every valid string re-checks to itself.
    for body in ("0", "A", "ZZZZ", "11100000000013338W03211330106MB1234567X2430599001"):
        c = check_character(body)
        assert len(c) == 1
        p = 36
        for ch in body + c:
            v = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ".index(ch)
            s = (p + v) % 36 or 36
            p = (s * 2) % 37
        assert s == 1


def test_round_trip_and_every_single_substitution_detected() -> None:
    cid = CertId(
        type_code="11100000000013338W032", issuer_code="11330106MB1234567X", serial="2430599", version="001"
    )
    text = str(cid)
    assert CertId.parse(text) == cid
    body, check = text[:-1], text[-1]
    for i, ch in enumerate(body):
        if ch == ".":
            continue
        for repl in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ":
            if repl == ch:
                continue
            altered = body[:i] + repl + body[i + 1 :] + check
            with pytest.raises(MalformedError):
                CertId.parse(altered)


def test_reference_fixture_check_character_is_not_mod37_36() -> None:
    # The reference licence's identifier ends in "F"; MOD 37,36 over its body gives another
    # character, so the strict parser names both.
    with pytest.raises(MalformedError, match="check character is 'F', expected"):
        CertId.parse("1.2.156.3005.2.11100000000013338W032.11330106MB1234567X.2430599.001.F")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1.2.156.3005.3.1.2.3.001.X",
        "1.2.156.3005.2.111.222.333.001",
        "1.2.156.3005.2.111.222.333.01.X",
        "1.2.156.3005.2.abc.222.333.001.X",
        "1.2.156.3005.2.111.222.33a.001.X",
        "1.2.156.3005.2." + "1" * 200,
    ],
)
def test_rejects_malformed(text: str) -> None:
    with pytest.raises(MalformedError):
        CertId.parse(text)


@given(st.text(max_size=120))
def test_random_text_only_raises_malformed(text: str) -> None:
    with contextlib.suppress(MalformedError):
        CertId.parse(text)
