"""``certledger verify``: check a presented certificate against the replica, offline or after a sync."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from ledger.credential.presentation import PREFIX
from ledger.credential.qr import read_qr_file
from ledger.errors import LedgerError
from ledger.files import read_capped
from ledger.replica.store import ReplicaStore
from ledger.trust.policy import format_time
from ledger.trust.trust import verify_pinned
from verifier.service import malformed
from verifier.textinput import MANGLED_WARNING, clean_text, mangled_reason
from verifier.verdict import Code, Verdict
from verifier.verifier import Verifier, node_sources

__all__ = ["EXIT_CODES", "verify"]

#: Exit status per verdict: 0 valid; 10-19 invalid (red); 20-29 unsure (amber).
EXIT_CODES: dict[Code, int] = {
    Code.VALID: 0,
    Code.REVOKED: 10,
    Code.SUSPENDED: 11,
    Code.REPLACED: 12,
    Code.EXPIRED: 13,
    Code.NOT_YET_VALID: 14,
    Code.UNKNOWN_ISSUER: 15,
    Code.NOT_AUTHORISED: 16,
    Code.BAD_SIGNATURE: 17,
    Code.CLAIM_MISMATCH: 18,
    Code.MALFORMED: 19,
    Code.NOT_IN_LEDGER: 20,
    Code.STALE: 21,
}
_MAX_POLICY = 1 << 20
_EXIT_HELP = "\n".join(f"  {code:>2}  {c.value}" for c, code in EXIT_CODES.items())


def _image_text(path: Path) -> str | Verdict:
    """The certificate text in the image, or a MALFORMED verdict saying why there is none."""
    try:
        found = read_qr_file(path)
    except LedgerError as e:
        return _malformed("无法读取图片", f"cannot read the image: {e}")
    if not found:
        return _malformed("图片中没有找到二维码", f"no QR code found in {path}")
    ours = [t for t in found if t.startswith(PREFIX)]
    return (ours or found)[0]


def _malformed(zh: str, en: str) -> Verdict:
    return Verdict(code=Code.MALFORMED, reason_zh=zh, reason_en=en, checked_at=int(time.time()))


def _show(v: Verdict) -> None:
    mark = {"valid": "✓", "invalid": "✗", "unsure": "?"}[v.verdict_class]
    click.echo(f"{mark} {v.code.value}  {v.reason_zh}")
    click.echo(f"  {v.reason_en}")
    if v.issuer_id is not None:
        click.echo(f"  issuer 签发部门: {v.issuer_name} ({v.issuer_id})")
    if v.cert_id is not None:
        click.echo(f"  certificate 证照: {v.cert_type_name} {v.cert_id}")
    for c in v.claims:
        click.echo(f"    {c.label}: {c.value}")
    if v.hidden:
        click.echo(f"    (not disclosed 未出示: {', '.join(v.hidden)})")
    if v.replaced_by is not None:
        click.echo(f"  replaced by 新证照: {v.replaced_by}")
    if v.evidence is not None:
        e = v.evidence
        click.echo(
            f"  evidence 证据: entry {e.entry_index} of {e.origin}, checkpoint size {e.checkpoint_size} "
            f"witnessed by {', '.join(e.cosigners) or 'no witness'} at {format_time(e.witnessed_at)}"
        )
    if v.as_of is not None:
        click.echo(f"  as of 数据截至: {format_time(v.as_of)}")
    for w in v.warnings:
        click.echo(f"  warning 注意: {w}", err=True)


@click.command(
    name="verify",
    epilog="Exit status (0 valid; 10-19 invalid; 20-29 unsure; 1 error; 2 usage):\n\n\b\n" + _EXIT_HELP,
)
@click.argument("text", required=False)
@click.option(
    "--image", type=click.Path(dir_okay=False, path_type=Path), help="Read the QR code from this image."
)
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
@click.option(
    "--policy",
    "policy_file",
    required=True,
    envvar="CERTLEDGER_POLICY",
    type=click.Path(dir_okay=False, path_type=Path),
    show_envvar=True,
    help="The signed trust policy document.",
)
@click.option(
    "--replica",
    required=True,
    envvar="CERTLEDGER_REPLICA",
    type=click.Path(file_okay=False, path_type=Path),
    show_envvar=True,
    help="Directory of the replica database (created if missing).",
)
@click.option(
    "--nodes",
    envvar="CERTLEDGER_NODES",
    metavar="URL,...",
    help="Where to sync members' logs from: node URLs, or directories holding a copy of a node's "
    "public files. Default: every member's node from the policy.",
    show_envvar=True,
)
@click.option("--offline", is_flag=True, help="Use the replica as it is; open no connection.")
@click.option("--purpose", help="The verification purpose (the claims it needs must be disclosed).")
def verify(
    *,
    text: str | None,
    image: Path | None,
    as_json: bool,
    policy_file: Path,
    replica: Path,
    nodes: str | None,
    offline: bool,
    purpose: str | None,
) -> None:
    """Verify a certificate: its QR TEXT (CL1:...) or the QR code in an --image.

    Without --offline the replica is first brought up to date from the nodes (any
    node will do: the logs are signed and witnessed), and a certificate not found is
    looked up again after syncing its issuer's log. With --offline nothing is
    fetched. The verdict says how current the data is; old data is never VALID.
    """
    if (text is None) == (image is None):
        raise click.UsageError("give the QR text or --image FILE (one of them)")
    if offline and nodes:
        raise click.UsageError("--offline and --nodes exclude each other")
    doc = verify_pinned(read_capped(policy_file, limit=_MAX_POLICY, what="policy document"))
    policy = doc.policy
    replica.mkdir(parents=True, exist_ok=True)
    with ReplicaStore.open(replica / "replica.db") as store:
        sources = None
        if not offline:
            urls = [u.strip() for u in nodes.split(",")] if nodes else [m.base_url for m in policy.members]
            if not all(urls):
                raise click.BadParameter("give node URLs separated by commas", param_hint="--nodes")
            sources = node_sources(urls)
        verifier = Verifier(policy=policy, store=store, sources=sources)
        for result in verifier.sync():
            if not result.ok:
                why = "; ".join(result.refused) or "no source answered"
                click.echo(f"sync {result.member_id}: {why}", err=True)
        given = text if text is not None else _image_text(image) if image is not None else ""
        if isinstance(given, Verdict):
            verdict = given
        else:  # as the service does: a scanner's line end trimmed, altered text named so
            given = clean_text(given)
            how = mangled_reason(given)
            if how is not None:
                verdict = malformed(*how, warnings=(MANGLED_WARNING,))
            else:
                verdict = verifier.verify(given, purpose=purpose)
    if as_json:
        click.echo(json.dumps(verdict.to_json(), ensure_ascii=False, indent=2))
    else:
        _show(verdict)
    raise SystemExit(EXIT_CODES[verdict.code])
