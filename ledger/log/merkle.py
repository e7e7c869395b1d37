"""RFC 9162 Merkle tree math, pure and small (after Go's ``golang.org/x/mod/sumdb/tlog``).

Hashes: ``leaf = SHA-256(0x00 || data)``, ``node = SHA-256(0x01 || left || right)``;
the root of the empty tree is ``SHA-256("")``.

A log stores, for a tree of ``n`` records, the hashes of every complete subtree in the
order they become complete (the *stored hashes*): adding record ``n`` stores its leaf
hash and then the hash of each subtree that record completes. :func:`stored_hash_index`
maps ``(level, n)`` (the ``n``-th complete subtree of ``2**level`` leaves) to its
position, :func:`stored_hashes` computes what to append for a new record with
``O(log n)`` hashing, and the ``prove_*`` functions read ``O(log n)`` stored hashes.

Proofs are lists of 32-byte hashes in RFC 9162 order (the deepest sibling first).
``prove_record``/``check_record`` are inclusion proofs, ``prove_tree``/``check_tree``
consistency proofs, ``prove_fork``/``check_fork`` proofs that two trees are *not*
consistent (fork evidence). Every failed check raises :class:`~ledger.errors.ProofError`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from ledger.errors import MalformedError, ProofError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "HashReader",
    "VerifiedTree",
    "check_fork",
    "check_record",
    "check_tree",
    "leaf_hash",
    "node_hash",
    "prove_fork",
    "prove_record",
    "prove_tree",
    "root_from_leaf_hashes",
    "split_stored_hash_index",
    "stored_hash_count",
    "stored_hash_index",
    "stored_hashes",
    "tree_hash",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
#: Reads stored hashes by index; returns them in the order asked.
HashReader = Callable[[Sequence[int]], Sequence[bytes]]
_MAX_PROOF = 64


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 leaf hash: SHA-256(0x00 || data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 interior node hash: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _maxpow2(n: int) -> int:
    """The largest power of two strictly less than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def stored_hash_index(level: int, n: int) -> int:
    """The position among the stored hashes of the ``n``-th subtree of ``2**level`` leaves."""
    if level < 0 or n < 0:
        raise ValueError("level and n must be non-negative")
    # Hashes of level L for records [0, n << L) come before (level, n): count the
    # stored hashes of the first (n << L) records, then those of the last record's
    # own completed subtrees below this level. With m = ((n + 1) << level) - 1, the
    # count is m + m//2 + m//4 + ... = 2m - popcount(m).
    m = ((n + 1) << level) - 1
    return 2 * m - m.bit_count() + level


def split_stored_hash_index(index: int) -> tuple[int, int]:
    """Inverse of :func:`stored_hash_index`: the ``(level, n)`` stored at ``index``."""
    if index < 0:
        raise ValueError("index must be non-negative")
    # stored_hash_index(0, n) < 2n, so the last record stored at or before index is in
    # [index/2, index/2 + log2(index)]; each record n adds 1 + trailing_zeros(n + 1) hashes.
    n = index // 2
    index_n = stored_hash_index(0, n)
    while True:
        x = index_n + 1 + _trailing_zeros(n + 1)
        if x > index:
            break
        n += 1
        index_n = x
    level = index - index_n
    return level, n >> level


def _trailing_zeros(x: int) -> int:
    return (x & -x).bit_length() - 1


def stored_hash_count(n: int) -> int:
    """How many hashes a tree of ``n`` records stores."""
    if n <= 0:
        return 0
    # Records [0, n-1) store stored_hash_index(0, n-1) hashes; record n-1 adds its leaf
    # and one hash per trailing 1 bit of n-1.
    count = stored_hash_index(0, n - 1)
    m = n - 1
    count += 1
    while m & 1:
        count += 1
        m >>= 1
    return count


def stored_hashes(n: int, leaf: bytes, read: HashReader) -> list[bytes]:
    """The hashes to store after adding record ``n`` whose leaf hash is ``leaf``.

    The first is ``leaf``; then one hash for each subtree the record completes.
    """
    if len(leaf) != HASH_SIZE:
        raise ValueError("leaf hash must be 32 bytes")
    indexes = []
    m = n
    level = 0
    while m & 1:
        # The sibling of the subtree ending at record n is (level, m - 1).
        indexes.append(stored_hash_index(level, m - 1))
        m >>= 1
        level += 1
    siblings = list(read(indexes)) if indexes else []
    if len(siblings) != len(indexes):
        raise ValueError("hash reader returned the wrong number of hashes")
    out = [leaf]
    h = leaf
    for sibling in siblings:
        h = node_hash(sibling, h)
        out.append(h)
    return out


def _subtree_indexes(lo: int, hi: int, need: list[int]) -> None:
    """Append the stored-hash indexes of the complete subtrees that make up records [lo, hi).

    Callers only ask for ranges whose start is aligned to the largest power of two that
    fits, as RFC 9162 proofs do.
    """
    while lo < hi:
        k = 1 << ((hi - lo).bit_length() - 1)  # largest power of two <= hi - lo
        if lo & (k - 1):
            raise ValueError(f"subtree [{lo}, {hi}) is not aligned")
        level = k.bit_length() - 1
        need.append(stored_hash_index(level, lo >> level))
        lo += k


def _subtree_hash(lo: int, hi: int, read: HashReader) -> bytes:
    need: list[int] = []
    _subtree_indexes(lo, hi, need)
    hashes = list(read(need))
    if len(hashes) != len(need):
        raise ValueError("hash reader returned the wrong number of hashes")
    h = hashes[-1]
    for left in reversed(hashes[:-1]):
        h = node_hash(left, h)
    return h


def tree_hash(n: int, read: HashReader) -> bytes:
    """The root hash of the tree of the first ``n`` records."""
    if n < 0:
        raise ValueError("tree size must be non-negative")
    if n == 0:
        return EMPTY_ROOT
    return _subtree_hash(0, n, read)


def prove_record(t: int, n: int, read: HashReader) -> list[bytes]:
    """Inclusion proof that record ``n`` is in the tree of size ``t``."""
    if not 0 <= n < t:
        raise ValueError(f"record {n} is not in a tree of size {t}")
    proof: list[bytes] = []
    lo, hi = 0, t
    path: list[tuple[int, int]] = []
    while hi - lo > 1:
        k = 1 << ((hi - lo - 1).bit_length() - 1)  # _maxpow2(hi - lo)
        if n < lo + k:
            path.append((lo + k, hi))
            hi = lo + k
        else:
            path.append((lo, lo + k))
            lo = lo + k
    # every stored hash the proof needs, read at once (one query for a database reader)
    need: list[int] = []
    groups: list[tuple[int, int]] = []
    for a, b in reversed(path):
        start = len(need)
        size = b - a
        if size & (size - 1):
            _subtree_indexes(a, b, need)
        else:  # one complete subtree (every left sibling, most right ones): one stored hash
            level = size.bit_length() - 1
            m = (((a >> level) + 1) << level) - 1
            need.append(2 * m - m.bit_count() + level)  # stored_hash_index(level, a >> level)
        groups.append((start, len(need)))
    hashes = list(read(need)) if need else []
    if len(hashes) != len(need):
        raise ValueError("hash reader returned the wrong number of hashes")
    for start, end in groups:
        h = hashes[end - 1]
        for left in reversed(hashes[start : end - 1]):
            h = node_hash(left, h)
        proof.append(h)
    return proof


def _check_hash(h: bytes, what: str) -> None:
    if not isinstance(h, bytes) or len(h) != HASH_SIZE:
        raise ProofError(f"{what} is not a 32-byte hash")


def _check_ints(*values: object) -> None:
    if any(type(v) is not int for v in values):
        raise MalformedError("tree sizes and record indexes must be integers (true is not 1)")


def check_record(proof: Sequence[bytes], t: int, root: bytes, n: int, leaf: bytes) -> None:
    """Check that ``leaf`` is record ``n`` of the tree of size ``t`` with hash ``root``."""
    _check_ints(n, t)
    if not 0 <= n < t:
        raise ProofError(f"record {n} is not in a tree of size {t}")
    if len(proof) > _MAX_PROOF:
        raise ProofError("inclusion proof is too long")
    _check_hash(leaf, "leaf hash")
    for p in proof:
        _check_hash(p, "proof element")
    # Walk down to the leaf, remembering which side each sibling is on.
    sides: list[bool] = []  # True: the sibling is on the right
    lo, hi = 0, t
    while hi - lo > 1:
        k = _maxpow2(hi - lo)
        if n < lo + k:
            sides.append(True)
            hi = lo + k
        else:
            sides.append(False)
            lo = lo + k
    if len(proof) != len(sides):
        raise ProofError("inclusion proof failed: wrong number of hashes")
    h = leaf
    for sibling, right in zip(proof, reversed(sides), strict=True):
        h = node_hash(h, sibling) if right else node_hash(sibling, h)
    if h != root:
        raise ProofError("inclusion proof failed: root hash mismatch")


class VerifiedTree:
    """Node hashes of one tree (``size`` records, root hash ``root``), each proven to
    chain up to that root: the root itself, and every node on the path of a record whose
    inclusion :meth:`check_record` has checked.

    Checking a record reads (in one call of ``read``) only the stored hashes of the
    siblings below the lowest node of its path already proven, hashes up to that node
    and compares: the same inclusion proof as :func:`check_record`, cut where the rest of
    the path is known to reach the root (SHA-256 collision resistance: a different
    subtree cannot have a proven node's hash). Siblings are never remembered, only path
    nodes, so every check hashes its own record with at least one stored hash read for
    it. Thread-safe; at most ``max_nodes`` nodes are kept (all are dropped when full,
    keeping the root).
    """

    __slots__ = ("_max", "_nodes", "root", "size")

    def __init__(self, *, size: int, root: bytes, max_nodes: int = 1 << 16) -> None:
        _check_ints(size)
        if size < 1:
            raise ProofError("a tree with no records proves nothing")
        _check_hash(root, "root hash")
        self.size = size
        self.root = root
        self._max = max_nodes
        self._nodes: dict[object, bytes] = {}
        self._nodes[self._root_key()] = root

    def _root_key(self) -> object:
        t = self.size
        return _complete_key(t.bit_length() - 1, 0) if t & (t - 1) == 0 else (0, t)

    def __len__(self) -> int:
        return len(self._nodes)

    def check_record(self, n: int, leaf: bytes, read: HashReader) -> None:
        """Check that ``leaf`` (a leaf hash) is record ``n``; ProofError if not.

        ``read`` gives stored hashes by index, as :func:`prove_record` reads them.
        """
        _check_ints(n)
        t = self.size
        if not 0 <= n < t:
            raise ProofError(f"record {n} is not in a tree of size {t}")
        _check_hash(leaf, "leaf hash")
        nodes = self._nodes
        # The path from the root runs along the right edge (subtrees whose size is not a
        # power of two, keyed by their range) into the complete subtree holding record n
        # (its nodes keyed by level and index).
        edge: list[tuple[int, int, int, int]] = []  # (lo, hi, sibling lo, sibling hi), top first
        lo, hi = 0, t
        while (hi - lo) & (hi - lo - 1):
            k = 1 << ((hi - lo - 1).bit_length() - 1)
            if n < lo + k:
                edge.append((lo, hi, lo + k, hi))
                hi = lo + k
            else:
                edge.append((lo, hi, lo, lo + k))
                lo += k
        m = (hi - lo).bit_length() - 1  # the complete subtree has 2**m records
        expected: bytes | None = None
        top = 0  # levels of the complete subtree to hash up to
        for level in range(1, m + 1):
            expected = nodes.get(_complete_key(level, n >> level))
            if expected is not None:
                top = level
                break
        stop = len(edge)  # edge nodes edge[stop:] are hashed (bottom first)
        if expected is None:
            top = m
            if m == 0 and not edge:  # a tree of one record: its leaf is the root
                expected = nodes.get(_complete_key(0, 0))
            for j in range(len(edge) - 1, -1, -1):
                expected = nodes.get((edge[j][0], edge[j][1]))
                if expected is not None:
                    stop = j
                    break
        if expected is None:  # the root is always held: dropped by a concurrent clear
            expected, stop, top = self.root, 0, m
        # Read the siblings at once: one stored hash per complete sibling, several for
        # a right-edge remainder.
        need = [_stored_index(level, (n >> level) ^ 1) for level in range(top)]
        groups: list[tuple[int, int]] = []
        for j in range(len(edge) - 1, stop - 1, -1):
            a, b = edge[j][2], edge[j][3]
            first = len(need)
            size = b - a
            if size & (size - 1):
                _subtree_indexes(a, b, need)
            else:
                need.append(_stored_index(size.bit_length() - 1, a >> (size.bit_length() - 1)))
            groups.append((first, len(need)))
        hashes = list(read(need)) if need else []
        if len(hashes) != len(need):
            raise ProofError("the hash reader returned the wrong number of hashes")
        for h in hashes:
            _check_hash(h, "stored hash")
        sha = hashlib.sha256
        h = leaf
        found: list[tuple[object, bytes]] = []
        for level in range(top):
            s = hashes[level]
            h = sha(b"\x01" + s + h).digest() if (n >> level) & 1 else sha(b"\x01" + h + s).digest()
            found.append((_complete_key(level + 1, n >> (level + 1)), h))
        for (first, end), j in zip(groups, range(len(edge) - 1, stop - 1, -1), strict=True):
            s = hashes[end - 1]
            for left in reversed(hashes[first : end - 1]):
                s = sha(b"\x01" + left + s).digest()
            left_sibling = edge[j][2] == edge[j][0]
            h = sha(b"\x01" + s + h).digest() if left_sibling else sha(b"\x01" + h + s).digest()
            found.append(((edge[j][0], edge[j][1]), h))
        if h != expected:
            raise ProofError("inclusion proof failed: root hash mismatch")
        if len(nodes) + len(found) > self._max:
            nodes.clear()
            nodes[self._root_key()] = self.root
        for key, value in found[:-1]:
            nodes[key] = value


def _complete_key(level: int, index: int) -> int:
    """The key of the complete subtree ``index`` of ``2**level`` records."""
    return index << 6 | level


def _stored_index(level: int, index: int) -> int:
    m = ((index + 1) << level) - 1
    return 2 * m - m.bit_count() + level


def prove_tree(t: int, n: int, read: HashReader) -> list[bytes]:
    """Consistency proof that the tree of size ``n`` is a prefix of the tree of size ``t``."""
    if not 1 <= n <= t:
        raise ValueError(f"no consistency proof from size {n} to size {t}")
    out: list[bytes] = []
    lo, hi = 0, t
    tail: list[tuple[int, int]] = []
    while n != hi:
        k = _maxpow2(hi - lo)
        if n <= lo + k:
            tail.append((lo + k, hi))
            hi = lo + k
        else:
            tail.append((lo, lo + k))
            lo = lo + k
    if lo != 0:
        out.append(_subtree_hash(lo, hi, read))
    for a, b in reversed(tail):
        out.append(_subtree_hash(a, b, read))
    return out


def _consistency_path(t: int, n: int) -> tuple[int, list[bool]]:
    """Where the tree of size ``n`` sits in the tree of size ``t``: the start of the
    subtree the proof begins from (0 when ``n`` is a power of two, whose hash a proof
    leaves out), and the steps from there up (True: the old tree lies in the left part)."""
    steps: list[bool] = []
    lo, hi = 0, t
    while n != hi:
        k = _maxpow2(hi - lo)
        if n <= lo + k:
            steps.append(True)
            hi = lo + k
        else:
            steps.append(False)
            lo = lo + k
    return lo, steps


def _consistency_roots(proof: Sequence[bytes], first: bytes, steps: Sequence[bool]) -> tuple[bytes, bytes]:
    """The roots of the old and the new tree a consistency proof gives, from ``first``
    (the hash of the subtree the proof begins from) and the rest of the proof."""
    old = new = first
    for sibling, left in zip(proof, reversed(steps), strict=True):
        if left:
            new = node_hash(new, sibling)
        else:
            old = node_hash(sibling, old)
            new = node_hash(sibling, new)
    return old, new


def _checked_proof(proof: Sequence[bytes], t: int, n: int) -> None:
    _check_ints(n, t)
    if not 1 <= n <= t:
        raise ProofError(f"no consistency proof from size {n} to size {t}")
    if len(proof) > _MAX_PROOF:
        raise ProofError("consistency proof is too long")
    for p in proof:
        _check_hash(p, "proof element")


def check_tree(proof: Sequence[bytes], t: int, root_t: bytes, n: int, root_n: bytes) -> None:
    """Check that the tree of size ``n`` with hash ``root_n`` is a prefix of the tree of
    size ``t`` with hash ``root_t``.

    A proof from the empty tree (``n == 0``) is rejected: it proves nothing.
    """
    _checked_proof(proof, t, n)
    lo, steps = _consistency_path(t, n)
    base = 0 if lo == 0 else 1
    if len(proof) != base + len(steps):
        raise ProofError("consistency proof failed: wrong number of hashes")
    old, new = _consistency_roots(proof[base:], root_n if lo == 0 else proof[0], steps)
    if old != root_n or new != root_t:
        raise ProofError("consistency proof failed: root hash mismatch")


def prove_fork(t: int, n: int, read: HashReader) -> list[bytes]:
    """Evidence, from the tree of size ``t`` read by ``read``, about its first ``n``
    records: :func:`prove_tree`'s proof, with the hash of the first ``n`` records in
    front when ``n`` is a power of two (where a consistency proof leaves it out, as its
    checker already knows it). :func:`check_fork` checks it against two roots."""
    proof = prove_tree(t, n, read)
    if n < t and _consistency_path(t, n)[0] == 0:
        proof.insert(0, _subtree_hash(0, n, read))
    return proof


def check_fork(proof: Sequence[bytes], t: int, root_t: bytes, n: int, root_n: bytes) -> None:
    """Check that ``proof`` (:func:`prove_fork`'s form) proves the tree of size ``t``
    with hash ``root_t`` does *not* extend a tree of size ``n`` with hash ``root_n``:
    the proof must give ``root_t`` as the new root (so its hashes come from that tree)
    and another hash than ``root_n`` for the first ``n`` records.

    A proof that fails to verify proves nothing about the log (anyone can send
    garbage); only one that verifies against ``root_t`` does. ProofError otherwise.
    """
    _checked_proof(proof, t, n)
    if n == t:
        raise ProofError("a fork at one size is two roots for it, not a proof")
    steps = _consistency_path(t, n)[1]
    if len(proof) != 1 + len(steps):
        raise ProofError("fork proof failed: wrong number of hashes")
    old, new = _consistency_roots(proof[1:], proof[0], steps)
    if new != root_t:
        raise ProofError(f"fork proof failed: its hashes do not come from the tree of size {t}")
    if old == root_n:
        raise ProofError(f"fork proof failed: it proves the tree of size {n} a prefix of the one of size {t}")


def root_from_leaf_hashes(leaves: Sequence[bytes]) -> bytes:
    """The root of a tree given all its leaf hashes (``O(n)``; for tests and small trees)."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = _maxpow2(len(leaves))
    return node_hash(root_from_leaf_hashes(leaves[:k]), root_from_leaf_hashes(leaves[k:]))
