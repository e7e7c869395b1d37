"""Rules no single policy version can switch off, each against the attack it stops.

Every refusal is a PolicyError whose ``rule`` names the rule (and starts the message).
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest

from ledger.clock import CLOCK_SKEW
from ledger.errors import MalformedError, PolicyError, SchemaError
from ledger.keys import SIG_TYPE_COSIGNATURE, SIG_TYPE_ED25519, PublicKey, SigningKey, VerifierKey, key_id
from ledger.log import note, tlogproof
from ledger.log.certid import CertId
from ledger.log.checkpoint import Checkpoint, CosignatureSigner, cosign, open_checkpoint, sign_checkpoint
from ledger.log.statement import Kind, Reason, Statement
from ledger.trust.consortium import apply_changes, parse_change
from ledger.trust.policy import (
    MAX_FRESHNESS_SECONDS,
    MAX_LIFETIME_SECONDS,
    RULES,
    LogKey,
    Mandate,
    Policy,
    format_time,
)
from ledger.trust.policy_doc import parse_text, render
from ledger.trust.trust import TrustedPolicy
from tests.policy_fixtures import (
    CONSORTIUM,
    DAY,
    T0,
    YEAR,
    business_licence,
    gov_key,
    gov_name,
    health_cert,
    log_signing_key,
    make_policy,
    members,
    sign,
)

NOW = T0 + DAY
V1 = make_policy()
DOC1 = sign(V1, 0, 1)


def _refused(rule: str, e: pytest.ExceptionInfo[PolicyError]) -> str:
    assert e.value.rule == rule
    assert rule in RULES
    assert str(e.value).startswith(f"{rule}: ") or f": {rule}: " in str(e.value)
    return str(e.value)


def _sign_text(text: str, *gov: int) -> bytes:
    """A signed document over ``text`` as it is, even when the model would refuse it."""
    return note.sign(text, [note.Ed25519Signer(name=gov_name(n), key=gov_key(n)) for n in gov])


def _next_text(old: str, new: str) -> str:
    """Version 2's text: version 1's with ``old`` replaced by ``new``."""
    text = render(dataclasses.replace(V1, version=2))
    assert old in text, old
    return text.replace(old, new, 1)


# -- the document names its consortium --------------------------------------------------


def test_cross_consortium_replay_of_a_staging_version_is_refused() -> None:
    # A staging consortium run by the same departments, with the same governance keys,
    # publishes its version 2. Both thresholds are met, but it is not our version 2.
    staging_v2 = dataclasses.replace(V1, consortium="staging.example.gov.cn", version=2)
    t = TrustedPolicy(DOC1)
    assert t.consortium == CONSORTIUM
    with pytest.raises(PolicyError) as e:
        t.update(sign(staging_v2, 0, 1, 2), now=NOW)
    msg = _refused("consortium", e)
    assert "version 2 of consortium 'staging.example.gov.cn', not of the trusted consortium" in msg
    assert "still trusting version 1" in msg and t.version == 1
    # a walk through a production chain cannot switch over part-way either
    v2 = dataclasses.replace(V1, version=2)
    staging_v3 = dataclasses.replace(staging_v2, version=3)
    with pytest.raises(PolicyError, match=r"consortium: .*\[document 2 of 2; the chain verified from"):
        t.walk([sign(v2, 0, 1), sign(staging_v3, 0, 1)], now=NOW)
    assert t.walk([sign(v2, 0, 1)], now=NOW) == v2


def test_the_consortium_name_is_signed_text() -> None:
    # renaming a staging version to pass as ours breaks the governance signatures
    staging = sign(dataclasses.replace(V1, consortium="staging.example.gov.cn", version=2), 0, 1)
    assert b'"consortium": "staging.example.gov.cn",' in staging
    renamed = staging.replace(b"staging.example.gov.cn", CONSORTIUM.encode(), 1)
    with pytest.raises(PolicyError) as e:
        TrustedPolicy(DOC1).update(renamed, now=NOW)
    _refused("bad-signature", e)


# -- one key, one role ------------------------------------------------------------------


def _with_psb(**changes: object) -> Policy:
    amr, psb, health = members()
    return make_policy(members=(amr, dataclasses.replace(psb, **changes), health))  # type: ignore[arg-type]


def _witness(name: str, public: PublicKey) -> VerifierKey:
    return VerifierKey(name=name, public_key=public, sig_type=SIG_TYPE_COSIGNATURE)


AMR_LOG = log_signing_key("hz-amr").public_key
GOV0 = gov_key(0).public_key

KEY_IN_TWO_ROLES = [
    # (build the policy, the roles named in the message)
    (
        lambda: _with_psb(log_keys=(LogKey(public_key=AMR_LOG, valid_from=T0),)),
        "the log key of hz-amr and the log key of hz-psb",
    ),
    (
        lambda: _with_psb(witness_key=_witness("witness.example.gov.cn/hz-psb", AMR_LOG)),
        "the log key of hz-amr and the witness key of hz-psb",
    ),
    (
        lambda: _with_psb(log_keys=(LogKey(public_key=GOV0, valid_from=T0),)),
        "the governance key gov-0.consortium.example.gov.cn and the log key of hz-psb",
    ),
    (
        lambda: _with_psb(witness_key=_witness("witness.example.gov.cn/hz-psb", GOV0)),
        "the governance key gov-0.consortium.example.gov.cn and the witness key of hz-psb",
    ),
    (
        lambda: make_policy(
            governance_keys=(*V1.governance_keys, VerifierKey(name="gov-x", public_key=AMR_LOG))
        ),
        "the log key of hz-amr",
    ),
    (
        lambda: _with_psb(
            log_keys=(
                LogKey(
                    public_key=log_signing_key("hz-psb", 1).public_key, valid_from=T0, valid_until=T0 + DAY
                ),
                LogKey(public_key=log_signing_key("hz-psb", 1).public_key, valid_from=T0 + DAY),
            )
        ),
        "hz-psb lists one log key twice",
    ),
]


@pytest.mark.parametrize(("build", "roles"), KEY_IN_TWO_ROLES)
def test_a_key_in_two_roles_is_refused(build: object, roles: str) -> None:
    assert callable(build)
    with pytest.raises(PolicyError) as e:
        build()
    assert roles in _refused("key-reuse", e)


def test_a_version_adding_a_key_in_a_second_role_is_refused_by_the_chain() -> None:
    # version 2 makes hz-amr's log key a governance key too: whoever holds the log key
    # would then sign policy versions
    gov_vk = str(VerifierKey(name="gov-9.consortium.example.gov.cn", public_key=AMR_LOG))
    text = _next_text(
        f'      "{V1.governance_keys[2]}"\n', f'      "{V1.governance_keys[2]}",\n      "{gov_vk}"\n'
    )
    with pytest.raises(PolicyError) as e:
        TrustedPolicy(DOC1).update(_sign_text(text, 0, 1), now=NOW)
    assert "the governance key gov-9.consortium.example.gov.cn" in _refused("key-reuse", e)


def _grind_colliding_origins(a: PublicKey, b: PublicKey) -> tuple[str, str]:
    """Two log origins whose log keys ``a`` and ``b`` have the same 4-byte C2SP key ID,
    found by a birthday search over origin names with the real key-ID function."""
    table = {key_id(f"ledger.example.gov.cn/a-{i}", SIG_TYPE_ED25519, a.raw): i for i in range(1 << 17)}
    for j in itertools.count():
        kid = key_id(f"ledger.example.gov.cn/b-{j}", SIG_TYPE_ED25519, b.raw)
        if kid in table:
            return f"ledger.example.gov.cn/a-{table[kid]}", f"ledger.example.gov.cn/b-{j}"
    raise AssertionError("unreachable")


def test_a_ground_colliding_key_id_is_refused() -> None:
    # A member that grinds its origin (or witness name) until one of its key IDs equals
    # another member's would make that member's statements ambiguous: the key ID is how
    # a verifier finds the issuer of a presented certificate.
    a, b = log_signing_key("grind-a").public_key, log_signing_key("grind-b").public_key
    origin_a, origin_b = _grind_colliding_origins(a, b)
    assert key_id(origin_a, SIG_TYPE_ED25519, a.raw) == key_id(origin_b, SIG_TYPE_ED25519, b.raw)
    amr, psb, health = members()
    amr = dataclasses.replace(amr, origin=origin_a, log_keys=(LogKey(public_key=a, valid_from=T0),))
    psb = dataclasses.replace(psb, origin=origin_b, log_keys=(LogKey(public_key=b, valid_from=T0),))
    with pytest.raises(PolicyError) as e:
        make_policy(members=(amr, psb, health))
    kid = key_id(origin_a, SIG_TYPE_ED25519, a.raw).hex()
    msg = _refused("key-id-collision", e)
    assert f"key ID {kid} names both the log key of hz-amr and the log key of hz-psb" in msg
    # the same collision across roles is refused too: here a governance key named like
    # the second origin
    governance = VerifierKey(name=origin_b, public_key=b, sig_type=SIG_TYPE_ED25519)
    assert governance.key_id.hex() == kid
    with pytest.raises(PolicyError) as e:
        make_policy(members=(amr, members()[1], health), governance_keys=(*V1.governance_keys, governance))
    assert f"names both the governance key {origin_b} and the log key of hz-amr" in _refused(
        "key-id-collision", e
    )


# -- bounds -------------------------------------------------------------------------------


def test_witness_quorum_of_zero_with_two_or_more_members_is_refused() -> None:
    with pytest.raises(PolicyError) as e:
        make_policy(witness_quorum=0)
    assert "version 1 has 3 members and witness quorum 0" in _refused("quorum-bound", e)
    with pytest.raises(PolicyError) as e:
        make_policy(members=members()[:2], types=(business_licence(),), witness_quorum=0)
    _refused("quorum-bound", e)
    # a consortium of one has nobody else to witness
    alone = make_policy(members=members()[:1], types=(), witness_quorum=0)
    assert alone.witness_quorum == 0
    # switching witnessing off in a signed version 2 is refused by the chain
    text = _next_text('"witness_quorum": 1,', '"witness_quorum": 0,')
    with pytest.raises(PolicyError) as e:
        TrustedPolicy(DOC1).update(_sign_text(text, 0, 1), now=NOW)
    _refused("quorum-bound", e)


def test_freshness_limit_over_30_days_is_refused() -> None:
    assert make_policy(freshness_seconds=MAX_FRESHNESS_SECONDS).freshness_seconds == 30 * DAY
    with pytest.raises(PolicyError) as e:
        make_policy(freshness_seconds=MAX_FRESHNESS_SECONDS + 1)
    assert "freshness limit of 2592001 s; at most 2592000 s (30 days)" in _refused("freshness-bound", e)
    text = _next_text('"freshness_seconds": 86400,', '"freshness_seconds": 315360000,')
    with pytest.raises(PolicyError) as e:
        TrustedPolicy(DOC1).update(_sign_text(text, 0, 1), now=NOW)
    _refused("freshness-bound", e)


def test_expiry_more_than_a_year_after_the_version_is_refused() -> None:
    assert make_policy(expires=T0 + MAX_LIFETIME_SECONDS).expires == T0 + 366 * DAY
    with pytest.raises(PolicyError) as e:
        make_policy(expires=T0 + MAX_LIFETIME_SECONDS + 1)
    assert "more than 366 days after its issue time 2024-05-31T16:00:00Z" in _refused("expiry-bound", e)
    with pytest.raises(PolicyError) as e:
        make_policy(expires=T0)
    assert "not after its issue time" in _refused("expiry-bound", e)
    # a version living ten years would survive a freeze attack for ten years
    text = _next_text('"expires": "2025-05-31T16:00:00Z"', '"expires": "2034-05-31T16:00:00Z"')
    with pytest.raises(PolicyError) as e:
        TrustedPolicy(DOC1).update(_sign_text(text, 0, 1), now=NOW)
    _refused("expiry-bound", e)


def test_a_version_issued_in_the_future_cannot_stretch_its_expiry() -> None:
    # issued ten years ahead, it would "expire within a year of its time" for eleven years
    later = dataclasses.replace(V1, version=2, issued=T0 + 10 * YEAR, expires=T0 + 11 * YEAR)
    t = TrustedPolicy(DOC1)
    with pytest.raises(PolicyError) as e:
        t.update(sign(later, 0, 1), now=NOW)
    msg = _refused("future-time", e)
    assert "issue time of policy version 2 is 315273600 s ahead of the verifier's clock" in msg
    assert t.version == 1
    # within the clock skew is fine; a pinned version from the future is not current
    soon = dataclasses.replace(V1, version=2, issued=NOW + CLOCK_SKEW)
    assert t.update(sign(soon, 0, 1), now=NOW).version == 2
    pinned = TrustedPolicy(sign(later, 0, 1))
    with pytest.raises(PolicyError) as e:
        pinned.current(now=NOW)
    _refused("future-time", e)
    assert pinned.current(now=T0 + 10 * YEAR) == later


def test_duplicate_witness_names_are_refused() -> None:
    amr = members()[0]
    with pytest.raises(PolicyError) as e:
        _with_psb(witness_key=_witness(amr.witness_key.name, log_signing_key("w", 9).public_key))
    msg = _refused("witness-name", e)
    assert "members hz-amr and hz-psb both name their witness 'witness.example.gov.cn/hz-amr'" in msg


# -- mandates with validity windows ----------------------------------------------------------

WITHDRAWN = T0 + 100 * DAY


def _withdrawn_policy() -> Policy:
    """hz-amr may issue business licences until WITHDRAWN; hz-psb from then on; hz-amr
    may revoke them until WITHDRAWN too."""
    licence = dataclasses.replace(
        business_licence(),
        issuers=(
            Mandate(member="hz-amr", valid_until=WITHDRAWN),
            Mandate(member="hz-psb", valid_from=WITHDRAWN),
        ),
        revokers=(Mandate(member="hz-amr", valid_from=T0, valid_until=WITHDRAWN),),
    )
    return make_policy(types=(licence, health_cert()))


MANDATE_CASES = [
    # member, action, statement time, rule (None: allowed), message fragment
    ("hz-amr", "issue", T0, None, None),
    ("hz-amr", "issue", WITHDRAWN - 1, None, None),
    (
        "hz-amr",
        "issue",
        WITHDRAWN,
        "mandate-validity",
        "only in statements made in [open, 2024-09-08T16:00:00Z)",
    ),
    ("hz-psb", "issue", WITHDRAWN - 1, "mandate-validity", "[2024-09-08T16:00:00Z, open-ended)"),
    ("hz-psb", "issue", WITHDRAWN, None, None),
    ("hz-amr", "revoke", T0 - 1, "mandate-validity", "not at 2024-05-31T15:59:59Z"),
    ("hz-amr", "revoke", WITHDRAWN - 1, None, None),
    (
        "hz-amr",
        "revoke",
        WITHDRAWN + YEAR,
        "mandate-validity",
        "revoke business_licence only in statements made",
    ),
    ("hz-psb", "revoke", WITHDRAWN, "mandate", "allowed to revoke: hz-amr"),
]


@pytest.mark.parametrize(("who", "action", "at", "rule", "fragment"), MANDATE_CASES)
def test_a_withdrawn_mandate_keeps_what_was_done_before(
    who: str, action: str, at: int, rule: str | None, fragment: str | None
) -> None:
    p = _withdrawn_policy()
    ask = p.may_issue if action == "issue" else p.may_revoke
    assert ask(who, "business_licence", at=at) is (rule is None)
    if rule is None:
        assert p.check_mandate(who, "business_licence", action, at=at).code == "business_licence"  # type: ignore[arg-type]
        return
    with pytest.raises(PolicyError) as e:
        p.check_mandate(who, "business_licence", action, at=at)  # type: ignore[arg-type]
    assert fragment is not None and fragment in _refused(rule, e)


def test_mandate_windows_are_in_the_document_and_overlaps_are_refused() -> None:
    p = _withdrawn_policy()
    text = render(p)
    assert '{"member": "hz-amr", "valid_from": null, "valid_until": "2024-09-08T16:00:00Z"}' in text
    assert '"issuers": ["hz-health"]' in text  # a mandate without a window is the member id alone
    assert parse_text(text) == p
    with pytest.raises(SchemaError, match="issuers mandates of hz-amr overlap"):
        dataclasses.replace(
            business_licence(),
            issuers=(
                Mandate(member="hz-amr", valid_until=WITHDRAWN),
                Mandate(member="hz-amr", valid_from=T0),
            ),
        )


def test_withdrawing_a_mandate_by_a_change_keeps_earlier_statements_valid() -> None:
    p = make_policy()
    v2 = apply_changes(p, [parse_change("issuers=business_licence:hz-psb")], now=WITHDRAWN)
    assert v2.issued == WITHDRAWN
    assert v2.require_type("business_licence").issuers == (
        Mandate(member="hz-amr", valid_until=WITHDRAWN),
        Mandate(member="hz-psb", valid_from=WITHDRAWN),
    )
    assert v2.may_issue("hz-amr", "business_licence", at=WITHDRAWN - 1)
    assert not v2.may_issue("hz-amr", "business_licence", at=WITHDRAWN)
    assert not v2.may_issue("hz-psb", "business_licence", at=WITHDRAWN - 1)
    # given back later, the gap stays
    v3 = apply_changes(
        v2,
        [parse_change(f"issuers=business_licence:hz-amr,hz-psb@{format_time(WITHDRAWN + DAY)}")],
        now=WITHDRAWN,
    )
    assert v3.require_type("business_licence").issuers == (
        Mandate(member="hz-amr", valid_until=WITHDRAWN),
        Mandate(member="hz-amr", valid_from=WITHDRAWN + DAY),
        Mandate(member="hz-psb", valid_from=WITHDRAWN),
    )
    assert not v3.may_issue("hz-amr", "business_licence", at=WITHDRAWN + 60)
    assert v3.may_issue("hz-amr", "business_licence", at=WITHDRAWN + DAY)


def test_every_rule_is_in_the_operators_documentation() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "trust-policy.md").read_text(encoding="utf-8")
    missing = [rule for rule in RULES if f"`{rule}`" not in doc]
    assert missing == []


# -- times from the future --------------------------------------------------------------------

TEN_YEARS = 10 * YEAR


def test_a_checkpoint_from_ten_years_ahead_is_never_fresh() -> None:
    p = make_policy()
    p.check_fresh(NOW + CLOCK_SKEW, now=NOW)  # a witness clock a little ahead is fine
    with pytest.raises(PolicyError) as e:
        p.check_fresh(NOW + TEN_YEARS, now=NOW)
    msg = _refused("future-time", e)
    assert "the newest witnessed checkpoint's time is 315360000 s ahead of the verifier's clock" in msg
    assert (
        "at most 300 s of clock skew is allowed (either the signer's clock or this device's clock is wrong)"
        in msg
    )
    with pytest.raises(PolicyError) as e:
        p.check_fresh(NOW + CLOCK_SKEW + 1, now=NOW)
    _refused("future-time", e)


def _checkpoint(cosigned_at: int) -> tuple[bytes, VerifierKey, VerifierKey]:
    log = SigningKey.from_seed(b"\x01" * 32)
    origin = "ledger.example.gov.cn/hz-amr"
    witness = CosignatureSigner(name="witness.example.gov.cn/hz-psb", key=SigningKey.from_seed(b"\x02" * 32))
    data = sign_checkpoint(Checkpoint(origin=origin, size=1, root_hash=bytes(32)), key=log)
    data = cosign(data, witness, timestamp=cosigned_at)
    return data, VerifierKey(name=origin, public_key=log.public_key), witness.verifier_key


def test_a_cosignature_from_the_future_is_refused_when_opened_against_a_clock() -> None:
    data, log_key, witness = _checkpoint(NOW + TEN_YEARS)
    # without a clock, opening only reports the time
    assert open_checkpoint(data, log_key=log_key, witnesses=[witness]).cosignatures == {
        witness.name: NOW + TEN_YEARS
    }
    with pytest.raises(PolicyError) as e:
        open_checkpoint(data, log_key=log_key, witnesses=[witness], now=NOW)
    msg = _refused("future-time", e)
    assert "cosignature time of witness witness.example.gov.cn/hz-psb is 315360000 s ahead" in msg
    assert "(checkpoint of ledger.example.gov.cn/hz-amr at size 1)" in msg
    ok, _, _ = _checkpoint(NOW + CLOCK_SKEW)
    assert open_checkpoint(ok, log_key=log_key, witnesses=[witness], now=NOW).cosignatures
    proof = tlogproof.TlogProof(index=0, proof=(), checkpoint=data)
    with pytest.raises(PolicyError) as e:
        tlogproof.verify(proof, log_key=log_key, leaf_hash=bytes(32), witnesses=[witness], quorum=1, now=NOW)
    _refused("future-time", e)


def test_a_statement_dated_after_its_entry_was_witnessed_is_refused() -> None:
    p = make_policy()
    amr = p.require_member("hz-amr")
    kid = amr.log_key_id(amr.log_keys[0])
    assert p.log_key("hz-amr", kid, at=NOW + CLOCK_SKEW, witnessed_at=NOW) is amr.log_keys[0]
    with pytest.raises(PolicyError) as e:
        p.log_key("hz-amr", kid, at=NOW + TEN_YEARS, witnessed_at=NOW)
    assert "is 315360000 s after its entry was first witnessed" in _refused("future-time", e)


def test_a_revocation_is_judged_by_the_revoke_mandate_at_its_time() -> None:
    p = _withdrawn_policy()
    cid = str(
        CertId(type_code="11100000000013338W032", issuer_code="11330100002489657X", serial="1", version="001")
    )

    def revoke(issuer: str, at: int) -> Statement:
        return Statement(
            kind=Kind.REVOKE,
            issuer=issuer,
            cert_id=cid,
            cert_type="business_licence",
            time=at,
            operator="op:1",
            reason=Reason.HOLDER_REQUEST,
        )

    assert p.check_statement_mandate(revoke("hz-amr", WITHDRAWN - 1)).code == "business_licence"
    with pytest.raises(PolicyError) as e:
        p.check_statement_mandate(revoke("hz-amr", WITHDRAWN))
    assert "hz-amr may revoke business_licence only in statements made in" in _refused("mandate-validity", e)
    with pytest.raises(PolicyError) as e:
        p.check_statement_mandate(revoke("hz-psb", WITHDRAWN))  # may issue from then, not revoke
    _refused("mandate", e)


def test_changes_respect_the_bounds_and_earlier_windows() -> None:
    p = make_policy()
    later = apply_changes(p, [parse_change("issuers=business_licence:hz-amr,hz-psb")], now=WITHDRAWN)
    # hz-psb's mandate starts at WITHDRAWN: it cannot be withdrawn before it starts
    with pytest.raises(MalformedError, match=r"the mandate of hz-psb only starts at 2024-09-08T16:00:00Z"):
        apply_changes(
            later, [parse_change(f"issuers=business_licence:hz-amr@{format_time(T0)}")], now=WITHDRAWN
        )
    # a new version of an expired one: the expiry is applied first, whatever the order
    expired_at = p.expires + DAY
    v2 = apply_changes(p, [parse_change("freshness=3600"), parse_change("expires=+365d")], now=expired_at)
    assert (v2.issued, v2.expires, v2.freshness_seconds) == (expired_at, expired_at + YEAR, 3600)
    with pytest.raises(MalformedError, match="version 2 would already be expired"):
        apply_changes(p, [parse_change("freshness=3600")], now=expired_at)
    with pytest.raises(PolicyError) as e:
        apply_changes(p, [parse_change("expires=+400d")], now=T0)
    assert str(e.value).startswith("change expires=+400d: expiry-bound: version 2 expires at")
    assert e.value.rule == "expiry-bound"


def test_an_empty_walk_from_a_pinned_version_from_the_future_is_refused() -> None:
    later = dataclasses.replace(V1, issued=T0 + 10 * YEAR, expires=T0 + 11 * YEAR)
    with pytest.raises(PolicyError) as e:
        TrustedPolicy(sign(later, 0, 1)).walk([], now=NOW)
    assert "[the pinned version 1]" in _refused("future-time", e)
    assert TrustedPolicy(DOC1).walk([], now=NOW) == V1
