"""Builders shared by the tests."""

from __future__ import annotations

import hashlib

from hypothesis import strategies as st

from ledger.keys import SigningKey, key_id
from ledger.log.certid import CertId
from ledger.log.statement import Kind, Reason, Statement

ORIGIN = "ledger.example.gov.cn/hangzhou-xihu-amr"
ISSUER = "hangzhou-xihu-amr"
T0 = 1_717_171_200  # 2024-05-31T16:00:00Z, i.e. 2024-06-01 00:00 in China


def cert_id(
    serial: int, *, type_code: str = "11100000000013338W032", issuer_code: str = "11330106MB1234567X"
) -> str:
    return str(CertId(type_code=type_code, issuer_code=issuer_code, serial=str(serial), version="001"))


def issue(serial: int, *, time: int = T0, claims: int = 3) -> Statement:
    return Statement(
        kind=Kind.ISSUE,
        issuer=ISSUER,
        cert_id=cert_id(serial),
        cert_type="business_licence",
        time=time + serial,
        operator="op:7f3a9c",
        valid_from=time,
        valid_until=time + 5 * 365 * 86400,
        claim_digests={i: hashlib.sha256(f"{serial}/{i}".encode()).digest() for i in range(claims)},
    )


def revoke(serial: int, *, time: int = T0) -> Statement:
    return Statement(
        kind=Kind.REVOKE,
        issuer=ISSUER,
        cert_id=cert_id(serial),
        cert_type="business_licence",
        time=time + 10**6 + serial,
        operator="op:7f3a9c",
        reason=Reason.ISSUED_IN_ERROR,
    )


def log_key(seed: int = 1) -> tuple[SigningKey, bytes]:
    k = SigningKey.from_seed(bytes([seed]) * 32)
    return k, key_id(ORIGIN, 1, k.public_key.raw)


def mutate(data: st.DataObject, seed: bytes, *, max_ops: int = 3, max_insert: int = 3) -> bytes:
    """``seed`` after 1..max_ops random edits: bit flips, insertions, deletions, truncation."""
    msg = bytearray(seed)
    for _ in range(data.draw(st.integers(1, max_ops))):
        i = data.draw(st.integers(0, max(len(msg) - 1, 0)))
        op = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if op == "flip" and msg:
            msg[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "insert":
            msg[i:i] = data.draw(st.binary(min_size=1, max_size=max_insert))
        elif op == "delete" and msg:
            del msg[i]
        else:
            del msg[i:]
    return bytes(msg)
