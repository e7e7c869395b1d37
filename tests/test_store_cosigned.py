"""Checkpoints kept with their witness cosignatures, and proofs that carry them."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from certledger.cli import cli
from ledger.errors import (
    AuditError,
    ConflictError,
    LedgerError,
    MalformedError,
    PolicyError,
    SignatureError,
    StorageError,
)
from ledger.keys import SigningKey, VerifierKey
from ledger.log import note, tlogproof
from ledger.log.audit import audit
from ledger.log.checkpoint import Checkpoint, CosignatureSigner, cosign, open_checkpoint, sign_checkpoint
from ledger.log.store import LogStore
from tests.helpers import issue, mutate
from tests.policy_fixtures import log_signing_key, make_policy, origin, witness_signing_key

LOG = "hz-amr"
ORIGIN = origin(LOG)
POLICY = make_policy()


def _witness(member_id: str) -> tuple[CosignatureSigner, VerifierKey]:
    vk = POLICY.require_member(member_id).witness_key
    return CosignatureSigner(name=vk.name, key=witness_signing_key(member_id)), vk


def _log_vkey() -> VerifierKey:
    return VerifierKey(name=ORIGIN, public_key=log_signing_key(LOG).public_key)


def _witness_keys() -> list[VerifierKey]:
    return list(POLICY.witness_keys(LOG).values())


def _quorum(data: bytes) -> None:
    """The policy's check, as a verifier runs it: the log's signature, then the quorum."""
    opened = open_checkpoint(data, log_key=_log_vkey(), witnesses=_witness_keys())
    by_name = {k.name: mid for mid, k in POLICY.witness_keys(LOG).items()}
    POLICY.check_quorum(LOG, [by_name[n] for n in opened.cosignatures])


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LogStore]:
    s = LogStore.create(tmp_path / "log.db", origin=ORIGIN)
    s.append([issue(i) for i in range(12)], key=log_signing_key(LOG))
    s.checkpoint(log_signing_key(LOG))
    yield s
    s.close()


def test_cosignatures_are_kept_with_their_checkpoint(store: LogStore) -> None:
    signed = store.checkpoint(log_signing_key(LOG))
    psb, _ = _witness("hz-psb")
    health, _ = _witness("hz-health")
    by_psb = cosign(signed, psb, timestamp=100)
    merged = store.add_cosignatures(by_psb, witnesses=_witness_keys())
    assert merged == by_psb
    by_health = cosign(signed, health, timestamp=101)
    merged = store.add_cosignatures(by_health, witnesses=_witness_keys())
    parsed = note.parse(merged)
    assert [s.name for s in parsed.signatures] == [ORIGIN, psb.name, health.name]
    assert merged.startswith(signed[: signed.index(b"\n\n") + 2])
    cp = store.latest_checkpoint()
    assert cp is not None and cp.note == signed and cp.cosigned_note == merged and cp.full_note == merged
    at = store.checkpoint_at(12)
    assert at is not None and at.cosigned_note == merged
    assert [c.cosigned_note for c in store.checkpoints()] == [merged]
    assert store.add_cosignatures(by_psb, witnesses=_witness_keys()) == merged  # already kept: no change
    opened = open_checkpoint(merged, log_key=_log_vkey(), witnesses=_witness_keys())
    assert dict(opened.cosignatures) == {psb.name: 100, health.name: 101}
    newer = cosign(signed, psb, timestamp=200)
    merged = store.add_cosignatures(newer, witnesses=_witness_keys())
    opened = open_checkpoint(merged, log_key=_log_vkey(), witnesses=_witness_keys())
    assert dict(opened.cosignatures) == {psb.name: 200, health.name: 101}
    assert len(note.parse(merged).signatures) == 3
    assert store.checkpoint(log_signing_key(LOG)) == signed  # signing again: the log's own note


def test_cosignatures_for_another_body_are_refused(store: LogStore, tmp_path: Path) -> None:
    """The attack: cosignatures on another checkpoint text (another root, an extension line,
    another log) kept as if they witnessed this one."""
    psb, _ = _witness("hz-psb")
    key = log_signing_key(LOG)
    latest = store.latest_checkpoint()
    assert latest is not None
    forged_root = sign_checkpoint(Checkpoint(origin=ORIGIN, size=12, root_hash=bytes(32)), key=key)
    extended = sign_checkpoint(
        Checkpoint(origin=ORIGIN, size=12, root_hash=latest.root_hash, extensions=("x",)), key=key
    )
    unsigned_size = sign_checkpoint(Checkpoint(origin=ORIGIN, size=7, root_hash=bytes(32)), key=key)
    for bad in (forged_root, extended):
        with pytest.raises(
            ConflictError, match=r"text differs from the checkpoint of size 12.*cosigned-body"
        ):
            store.add_cosignatures(cosign(bad, psb, timestamp=1), witnesses=_witness_keys())
    with pytest.raises(ConflictError, match="no checkpoint of size 7 was signed by this log"):
        store.add_cosignatures(cosign(unsigned_size, psb, timestamp=1), witnesses=_witness_keys())
    with pytest.raises(MalformedError):
        store.add_cosignatures(b"not a note", witnesses=_witness_keys())
    assert latest == store.latest_checkpoint()
    assert latest.cosigned_note is None


def test_unverified_cosignature_lines_are_refused(store: LogStore) -> None:
    signed = store.checkpoint(log_signing_key(LOG))
    psb, psb_key = _witness("hz-psb")
    stranger = CosignatureSigner(name=psb.name, key=SigningKey.from_seed(b"s" * 32))
    with pytest.raises(SignatureError, match="is not by one of the 2 witness key"):
        store.add_cosignatures(cosign(signed, stranger, timestamp=5), witnesses=_witness_keys())
    good = cosign(signed, psb, timestamp=5)
    line = note.parse(good).signatures[-1]
    broken = note.Signature(
        name=line.name, key_id=line.key_id, data=line.data[:-1] + bytes([line.data[-1] ^ 1])
    )
    tampered = note.Note(text=note.parse(good).text, signatures=(*note.parse(signed).signatures, broken))
    with pytest.raises(SignatureError, match=f"cosignature by {psb_key.name}\\+[0-9a-f]+ does not verify"):
        store.add_cosignatures(tampered.to_bytes(), witnesses=_witness_keys())
    with pytest.raises(SignatureError, match="not by one of the 0 witness"):
        store.add_cosignatures(good, witnesses=[])
    assert store.latest_checkpoint().cosigned_note is None  # type: ignore[union-attr]


def test_a_reader_cannot_add_cosignatures(store: LogStore) -> None:
    signed = store.checkpoint(log_signing_key(LOG))
    with LogStore.open(store.path, readonly=True) as reader, pytest.raises(StorageError, match="read-only"):
        reader.add_cosignatures(cosign(signed, _witness("hz-psb")[0], timestamp=1), witnesses=_witness_keys())


def test_tlog_proof_carries_the_cosigned_note(store: LogStore) -> None:
    signed = store.checkpoint(log_signing_key(LOG))
    proof = store.tlog_proof(3)
    assert proof.checkpoint == signed
    with pytest.raises(SignatureError, match="cosigned by 0/1 required witnesses"):
        tlogproof.verify(proof, log_key=_log_vkey(), leaf=store.entry(3), witnesses=_witness_keys(), quorum=1)
    merged = store.add_cosignatures(
        cosign(signed, _witness("hz-psb")[0], timestamp=9), witnesses=_witness_keys()
    )
    proof = store.tlog_proof(3)
    assert proof.checkpoint == merged
    tlogproof.verify(proof, log_key=_log_vkey(), leaf=store.entry(3), witnesses=_witness_keys(), quorum=1)


def test_log_proof_output_passes_the_policy_witness_quorum(store: LogStore) -> None:
    """Before: ``certledger log proof`` printed the log's own signature only, which fails the
    policy's quorum. Now it prints the checkpoint with the cosignatures kept for it."""
    signed = store.checkpoint(log_signing_key(LOG))
    db = store.path

    def proof_output() -> tlogproof.TlogProof:
        r = CliRunner().invoke(cli, ["log", "proof", str(db), "--index", "5"], catch_exceptions=False)
        assert r.exit_code == 0, r.output
        return tlogproof.parse(r.output.encode())

    with pytest.raises(PolicyError, match="cosigned by 0/2 other members' witnesses; quorum 1"):
        _quorum(proof_output().checkpoint)
    store.add_cosignatures(cosign(signed, _witness("hz-health")[0], timestamp=9), witnesses=_witness_keys())
    proof = proof_output()
    _quorum(proof.checkpoint)
    tlogproof.verify(proof, log_key=_log_vkey(), leaf=store.entry(5), witnesses=_witness_keys(), quorum=1)
    r = CliRunner().invoke(cli, ["log", "checkpoint", str(db)], catch_exceptions=False)
    assert r.output.encode() == proof.checkpoint


def test_audit_checks_the_stored_cosigned_notes(store: LogStore) -> None:
    key = log_signing_key(LOG)
    signed = store.checkpoint(key)
    psb, _ = _witness("hz-psb")
    store.add_cosignatures(cosign(signed, psb, timestamp=9), witnesses=_witness_keys())
    report = audit(store, keys=[key.public_key], witnesses=_witness_keys())
    assert report.cosigned_checked == 1
    assert "1 cosigned checkpoint note(s) verified" in report.summary()
    db = store.path
    store.close()

    def tamper(sql: str, *params: object) -> None:
        conn = sqlite3.connect(db)
        conn.execute(sql, params)
        conn.commit()
        conn.close()

    good = note.parse(cosign(signed, psb, timestamp=9))
    other_body = good.text.replace("\n12\n", "\n11\n")
    tamper("UPDATE cosigned SET note = ?", note.Note(text=other_body, signatures=good.signatures).to_bytes())
    with pytest.raises(AuditError, match="cosigned note for size 12: its checkpoint text differs"):
        audit(db, keys=[key.public_key])
    line = good.signatures[-1]
    bad = note.Signature(name=line.name, key_id=line.key_id, data=bytes(len(line.data)))
    tamper(
        "UPDATE cosigned SET note = ?",
        note.Note(text=good.text, signatures=(good.signatures[0], bad)).to_bytes(),
    )
    audit(db, keys=[key.public_key])  # without witness keys, cosignatures are opaque
    with pytest.raises(AuditError, match="cosigned note for size 12 does not verify"):
        audit(db, keys=[key.public_key], witnesses=_witness_keys())
    tamper("UPDATE cosigned SET size = 5")
    with pytest.raises(AuditError, match="cosigned note for size 5: no stored checkpoint of that size"):
        audit(db, keys=[key.public_key])
    tamper("UPDATE cosigned SET size = 12, note = ?", note.Note(text=good.text, signatures=(bad,)).to_bytes())
    with pytest.raises(AuditError, match="cosigned note for size 12 does not verify: signed by"):
        audit(db, keys=[key.public_key])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_cosigned_notes_are_kept_only_when_they_verify(store: LogStore, data: st.DataObject) -> None:
    signed = store.checkpoint(log_signing_key(LOG))
    good = cosign(signed, _witness("hz-psb")[0], timestamp=9)
    blob = mutate(data, good)
    try:
        merged = store.add_cosignatures(blob, witnesses=_witness_keys())
    except LedgerError:
        return
    opened = open_checkpoint(merged, log_key=_log_vkey(), witnesses=_witness_keys())
    assert opened.checkpoint.size == 12
    assert note.parse(merged).text == note.parse(signed).text


def test_cli_audit_checks_cosignatures_of_the_given_witnesses(store: LogStore) -> None:
    key = log_signing_key(LOG)
    signed = store.checkpoint(key)
    psb, psb_key = _witness("hz-psb")
    store.add_cosignatures(cosign(signed, psb, timestamp=9), witnesses=_witness_keys())
    db = store.path
    store.close()
    args = ["log", "audit", str(db), "--key", str(_log_vkey()), "--no-progress"]
    r = CliRunner().invoke(cli, [*args, "--witness", str(psb_key)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "1 cosigned checkpoint note(s) verified" in r.output
    r = CliRunner().invoke(cli, [*args, "--witness", str(_log_vkey())], catch_exceptions=False)
    assert r.exit_code == 1 and "is not a witness key" in r.output
    good = note.parse(cosign(signed, psb, timestamp=9))
    line = good.signatures[-1]
    bad = note.Signature(name=line.name, key_id=line.key_id, data=bytes(len(line.data)))
    conn = sqlite3.connect(db)
    conn.execute(
        "UPDATE cosigned SET note = ?",
        (note.Note(text=good.text, signatures=(good.signatures[0], bad)).to_bytes(),),
    )
    conn.commit()
    conn.close()
    r = CliRunner().invoke(cli, [*args, "--witness", str(psb_key)], catch_exceptions=False)
    assert r.exit_code == 1
    assert "audit FAILED (not tied to one entry): cosigned note for size 12 does not verify" in r.output
