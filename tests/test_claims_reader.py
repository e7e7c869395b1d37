"""canonical_reader gives exactly what canonical_value gives: the same value or the same error."""

import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.credential.claims import canonical_reader, canonical_value
from ledger.errors import SchemaError
from ledger.trust.policy import ClaimSpec

_SPECS = st.builds(
    ClaimSpec,
    key=st.integers(0, 255),
    name=st.just("claim"),
    label=st.just("字段"),
    kind=st.sampled_from(["text", "code", "integer", "date"]),
    required=st.booleans(),
    max_length=st.integers(1, 30),
)
_VALUES = st.one_of(
    st.text(max_size=40),
    st.text(alphabet="ABC0123xyz-\x00\x85\ud800 ", max_size=40),
    st.from_regex(r"[0-9A-Z]{0,35}", fullmatch=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.none(),
    st.binary(max_size=5),
    st.dates(),
    st.datetimes(),
    st.dates().map(dt.date.isoformat),
    st.floats(allow_nan=False),
)


def _outcome(read: Any, value: Any) -> tuple[str, Any]:
    try:
        got = read(value)
    except SchemaError as e:
        return "error", str(e)
    return "value", (type(got), got)


@given(_SPECS, _VALUES)
def test_reader_equals_canonical_value(spec: ClaimSpec, value: Any) -> None:
    assert _outcome(canonical_reader(spec), value) == _outcome(lambda v: canonical_value(spec, v), value)


_USCC = ClaimSpec(key=0, name="uscc", label="统一社会信用代码", kind="code", max_length=18)


def test_reader_accepts_a_valid_code() -> None:
    assert canonical_reader(_USCC)("91110000MA01ABCDE1") == "91110000MA01ABCDE1"


@pytest.mark.parametrize(
    ("bad", "rule"),
    [
        ("", "must not be empty"),
        ("abc", "a code is upper-case letters A-Z and digits only"),
        ("9" * 19, "19 characters is over the limit of 18"),
        (7, "expected a string, got int"),
    ],
)
def test_reader_refuses_with_the_rule(bad: Any, rule: str) -> None:
    with pytest.raises(SchemaError, match=rule):
        canonical_reader(_USCC)(bad)
