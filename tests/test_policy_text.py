"""The policy document's text: one canonical rendering, strict parsing, hostile input."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.errors import LedgerError, MalformedError, SchemaError, TooLargeError
from ledger.keys import SIG_TYPE_COSIGNATURE, VerifierKey
from ledger.trust.policy import Policy
from ledger.trust.policy_doc import (
    FORMAT_LINE,
    MAX_DEPTH,
    MAX_DOCUMENT_SIZE,
    _pretty,
    parse_text,
    parse_time,
    render,
)
from tests.policy_fixtures import gov_key, make_policy

POLICY = make_policy()
TEXT = render(POLICY)


def test_round_trip_is_exact() -> None:
    assert TEXT.startswith(FORMAT_LINE + "\n{\n")
    assert TEXT.endswith("\n}\n")
    assert parse_text(TEXT) == POLICY
    assert render(parse_text(TEXT)) == TEXT


def test_text_is_readable_and_note_safe() -> None:
    assert "杭州市市场监督管理局" in TEXT  # Chinese stays readable
    assert '"expires": "2025-05-31T16:00:00Z"' in TEXT
    assert TEXT.startswith(
        FORMAT_LINE + '\n{\n  "consortium": "consortium.example.gov.cn",\n  "version": 1,\n'
    )
    assert '\n  "issued": "2024-05-31T16:00:00Z",\n' in TEXT
    assert "\n\n" not in TEXT  # a blank line would end a signed note's text
    assert all(ch == "\n" or ord(ch) >= 0x20 for ch in TEXT)
    assert '"issuers": ["hz-amr"]' in TEXT
    # the same JSON value as the plain json module sees it
    assert json.loads(TEXT.split("\n", 1)[1])["members"][0]["id"] == "hz-amr"


def test_order_of_members_is_kept_and_sets_are_sorted() -> None:
    p = make_policy(members=tuple(reversed(POLICY.members)))
    text = render(p)
    assert text.index('"id": "hz-health"') < text.index('"id": "hz-amr"')
    assert parse_text(text) == p
    assert '"revokers": ["hz-amr", "hz-health"]' in TEXT


def _edit(old: str, new: str, count: int = 1) -> str:
    assert old in TEXT, old
    return TEXT.replace(old, new, count)


def _body(value: object) -> str:
    return FORMAT_LINE + "\n" + json.dumps(value, ensure_ascii=False, indent=2) + "\n"


REJECTS = [
    # (text, error class, message fragment)
    (TEXT.replace(FORMAT_LINE, "certledger/policy/v2"), MalformedError, "unsupported format"),
    (TEXT.replace(FORMAT_LINE, "hello"), MalformedError, "must start with the line"),
    (TEXT[:-1], MalformedError, "must end with a newline"),
    (FORMAT_LINE, MalformedError, "must end with a newline"),
    ("", MalformedError, "must start with the line"),
    (
        _edit('"version": 1,', '"version": 1,\n  "version": 2,'),
        MalformedError,
        "duplicate JSON key 'version'",
    ),
    (_edit('"version": 1,', '"version": 1.0,'), MalformedError, "must be integers"),
    (_edit('"version": 1,', '"version": NaN,'), MalformedError, "NaN is not allowed"),
    (
        _edit('"version": 1,', '"version": 1' + "0" * 30 + ","),
        MalformedError,
        "an integer has more than 20 digits",
    ),
    (_edit('"version": 1,', '"version": "1",'), MalformedError, "version: expected an integer"),
    (_edit('"version": 1,', '"version": true,'), MalformedError, "version: expected an integer"),
    (_edit('"version": 1,', '"version": 1, "extra": 0,'), MalformedError, "unknown field 'extra'"),
    (_edit('  "version": 1,\n', ""), MalformedError, "missing field 'version'"),
    (_edit('"version": 1,', '"version":  1,'), MalformedError, "not in canonical form"),
    (_edit("杭州市公安局", "\\u676d州市公安局"), MalformedError, "not in canonical form"),
    (_edit('"version": 1,', '"version": 01,'), MalformedError, "not valid JSON"),
    (_edit("2025-05-31T16:00:00Z", "2025-05-31T16:00:00+00:00"), MalformedError, "RFC 3339 UTC time"),
    (_edit("2025-05-31T16:00:00Z", "2025-02-30T16:00:00Z"), MalformedError, "not a valid date"),
    (_edit("2025-05-31T16:00:00Z", "1969-12-31T23:59:59Z"), MalformedError, "before 1970"),
    (_edit('"threshold": 2', '"threshold": 5'), SchemaError, "governance threshold"),
    (_edit('"required": true', '"required": 1'), MalformedError, "required: expected true or false"),
    (_edit('"kind": "code"', '"kind": "blob"'), SchemaError, "kind must be one of"),
    (_edit('"issuers": ["hz-amr"]', '"issuers": ["hz-nobody"]'), SchemaError, "names unknown member"),
    (_edit('"issuers": ["hz-amr"]', '"issuers": "hz-amr"'), MalformedError, "issuers: expected a JSON array"),
    (_edit('"purposes": {}', '"purposes": []'), MalformedError, "purposes: expected a JSON object"),
    (_edit('"name": "杭州市公安局"', '"name": "杭州市公安局\\u0085"'), SchemaError, "printable"),
    (_edit('"name": "杭州市公安局"', '"name": "\\ud800"'), MalformedError, "unpaired surrogate"),
    (
        _edit("witness.example.gov.cn/hz-amr+", "witness.example.gov.cn/hz-amX+"),
        MalformedError,
        "key ID does not match",
    ),
    (
        _edit("ledger.example.gov.cn/hz-amr+eebf79c9", "ledger.example.gov.cn/hz-amr+eebf79ca"),
        MalformedError,
        "key ID",
    ),
    ("[", MalformedError, "must start with the line"),
    (FORMAT_LINE + "\n[\n", MalformedError, "not valid JSON (Expecting value at line 3, column 1)"),
    (FORMAT_LINE + "\n[]\n", MalformedError, "policy: expected a JSON object"),
    (
        FORMAT_LINE + "\n" + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + "\n",
        TooLargeError,
        "nested deeper",
    ),
    (FORMAT_LINE + "\n" + "[" * 100_000 + "\n", TooLargeError, "nested deeper"),
    (FORMAT_LINE + '\n["' + "[" * 100 + '"]\n', MalformedError, "policy: expected a JSON object"),
    (FORMAT_LINE + "\n" + " " * (MAX_DOCUMENT_SIZE + 1) + "\n", TooLargeError, "limit"),
    # the consortium's name and the version's own time
    (
        _edit('  "consortium": "consortium.example.gov.cn",\n', ""),
        MalformedError,
        "missing field 'consortium'",
    ),
    (_edit('"consortium.example.gov.cn"', '"Consortium.example"'), SchemaError, "consortium name must be"),
    (_edit('"consortium.example.gov.cn"', '""'), SchemaError, "consortium name must be"),
    (_edit('"consortium.example.gov.cn"', '"a..b-"'), SchemaError, "consortium name must be"),
    (_edit('"consortium.example.gov.cn"', "7"), MalformedError, "consortium: expected a string"),
    (
        _edit('"issued": "2024-05-31T16:00:00Z"', '"issued": 1717171200'),
        MalformedError,
        "issued: expected an RFC",
    ),
    (_edit('  "issued": "2024-05-31T16:00:00Z",\n', ""), MalformedError, "missing field 'issued'"),
    # mandates: a member id, or an object with a window (never an empty window)
    (
        _edit(
            '"issuers": ["hz-amr"]',
            '"issuers": [{"member": "hz-amr", "valid_from": null, "valid_until": null}]',
        ),
        MalformedError,
        "not in canonical form",
    ),
    (
        _edit('"issuers": ["hz-amr"]', '"issuers": [{"member": "hz-amr", "valid_from": null}]'),
        MalformedError,
        "issuers[0]: missing field 'valid_until'",
    ),
    (
        _edit(
            '"issuers": ["hz-amr"]', '"issuers": [{"member": "hz-amr", "from": null, "valid_until": null}]'
        ),
        MalformedError,
        "issuers[0]: unknown field 'from'",
    ),
    (
        _edit(
            '"issuers": ["hz-amr"]',
            '"issuers": [{"member": "hz-amr", "valid_from": null, "valid_until": "2024-13-01T00:00:00Z"}]',
        ),
        MalformedError,
        "issuers[0].valid_until: 2024-13-01T00:00:00Z is not a valid date",
    ),
    (_edit('"issuers": ["hz-amr"]', '"issuers": [7]'), MalformedError, "issuers[0]: expected a JSON object"),
    (
        _edit('"issuers": ["hz-amr"]', '"issuers": ["hz-amr", "hz-amr"]'),
        SchemaError,
        "mandates of hz-amr overlap",
    ),
    (_edit('"issuers": ["hz-amr"]', '"issuers": ["HZ"]'), SchemaError, "mandate: member id 'HZ'"),
]


@pytest.mark.parametrize(("text", "error", "fragment"), REJECTS)
def test_rejects(text: str, error: type[Exception], fragment: str) -> None:
    with pytest.raises(error) as e:
        parse_text(text)
    assert fragment in str(e.value)
    assert str(e.value).startswith("policy text: ")


def test_key_types_and_names_are_checked() -> None:
    gov = str(POLICY.governance_keys[0])
    witness = VerifierKey(
        name=POLICY.governance_keys[0].name, public_key=gov_key(0).public_key, sig_type=SIG_TYPE_COSIGNATURE
    )
    with pytest.raises(SchemaError, match=r"governance.keys\[0\]: expected a signature type 0x01 key"):
        parse_text(TEXT.replace(gov, str(witness)))
    log = str(POLICY.members[0].log_verifier_key(POLICY.members[0].log_keys[0]))
    renamed = str(VerifierKey(name="elsewhere", public_key=POLICY.members[0].log_keys[0].public_key))
    with pytest.raises(
        SchemaError, match=r"members\[0\].log_keys\[0\].key: a log key is named by its member's origin"
    ):
        parse_text(TEXT.replace(log, renamed))


def test_parse_time() -> None:
    assert parse_time("1970-01-01T00:00:00Z") == 0
    assert parse_time("2024-05-31T16:00:00Z") == 1_717_171_200
    for bad in [
        "2024-05-31 16:00:00Z",
        "2024-05-31T16:00Z",
        "2024-05-31T16:00:00.5Z",
        5,
        None,
        "２０２４-05-31T16:00:00Z",
    ]:
        with pytest.raises(MalformedError):
            parse_time(bad)


# -- hostile input -----------------------------------------------------------------


def _only_own_errors(text: str) -> Policy | None:
    try:
        return parse_text(text)
    except LedgerError:
        return None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=2000))
def test_random_text(text: str) -> None:
    _only_own_errors(text)
    _only_own_errors(FORMAT_LINE + "\n" + text)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=len(TEXT)))
def test_truncated(n: int) -> None:
    assert _only_own_errors(TEXT[:n]) is None or n == len(TEXT)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=0, max_value=len(TEXT) - 1), st.characters(codec="utf-8"))
def test_one_character_changed(pos: int, ch: str) -> None:
    changed = TEXT[:pos] + ch + TEXT[pos + 1 :]
    got = _only_own_errors(changed)
    if got is not None:  # a change that still parses renders to exactly the changed text
        assert render(got) == changed


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_random_json(value: object) -> None:
    with pytest.raises(MalformedError):
        parse_text(_body(value))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(list(json.loads(TEXT.split("\n", 1)[1]))), JSON_VALUES)
def test_random_field_values(field: str, value: object) -> None:
    doc = json.loads(TEXT.split("\n", 1)[1])
    doc[field] = value
    text = _body(doc)
    got = _only_own_errors(text)
    if got is not None:  # e.g. "types": [] is a valid policy
        assert render(got) == text


def test_huge_inputs_fail_fast() -> None:
    with pytest.raises(TooLargeError):
        parse_text("x" * (MAX_DOCUMENT_SIZE * 4))
    deep = FORMAT_LINE + "\n" + '{"a":' * 200_000 + "1" + "}" * 200_000 + "\n"
    with pytest.raises(TooLargeError):
        parse_text(deep)
    many_strings = FORMAT_LINE + "\n[" + '"\\"",' * 100_000 + "1]\n"
    with pytest.raises(MalformedError):
        parse_text(many_strings)


MANDATE_VALUES = st.one_of(
    st.text(max_size=12),
    st.fixed_dictionaries(
        {
            "member": st.sampled_from(["hz-amr", "hz-psb", "nobody", ""]) | st.text(max_size=8),
            "valid_from": st.none() | st.sampled_from(["2024-01-01T00:00:00Z", "2030-01-01T00:00:00Z", "x"]),
            "valid_until": st.none() | st.sampled_from(["2024-01-01T00:00:00Z", "2026-01-01T00:00:00Z"]),
        }
    ),
    JSON_VALUES,
)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["issuers", "revokers"]), st.lists(MANDATE_VALUES, max_size=4))
def test_random_mandates(field: str, value: list[object]) -> None:
    doc = json.loads(TEXT.split("\n", 1)[1])
    doc["types"][0][field] = value
    text = render_json(doc)
    got = _only_own_errors(text)
    if got is not None:  # a valid list of mandates: it must be the one canonical text
        assert render(got) == text


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["consortium", "issued", "expires"]), st.text(max_size=40) | JSON_VALUES)
def test_random_consortium_and_times(field: str, value: object) -> None:
    doc = json.loads(TEXT.split("\n", 1)[1])
    doc[field] = value
    text = render_json(doc)
    got = _only_own_errors(text)
    if got is not None:
        assert render(got) == text
        if field == "consortium":
            assert got.consortium == value


def render_json(doc: object) -> str:
    """``doc`` in the document's own layout where it can be (so only the values are in
    question), else as plain indented JSON."""
    try:
        return FORMAT_LINE + "\n" + _pretty(doc) + "\n"
    except MalformedError:  # a float
        return _body(doc)
