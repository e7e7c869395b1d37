"""The readable rendering of statements: every field in key order, absent ones left out."""

from typing import Any

from hypothesis import given, settings

from ledger.log.statement import Kind, Statement
from tests.test_statement import statements

_NAMES = (
    "version",
    "kind",
    "issuer",
    "cert_id",
    "cert_type",
    "time",
    "operator",
    "valid_from",
    "valid_until",
    "claim_digests",
    "reason",
    "replaces",
    "policy_version",
    "policy_hash",
)


def _reference(s: Statement) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in _NAMES:
        value = getattr(s, name)
        if value is None or value == "":
            continue
        if name == "kind":
            value = Kind(value).name.lower()
        elif name == "reason":
            value = value.name.lower()
        elif name == "claim_digests":
            value = {str(k): d.hex() for k, d in value.items()}
        elif name == "policy_hash":
            value = value.hex()
        out[name] = value
    return out


@settings(max_examples=200, deadline=None)
@given(statements())
def test_to_json_names_every_present_field_in_key_order(statement: Statement) -> None:
    got = statement.to_json()
    want = _reference(statement)
    assert got == want
    assert list(got) == list(want)
    assert type(got["kind"]) is str and type(got["version"]) is int
