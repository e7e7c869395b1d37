"""A node's health check before trouble: what expires soon, what is wrong now.

:func:`examine` looks at a data directory the way ``certledger node run`` would, but
instead of refusing at the first problem it lists every finding, each with a level:

``fail``   the node cannot run or is holding evidence that needs a person now (an
           expired policy, a key the policy does not list or that is compromised or
           expired, a key file it cannot use (others can read it, or its passphrase is
           missing), fork alerts, a TLS certificate that has expired);
``warn``   something ends within the warning period (the policy version, this node's log
           key, one of its mandates, the TLS certificate), or little free disk;
``ok``     checked and fine, with the time left where something expires.

Nothing here writes to the data directory.
"""

from __future__ import annotations

import datetime as _dt
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from ledger.errors import LedgerError, MalformedError
from ledger.files import read_capped
from ledger.keys import SigningKey
from ledger.trust.policy import Policy
from node.config import PolicyChain, policy_dir, read_member

__all__ = ["DAY", "Finding", "examine", "exit_code", "tls_certificate_expiry"]

DAY = 86_400

#: Free space below which the disk is reported (bytes).
LOW_DISK_BYTES = 1 << 30

_TLS_CERT_LIMIT = 1 << 20


@dataclass(frozen=True, kw_only=True)
class Finding:
    """One thing checked: ``level`` is ``ok``, ``warn`` or ``fail``; ``expires`` (Unix
    seconds) is set for things that expire."""

    level: str
    what: str
    message: str
    expires: int | None = None

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"level": self.level, "what": self.what, "message": self.message}
        if self.expires is not None:
            out["expires"] = self.expires
        return out


def _when(t: int) -> str:
    return _dt.datetime.fromtimestamp(t, _dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _left(t: int, now: int) -> str:
    s = t - now
    if s <= 0:
        return f"expired {(-s) // DAY} day(s) ago ({_when(t)})"
    if s < DAY:
        return f"expires in {s // 3600} h ({_when(t)})"
    return f"expires in {s // DAY} day(s) ({_when(t)})"


def _expiry(what: str, t: int, *, now: int, warn: int, fail_when_expired: bool = True) -> Finding:
    if t <= now:
        return Finding(
            level="fail" if fail_when_expired else "warn", what=what, message=_left(t, now), expires=t
        )
    return Finding(level="warn" if t - now < warn else "ok", what=what, message=_left(t, now), expires=t)


def tls_certificate_expiry(path: Path) -> int:
    """The ``notAfter`` time (Unix seconds) of the first certificate in PEM file ``path``;
    LedgerError (FileError/MalformedError) if it cannot be read."""
    data = read_capped(path, limit=_TLS_CERT_LIMIT, what="TLS certificate")
    try:
        cert = x509.load_pem_x509_certificate(data)
    except ValueError as e:
        raise MalformedError(f"{path}: not a PEM certificate ({e})") from None
    return int(cert.not_valid_after_utc.timestamp())


def examine(
    data_dir: Path,
    *,
    now: int,
    warn_days: int = 30,
    tls_cert: Path | None = None,
    passphrase: bytes | None = None,
    alerts: Sequence[object] = (),
) -> list[Finding]:
    """Every finding about the node in ``data_dir`` at time ``now``; ``alerts`` are the
    fork alerts it holds (read by the caller)."""
    warn = warn_days * DAY
    out: list[Finding] = []
    try:
        member_id = read_member(data_dir)
    except LedgerError as e:
        return [Finding(level="fail", what="data directory", message=str(e))]
    policy: Policy | None = None
    try:
        policy = PolicyChain(policy_dir(data_dir), now=lambda: now).policy
    except LedgerError as e:
        out.append(Finding(level="fail", what="policy", message=f"{e}; install a current version"))
    if policy is not None:
        f = _expiry(f"policy version {policy.version}", policy.expires, now=now, warn=warn)
        if f.level == "warn":
            f = Finding(
                level="warn",
                what=f.what,
                message=f"{f.message}: the consortium must sign the next version before then",
                expires=f.expires,
            )
        out.append(f)
    out += _keys(data_dir, member_id, policy, now=now, warn=warn, passphrase=passphrase)
    if policy is not None:
        out += _mandates(policy, member_id, now=now, warn=warn)
    if tls_cert is not None:
        try:
            out.append(_expiry("TLS certificate", tls_certificate_expiry(tls_cert), now=now, warn=warn))
        except LedgerError as e:
            out.append(Finding(level="fail", what="TLS certificate", message=str(e)))
    if alerts:
        out.append(
            Finding(
                level="fail",
                what="fork alerts",
                message=(
                    f"{len(alerts)} held: a log showed two histories; see 'certledger node alerts --check'"
                ),
            )
        )
    else:
        out.append(Finding(level="ok", what="fork alerts", message="none held"))
    out.append(_disk(data_dir))
    return out


def _keys(
    data_dir: Path, member_id: str, policy: Policy | None, *, now: int, warn: int, passphrase: bytes | None
) -> list[Finding]:
    out: list[Finding] = []
    keys: dict[str, SigningKey] = {}
    for name in ("log", "witness"):
        path = data_dir / f"{name}.key"
        try:
            keys[name] = SigningKey.load(path, passphrase=passphrase)
        except LedgerError as e:  # also a file others can read, which the node refuses too
            hint = " (set CERTLEDGER_KEY_PASSPHRASE)" if "passphrase is needed" in str(e) else ""
            out.append(Finding(level="fail", what=f"{name} key", message=f"{e}{hint}"))
    if policy is None:
        return out
    member = policy.member(member_id)
    if member is None:
        return [
            *out,
            Finding(
                level="fail", what="member", message=f"{member_id} is not in policy version {policy.version}"
            ),
        ]
    if "log" in keys:
        listed = [k for k in member.log_keys if k.public_key == keys["log"].public_key]
        if not listed:
            out.append(
                Finding(
                    level="fail",
                    what="log key",
                    message=f"not one of {member_id}'s log keys in policy version {policy.version}",
                )
            )
        else:
            k = listed[0]
            if k.compromised_at is not None:
                out.append(
                    Finding(
                        level="fail",
                        what="log key",
                        message=f"marked compromised at {_when(k.compromised_at)}; rotate to a new key",
                    )
                )
            elif now < k.valid_from:
                out.append(
                    Finding(level="fail", what="log key", message=f"not valid before {_when(k.valid_from)}")
                )
            elif k.valid_until is None:
                out.append(Finding(level="ok", what="log key", message="listed, open-ended"))
            else:
                f = _expiry("log key", k.valid_until, now=now, warn=warn)
                if f.level == "warn":
                    f = Finding(
                        level="warn",
                        what=f.what,
                        message=(
                            f"{f.message}: list the next key and 'certledger node rotate-key' before then"
                        ),
                        expires=f.expires,
                    )
                out.append(f)
    if "witness" in keys:
        if member.witness_key.public_key == keys["witness"].public_key:
            out.append(Finding(level="ok", what="witness key", message="listed"))
        else:
            out.append(
                Finding(
                    level="fail",
                    what="witness key",
                    message=f"not {member_id}'s witness key in policy version {policy.version}",
                )
            )
    return out


def _mandates(policy: Policy, member_id: str, *, now: int, warn: int) -> list[Finding]:
    out: list[Finding] = []
    for ctype in policy.types:
        for action, mandates in (("issue", ctype.issuers), ("revoke", ctype.revokers)):
            for m in mandates:
                if m.member != member_id or m.valid_until is None or not now < m.valid_until < now + warn:
                    continue
                if m.valid_from is None or m.valid_from <= now:
                    out.append(
                        Finding(
                            level="warn",
                            what=f"mandate to {action} {ctype.code}",
                            message=f"ends: {_left(m.valid_until, now)}",
                            expires=m.valid_until,
                        )
                    )
    return out


def _disk(data_dir: Path) -> Finding:
    try:
        usage = shutil.disk_usage(data_dir)
    except OSError as e:
        return Finding(level="warn", what="disk", message=f"{data_dir}: cannot read free space: {e.strerror}")
    free_gib = usage.free / (1 << 30)
    if usage.free < LOW_DISK_BYTES or usage.free < usage.total // 20:
        return Finding(
            level="warn", what="disk", message=f"{free_gib:.1f} GiB free of {usage.total / (1 << 30):.0f}"
        )
    return Finding(level="ok", what="disk", message=f"{free_gib:.1f} GiB free")


def exit_code(findings: Sequence[Finding]) -> int:
    """2 if anything failed, 1 if anything warns, else 0."""
    levels = {f.level for f in findings}
    return 2 if "fail" in levels else 1 if "warn" in levels else 0
