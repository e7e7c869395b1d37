"""Size and verification cost of trust-policy documents, next to raw Ed25519.

Not a test. Builds a large consortium policy (80 departments with 3 log keys each,
100 certificate types with 16 claims each, 7 governance keys, threshold 4) and
prints, measured in the same run on this machine:

* the document's size and the ratio to the 1 MiB document cap;
* documents parsed per second (strict parse and canonical re-render, no signatures);
* updates verified per second (version N -> N+1, 4 signatures checked against the old
  keys and 4 against the new) and the ratio of one update's time to the 8 raw Ed25519
  verifications it contains: the median of per-block ratios, each block one update
  followed by 8 raw verifications, so that both sides see the same machine load;
* a 50-version chain walked from version 1: seconds in total.

Every version obeys the rules no version can switch off (one key per role, unique key
IDs, bounded expiry and freshness), so their checks are part of every figure.

Usage, with the package installed (``pip install -e .``):
``python bench/bench_policy.py [--seconds S] [--rounds R] [--chain N]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable

from ledger.keys import SIG_TYPE_COSIGNATURE, SigningKey, VerifierKey
from ledger.trust.policy import CertificateType, ClaimSpec, LogKey, Member, Policy, mandates
from ledger.trust.policy_doc import MAX_DOCUMENT_SIZE, parse_document, sign_proposal
from ledger.trust.trust import TrustedPolicy, verify_next

T0 = 1_717_171_200


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``fn`` over about ``seconds``."""
    n, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        fn()
        n += 1
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


def key(tag: str) -> SigningKey:
    return SigningKey.from_seed(tag.encode()[:32].ljust(32, b"."))


def gov(i: int) -> tuple[str, SigningKey]:
    return f"gov-{i}.consortium.example.gov.cn", key(f"gov{i}")


def big_policy(version: int = 1, gov_ids: range = range(7)) -> Policy:
    members = tuple(
        Member(
            id=f"dept-{i:03d}",
            name=f"浙江省第{i}号行政审批服务管理办公室",
            origin=f"ledger.example.gov.cn/dept-{i:03d}",
            issuer_code=f"113300000024{i:06d}",
            base_url=f"https://dept-{i:03d}.example.gov.cn/ledger",
            log_keys=tuple(
                LogKey(public_key=key(f"log{i}/{k}").public_key, valid_from=T0 + k * 1000, valid_until=None)
                if k == 2
                else LogKey(
                    public_key=key(f"log{i}/{k}").public_key,
                    valid_from=T0 + k * 1000,
                    valid_until=T0 + (k + 1) * 1000,
                )
                for k in range(3)
            ),
            witness_key=VerifierKey(
                name=f"witness.example.gov.cn/dept-{i:03d}",
                public_key=key(f"wit{i}").public_key,
                sig_type=SIG_TYPE_COSIGNATURE,
            ),
        )
        for i in range(80)
    )
    types = tuple(
        CertificateType(
            code=f"licence_{t:03d}",
            name=f"第{t}类行政许可证",
            national_code=f"11100000000013338W{t:03d}",
            claims=tuple(
                ClaimSpec(key=c, name=f"claim_{c}", label=f"字段{c}", kind="text", max_length=128)
                for c in range(16)
            ),
            issuers=mandates(f"dept-{t % 80:03d}"),
            revokers=mandates(f"dept-{t % 80:03d}", f"dept-{(t + 1) % 80:03d}"),
            max_validity_days=1825,
            purposes={"window": ("claim_0", "claim_1", "claim_2")},
        )
        for t in range(100)
    )
    return Policy(
        consortium="zhejiang.example.gov.cn",
        version=version,
        issued=T0,
        expires=T0 + 365 * 86_400,
        members=members,
        types=types,
        witness_quorum=2,
        freshness_seconds=86_400,
        governance_keys=tuple(VerifierKey(name=gov(i)[0], public_key=gov(i)[1].public_key) for i in gov_ids),
        governance_threshold=4,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="time spent on each measurement")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (best one counts)")
    ap.add_argument("--chain", type=int, default=50, help="versions in the walked chain")
    args = ap.parse_args()

    p1 = big_policy()
    p2 = dataclasses.replace(p1, version=2)
    doc1 = sign_proposal(p1, [gov(i) for i in range(4)])
    doc2 = sign_proposal(p2, [gov(i) for i in range(4)])
    raw_key = gov(0)[1]
    message = doc2.split(b"\n\n\xe2\x80\x94 ", 1)[0] + b"\n"
    signature = raw_key.sign(message)

    best = {"raw": 0.0, "parse": 0.0, "update": 0.0}
    for _ in range(args.rounds):
        best["raw"] = max(
            best["raw"], rate(lambda: raw_key.public_key.is_valid(signature, message), args.seconds)
        )
        best["parse"] = max(best["parse"], rate(lambda: parse_document(doc2), args.seconds))
        best["update"] = max(best["update"], rate(lambda: verify_next(p1, doc2), args.seconds))

    ratios = []
    deadline = time.perf_counter() + args.seconds * args.rounds
    while not ratios or time.perf_counter() < deadline:
        t0 = time.perf_counter()
        verify_next(p1, doc2)
        t1 = time.perf_counter()
        for _ in range(8):
            raw_key.public_key.is_valid(signature, message)
        ratios.append((t1 - t0) / (time.perf_counter() - t1))

    chain = [doc1]
    prev = p1
    for v in range(2, args.chain + 1):
        ids = range(v - 1, v + 6)  # one governance key rotated per version
        nxt = big_policy(v, ids)
        chain.append(sign_proposal(nxt, [gov(i) for i in range(v - 1, v + 4)]))
        prev = nxt
    start = time.perf_counter()
    final = TrustedPolicy(chain[0]).walk(chain[1:], now=T0)
    walk = time.perf_counter() - start
    assert final == prev

    print(
        f"policy document: {len(doc2)} bytes = "
        f"{len(doc2) / MAX_DOCUMENT_SIZE:.3f} of the {MAX_DOCUMENT_SIZE}-byte cap"
    )
    print(f"raw Ed25519 verify:       {best['raw']:10.0f} /s")
    print(f"parse document:           {best['parse']:10.1f} /s")
    print(f"verify one update:        {best['update']:10.1f} /s")
    print(
        f"update time / 8 raw Ed25519 verifications: {statistics.median(ratios):.1f}x "
        f"(median of {len(ratios)} interleaved blocks)"
    )
    print(f"{args.chain}-version chain ({args.chain - 1} updates) walked in {walk:.2f} s")


if __name__ == "__main__":
    main()
