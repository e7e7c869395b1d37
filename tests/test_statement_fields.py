"""The mirror's quick parsers (statement fields, entry parts, certificate ids) accept
exactly what the strict ones accept, give the same fields, and refuse everything else
with the strict parser's error and message."""

from __future__ import annotations

import dataclasses

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import LedgerError, MalformedError
from ledger.log.certid import CertId, is_valid_cert_id
from ledger.log.statement import (
    GENESIS_PREV,
    Entry,
    Kind,
    SignedStatement,
    Statement,
    StatementFields,
    encode_entry,
    statement_fields,
)
from ledger.replica.checks import EntryJudge, entry_problem
from ledger.replica.sync import _entry_parts
from ledger.trust.policy import LogKey, Mandate
from tests.fixtures.consortium import (
    AMR,
    AMR_KEY,
    AMR_OLD_KEY,
    BUSINESS_LICENCE,
    FOOD_PERMIT,
    HEALTH,
    HEALTH_CERTIFICATE,
    PSB,
    policy,
)
from tests.helpers import ISSUER, T0, cert_id, issue, log_key, mutate, revoke
from tests.test_statement import statements


def _same_as_strict(data: bytes) -> None:
    try:
        st_ = Statement.from_bytes(data)
    except LedgerError as e:
        with pytest.raises(type(e)) as got:
            statement_fields(data)
        assert str(got.value) == str(e)
        return
    fields = statement_fields(data)
    assert fields == (int(st_.kind), st_.issuer, st_.cert_id, st_.cert_type, st_.time, st_.replaces)
    assert type(fields.kind) is int and type(fields.time) is int


@settings(max_examples=300, deadline=None)
@given(statements())
def test_every_valid_statement_gives_its_fields(statement: Statement) -> None:
    _same_as_strict(statement.to_bytes())


@settings(max_examples=500, deadline=None)
@given(data=st.data(), which=st.integers(0, 2))
def test_mutated_statement_bytes_are_judged_as_the_strict_parser_does(
    data: st.DataObject, which: int
) -> None:
    seed = (issue(3), revoke(4), issue(5, claims=1))[which].to_bytes()
    _same_as_strict(mutate(data, seed))


_ODD_KEYS = st.one_of(st.integers(-2, 16), st.booleans(), st.sampled_from([0.0, 1.0, "1", b"\x01"]))
_ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.sampled_from([T0, 1, 2, 5, 0.5, "", ISSUER, "business_licence", "op:1", cert_id(1), cert_id(2)]),
    st.sampled_from([cert_id(1) + "X", "1.2.156.3005.2.A.B.1.001.0", b"\x00" * 32, [1], {0: b"\x00" * 32}]),
    st.dictionaries(st.one_of(st.integers(-1, 300), st.booleans()), st.binary(min_size=31, max_size=33)),
)


@settings(max_examples=1000, deadline=None)
@given(
    base=st.sampled_from(["issue", "revoke", "replace"]),
    changes=st.dictionaries(_ODD_KEYS, _ODD_VALUES, max_size=4),
    drop=st.lists(st.integers(0, 13), max_size=2),
    order=st.sampled_from(["sorted", "reversed", "as is"]),
    bin_type=st.booleans(),
)
def test_hostile_statement_maps_are_judged_as_the_strict_parser_does(
    base: str, changes: dict[object, object], drop: list[int], order: str, bin_type: bool
) -> None:
    good: dict[object, object] = {0: 1, 1: 1, 2: ISSUER, 3: cert_id(1), 4: "business_licence", 5: T0}
    good[6] = "op:1"
    if base == "revoke":
        good |= {1: int(Kind.REVOKE), 10: 2}
    else:
        good |= {7: T0, 8: T0 + 10, 9: {0: b"\x01" * 32, 200: b"\x02" * 32}}
    if base == "replace":
        good |= {1: int(Kind.REPLACE), 11: cert_id(2), 10: 5}
    for k in drop:
        good.pop(k, None)
    good |= changes
    items = list(good.items())
    if order == "reversed":
        items.reverse()
    try:
        data = msgpack.packb(dict(items), use_bin_type=bin_type, strict_types=False)
    except (TypeError, ValueError, OverflowError):
        return
    _same_as_strict(data)


def test_a_float_or_boolean_key_equal_to_an_integer_is_refused() -> None:
    good = issue(1).to_bytes()
    raw = msgpack.unpackb(good, strict_map_key=False)
    for odd in (True, 1.0):
        data = msgpack.packb({(odd if k == 1 else k): v for k, v in raw.items()}, use_bin_type=True)
        with pytest.raises(MalformedError, match="not an integer or a string"):
            statement_fields(data)


def test_a_policy_statement_gives_empty_ids() -> None:
    st_ = Statement.policy_adoption(issuer="amr", time=T0, operator="op:1", policy_version=3, document=b"x")
    assert statement_fields(st_.to_bytes()) == (int(Kind.POLICY), "amr", "", "", T0, None)


@settings(max_examples=500, deadline=None)
@given(
    serial=st.integers(0, 10**20 - 1),
    check=st.sampled_from([None, "0", "A", "Z", "a", ".", "\n", ""]),
    text=st.text(max_size=80),
)
def test_is_valid_cert_id_agrees_with_parse(serial: int, check: str | None, text: str) -> None:
    good = cert_id(serial)
    for candidate in (good, good[:-1] + check if check is not None else good + "X", text, good + text):
        try:
            CertId.parse(candidate)
        except MalformedError:
            assert not is_valid_cert_id(candidate)
        else:
            assert is_valid_cert_id(candidate)
    assert not is_valid_cert_id(b"1.2.156")
    assert not is_valid_cert_id(None)


def _parts_as_strict(data: bytes) -> None:
    try:
        signed = Entry.from_bytes(data).signed
    except LedgerError as e:
        with pytest.raises(type(e)) as got:
            SignedStatement(
                **dict(zip(("statement_bytes", "key_id", "signature"), _entry_parts(data), strict=True))
            )
        assert str(got.value) == str(e)
        return
    assert _entry_parts(data) == (signed.statement_bytes, signed.key_id, signed.signature)


@settings(max_examples=300, deadline=None)
@given(size=st.integers(0, 600), data=st.data())
def test_entry_parts_of_short_and_long_statements_match_the_strict_parser(
    size: int, data: st.DataObject
) -> None:
    key, kid = log_key()
    statement = issue(1, claims=max(1, min(64, size // 34))).to_bytes()
    good = encode_entry(statement_bytes=statement, key_id=kid, signature=bytes(64), prev=GENESIS_PREV)
    _parts_as_strict(good)
    _parts_as_strict(mutate(data, good))
    # a statement of under 256 bytes behind a bin 16 header is not the canonical layout
    short = statement[:200]
    wide = (
        b"\x85\x00\x01\x01\xc5" + len(short).to_bytes(2, "big") + short + good[-(3 + 4 + 3 + 64 + 3 + 32) :]
    )
    with pytest.raises(MalformedError, match="not canonical"):
        _entry_parts(wide)
    del key


# -- the mirror's rule tables ---------------------------------------------------------

_WINDOWED_AMR = dataclasses.replace(
    AMR,
    log_keys=(
        LogKey(public_key=AMR_OLD_KEY.public_key, valid_from=T0 - 1000, valid_until=T0 + 1000),
        LogKey(public_key=AMR_KEY.public_key, valid_from=T0, compromised_at=T0 + 5000),
    ),
)
_WINDOWED_POLICY = policy(
    members=(_WINDOWED_AMR, HEALTH, PSB),
    types=(
        dataclasses.replace(
            BUSINESS_LICENCE,
            issuers=(Mandate(member=AMR.id, valid_from=T0 - 500, valid_until=T0 + 500),),
            revokers=(
                Mandate(member=AMR.id, valid_until=T0 + 2000),
                Mandate(member=AMR.id, valid_from=T0 + 3000),
            ),
        ),
        FOOD_PERMIT,
        HEALTH_CERTIFICATE,
    ),
)


@settings(max_examples=500, deadline=None)
@given(
    kind=st.sampled_from([Kind.ISSUE, Kind.REVOKE, Kind.SUSPEND, Kind.REINSTATE, Kind.REPLACE, Kind.POLICY]),
    issuer=st.sampled_from([AMR.id, HEALTH.id, "stranger"]),
    cert_type=st.sampled_from(["business_licence", "health_certificate", "unknown_type", ""]),
    key=st.integers(0, 2),
    at=st.integers(T0 - 2000, T0 + 7000),
    witnessed_at=st.one_of(st.none(), st.integers(T0 - 2000, T0 + 7000)),
)
def test_the_rule_tables_trust_exactly_the_statements_entry_problem_passes(
    *, kind: Kind, issuer: str, cert_type: str, key: int, at: int, witnessed_at: int | None
) -> None:
    member = _WINDOWED_POLICY.require_member(AMR.id)
    judge = EntryJudge(policy=_WINDOWED_POLICY, member=member)
    kid = (*(member.log_key_id(k) for k in member.log_keys), b"\x00\x01\x02\x03")[key]
    fields = StatementFields(
        int(kind), issuer, "" if kind == Kind.POLICY else cert_id(1), cert_type, at, None
    )
    signed = _signed_for(fields, kid)
    expected = entry_problem(_WINDOWED_POLICY, member, signed, witnessed_at=witnessed_at)
    trusted = judge.trusted(fields, kid, witnessed_at=witnessed_at)
    if kind == Kind.POLICY or signed.statement.cert_type != cert_type:
        assert not trusted or expected is None
    else:
        assert trusted == (expected is None), expected


def _signed_for(fields: StatementFields, kid: bytes) -> SignedStatement:
    """A statement with these fields (any valid stand-in where a field cannot be)."""
    issuer = fields.issuer if fields.issuer != "stranger" else "stranger-1"
    if fields.kind == Kind.POLICY:
        st_ = Statement.policy_adoption(
            issuer=issuer, time=fields.time, operator="op:1", policy_version=2, document=b"p"
        )
    else:
        kind = Kind(fields.kind)
        extra: dict[str, object] = (
            {"valid_from": T0, "claim_digests": {0: bytes(32)}}
            if kind in (Kind.ISSUE, Kind.REPLACE)
            else {"reason": 1}
        )
        if kind == Kind.REPLACE:
            extra["replaces"] = cert_id(2)
        st_ = Statement(
            kind=kind,
            issuer=issuer,
            cert_id=fields.cert_id,
            cert_type=fields.cert_type or "no_type",
            time=fields.time,
            operator="op:1",
            **extra,  # type: ignore[arg-type]
        )
    return SignedStatement.from_statement(st_, key_id=kid, signature=bytes(64))
