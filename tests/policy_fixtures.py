"""Builders for trust-policy tests: deterministic keys, members, types and policies."""

from __future__ import annotations

import dataclasses
from typing import Any

from ledger.keys import SIG_TYPE_COSIGNATURE, SigningKey, VerifierKey
from ledger.trust.policy import CertificateType, ClaimSpec, LogKey, Mandate, Member, Policy, mandates

#: The name every test policy gives its consortium.
CONSORTIUM = "consortium.example.gov.cn"
T0 = 1_717_171_200  # 2024-05-31T16:00:00Z
DAY = 86_400
YEAR = 365 * DAY


def seed_key(tag: str, n: int) -> SigningKey:
    """A deterministic key: the seed is the tag and number, padded to 32 bytes."""
    return SigningKey.from_seed(f"{tag}:{n}".encode().ljust(32, b"."))


def gov_key(n: int) -> SigningKey:
    return seed_key("gov", n)


def gov_name(n: int) -> str:
    return f"gov-{n}.consortium.example.gov.cn"


def gov_verifier(n: int) -> VerifierKey:
    return VerifierKey(name=gov_name(n), public_key=gov_key(n).public_key)


def origin(member_id: str) -> str:
    return f"ledger.example.gov.cn/{member_id}"


def log_signing_key(member_id: str, n: int = 0) -> SigningKey:
    return seed_key(f"log/{member_id}", n)


def witness_signing_key(member_id: str) -> SigningKey:
    return seed_key(f"witness/{member_id}", 0)


def member(member_id: str, name: str, code: str, *, log_keys: tuple[LogKey, ...] | None = None) -> Member:
    keys = log_keys or (LogKey(public_key=log_signing_key(member_id).public_key, valid_from=T0 - YEAR),)
    return Member(
        id=member_id,
        name=name,
        origin=origin(member_id),
        issuer_code=code,
        base_url=f"https://{member_id}.example.gov.cn/ledger",
        log_keys=keys,
        witness_key=VerifierKey(
            name=f"witness.example.gov.cn/{member_id}",
            public_key=witness_signing_key(member_id).public_key,
            sig_type=SIG_TYPE_COSIGNATURE,
        ),
    )


def members() -> tuple[Member, ...]:
    return (
        member("hz-amr", "杭州市市场监督管理局", "11330100002489657X"),
        member("hz-psb", "杭州市公安局", "11330100002489000A"),
        member("hz-health", "杭州市卫生健康委员会", "11330100002489111B"),
    )


def business_licence(
    issuers: tuple[str, ...] = ("hz-amr",), revokers: tuple[str, ...] = ("hz-amr",)
) -> CertificateType:
    return CertificateType(
        code="business_licence",
        name="营业执照",
        national_code="11100000000013338W032",
        claims=(
            ClaimSpec(key=0, name="entity_name", label="名称"),
            ClaimSpec(key=1, name="uscc", label="统一社会信用代码", kind="code", max_length=18),
            ClaimSpec(key=2, name="legal_rep", label="法定代表人"),
            ClaimSpec(key=3, name="established", label="成立日期", kind="date", required=False),
        ),
        issuers=mandates(*issuers),
        revokers=mandates(*revokers),
        max_validity_days=None,
        purposes={"tender": ("entity_name", "uscc")},
    )


def health_cert() -> CertificateType:
    return CertificateType(
        code="health_cert",
        name="健康证明",
        national_code="11100000MB0143212A001",
        claims=(
            ClaimSpec(key=0, name="holder", label="姓名"),
            ClaimSpec(key=1, name="exam_date", label="体检日期", kind="date"),
        ),
        issuers=mandates("hz-health"),
        revokers=mandates("hz-health", "hz-amr"),
        max_validity_days=365,
    )


def make_policy(
    *, version: int = 1, gov: tuple[int, ...] = (0, 1, 2), threshold: int = 2, **changes: Any
) -> Policy:
    p = Policy(
        consortium=CONSORTIUM,
        version=version,
        issued=T0,
        expires=T0 + YEAR,
        members=members(),
        types=(business_licence(), health_cert()),
        witness_quorum=1,
        freshness_seconds=DAY,
        governance_keys=tuple(gov_verifier(n) for n in gov),
        governance_threshold=threshold,
    )
    return dataclasses.replace(p, **changes) if changes else p


def sign(policy: Policy, *gov: int) -> bytes:
    """The policy's signed document, signed by the governance keys numbered ``gov``."""
    from ledger.trust.policy_doc import sign_proposal

    return sign_proposal(policy, [(gov_name(n), gov_key(n)) for n in gov])


def rotate(p: Policy, version: int) -> Policy:
    """Version ``version`` of a chain, issued ``version`` minutes after T0: governance
    keys slide by one (k-1, k, k+1) and hz-amr's log key is rotated (from ``version``
    days after T0), so every step changes keys."""
    at = T0 + version * DAY
    amr = p.members[0]
    old = tuple(dataclasses.replace(k, valid_until=at) if k.valid_until is None else k for k in amr.log_keys)
    new = LogKey(public_key=log_signing_key("hz-amr", version).public_key, valid_from=at)
    amr = dataclasses.replace(amr, log_keys=(*old, new))
    return dataclasses.replace(
        p,
        version=version,
        issued=T0 + version * 60,
        members=(amr, *p.members[1:]),
        governance_keys=tuple(gov_verifier(n) for n in (version - 1, version, version + 1)),
    )


def make_chain(n: int) -> tuple[list[Policy], list[bytes]]:
    """Policies 1..n and their documents; version k is signed by keys k-1, k and k+1."""
    policies = [make_policy(gov=(0, 1, 2))]
    docs = [sign(policies[0], 0, 1, 2)]
    for v in range(2, n + 1):
        policies.append(rotate(policies[-1], v))
        docs.append(sign(policies[-1], v - 1, v, v + 1))
    return policies, docs


def docs_example() -> bytes:
    """The signed example shown in docs/trust-policy.md (Ed25519 signatures are
    deterministic, so this is byte-for-byte reproducible)."""
    amr, psb = members()[:2]
    licence = dataclasses.replace(
        business_licence(),
        revokers=(Mandate(member="hz-amr"), Mandate(member="hz-psb", valid_from=T0 + 30 * DAY)),
        max_validity_days=1825,
    )
    p = make_policy(members=(amr, psb), types=(licence,), expires=T0 + YEAR)
    return sign(p, 0, 1)
