"""Small-order keys in every key input: refused with the rule named, so a forged signature never counts.

With the identity point as public key A, S = 0 and R = the identity satisfy [S]B = R + [h]A for
every message: a lax verifier accepts that "signature" on anything. These tests put such a key
into each way a key enters certledger and check that each refuses it.
"""

from __future__ import annotations

import base64
import dataclasses
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from certledger.cli import cli
from ledger.credential.presentation import verify_presentation
from ledger.errors import KeyFileError, MalformedError, SignatureError
from ledger.keys import SIG_TYPE_COSIGNATURE, SIG_TYPE_ED25519, PublicKey, VerifierKey, key_id
from ledger.log import note
from ledger.log.statement import statement_message
from ledger.trust import consortium
from ledger.trust.policy_doc import parse_document, render
from tests.fixtures.consortium import (
    AMR,
    AMR_KEY,
    BUSINESS_LICENCE,
    GOVERNANCE_KEY,
    POLICY,
    T0,
    issue_reference,
)

IDENTITY = (1).to_bytes(32, "little")  # y = 1: the identity point, order 1
ORDER_8 = bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")
NON_CANONICAL = (2**255 - 19 + 1).to_bytes(32, "little")  # the identity again, y = p + 1
FORGED_SIGNATURE = IDENTITY + bytes(32)  # R = identity, S = 0
SMALL_ORDER_RULE = "public key is a small-order point"

SPEC = Path(__file__).parent / "data" / "consortium-spec.toml"


def verifier_string(name: str, raw: bytes, sig_type: int = SIG_TYPE_ED25519) -> str:
    """The verifier-key string of a raw key, built by hand (VerifierKey refuses to make one)."""
    kid = key_id(name, sig_type, raw).hex()
    return f"{name}+{kid}+{base64.b64encode(bytes([sig_type]) + raw).decode()}"


def lax_key(raw: bytes) -> PublicKey:
    """A PublicKey that skipped the parse-time checks, as a bug or a pickle might produce."""
    key = object.__new__(PublicKey)
    key.raw = raw
    return key


def test_the_forgery_is_real_under_a_lax_verifier() -> None:
    """OpenSSL (the previous verifier) accepts the identity key's all-zero signature on any message."""
    for message in (b"certledger/statement/v1\nanything", b"policy version 2"):
        Ed25519PublicKey.from_public_bytes(IDENTITY).verify(FORGED_SIGNATURE, message)


def test_small_order_raw_key_is_refused() -> None:
    for raw in (IDENTITY, ORDER_8):
        with pytest.raises(MalformedError, match=f"^{SMALL_ORDER_RULE}$"):
            PublicKey(raw=raw)
    with pytest.raises(MalformedError, match=r"^public key is not canonically encoded \(y is not below p\)$"):
        PublicKey(raw=NON_CANONICAL)


def test_small_order_verifier_key_string_is_refused() -> None:
    text = verifier_string("gov.attacker.example", IDENTITY)
    assert text.startswith("gov.attacker.example+") and "+AQEAAAAA" in text
    with pytest.raises(MalformedError, match=f"^verifier key 'gov.attacker.example': {SMALL_ORDER_RULE}$"):
        VerifierKey.parse(text)
    cosig = verifier_string("witness.attacker.example", ORDER_8, SIG_TYPE_COSIGNATURE)
    with pytest.raises(MalformedError, match=SMALL_ORDER_RULE):
        VerifierKey.parse(cosig)


def test_even_a_key_that_skipped_parsing_verifies_no_forgery() -> None:
    """Defence in depth: the signature rules refuse R = identity whatever the key."""
    for raw in (IDENTITY, ORDER_8):
        key = lax_key(raw)
        assert not key.is_valid(FORGED_SIGNATURE, b"anything")
        with pytest.raises(SignatureError, match="its R is a small-order point"):
            key.verify(FORGED_SIGNATURE, b"anything")


def test_small_order_governance_key_added_by_a_proposal_is_refused(tmp_path: Path) -> None:
    """`consortium propose … add-governance-key=…+AQEAAAAA…` stops at the key, naming the rule."""
    out = tmp_path / "out"
    runner = CliRunner()
    r = runner.invoke(
        cli, ["consortium", "init", str(SPEC), "--out", str(out), "--now", "2025-01-01T00:00:00Z"]
    )
    assert r.exit_code == 0, r.output
    bad = verifier_string("gov.attacker.example.gov.cn", IDENTITY)
    v2 = tmp_path / "v2.note"
    args = ["consortium", "propose", "--current", str(out / "policy-v1.note"), f"add-governance-key={bad}"]
    r = runner.invoke(cli, [*args, "--out", str(v2), "--now", "2025-01-20T00:00:00Z"])
    assert r.exit_code == 1, r.output
    assert f"Error: change add-governance-key={bad}: verifier key 'gov.attacker.example.gov.cn': " in r.output
    assert SMALL_ORDER_RULE in r.output
    assert not v2.exists()
    # the same through the library, for each change that takes a key
    policy = parse_document((out / "policy-v1.note").read_bytes()).policy
    member = policy.members[0]
    for change in (
        f"add-governance-key={bad}",
        f"rotate-log-key={member.id}:{verifier_string(member.origin, ORDER_8)}",
        f"witness-key={member.id}:{verifier_string('w.example', IDENTITY, SIG_TYPE_COSIGNATURE)}",
    ):
        with pytest.raises(MalformedError, match=SMALL_ORDER_RULE):
            consortium.apply_changes(policy, [consortium.parse_change(change)], now=policy.issued)


def test_small_order_keys_in_a_consortium_spec_are_refused() -> None:
    """Spec files give keys as verifier strings or base64 of raw bytes: both refuse a small-order key."""
    b64 = base64.b64encode(IDENTITY).decode()
    for text in (b64, verifier_string(AMR.origin, IDENTITY)):
        table = {"id": "m", "name": "M", "origin": AMR.origin, "issuer_code": AMR.issuer_code}
        table |= {"base_url": "https://m.example/", "log_key": text}
        with pytest.raises(MalformedError, match=SMALL_ORDER_RULE):
            consortium.member_from_table(table, "members[0]", valid_from=T0)


def _policy_text_with_amr_log_key(raw: bytes) -> bytes:
    """The fixture policy with the market regulator's log key swapped for ``raw``, signed by governance."""
    text = render(POLICY)
    real = str(VerifierKey(name=AMR.origin, public_key=AMR_KEY.public_key))
    assert real in text
    text = text.replace(real, verifier_string(AMR.origin, raw))
    return note.sign(text, [note.Ed25519Signer(name="governance.example.gov.cn", key=GOVERNANCE_KEY)])


def test_small_order_member_log_key_in_a_policy_document_is_refused() -> None:
    """A governance-signed document whose member log key is small-order does not parse."""
    assert parse_document(_policy_text_with_amr_log_key(AMR_KEY.public_key.raw)).policy == POLICY
    doc = _policy_text_with_amr_log_key(IDENTITY)
    with pytest.raises(MalformedError, match=SMALL_ORDER_RULE) as e:
        parse_document(doc)
    assert AMR.origin in str(e.value)


def test_small_order_member_log_key_cannot_forge_a_certificate() -> None:
    """Forge a presentation under an identity log key: even a policy built around the parser refuses it."""
    real = issue_reference().present()
    verify_presentation(real, policy=POLICY, now=T0 + 86400)
    bad_key = dataclasses.replace(AMR.log_keys[-1], public_key=lax_key(IDENTITY))
    member = dataclasses.replace(AMR, log_keys=(*AMR.log_keys[:-1], bad_key))
    policy = dataclasses.replace(POLICY, members=(member, *POLICY.members[1:]))
    forged = dataclasses.replace(
        real,
        key_id=member.log_key_id(bad_key),
        signature=FORGED_SIGNATURE,
        values={**real.values, 2: "伪造的公司名称"},
    )
    statement = forged.statement(
        issuer=member.id, national_code=BUSINESS_LICENCE.national_code, issuer_code=member.issuer_code
    )
    # under the previous (OpenSSL) verifier this forged certificate's signature is valid
    Ed25519PublicKey.from_public_bytes(IDENTITY).verify(
        FORGED_SIGNATURE, statement_message(statement.to_bytes())
    )
    with pytest.raises(SignatureError, match="signature"):
        verify_presentation(forged, policy=policy, now=T0 + 86400)


def test_cli_key_inputs_refuse_small_order_keys(tmp_path: Path) -> None:
    """`log audit --key` takes a verifier-key string, a file of them, or a PEM public key: each refuses."""
    runner = CliRunner()
    db, key_file = tmp_path / "log.db", tmp_path / "k.pem"
    r = runner.invoke(
        cli, ["log", "init", str(db), "--origin", "log.example", "--key", str(key_file), "--generate-key"]
    )
    assert r.exit_code == 0, r.output
    text = verifier_string("log.example", IDENTITY)
    vk_file = tmp_path / "bad.pub"
    vk_file.write_text(f"{text}\n")
    pem = tmp_path / "bad-public.pem"
    pem.write_bytes(
        b"-----BEGIN PUBLIC KEY-----\n"
        + base64.encodebytes(bytes.fromhex("302a300506032b6570032100") + IDENTITY)
        + b"-----END PUBLIC KEY-----\n"
    )
    for arg, where in ((text, ""), (str(vk_file), f"{vk_file}, key 1: "), (str(pem), f"{pem}: ")):
        r = runner.invoke(cli, ["log", "audit", str(db), "--key", arg])
        assert r.exit_code == 1, r.output
        assert f"Error: {where}" in r.output and SMALL_ORDER_RULE in r.output, r.output


def test_pem_public_key_file_error_is_a_key_file_error(tmp_path: Path) -> None:
    from certledger.cli.log import load_public_keys

    pem = tmp_path / "bad.pem"
    der = Ed25519PublicKey.from_public_bytes(ORDER_8).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pem.write_bytes(der)
    os.chmod(pem, 0o644)
    with pytest.raises(KeyFileError, match=f"^{pem}: {SMALL_ORDER_RULE}$"):
        load_public_keys((str(pem),), origin="log.example")
