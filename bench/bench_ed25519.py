"""Ed25519 sign and verify rates: libsodium (PyNaCl) next to OpenSSL (``cryptography``), one run.

Not a test. Each round times one block of each contender back to back, in an order that
rotates every round, so both see the same machine state; the ratios printed are medians
of the per-round ratios. Contenders:

* ``libsodium``: PyNaCl's raw bindings (``crypto_sign`` / ``crypto_sign_open``);
* ``openssl``: ``cryptography``'s Ed25519PrivateKey.sign / Ed25519PublicKey.verify;
* ``certledger``: :class:`ledger.keys.SigningKey` / :class:`ledger.keys.PublicKey`, the
  public entry point every statement, checkpoint, cosignature and audit goes through
  (libsodium plus the strict S, R and A checks).

Usage, with the package installed (``pip install -e .``):
``python bench/bench_ed25519.py [--rounds R] [--block N] [--message-bytes M]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import nacl.bindings
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.keys import SigningKey


def block_rate(fn: Callable[[], object], n: int) -> float:
    """Calls per second of ``fn`` over one block of ``n`` calls."""
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--rounds", type=int, default=30, help="interleaved rounds (median ratio counts)")
    ap.add_argument("--block", type=int, default=2000, help="calls per contender per round")
    ap.add_argument("--message-bytes", type=int, default=300, help="message size (a statement is ~300 B)")
    args = ap.parse_args()

    seed = bytes(range(32))
    message = bytes(i % 251 for i in range(args.message_bytes))
    ours = SigningKey.from_seed(seed)
    ours_public = ours.public_key
    openssl = Ed25519PrivateKey.from_private_bytes(seed)
    openssl_public = openssl.public_key()
    public, secret = nacl.bindings.crypto_sign_seed_keypair(seed)
    signature = ours.sign(message)
    assert signature == openssl.sign(message) == nacl.bindings.crypto_sign(message, secret)[:64]
    signed = signature + message

    sign_fns: dict[str, Callable[[], object]] = {
        "libsodium": lambda: nacl.bindings.crypto_sign(message, secret)[:64],
        "openssl": lambda: openssl.sign(message),
        "certledger": lambda: ours.sign(message),
    }
    verify_fns: dict[str, Callable[[], object]] = {
        "libsodium": lambda: nacl.bindings.crypto_sign_open(signed, public),
        "openssl": lambda: openssl_public.verify(signature, message),
        "certledger": lambda: ours_public.verify(signature, message),
    }
    names = list(sign_fns)
    rates: dict[tuple[str, str], list[float]] = {(op, n): [] for op in ("sign", "verify") for n in names}
    ratios: dict[str, list[float]] = {
        k: []
        for k in (
            "sign libsodium/openssl",
            "sign certledger/openssl",
            "verify libsodium/openssl",
            "verify certledger/openssl",
            "verify certledger/libsodium",
        )
    }
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        got: dict[tuple[str, str], float] = {}
        for op, fns in (("sign", sign_fns), ("verify", verify_fns)):
            for name in order:
                got[(op, name)] = block_rate(fns[name], args.block)
                rates[(op, name)].append(got[(op, name)])
        ratios["sign libsodium/openssl"].append(got[("sign", "libsodium")] / got[("sign", "openssl")])
        ratios["sign certledger/openssl"].append(got[("sign", "certledger")] / got[("sign", "openssl")])
        ratios["verify libsodium/openssl"].append(got[("verify", "libsodium")] / got[("verify", "openssl")])
        ratios["verify certledger/openssl"].append(got[("verify", "certledger")] / got[("verify", "openssl")])
        ratios["verify certledger/libsodium"].append(
            got[("verify", "certledger")] / got[("verify", "libsodium")]
        )

    print(
        f"Ed25519, {args.message_bytes}-byte message, {args.rounds} interleaved rounds of {args.block} calls"
    )
    for op in ("sign", "verify"):
        for name in names:
            print(f"  {op:6} {name:10}  median {statistics.median(rates[(op, name)]):10,.0f} /s")
    print("ratios (median of per-round ratios):")
    for label, values in ratios.items():
        print(f"  {label:28} {statistics.median(values):5.2f}x")


if __name__ == "__main__":
    main()
