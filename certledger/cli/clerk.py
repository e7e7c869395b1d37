"""``certledger node add-clerk | list-clerks | remove-clerk | rotate-token | trail``.

Clerk management writes the node's private store directly (a running node sees the
change at its next request) and records itself in the operation trail.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

import click

from ledger.errors import FileError, MalformedError
from node import trail as trail_mod
from node.clerks import CLI_ACTOR, Role, add_clerk, list_clerks, remove_clerk, rotate_token
from node.private import FILE_NAME, PrivateStore

__all__ = [
    "add_clerk_cmd",
    "list_clerks_cmd",
    "record_cli_event",
    "remove_clerk_cmd",
    "rotate_token_cmd",
    "trail",
]

_DIR = click.Path(file_okay=False, path_type=Path)

_data_option = click.option(
    "--data",
    "data",
    required=True,
    type=_DIR,
    envvar="CERTLEDGER_DATA",
    show_envvar=True,
    help="The node's data directory.",
)


def _member(data: Path) -> str:
    try:
        return (data / "member").read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        raise FileError(f"{data}: not a node data directory (run 'certledger node init')") from None


def _store(data: Path) -> PrivateStore:
    _member(data)
    return PrivateStore(data / FILE_NAME)


def record_cli_event(data: Path, action: str, *, target: tuple[str, ...] = (), detail: str = "") -> None:
    """Append one event by the operator at the command line to the node's trail."""
    store = _store(data)
    try:
        store.commit(
            events=[
                trail_mod.TrailEvent(actor=CLI_ACTOR, action=action, status=200, target=target, detail=detail)
            ]
        )
    finally:
        store.close()


@click.command("add-clerk", short_help="Add a clerk and print its token once.")
@click.argument("name")
@click.option(
    "--role", required=True, type=click.Choice([r.value for r in Role]), help="What the clerk may do."
)
@_data_option
def add_clerk_cmd(name: str, role: str, data: Path) -> None:
    """Add clerk NAME with ROLE and print its bearer token.

    The token is shown only now; the node keeps only its hash. Roles: issue (issue,
    batch, replace), revoke (revoke, suspend, reinstate), admin (everything).
    """
    store = _store(data)
    try:
        clerk, token = add_clerk(store, member_id=_member(data), name=name, role=Role(role))
    finally:
        store.close()
    click.echo(
        f"added clerk {clerk.name!r} (role {clerk.role.value}, operator id {clerk.operator})", err=True
    )
    click.echo("token (shown once; store it safely):", err=True)
    click.echo(token)


@click.command("list-clerks", short_help="List the clerks.")
@_data_option
def list_clerks_cmd(data: Path) -> None:
    """Print one line per clerk: name, role, operator id, created (UTC)."""
    store = _store(data)
    try:
        clerks = list_clerks(store)
    finally:
        store.close()
    for c in clerks:
        created = _dt.datetime.fromtimestamp(c.created, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        click.echo(f"{c.name}\t{c.role.value}\t{c.operator}\t{created}")
    click.echo(f"{len(clerks)} clerk(s)", err=True)


@click.command("remove-clerk", short_help="Remove a clerk; its token stops working.")
@click.argument("name")
@_data_option
def remove_clerk_cmd(name: str, data: Path) -> None:
    """Remove clerk NAME."""
    store = _store(data)
    try:
        remove_clerk(store, name=name)
    finally:
        store.close()
    click.echo(f"removed clerk {name!r}", err=True)


@click.command("rotate-token", short_help="Give a clerk a new token; the old one stops working.")
@click.argument("name")
@_data_option
def rotate_token_cmd(name: str, data: Path) -> None:
    """Print a new token for clerk NAME (shown once)."""
    store = _store(data)
    try:
        token = rotate_token(store, member_id=_member(data), name=name)
    finally:
        store.close()
    click.echo(f"new token for {name!r} (shown once):", err=True)
    click.echo(token)


def _since(value: str | None) -> int | None:
    if value is None:
        return None
    if value.isdigit():
        return int(value) * 1000
    try:
        t = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise MalformedError(f"--since {value!r}: give Unix seconds or an ISO date/time") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.UTC)
    return int(t.timestamp() * 1000)


@click.command(short_help="Show or verify the operation trail.")
@_data_option
@click.option("--since", help="Only events from then on (Unix seconds or ISO date/time, UTC if no zone).")
@click.option("--clerk", help="Only events by this clerk (name).")
@click.option("--verify", is_flag=True, help="Check the whole chain instead of printing events.")
@click.option(
    "--expect",
    metavar="SIZE:ROOT",
    help="With --verify: a head printed earlier that the trail must still extend.",
)
def trail(data: Path, since: str | None, clerk: str | None, verify: bool, expect: str | None) -> None:
    """Print the trail as JSON lines, or with --verify check that nothing in it was changed or
    removed (and print its head, SIZE:ROOT, to note for a later --expect)."""
    store = _store(data)
    try:
        with store.reader() as conn:
            if verify:
                size, root = trail_mod.verify(
                    conn, expect=None if expect is None else trail_mod.parse_head(expect)
                )
                click.echo(f"trail verified: {size} event(s), head {size}:{root.hex()}")
                return
            n = 0
            for rec in trail_mod.read(conn, since_ms=_since(since), actor=clerk):
                doc = rec.to_json()
                doc["time"] = _dt.datetime.fromtimestamp(rec.time_ms / 1000, _dt.UTC).isoformat(
                    timespec="milliseconds"
                )
                click.echo(json.dumps(doc, ensure_ascii=False))
                n += 1
            click.echo(f"{n} event(s)", err=True)
    finally:
        store.close()
