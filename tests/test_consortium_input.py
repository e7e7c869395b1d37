"""Spec files and changes are outside input too: only the project's errors come out."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import LedgerError, MalformedError, TooLargeError
from ledger.keys import PublicKey, SigningKey
from ledger.trust.consortium import KeyRequest, apply_changes, genesis, parse_change, read_toml, summary
from ledger.trust.policy import Policy
from tests.policy_fixtures import T0, make_policy

SPEC = tomllib.loads((Path(__file__).parent / "data" / "consortium-spec.toml").read_text(encoding="utf-8"))


def _keys(request: KeyRequest) -> PublicKey:
    return SigningKey.from_seed(request.name.encode()[:32].ljust(32, b"-")).public_key


def test_genesis_from_the_spec() -> None:
    p = genesis(SPEC, now=T0, make_key=_keys)
    assert p.version == 1 and p.expires == T0 + 365 * 86_400
    assert [m.id for m in p.members] == ["hz-amr", "hz-psb"]
    assert p.members[0].witness_key.name == "ledger.example.gov.cn/hz-amr/witness"
    assert p.require_type("business_licence").purposes["tender"] == ("entity_name", "uscc")
    text = "\n".join(summary(p))
    assert "治理密钥 Governance keys: 门限 threshold 2 of 3" in text
    assert "1  uscc  统一社会信用代码  (code, 必填 required, ≤18)" in text


def test_spec_names_the_consortium_and_mandate_windows() -> None:
    p = genesis(SPEC, now=T0, make_key=_keys)
    assert p.consortium == "hangzhou.example.gov.cn" and p.issued == T0
    spec = {k: v for k, v in SPEC.items() if k != "consortium"}
    with pytest.raises(MalformedError, match="consortium: name the consortium"):
        genesis(spec, now=T0, make_key=_keys)
    assert genesis(spec, now=T0, make_key=_keys, consortium="staging.example").consortium == "staging.example"
    licence = dict(SPEC["types"][0])
    licence["revokers"] = ["hz-amr", {"member": "hz-psb", "valid_from": "+30d", "valid_until": "+60d"}]
    p = genesis({**SPEC, "types": [licence]}, now=T0, make_key=_keys)
    psb = p.require_type("business_licence").revokers[1]
    assert (psb.member, psb.valid_from, psb.valid_until) == ("hz-psb", T0 + 30 * 86_400, T0 + 60 * 86_400)
    assert p.may_revoke("hz-psb", "business_licence", at=T0 + 30 * 86_400)
    assert not p.may_revoke("hz-psb", "business_licence", at=T0)
    licence["revokers"] = [{"member": "hz-psb", "since": "now"}]
    with pytest.raises(MalformedError, match=r"types\[0\].revokers\[0\]: unknown field 'since'"):
        genesis({**SPEC, "types": [licence]}, now=T0, make_key=_keys)
    licence["revokers"] = [3]
    with pytest.raises(MalformedError, match=r"revokers\[0\]: expected a table"):
        genesis({**SPEC, "types": [licence]}, now=T0, make_key=_keys)


def test_read_toml_caps() -> None:
    with pytest.raises(TooLargeError, match="over the 262144-byte limit"):
        read_toml(b"#" * 300_000)
    with pytest.raises(MalformedError, match="not valid UTF-8"):
        read_toml(b"a = '\xff'")
    with pytest.raises(LedgerError):
        read_toml(b"a = " + b"[" * 100_000)


TOML_VALUES = st.recursive(
    st.none().map(lambda _: "")
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.text(max_size=30)
    | st.datetimes()
    | st.dates()
    | st.times(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=3),
    max_leaves=12,
)


def _mutate(spec: dict[str, Any], path: list[int], value: object) -> dict[str, Any]:
    """Replace one field somewhere in the spec (chosen by ``path``) with ``value``."""
    root: Any = {k: v for k, v in spec.items()}
    node = root
    for step in path:
        if isinstance(node, dict) and node:
            key = sorted(node)[step % len(node)]
            child = node[key]
            if isinstance(child, dict | list) and child:
                node[key] = child = dict(child) if isinstance(child, dict) else list(child)
                node = child
                continue
            node[key] = value
            return root
        if isinstance(node, list) and node:
            i = step % len(node)
            child = node[i]
            if isinstance(child, dict | list) and child:
                node[i] = child = dict(child) if isinstance(child, dict) else list(child)
                node = child
                continue
            node[i] = value
            return root
    return root


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=6), TOML_VALUES)
def test_hostile_specs(path: list[int], value: object) -> None:
    try:
        p = genesis(_mutate(SPEC, path, value), now=T0, make_key=_keys)
    except LedgerError:
        return
    assert isinstance(p, Policy)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_hostile_toml(text: str) -> None:
    try:
        p = genesis(read_toml(text.encode("utf-8", "surrogatepass")), now=T0, make_key=_keys)
    except LedgerError:
        return
    assert isinstance(p, Policy)  # only a complete spec gets here


KINDS = st.sampled_from(
    [
        "rotate-log-key",
        "compromise",
        "issuers",
        "revokers",
        "witness-key",
        "base-url",
        "add-governance-key",
        "remove-governance-key",
        "threshold",
        "witness-quorum",
        "freshness",
        "expires",
        "add-member",
        "bogus",
    ]
)
VALUES = st.one_of(
    st.text(max_size=60),
    st.from_regex(r"hz-(amr|psb|x):[0-9a-f]{0,8}@?[0-9T:Z-]{0,22}", fullmatch=True),
    st.from_regex(r"(business_licence|health_cert|x):[a-z,-]{0,20}(@[0-9T:Z+d-]{0,22})?", fullmatch=True),
)


@settings(max_examples=400, deadline=None)
@given(KINDS, VALUES)
def test_hostile_changes(kind: str, value: str) -> None:
    try:
        p = apply_changes(make_policy(), [parse_change(f"{kind}={value}")], now=T0)
    except LedgerError:
        return
    assert p.version == 2
