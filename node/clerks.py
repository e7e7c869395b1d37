"""Clerks and their bearer tokens.

A token reads ``clk1.<member id>.<clerk number>.<secret>``, the secret 32 random bytes in
base64url (256 bits). The node keeps only ``SHA-256(TOKEN_CONTEXT || member id || token)``
and compares it with :func:`hmac.compare_digest`; the member id inside the hash makes a
token of another department's node worthless here even if a clerk number matches.
Each clerk has a pseudonymous operator id (``op:`` and 12 random hex digits), written
into every statement the clerk causes, so the public log says *which* clerk acted
without naming anyone.

Roles: ``issue`` (issue, batch, replace), ``revoke`` (revoke, suspend, reinstate),
``admin`` (everything). Every role may look up the department's certificates.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass
from enum import StrEnum

from ledger.errors import ConflictError, MalformedError, PolicyError
from node import trail
from node.private import PrivateStore

__all__ = [
    "Clerk",
    "ForbiddenError",
    "Role",
    "TokenError",
    "add_clerk",
    "authenticate",
    "list_clerks",
    "remove_clerk",
    "rotate_token",
]

TOKEN_CONTEXT = b"certledger/clerk-token/v1\n"
_TOKEN = re.compile(r"clk1\.([a-z0-9][a-z0-9-]{0,62})\.([0-9]{1,12})\.([A-Za-z0-9_-]{43})")
_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,64}")
#: The actor the command line writes into the trail for clerk management.
CLI_ACTOR = "operator (command line)"


class TokenError(PolicyError):
    """No token, or not a token of a current clerk of this node (HTTP 401)."""


class ForbiddenError(PolicyError):
    """A known clerk asked for something its role or the mandate does not allow (HTTP 403)."""


class Role(StrEnum):
    """What a clerk may do."""

    ISSUE = "issue"
    REVOKE = "revoke"
    ADMIN = "admin"

    def allows(self, needed: Role) -> bool:
        """True if this role may do what ``needed`` may."""
        return self is Role.ADMIN or self is needed


@dataclass(frozen=True, kw_only=True)
class Clerk:
    """A clerk of this node."""

    id: int
    name: str
    role: Role
    operator: str
    created: int


def _hash(member_id: str, token: str) -> bytes:
    return hashlib.sha256(TOKEN_CONTEXT + member_id.encode() + b"\n" + token.encode()).digest()


def _new_token(member_id: str, clerk_id: int) -> str:
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    return f"clk1.{member_id}.{clerk_id}.{secret}"


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name != name.strip():
        raise MalformedError("a clerk name is 1 to 64 printable characters without surrounding spaces")


def add_clerk(
    store: PrivateStore, *, member_id: str, name: str, role: Role, actor: str = CLI_ACTOR
) -> tuple[Clerk, str]:
    """Add a clerk; return it and its token (shown once, never stored)."""
    _check_name(name)
    role = Role(role)
    now = int(time.time())
    operator = "op:" + secrets.token_hex(6)
    with store.write() as conn:
        if conn.execute("SELECT 1 FROM clerks WHERE name = ? AND removed IS NULL", (name,)).fetchone():
            raise ConflictError(f"a clerk named {name!r} already exists")
        cur = conn.execute(
            "INSERT INTO clerks (name, role, token_hash, operator, created) VALUES (?, ?, ?, ?, ?)",
            (name, role.value, b"", operator, now),
        )
        clerk_id = cur.lastrowid
        assert clerk_id is not None
        token = _new_token(member_id, clerk_id)
        conn.execute("UPDATE clerks SET token_hash = ? WHERE id = ?", (_hash(member_id, token), clerk_id))
        PrivateStore.insert(
            conn,
            events=[
                trail.TrailEvent(
                    actor=actor, action="add-clerk", status=200, target=(name,), detail=f"role {role.value}"
                )
            ],
        )
    return Clerk(id=clerk_id, name=name, role=role, operator=operator, created=now), token


def _find(conn: sqlite3.Connection, name: str) -> tuple[int, str]:
    row = conn.execute("SELECT id, role FROM clerks WHERE name = ? AND removed IS NULL", (name,)).fetchone()
    if row is None:
        raise MalformedError(f"no clerk named {name!r}")
    return int(row[0]), str(row[1])


def remove_clerk(store: PrivateStore, *, name: str, actor: str = CLI_ACTOR) -> None:
    """Remove a clerk: its token stops working at once. Its operator id stays on record."""
    with store.write() as conn:
        clerk_id, _ = _find(conn, name)
        conn.execute(
            "UPDATE clerks SET removed = ?, token_hash = ? WHERE id = ?", (int(time.time()), b"", clerk_id)
        )
        PrivateStore.insert(
            conn, events=[trail.TrailEvent(actor=actor, action="remove-clerk", status=200, target=(name,))]
        )


def rotate_token(store: PrivateStore, *, member_id: str, name: str, actor: str = CLI_ACTOR) -> str:
    """Give a clerk a new token; the old one stops working. Returns the new token."""
    with store.write() as conn:
        clerk_id, _ = _find(conn, name)
        token = _new_token(member_id, clerk_id)
        conn.execute("UPDATE clerks SET token_hash = ? WHERE id = ?", (_hash(member_id, token), clerk_id))
        PrivateStore.insert(
            conn, events=[trail.TrailEvent(actor=actor, action="rotate-token", status=200, target=(name,))]
        )
    return token


def list_clerks(store: PrivateStore) -> list[Clerk]:
    """The current clerks, by name."""
    rows = store.query(
        "SELECT id, name, role, operator, created FROM clerks WHERE removed IS NULL ORDER BY name"
    )
    return [Clerk(id=i, name=n, role=Role(r), operator=o, created=c) for i, n, r, o, c in rows]


def clerk_names(store: PrivateStore) -> dict[int, str]:
    """Every clerk's name by number, removed ones included (for reading the trail and records)."""
    return {i: n for i, n in store.query("SELECT id, name FROM clerks")}


def authenticate(store: PrivateStore, *, member_id: str, authorization: str | None) -> Clerk:
    """The clerk whose bearer token is in the ``Authorization`` header; TokenError otherwise."""
    if not authorization:
        raise TokenError("no bearer token: send 'Authorization: Bearer <clerk token>'")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise TokenError("the Authorization header must be 'Bearer <clerk token>'")
    token = token.strip()
    m = _TOKEN.fullmatch(token)
    if m is None:
        raise TokenError("the bearer token is not a clerk token")
    if m.group(1) != member_id:
        raise TokenError("the bearer token is not a token of this department's node")
    rows = store.query(
        "SELECT id, name, role, token_hash, operator, created FROM clerks WHERE id = ? AND removed IS NULL",
        (int(m.group(2)),),
    )
    want = _hash(member_id, token)
    stored = bytes(rows[0][3]) if rows else b"\x00" * 32
    if not hmac.compare_digest(stored, want) or not rows:
        raise TokenError("the bearer token is not valid here (unknown, removed or rotated)")
    i, name, role, _, operator, created = rows[0]
    return Clerk(id=i, name=name, role=Role(role), operator=operator, created=created)


def require(clerk: Clerk, needed: Role) -> None:
    """ForbiddenError unless ``clerk``'s role allows ``needed``."""
    if not clerk.role.allows(needed):
        raise ForbiddenError(
            f"clerk {clerk.name!r} has the {clerk.role.value} role; this needs {needed.value}"
        )
