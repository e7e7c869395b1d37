"""Verifying a presentation end to end next to raw Ed25519 verification, interleaved in one run.

Not a test. The market regulator of the test consortium issues licences into its log
and signs a checkpoint that the two other members' witnesses cosign; the verifier
holds the trust policy, a copy of that log (with its certificate index) and the
witnessed checkpoint. One verification, as the verifier service does it:

1. parse the ``CL1:`` QR text strictly and check it against the trust policy
   (:func:`ledger.credential.presentation.check_presentation`: issuer, mandate,
   claims, the statement signature over the rebuilt statement, the purpose);
2. find the certificate's statements in the certificate index (one lookup);
3. read the entry's ``prev`` and inclusion proof in one query
   (:meth:`ledger.log.store.LogStore.entry_proof`), rebuild the entry from the checked
   statement, and verify the tlog-proof under the witnessed checkpoint with the
   policy's witness quorum (:func:`ledger.log.tlogproof.verify`; the checkpoint's
   signatures are checked once and then remembered by its exact bytes);
4. check the log key's validity at the statement time and before it was witnessed.

Each block verifies a batch of distinct presentations; right before or after it (the
order alternates) libsodium through PyNaCl verifies as many statement signatures of
the same messages: the yardstick. Prints per-block rates and ratios and their median.

A second series measures the public entry point the verifier service and
``certledger verify`` use, :func:`verifier.core.verify`, on a replica synced from the
log's tiles (:class:`ledger.replica.sync.Replica`): the same steps plus the status from
every member's log, freshness and the verdict with its reasons, interleaved with the
same yardstick, then timed step by step. Presentations are verified in a random order
(fixed seed), as they would arrive, not in log order.

Usage, with the package installed (``pip install -e .``):
``python bench/bench_verify.py [--certificates N] [--blocks B] [--full] [--dir DIR]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import nacl.signing

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ledger.credential.issuing import IssueRequest, issue_credentials
from ledger.credential.presentation import Presentation, check_presentation, verify_presentation
from ledger.errors import VerificationError
from ledger.log import tlogproof
from ledger.log.checkpoint import CosignatureSigner, cosign
from ledger.log.index import IndexKind
from ledger.log.statement import encode_entry, statement_message
from ledger.log.store import LogStore
from ledger.replica import tiles
from ledger.replica.fetch import DirectoryFetcher
from ledger.replica.store import ReplicaStore
from ledger.replica.sync import Replica
from tests.fixtures.consortium import (
    AMR,
    AMR_KEY,
    BUSINESS_LICENCE,
    HEALTH,
    POLICY,
    PSB,
    key,
    reference_licence,
)
from verifier import core
from verifier.verdict import Code

PURPOSE = "identity"
WITNESS_SEEDS = {HEALTH.id: 52, PSB.id: 53}  # the fixture's witness keys


def verify(text: str, *, store: LogStore, witnessed: bytes, size: int, now: int) -> None:
    """One full verification (steps 1 to 4 of the module docstring); ``size`` is the
    witnessed checkpoint's tree size, which the verifier learnt when it synced."""
    checked = check_presentation(text, policy=POLICY, now=now, purpose=PURPOSE)
    own = (IndexKind.ISSUE, IndexKind.REPLACE)
    index = next(e.index for e in store.cert_history(checked.cert_id) if e.kind in own)
    prev, hashes = store.entry_proof(index, size)
    signed = checked.signed
    entry = encode_entry(
        statement_bytes=signed.statement_bytes, key_id=signed.key_id, signature=signed.signature, prev=prev
    )
    opened = tlogproof.verify(
        tlogproof.TlogProof(index=index, proof=tuple(hashes), checkpoint=witnessed),
        log_key=checked.issuer.log_verifier_key(checked.log_key),
        leaf=entry,
        witnesses=list(POLICY.witness_keys(checked.issuer.id).values()),
        quorum=POLICY.witness_quorum,
    )
    POLICY.log_key(
        checked.issuer.id,
        signed.key_id,
        at=checked.statement.time,
        witnessed_at=max(opened.cosignatures.values()),
    )


def raw_verify(messages: list[tuple[bytes, bytes]], verify_key: nacl.signing.VerifyKey) -> float:
    """Seconds libsodium takes to verify ``(message, signature)`` pairs on this core."""
    check = verify_key.verify
    t = time.perf_counter()
    for message, signature in messages:
        check(message, signature)
    return time.perf_counter() - t


def breakdown(
    texts: list[str],
    messages: list[tuple[bytes, bytes]],
    verify_key: nacl.signing.VerifyKey,
    *,
    store: LogStore,
    witnessed: bytes,
    now: int,
) -> None:
    """Time the steps of a verification separately, in raw verifications' worth (each
    step over all presentations in turn, so the sum is below a whole verification)."""
    n = len(texts)
    t = time.perf_counter()
    parsed = [Presentation.from_text(text) for text in texts]
    t_parse = time.perf_counter() - t
    t = time.perf_counter()
    checked = [verify_presentation(p, policy=POLICY, now=now, purpose=PURPOSE) for p in parsed]
    t_check = time.perf_counter() - t
    t = time.perf_counter()
    found = [store.cert_history(c.cert_id)[0].index for c in checked]
    t_index = time.perf_counter() - t
    t = time.perf_counter()
    proofs = [store.entry_proof(i, store.size) for i in found]
    t_read = time.perf_counter() - t
    witnesses = list(POLICY.witness_keys(AMR.id).values())
    t = time.perf_counter()
    for c, i, (prev, hashes) in zip(checked, found, proofs, strict=True):
        s = c.signed
        entry = encode_entry(
            statement_bytes=s.statement_bytes, key_id=s.key_id, signature=s.signature, prev=prev
        )
        tlogproof.verify(
            tlogproof.TlogProof(index=i, proof=tuple(hashes), checkpoint=witnessed),
            log_key=c.issuer.log_verifier_key(c.log_key),
            leaf=entry,
            witnesses=witnesses,
            quorum=POLICY.witness_quorum,
        )
    t_proof = time.perf_counter() - t
    t_raw = raw_verify(messages[:n], verify_key)
    print(f"steps of a verification, each timed alone (µs each over {n:,}; in raw verifications):")
    for label, dt in (
        ("parse the QR text (Base45, inflate, msgpack)", t_parse),
        ("check against the policy (rebuild, verify)", t_check),
        ("certificate index lookup", t_index),
        ("read prev and proof hashes (one query)", t_read),
        ("rebuild the entry, check the tlog-proof", t_proof),
        ("raw libsodium verification", t_raw),
    ):
        print(f"  {label:46s} {dt / n * 1e6:7.1f}   {dt / t_raw:5.2f}")


def publish(store: LogStore, note: bytes, directory: Path) -> None:
    """Write the log's tiles, entry bundles and witnessed checkpoint as a static copy."""
    for t in tiles.tiles_for_size(store.size):
        if t.is_entries:
            first = t.index * tiles.TILE_WIDTH
            data = tiles.encode_bundle(list(store.entries(first, first + t.width)))
        else:
            data = tiles.tile_from_hashes(t, store.read_hashes)
        path = directory / t.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (directory / "checkpoint").write_bytes(note)


def verdict_blocks(
    texts: list[str],
    messages: list[tuple[bytes, bytes]],
    verify_key: nacl.signing.VerifyKey,
    *,
    replica: ReplicaStore,
    blocks: int,
    now: int,
) -> tuple[int, float, float, list[float]]:
    """Blocks of :func:`verifier.core.verify` interleaved with the raw yardstick."""
    print(f"{'block':>5} {'verdicts/s':>10} {'raw verify/s':>12} {'ratio':>6}   (verifier.core.verify)")
    return interleaved(
        texts,
        messages,
        verify_key,
        blocks=blocks,
        raw_first_on_even=True,
        one=lambda text: core.verify(text, policy=POLICY, replica_view=replica, now=now, purpose=PURPOSE),
    )


def interleaved(
    texts: list[str],
    messages: list[tuple[bytes, bytes]],
    verify_key: nacl.signing.VerifyKey,
    *,
    blocks: int,
    raw_first_on_even: bool,
    one: Callable[[str], object],
) -> tuple[int, float, float, list[float]]:
    """``blocks`` blocks of ``one(text)`` over distinct texts, each right before or after
    (alternating) the raw yardstick over the same statements; prints each block's rates."""
    per_block = max(1, len(texts) // blocks)
    ratios: list[float] = []
    total_full = total_raw = 0.0
    done = 0
    for block in range(blocks):
        lo = (block * per_block) % len(texts)
        chunk, pairs = texts[lo : lo + per_block], messages[lo : lo + per_block]
        raw_first = (block % 2 == 0) == raw_first_on_even
        t_raw = raw_verify(pairs, verify_key) if raw_first else 0.0
        t = time.perf_counter()
        for text in chunk:
            one(text)
        t_full = time.perf_counter() - t
        if not raw_first:
            t_raw = raw_verify(pairs, verify_key)
        full_rate, raw_rate = len(chunk) / t_full, len(pairs) / t_raw
        ratios.append(full_rate / raw_rate)
        total_full += t_full
        total_raw += t_raw
        done += len(chunk)
        print(f"{block + 1:5d} {full_rate:10,.0f} {raw_rate:12,.0f} {ratios[-1]:6.2f}", flush=True)
    return done, total_full, total_raw, ratios


def verdict_breakdown(
    texts: list[str],
    messages: list[tuple[bytes, bytes]],
    verify_key: nacl.signing.VerifyKey,
    *,
    replica: ReplicaStore,
    now: int,
) -> None:
    """Time the public parts of :func:`verifier.core.verify` separately (each over all
    presentations in turn), and the whole; the rest is the inclusion proof from the
    replica, status, freshness and the verdict, and also what the parts cost beyond
    their separate timings when they run one after another for each presentation
    (colder caches). Measured once: the three parts cost about 30 µs more interleaved
    than in turn; leaving the proof out of a whole verification saved about 15 µs, the
    status under 1 µs."""
    n = len(texts)
    t = time.perf_counter()
    state = replica.state()
    parsed = [Presentation.from_text(text) for text in texts]
    t_parse = time.perf_counter() - t
    t = time.perf_counter()
    checked = [verify_presentation(p, policy=POLICY, now=now, purpose=PURPOSE) for p in parsed]
    t_check = time.perf_counter() - t
    t = time.perf_counter()
    for c in checked:
        replica.lookup(c.issuer.id, c.signed.statement_bytes, c.cert_id, state=state)
    t_lookup = time.perf_counter() - t
    t = time.perf_counter()
    for text in texts:
        core.verify(text, policy=POLICY, replica_view=replica, now=now, purpose=PURPOSE)
    t_all = time.perf_counter() - t
    t_raw = raw_verify(messages[:n], verify_key)
    print(f"steps of verifier.core.verify, each timed alone (µs each over {n:,}; in raw verifications):")
    for label, dt in (
        ("parse the QR text (Base45, inflate, msgpack)", t_parse),
        ("check against the policy (rebuild, verify)", t_check),
        ("replica: entry, proof siblings, status (1 query)", t_lookup),
        ("the rest (whole less the parts): proof, status...", t_all - t_parse - t_check - t_lookup),
        ("the whole verifier.core.verify", t_all),
        ("raw libsodium verification", t_raw),
    ):
        print(f"  {label:46s} {dt / n * 1e6:7.1f}   {dt / t_raw:5.2f}")


def run(args: argparse.Namespace, work: Path) -> None:
    ref = reference_licence()
    at = ref["valid_from"] + 10 * 3600
    now = at + 600
    store = LogStore.create(work / "amr.db", origin=AMR.origin)
    requests = [
        IssueRequest(
            cert_type=BUSINESS_LICENCE,
            serial=str(1000 + i),
            claims={**ref["claims"], "name": f"{ref['claims']['name']}{i}"},
            operator="op:7f3a9c",
            valid_from=ref["valid_from"],
            valid_until=ref["valid_until"],
        )
        for i in range(args.certificates)
    ]
    issued = []
    for lo in range(0, len(requests), 1000):
        issued += issue_credentials(requests[lo : lo + 1000], issuer=AMR, key=AMR_KEY, store=store, time=at)
    witnessed = store.checkpoint(AMR_KEY)
    for member_id, seed in WITNESS_SEEDS.items():
        name = POLICY.witness_keys(AMR.id)[member_id].name
        witnessed = cosign(witnessed, CosignatureSigner(name=name, key=key(seed)), timestamp=at + 60)
    size = store.size
    reveal = None if args.full else BUSINESS_LICENCE.purposes[PURPOSE]
    # verified in a random order (a fixed one), as presentations arrive, not in log order
    issued = random.Random(7).sample(issued, len(issued))
    texts = [i.credential.to_qr_text(reveal) for i in issued]
    messages = [
        (statement_message(i.credential.signed.statement_bytes), i.credential.signed.signature)
        for i in issued
    ]
    verify_key = nacl.signing.VerifyKey(AMR_KEY.public_key.raw)
    # warm up, and make sure every presentation verifies and a forged one does not
    for text in texts[: min(50, len(texts))]:
        verify(text, store=store, witnessed=witnessed, size=size, now=now)
    forged = issued[0].credential.present(["uscc", "name"])
    forged = dataclasses.replace(forged, signature=bytes(64))
    try:
        verify(forged.to_text(), store=store, witnessed=witnessed, size=size, now=now)
    except VerificationError:
        pass
    else:
        raise SystemExit("a forged presentation verified")
    print(
        f"{len(texts):,} "
        + (
            f"full presentations ({len(BUSINESS_LICENCE.claims)} claims), "
            if args.full
            else f"selective presentations ({PURPOSE}: {', '.join(BUSINESS_LICENCE.purposes[PURPOSE])}), "
        )
        + f"{statistics.mean(len(t) for t in texts):.0f} characters; log of {store.size:,} entries, "
        f"checkpoint cosigned by {len(WITNESS_SEEDS)} witnesses (quorum {POLICY.witness_quorum})"
    )
    print(f"{'block':>5} {'verified/s':>10} {'raw verify/s':>12} {'ratio':>6}")
    done, total_full, total_raw, ratios = interleaved(
        texts,
        messages,
        verify_key,
        blocks=args.blocks,
        raw_first_on_even=False,
        one=lambda text: verify(text, store=store, witnessed=witnessed, size=size, now=now),
    )
    breakdown(texts[: min(len(texts), 500)], messages, verify_key, store=store, witnessed=witnessed, now=now)
    publish(store, witnessed, work / "tiles")
    store.close()
    replica = ReplicaStore.open(work / "replica.db")
    synced = Replica(store=replica, policy=POLICY, member_id=AMR.id, clock=lambda: now).sync(
        [DirectoryFetcher(root=work / "tiles")]
    )
    if not synced.ok:
        raise SystemExit(f"the replica did not sync: {synced.refused}")
    for text in texts[: min(50, len(texts))]:
        verdict = core.verify(text, policy=POLICY, replica_view=replica, now=now, purpose=PURPOSE)
        if verdict.code != Code.VALID:
            raise SystemExit(f"not VALID through verifier.core.verify: {verdict.reason_en}")
    if core.verify(forged.to_text(), policy=POLICY, replica_view=replica, now=now).code != Code.BAD_SIGNATURE:
        raise SystemExit("a forged presentation was not refused through verifier.core.verify")
    v_done, v_full, v_raw, v_ratios = verdict_blocks(
        texts, messages, verify_key, replica=replica, blocks=args.blocks, now=now
    )
    verdict_breakdown(texts[: min(len(texts), 500)], messages, verify_key, replica=replica, now=now)
    replica.close()
    print()
    print(f"full verifications:          {done / total_full:10,.0f} /s  (QR text to verdict, proof included)")
    print(
        f"raw libsodium verification:  {done / total_raw:10,.0f} /s  (PyNaCl, the same statement signatures)"
    )
    print(
        f"verifying / raw verify:      {statistics.median(ratios):10.2f}   "
        f"(median of {len(ratios)} per-block ratios)"
    )
    print(
        f"verdicts (verifier.core.verify): {v_done / v_full:7,.0f} /s  (replica, status, freshness; "
        f"raw {v_done / v_raw:,.0f} /s alongside)"
    )
    print(
        f"verdicts / raw verify:       {statistics.median(v_ratios):10.2f}   "
        f"(median of {len(v_ratios)} per-block ratios)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--certificates", type=int, default=4000, help="certificates issued (default 4,000)")
    ap.add_argument("--blocks", type=int, default=8, help="measured blocks (default 8)")
    ap.add_argument("--full", action="store_true", help="full disclosures (default: selective, 2 claims)")
    ap.add_argument("--dir", type=Path, help="where to put the log (default: a temporary directory)")
    args = ap.parse_args()
    if args.dir:
        args.dir.mkdir(parents=True, exist_ok=True)
        run(args, args.dir)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp:
            run(args, Path(tmp))


if __name__ == "__main__":
    main()
