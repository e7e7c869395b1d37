"""``certledger node …``: set up and run a department's node.

Every option can also be given as an environment variable (shown in ``--help``), so a
container needs no command line: ``CERTLEDGER_DATA``, ``CERTLEDGER_LISTEN``,
``CERTLEDGER_TLS_CERT``, ``CERTLEDGER_TLS_KEY``, ``CERTLEDGER_TILES_DIR``, ….
Keys are encrypted with ``$CERTLEDGER_KEY_PASSPHRASE`` when it is set.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from pathlib import Path

import click
import httpx
import uvicorn

from certledger.cli.clerk import (
    add_clerk_cmd,
    list_clerks_cmd,
    record_cli_event,
    remove_clerk_cmd,
    rotate_token_cmd,
    trail,
)
from certledger.cli.log import load_signing_key
from certledger.cli.verifier import bind_listening
from ledger.errors import FileError, LedgerError, StorageError
from ledger.files import read_capped
from ledger.keys import SIG_TYPE_COSIGNATURE, SIG_TYPE_ED25519, SigningKey, VerifierKey
from ledger.log.alert import check_alert
from ledger.trust.policy_doc import MAX_DOCUMENT_SIZE
from node.app import create_app
from node.config import KEEP_ALIVE_SECONDS, PolicyChain, init_data_dir, load_config, policy_dir
from node.doctor import Finding, examine, exit_code
from node.gossip import read_learned
from node.logs import configure
from node.mirror import Mirrors
from node.recover import recover as run_recover
from node.rotate import NEXT_KEY, rotate_log_key, stage_log_key

__all__ = ["node"]

_DIR = click.Path(file_okay=False, path_type=Path)
_FILE = click.Path(dir_okay=False, exists=True, path_type=Path)
#: One render worker when there is a second core for it.
_DEFAULT_RENDER_WORKERS = 1 if (os.cpu_count() or 1) > 1 else 0


_data_option = click.option(
    "--data",
    "data",
    required=True,
    type=_DIR,
    envvar="CERTLEDGER_DATA",
    show_envvar=True,
    help="The node's data directory (keys, log, witness state, policy).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def node() -> None:
    """Set up, run and inspect a department's node.

    A node serves its department's log as C2SP tiles, witnesses the other members'
    logs, collects cosignatures on its own checkpoints and keeps evidence of forks.
    """


def _key(path: Path | None) -> SigningKey:
    return SigningKey.generate() if path is None else load_signing_key(path)


@node.command(short_help="Create a data directory: keys, empty log, pinned policy.")
@click.option(
    "--policy",
    "policy_file",
    required=True,
    type=_FILE,
    envvar="CERTLEDGER_POLICY",
    show_envvar=True,
    help="The signed policy document to pin (the first version this node trusts).",
)
@click.option(
    "--member",
    required=True,
    envvar="CERTLEDGER_MEMBER",
    show_envvar=True,
    help="This department's member id.",
)
@_data_option
@click.option(
    "--log-key",
    type=_FILE,
    envvar="CERTLEDGER_LOG_KEY",
    show_envvar=True,
    help="Import this log signing key (PEM) instead of generating one.",
)
@click.option(
    "--witness-key",
    type=_FILE,
    envvar="CERTLEDGER_WITNESS_KEY",
    show_envvar=True,
    help="Import this witness key (PEM) instead of generating one.",
)
def init(
    *, policy_file: Path, member: str, data: Path, log_key: Path | None, witness_key: Path | None
) -> None:
    """Create the data directory DATA for member MEMBER.

    Generates (or imports) the log and witness keys (mode 0600), creates the empty log
    and pins the policy. Prints the public keys to list for this member in the policy:
    the node refuses to run until the policy lists them.
    """
    doc = read_capped(policy_file, limit=MAX_DOCUMENT_SIZE, what="policy document")
    lk, wk = _key(log_key), _key(witness_key)
    passphrase = os.environ.get("CERTLEDGER_KEY_PASSPHRASE")
    m = init_data_dir(
        data,
        document=doc,
        member_id=member,
        log_key=lk,
        witness_key=wk,
        passphrase=passphrase.encode() if passphrase else None,
    )
    log_vkey = VerifierKey(name=m.origin, public_key=lk.public_key, sig_type=SIG_TYPE_ED25519)
    wit_vkey = VerifierKey(name=m.witness_key.name, public_key=wk.public_key, sig_type=SIG_TYPE_COSIGNATURE)
    click.echo(f"created {data} for {member} (log origin {m.origin})")
    click.echo(f"log key:     {log_vkey}")
    click.echo(f"witness key: {wit_vkey}")
    listed = (
        any(k.public_key == lk.public_key for k in m.log_keys) and m.witness_key.public_key == wk.public_key
    )
    if not listed:
        click.echo(
            "policy: these keys are not yet the member's keys in the policy; add them before 'node run'"
        )


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535 or not host:
        raise click.BadParameter(f"{value!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


@node.command(short_help="Run the node's HTTP service.")
@_data_option
@click.option(
    "--listen",
    default="127.0.0.1:8080",
    show_default=True,
    envvar="CERTLEDGER_LISTEN",
    show_envvar=True,
    help="HOST:PORT to listen on.",
)
@click.option(
    "--tls-cert", type=_FILE, envvar="CERTLEDGER_TLS_CERT", show_envvar=True, help="TLS certificate (PEM)."
)
@click.option(
    "--tls-key", type=_FILE, envvar="CERTLEDGER_TLS_KEY", show_envvar=True, help="TLS private key (PEM)."
)
@click.option(
    "--tiles-dir",
    type=_DIR,
    envvar="CERTLEDGER_TILES_DIR",
    show_envvar=True,
    help="Also write the tiles and checkpoint here, for any static web server to serve.",
)
@click.option(
    "--checkpoint-interval",
    type=click.FloatRange(min=0.01),
    default=1.0,
    show_default=True,
    envvar="CERTLEDGER_CHECKPOINT_INTERVAL",
    show_envvar=True,
    help="Seconds between checkpoints while entries arrive.",
)
@click.option(
    "--allow-plain-http",
    is_flag=True,
    envvar="CERTLEDGER_ALLOW_PLAIN_HTTP",
    show_envvar=True,
    help="Accept clerks' tokens over plain HTTP from other hosts (only behind a TLS-terminating proxy).",
)
@click.option(
    "--mirror/--no-mirror",
    default=True,
    show_default=True,
    envvar="CERTLEDGER_MIRROR",
    show_envvar=True,
    help="Keep verified copies of the other members' logs and serve them under /mirror/.",
)
@click.option(
    "--mirror-interval",
    type=click.FloatRange(min=0.1),
    default=2.0,
    show_default=True,
    envvar="CERTLEDGER_MIRROR_INTERVAL",
    show_envvar=True,
    help="Seconds between two mirror syncs.",
)
@click.option(
    "--mirror-source",
    "mirror_sources",
    multiple=True,
    metavar="MEMBER=URL_OR_DIR",
    envvar="CERTLEDGER_MIRROR_SOURCES",
    show_envvar=True,
    help="One more place to read MEMBER's log from: a URL or a directory with a static copy "
    "of its tiles (repeatable; space-separated in the variable).",
)
@click.option(
    "--gossip/--no-gossip",
    default=True,
    show_default=True,
    envvar="CERTLEDGER_GOSSIP",
    show_envvar=True,
    help="Compare checkpoints and fork alerts with the other members' nodes.",
)
@click.option(
    "--gossip-interval",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    envvar="CERTLEDGER_GOSSIP_INTERVAL",
    show_envvar=True,
    help="Seconds between two rounds of gossip.",
)
@click.option(
    "--render-workers",
    type=click.IntRange(min=0, max=64),
    default=_DEFAULT_RENDER_WORKERS,
    show_default=True,
    envvar="CERTLEDGER_RENDER_WORKERS",
    show_envvar=True,
    help="Worker processes that make the QR texts of large issuing batches, beside the node's "
    "own process (0: the node makes them). Started with the node.",
)
def run(
    *,
    data: Path,
    listen: str,
    tls_cert: Path | None,
    tls_key: Path | None,
    tiles_dir: Path | None,
    checkpoint_interval: float,
    allow_plain_http: bool,
    mirror: bool,
    mirror_interval: float,
    mirror_sources: tuple[str, ...],
    gossip: bool,
    gossip_interval: float,
    render_workers: int,
) -> None:
    """Serve the log, the witness and the policy until stopped (SIGTERM or Ctrl-C).

    Refuses to start if the newest policy version has expired or does not list this
    node's keys. On shutdown it commits and signs everything it acknowledged.
    """
    host, port = _listen(listen)
    if (tls_cert is None) != (tls_key is None):
        raise click.BadParameter("give both --tls-cert and --tls-key, or neither")
    sources: dict[str, list[str]] = {}
    for spec in mirror_sources:
        member, sep, where = spec.partition("=")
        if not sep or not member or not where:
            raise click.BadParameter(f"{spec!r} is not MEMBER=URL_OR_DIR", param_hint="--mirror-source")
        sources.setdefault(member, []).append(where)
    passphrase = os.environ.get("CERTLEDGER_KEY_PASSPHRASE")
    config = load_config(
        data,
        checkpoint_interval=checkpoint_interval,
        tiles_dir=tiles_dir,
        passphrase=passphrase.encode() if passphrase else None,
        allow_plain_http=allow_plain_http,
        mirror=mirror,
        mirror_interval=mirror_interval,
        mirror_sources=sources,
        gossip=gossip,
        gossip_interval=gossip_interval,
        tls_cert=tls_cert,
        render_workers=render_workers,
    )
    configure()
    # Bound before the app starts: a port in use is refused before the node touches its log.
    sock = bind_listening(host, port)
    app = create_app(config=config)
    with contextlib.closing(sock):
        uvicorn.Server(
            uvicorn.Config(
                app,
                host=host,
                port=port,
                ssl_certfile=str(tls_cert) if tls_cert else None,
                ssl_keyfile=str(tls_key) if tls_key else None,
                log_config=None,
                access_log=False,
                timeout_graceful_shutdown=10,
                timeout_keep_alive=KEEP_ALIVE_SECONDS,
            )
        ).run(sockets=[sock])


@node.command("update-policy", short_help="Install the next policy version.")
@click.argument("policy_file", type=_FILE)
@_data_option
def update_policy(policy_file: Path, data: Path) -> None:
    """Verify POLICY_FILE as the next version after the node's newest and install it.

    The newest may have expired: that is when a new version is due. An expired version
    may itself be installed, as a step to the one after it.

    A running node picks it up within a few seconds.
    """
    chain = PolicyChain(policy_dir(data), require_current=False)  # an expired one is what to move on from
    doc = read_capped(policy_file, limit=MAX_DOCUMENT_SIZE, what="policy document")
    policy = chain.install(doc)
    record_cli_event(data, "update-policy", detail=f"installed policy version {policy.version}")
    click.echo(f"installed policy version {policy.version}")
    if policy.is_expired(int(time.time())):
        click.echo(
            f"policy version {policy.version} has expired already: install the version after it too",
            err=True,
        )


@node.command("rotate-key", short_help="Switch a stopped node to a new log key the policy lists.")
@_data_option
@click.option(
    "--key",
    "key_file",
    type=_FILE,
    envvar="CERTLEDGER_NEW_LOG_KEY",
    show_envvar=True,
    help=f"The new log key (PEM); default: DATA/{NEXT_KEY}, made by --generate.",
)
@click.option(
    "--generate",
    is_flag=True,
    help=f"Only generate a new log key into DATA/{NEXT_KEY} and print it for the policy proposal.",
)
def rotate_key(data: Path, key_file: Path | None, generate: bool) -> None:
    """Make a new log key the node's key, keeping the old one under DATA/retired-keys/.

    With --generate: create the new key (0600) and print its verifier key to propose
    with 'certledger consortium propose ... rotate-log-key=MEMBER:KEY'; the node may
    keep running. Once 'node update-policy' installed a version listing it, stop the
    node and run this again (with --key, or without to use the generated key). The new
    key's first checkpoint must extend the log's latest one.
    """
    passphrase = os.environ.get("CERTLEDGER_KEY_PASSPHRASE")
    secret = passphrase.encode() if passphrase else None
    if generate:
        if key_file is not None:
            raise click.BadParameter("give --key or --generate, not both")
        path, vkey, listed = stage_log_key(data, passphrase=secret)
        click.echo(f"generated {path}")
        click.echo(f"log key: {vkey}")
        if not listed:
            member = read_capped(data / "member", limit=256, what="member id file").decode().strip()
            click.echo(
                "policy: not listed yet; propose it with 'certledger consortium propose --current "
                f"<newest policy> rotate-log-key={member}:{vkey}', install the signed version with "
                f"'certledger node update-policy FILE --data {data}', then stop the node and run "
                f"'certledger node rotate-key --data {data}'"
            )
        return
    done = rotate_log_key(data, new_key_file=key_file or data / NEXT_KEY, passphrase=secret)
    record_cli_event(data, "rotate-key", detail=f"log key {done.old_key_id.hex()} -> {done.new_key_id.hex()}")
    click.echo(f"log key is now {done.new_key_id.hex()} (its first checkpoint extends size {done.size})")
    click.echo(f"the old key {done.old_key_id.hex()} and its state are kept in {done.retired}")


def _held_alerts(data: Path) -> list[tuple[bytes, dict[str, object]]]:
    """Every fork alert the node in ``data`` holds, with where it was found."""
    path = data / "witness.db"
    if not path.exists():
        raise FileError(f"{path}: no witness database")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            witnessed = [bytes(r[0]) for r in conn.execute("SELECT alert FROM alerts ORDER BY id")]
        finally:
            conn.close()
    except sqlite3.Error as e:
        raise StorageError(f"{path}: cannot read the alerts: {e}") from None
    rows: list[tuple[bytes, dict[str, object]]] = [(a, {"found_by": "witness"}) for a in witnessed]
    mirrors = data / "mirrors.db"
    if mirrors.exists():
        member = (
            read_capped(data / "member", limit=256, what="member id file").decode("ascii", "replace").strip()
        )
        chain = PolicyChain(policy_dir(data), now=time.time)
        m = Mirrors(
            path=mirrors,
            member_id=member,
            policy=lambda: chain.policy,
            client=httpx.Client(),
            extra_sources={},
            clock=time.time,
        )
        try:
            rows += [(a, {"found_by": "mirror"}) for a in m.fork_alerts()]
        finally:
            m.close()
    if (data / "gossip.db").exists():
        rows += [
            (
                g.alert,
                {
                    "found_by": "gossip",
                    "how": "adopted from a peer" if g.how == "adopted" else "found comparing checkpoints",
                    "source": g.source,
                    "learned_at": g.learned_at,
                },
            )
            for g in read_learned(data / "gossip.db")
        ]
    return rows


@node.command(short_help="List the fork alerts this node holds.")
@_data_option
@click.option(
    "--check/--no-check", default=True, show_default=True, help="Verify each alert against the policy."
)
def alerts(data: Path, check: bool) -> None:
    """Print each fork alert as one JSON line: met as a witness, as a mirror, or learned
    from another member's node by gossip (``found_by``, and for gossip ``source``, the
    peer URL it came from); with --check, say whether it verifies against the policy."""
    rows = _held_alerts(data)
    policy = PolicyChain(policy_dir(data), now=time.time).policy if check and rows else None
    for raw, where in rows:
        doc = json.loads(raw)
        doc.update(where)
        if policy is not None:
            try:
                check_alert(raw, policy)
                doc["verified"] = True
            except LedgerError as e:
                doc["verified"] = False
                doc["error"] = str(e)
        click.echo(json.dumps(doc, sort_keys=True))
    click.echo(f"{len(rows)} alert(s)", err=True)


@node.command(short_help="Rebuild this node's log from a mirror or a static copy of it.")
@_data_option
@click.option(
    "--from",
    "where",
    required=True,
    envvar="CERTLEDGER_RECOVER_FROM",
    show_envvar=True,
    help="A copy of this member's log: another node's /mirror/<origin hash>/ URL, or a "
    "URL or directory with a static copy of its tiles.",
)
def recover(data: Path, where: str) -> None:
    """Rebuild a lost or restored log from WHERE, verifying everything first.

    The node must be stopped. The old database is kept, renamed. The rebuilt log must
    extend the checkpoint the log key last signed.
    """
    passphrase = os.environ.get("CERTLEDGER_KEY_PASSPHRASE")
    config = load_config(data, passphrase=passphrase.encode() if passphrase else None)
    done = run_recover(config, where)
    click.echo(f"recovered {done.size} entries from {done.source}")
    if done.kept_old is not None:
        click.echo(f"the old database is kept as {done.kept_old}")


for _command in (add_clerk_cmd, list_clerks_cmd, remove_clerk_cmd, rotate_token_cmd, trail):
    node.add_command(_command)


@node.command(short_help="Check what expires soon and what needs a person now.")
@_data_option
@click.option(
    "--tls-cert",
    type=_FILE,
    envvar="CERTLEDGER_TLS_CERT",
    show_envvar=True,
    help="The TLS certificate the node serves, to check its expiry.",
)
@click.option(
    "--warn-days",
    type=click.IntRange(0, 3660),
    default=30,
    show_default=True,
    help="Warn about anything that expires within this many days.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per finding.")
def doctor(data: Path, tls_cert: Path | None, warn_days: int, as_json: bool) -> None:
    """Check the node in DATA without changing anything: the policy version, this node's
    log and witness keys, its mandates and the TLS certificate (time left before each
    expires), key file modes, fork alerts held and free disk.

    Exit status: 0 all fine, 1 something to do soon (a warning), 2 something wrong now.
    """
    passphrase = os.environ.get("CERTLEDGER_KEY_PASSPHRASE")
    unread: Finding | None = None
    held: list[tuple[bytes, dict[str, object]]] = []
    try:
        if (data / "witness.db").exists():  # else the node has not run yet
            held = _held_alerts(data)
    except LedgerError as e:
        unread = Finding(level="fail", what="fork alerts", message=f"cannot read them: {e}")
    findings = examine(
        data,
        now=int(time.time()),
        warn_days=warn_days,
        tls_cert=tls_cert,
        passphrase=passphrase.encode() if passphrase else None,
        alerts=held,
    )
    if unread is not None:
        findings = [unread if f.what == "fork alerts" else f for f in findings]
    for f in findings:
        if as_json:
            click.echo(json.dumps(f.to_json(), ensure_ascii=False, sort_keys=True))
        else:
            click.echo(f"{f.level.upper():4}  {f.what}: {f.message}")
    code = exit_code(findings)
    if not as_json:
        click.echo(
            ("all fine", "something to do soon", "something is wrong now")[code],
            err=True,
        )
    raise SystemExit(code)
