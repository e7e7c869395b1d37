"""Mandate, key-validity, witness and time queries of one policy version (table tests)."""

from __future__ import annotations

import dataclasses

import pytest

from ledger.errors import MalformedError, PolicyError, SchemaError
from ledger.keys import SIG_TYPE_COSIGNATURE, PublicKey, VerifierKey
from ledger.trust.policy import RULES, LogKey, Policy, format_time
from tests.policy_fixtures import (
    DAY,
    T0,
    YEAR,
    business_licence,
    health_cert,
    log_signing_key,
    make_policy,
    member,
    members,
)

# -- mandates -----------------------------------------------------------------------

MANDATES = [
    # member, type, action, allowed, rule, message fragment
    ("hz-amr", "business_licence", "issue", True, None, None),
    ("hz-amr", "business_licence", "revoke", True, None, None),
    ("hz-psb", "business_licence", "issue", False, "mandate", "hz-psb may not issue business_licence"),
    ("hz-psb", "business_licence", "revoke", False, "mandate", "allowed to revoke: hz-amr"),
    ("hz-health", "health_cert", "issue", True, None, None),
    ("hz-amr", "health_cert", "issue", False, "mandate", "allowed to issue: hz-health"),
    ("hz-amr", "health_cert", "revoke", True, None, None),
    ("hz-health", "health_cert", "revoke", True, None, None),
    ("hz-psb", "health_cert", "revoke", False, "mandate", "allowed to revoke: hz-amr, hz-health"),
    ("sh-amr", "business_licence", "issue", False, "unknown-member", "'sh-amr' is not a member"),
    ("hz-amr", "driving_licence", "issue", False, "unknown-type", "no certificate type 'driving_licence'"),
]


@pytest.mark.parametrize("case", MANDATES)
def test_mandates(case: tuple[str, str, str, bool, str | None, str | None]) -> None:
    who, code, action, allowed, rule, fragment = case
    p = make_policy()
    ask = p.may_issue if action == "issue" else p.may_revoke
    assert ask(who, code, at=T0) is allowed
    if allowed:
        assert p.check_mandate(who, code, action, at=T0).code == code  # type: ignore[arg-type]
    else:
        with pytest.raises(PolicyError) as e:
            p.check_mandate(who, code, action, at=T0)  # type: ignore[arg-type]
        assert e.value.rule == rule
        assert str(e.value).startswith(f"{rule}: ")
        assert fragment is not None and fragment in str(e.value)
        assert "policy version 1" in str(e.value)


def test_mandate_nobody_and_bad_action() -> None:
    p = make_policy(types=(business_licence(revokers=()), health_cert()))
    with pytest.raises(PolicyError, match="allowed to revoke: no member"):
        p.check_mandate("hz-amr", "business_licence", "revoke", at=T0)
    with pytest.raises(MalformedError, match="unknown mandate action 'suspend'"):
        p.check_mandate("hz-amr", "business_licence", "suspend", at=T0)  # type: ignore[arg-type]
    with pytest.raises(MalformedError, match="statement time -1 is not a time"):
        p.check_mandate("hz-amr", "business_licence", "issue", at=-1)


# -- log keys -----------------------------------------------------------------------

OLD = log_signing_key("hz-amr", 0).public_key
NEW = log_signing_key("hz-amr", 1).public_key
BAD = log_signing_key("hz-amr", 2).public_key
ROTATED = T0 + 100 * DAY
COMPROMISED = T0 + 50 * DAY


def _key_policy() -> Policy:
    keys = (
        LogKey(public_key=OLD, valid_from=T0, valid_until=ROTATED),
        LogKey(public_key=NEW, valid_from=ROTATED),
        LogKey(public_key=BAD, valid_from=T0, compromised_at=COMPROMISED),
    )
    ms = members()
    return make_policy(members=(member("hz-amr", ms[0].name, ms[0].issuer_code, log_keys=keys), *ms[1:]))


def _kid(k: PublicKey) -> bytes:
    p = _key_policy()
    m = p.require_member("hz-amr")
    (lk,) = [x for x in m.log_keys if x.public_key == k]
    return m.log_key_id(lk)


KEY_CASES = [
    # key, statement time, witnessed at, rule (None = trusted), message fragment
    (OLD, T0, T0 + 60, None, None),
    (OLD, ROTATED - 1, ROTATED, None, None),
    (OLD, ROTATED - 1, None, None, None),  # not yet witnessed: fine for an uncompromised key
    (OLD, ROTATED, ROTATED + 60, "key-validity", "not at " + format_time(ROTATED)),
    (OLD, T0 - 1, T0, "key-validity", "valid for statements made in [" + format_time(T0)),
    (NEW, ROTATED - 1, ROTATED, "key-validity", "open-ended)"),
    (NEW, ROTATED, ROTATED + 60, None, None),
    (NEW, ROTATED + 10 * YEAR, ROTATED + 10 * YEAR, None, None),
    # the compromise case: trusted only for entries witnessed before the compromise
    (BAD, T0 + DAY, COMPROMISED - 1, None, None),
    (BAD, T0 + DAY, COMPROMISED, "key-compromised", "first witnessed at " + format_time(COMPROMISED)),
    # back-dating: statement time before the compromise, entry witnessed after it
    (BAD, T0 + DAY, COMPROMISED + DAY, "key-compromised", "trusted only for entries witnessed before"),
    (BAD, COMPROMISED + DAY, COMPROMISED + DAY, "key-compromised", "was compromised at"),
    (BAD, T0 + DAY, None, "key-compromised", "this entry has not been witnessed"),
]


@pytest.mark.parametrize(("key", "at", "witnessed", "rule", "fragment"), KEY_CASES)
def test_log_key_validity(
    key: PublicKey, at: int, witnessed: int | None, rule: str | None, fragment: str
) -> None:
    p = _key_policy()
    kid = _kid(key)
    if rule is None:
        got = p.log_key("hz-amr", kid, at=at, witnessed_at=witnessed)
        assert got.public_key == key
        return
    with pytest.raises(PolicyError) as e:
        p.log_key("hz-amr", kid, at=at, witnessed_at=witnessed)
    assert e.value.rule == rule
    assert f"log key {kid.hex()} of hz-amr" in str(e.value)
    assert fragment is not None and fragment in str(e.value)


def test_log_key_unknown_and_wrong_member() -> None:
    p = _key_policy()
    kid = _kid(OLD)
    with pytest.raises(
        PolicyError, match=f"unknown-key: member hz-psb has no log key with key ID {kid.hex()}"
    ):
        p.log_key("hz-psb", kid, at=T0, witnessed_at=T0)
    with pytest.raises(PolicyError, match="unknown-member: 'nobody' is not a member") as e:
        p.log_key("nobody", kid, at=T0, witnessed_at=T0)
    assert e.value.rule == "unknown-member"
    with pytest.raises(MalformedError, match="exactly 4 bytes"):
        p.log_key("hz-amr", kid + b"\x00", at=T0, witnessed_at=T0)
    with pytest.raises(MalformedError, match="not a time"):
        p.log_key("hz-amr", kid, at=-5, witnessed_at=T0)


# -- witnesses and time --------------------------------------------------------------


def test_witness_keys_and_quorum() -> None:
    p = make_policy()
    keys = p.witness_keys("hz-amr")
    assert sorted(keys) == ["hz-health", "hz-psb"]
    assert all(k.sig_type == SIG_TYPE_COSIGNATURE for k in keys.values())
    p.check_quorum("hz-amr", ["hz-psb"])
    p.check_quorum("hz-amr", ["hz-psb", "hz-health"])
    with pytest.raises(
        PolicyError, match=r"witness-quorum: .* cosigned by 0/2 other members' witnesses; quorum 1$"
    ):
        p.check_quorum("hz-amr", ["hz-amr", "stranger"])  # its own cosignature does not count
    p2 = make_policy(witness_quorum=2)
    with pytest.raises(PolicyError, match=r"cosigned by 1/2 .*\(hz-psb\); quorum 2") as e:
        p2.check_quorum("hz-amr", ["hz-psb", "hz-psb"])  # repeats count once
    assert e.value.rule == "witness-quorum"


def test_expiry_and_freshness() -> None:
    p = make_policy()
    p.check_not_expired(p.expires - 1)
    assert p.is_expired(p.expires)
    with pytest.raises(PolicyError, match="expired: policy version 1 expired at 2025-05-31T16:00:00Z") as e:
        p.check_not_expired(p.expires)
    assert e.value.rule == "expired"
    p.check_fresh(T0, now=T0 + DAY)
    with pytest.raises(PolicyError, match=r"stale: .* 86401 s before .*freshness limit is 86400 s") as e:
        p.check_fresh(T0, now=T0 + DAY + 1)
    assert e.value.rule == "stale"


def test_every_rule_is_documented() -> None:
    assert len(RULES) == 26
    assert all(isinstance(v, str) and v for v in RULES.values())


# -- model validation ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"governance_threshold": 4}, "governance threshold must be between 1 and"),
        ({"governance_threshold": 0}, "governance threshold"),
        ({"governance_keys": ()}, "1 to 32 governance keys"),
        ({"witness_quorum": 3}, "witness quorum"),
        ({"version": 0}, "positive integer"),
        ({"expires": 10**13}, "policy expiry"),
        ({"freshness_seconds": 0}, "freshness"),
        ({"members": members()[:1]}, "names unknown member"),
        ({"members": (*members(), members()[0])}, "member ids must be unique"),
    ],
)
def test_policy_validation(change: dict[str, object], message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        make_policy(**change)


def test_keys_must_not_be_shared() -> None:
    ms = members()
    psb_with_amr_key = dataclasses.replace(ms[1], log_keys=ms[0].log_keys)
    with pytest.raises(PolicyError, match="key-reuse: one public key is both the log key of hz-amr and"):
        make_policy(members=(ms[0], psb_with_amr_key, ms[2]))
    psb_with_amr_witness = dataclasses.replace(ms[1], witness_key=ms[0].witness_key)
    with pytest.raises(
        PolicyError, match=r"key-reuse: .* the witness key of hz-amr and the witness key of hz-psb"
    ):
        make_policy(members=(ms[0], psb_with_amr_witness, ms[2]))
    p = make_policy()
    renamed = VerifierKey(name="another-name", public_key=p.governance_keys[0].public_key)
    with pytest.raises(
        PolicyError, match=r"key-reuse: .* governance key gov-0.* and the governance key another"
    ):
        make_policy(governance_keys=(*p.governance_keys, renamed))
    same_name = VerifierKey(name=p.governance_keys[0].name, public_key=OLD)
    with pytest.raises(SchemaError, match="governance key names must be distinct"):
        make_policy(governance_keys=(*p.governance_keys, same_name))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "杭州\u0000局"}, "name must be 1..200 printable"),
        ({"name": " 杭州"}, "name must be"),
        ({"base_url": "ftp://x"}, "base_url"),
        ({"base_url": "https://a b"}, "base_url"),
        ({"origin": "has space"}, "log origin"),
        ({"log_keys": ()}, "1 to 64 log keys"),
        ({"witness_key": make_policy().governance_keys[0]}, "type 0x04"),
    ],
)
def test_member_validation(change: dict[str, object], message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        dataclasses.replace(members()[0], **change)


def test_log_key_times() -> None:
    with pytest.raises(SchemaError, match="valid_until must be a time after valid_from"):
        LogKey(public_key=OLD, valid_from=T0, valid_until=T0)
    with pytest.raises(SchemaError, match="valid_from must be a time"):
        LogKey(public_key=OLD, valid_from=10**12)
    with pytest.raises(SchemaError, match="compromised_at must be a time"):
        LogKey(public_key=OLD, valid_from=T0, compromised_at=-1)
    assert format_time(0) == "1970-01-01T00:00:00Z"
    with pytest.raises(MalformedError, match="outside"):
        format_time(10**12)
