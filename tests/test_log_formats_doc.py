"""The examples in docs/log-formats.md are real: regenerated here byte for byte, and verified.

Run this file as a script to print the examples (to refresh the document after a
format change): ``python -m tests.test_log_formats_doc``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ledger.keys import SIG_TYPE_ED25519, SigningKey, VerifierKey, key_id
from ledger.log import merkle, note, tlogproof
from ledger.log.certid import CertId
from ledger.log.checkpoint import (
    Checkpoint,
    CosignatureSigner,
    cosign,
    cosignature_message,
    open_checkpoint,
    sign_checkpoint,
)
from ledger.log.statement import GENESIS_PREV, Entry, Kind, SignedStatement, Statement

DOC = Path(__file__).resolve().parent.parent / "docs" / "log-formats.md"
ORIGIN = "ledger.example.gov.cn/hangzhou-xihu-amr"
T0 = 1_717_171_200  # 2024-05-31T16:00:00Z
T_COSIGN = 1_717_200_000  # 2024-06-01T00:00:00Z


def _key(label: str) -> SigningKey:
    return SigningKey.from_seed(hashlib.sha256(b"certledger docs example: " + label.encode()).digest())


GOV = [note.Ed25519Signer(name=f"gov.example.gov.cn/governance-{i}", key=_key(f"gov{i}")) for i in (1, 2)]
WITNESSES = [
    CosignatureSigner(name=f"ledger.example.gov.cn/{m}/witness", key=_key(m))
    for m in ("shanghai-pudong-amr", "beijing-haidian-amr")
]
LOG_KEY = _key("hangzhou-xihu-amr")
LOG_KID = key_id(ORIGIN, SIG_TYPE_ED25519, LOG_KEY.public_key.raw)
LOG_SIGNER = note.Ed25519Signer(name=ORIGIN, key=LOG_KEY)


def _issue(serial: int) -> Statement:
    cert = CertId(
        type_code="11100000000013338W032", issuer_code="11330106MB1234567X", serial=str(serial), version="001"
    )
    return Statement(
        kind=Kind.ISSUE,
        issuer="hangzhou-xihu-amr",
        cert_id=str(cert),
        cert_type="business_licence",
        time=T0 + serial,
        operator="op:7f3a9c",
        valid_from=T0,
        valid_until=T0 + 5 * 365 * 86400,
        claim_digests={i: hashlib.sha256(f"{serial}/{i}".encode()).digest() for i in range(3)},
    )


def _entries() -> list[bytes]:
    out, prev = [], GENESIS_PREV
    for serial in (1, 2, 3):
        entry = Entry(signed=SignedStatement.sign(_issue(serial), key=LOG_KEY, key_id=LOG_KID), prev=prev)
        data = entry.to_bytes()
        out.append(data)
        prev = merkle.leaf_hash(data)
    return out


def examples() -> dict[str, str]:
    """Every example of the document, by name."""
    ex: dict[str, str] = {}
    ex["keys"] = "\n".join(
        str(k) for k in [LOG_SIGNER.verifier_key, *(w.verifier_key for w in WITNESSES), GOV[0].verifier_key]
    )
    text = (
        "certledger example note\n"
        "signed by two governance keys\n"
        "\n"
        "the last blank line separates the signatures\n"
    )
    ex["note"] = note.sign(text, GOV).decode()

    entries = _entries()
    stored: list[bytes] = []

    def read(indexes: object) -> list[bytes]:
        return [stored[i] for i in indexes]  # type: ignore[attr-defined]

    for i, e in enumerate(entries):
        stored += merkle.stored_hashes(i, merkle.leaf_hash(e), read)
    cp = Checkpoint(origin=ORIGIN, size=len(entries), root_hash=merkle.tree_hash(len(entries), read))
    ex["checkpoint_text"] = cp.to_text()
    signed = sign_checkpoint(cp, key=LOG_KEY)
    ex["signed_checkpoint"] = signed.decode()
    cosigned = signed
    for n, w in enumerate(WITNESSES):
        cosigned = cosign(cosigned, w, timestamp=T_COSIGN + n)
    ex["cosigned_checkpoint"] = cosigned.decode()
    ex["cosignature_message"] = cosignature_message(cp.to_text(), T_COSIGN).decode()
    line = note.parse(cosigned).signatures[1]
    ex["cosignature_fields"] = (
        f"key name   {line.name}\n"
        f"key ID     {line.key_id.hex()}\n"
        f"timestamp  {int.from_bytes(line.data[:8], 'big')} ({line.data[:8].hex()})\n"
        f"signature  {line.data[8:].hex()}"
    )
    proof = tlogproof.make_proof(index=1, signed_checkpoint=cosigned, read=read)
    ex["tlog_proof"] = proof.to_text()
    ex["leaf"] = f"entry 1 ({len(entries[1])} bytes), leaf hash {merkle.leaf_hash(entries[1]).hex()}"
    return ex


def test_examples_are_in_the_document_verbatim() -> None:
    doc = DOC.read_text(encoding="utf-8")
    for name, text in examples().items():
        assert text.rstrip("\n") + "\n" in doc, f"example {name!r} is missing or stale in {DOC.name}"


def test_examples_verify() -> None:
    ex = examples()
    keys = [VerifierKey.parse(k) for k in ex["keys"].splitlines()]
    log_vkey, w1, w2, gov1 = keys
    opened = note.open(ex["note"].encode(), [note.Ed25519Verifier(key=gov1)])
    assert [s.name for s in opened.verified] == [gov1.name]
    assert len(opened.unverified) == 1
    oc = open_checkpoint(ex["cosigned_checkpoint"].encode(), log_key=log_vkey, witnesses=[w1, w2])
    assert oc.cosignatures == {w1.name: T_COSIGN, w2.name: T_COSIGN + 1}
    proof = tlogproof.parse(ex["tlog_proof"].encode())
    leaf_hash = bytes.fromhex(ex["leaf"].rsplit(" ", 1)[1])
    tlogproof.verify(proof, log_key=log_vkey, leaf_hash=leaf_hash, witnesses=[w1, w2], quorum=2)


if __name__ == "__main__":
    for name, text in examples().items():
        print(f"==== {name}\n{text.rstrip()}\n")
