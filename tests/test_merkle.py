"""RFC 9162 Merkle math: public vectors both ways, and exhaustive trees up to 64 leaves."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.errors import ProofError
from ledger.log import merkle

VECTORS = Path(__file__).resolve().parent / "vectors" / "merkle"


def _b64(s: str | None) -> bytes:
    return base64.b64decode(s) if s else b""


def _vector_files(kind: str) -> list[Path]:
    return sorted((VECTORS / kind).rglob("*.json"))


def test_vectors_present() -> None:
    assert len(_vector_files("inclusion")) > 50, f"Merkle vectors not found under {VECTORS}"
    assert len(_vector_files("consistency")) > 50


@pytest.mark.parametrize("path", _vector_files("inclusion"), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_inclusion_vector(path: Path) -> None:
    v = json.loads(path.read_text())
    args = (
        [_b64(h) for h in v["proof"] or []],
        v["treeSize"],
        _b64(v["root"]),
        v["leafIdx"],
        _b64(v["leafHash"]),
    )
    if v["wantErr"]:
        with pytest.raises(ProofError):
            merkle.check_record(*args)
    else:
        merkle.check_record(*args)


@pytest.mark.parametrize("path", _vector_files("consistency"), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_consistency_vector(path: Path) -> None:
    v = json.loads(path.read_text())
    args = ([_b64(h) for h in v["proof"] or []], v["size2"], _b64(v["root2"]), v["size1"], _b64(v["root1"]))
    if v["wantErr"]:
        with pytest.raises(ProofError):
            merkle.check_tree(*args)
    else:
        merkle.check_tree(*args)


class _Log:
    """A tiny in-memory log built only through stored_hashes."""

    def __init__(self, n: int) -> None:
        self.stored: list[bytes] = []
        self.leaves = [merkle.leaf_hash(f"record {i}".encode()) for i in range(n)]
        for i, leaf in enumerate(self.leaves):
            assert len(self.stored) == merkle.stored_hash_index(0, i)
            self.stored.extend(merkle.stored_hashes(i, leaf, self.read))
            assert len(self.stored) == merkle.stored_hash_count(i + 1)

    def read(self, indexes: Sequence[int]) -> list[bytes]:
        return [self.stored[i] for i in indexes]


LOG = _Log(64)
ROOTS = [merkle.root_from_leaf_hashes(LOG.leaves[:t]) for t in range(65)]


def _flips(proof: list[bytes]) -> list[list[bytes]]:
    out = []
    for i, h in enumerate(proof):
        for bit in (0, 7, 255):
            b = bytearray(h)
            b[bit // 8] ^= 1 << (bit % 8)
            out.append([*proof[:i], bytes(b), *proof[i + 1 :]])
    return out


def test_stored_hash_index_round_trip() -> None:
    for index in range(merkle.stored_hash_count(1000)):
        level, n = merkle.split_stored_hash_index(index)
        assert merkle.stored_hash_index(level, n) == index


def _stored_hash_index_by_counting(level: int, n: int) -> int:
    """The stored-hash position by its definition: the hashes of records [0, m] at every level."""
    m = n
    for _ in range(level):
        m = 2 * m + 1
    count = 0
    while m > 0:
        count += m
        m >>= 1
    return count + level


@given(st.integers(min_value=0, max_value=62), st.integers(min_value=0, max_value=2**62))
def test_stored_hash_index_closed_form_matches_counting(level: int, n: int) -> None:
    assert merkle.stored_hash_index(level, n) == _stored_hash_index_by_counting(level, n)


def test_tree_hash_matches_recursive_definition() -> None:
    assert merkle.tree_hash(0, LOG.read) == merkle.EMPTY_ROOT
    for t in range(1, 65):
        assert merkle.tree_hash(t, LOG.read) == ROOTS[t]


def test_all_inclusion_proofs_up_to_64_with_negatives() -> None:
    for t in range(1, 65):
        for n in range(t):
            proof = merkle.prove_record(t, n, LOG.read)
            merkle.check_record(proof, t, ROOTS[t], n, LOG.leaves[n])
            bad_cases: list[tuple[list[bytes], int, int, bytes]] = [
                (p, t, n, LOG.leaves[n]) for p in _flips(proof)
            ]
            if proof:
                bad_cases.append((proof[:-1], t, n, LOG.leaves[n]))
            bad_cases.append(([*proof, ROOTS[t]], t, n, LOG.leaves[n]))
            bad_cases.append(([ROOTS[t], *proof], t, n, LOG.leaves[n]))
            if t > 1:
                bad_cases.append((proof, t, (n + 1) % t, LOG.leaves[n]))
                bad_cases.append((proof, t, n, LOG.leaves[(n + 1) % t]))
            for p, tt, nn, leaf in bad_cases:
                with pytest.raises(ProofError):
                    merkle.check_record(p, tt, ROOTS[t], nn, leaf)
            flipped_root = bytes([ROOTS[t][0] ^ 1]) + ROOTS[t][1:]
            with pytest.raises(ProofError):
                merkle.check_record(proof, t, flipped_root, n, LOG.leaves[n])


def test_all_consistency_proofs_up_to_64_with_negatives() -> None:
    for t in range(1, 65):
        for n in range(1, t + 1):
            proof = merkle.prove_tree(t, n, LOG.read)
            merkle.check_tree(proof, t, ROOTS[t], n, ROOTS[n])
            bad = _flips(proof)
            if proof:
                bad.append(proof[:-1])
            bad.append([*proof, ROOTS[t]])
            bad.append([ROOTS[n], *proof])
            for p in bad:
                with pytest.raises(ProofError):
                    merkle.check_tree(p, t, ROOTS[t], n, ROOTS[n])
            if n < t:
                with pytest.raises(ProofError):
                    merkle.check_tree(proof, t, ROOTS[t], n, ROOTS[n - 1] if n > 1 else ROOTS[t])
                with pytest.raises(ProofError):
                    merkle.check_tree(proof, t, ROOTS[t - 1], n, ROOTS[n])


def test_proof_sizes_are_logarithmic() -> None:
    for t in (1, 2, 3, 63, 64):
        for n in range(t):
            assert len(merkle.prove_record(t, n, LOG.read)) <= max(1, (t - 1).bit_length())


def test_bad_arguments() -> None:
    with pytest.raises(ProofError):
        merkle.check_record([], 0, merkle.EMPTY_ROOT, 0, LOG.leaves[0])
    with pytest.raises(ProofError):
        merkle.check_tree([], 5, ROOTS[5], 0, merkle.EMPTY_ROOT)
    with pytest.raises(ProofError):
        merkle.check_tree([], 4, ROOTS[4], 5, ROOTS[5])
    with pytest.raises(ProofError, match="too long"):
        merkle.check_record([ROOTS[1]] * 65, 2**65, ROOTS[1], 0, LOG.leaves[0])
    with pytest.raises(ValueError):
        merkle.prove_record(3, 3, LOG.read)


@given(
    st.lists(st.binary(min_size=0, max_size=40), max_size=70), st.integers(0, 2**64), st.integers(0, 2**64)
)
def test_random_proofs_only_raise_proof_error(proof: list[bytes], t: int, n: int) -> None:
    for check in (merkle.check_record, merkle.check_tree, merkle.check_fork):
        try:
            check(proof, t, ROOTS[3], n, LOG.leaves[0])
        except ProofError:
            continue


#: A log that shares records 0..9 with LOG, then differs: a fork of it after 10.
FORKED = _Log(0)
_OTHER = [merkle.leaf_hash(f"other {i}".encode()) for i in range(10, 64)]
for _i, _leaf in enumerate([*LOG.leaves[:10], *_OTHER]):
    FORKED.leaves.append(_leaf)
    FORKED.stored.extend(merkle.stored_hashes(_i, _leaf, FORKED.read))
FORKED_ROOTS = [merkle.root_from_leaf_hashes(FORKED.leaves[:t]) for t in range(65)]


def test_fork_proofs_prove_every_fork_up_to_64_and_nothing_else() -> None:
    for t in range(2, 65):
        for n in range(1, t):
            # FORKED's tree of size t against LOG's of size n: a fork once n > 10
            proof = merkle.prove_fork(t, n, FORKED.read)
            if n > 10:
                merkle.check_fork(proof, t, FORKED_ROOTS[t], n, ROOTS[n])
                for p in [*_flips(proof), proof[:-1], [*proof, ROOTS[t]], proof[1:]]:
                    with pytest.raises(ProofError, match="fork proof failed"):
                        merkle.check_fork(p, t, FORKED_ROOTS[t], n, ROOTS[n])
            else:  # the same first n records: consistent, so nothing is proved
                with pytest.raises(ProofError, match="prefix"):
                    merkle.check_fork(proof, t, FORKED_ROOTS[t], n, ROOTS[n])
            # a proof out of another tree than the one the later root signs
            if t > 10:
                with pytest.raises(ProofError, match="do not come from the tree"):
                    merkle.check_fork(merkle.prove_fork(t, n, LOG.read), t, FORKED_ROOTS[t], n, ROOTS[n])


def test_a_failing_consistency_proof_is_not_fork_evidence() -> None:
    # Anyone can send a proof that fails: only one out of the later tree proves a fork.
    garbage = [bytes(32)] * len(merkle.prove_fork(8, 5, LOG.read))
    with pytest.raises(ProofError, match="do not come from the tree of size 8"):
        merkle.check_fork(garbage, 8, ROOTS[8], 5, ROOTS[5])
    # A consistency proof from a power-of-two size leaves out the hash a fork proof needs.
    with pytest.raises(ProofError, match="wrong number of hashes"):
        merkle.check_fork(merkle.prove_tree(8, 4, FORKED.read), 8, FORKED_ROOTS[8], 4, ROOTS[4])
    with pytest.raises(ProofError, match="two roots"):
        merkle.check_fork([], 8, ROOTS[8], 8, FORKED_ROOTS[8])
