"""Builders shared by the tests."""

from __future__ import annotations

import hashlib

from ledger.certid import CertId
from ledger.keys import SigningKey, key_id
from ledger.statement import Kind, Reason, Statement

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
