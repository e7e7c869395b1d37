"""Batch issuing: every credential checks out, lands in the log, and a bad request stops the batch."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ledger.credential.credential import Credential, issue_credential
from ledger.credential.issuing import IssueRequest, issue_credentials
from ledger.errors import MalformedError, PolicyError, SchemaError, SignatureError
from ledger.log.statement import Entry, SignedStatement
from ledger.log.store import LogStore
from ledger.trust.policy import Mandate
from tests.fixtures.consortium import AMR, AMR_KEY, BUSINESS_LICENCE, HEALTH, HEALTH_KEY, reference_licence

REF = reference_licence()
AT = REF["valid_from"] + 3600


def request(serial: int, **changes: object) -> IssueRequest:
    r = IssueRequest(
        cert_type=BUSINESS_LICENCE,
        serial=str(serial),
        claims=REF["claims"],
        operator="op:7f3a9c",
        valid_from=REF["valid_from"],
        valid_until=REF["valid_until"],
    )
    return dataclasses.replace(r, **changes)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> LogStore:
    s = LogStore.create(tmp_path / "amr.db", origin=AMR.origin)
    yield s  # type: ignore[misc]
    s.close()


def test_a_batch_is_issued_logged_and_each_credential_is_what_the_strict_reader_accepts(
    store: LogStore,
) -> None:
    store.append(
        issue_credential(
            cert_type=BUSINESS_LICENCE,
            issuer=AMR,
            key=AMR_KEY,
            serial="1",
            claims=REF["claims"],
            operator="op:1",
            time=AT,
            valid_from=REF["valid_from"],
        ).signed,
        key=AMR_KEY,
    )
    issued = issue_credentials(
        [request(10 + i) for i in range(5)], issuer=AMR, key=AMR_KEY, store=store, time=AT
    )
    assert [i.index for i in issued] == [1, 2, 3, 4, 5]
    for item in issued:
        cred = item.credential
        # the fast constructor skipped nothing a reader would check
        assert Credential.loads(cred.dumps()) == cred
        assert Entry.from_bytes(store.entry(item.index)).signed == cred.signed
        cred.signed.verify(AMR_KEY.public_key)
        assert cred.statement.time == AT
    # the same request through the one-by-one path gives the same statement and claims
    secret = bytes(range(16))
    [one] = issue_credentials(
        [request(99, salt_secret=secret)], issuer=AMR, key=AMR_KEY, store=store, time=AT
    )
    alone = issue_credential(
        cert_type=BUSINESS_LICENCE,
        issuer=AMR,
        key=AMR_KEY,
        serial="99",
        claims=REF["claims"],
        operator="op:7f3a9c",
        time=AT,
        valid_from=REF["valid_from"],
        valid_until=REF["valid_until"],
        salt_secret=secret,
    )
    assert one.credential == alone


def test_one_bad_request_stops_the_whole_batch_and_is_named(store: LogStore) -> None:
    bad = request(11, claims={**REF["claims"], "uscc": "lower-case"})
    with pytest.raises(SchemaError, match=r"request 1 \(serial 11\): claim 'uscc'"):
        issue_credentials([request(10), bad, request(12)], issuer=AMR, key=AMR_KEY, store=store, time=AT)
    assert store.size == 0


def test_a_batch_for_another_members_log_is_refused(store: LogStore) -> None:
    with pytest.raises(PolicyError, match=r"the log store is the log of .*, not of hangzhou-health"):
        issue_credentials([request(10)], issuer=HEALTH, key=HEALTH_KEY, store=store, time=AT)
    health_only = dataclasses.replace(BUSINESS_LICENCE, issuers=(Mandate(member=HEALTH.id),))
    with pytest.raises(PolicyError, match="mandate: hangzhou-xihu-amr may not issue business_licence") as e:
        issue_credentials(
            [request(10, cert_type=health_only)],
            issuer=AMR,
            key=AMR_KEY,
            store=store,
            time=AT,
        )
    assert e.value.rule == "mandate"  # kept through the batch's message
    assert store.size == 0


def test_requests_must_be_a_sequence_of_requests(store: LogStore) -> None:
    with pytest.raises(MalformedError, match="requests must be a sequence of IssueRequest"):
        issue_credentials(request(10), issuer=AMR, key=AMR_KEY, store=store)  # type: ignore[arg-type]
    with pytest.raises(MalformedError, match="request 0 is a dict, not an IssueRequest"):
        issue_credentials([{}], issuer=AMR, key=AMR_KEY, store=store)  # type: ignore[list-item]
    assert issue_credentials([], issuer=AMR, key=AMR_KEY, store=store) == []


def test_request_repr_hides_claims_and_secret() -> None:
    text = repr(request(10, salt_secret=bytes(16)))
    assert REF["claims"]["name"] not in text and "salt_secret" not in text


def test_append_still_verifies_a_signature_made_elsewhere(store: LogStore) -> None:
    # the skipped re-verification applies only to a statement signed here with the log's key
    [item] = issue_credentials([request(10)], issuer=AMR, key=AMR_KEY, store=store, time=AT)
    good = item.credential.signed
    forged = SignedStatement(statement_bytes=good.statement_bytes, key_id=good.key_id, signature=bytes(64))
    with pytest.raises(SignatureError, match="statement 0 of the batch: signature does not verify"):
        store.append(forged, key=AMR_KEY)
    # signed here, but by another key under this log's key ID: verified, and refused
    other = SignedStatement.sign(good.statement, key=HEALTH_KEY, key_id=good.key_id)
    assert not other.signed_here_by(AMR_KEY.public_key) and other.signed_here_by(HEALTH_KEY.public_key)
    with pytest.raises(SignatureError, match="signature does not verify"):
        store.append(other, key=AMR_KEY)
    # parsed copies of a statement signed here carry no mark
    copy = SignedStatement(statement_bytes=good.statement_bytes, key_id=good.key_id, signature=good.signature)
    assert good.signed_here_by(AMR_KEY.public_key) and not copy.signed_here_by(AMR_KEY.public_key)
    assert copy == good
    assert store.size == 1
