import datetime as dt
import hashlib
import hmac
import unicodedata

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import canonical
from ledger.credential.claims import (
    DIGEST_CONTEXT,
    canonical_value,
    check_canonical,
    claim_digest,
    claim_salt,
    claim_salts,
    date_from_days,
    days_from_date,
    digests_from_secret,
    display_value,
    value_text,
)
from ledger.errors import MalformedError, SchemaError
from ledger.trust.policy import ClaimSpec

TEXT = ClaimSpec(key=1, name="name", label="名称", max_length=10)
CODE = ClaimSpec(key=2, name="uscc", label="统一社会信用代码", kind="code", max_length=18)
DATE = ClaimSpec(key=3, name="established", label="成立日期", kind="date")
INT = ClaimSpec(key=4, name="seats", label="就餐座位数", kind="integer", max_length=4)
SECRET = bytes(range(16))


def test_salt_and_digest_follow_the_documented_construction() -> None:
    # Recomputed here from the documented formulas with hmac/hashlib/msgpack directly.
    for key in (0, 7, 255):
        salt = hmac.new(SECRET, b"certledger/claim-salt/v1\n" + bytes([key]), hashlib.sha256).digest()[:16]
        assert claim_salt(SECRET, key) == salt
        for value in ("杭州云栖数字科技有限公司", 18701, -3, "91330106MA2J8K7Q5L"):
            packed = msgpack.packb([salt, key, value], use_bin_type=True)
            want = hashlib.sha256(b"certledger/claim-digest/v1\n" + packed).digest()
            assert claim_digest(salt, key, value) == want


def test_salts_are_independent_per_claim_and_per_secret() -> None:
    salts = {claim_salt(SECRET, k) for k in range(256)}
    assert len(salts) == 256 and all(len(s) == 16 for s in salts)
    assert claim_salt(bytes(16), 0) != claim_salt(SECRET, 0)


def test_digest_binds_value_key_and_salt() -> None:
    salt = claim_salt(SECRET, 1)
    d = claim_digest(salt, 1, "a")
    assert d != claim_digest(salt, 1, "b")
    assert d != claim_digest(salt, 2, "a")
    assert d != claim_digest(claim_salt(SECRET, 2), 1, "a")
    # an integer and its decimal text are different values
    assert claim_digest(salt, 1, 5) != claim_digest(salt, 1, "5")
    assert digests_from_secret(SECRET, {1: "a"}) == {1: d}


def test_salt_and_digest_reject_bad_sizes() -> None:
    with pytest.raises(SchemaError, match="salt secret must be 16 bytes"):
        claim_salt(b"short", 0)
    with pytest.raises(SchemaError, match=r"0\.\.255"):
        claim_salt(SECRET, 256)
    with pytest.raises(SchemaError, match="claim salt must be 16 bytes"):
        claim_digest(b"x" * 15, 0, "a")


def test_dates_are_day_numbers() -> None:
    assert canonical_value(DATE, "2021-03-15") == 18701
    assert canonical_value(DATE, dt.date(1970, 1, 1)) == 0
    assert canonical_value(DATE, "1969-12-31") == -1
    assert display_value(DATE, 18701) == dt.date(2021, 3, 15)
    assert value_text(display_value(DATE, 18701)) == "2021-03-15"
    assert date_from_days(days_from_date(dt.date.max)) == dt.date.max


@given(st.dates())
def test_date_round_trip(d: dt.date) -> None:
    days = canonical_value(DATE, d.isoformat())
    assert check_canonical(DATE, days) == days
    assert display_value(DATE, days) == d


@pytest.mark.parametrize(
    ("spec", "value", "message"),
    [
        (DATE, "2021/03/15", "expected a date written YYYY-MM-DD, got 10 characters"),
        (DATE, "2021-02-30", r"\): not a calendar date$"),
        (DATE, "２０２１-03-15", "expected a date written YYYY-MM-DD"),
        (DATE, dt.datetime(2021, 3, 15, 1, 2), "got a date and time"),
        (DATE, 18701, "expected a date written YYYY-MM-DD, got int"),
        (TEXT, "", "claim 'name' \\(名称\\): must not be empty"),
        (TEXT, "一二三四五六七八九十十", "11 characters is over the limit of 10"),
        (TEXT, "a\x00b", "control character U\\+0000"),
        (TEXT, "a\ud800", "control character U\\+D800"),
        (TEXT, 5, "expected a string, got int"),
        (CODE, "91330106ma2j8k7q5l", "upper-case letters A-Z and digits only"),
        (CODE, "9133-0106", "upper-case letters A-Z and digits only"),
        (INT, True, "expected an integer, got bool"),
        (INT, "12", "expected an integer, got str"),
        (INT, 12345, "more than 4 digits"),
        (INT, 2**64, "out of range"),
    ],
)
def test_values_that_do_not_fit_the_schema(spec: ClaimSpec, value: object, message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        canonical_value(spec, value)


def test_verifier_may_skip_length_but_not_kind() -> None:
    long = "一二三四五六七八九十十"
    assert check_canonical(TEXT, long, check_length=False) == long
    with pytest.raises(SchemaError):
        check_canonical(TEXT, 5, check_length=False)
    with pytest.raises(SchemaError, match="day number"):
        check_canonical(DATE, 10**9, check_length=False)


@given(secret=st.binary(min_size=16, max_size=16), keys=st.sets(st.integers(0, 255), max_size=20))
def test_claim_salts_equal_claim_salt_one_by_one(secret: bytes, keys: set[int]) -> None:
    assert claim_salts(secret, keys) == {k: claim_salt(secret, k) for k in keys}


@given(
    values=st.dictionaries(
        st.integers(0, 255),
        st.one_of(st.text(min_size=1, max_size=40), st.integers(-(2**63), 2**64 - 1)),
        min_size=1,
        max_size=12,
    )
)
def test_digests_from_secret_match_the_canonical_encoder(values: dict[int, str | int]) -> None:
    want = {
        k: hashlib.sha256(DIGEST_CONTEXT + canonical.encode([claim_salt(SECRET, k), k, v])).digest()
        for k, v in sorted(values.items())
    }
    assert digests_from_secret(SECRET, values) == want
    assert {k: claim_digest(claim_salt(SECRET, k), k, v) for k, v in values.items()} == want


def test_digest_of_a_lone_surrogate_is_refused_as_malformed() -> None:
    # msgpack cannot encode it; the canonical encoder's refusal is what the caller sees
    with pytest.raises(MalformedError, match="cannot encode value canonically"):
        claim_digest(claim_salt(SECRET, 1), 1, "a\ud800")
    with pytest.raises(MalformedError, match="cannot encode value canonically"):
        digests_from_secret(SECRET, {1: "a\ud800"})


@given(text=st.text(alphabet=st.characters(codec=None), min_size=1, max_size=8))
def test_text_claims_refuse_exactly_unicode_controls_and_surrogates(text: str) -> None:
    spec = ClaimSpec(key=1, name="name", label="名称", max_length=100)
    bad = [ch for ch in text if unicodedata.category(ch) in ("Cc", "Cs")]
    if bad:
        with pytest.raises(SchemaError, match=f"control character U\\+{ord(bad[0]):04X}"):
            check_canonical(spec, text)
    else:
        assert check_canonical(spec, text) == text
