"""``certledger consortium``: the trust-policy ceremony.

init (genesis from a spec) → propose (next version from changes) → sign (each
governance key holder) → verify (walk the chain from the pinned version) → distribute.
``show``, ``diff`` and ``keygen`` help people review and take part.
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import os
import re
import time
from pathlib import Path

import click

from ledger.errors import KeyFileError, LedgerError, MalformedError, PolicyError
from ledger.files import read_capped, write_file
from ledger.keys import SIG_TYPE_COSIGNATURE, SIG_TYPE_ED25519, PublicKey, SigningKey, VerifierKey
from ledger.trust.consortium import (
    CHANGES,
    MAX_SPEC_SIZE,
    KeyRequest,
    apply_changes,
    genesis,
    parse_change,
    read_toml,
    spec_time,
    summary,
    warnings,
)
from ledger.trust.policy import Policy, format_time
from ledger.trust.policy_doc import (
    MAX_DOCUMENT_SIZE,
    PolicyDocument,
    add_signature,
    parse_document,
    parse_proposal,
    render,
    sign_proposal,
)
from ledger.trust.trust import TrustedPolicy, signed_by, verify_pinned
from node.config import init_data_dir, policy_dir

__all__ = ["consortium", "key_file"]

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_PASSPHRASE_ENV = "CERTLEDGER_KEY_PASSPHRASE"  # noqa: S105 (the variable's name, not a secret)
#: A blank line and an em dash: where a signed note's signatures start.
_SIGNATURE_BLOCK = "\n\n\u2014 ".encode()


# -- policy document files -------------------------------------------------------------


def _read_document(path: Path) -> bytes:
    return read_capped(path, limit=MAX_DOCUMENT_SIZE, what="policy document")


def _write_document(path: Path, data: bytes, *, overwrite: bool = False) -> None:
    write_file(path, data, mode=0o644, overwrite=overwrite, what="policy document")


def _where(e: LedgerError, path: Path) -> LedgerError:
    """``e`` with the file it is about before its message (a PolicyError keeps its rule)."""
    if isinstance(e, PolicyError):
        return PolicyError(f"{path}: {e}", rule=e.rule)
    return type(e)(f"{path}: {e}")


def _now(value: str | None) -> int:
    real = int(time.time())
    return real if value is None else spec_time(value, "--now", now=real)


def _load_key(path: Path) -> SigningKey:
    passphrase = os.environ.get(_PASSPHRASE_ENV)
    try:
        return SigningKey.load(path, passphrase=passphrase.encode() if passphrase else None)
    except KeyFileError as e:
        if passphrase or "passphrase is needed" not in str(e):
            raise
    typed = click.prompt(f"Passphrase for {path}", hide_input=True, err=True)
    return SigningKey.load(path, passphrase=typed.encode())


def _load_any(path: Path) -> tuple[Policy, PolicyDocument | None]:
    """A policy file: a signed document, or an unsigned proposal (its text alone)."""
    data = _read_document(path)
    try:
        if _SIGNATURE_BLOCK not in data:
            return parse_proposal(data), None
        doc = parse_document(data)
    except LedgerError as e:
        raise _where(e, path) from None
    return doc.policy, doc


def key_file(keys_dir: Path, request: KeyRequest) -> Path:
    """Where ``init`` saves a generated key: ``governance-NAME.pem`` or ``MEMBER-ROLE.pem``."""
    stem = f"governance-{request.name}" if request.member is None else f"{request.member}-{request.role}"
    return keys_dir / f"{_SAFE.sub('_', stem)}.pem"


def _digest(policy: Policy) -> str:
    return hashlib.sha256(render(policy).encode()).hexdigest()


def _signed_status(doc: PolicyDocument, signer: Policy, whose: str) -> str:
    got = signed_by(doc, signer.governance_keys)
    mark = "✓" if len(got) >= signer.governance_threshold else "✗"
    return (
        f"{mark} signed by {len(got)}/{len(signer.governance_keys)} of {whose} governance keys; "
        f"threshold {signer.governance_threshold}"
    )


def _echo_summary(policy: Policy) -> None:
    for line in summary(policy):
        click.echo(line)


# -- commands --------------------------------------------------------------------------

_NOW_HELP = "Time to use instead of the clock: RFC 3339 UTC (2025-01-01T00:00:00Z)."


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def consortium() -> None:
    """Create, change, sign and verify the consortium trust policy.

    The policy says which departments belong, which keys speak for them, which
    certificate types each may issue or revoke, the witness quorum, the freshness
    limit and the governance keys. Each version is a signed note; version N+1 needs a
    threshold of version N's governance keys and of its own.

    \b
    The ceremony:
      1. certledger consortium init SPEC.toml --out DIR     (version 1, keys)
      2. certledger consortium propose --current V1 CHANGE… --out V2
      3. certledger consortium diff V1 V2                    (every holder reviews)
      4. certledger consortium sign V2 --key KEY --name NAME (each holder)
      5. certledger consortium verify --pinned V1 V2         (before distributing)

    On one machine, `certledger consortium bootstrap` does step 1 and sets up every
    node at once (docker compose, tests, demos).
    """


@consortium.command()
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for policy-v1 and the generated keys (created if missing).",
)
@click.option(
    "--encrypt", is_flag=True, help="Encrypt generated governance keys with a passphrase (prompted)."
)
@click.option(
    "--consortium",
    "consortium_name",
    metavar="NAME",
    help="The consortium's name (if the spec has no `consortium`), e.g. hangzhou.example.gov.cn.",
)
@click.option("--now", "now_text", metavar="TIME", help=_NOW_HELP)
def init(spec: Path, out_dir: Path, encrypt: bool, consortium_name: str | None, now_text: str | None) -> None:
    """Create policy version 1 from a SPEC file (TOML).

    Keys the spec does not give (governance keys, members' log and witness keys) are
    generated into DIR/keys as PEM files readable only by you (mode 0600); keep
    governance keys offline and hand each department its own log and witness keys.
    Version 1 is signed with the generated governance keys; if the spec names keys
    held elsewhere, their holders sign with `certledger consortium sign`.
    Every version names the consortium (the spec's `consortium` or --consortium), so
    verifiers refuse versions of another consortium, such as a staging one.
    See docs/trust-policy.md for the spec format.
    """
    now = _now(now_text)
    parsed = read_toml(read_capped(spec, limit=MAX_SPEC_SIZE, what="spec"), what=str(spec))
    made: list[tuple[KeyRequest, SigningKey]] = []

    def make_key(request: KeyRequest) -> PublicKey:
        key = SigningKey.generate()
        made.append((request, key))
        return key.public_key

    try:
        policy = genesis(parsed, now=now, make_key=make_key, consortium=consortium_name)
    except LedgerError as e:
        raise _where(e, spec) from None
    if policy.is_expired(now):
        raise click.ClickException(
            f"{spec}: the policy would already be expired ({format_time(policy.expires)})"
        )
    passphrase = None
    if encrypt and any(r.role == "governance" for r, _ in made):
        passphrase = click.prompt(
            "Passphrase for the governance keys", hide_input=True, confirmation_prompt=True, err=True
        ).encode()
    keys_dir = out_dir / "keys"
    try:
        out_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        keys_dir.mkdir(mode=0o700, exist_ok=True)
    except OSError as e:
        raise click.ClickException(f"{out_dir}: cannot create: {e.strerror}") from None
    governance = [(r.name, k) for r, k in made if r.role == "governance"]
    if governance:
        target, data = out_dir / "policy-v1.note", sign_proposal(policy, governance)
    else:
        target, data = out_dir / "policy-v1.proposal", render(policy).encode()
    for existing in ("policy-v1.note", "policy-v1.proposal"):
        if (out_dir / existing).exists():
            raise click.ClickException(f"{out_dir / existing}: exists; refusing to overwrite a policy")
    for request, key in made:
        path = key_file(keys_dir, request)
        key.save(path, passphrase=passphrase if request.role == "governance" else None)
        sig_type = SIG_TYPE_COSIGNATURE if request.role == "witness" else SIG_TYPE_ED25519
        vk = VerifierKey(name=request.name, public_key=key.public_key, sig_type=sig_type)
        click.echo(f"key   {path}  ({request.role}) {vk}")
    _write_document(target, data)
    click.echo(f"wrote {target}")
    if governance:
        status = _signed_status(parse_document(data), policy, "its own")
        click.echo(f"version 1: {status}")
        if len(governance) < policy.governance_threshold:
            click.echo("next: the other governance key holders run `certledger consortium sign`")
    else:
        click.echo("version 1 is unsigned: each governance key holder runs `certledger consortium sign`")
    click.echo(f"text SHA-256: {_digest(policy)}")
    click.echo("distribute version 1 to every node and verifier once signed; they pin it.")


def _pairs(values: tuple[str, ...], option: str, metavar: str) -> dict[str, str]:
    """``MEMBER=VALUE`` options as a dict; each member at most once."""
    pairs: dict[str, str] = {}
    for value in values:
        member, sep, rest = value.partition("=")
        if not sep or not member or not rest:
            raise click.BadParameter(f"{value!r} is not {metavar}", param_hint=option)
        if member in pairs:
            raise click.BadParameter(f"member {member!r} is given twice", param_hint=option)
        pairs[member] = rest
    return pairs


def _pinned_document(data_dir: Path) -> bytes | None:
    """The first policy version a node's data directory pinned, or None if it holds no node."""
    if not (data_dir / "member").exists():
        return None
    versions = sorted(policy_dir(data_dir).glob("*.note"))
    return _read_document(versions[0]) if versions else None


def _check_bootstrapped(target: Path, nodes: dict[str, Path]) -> Policy:
    """The existing consortium in ``target``, after checking every node directory belongs to it."""
    data = _read_document(target)
    try:
        policy = verify_pinned(data).policy
    except LedgerError as e:
        raise type(e)(f"{target}: {e}") from None
    for member_id, data_dir in nodes.items():
        pinned = _pinned_document(data_dir)
        if pinned is None:
            raise click.ClickException(
                f"{data_dir}: holds no node for {member_id}, but the consortium in {target.parent} exists; "
                "restore the node's data directory from its backup (its keys are nowhere else)"
            )
        held = (data_dir / "member").read_bytes().strip().decode(errors="replace")
        if held != member_id or pinned != data:
            raise click.ClickException(
                f"{data_dir}: holds a node of {held!r} pinned to another policy, not {member_id} "
                f"of the consortium in {target.parent}"
            )
    return policy


@consortium.command()
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for the signed policy-v1.note, the public file nodes and verifiers pin.",
)
@click.option(
    "--keys",
    "keys_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for the governance keys and the keys of members without --node "
    "(default: OUT/keys; mode 0700).",
)
@click.option(
    "--node",
    "node_specs",
    multiple=True,
    metavar="MEMBER=DIR",
    help="Create MEMBER's node data directory in DIR, with its keys (repeatable).",
)
@click.option(
    "--base-url",
    "base_urls",
    multiple=True,
    metavar="MEMBER=URL",
    help="Use URL as MEMBER's base URL instead of the spec's (repeatable).",
)
@click.option("--now", "now_text", metavar="TIME", help=_NOW_HELP)
def bootstrap(
    *,
    spec: Path,
    out_dir: Path,
    keys_dir: Path | None,
    node_specs: tuple[str, ...],
    base_urls: tuple[str, ...],
    now_text: str | None,
) -> None:
    """Create a whole consortium on one machine, without prompts: policy, keys, nodes.

    For a test or single-host deployment (docker compose, the demo): version 1 of the
    policy is made from SPEC as `init` makes it, signed with governance keys generated
    here, and each --node directory is set up as `certledger node init` does, with the
    member's generated keys. Where departments hold their own keys, use `init` and
    `sign` instead.

    Runs again safely: when OUT already holds the policy and every --node directory
    holds its node, it changes nothing and exits 0. Keys are encrypted with
    $CERTLEDGER_KEY_PASSPHRASE when it is set.
    """
    now = _now(now_text)
    nodes = {m: Path(d) for m, d in _pairs(node_specs, "--node", "MEMBER=DIR").items()}
    urls = _pairs(base_urls, "--base-url", "MEMBER=URL")
    if len(set(nodes.values())) != len(nodes):
        raise click.BadParameter("two members share one data directory", param_hint="--node")
    keys_dir = keys_dir or out_dir / "keys"
    target = out_dir / "policy-v1.note"
    if target.exists():
        policy = _check_bootstrapped(target, nodes)
        click.echo(
            f"consortium already set up in {out_dir} (policy version 1, {len(policy.members)} members); "
            "nothing to do. Change it with `certledger consortium propose`."
        )
        return
    for data_dir in nodes.values():
        if _pinned_document(data_dir) is not None or (data_dir / "log.db").exists():
            raise click.ClickException(
                f"{data_dir}: already holds a node, but {out_dir} has no policy: an earlier bootstrap "
                f"stopped half-way or the directory belongs to another consortium; empty it and run again"
            )
    parsed = read_toml(read_capped(spec, limit=MAX_SPEC_SIZE, what="spec"), what=str(spec))
    tables = parsed.get("members")
    listed = {t.get("id"): t for t in tables if isinstance(t, dict)} if isinstance(tables, list) else {}
    for option, given in (("--node", nodes), ("--base-url", urls)):
        unknown = sorted(set(given) - set(listed))
        if unknown:
            raise click.BadParameter(f"{', '.join(unknown)}: not a member in {spec}", param_hint=option)
    for member_id, url in urls.items():
        listed[member_id]["base_url"] = url
    made: dict[tuple[str, str | None], tuple[KeyRequest, SigningKey]] = {}

    def make_key(request: KeyRequest) -> PublicKey:
        key = SigningKey.generate()
        made[(request.role, request.member or request.name)] = (request, key)
        return key.public_key

    try:
        policy = genesis(parsed, now=now, make_key=make_key)
    except LedgerError as e:
        raise type(e)(f"{spec}: {e}") from None
    if policy.is_expired(now):
        raise click.ClickException(
            f"{spec}: the policy would already be expired ({format_time(policy.expires)})"
        )
    governance = [(r.name, k) for r, k in made.values() if r.role == "governance"]
    if len(governance) < policy.governance_threshold:
        raise click.ClickException(
            f"{spec}: bootstrap signs version 1 with the governance keys it generates, but only "
            f"{len(governance)} of the {len(policy.governance_keys)} are generated (threshold "
            f"{policy.governance_threshold}); leave their `key` out, or use `init` and `sign`"
        )
    for member_id in nodes:
        if ("log", member_id) not in made or ("witness", member_id) not in made:
            raise click.ClickException(
                f"{spec}: member {member_id} gives its own keys; a --node needs keys made here "
                "(leave log_key and witness_key out, or set the node up with `certledger node init`)"
            )
    document = sign_proposal(policy, governance)
    passphrase_text = os.environ.get(_PASSPHRASE_ENV)
    passphrase = passphrase_text.encode() if passphrase_text else None
    try:
        out_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise click.ClickException(f"{e.filename}: cannot create: {e.strerror}") from None
    for (role, owner), (request, key) in made.items():
        if owner in nodes:
            continue
        path = key_file(keys_dir, request)
        key.save(path, passphrase=passphrase)
        click.echo(f"key   {path}  ({role})")
    for member_id, data_dir in nodes.items():
        member = init_data_dir(
            data_dir,
            document=document,
            member_id=member_id,
            log_key=made[("log", member_id)][1],
            witness_key=made[("witness", member_id)][1],
            passphrase=passphrase,
        )
        click.echo(f"node  {data_dir}  {member_id} (log origin {member.origin}, {member.base_url})")
    _write_document(target, document)  # last: its presence says the bootstrap finished
    click.echo(f"wrote {target}")
    click.echo(f"version 1: {_signed_status(parse_document(document), policy, 'its own')}")
    click.echo(f"text SHA-256: {_digest(policy)}")


@consortium.command()
@click.option(
    "--current",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The current version's signed document.",
)
@click.argument("changes", nargs=-1, required=True, metavar="CHANGE...")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the unsigned proposal (not overwritten).",
)
@click.option("--now", "now_text", metavar="TIME", help=_NOW_HELP)
def propose(current: Path, changes: tuple[str, ...], out: Path, now_text: str | None) -> None:
    """Write version N+1: the --current version with each CHANGE applied.

    \b
    CHANGE is KIND=VALUE; times are RFC 3339 UTC, "now" or +DAYSd:
    """
    now = _now(now_text)
    try:
        doc = verify_pinned(_read_document(current))
    except LedgerError as e:
        raise _where(e, current) from None
    parsed = [parse_change(c) for c in changes]
    policy = apply_changes(
        doc.policy,
        parsed,
        now=now,
        read_file=lambda p: read_capped(p, limit=MAX_SPEC_SIZE, what="change file"),
    )
    if policy.is_expired(now):
        raise click.ClickException(
            f"version {policy.version} would already be expired at {format_time(policy.expires)}; "
            "add a change such as expires=+365d"
        )
    _write_document(out, render(policy).encode())
    old = doc.policy
    click.echo(f"wrote {out}: unsigned proposal of version {policy.version} ({len(parsed)} change(s))")
    click.echo(f"text SHA-256: {_digest(policy)}")
    click.echo(
        f"needs signatures from {old.governance_threshold} of version {old.version}'s governance keys "
        f"and {policy.governance_threshold} of its own:"
    )
    names = {k.name: k for k in old.governance_keys} | {k.name: k for k in policy.governance_keys}
    for name, key in names.items():
        roles = [f"v{old.version}"] if key in old.governance_keys else []
        roles += [f"v{policy.version}"] if key in policy.governance_keys else []
        click.echo(f"  {name}+{key.key_id.hex()}  ({', '.join(roles)})")
    for warning in warnings(policy, now=now):
        click.echo(f"warning: {warning}")
    click.echo(f"review with: certledger consortium diff {current} {out}")


propose.help = inspect.cleandoc(propose.help or "") + "".join(f"\n  {text}" for text in CHANGES.values())


@consortium.command()
@click.argument("document", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--key",
    "key_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Your governance key file (PEM, mode 0600).",
)
@click.option("--name", required=True, help="The governance key's name, as listed in the policy.")
@click.option(
    "--previous",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Version N-1's document, to sign with a key of the previous version only.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the signed document here instead of replacing DOCUMENT.",
)
def sign(document: Path, key_path: Path, name: str, previous: Path | None, out: Path | None) -> None:
    """Add your governance signature to DOCUMENT (a proposal or a signed version).

    Review the document first (`certledger consortium diff` or `show`): you sign its
    exact text. An encrypted key's passphrase is asked for, or read from the
    CERTLEDGER_KEY_PASSPHRASE environment variable.
    """
    policy, doc = _load_any(document)
    key = _load_key(key_path)
    mine = VerifierKey(name=name, public_key=key.public_key)
    prev_policy: Policy | None = None
    if previous is not None:
        prev_policy = verify_pinned(_read_document(previous)).policy
        if prev_policy.version != policy.version - 1:
            raise click.ClickException(
                f"{previous} is version {prev_policy.version}, not version {policy.version - 1}"
            )
    roles = [f"version {policy.version}"] if mine in policy.governance_keys else []
    if prev_policy is not None and mine in prev_policy.governance_keys:
        roles.append(f"version {prev_policy.version}")
    if not roles:
        hint = "" if previous else " (a key of the previous version only? pass --previous)"
        raise click.ClickException(
            f"{name}+{mine.key_id.hex()} is not a governance key of version {policy.version}"
            f"{' or ' + str(prev_policy.version) if prev_policy else ''}{hint}"
        )
    data = sign_proposal(policy, [(name, key)]) if doc is None else add_signature(doc.data, name, key)
    if out is None:
        _write_document(document, data, overwrite=True)
    else:
        _write_document(out, data)
    signed = parse_document(data)
    click.echo(f"signed version {policy.version} as {name}+{mine.key_id.hex()} ({' and '.join(roles)})")
    click.echo(f"wrote {out or document}")
    click.echo(f"text SHA-256: {_digest(policy)}")
    click.echo(f"  {_signed_status(signed, policy, 'its own')}")
    if prev_policy is not None:
        click.echo(
            f"  {_signed_status(signed, prev_policy, f'version {prev_policy.version}' + chr(39) + 's')}"
        )


@consortium.command()
@click.option(
    "--pinned",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The version you trust already (usually version 1).",
)
@click.argument("documents", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--now", "now_text", metavar="TIME", help=_NOW_HELP)
@click.option("-q", "--quiet", is_flag=True, help="Print only the result line.")
def verify(pinned: Path, documents: tuple[Path, ...], now_text: str | None, quiet: bool) -> None:
    """Walk from the --pinned version along DOCUMENTS and print the newest policy.

    DOCUMENTS may be given in any order and may include the pinned version and older
    ones (they are skipped). Each step must be exactly the next version, signed by a
    threshold of the previous version's governance keys and of its own; the newest
    must not be expired. Exits with status 1 and the broken rule otherwise.
    """
    now = _now(now_text)
    try:
        trusted = TrustedPolicy(_read_document(pinned))
    except LedgerError as e:
        raise _where(e, pinned) from None
    by_version: dict[int, tuple[Path, bytes]] = {}
    skipped = 0
    for path in documents:
        data = _read_document(path)
        try:
            version = parse_document(data).policy.version
        except LedgerError as e:
            raise _where(e, path) from None
        if version <= trusted.version:
            skipped += 1
            continue
        seen = by_version.get(version)
        if seen is not None and seen[1] != data:
            raise click.ClickException(
                f"{seen[0]} and {path} are different documents for version {version}; "
                "a chain has exactly one document per version"
            )
        by_version[version] = (path, data)
    chain = [by_version[v] for v in sorted(by_version)]
    start = trusted.version
    policy = trusted.walk([d for _, d in chain], now=now, names=[str(p) for p, _ in chain])
    if not quiet:
        if skipped:
            click.echo(f"skipped {skipped} document(s) not newer than the pinned version {start}")
        _echo_summary(policy)
        click.echo(f"text SHA-256: {_digest(policy)}")
    click.echo(
        f"OK 验证通过: policy version {policy.version} verified from pinned version {start} "
        f"({len(chain)} update(s)); expires {format_time(policy.expires)}"
    )


@consortium.command()
@click.argument("document", type=click.Path(dir_okay=False, path_type=Path))
def show(document: Path) -> None:
    """Print a readable summary of DOCUMENT (a proposal or a signed version).

    Signatures are listed but not verified: use `certledger consortium verify`.
    """
    policy, doc = _load_any(document)
    if doc is None:
        click.echo("未签名提案 Unsigned proposal")
    _echo_summary(policy)
    click.echo(f"text SHA-256: {_digest(policy)}")
    if doc is not None:
        click.echo(
            f"签名 Signatures: {len(doc.signatures)} (not verified here; use `certledger consortium verify`)"
        )
        for s in doc.signatures:
            click.echo(f"  {s.key}")


@consortium.command()
@click.argument("old", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("new", type=click.Path(dir_okay=False, path_type=Path))
def diff(old: Path, new: Path) -> None:
    """Show what changes from OLD to NEW, line by line (a unified diff of the texts)."""
    a, _ = _load_any(old)
    b, _ = _load_any(new)
    lines = difflib.unified_diff(
        render(a).splitlines(keepends=True),
        render(b).splitlines(keepends=True),
        fromfile=f"{old} (version {a.version})",
        tofile=f"{new} (version {b.version})",
    )
    click.echo("".join(lines), nl=False)


@consortium.command()
@click.option(
    "--name", required=True, help="The key's name: a governance key name, or a member's log origin."
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Key file to create (mode 0600, never overwritten).",
)
@click.option(
    "--witness", is_flag=True, help="A witness cosignature key (type 0x04) instead of a signing key."
)
@click.option("--encrypt", is_flag=True, help="Encrypt the key file with a passphrase (prompted).")
def keygen(name: str, out: Path, witness: bool, encrypt: bool) -> None:
    """Generate a key and print its public verifier-key string to put in a policy."""
    sig_type = SIG_TYPE_COSIGNATURE if witness else SIG_TYPE_ED25519
    key = SigningKey.generate()
    try:
        vk = VerifierKey(name=name, public_key=key.public_key, sig_type=sig_type)
    except MalformedError as e:
        raise click.BadParameter(str(e), param_hint="--name") from None
    passphrase = None
    if encrypt:
        passphrase = click.prompt("Passphrase", hide_input=True, confirmation_prompt=True, err=True).encode()
    key.save(out, passphrase=passphrase)
    click.echo(str(vk))
