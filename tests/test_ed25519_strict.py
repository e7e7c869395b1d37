"""Strict Ed25519: the edge cases of "Taming the many EdDSAs" (Chalkias, Garillot, Nikolaenko, 2020).

Each case 0–11 is built here from the paper's definition of its conditions (order of A and R,
range of S, which verification equation holds, canonical or not) with plain Edwards arithmetic
(tests/ed25519_math.py); the builder asserts the conditions it claims, so a case cannot drift.
certledger's rule refuses all twelve: a small-order, mixed-order or non-canonical A is refused
when the key is parsed, and a signature needs S < L and a canonical R that is not of small order.
Cases 12–14 put the R-side edge cases under an honest (prime-order) key, where only the
signature checks can refuse them.

What we expect, and why (every case is refused; the first rule that fires is named):

    0  S = 0, small A, small R            reject: A is a small-order point (R too)
    1  small A, mixed R                   reject: A is a small-order point
    2  mixed A, small R                   reject: A is a mixed-order point (R small-order too)
    3  mixed A, mixed R, both equations   reject: A is a mixed-order point
    4  mixed A, mixed R, cofactored only  reject: A is a mixed-order point
    5  mixed A, order-L R, cofactored     reject: A is a mixed-order point
    6  S > L                              reject: S is not canonical (S < L required)
    7  S >> L                             reject: S is not canonical
    8  non-canonical R, hashed reduced    reject: A mixed-order; R not canonically encoded
    9  non-canonical R, hashed as sent    reject: A mixed-order; R not canonically encoded
    10 non-canonical A, hashed reduced    reject: A is not canonically encoded
    11 non-canonical A, hashed as sent    reject: A is not canonically encoded
    12 honest A, R = identity             reject: R is a small-order point
    13 honest A, mixed R                  reject: the cofactorless equation fails
    14 honest A, non-canonical R          reject: R is not canonically encoded

For comparison (measured when these tests were written, not asserted): libsodium's own
verify accepts case 3 only; OpenSSL's accepts cases 0, 1, 2, 3, 11 and 12.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import nacl.bindings
import pytest

from ledger.errors import MalformedError, SignatureError
from ledger.keys import SMALL_ORDER_Y, PublicKey, SigningKey, public_key_problem, signature_problem
from tests import ed25519_math as ed

NON_CANONICAL_IDENTITY = (ed.P + 1).to_bytes(32, "little")  # y = p + 1, which is y = 1 (the identity)
NON_CANONICAL_ORDER4 = ed.P.to_bytes(32, "little")  # y = p, which is y = 0 (a point of order 4)


@dataclass(frozen=True)
class Case:
    number: int
    title: str
    a: bytes
    r: bytes
    s: int
    message: bytes
    a_problem: str | None  # what PublicKey says about A (None: accepted)
    sig_problem: str | None  # what the signature checks say (None: passes them)

    @property
    def signature(self) -> bytes:
        return self.r + self.s.to_bytes(32, "little")


def _messages(number: int) -> Callable[[], bytes]:
    counter = iter(range(10_000))

    def nxt() -> bytes:
        return f"speccheck case {number} try {next(counter)}".encode()

    return nxt


def _scalar() -> int:
    return secrets.randbelow(ed.L - 1) + 1


@functools.cache
def torsion() -> ed.Point:
    t = ed.torsion_generator()
    assert ed.order_divides(8, t) and not ed.order_divides(4, t)
    return t


def _mixed_key() -> tuple[int, ed.Point]:
    a = _scalar()
    return a, ed.add(ed.mul(a, ed.BASE), torsion())


def _check(case_s: int, r: ed.Point, h: int, a: ed.Point, *, cofactored: bool, cofactorless: bool) -> None:
    assert ed.cofactored(case_s, r, h, a) is cofactored
    assert ed.cofactorless(case_s, r, h, a) is cofactorless


def case0() -> Case:
    """S = 0, A small, R small: both equations hold (R = -hA)."""
    a_pt, r_pt = torsion(), ed.IDENTITY
    a, r = ed.encode(a_pt), ed.encode(r_pt)
    nxt = _messages(0)
    while True:
        m = nxt()
        h = ed.challenge(r, a, m)
        if h % 8 == 0:
            break
    _check(0, r_pt, h, a_pt, cofactored=True, cofactorless=True)
    return Case(0, "S = 0, small A, small R", a, r, 0, m, "small-order point", "R is a small-order point")


def case1() -> Case:
    """0 < S < L, A small, R mixed: both equations hold."""
    a_pt, s, j = torsion(), _scalar(), 3
    r_pt = ed.add(ed.mul(s, ed.BASE), ed.mul(j, torsion()))
    a, r = ed.encode(a_pt), ed.encode(r_pt)
    nxt = _messages(1)
    while True:
        m = nxt()
        h = ed.challenge(r, a, m)
        if (j + h) % 8 == 0:
            break
    _check(s, r_pt, h, a_pt, cofactored=True, cofactorless=True)
    return Case(1, "small A, mixed R", a, r, s, m, "small-order point", None)


def case2() -> Case:
    """0 < S < L, A mixed, R small: both equations hold."""
    sk, a_pt = _mixed_key()
    j = 2
    r_pt = ed.mul(j, torsion())
    a, r = ed.encode(a_pt), ed.encode(r_pt)
    nxt = _messages(2)
    while True:
        m = nxt()
        h = ed.challenge(r, a, m)
        if (j + h) % 8 == 0:
            break
    s = h * sk % ed.L
    _check(s, r_pt, h, a_pt, cofactored=True, cofactorless=True)
    return Case(2, "mixed A, small R", a, r, s, m, "mixed-order point", "R is a small-order point")


def _mixed_mixed(number: int, *, residue: bool) -> Case:
    sk, a_pt = _mixed_key()
    rs, j = _scalar(), 1
    r_pt = ed.add(ed.mul(rs, ed.BASE), ed.mul(j, torsion()))
    a, r = ed.encode(a_pt), ed.encode(r_pt)
    nxt = _messages(number)
    while True:
        m = nxt()
        h = ed.challenge(r, a, m)
        if ((j + h) % 8 != 0) is residue:
            break
    s = (rs + h * sk) % ed.L
    _check(s, r_pt, h, a_pt, cofactored=True, cofactorless=not residue)
    title = "mixed A, mixed R, " + ("cofactored only" if residue else "both equations")
    return Case(number, title, a, r, s, m, "mixed-order point", None)


def case3() -> Case:
    """0 < S < L, A mixed, R mixed: both equations hold (torsion parts cancel)."""
    return _mixed_mixed(3, residue=False)


def case4() -> Case:
    """0 < S < L, A mixed, R mixed: cofactored holds, cofactorless fails."""
    return _mixed_mixed(4, residue=True)


def case5() -> Case:
    """0 < S < L, A mixed, R of order L: cofactored holds, cofactorless fails."""
    sk, a_pt = _mixed_key()
    rs = _scalar()
    r_pt = ed.mul(rs, ed.BASE)
    a, r = ed.encode(a_pt), ed.encode(r_pt)
    nxt = _messages(5)
    while True:
        m = nxt()
        h = ed.challenge(r, a, m)
        if h % 8 != 0:
            break
    s = (rs + h * sk) % ed.L
    _check(s, r_pt, h, a_pt, cofactored=True, cofactorless=False)
    return Case(5, "mixed A, order-L R, cofactored only", a, r, s, m, "mixed-order point", None)


def _honest(number: int) -> tuple[int, bytes, bytes]:
    """An honest signature (S, A, R): A = [a]B, R = [r]B, S = r + h·a mod L (S < L)."""
    sk, rs = _scalar(), _scalar()
    a_pt, r_pt = ed.mul(sk, ed.BASE), ed.mul(rs, ed.BASE)
    a, r = ed.encode(a_pt), ed.encode(r_pt)
    m = f"speccheck case {number}".encode()
    s = (rs + ed.challenge(r, a, m) * sk) % ed.L
    assert ed.cofactorless(s, r_pt, ed.challenge(r, a, m), a_pt)
    return s, a, r


def case6() -> Case:
    """S > L (S + L, below 2^253), A and R of order L: both equations hold for S mod L."""
    s, a, r = _honest(6)
    big = s + ed.L
    assert ed.L <= big < 2**253
    return Case(6, "S > L", a, r, big, b"speccheck case 6", None, "S is not canonical")


def case7() -> Case:
    """S >> L (S + k·L using the top bits of the 256-bit field), A and R of order L."""
    s, a, r = _honest(7)
    big = s + ((2**256 - 1 - s) // ed.L) * ed.L
    assert big >= 2**255
    return Case(7, "S >> L", a, r, big, b"speccheck case 7", None, "S is not canonical")


def _noncanonical_r(number: int, *, hash_reduced: bool) -> Case:
    """A mixed, R the non-canonical encoding (y = p + 1) of the identity; S = h·a.

    The equation holds when h is taken over the reduced R (case 8) or over the bytes as
    sent (case 9): a verifier that reduces R before hashing accepts one, the other the other.
    """
    sk, a_pt = _mixed_key()
    a, r = ed.encode(a_pt), NON_CANONICAL_IDENTITY
    r_pt = ed.decode_lax(r)
    assert r_pt is not None and ed.equal(r_pt, ed.IDENTITY) and ed.encode(r_pt) != r
    nxt = _messages(number)
    while True:
        m = nxt()
        h = ed.challenge(ed.encode(r_pt) if hash_reduced else r, a, m)
        if h % 8 == 0:
            break
    s = h * sk % ed.L
    _check(s, r_pt, h, a_pt, cofactored=True, cofactorless=True)
    how = "hashed reduced" if hash_reduced else "hashed as sent"
    return Case(number, f"non-canonical R ({how})", a, r, s, m, "mixed-order point", "R is not canonically")


def _noncanonical_a(number: int, *, hash_reduced: bool) -> Case:
    """A the non-canonical encoding (y = p) of a point of order 4, R mixed."""
    a = NON_CANONICAL_ORDER4
    a_pt = ed.decode_lax(a)
    assert a_pt is not None and ed.order_divides(4, a_pt) and ed.encode(a_pt) != a
    s = _scalar()
    j = 1  # R = [s]B + [j]A must equal [s]B - [h]A: j + h = 0 mod 4
    r_pt = ed.add(ed.mul(s, ed.BASE), ed.mul(j, a_pt))
    r = ed.encode(r_pt)
    nxt = _messages(number)
    while True:
        m = nxt()
        h = ed.challenge(r, ed.encode(a_pt) if hash_reduced else a, m)
        if (j + h) % 4 == 0:
            break
    _check(s, r_pt, h, a_pt, cofactored=True, cofactorless=True)
    how = "hashed reduced" if hash_reduced else "hashed as sent"
    return Case(number, f"non-canonical A ({how})", a, r, s, m, "not canonically encoded", None)


def case12() -> Case:
    """An honest key and R = the identity, S = h·a: the cofactorless equation holds."""
    sk = _scalar()
    a_pt = ed.mul(sk, ed.BASE)
    a, r = ed.encode(a_pt), ed.encode(ed.IDENTITY)
    m = b"speccheck case 12"
    h = ed.challenge(r, a, m)
    s = h * sk % ed.L
    _check(s, ed.IDENTITY, h, a_pt, cofactored=True, cofactorless=True)
    return Case(12, "honest A, identity R", a, r, s, m, None, "R is a small-order point")


def case13() -> Case:
    """An honest key and a mixed-order R: cofactored holds, cofactorless fails."""
    sk, rs = _scalar(), _scalar()
    a_pt = ed.mul(sk, ed.BASE)
    r_pt = ed.add(ed.mul(rs, ed.BASE), torsion())
    a, r = ed.encode(a_pt), ed.encode(r_pt)
    m = b"speccheck case 13"
    h = ed.challenge(r, a, m)
    s = (rs + h * sk) % ed.L
    _check(s, r_pt, h, a_pt, cofactored=True, cofactorless=False)
    return Case(13, "honest A, mixed R", a, r, s, m, None, None)


def case14() -> Case:
    """An honest key and R the non-canonical identity (y = p + 1), S = h·a (h over the bytes sent)."""
    sk = _scalar()
    a_pt = ed.mul(sk, ed.BASE)
    a, r = ed.encode(a_pt), NON_CANONICAL_IDENTITY
    m = b"speccheck case 14"
    h = ed.challenge(r, a, m)
    s = h * sk % ed.L
    _check(s, ed.IDENTITY, h, a_pt, cofactored=True, cofactorless=True)
    return Case(14, "honest A, non-canonical R", a, r, s, m, None, "R is not canonically")


BUILDERS: dict[int, Callable[[], Case]] = {
    0: case0,
    1: case1,
    2: case2,
    3: case3,
    4: case4,
    5: case5,
    6: case6,
    7: case7,
    8: lambda: _noncanonical_r(8, hash_reduced=True),
    9: lambda: _noncanonical_r(9, hash_reduced=False),
    10: lambda: _noncanonical_a(10, hash_reduced=True),
    11: lambda: _noncanonical_a(11, hash_reduced=False),
    12: case12,
    13: case13,
    14: case14,
}


@pytest.mark.parametrize("number", sorted(BUILDERS))
def test_speccheck_case_is_refused(number: int) -> None:
    """Every case is refused, at the key (A) or at the signature, and the reason names the rule."""
    case = BUILDERS[number]()
    assert (public_key_problem(case.a) is None) is (case.a_problem is None), public_key_problem(case.a)
    if case.a_problem is not None:
        with pytest.raises(MalformedError, match=f"^public key is (a |not )?{case.a_problem}"):
            PublicKey(raw=case.a)
    problem = signature_problem(case.signature)
    if case.sig_problem is None:
        assert problem is None
    else:
        assert problem is not None and case.sig_problem in problem
    if case.a_problem is None:
        key = PublicKey(raw=case.a)
        assert not key.is_valid(case.signature, case.message)
        with pytest.raises(SignatureError, match=r"^signature does not verify"):
            key.verify(case.signature, case.message)


def test_speccheck_s_reduced_would_verify() -> None:
    """Cases 6 and 7 are honest but for S: reduced mod L they verify, so only S < L refuses them."""
    for case in (case6(), case7()):
        key = PublicKey(raw=case.a)
        fixed = case.r + (case.s % ed.L).to_bytes(32, "little")
        assert key.is_valid(fixed, case.message)
        with pytest.raises(SignatureError, match=r"S is not canonical \(S is not below L\)"):
            key.verify(case.signature, case.message)


def test_mixed_order_key_passes_libsodium_alone_but_not_ours() -> None:
    """Case 3 (both equations hold, torsion in A and R cancels) is why the key parse checks the subgroup:
    libsodium's cofactorless verify does not look for a torsion component in A."""
    case = case3()
    nacl.bindings.crypto_sign_open(case.signature + case.message, case.a)  # libsodium accepts it
    with pytest.raises(MalformedError, match="mixed-order point"):
        PublicKey(raw=case.a)


def _all_small_order_encodings() -> list[bytes]:
    """Every 32-byte string that a lax decoder reads as a point of order dividing 8."""
    out = []
    for pt in ed.small_order_points():
        y = ed.encode(pt)
        n = int.from_bytes(y, "little")
        ys = [n & (2**255 - 1)]
        if ys[0] + ed.P < 2**255:
            ys.append(ys[0] + ed.P)  # the non-canonical y
        for yv in ys:
            for sign in (0, 1):
                enc = (yv | (sign << 255)).to_bytes(32, "little")
                dec = ed.decode_lax(enc)
                if dec is not None and ed.equal(dec, pt):
                    out.append(enc)
    return sorted(set(out))


def test_small_order_table_matches_the_torsion_subgroup() -> None:
    ys = set()
    for pt in ed.small_order_points():
        assert ed.order_divides(8, pt)
        ys.add(int.from_bytes(ed.encode(pt), "little") & (2**255 - 1))
    assert ys == SMALL_ORDER_Y


def test_every_small_order_encoding_is_refused_naming_the_rule() -> None:
    encodings = _all_small_order_encodings()
    assert len(encodings) == 14  # 8 canonical, 2 with a sign bit on x = 0, 4 with y >= p
    for enc in encodings:
        y = int.from_bytes(enc, "little") & (2**255 - 1)
        rule = "not canonically encoded" if y >= ed.P else "a small-order point"
        with pytest.raises(MalformedError, match=f"^public key is {rule}"):
            PublicKey(raw=enc)
        problem = signature_problem(enc + bytes(32))
        assert problem is not None and ("small-order" in problem or "not canonically" in problem)


def test_off_curve_key_is_refused() -> None:
    y = next(y for y in range(2, 100) if ed.recover_x(y, 0) is None)
    with pytest.raises(MalformedError, match=r"^public key is not a point on the curve$"):
        PublicKey(raw=y.to_bytes(32, "little"))


def test_honest_keys_and_signatures_pass_the_strict_checks() -> None:
    for _ in range(20):
        k = SigningKey.generate()
        msg = secrets.token_bytes(40)
        sig = k.sign(msg)
        assert public_key_problem(k.public_key.raw) is None
        assert signature_problem(sig) is None
        k.public_key.verify(sig, msg)
