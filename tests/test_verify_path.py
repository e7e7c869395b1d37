"""The verifying path does each piece of work once: opened checkpoints are remembered by
their exact bytes and keys, and a proof's hashes come from one read."""

from __future__ import annotations

import base64
import random
from pathlib import Path

import pytest

from ledger.errors import SignatureError
from ledger.keys import SIG_TYPE_COSIGNATURE, PublicKey, SigningKey, VerifierKey
from ledger.log import checkpoint as checkpoint_module
from ledger.log import merkle
from ledger.log import note as note_module
from ledger.log.checkpoint import (
    OPENED_CACHE_SIZE,
    Checkpoint,
    CosignatureSigner,
    cosign,
    open_checkpoint,
    sign_checkpoint,
)
from ledger.log.statement import GENESIS_PREV, Entry, encode_entry
from ledger.log.store import LogStore
from tests.helpers import ORIGIN, issue, log_key

LOG_KEY = SigningKey.from_seed(b"\x11" * 32)
W1 = CosignatureSigner(name="witness.example/one", key=SigningKey.from_seed(b"\x12" * 32))
W2 = CosignatureSigner(name="witness.example/two", key=SigningKey.from_seed(b"\x13" * 32))
LOG_VK = VerifierKey(name=ORIGIN, public_key=LOG_KEY.public_key)
WITNESSES = [
    VerifierKey(name=w.name, public_key=w.verifier_key.public_key, sig_type=SIG_TYPE_COSIGNATURE)
    for w in (W1, W2)
]


def witnessed(size: int) -> bytes:
    note = sign_checkpoint(
        Checkpoint(origin=ORIGIN, size=size, root_hash=bytes([size % 256]) * 32), key=LOG_KEY
    )
    for w in (W1, W2):
        note = cosign(note, w, timestamp=1_717_171_200)
    return note


@pytest.fixture
def verifies(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts every Ed25519 verification."""
    checkpoint_module._opened.clear()
    calls: list[int] = []
    real = PublicKey.is_valid

    def counting(self: PublicKey, signature: bytes, message: bytes) -> bool:
        calls.append(1)
        return real(self, signature, message)

    monkeypatch.setattr(PublicKey, "is_valid", counting)
    return calls


def test_a_checkpoint_opened_once_is_not_verified_again(verifies: list[int]) -> None:
    note = witnessed(7)
    first = open_checkpoint(note, log_key=LOG_VK, witnesses=WITNESSES)
    assert len(verifies) == 3 and set(first.cosignatures) == {W1.name, W2.name}
    assert open_checkpoint(note, log_key=LOG_VK, witnesses=WITNESSES) == first
    assert len(verifies) == 3
    # other keys are another question: verified afresh
    alone = open_checkpoint(note, log_key=LOG_VK, witnesses=WITNESSES[:1])
    assert len(verifies) == 5 and set(alone.cosignatures) == {W1.name}


def test_cache_does_not_accept_a_checkpoint_with_a_forged_cosignature_appended(verifies: list[int]) -> None:
    note = witnessed(8)
    open_checkpoint(note, log_key=LOG_VK, witnesses=WITNESSES[:1])
    # a cosignature under the second witness's name and key ID, made with another key
    forger = CosignatureSigner(name=W2.name, key=SigningKey.from_seed(b"\x66" * 32))
    text = note_module.parse(note).text.encode()
    data = W2.key_id + forger.sign_at(text, timestamp=1_717_171_300)
    bad = note + f"\u2014 {W2.name} {base64.b64encode(data).decode()}\n".encode()
    for _ in range(2):  # failures are not remembered
        with pytest.raises(SignatureError, match=r"invalid signature by trusted key witness\.example/two"):
            open_checkpoint(bad, log_key=LOG_VK, witnesses=WITNESSES)


def test_the_cache_is_bounded_and_drops_the_least_recently_used(verifies: list[int]) -> None:
    notes = [witnessed(n) for n in range(OPENED_CACHE_SIZE + 1)]
    for note in notes:
        open_checkpoint(note, log_key=LOG_VK)
    assert len(checkpoint_module._opened._items) == OPENED_CACHE_SIZE
    count = len(verifies)
    open_checkpoint(notes[-1], log_key=LOG_VK)  # recent: remembered
    assert len(verifies) == count
    open_checkpoint(notes[0], log_key=LOG_VK)  # the oldest was dropped: verified again
    assert len(verifies) == count + 1


def test_an_inclusion_proof_is_read_in_one_call() -> None:
    rng = random.Random(7)
    leaves = [merkle.leaf_hash(bytes([i % 256, i // 256])) for i in range(300)]
    stored: list[bytes] = []
    for i, leaf in enumerate(leaves):
        stored += merkle.stored_hashes(i, leaf, lambda idx: [stored[j] for j in idx])  # noqa: B023
    for _ in range(200):
        t = rng.randrange(1, 301)
        n = rng.randrange(t)
        calls: list[int] = []

        def read(idx: list[int]) -> list[bytes]:
            calls.append(len(idx))  # noqa: B023
            return [stored[j] for j in idx]

        proof = merkle.prove_record(t, n, read)
        assert len(calls) == (1 if t > 1 else 0)
        merkle.check_record(proof, t, merkle.root_from_leaf_hashes(leaves[:t]), n, leaves[n])


def test_entry_proof_gives_prev_and_proof_in_one_query(tmp_path: Path) -> None:
    key, _ = log_key()
    with LogStore.create(tmp_path / "log.db", origin=ORIGIN) as store:
        store.append([issue(i) for i in range(37)], key=key)
        queries: list[str] = []
        store._conn.set_trace_callback(queries.append)
        for index in (0, 1, 17, 36):
            queries.clear()
            prev, proof = store.entry_proof(index, 37)
            assert len([q for q in queries if q.lstrip().upper().startswith("SELECT")]) == 1
            assert prev == (GENESIS_PREV if index == 0 else store.leaf_hash(index - 1))
            assert proof == store.inclusion_proof(index, 37)
            signed = Entry.from_bytes(store.entry(index)).signed
            rebuilt = encode_entry(
                statement_bytes=signed.statement_bytes,
                key_id=signed.key_id,
                signature=signed.signature,
                prev=prev,
            )
            merkle.check_record(proof, 37, store.root(37), index, merkle.leaf_hash(rebuilt))
        store._conn.set_trace_callback(None)
