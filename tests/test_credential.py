import contextlib
import datetime as dt
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.credential.claims import claim_salt
from ledger.credential.credential import MAX_CREDENTIAL_FILE, Credential, issue_credential
from ledger.credential.presentation import check_presentation
from ledger.errors import (
    ClaimMismatchError,
    FileError,
    LedgerError,
    MalformedError,
    PolicyError,
    SchemaError,
    TooLargeError,
)
from ledger.log.statement import Kind, Reason
from ledger.trust.policy import LogKey
from tests.fixtures.consortium import (
    AMR,
    AMR_KEY,
    AMR_OLD_KEY,
    FOOD_CLAIMS,
    FOOD_PERMIT,
    HEALTH_KEY,
    POLICY,
    PSB,
    PSB_KEY,
    T0,
    all_credentials,
    issue_food_permit,
    issue_reference,
    midnight,
    reference_licence,
)


def _issue(**changes: Any) -> Credential:
    args: dict[str, Any] = {
        "cert_type": FOOD_PERMIT,
        "issuer": AMR,
        "key": AMR_KEY,
        "serial": "0007",
        "claims": FOOD_CLAIMS,
        "operator": "op:51c0de",
        "time": T0,
        "valid_from": T0,
        "valid_until": T0 + 365 * 86400,
    }
    args.update(changes)
    return issue_credential(**args)


def test_reference_licence_issues_with_its_eleven_claims() -> None:
    cred = issue_reference()
    ref = reference_licence()
    assert cred.cert_id == ref["cert_id"] and cred.cert_id.endswith(".M")
    assert ref["fixture_id"].endswith(".F")
    assert len(cred.schema) == 11
    stmt = cred.statement
    assert stmt.kind == Kind.ISSUE and stmt.issuer == AMR.id and stmt.cert_type == "business_licence"
    assert stmt.valid_from == T0 and stmt.valid_until is None
    assert stmt.claim_digests is not None and sorted(stmt.claim_digests) == list(range(11))
    assert cred.claims["established"] == dt.date(2021, 3, 15)
    assert cred.claims["name"] == "杭州云栖数字科技有限公司"
    cred.signed.verify(AMR_KEY.public_key)


def test_fresh_salt_secrets_are_random() -> None:
    a, b = issue_reference(salt_secret=None), issue_reference(salt_secret=None)
    assert a.salt_secret != b.salt_secret and len(a.salt_secret) == 16
    assert a.statement.claim_digests != b.statement.claim_digests


def test_optional_claims_may_be_left_out() -> None:
    claims = {k: v for k, v in FOOD_CLAIMS.items() if k != "seats"}
    cred = _issue(claims=claims)
    assert "seats" not in cred.claims and [s.name for s in cred.schema][-1] == "issue_date"
    assert cred.statement.claim_digests is not None and 8 not in cred.statement.claim_digests


def test_replace_statement() -> None:
    old = issue_food_permit()
    cred = _issue(cert_version="002", replaces=old.cert_id, reason=Reason.INFORMATION_CHANGED)
    assert cred.statement.kind == Kind.REPLACE
    assert cred.statement.replaces == old.cert_id and cred.cert_id != old.cert_id


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        (
            {"issuer": PSB, "key": PSB_KEY},
            PolicyError,
            "mandate: hangzhou-psb may not issue food_business_permit",
        ),
        ({"key": HEALTH_KEY}, PolicyError, "not one of hangzhou-xihu-amr's log keys"),
        ({"key": AMR_OLD_KEY}, PolicyError, "key-validity: the signing key of hangzhou-xihu-amr is valid in"),
        (
            {"valid_until": None},
            PolicyError,
            "max-validity: .* at most 1830 days; an open-ended one is refused",
        ),
        (
            {"valid_until": T0 + 1831 * 86400},
            PolicyError,
            "max-validity: .* valid for at most 1830 days, not",
        ),
        ({"claims": {**FOOD_CLAIMS, "colour": "red"}}, SchemaError, "has no claim 'colour'; its claims are"),
        (
            {"claims": {k: v for k, v in FOOD_CLAIMS.items() if k not in ("name", "address")}},
            SchemaError,
            "needs the claim\\(s\\) name, address",
        ),
        (
            {"claims": {**FOOD_CLAIMS, "issue_date": "20.3.2024"}},
            SchemaError,
            "claim 'issue_date' \\(签发日期\\)",
        ),
        ({"claims": {**FOOD_CLAIMS, "seats": "120"}}, SchemaError, "claim 'seats'.*expected an integer"),
        ({"claims": {**FOOD_CLAIMS, "licence_no": "jy1"}}, SchemaError, "upper-case letters"),
        (
            {"claims": {**FOOD_CLAIMS, "name": "店" * 101}},
            SchemaError,
            "101 characters is over the limit of 100",
        ),
        ({"salt_secret": b"short"}, SchemaError, "salt secret must be 16 bytes"),
        ({"serial": "12a"}, MalformedError, "serial '12a' is not well-formed"),
        ({"operator": "张三"}, MalformedError, "operator id"),
        ({"valid_until": T0}, MalformedError, "valid_until must be after valid_from"),
    ],
)
def test_issue_validation(changes: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        _issue(**changes)


def test_issue_refuses_a_compromised_key() -> None:
    compromised = LogKey(public_key=AMR_KEY.public_key, valid_from=0, compromised_at=T0 - 1)
    member = type(AMR)(**{**AMR.__dict__, "log_keys": (compromised,)})
    with pytest.raises(PolicyError, match="marked compromised"):
        _issue(issuer=member)


@pytest.mark.parametrize("code", ["business_licence", "food_business_permit", "health_certificate"])
def test_json_round_trip(code: str, tmp_path: Path) -> None:
    cred = all_credentials()[code]
    text = cred.dumps()
    assert Credential.loads(text) == cred
    assert Credential.loads(text.encode()) == cred
    obj = json.loads(text)
    assert obj["format"] == "certledger-credential" and obj["version"] == 1
    assert obj["statement"]["cert_id"] == cred.cert_id
    path = tmp_path / "cred.json"
    cred.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert Credential.load(path) == cred
    with pytest.raises(FileError, match=f"{path}: file exists; refusing to overwrite it with the credential"):
        cred.save(path)
    path.chmod(0o644)
    cred.save(path, overwrite=True)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert Credential.load(path) == cred


def test_json_is_readable() -> None:
    text = issue_reference().dumps()
    assert "杭州云栖数字科技有限公司" in text  # not \u-escaped
    obj = json.loads(text)
    assert obj["claims"]["established"] == "2021-03-15"
    assert obj["schema"][0] == {
        "key": 0,
        "name": "uscc",
        "label": "统一社会信用代码",
        "kind": "code",
        "required": True,
        "max_length": 18,
    }


def _noncanonical(b64: str) -> str:
    # 64 bytes end in "X?==": the character before the padding has 4 unused bits
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    assert b64.endswith("==")
    return b64[:-3] + alphabet[alphabet.index(b64[-3]) ^ 1] + "=="


def _mutated(change: Any) -> str:
    obj = json.loads(issue_reference().dumps())
    change(obj)
    return json.dumps(obj, ensure_ascii=False)


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (lambda o: o["claims"].update(name="另一家公司"), ClaimMismatchError, "claim 'name' does not match"),
        (lambda o: o["claims"].update(established="2021-03-16"), ClaimMismatchError, "'established'"),
        (lambda o: o.update(salt_secret="00" * 16), ClaimMismatchError, "does not match the digest"),
        (lambda o: o["claims"].pop("term"), SchemaError, "no value for \\['term'\\]"),
        (
            lambda o: o["claims"].update(extra="x"),
            SchemaError,
            "claim 'extra' is not in the credential's schema",
        ),
        (
            lambda o: o["statement"].update(operator="op:0"),
            MalformedError,
            "readable statement does not match",
        ),
        (lambda o: o.update(version=2), MalformedError, "unknown version 2"),
        (lambda o: o.update(format="x"), MalformedError, "format must be"),
        (lambda o: o.update(note="hi"), MalformedError, "credential: unknown note"),
        (lambda o: o.pop("schema"), MalformedError, "credential: missing schema"),
        (lambda o: o["signed"].update(key_id="ABCDEF01"), MalformedError, "lower-case hex"),
        (lambda o: o["signed"].update(signature="@@"), MalformedError, "not valid base64"),
        (
            lambda o: o["signed"].update(signature=_noncanonical(o["signed"]["signature"])),
            MalformedError,
            "canonical",
        ),
        (lambda o: o["schema"][0].update(kind="colour"), SchemaError, "kind must be one of"),
        (lambda o: o["schema"][0].update(key=True), MalformedError, "key and max_length must be integers"),
        (lambda o: o["schema"].append(o["schema"][0]), SchemaError, "must be unique"),
        (lambda o: o.update(schema={}), MalformedError, "schema must be a list"),
    ],
)
def test_strict_loading(change: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        Credential.loads(_mutated(change))


def test_loading_rejects_bad_json() -> None:
    good = issue_reference().dumps()
    with pytest.raises(MalformedError, match="duplicate JSON key 'format'"):
        Credential.loads('{"format": 1, "format": 2}')
    with pytest.raises(MalformedError, match="NaN is not allowed"):
        Credential.loads('{"x": NaN}')
    with pytest.raises(MalformedError, match="not valid JSON"):
        Credential.loads(good[:-20])
    with pytest.raises(MalformedError, match="credential: not valid UTF-8 \\(byte offset 0\\)"):
        Credential.loads(b"\xff" + good.encode())
    with pytest.raises(TooLargeError, match="over the"):
        Credential.loads(" " * (MAX_CREDENTIAL_FILE + 1))
    with pytest.raises(TooLargeError, match="credential: JSON is nested deeper than 4 levels"):
        Credential.loads("[" * 100_000)
    with pytest.raises(TooLargeError, match="credential: JSON is nested deeper than 4 levels"):
        Credential.loads(_mutated(lambda o: o.update(salt_secret=[[[["00"]]]])))  # 5 levels
    with pytest.raises(MalformedError, match=r"credential: numbers must be integers, not '1\.5'"):
        Credential.loads('{"version": 1.5}')
    with pytest.raises(MalformedError, match="credential must be a JSON object"):
        Credential.loads("[]")


def test_load_reports_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileError, match=r"missing\.json: cannot read the credential: No such file"):
        Credential.load(tmp_path / "missing.json")
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (MAX_CREDENTIAL_FILE + 1))
    with pytest.raises(TooLargeError, match=rf"{big}: the credential is larger than the 262144-byte limit"):
        Credential.load(big)
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(MalformedError, match=f"{bad}: credential: missing"):
        Credential.load(bad)


def test_credential_checks_its_own_consistency() -> None:
    cred = issue_reference()
    with pytest.raises(ClaimMismatchError, match="claim 'name' does not match"):
        Credential(
            signed=cred.signed,
            schema=cred.schema,
            claims={**cred.claims, "name": "x"},
            salt_secret=cred.salt_secret,
        )
    with pytest.raises(ClaimMismatchError, match="schema's claim keys are not those of the statement"):
        Credential(
            signed=cred.signed,
            schema=cred.schema[:-1],
            claims={k: v for k, v in cred.claims.items() if k != "issue_date"},
            salt_secret=cred.salt_secret,
        )


def test_reveal_errors() -> None:
    cred = issue_reference()
    with pytest.raises(SchemaError, match="no claim 'licence_no'; its claims are uscc, name"):
        cred.present(["name", "licence_no"])
    with pytest.raises(SchemaError, match="not one string"):
        cred.present("name")


def test_selective_presentation_carries_derived_salts_only() -> None:
    cred = issue_reference()
    p = cred.present(["name", "uscc", "address"])
    assert not p.full and p.secret is None
    assert p.salts == {k: claim_salt(cred.salt_secret, k) for k in (0, 1, 7)}
    assert p.digests is not None and sorted(p.digests) == [2, 3, 4, 5, 6, 8, 9, 10]
    assert cred.present(["name"] + [s.name for s in cred.schema]).full


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@given(_JSON)
def test_random_json_raises_only_ledger_errors(obj: Any) -> None:
    with contextlib.suppress(LedgerError):
        Credential.loads(json.dumps(obj))


_GOOD = issue_reference().dumps()


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=150)
@given(st.integers(0, len(_GOOD) - 1), st.characters(codec="utf-8"))
def test_mutated_json_is_rejected_or_unchanged(position: int, ch: str) -> None:
    text = _GOOD[:position] + ch + _GOOD[position + 1 :]
    try:
        cred = Credential.loads(text)
        # the signature is checked by whoever trusts the issuer's key
        check_presentation(cred.to_qr_text(), policy=POLICY, now=T0)
    except LedgerError:
        return
    # e.g. whitespace, or a schema label: the file's labels, "required" and max_length
    # are copies for the holder; verifiers use the trust policy's
    good = Credential.loads(_GOOD)
    assert (cred.signed, cred.claims, cred.salt_secret) == (good.signed, good.claims, good.salt_secret)
    assert [(c.key, c.name, c.kind) for c in cred.schema] == [(c.key, c.name, c.kind) for c in good.schema]


def test_validity_of_fixture_times() -> None:
    assert midnight("2024-06-01") == T0
