"""The attack suite: one named case per verdict code, on real logs, witnessed checkpoints
and a replica synced from tile copies."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.credential.credential import issue_credential
from ledger.credential.presentation import PREFIX, Presentation
from ledger.keys import SigningKey
from ledger.log.statement import Kind
from ledger.replica.fetch import Fetcher, HttpFetcher, mirror_prefix
from ledger.replica.store import ReplicaStore
from ledger.trust.policy import LogKey, Mandate, Policy, mandates
from tests.fixtures.consortium import (
    AMR,
    AMR_KEY,
    AMR_OLD_KEY,
    BUSINESS_LICENCE,
    HEALTH,
    HEALTH_CERTIFICATE,
    HEALTH_CLAIMS,
    POLICY,
    PSB,
    PSB_KEY,
    T0,
    issue_reference,
    policy,
)
from tests.helpers import issue
from tests.replica_fixtures import NOW, Net, licence, outside_mandate, status, sync
from verifier.core import verify
from verifier.verdict import Code, Verdict
from verifier.verifier import Verifier, node_sources


class CountingFetcher:
    """A source that counts what it was asked for."""

    def __init__(self, inner: Fetcher) -> None:
        self.inner = inner
        self.paths: list[str] = []

    @property
    def name(self) -> str:
        return self.inner.name

    def get(self, path: str, *, max_size: int) -> bytes:
        self.paths.append(path)
        return self.inner.get(path, max_size=max_size)


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    n = Net(tmp_path)
    n.append(AMR.id, [issue_reference().signed])
    for m in (AMR.id, HEALTH.id, PSB.id):
        n.publish(m)
    yield n
    n.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ReplicaStore]:
    s = ReplicaStore.open(tmp_path / "replica.db")
    yield s
    s.close()


def synced(store: ReplicaStore, net: Net, pol: Policy = POLICY) -> ReplicaStore:
    for m in (AMR.id, HEALTH.id, PSB.id):
        result = sync(store, net, m, policy=pol)
        assert result.ok, result.refused
    return store


def check(
    text: str | Presentation,
    store: ReplicaStore,
    *,
    pol: Policy = POLICY,
    now: int = NOW,
    purpose: str | None = None,
) -> Verdict:
    v = verify(text, policy=pol, replica_view=store, now=now, purpose=purpose)
    assert v.reason_zh and v.reason_en
    return v


def publish_all(net: Net, at: int = NOW - 60) -> None:
    for m in (AMR.id, HEALTH.id, PSB.id):
        net.publish(m, at=at)


# -- VALID ---------------------------------------------------------------------------


def test_valid_reference_licence_with_evidence(net: Net, store: ReplicaStore) -> None:
    v = check(issue_reference().to_qr_text(), synced(store, net))
    assert v.code == Code.VALID, v.reason_en
    assert v.verdict_class == "valid"
    assert v.issuer_id == AMR.id and v.issuer_name == AMR.name
    assert v.cert_type == BUSINESS_LICENCE.code and v.cert_type_name == "营业执照"
    assert v.cert_id == issue_reference().cert_id
    assert v.as_of == NOW - 60 and v.checked_at == NOW
    assert {c.name: c.label for c in v.claims}["uscc"] == "统一社会信用代码"
    assert v.evidence is not None
    assert v.evidence.entry_index == 0 and v.evidence.checkpoint_size == 1
    assert v.evidence.origin == AMR.origin
    assert set(v.evidence.cosigners) == {HEALTH.id, PSB.id}
    assert v.warnings == ()
    assert v.to_json()["code"] == "VALID"


def test_selective_disclosure_shows_only_what_was_disclosed(net: Net, store: ReplicaStore) -> None:
    text = issue_reference().to_qr_text(["uscc", "name"])
    v = check(text, synced(store, net), purpose="identity")
    assert v.code == Code.VALID
    assert [c.name for c in v.claims] == ["uscc", "name"]
    assert "address" in v.hidden


# -- REVOKED, SUSPENDED, REPLACED: status from every member's log ---------------------


def test_revoked_certificate_presented_again(net: Net, store: ReplicaStore) -> None:
    ref = issue_reference()
    net.append(AMR.id, [status(AMR.id, ref.cert_id, Kind.REVOKE, time=T0 + 7200)])
    publish_all(net)
    v = check(ref.to_qr_text(), synced(store, net))
    assert v.code == Code.REVOKED
    assert v.verdict_class == "invalid"
    assert "revoked by hangzhou-xihu-amr" in v.reason_en and "administrative penalty" in v.reason_en
    assert "已撤销" in v.reason_zh


def test_suspended_certificate(net: Net, store: ReplicaStore) -> None:
    ref = issue_reference()
    net.append(AMR.id, [status(AMR.id, ref.cert_id, Kind.SUSPEND, time=T0 + 7200)])
    publish_all(net)
    v = check(ref.to_qr_text(), synced(store, net))
    assert v.code == Code.SUSPENDED and "suspended by" in v.reason_en


def test_suspended_then_reinstated_is_valid(net: Net, store: ReplicaStore) -> None:
    ref = issue_reference()
    net.append(
        AMR.id,
        [
            status(AMR.id, ref.cert_id, Kind.SUSPEND, time=T0 + 7200),
            status(AMR.id, ref.cert_id, Kind.REINSTATE, time=T0 + 9000),
        ],
    )
    publish_all(net)
    v = check(ref.to_qr_text(), synced(store, net))
    assert v.code == Code.VALID, v.reason_en
    assert v.evidence is not None and v.evidence.checkpoint_size == 3


def test_reinstate_does_not_lift_a_revocation(net: Net, store: ReplicaStore) -> None:
    ref = issue_reference()
    net.append(
        AMR.id,
        [
            status(AMR.id, ref.cert_id, Kind.REVOKE, time=T0 + 7200),
            status(AMR.id, ref.cert_id, Kind.REINSTATE, time=T0 + 9000),
        ],
    )
    publish_all(net)
    assert check(ref.to_qr_text(), synced(store, net)).code == Code.REVOKED


def test_replaced_names_the_new_certificate(net: Net, store: ReplicaStore) -> None:
    ref = issue_reference()
    new = licence("2024000777", time=T0 + 7200, replaces=ref.cert_id)
    net.append(AMR.id, [new.signed])
    publish_all(net)
    synced(store, net)
    v = check(ref.to_qr_text(), store)
    assert v.code == Code.REPLACED
    assert v.replaced_by == new.cert_id and new.cert_id in v.reason_en
    assert check(new.to_qr_text(), store).code == Code.VALID


def test_revocation_by_member_without_revoke_mandate_is_ignored(net: Net, store: ReplicaStore) -> None:
    ref = issue_reference()
    net.append(PSB.id, [status(PSB.id, ref.cert_id, Kind.REVOKE, time=T0 + 7200)])
    publish_all(net)
    v = check(ref.to_qr_text(), synced(store, net))
    assert v.code == Code.VALID, v.reason_en
    assert any(
        "ignored the revoke in entry 0 of hangzhou-psb's log" in w and "mandate" in w for w in v.warnings
    )


def test_revocation_by_another_member_with_the_mandate_counts(net: Net, store: ReplicaStore) -> None:
    ref = issue_reference()
    widened = dataclasses.replace(BUSINESS_LICENCE, revokers=mandates(AMR.id, PSB.id))
    pol = policy(types=(widened, *POLICY.types[1:]))
    net.append(PSB.id, [status(PSB.id, ref.cert_id, Kind.REVOKE, time=T0 + 7200)])
    publish_all(net)
    v = check(ref.to_qr_text(), synced(store, net, pol), pol=pol)
    assert v.code == Code.REVOKED and "revoked by hangzhou-psb" in v.reason_en


def test_revocation_naming_another_type_does_not_count(net: Net, store: ReplicaStore) -> None:
    ref = issue_reference()
    net.append(
        AMR.id, [status(AMR.id, ref.cert_id, Kind.REVOKE, time=T0 + 7200, cert_type="food_business_permit")]
    )
    publish_all(net)
    v = check(ref.to_qr_text(), synced(store, net))
    assert v.code == Code.VALID
    assert any("names type food_business_permit" in w for w in v.warnings)


# -- EXPIRED, NOT_YET_VALID and the clock ----------------------------------------------


def test_expired(net: Net, store: ReplicaStore) -> None:
    c = licence("2024000101", valid_until=T0 + 12 * 3600)
    net.append(AMR.id, [c.signed])
    publish_all(net)
    v = check(c.to_qr_text(), synced(store, net))
    assert v.code == Code.EXPIRED and "expired at" in v.reason_en


def test_not_yet_valid(net: Net, store: ReplicaStore) -> None:
    c = licence("2024000102", valid_from=NOW + 10 * 86400)
    net.append(AMR.id, [c.signed])
    publish_all(net)
    v = check(c.to_qr_text(), synced(store, net))
    assert v.code == Code.NOT_YET_VALID and "not valid before" in v.reason_en


def test_clock_behind_the_replica_warns_instead_of_not_yet_valid(net: Net, store: ReplicaStore) -> None:
    c = licence("2024000103", time=NOW - 600, valid_from=NOW - 600)
    net.append(AMR.id, [c.signed])
    publish_all(net)
    synced(store, net)
    v = check(c.to_qr_text(), store, now=NOW - 60 - 6 * 3600)
    assert v.code == Code.VALID, v.reason_en
    assert v.checked_at == NOW - 60 - 6 * 3600
    assert any("clock is 6 h behind the newest witnessed time" in w for w in v.warnings)
    assert check(c.to_qr_text(), store).warnings == ()


# -- UNKNOWN_ISSUER, NOT_AUTHORISED, BAD_SIGNATURE, CLAIM_MISMATCH ----------------------


def test_unknown_issuer_key(net: Net, store: ReplicaStore) -> None:
    stranger = SigningKey.from_seed(b"s" * 32)
    fake = dataclasses.replace(AMR, log_keys=(LogKey(public_key=stranger.public_key, valid_from=0),))
    c = issue_credential(
        cert_type=BUSINESS_LICENCE,
        issuer=fake,
        key=stranger,
        serial="1",
        claims=dict(issue_reference().claims),
        operator="op:x",
        time=T0,
        valid_from=T0,
    )
    v = check(c.to_qr_text(), synced(store, net))
    assert v.code == Code.UNKNOWN_ISSUER and "unknown issuer" in v.reason_en
    assert v.issuer_id is None


def test_valid_signature_from_member_outside_its_mandate(net: Net, store: ReplicaStore) -> None:
    c = outside_mandate()
    net.append(PSB.id, [c.signed])
    publish_all(net)
    v = check(c.to_qr_text(), synced(store, net))
    assert v.code == Code.NOT_AUTHORISED
    assert "hangzhou-psb may not issue business_licence" in v.reason_en


def test_forged_signature(net: Net, store: ReplicaStore) -> None:
    p = issue_reference().present()
    forged = dataclasses.replace(p, signature=bytes([p.signature[0] ^ 1]) + p.signature[1:])
    v = check(forged.to_text(), synced(store, net))
    assert v.code == Code.BAD_SIGNATURE and "signature does not verify" in v.reason_en


def test_statement_time_altered_into_the_future_is_a_bad_signature(net: Net, store: ReplicaStore) -> None:
    """A forger's future time must not be blamed on this device's clock."""
    p = issue_reference().present()
    v = check(dataclasses.replace(p, time=NOW + 86400).to_text(), synced(store, net))
    assert v.code == Code.BAD_SIGNATURE and "signature does not verify" in v.reason_en
    assert "clock" not in v.reason_en


def test_altered_claim_value(net: Net, store: ReplicaStore) -> None:
    p = issue_reference().present(["uscc", "name"])
    values = dict(p.values)
    values[1] = "另一家公司"
    v = check(dataclasses.replace(p, values=values).to_text(), synced(store, net))
    assert v.code == Code.BAD_SIGNATURE


def test_purpose_claim_not_disclosed(net: Net, store: ReplicaStore) -> None:
    text = issue_reference().to_qr_text(["uscc", "name"])
    v = check(text, synced(store, net), purpose="contracting")
    assert v.code == Code.CLAIM_MISMATCH
    assert "legal_representative" in v.reason_en


def test_compromised_key_used_to_back_date_is_refused(tmp_path: Path, net: Net, store: ReplicaStore) -> None:
    compromised_at = NOW - 3600
    amr = dataclasses.replace(
        AMR,
        log_keys=(
            AMR.log_keys[0],
            dataclasses.replace(AMR.log_keys[1], compromised_at=compromised_at),
        ),
    )
    pol = policy(members=(amr, HEALTH, PSB))
    # the genuine licence was witnessed before the compromise
    net.publish(AMR.id, at=compromised_at - 600)
    for m in (HEALTH.id, PSB.id):
        net.publish(m, at=NOW - 60)
    synced(store, net, pol)
    # the thief signs a licence dated last week and logs it now
    backdated = licence("2024000666", time=T0 - 86400 * 7, valid_from=T0 - 86400 * 7)
    net.append(AMR.id, [backdated.signed])
    net.publish(AMR.id, at=NOW - 60)
    synced(store, net, pol)
    v = check(backdated.to_qr_text(), store, pol=pol)
    assert v.code == Code.BAD_SIGNATURE
    assert "key-compromised" in v.reason_en and "first witnessed at" in v.reason_en
    genuine = check(issue_reference().to_qr_text(), store, pol=pol)
    assert genuine.code == Code.VALID, genuine.reason_en


# -- NOT_IN_LEDGER, STALE, forks, MALFORMED --------------------------------------------


def test_absent_from_the_log_after_on_demand_sync(net: Net, store: ReplicaStore) -> None:
    synced(store, net)
    sources = {m: CountingFetcher(net.source(m)) for m in (AMR.id, HEALTH.id, PSB.id)}
    verifier = Verifier(policy=POLICY, store=store, sources=lambda m: [sources[m.id]], clock=lambda: NOW)
    never_logged = licence("2024000404")
    v = verifier.verify(never_logged.to_qr_text())
    assert v.code == Code.NOT_IN_LEDGER and v.verdict_class == "unsure"
    assert sources[AMR.id].paths == ["checkpoint"]
    assert any("synced hangzhou-xihu-amr's log on demand" in w for w in v.warnings)


def test_new_certificate_found_by_on_demand_sync(net: Net, store: ReplicaStore) -> None:
    synced(store, net)
    fresh = licence("2024000405", time=NOW - 30)
    net.append(AMR.id, [fresh.signed])
    net.publish(AMR.id)
    assert check(fresh.to_qr_text(), store).code == Code.NOT_IN_LEDGER
    verifier = Verifier(policy=POLICY, store=store, sources=lambda m: [net.source(m.id)], clock=lambda: NOW)
    v = verifier.verify(fresh.to_qr_text())
    assert v.code == Code.VALID, v.reason_en


def test_stale_replica_never_says_valid(net: Net, store: ReplicaStore) -> None:
    publish_all(net, at=NOW - 2 * 3600)
    v = check(issue_reference().to_qr_text(), synced(store, net))
    assert v.code == Code.STALE and v.verdict_class == "unsure"
    assert v.as_of == NOW - 2 * 3600
    assert "2 h old" in v.reason_en and "limit of 60 min" in v.reason_en
    assert "2 小时" in v.reason_zh


def test_expired_policy_never_says_valid(net: Net, store: ReplicaStore) -> None:
    synced(store, net)
    old = policy(expires=NOW - 1)
    v = check(issue_reference().to_qr_text(), store, pol=old)
    assert v.code == Code.STALE and "expired" in v.reason_en


def test_issuer_whose_log_forked_is_refused_with_the_alert(
    tmp_path: Path, net: Net, store: ReplicaStore
) -> None:
    synced(store, net)
    # the regulator shows this replica a second history of the same log
    other = Net(tmp_path / "split")
    other.append(AMR.id, [licence("2024000999").signed, issue_reference().signed])
    other.publish(AMR.id)
    result = sync(store, other, AMR.id)
    other.close()
    assert result.forked and not result.ok
    v = check(issue_reference().to_qr_text(), store)
    assert v.code == Code.STALE and v.verdict_class != "valid"
    assert "forked" in v.reason_en and "alert 1" in v.reason_en
    alert = store.alerts(AMR.id)[0]
    assert alert.kind == "fork" and alert.note_a == net.notes[AMR.id] and alert.note_b is not None
    assert alert.proof, "the failed consistency proof is kept"


def test_statement_forward_dated_past_a_mandate_start_is_not_authorised(
    net: Net, store: ReplicaStore
) -> None:
    # Health's issue mandate for licences starts at M; before M it logs (and gets
    # witnessed) a licence dated after M, hoping to be judged at the time it claims.
    m = NOW - 600
    ctype = dataclasses.replace(
        BUSINESS_LICENCE, issuers=(Mandate(member=AMR.id), Mandate(member=PSB.id, valid_from=m))
    )
    pol = policy(types=(ctype, *POLICY.types[1:]))
    early = issue_credential(
        cert_type=ctype,
        issuer=PSB,
        key=PSB_KEY,
        serial="900777",
        claims=dict(issue_reference().claims),
        operator="psb:op-1",
        time=m + 60,
        valid_from=T0,
        salt_secret=bytes(range(16)),
    )
    net.append(PSB.id, [early.signed])
    publish_all(net, at=NOW - 3000)  # witnessed 40 min before the mandate started
    v = check(early.to_qr_text(), synced(store, net, pol), pol=pol)
    assert v.code == Code.NOT_AUTHORISED, v.reason_en
    assert "dated after its entry was witnessed" in v.reason_en and "future-time" in v.reason_en
    assert "签发时间不可信" in v.reason_zh


def test_statement_dated_within_the_skew_of_its_witnessing_is_valid(net: Net, store: ReplicaStore) -> None:
    c = licence("2024000888", time=NOW - 3000 + 200, valid_from=T0)
    net.append(AMR.id, [c.signed])
    publish_all(net, at=NOW - 3000)
    assert check(c.to_qr_text(), synced(store, net)).code == Code.VALID


def test_revoker_whose_log_forked_makes_the_status_stale(
    tmp_path: Path, net: Net, store: ReplicaStore
) -> None:
    # PSB may revoke licences; it shows this replica a history without its revocation,
    # and a second history with it: the fork is evidence, and the status cannot be trusted.
    ref = issue_reference()
    pol = policy(
        types=(dataclasses.replace(BUSINESS_LICENCE, revokers=mandates(AMR.id, PSB.id)), *POLICY.types[1:])
    )
    net.append(PSB.id, [status(PSB.id, licence("2024000111").cert_id, Kind.SUSPEND, time=T0)])
    publish_all(net)
    synced(store, net, pol)
    assert check(ref.to_qr_text(), store, pol=pol).code == Code.VALID
    other = Net(tmp_path / "split", policy=pol)
    other.append(
        PSB.id,
        [
            status(PSB.id, licence("2024000112").cert_id, Kind.SUSPEND, time=T0),
            status(PSB.id, ref.cert_id, Kind.REVOKE, time=T0 + 7200),
        ],
    )
    other.publish(PSB.id)
    result = sync(store, other, PSB.id, policy=pol)
    other.close()
    assert result.forked and not result.ok
    v = check(ref.to_qr_text(), store, pol=pol)
    assert v.code == Code.STALE, v.reason_en
    assert "hangzhou-psb, which may revoke this certificate, forked" in v.reason_en
    assert "隐藏了撤销记录" in v.reason_zh
    assert any(w.startswith("alert 1:") for w in v.warnings)


def test_replacement_into_a_type_the_replacer_may_not_issue_does_not_count(
    net: Net, store: ReplicaStore
) -> None:
    ref = issue_reference()
    widened = dataclasses.replace(HEALTH_CERTIFICATE, issuers=mandates(HEALTH.id, AMR.id))
    bad = issue_credential(
        cert_type=widened,
        issuer=AMR,
        key=AMR_KEY,
        serial="5001",
        claims=dict(HEALTH_CLAIMS),
        operator="op:x",
        time=T0 + 7200,
        valid_from=T0,
        valid_until=T0 + 300 * 86400,
        replaces=ref.cert_id,
        salt_secret=bytes(16),
    )
    net.append(AMR.id, [bad.signed])
    publish_all(net)
    v = check(ref.to_qr_text(), synced(store, net))
    assert v.code == Code.VALID, v.reason_en
    assert v.replaced_by is None
    assert any(
        "ignored the replace in entry 1 of hangzhou-xihu-amr's log" in w and "health_certificate" in w
        for w in v.warnings
    )
    assert check(bad.to_qr_text(), store).code == Code.NOT_AUTHORISED


@pytest.mark.parametrize(("age", "code"), [(3000, Code.VALID), (2 * 3600, Code.STALE)])
def test_as_of_is_the_oldest_log_copy_the_verdict_rests_on(
    age: int, code: Code, net: Net, store: ReplicaStore
) -> None:
    pol = policy(
        types=(dataclasses.replace(BUSINESS_LICENCE, revokers=mandates(AMR.id, PSB.id)), *POLICY.types[1:])
    )
    for m in (AMR.id, HEALTH.id):
        net.publish(m, at=NOW - 60)
    net.publish(PSB.id, at=NOW - age)  # the revoker's copy: within the limit, then over it
    v = check(issue_reference().to_qr_text(), synced(store, net, pol), pol=pol)
    assert v.code == code and v.as_of == NOW - age


@pytest.mark.parametrize("ahead", [5, 200])
def test_witness_clock_a_little_ahead_raises_no_clock_warning(
    ahead: int, net: Net, store: ReplicaStore
) -> None:
    # Within the skew allowance a correct device clock is not told to set itself.
    publish_all(net, at=NOW + ahead)
    v = check(issue_reference().to_qr_text(), synced(store, net))
    assert v.code == Code.VALID and v.warnings == ()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        "HC1:NCFOXN%TS3DH",
        "CL2:ABC",
        PREFIX,
        PREFIX + "%%%",
        "https://example.gov.cn/",
        "CL1:" + "0" * 5000,
    ],
)
def test_text_that_is_not_a_certledger_code_is_malformed(text: str, net: Net, store: ReplicaStore) -> None:
    v = check(text, synced(store, net))
    assert v.code == Code.MALFORMED and v.verdict_class == "invalid"
    assert "不是有效的证照二维码" in v.reason_zh


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_text_yields_a_named_verdict(data: st.DataObject, net: Net, store: ReplicaStore) -> None:
    if not store.members():
        synced(store, net)
    good = issue_reference().to_qr_text()
    text = data.draw(
        st.one_of(
            st.text(max_size=200),
            st.integers(0, len(good)).map(lambda n: good[:n]),
            st.tuples(st.integers(len(PREFIX), len(good) - 1), st.characters(codec="ascii")).map(
                lambda t: good[: t[0]] + t[1] + good[t[0] + 1 :]
            ),
            st.text(alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:", max_size=300).map(
                lambda s: PREFIX + s
            ),
        )
    )
    v = verify(text, policy=POLICY, replica_view=store, now=NOW)
    assert isinstance(v.code, Code)
    assert v.code in (
        Code.VALID,
        Code.MALFORMED,
        Code.BAD_SIGNATURE,
        Code.CLAIM_MISMATCH,
        Code.UNKNOWN_ISSUER,
        # an altered key id, type or time that the policy refuses for that issuer
        # (key window, mandate) is judged before the signature, in the design's order
        Code.NOT_AUTHORISED,
    )
    assert (
        v.code != Code.VALID or text == good or Presentation.from_text(text) == Presentation.from_text(good)
    )


# -- working with every issuing node stopped -------------------------------------------


def _unreachable(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def test_verification_works_with_no_source_reachable(net: Net, store: ReplicaStore) -> None:
    synced(store, net)
    client = httpx.Client(transport=httpx.MockTransport(_unreachable))
    down = HttpFetcher(base_url="http://127.0.0.1:9/", client=client)
    verifier = Verifier(policy=POLICY, store=store, sources=lambda m: [down], clock=lambda: NOW)
    assert verifier.verify(issue_reference().to_qr_text()).code == Code.VALID
    missing = verifier.verify(licence("2024000406").to_qr_text())
    assert missing.code == Code.NOT_IN_LEDGER
    assert any("could not sync" in w and "connection refused" in w for w in missing.warnings)


def test_offline_verifier_opens_no_connection(net: Net, store: ReplicaStore) -> None:
    synced(store, net)
    verifier = Verifier(policy=POLICY, store=store, clock=lambda: NOW)
    assert verifier.offline
    assert verifier.verify(licence("2024000407").to_qr_text()).code == Code.NOT_IN_LEDGER
    assert verifier.verify(issue_reference().to_qr_text()).code == Code.VALID


def test_every_verdict_code_has_a_case() -> None:
    names = " ".join(n for n in globals() if n.startswith("test_"))
    covered = {
        Code.VALID: "valid_reference",
        Code.REVOKED: "revoked_certificate",
        Code.SUSPENDED: "suspended_certificate",
        Code.REPLACED: "replaced",
        Code.EXPIRED: "test_expired",
        Code.NOT_YET_VALID: "not_yet_valid",
        Code.UNKNOWN_ISSUER: "unknown_issuer",
        Code.NOT_AUTHORISED: "outside_its_mandate",
        Code.BAD_SIGNATURE: "forged_signature",
        Code.CLAIM_MISMATCH: "purpose_claim_not_disclosed",
        Code.NOT_IN_LEDGER: "absent_from_the_log",
        Code.STALE: "stale_replica",
        Code.MALFORMED: "is_malformed",
    }
    assert set(covered) == set(Code)
    for fragment in covered.values():
        assert fragment in names


def test_key_used_outside_its_validity_window(net: Net, store: ReplicaStore) -> None:
    # the regulator's retired key, still in a thief's hands, signs a licence after the rotation
    lenient = dataclasses.replace(AMR, log_keys=(dataclasses.replace(AMR.log_keys[0], valid_until=None),))
    c = issue_credential(
        cert_type=BUSINESS_LICENCE,
        issuer=lenient,
        key=AMR_OLD_KEY,
        serial="2024000555",
        claims=dict(issue_reference().claims),
        operator="op:x",
        time=T0,
        valid_from=T0,
    )
    v = check(c.to_qr_text(), synced(store, net))
    assert v.code == Code.BAD_SIGNATURE and "untrusted signing key" in v.reason_en
    assert "key-validity: log key" in v.reason_en and "not at the statement time" in v.reason_en


def test_unknown_purpose_is_a_claim_mismatch(net: Net, store: ReplicaStore) -> None:
    v = check(issue_reference().to_qr_text(), synced(store, net), purpose="fishing")
    assert v.code == Code.CLAIM_MISMATCH and "has no purpose 'fishing'" in v.reason_en


def test_back_dated_revocation_with_a_compromised_key_is_ignored(net: Net, store: ReplicaStore) -> None:
    compromised_at = NOW - 3600
    amr = dataclasses.replace(
        AMR, log_keys=(AMR.log_keys[0], dataclasses.replace(AMR.log_keys[1], compromised_at=compromised_at))
    )
    pol = policy(members=(amr, HEALTH, PSB))
    net.publish(AMR.id, at=compromised_at - 600)
    synced(store, net, pol)
    ref = issue_reference()
    # the thief revokes a competitor's licence, dated before the compromise, logged after it
    net.append(AMR.id, [status(AMR.id, ref.cert_id, Kind.REVOKE, time=compromised_at - 7200)])
    net.publish(AMR.id, at=NOW - 60)
    synced(store, net, pol)
    v = check(ref.to_qr_text(), store, pol=pol)
    assert v.code == Code.VALID, v.reason_en
    assert any("ignored the revoke" in w and "key-compromised" in w for w in v.warnings)


def test_issuer_node_down_any_mirror_will_do(net: Net, store: ReplicaStore, tmp_path: Path) -> None:
    # another department's node mirrors the regulator's log; the regulator's own node is down
    mirror = tmp_path / "health-node"
    for m in (AMR, HEALTH, PSB):
        net.copy_tiles(m.id, mirror / mirror_prefix(m.origin))
    client = httpx.Client(transport=httpx.MockTransport(_unreachable))
    sources = node_sources([AMR.base_url, str(mirror)], client=client)
    assert [s.name for s in sources(AMR)] == [AMR.base_url, f"directory {mirror / mirror_prefix(AMR.origin)}"]
    verifier = Verifier(policy=POLICY, store=store, sources=sources, clock=lambda: NOW)
    results = verifier.sync()
    assert all(r.ok for r in results)
    amr = results[0]
    assert amr.source is not None and str(mirror) in amr.source and "connection refused" in amr.refused[0]
    assert verifier.verify(issue_reference().to_qr_text()).code == Code.VALID


def test_stale_replica_heals_by_syncing_before_it_answers(net: Net, store: ReplicaStore) -> None:
    publish_all(net, at=NOW - 2 * 3600)
    synced(store, net)
    text = issue_reference().to_qr_text()
    assert check(text, store).code == Code.STALE
    publish_all(net)  # the witnesses cosigned again a minute ago
    verifier = Verifier(policy=POLICY, store=store, sources=lambda m: [net.source(m.id)], clock=lambda: NOW)
    v = verifier.verify(text)
    assert v.code == Code.VALID and v.as_of == NOW - 60


def test_concurrent_syncs_of_one_log_do_not_collide(net: Net, store: ReplicaStore) -> None:
    net.append(AMR.id, [issue(i) for i in range(300)])
    net.publish(AMR.id)
    verifier = Verifier(policy=POLICY, store=store, sources=lambda m: [net.source(m.id)], clock=lambda: NOW)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            verifier.sync(AMR.id)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.size(AMR.origin) == 301
