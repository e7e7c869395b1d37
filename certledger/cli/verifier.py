"""``certledger verifier run``: the verification service (API, web page, consortium page)."""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path

import click
import httpx
import uvicorn

from ledger.errors import LedgerError
from ledger.files import read_capped
from ledger.replica.store import ReplicaStore
from verifier.app import Limits, create_app
from verifier.follow import PolicyFollower, policy_sources
from verifier.service import ReplicaService
from verifier.verifier import Verifier, node_sources

__all__ = ["parse_listen", "verifier"]

_MAX_POLICY = 1 << 20


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6 address]:PORT`` for IPv6) as (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise click.BadParameter(f"{value!r} is not HOST:PORT", param_hint="--listen")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def bind_listening(host: str, port: int) -> socket.socket:
    """A socket listening on ``host:port``; a ClickException naming the address if it cannot."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # the protocol is given so that asyncio sets TCP_NODELAY on accepted connections
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        # listen now, so that a client told the address queues until the server accepts
        sock.listen(2048)
    except OSError as e:
        sock.close()
        raise click.ClickException(f"cannot listen on {host}:{port}: {e.strerror}") from None
    return sock


@click.group(name="verifier")
def verifier() -> None:
    """The verification service: HTTP API, web page and consortium page."""


@verifier.command(name="run")
@click.option(
    "--nodes",
    envvar="CERTLEDGER_NODES",
    metavar="URL,...",
    help="Where to sync members' logs from: node URLs, or directories holding a copy of a node's "
    "public files. Default: every member's node from the policy. [env CERTLEDGER_NODES]",
)
@click.option(
    "--data",
    required=True,
    envvar="CERTLEDGER_DATA",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory of the replica database and of the policy versions adopted (created if "
    "missing). [env CERTLEDGER_DATA]",
)
@click.option(
    "--policy",
    "policy_file",
    required=True,
    envvar="CERTLEDGER_POLICY",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The signed trust policy document to pin (the first of the chain kept in --data). "
    "[env CERTLEDGER_POLICY]",
)
@click.option(
    "--listen",
    default="127.0.0.1:8080",
    show_default=True,
    envvar="CERTLEDGER_LISTEN",
    help="HOST:PORT to serve on (port 0 picks a free one). [env CERTLEDGER_LISTEN]",
)
@click.option(
    "--sync-interval",
    default=60.0,
    show_default=True,
    envvar="CERTLEDGER_SYNC_INTERVAL",
    type=click.FloatRange(min=1.0),
    help="Seconds between syncs of every member's log. [env CERTLEDGER_SYNC_INTERVAL]",
)
@click.option(
    "--offline",
    is_flag=True,
    envvar="CERTLEDGER_OFFLINE",
    help="Serve from the replica as it is; never sync, open no connection. [env CERTLEDGER_OFFLINE]",
)
@click.option(
    "--rate",
    default=5.0,
    show_default=True,
    envvar="CERTLEDGER_RATE",
    type=click.FloatRange(min=0.01),
    help="Requests per second per client address on /v1/. [env CERTLEDGER_RATE]",
)
@click.option(
    "--burst",
    default=20,
    show_default=True,
    envvar="CERTLEDGER_BURST",
    type=click.IntRange(min=1),
    help="Burst allowance per client address. [env CERTLEDGER_BURST]",
)
@click.option(
    "--forwarded-allow-ips",
    envvar="CERTLEDGER_FORWARDED_ALLOW_IPS",
    help="Addresses of reverse proxies whose X-Forwarded-For is trusted (comma separated), so "
    "the rate limit applies per real client. [env CERTLEDGER_FORWARDED_ALLOW_IPS]",
)
def run(
    *,
    nodes: str | None,
    data: Path,
    policy_file: Path,
    listen: str,
    sync_interval: float,
    offline: bool,
    rate: float,
    burst: int,
    forwarded_allow_ips: str | None,
) -> None:
    """Serve verification over HTTP: POST /v1/verify, POST /v1/verify/image, GET /v1/status,
    the web page at / and the consortium page at /consortium (API docs at /docs).

    Every member's log is synced from the nodes at start and every --sync-interval
    seconds, and an issuer's log on demand before a certificate is called
    NOT_IN_LEDGER. Verdicts come from the replica alone: the issuer need not be
    reachable, and old data is answered STALE, never VALID.

    The trust policy follows the consortium: on every sync (and before answering
    UNKNOWN_ISSUER, or STALE under an expired policy) the nodes are asked for newer
    versions, which are verified from the pinned one, stored in --data/policy/ and used
    from then on; GET /v1/status shows the version, its expiry and the last refusal.
    """
    if offline and nodes:
        raise click.UsageError("--offline and --nodes exclude each other")
    host, port = parse_listen(listen)
    pinned = read_capped(policy_file, limit=_MAX_POLICY, what="policy document")
    data.mkdir(parents=True, exist_ok=True)
    follower = PolicyFollower(directory=data / "policy", pinned=pinned)
    policy = follower.policy
    sources = None
    urls: list[str] = []
    if not offline:
        urls = [u.strip() for u in nodes.split(",")] if nodes else [m.base_url for m in policy.members]
        if not all(urls):
            raise click.BadParameter("give node URLs separated by commas", param_hint="--nodes")
        client = httpx.Client(timeout=5.0)
        sources = node_sources(urls, client=client)
        # the policy is looked for at the nodes given, or, by default, at the members' nodes
        # of the version current at start
        following = policy_sources(urls, client=client)
    sock = bind_listening(host, port)
    stop = threading.Event()
    with contextlib.closing(sock), ReplicaStore.open(data / "replica.db") as store:
        verifier_ = Verifier(
            store=store, sources=sources, follower=follower, policy_sources=following if urls else ()
        )
        service = ReplicaService(verifier=verifier_)

        def sync_forever() -> None:
            sync_loop(service, follower, stop, sync_interval)

        syncer = threading.Thread(target=sync_forever, name="replica-sync", daemon=True)
        if sources is not None:
            syncer.start()
        app = create_app(service=service, limits=Limits(rate=rate, burst=burst), registry=follower.registry)
        config = uvicorn.Config(
            app,
            log_level="warning",
            proxy_headers=forwarded_allow_ips is not None,
            forwarded_allow_ips=forwarded_allow_ips,
        )
        server = uvicorn.Server(config)
        bound_host, bound_port = sock.getsockname()[:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        mode = "offline" if sources is None else f"syncing every {sync_interval:g} s"
        click.echo(
            f"certledger verifier: policy v{policy.version}, {len(policy.members)} members, {mode}; "
            f"serving on http://{shown}:{bound_port}/",
        )
        try:
            server.run(sockets=[sock])
        finally:
            stop.set()
            if syncer.is_alive():
                syncer.join(timeout=30)


def sync_loop(
    service: ReplicaService, follower: PolicyFollower, stop: threading.Event, interval: float
) -> None:
    """Sync every member and follow the policy every ``interval`` seconds until ``stop``.
    A round that fails (a locked or failing database, say) is reported and the next one
    tries again: the loop never dies of it."""
    while not stop.is_set():
        try:
            seen = follower.policy.version
            for r in service.sync():
                if not r.ok:
                    why = "; ".join(r.refused) or "no source answered"
                    click.echo(f"sync {r.member_id}: {why}", err=True)
            if follower.policy.version != seen:
                click.echo(f"trust policy: now version {follower.policy.version}", err=True)
            refusal = follower.last_refusal
            if refusal is not None and refusal.at == follower.last_check:
                click.echo(f"trust policy not updated ({refusal.rule}): {refusal.message}", err=True)
        except LedgerError as e:
            click.echo(f"sync failed, trying again in {interval:g} s: {e}", err=True)
        stop.wait(interval)
