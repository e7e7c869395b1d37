"""The policy update rules (TUF root rules) over signed documents."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import LedgerError, MalformedError, PolicyError, TooLargeError
from ledger.keys import VerifierKey
from ledger.log import note
from ledger.trust.policy import Policy
from ledger.trust.policy_doc import MAX_DOCUMENT_SIZE, MAX_SIGNATURES, add_signature, parse_document, render
from ledger.trust.trust import MAX_CHAIN, TrustedPolicy, signed_by, verify_chain
from tests.policy_fixtures import (
    DAY,
    T0,
    YEAR,
    gov_key,
    gov_name,
    gov_verifier,
    make_chain,
    make_policy,
    sign,
)

NOW = T0 + DAY
V1 = make_policy()
DOC1 = sign(V1, 0, 1)


def _next(p: Policy, **changes: object) -> Policy:
    return dataclasses.replace(p, version=p.version + 1, **changes)  # type: ignore[arg-type]


def _rule(e: pytest.ExceptionInfo[PolicyError], rule: str) -> str:
    assert e.value.rule == rule
    assert str(e.value).startswith(rule + ": ")
    return str(e.value)


def test_pinned_needs_its_own_threshold() -> None:
    t = TrustedPolicy(DOC1)
    assert t.version == 1 and t.policy == V1 and t.document == DOC1
    assert t.current(now=NOW) == V1
    with pytest.raises(PolicyError) as e:
        TrustedPolicy(sign(V1, 0, 7))
    msg = _rule(e, "own-threshold")
    assert "version 1 is signed by 1/3 of its own governance keys (gov-0.consortium.example.gov.cn)" in msg
    assert "threshold 2; not counted: signatures by gov-7.consortium.example.gov.cn+" in msg
    with pytest.raises(PolicyError, match=r"signed by 0/3 of its own governance keys; threshold 2"):
        TrustedPolicy(sign(V1, 5))


def test_update_happy_path_and_key_rotation() -> None:
    t = TrustedPolicy(DOC1)
    v2 = _next(V1, governance_keys=tuple(gov_verifier(n) for n in (1, 2, 3)))
    assert t.update(sign(v2, 0, 1, 3), now=NOW) == v2
    assert t.version == 2
    # version 3 must now satisfy version 2's keys (1, 2, 3), not version 1's
    v3 = _next(v2)
    with pytest.raises(PolicyError) as e:
        t.update(sign(v3, 0, 1), now=NOW)
    assert "signed by 1/3 of version 2's governance keys" in _rule(e, "old-threshold")
    assert t.update(sign(v3, 2, 3), now=NOW) == v3


def test_rollback() -> None:
    t = TrustedPolicy(DOC1)
    v2 = _next(V1)
    v3 = _next(v2)
    t.walk([sign(v2, 0, 1), sign(v3, 0, 1)], now=NOW)
    for older in (DOC1, sign(v2, 0, 1), sign(v3, 1, 2)):
        with pytest.raises(PolicyError) as e:
            t.update(older, now=NOW)
        assert "not newer than the trusted version 3" in _rule(e, "rollback")
    assert t.version == 3


def test_skipped_version() -> None:
    t = TrustedPolicy(DOC1)
    v3 = dataclasses.replace(V1, version=3)
    with pytest.raises(PolicyError) as e:
        t.update(sign(v3, 0, 1, 2), now=NOW)
    assert "version 3, but only version 2 can follow the trusted version 1" in _rule(e, "skipped-version")
    assert t.version == 1


def test_expired_newest_version_is_refused() -> None:
    t = TrustedPolicy(DOC1)
    v2 = _next(V1, expires=NOW)
    with pytest.raises(PolicyError) as e:
        t.update(sign(v2, 0, 1), now=NOW)
    msg = _rule(e, "expired")
    assert "the newest version, 2, expired at" in msg and "still trusting version 1" in msg
    assert t.version == 1  # nothing changed
    # a frozen verifier is told so too
    with pytest.raises(PolicyError, match="expired: policy version 1 expired at 2025-05-31T16:00:00Z"):
        t.current(now=V1.expires)


def test_expiry_is_checked_only_for_the_last_version_of_a_walk() -> None:
    v2 = _next(V1, expires=NOW - 1)  # expired, but superseded within the walk
    v3 = _next(v2, expires=NOW + YEAR)
    assert verify_chain(DOC1, [sign(v2, 0, 1), sign(v3, 0, 1)], now=NOW) == v3
    with pytest.raises(PolicyError, match="expired: the newest version, 2"):
        verify_chain(DOC1, [sign(v2, 0, 1)], now=NOW)
    # an expired pinned version may still be walked forward
    old = sign(dataclasses.replace(V1, expires=NOW - 1), 0, 1)
    assert TrustedPolicy(old).update(sign(_next(V1), 0, 1), now=NOW).version == 2


def test_too_few_signatures_from_the_old_keys() -> None:
    v2 = _next(V1, governance_keys=tuple(gov_verifier(n) for n in (3, 4, 5)))
    with pytest.raises(PolicyError) as e:
        TrustedPolicy(DOC1).update(sign(v2, 0, 3, 4), now=NOW)
    msg = _rule(e, "old-threshold")
    assert (
        "version 2 is signed by 1/3 of version 1's governance keys (gov-0.consortium.example.gov.cn)" in msg
    )
    assert "threshold 2" in msg


def test_too_few_signatures_from_the_new_keys() -> None:
    v2 = _next(V1, governance_keys=tuple(gov_verifier(n) for n in (0, 3, 4)))
    with pytest.raises(PolicyError) as e:
        TrustedPolicy(DOC1).update(sign(v2, 0, 1, 2), now=NOW)
    assert "version 2 is signed by 1/3 of its own governance keys (gov-0" in _rule(e, "own-threshold")
    v2_higher = _next(V1, governance_threshold=3)
    with pytest.raises(
        PolicyError, match=r"own-threshold: .* 2/3 of its own governance keys .*; threshold 3"
    ):
        TrustedPolicy(DOC1).update(sign(v2_higher, 0, 1), now=NOW)


def _duplicate_first_signature(doc: bytes) -> bytes:
    first = note.parse(doc).signatures[0]
    return doc + first.to_line().encode()


def test_the_same_key_signing_twice_counts_once() -> None:
    twice = _duplicate_first_signature(sign(V1, 0))
    assert len(parse_document(twice).signatures) == 2
    with pytest.raises(PolicyError) as e:
        TrustedPolicy(twice)
    assert "signed by 1/3 of its own governance keys (gov-0" in _rule(e, "own-threshold")
    v2 = _next(V1)
    with pytest.raises(PolicyError) as e:
        TrustedPolicy(DOC1).update(_duplicate_first_signature(sign(v2, 0)), now=NOW)
    assert "signed by 1/3 of version 1's governance keys" in _rule(e, "old-threshold")


def test_one_key_under_two_names_counts_once() -> None:
    renamed = VerifierKey(name="renamed.example", public_key=gov_key(0).public_key)
    with pytest.raises(PolicyError, match="key-reuse: one public key is both the governance key gov-0"):
        _next(V1, governance_keys=(*V1.governance_keys, renamed))
    # renaming a key between versions: it signs under both names, and counts once in each
    v2 = _next(V1, governance_keys=(renamed, gov_verifier(1), gov_verifier(2)), governance_threshold=2)
    both_names = sign(v2, 0)
    both_names = note.add_signatures(both_names, [note.Ed25519Signer(name="renamed.example", key=gov_key(0))])
    with pytest.raises(PolicyError, match=r"old-threshold: version 2 is signed by 1/3 of version 1's"):
        TrustedPolicy(DOC1).update(both_names, now=NOW)
    doc = parse_document(both_names)
    assert signed_by(doc, V1.governance_keys) == (gov_verifier(0),)
    assert signed_by(doc, v2.governance_keys) == (renamed,)
    good = add_signature(both_names, gov_name(1), gov_key(1))
    assert TrustedPolicy(DOC1).update(good, now=NOW) == v2


def test_a_signature_by_a_removed_key_does_not_count() -> None:
    t = TrustedPolicy(DOC1)
    v2 = _next(V1, governance_keys=(gov_verifier(0), gov_verifier(1)))
    t.update(sign(v2, 0, 1, 2), now=NOW)  # key 2 still counts for version 1's threshold here
    v3 = _next(v2)
    with pytest.raises(PolicyError) as e:
        t.update(sign(v3, 0, 2), now=NOW)
    msg = _rule(e, "old-threshold")
    assert "version 3 is signed by 1/2 of version 2's governance keys (gov-0" in msg
    assert "not counted: signatures by gov-2.consortium.example.gov.cn+" in msg


def test_tampered_document() -> None:
    v2 = _next(V1)
    doc = sign(v2, 0, 1)
    tampered = doc.replace("杭州市公安局".encode(), "杭州市公安厅".encode())
    assert tampered != doc
    with pytest.raises(PolicyError) as e:
        TrustedPolicy(DOC1).update(tampered, now=NOW)
    msg = _rule(e, "bad-signature")
    assert "invalid signature by trusted key gov-0" in msg and "changed after it was signed" in msg
    # tampering that breaks the canonical form is caught before any signature
    spaced = doc.replace(b'"version": 2,', b'"version":  2,')
    with pytest.raises(MalformedError, match="not in canonical form"):
        TrustedPolicy(DOC1).update(spaced, now=NOW)
    # a damaged signature by a governance key rejects the document even if others suffice
    three = sign(v2, 0, 1, 2)
    lines = three.split(b"\n")
    lines[-2] = lines[-2][:-6] + (b"AAAAA=" if not lines[-2].endswith(b"AAAAA=") else b"BBBBB=")
    with pytest.raises(PolicyError, match="bad-signature: version 2: invalid signature by trusted key gov-2"):
        TrustedPolicy(DOC1).update(b"\n".join(lines), now=NOW)


def test_oversized_document_and_too_many_signatures() -> None:
    huge = DOC1 + b"x" * MAX_DOCUMENT_SIZE
    with pytest.raises(TooLargeError, match="over the 1048576-byte limit"):
        TrustedPolicy(huge)
    with pytest.raises(TooLargeError, match="over the 1048576-byte limit"):
        TrustedPolicy(DOC1).update(huge, now=NOW)
    many = sign(V1, 0, 1)
    sig = note.parse(many).signatures[0]
    many += b"".join(
        note.Signature(name=f"extra-{i}", key_id=sig.key_id, data=sig.data).to_line().encode()
        for i in range(MAX_SIGNATURES - 1)
    )
    with pytest.raises(TooLargeError, match=f"65 signatures; at most {MAX_SIGNATURES}"):
        TrustedPolicy(many)
    with pytest.raises(TooLargeError, match="already carries 64 signatures"):
        add_signature(many.rsplit(b"\n", 2)[0] + b"\n", gov_name(2), gov_key(2))


def test_unsigned_text_is_not_a_document() -> None:
    with pytest.raises(MalformedError, match="policy document: note has no blank line"):
        TrustedPolicy(render(V1).encode())


CHAIN_POLICIES, CHAIN = make_chain(50)


def test_chain_of_50_versions_with_rotations_from_version_1() -> None:
    assert CHAIN_POLICIES[-1].governance_keys[0] == gov_verifier(49)
    assert len(CHAIN_POLICIES[-1].members[0].log_keys) == 50
    t = TrustedPolicy(CHAIN[0])
    assert t.walk(CHAIN[1:], now=NOW) == CHAIN_POLICIES[-1]
    assert t.version == 50 and t.document == CHAIN[-1]
    assert not set(CHAIN_POLICIES[0].governance_keys) & set(t.policy.governance_keys)


def test_verifier_pinned_at_version_20_walks_to_the_newest() -> None:
    t = TrustedPolicy(CHAIN[19])
    assert t.version == 20
    assert t.walk(CHAIN[20:], now=NOW).version == 50
    # one step at a time works too
    t2 = TrustedPolicy(CHAIN[19])
    for doc in CHAIN[20:]:
        t2.update(doc, now=NOW)
    assert t2.document == CHAIN[-1]


def test_a_walk_is_all_or_nothing_and_says_how_far_it_got() -> None:
    t = TrustedPolicy(CHAIN[0])
    docs = list(CHAIN[1:10])
    docs[5] = sign(CHAIN_POLICIES[6], 1, 2)  # version 7 signed by keys version 6 no longer has
    with pytest.raises(PolicyError) as e:
        t.walk(docs, now=NOW)
    msg = _rule(e, "old-threshold")
    assert "version 7 is signed by 0/3 of version 6's governance keys" in msg
    assert "[document 6 of 9; the chain verified from version 1 to 6; still trusting version 1]" in msg
    assert t.version == 1
    with pytest.raises(
        PolicyError, match=r"rollback: .*\[document 2 of 2; the chain verified from version 1 to 2;"
    ):
        t.walk([CHAIN[1], CHAIN[1]], now=NOW)
    with pytest.raises(
        MalformedError, match=r"policy document: .*\[document 1 of 1; still trusting version 1\]"
    ):
        t.walk([b"junk"], now=NOW)


def test_chain_length_cap() -> None:
    t = TrustedPolicy(DOC1)
    with pytest.raises(PolicyError) as e:
        t.walk([b""] * (MAX_CHAIN + 1), now=NOW)
    assert f"{MAX_CHAIN + 1} documents in one update; at most {MAX_CHAIN}" in _rule(e, "chain-too-long")


def test_now_must_be_a_time() -> None:
    with pytest.raises(MalformedError, match="now must be Unix seconds"):
        TrustedPolicy(DOC1).walk([], now=-1)


# -- hostile documents ----------------------------------------------------------------


def _own_errors_only(data: bytes) -> int:
    """Try ``data`` as a pinned document and as the next version; only our errors may
    come out. Returns the version trusted afterwards."""
    with contextlib.suppress(LedgerError):
        TrustedPolicy(data)
    t = TrustedPolicy(DOC1)
    with contextlib.suppress(LedgerError):
        t.update(data, now=NOW)
    return t.version


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=4096))
def test_random_bytes(data: bytes) -> None:
    assert _own_errors_only(data) == 1


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=len(CHAIN[1])))
def test_truncated_documents(n: int) -> None:
    doc = CHAIN[1]
    got = _own_errors_only(doc[:n])
    if n == len(doc):
        assert got == 2
    elif got == 2:
        # Cut right after a whole signature line: a note with fewer signatures, still
        # valid when the remaining ones meet both thresholds. Nothing else may pass.
        assert n > doc.rindex(b"\n\n") + 2 and doc[:n].endswith(b"\n")
    else:
        assert got == 1


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=len(DOC1) - 1), st.integers(min_value=1, max_value=255))
def test_flipped_bytes(pos: int, xor: int) -> None:
    data = bytearray(sign(_next(V1), 0, 1))
    data[pos] ^= xor
    with pytest.raises(LedgerError):
        TrustedPolicy(DOC1).update(bytes(data), now=NOW)


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=1, max_value=200_000))
def test_deeply_nested(depth: int) -> None:
    text = "certledger/policy/v1\n" + "[" * depth + "]" * depth + "\n"
    data = text.encode() + b"\n\xe2\x80\x94 gov-0 " + b"AAAA" * 20 + b"\n"
    with pytest.raises((MalformedError, TooLargeError)):
        TrustedPolicy(data)


def test_docs_example_is_what_the_code_produces() -> None:
    from pathlib import Path

    from tests.policy_fixtures import docs_example

    text = (Path(__file__).resolve().parent.parent / "docs" / "trust-policy.md").read_text(encoding="utf-8")
    block = text.split("<!-- example:begin -->\n```text\n", 1)[1].split("```\n<!-- example:end -->", 1)[0]
    assert block.encode() == docs_example()
    assert TrustedPolicy(block.encode()).version == 1


@settings(max_examples=20, deadline=None)
@given(
    st.integers(min_value=1, max_value=3 * MAX_DOCUMENT_SIZE),
    st.sampled_from([b"x", b"\n", b"[", b"\xe2\x80\x94 ", b"\x00"]),
)
def test_huge_documents(extra: int, filler: bytes) -> None:
    data = (DOC1 + filler * (MAX_DOCUMENT_SIZE // len(filler) + extra))[: MAX_DOCUMENT_SIZE + extra]
    assert len(data) > MAX_DOCUMENT_SIZE
    with pytest.raises(TooLargeError, match="byte limit"):
        TrustedPolicy(data)
    with pytest.raises(TooLargeError, match="byte limit"):
        TrustedPolicy(DOC1).update(data, now=NOW)
