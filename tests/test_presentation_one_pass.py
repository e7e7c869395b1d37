"""The one-pass presentation parser and the statement rebuild agree with the general route.

:meth:`Presentation.from_bytes` first tries :func:`_parse_well_formed`; whatever that
pass accepts must be exactly what the general parser (canonical decode, then
:meth:`Presentation.from_map`) accepts, with an equal result. Everything it does not
accept goes to the general parser, which names the rule.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import canonical
from ledger.credential.credential import issue_credential
from ledger.credential.presentation import (
    MAX_INFLATED_SIZE,
    Presentation,
    _parse_well_formed,
    _signed_statement,
    verify_presentation,
)
from ledger.errors import LedgerError, MalformedError
from ledger.log.statement import Reason, SignedStatement
from tests.fixtures.consortium import (
    AMR,
    AMR_KEY,
    FOOD_PERMIT,
    POLICY,
    T0,
    all_credentials,
    issue_food_permit,
)

CREDENTIALS = all_credentials()
REFERENCE = CREDENTIALS["business_licence"]


def _replacement() -> Presentation:
    old = issue_food_permit()
    cred = issue_credential(
        cert_type=FOOD_PERMIT,
        issuer=AMR,
        key=AMR_KEY,
        serial="0007",
        cert_version="002",
        claims={**dict(old.claims), "seats": 80},
        operator="op:51c0de",
        time=T0,
        valid_from=T0,
        valid_until=T0 + 86400 * 365,
        replaces=old.cert_id,
        reason=Reason.INFORMATION_CHANGED,
    )
    return cred.present(["seats"])


BASES = [
    REFERENCE.present(),
    REFERENCE.present(["uscc", "name"]),
    *(c.present() for c in CREDENTIALS.values()),
    _replacement(),
]


def _general(data: bytes) -> Presentation:
    raw = canonical.decode(data, max_size=MAX_INFLATED_SIZE, max_depth=2, what="presentation")
    return Presentation.from_map(raw)


def _agree(data: bytes) -> None:
    fast = _parse_well_formed(data)
    if fast is None:
        return
    assert fast == _general(data)


@pytest.mark.parametrize("base", BASES, ids=[f"{b.cert_type}-{b.kind.label}-{b.full}" for b in BASES])
def test_every_well_formed_presentation_takes_the_one_pass(base: Presentation) -> None:
    data = base.to_bytes()
    fast = _parse_well_formed(data)
    assert fast is not None and fast == _general(data) == base
    assert Presentation.from_bytes(data) == base


_SCALAR = (
    st.none()
    | st.booleans()
    | st.sampled_from([0, 1, 5, 6, -1, 255, 256, 999, 1000, 2**40 - 1, 2**40, 2**63, 2**64 - 1, -(2**63)])
    | st.integers(-(2**63), 2**64 - 1)
    | st.sampled_from(["", "a", "business_licence", "op:7f3a9c", "浙江", "\ue000", "Ab c", "007"])
    | st.text(max_size=12)
    | st.binary(max_size=70)
    | st.sampled_from([bytes(4), bytes(16), bytes(32), bytes(64), "浙江".encode("gb18030"), b"\x81"])
)
_VALUE = st.recursive(
    _SCALAR,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.integers(-2, 300) | st.text(max_size=2), children, max_size=5)
    ),
    max_leaves=12,
)


def _pack_pairs(pairs: list[tuple[Any, Any]]) -> bytes:
    """A msgpack map in exactly the order given (duplicates kept)."""
    packer = msgpack.Packer(use_bin_type=True)
    out: bytes = packer.pack_map_header(len(pairs))
    return out + b"".join(packer.pack(k) + packer.pack(v) for k, v in pairs)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=400)
@given(
    st.sampled_from(BASES),
    st.dictionaries(st.integers(0, 17), _VALUE, max_size=4),
    st.lists(st.integers(0, 17), max_size=3),
)
def test_changed_fields_one_pass_accepts_only_what_the_general_parser_accepts(
    base: Presentation, changes: dict[int, Any], dropped: list[int]
) -> None:
    m = base.to_map()
    m.update(changes)
    for k in dropped:
        m.pop(k, None)
    try:
        data = msgpack.packb(dict(sorted(m.items())), use_bin_type=True)
    except (ValueError, OverflowError):
        return
    _agree(data)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(st.sampled_from(BASES), st.data())
def test_claim_maps_changed_one_pass_agrees(base: Presentation, data: st.DataObject) -> None:
    m = base.to_map()
    field = data.draw(st.sampled_from([k for k in (13, 15, 16) if k in m]))
    inner: dict[int, Any] = dict(m[field])
    extra: dict[int, Any] = data.draw(st.dictionaries(st.integers(-1, 256), _SCALAR, max_size=3))
    inner.update(extra)
    drop: bool = data.draw(st.booleans())
    if inner and drop:
        inner.pop(data.draw(st.sampled_from(sorted(inner))))
    m[field] = dict(sorted(inner.items()))
    _agree(msgpack.packb(m, use_bin_type=True))


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=200)
@given(st.sampled_from(BASES), st.randoms(use_true_random=False), st.booleans())
def test_reordered_or_duplicated_keys_are_never_taken_by_the_one_pass(
    base: Presentation, rnd: Any, duplicate: bool
) -> None:
    pairs = list(base.to_map().items())
    rnd.shuffle(pairs)
    if duplicate:
        pairs.append(pairs[0])
    data = _pack_pairs(pairs)
    if data == base.to_bytes():
        return
    assert _parse_well_formed(data) is None
    with pytest.raises(MalformedError, match=r"not canonical|encoding"):
        Presentation.from_bytes(data)


@given(st.sampled_from(BASES), st.binary(max_size=8), st.integers(0, 600))
def test_spliced_bytes_one_pass_agrees(base: Presentation, junk: bytes, at: int) -> None:
    good = base.to_bytes()
    for data in (good + junk, good[:at] + junk + good[at:], good[:at]):
        _agree(data)
        if _parse_well_formed(data) is None:
            try:
                Presentation.from_bytes(data)
            except LedgerError:
                continue


def test_wider_integer_encoding_is_refused_by_both() -> None:
    """A non-canonical (wider) integer decodes to the same map but must not pass."""
    good = REFERENCE.present(["uscc"]).to_bytes()
    wide = good.replace(b"\x01\x01\x02\xc4\x04", b"\x01\xcc\x01\x02\xc4\x04", 1)
    assert wide != good
    assert _parse_well_formed(wide) is None
    with pytest.raises(MalformedError, match="not canonical"):
        Presentation.from_bytes(wide)


def _general_signed(p: Presentation) -> SignedStatement:
    member, _ = POLICY.find_log_key(p.key_id)
    ctype = POLICY.require_type(p.cert_type)
    st = p.statement(issuer=member.id, national_code=ctype.national_code, issuer_code=member.issuer_code)
    return SignedStatement.from_statement(st, key_id=p.key_id, signature=p.signature)


@pytest.mark.parametrize("base", BASES, ids=[f"{b.cert_type}-{b.kind.label}-{b.full}" for b in BASES])
def test_rebuilt_statement_is_the_general_routes(base: Presentation) -> None:
    member, _ = POLICY.find_log_key(base.key_id)
    ctype = POLICY.require_type(base.cert_type)
    fast = _signed_statement(base, member=member, ctype=ctype)
    general = _general_signed(base)
    assert fast.statement_bytes == general.statement_bytes
    assert fast.statement == general.statement
    assert fast.key_id == general.key_id and fast.signature == general.signature
    assert fast.statement.to_bytes() == fast.statement_bytes
    checked = verify_presentation(base, policy=POLICY, now=T0 + 86400)
    assert checked.signed.statement_bytes == general.statement_bytes
    assert checked.cert_id == general.statement.cert_id


def test_a_replacement_naming_itself_is_refused_like_the_general_route() -> None:
    base = _replacement()
    own_id = _general_signed(base).statement.cert_id
    selfish = dataclasses.replace(base, replaces=own_id)
    member, _ = POLICY.find_log_key(base.key_id)
    ctype = POLICY.require_type(base.cert_type)
    with pytest.raises(MalformedError, match="cannot replace itself") as fast:
        _signed_statement(selfish, member=member, ctype=ctype)
    with pytest.raises(MalformedError, match="cannot replace itself") as general:
        _general_signed(selfish)
    assert str(fast.value) == str(general.value)
    with pytest.raises(MalformedError, match="cannot replace itself"):
        verify_presentation(selfish, policy=POLICY, now=T0 + 86400)


@pytest.mark.parametrize("field", [9, 10, 11, 14, 15, 16])
def test_second_encoding_with_an_explicit_nil_field_is_refused_by_both(field: int) -> None:
    """An optional field present as nil would give one presentation two encodings."""
    tried = 0
    for base in BASES:
        m = base.to_map()
        if field in m:
            continue
        m[field] = None
        data = msgpack.packb(dict(sorted(m.items())), use_bin_type=True)
        assert _parse_well_formed(data) is None
        with pytest.raises(MalformedError, match=rf"field {field} \(\w+\) is nil: leave an absent field out"):
            Presentation.from_bytes(data)
        tried += 1
    assert tried
