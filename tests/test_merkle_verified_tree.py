"""VerifiedTree: inclusion checks cut at nodes already proven to reach the root."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.errors import MalformedError, ProofError
from ledger.log import merkle


class _Log:
    """Stored hashes of 80 records, with a count of reads and hashes read."""

    def __init__(self, n: int) -> None:
        self.leaves = [merkle.leaf_hash(b"record %d" % i) for i in range(n)]
        self.hashes: list[bytes] = []
        for i, leaf in enumerate(self.leaves):
            self.hashes += merkle.stored_hashes(i, leaf, self.read)
        self.calls: list[int] = []

    def read(self, indexes: Sequence[int]) -> list[bytes]:
        if hasattr(self, "calls"):
            self.calls.append(len(indexes))
        return [self.hashes[i] for i in indexes]


LOG = _Log(80)
ROOTS = [merkle.root_from_leaf_hashes(LOG.leaves[:t]) for t in range(81)]


def test_every_record_of_every_tree_up_to_80_in_any_order() -> None:
    rnd = random.Random(7)
    for t in range(1, 81):
        tree = merkle.VerifiedTree(size=t, root=ROOTS[t])
        order = list(range(t))
        rnd.shuffle(order)
        for n in order:
            tree.check_record(n, LOG.leaves[n], LOG.read)
        for n in order:  # again, with every path proven
            tree.check_record(n, LOG.leaves[n], LOG.read)


def test_wrong_leaf_or_index_is_refused_cold_and_warm() -> None:
    for t in range(2, 41):
        cold = merkle.VerifiedTree(size=t, root=ROOTS[t])
        warm = merkle.VerifiedTree(size=t, root=ROOTS[t])
        for n in range(t):
            warm.check_record(n, LOG.leaves[n], LOG.read)
        for tree in (cold, warm):
            for n in range(t):
                with pytest.raises(ProofError, match="root hash mismatch"):
                    tree.check_record(n, LOG.leaves[(n + 1) % t], LOG.read)
                with pytest.raises(ProofError, match="root hash mismatch"):
                    tree.check_record(n, merkle.leaf_hash(b"forged"), LOG.read)


def test_a_record_beyond_the_tree_is_refused() -> None:
    tree = merkle.VerifiedTree(size=5, root=ROOTS[5])
    for n in (5, 6, -1):
        with pytest.raises(ProofError, match="not in a tree of size 5"):
            tree.check_record(n, LOG.leaves[0], LOG.read)
    with pytest.raises(MalformedError):
        tree.check_record(True, LOG.leaves[1], LOG.read)
    with pytest.raises(ProofError, match="leaf hash"):
        tree.check_record(1, b"short", LOG.read)


def test_a_tampered_stored_hash_is_caught_and_nothing_is_remembered() -> None:
    t = 37
    warm = merkle.VerifiedTree(size=t, root=ROOTS[t])
    for i in range(merkle.stored_hash_count(t)):
        bad = list(LOG.hashes)
        bad[i] = bytes(32)

        def read(indexes: Sequence[int], bad: list[bytes] = bad) -> list[bytes]:
            return [bad[j] for j in indexes]

        for n in range(t):
            cold = merkle.VerifiedTree(size=t, root=ROOTS[t])
            try:
                cold.check_record(n, LOG.leaves[n], read)
                passed = True
            except ProofError:
                passed = False
            assert passed == (i not in _proof_indexes(t, n))
            try:  # a warm tree may not need the tampered hash; it never remembers it
                warm.check_record(n, LOG.leaves[n], read)
            except ProofError:
                continue
    for n in range(t):  # what the warm tree remembered is only ever true
        warm.check_record(n, LOG.leaves[n], LOG.read)
        with pytest.raises(ProofError):
            warm.check_record(n, LOG.leaves[(n + 1) % t], LOG.read)


def _proof_indexes(t: int, n: int) -> set[int]:
    seen: list[int] = []

    def read(indexes: Sequence[int]) -> list[bytes]:
        seen.extend(indexes)
        return [LOG.hashes[i] for i in indexes]

    merkle.prove_record(t, n, read)
    return set(seen)


def test_a_wrong_root_refuses_every_record() -> None:
    tree = merkle.VerifiedTree(size=16, root=ROOTS[15])
    for n in range(16):
        with pytest.raises(ProofError):
            tree.check_record(n, LOG.leaves[n], LOG.read)
    assert len(tree) == 1


def test_proven_nodes_cut_the_reads() -> None:
    t = 64
    tree = merkle.VerifiedTree(size=t, root=ROOTS[t])
    LOG.calls.clear()
    tree.check_record(10, LOG.leaves[10], LOG.read)
    assert LOG.calls == [6]  # a cold check reads the whole proof
    LOG.calls.clear()
    tree.check_record(11, LOG.leaves[11], LOG.read)
    assert LOG.calls == [1]  # its parent is proven: only the sibling leaf is read


def test_the_node_cap_drops_nodes_but_keeps_checking() -> None:
    tree = merkle.VerifiedTree(size=80, root=ROOTS[80], max_nodes=8)
    for n in range(80):
        tree.check_record(n, LOG.leaves[n], LOG.read)
        assert len(tree) <= 8
    with pytest.raises(ProofError):
        tree.check_record(3, LOG.leaves[4], LOG.read)


def test_a_reader_returning_too_few_hashes_is_refused() -> None:
    tree = merkle.VerifiedTree(size=9, root=ROOTS[9])
    with pytest.raises(ProofError, match="wrong number"):
        tree.check_record(2, LOG.leaves[2], lambda idx: [LOG.hashes[i] for i in idx][:-1])


@given(st.integers(1, 80), st.data())
def test_agrees_with_check_record(t: int, data: st.DataObject) -> None:
    tree = merkle.VerifiedTree(size=t, root=ROOTS[t])
    for n in data.draw(st.lists(st.integers(0, t - 1), max_size=12)):
        leaf = data.draw(st.sampled_from([LOG.leaves[n], LOG.leaves[(n + 1) % 80]]))
        proof = merkle.prove_record(t, n, LOG.read)
        try:
            merkle.check_record(proof, t, ROOTS[t], n, leaf)
            expected = True
        except ProofError:
            expected = False
        try:
            tree.check_record(n, leaf, LOG.read)
            got = True
        except ProofError:
            got = False
        assert got == expected
