"""Cost of opening checkpoints and verifying tlog-proofs, next to raw Ed25519 verification.

Not a test. Prints, measured in the same run on this machine:

* raw Ed25519 verifications per second (the floor every format pays);
* signed checkpoints opened per second (log signature + 2 witness cosignatures, i.e.
  3 Ed25519 verifications each) and the ratio to 1/3 of the raw rate;
* tlog-proofs parsed and verified per second (that checkpoint, for an entry of a
  1,000,000-entry log: a 20-hash inclusion proof);
* notes parsed per second (syntax only) for a 100-signature note.

Usage, with the package installed (``pip install -e .``):
``python bench/bench_notes.py [--seconds S] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence

from ledger.keys import SigningKey
from ledger.log import merkle, note, tlogproof
from ledger.log.checkpoint import Checkpoint, CosignatureSigner, cosign, open_checkpoint, sign_checkpoint


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``fn`` over about ``seconds``."""
    n, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(50):
            fn()
        n += 50
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="time spent on each measurement")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (best one counts)")
    args = ap.parse_args()

    origin = "ledger.example.gov.cn/bench"
    log = SigningKey.from_seed(b"\x01" * 32)
    log_vkey = note.Ed25519Signer(name=origin, key=log).verifier_key
    ws = [
        CosignatureSigner(name=f"w{i}.example", key=SigningKey.from_seed(bytes([9 + i]) * 32)) for i in (0, 1)
    ]

    # A log of 1,000,000 identical entries: every complete subtree of 2**k leaves has
    # the same hash, so the stored hashes are known without building the tree, and
    # tree_hash and make_proof see one consistent tree.
    size, index = 1_000_000, 123_456
    level_hash = [merkle.leaf_hash(b"entry")]
    for _ in range(64):
        level_hash.append(merkle.node_hash(level_hash[-1], level_hash[-1]))

    def read(indexes: Sequence[int]) -> list[bytes]:
        return [level_hash[merkle.split_stored_hash_index(i)[0]] for i in indexes]

    cp = Checkpoint(origin=origin, size=size, root_hash=merkle.tree_hash(size, read))
    data = sign_checkpoint(cp, key=log)
    for i, w in enumerate(ws):
        data = cosign(data, w, timestamp=1_717_200_000 + i)
    witnesses = [w.verifier_key for w in ws]
    p = tlogproof.make_proof(index=index, signed_checkpoint=data, read=read)
    proof_bytes = p.to_bytes()

    pub = log.public_key
    msg = note.parse(data).text.encode()
    sig = log.sign(msg)

    signers: Sequence[note.Signer] = [
        note.Ed25519Signer(name=f"k{i}.example", key=SigningKey.from_seed(bytes([i + 1]) * 32))
        for i in range(100)
    ]
    hundred = note.sign("a note with 100 signatures\n", signers)

    cases: dict[str, Callable[[], object]] = {
        "raw": lambda: pub.is_valid(sig, msg),
        "opened": lambda: open_checkpoint(data, log_key=log_vkey, witnesses=witnesses),
        "proved": lambda: tlogproof.verify(
            tlogproof.parse(proof_bytes), log_key=log_vkey, leaf=b"entry", witnesses=witnesses, quorum=2
        ),
        "parsed": lambda: note.parse(hundred),
    }
    # interleaved rounds, best of each: the machine may be shared, and the ratios
    # should compare like with like
    best = dict.fromkeys(cases, 0.0)
    for _ in range(args.rounds):
        for name, fn in cases.items():
            best[name] = max(best[name], rate(fn, args.seconds / args.rounds))
    raw, opened, proved, parsed = (best[k] for k in ("raw", "opened", "proved", "parsed"))

    print(f"raw Ed25519 verifications/s            {raw:10.0f}")
    print(f"checkpoints opened/s (3 signatures)    {opened:10.0f}   ratio to raw/3: {opened * 3 / raw:.2f}")
    hashes = len(p.proof)
    ratio = proved * 3 / raw
    print(f"tlog-proofs verified/s ({hashes} hashes)     {proved:10.0f}   ratio to raw/3: {ratio:.2f}")
    print(f"100-signature notes parsed/s           {parsed:10.0f}   ({len(hundred)} bytes each)")
    print(f"tlog-proof size: {len(proof_bytes)} bytes; signed checkpoint: {len(data)} bytes")


if __name__ == "__main__":
    main()
