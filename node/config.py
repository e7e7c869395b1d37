"""A node's data directory and configuration.

Layout of the data directory (created by ``certledger node init``)::

    member             this department's member id, one line
    log.key            the log signing key (PEM, mode 0600)
    witness.key        the witness cosigning key (PEM, mode 0600)
    log.db             the department's log (ledger.log.store)
    witness.db         witness state and fork alerts (node.witness)
    mirrors.db         verified copies of the other members' logs (node.mirror)
    gossip.db          fork alerts learned from the other members (node.gossip)
    node.db            checkpoints of our own log with the cosignatures collected
    policy/<N>.note    every trust-policy version adopted, N zero-padded; the first is pinned

:func:`load_config` checks, before a node starts, that the newest policy reached from
the pinned one is not expired and that both keys are the ones it lists for the member.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ledger.clock import CLOCK_SKEW
from ledger.errors import FileError, MalformedError, PolicyError
from ledger.files import read_capped, write_file
from ledger.keys import SigningKey
from ledger.log.store import LogStore
from ledger.trust.policy import Member, Policy
from ledger.trust.policy_doc import MAX_DOCUMENT_SIZE
from ledger.trust.trust import TrustedPolicy, verify_next, verify_pinned

__all__ = [
    "KEEP_ALIVE_SECONDS",
    "NodeConfig",
    "PolicyChain",
    "check_keys",
    "init_data_dir",
    "load_config",
    "policy_dir",
    "read_member",
]

_DOC = re.compile(r"([0-9]{8})\.note")

#: How long the node keeps an idle HTTP/1.1 connection open. Longer than client pools
#: keep theirs (httpx: 5 s), so the client, not the node, closes an idle connection:
#: with equal timeouts a client may send a request on a connection at the moment the
#: node closes it, and the request fails with a connection reset (the server's default
#: is 5 s; 75 s is nginx's default).
KEEP_ALIVE_SECONDS = 75


def policy_dir(data_dir: Path) -> Path:
    """Where the policy versions live."""
    return data_dir / "policy"


class PolicyChain:
    """The policy versions in a data directory, walked from the pinned first one.

    Every step must satisfy the update rules; as in TUF, an expired version may be
    walked through, and only the newest one must be current (:meth:`check_current`):
    a node whose newest version expired still takes the next one, from
    ``certledger node update-policy`` or from a peer. :meth:`reload` picks up versions
    installed since.
    """

    def __init__(
        self, directory: Path, *, now: Callable[[], float] = time.time, require_current: bool = True
    ) -> None:
        self._dir = directory
        self._now = now
        self._lock = threading.Lock()
        self._docs: dict[int, bytes] = {}
        self._policy: Policy | None = None
        self._load()
        if require_current:
            self.check_current()

    def reload(self) -> Policy:
        """Read and verify the chain again; PolicyError (``expired``) if the newest version
        has expired (the chain is taken up all the same, so a newer version can follow)."""
        self._load()
        return self.check_current()

    def check_current(self) -> Policy:
        """The newest version; PolicyError (``expired``) if it has expired."""
        policy = self.policy
        policy.check_not_expired(int(self._now()))
        return policy

    def _load(self) -> None:
        try:
            names = sorted(p.name for p in self._dir.iterdir() if _DOC.fullmatch(p.name))
        except OSError as e:
            raise FileError(f"{self._dir}: cannot list the policy versions: {e.strerror}") from None
        if not names:
            raise FileError(f"{self._dir}: no policy version installed (run 'certledger node init')")
        docs = [read_capped(self._dir / n, limit=MAX_DOCUMENT_SIZE, what="policy document") for n in names]
        now = int(self._now())
        try:
            doc = verify_pinned(docs[0])
        except (PolicyError, MalformedError) as e:
            raise type(e)(f"{e} [{names[0]}]", **_rule(e)) from None
        first = doc.policy.version
        for name, data in zip(names[1:], docs[1:], strict=True):
            try:
                doc = verify_next(doc.policy, data)
                doc.policy.check_issued(now, skew=CLOCK_SKEW)
            except (PolicyError, MalformedError) as e:
                where = f"{name}; still trusting version {doc.policy.version}"
                raise type(e)(f"{e} [{where}]", **_rule(e)) from None
        chain = {first + i: d for i, d in enumerate(docs)}
        with self._lock:
            self._docs = chain
            self._policy = doc.policy

    @property
    def policy(self) -> Policy:
        """The newest verified version (it may have expired: see :meth:`check_current`)."""
        with self._lock:
            assert self._policy is not None
            return self._policy

    def document(self, version: int) -> bytes | None:
        """The exact signed document of ``version``, or None."""
        with self._lock:
            return self._docs.get(version)

    def versions(self) -> list[int]:
        """The versions held, oldest first."""
        with self._lock:
            return sorted(self._docs)

    def install(self, data: bytes) -> Policy:
        """Verify ``data`` as the next version and add it to the directory; returns it.
        It may itself have expired (an intermediate version: install the next one too)."""
        nxt = verify_next(self.policy, data)
        nxt.policy.check_issued(int(self._now()), skew=CLOCK_SKEW)
        write_file(self._dir / f"{nxt.policy.version:08d}.note", data, mode=0o644, what="policy document")
        self._load()
        return self.policy


def _rule(e: Exception) -> dict[str, str | None]:
    return {"rule": e.rule} if isinstance(e, PolicyError) else {}


def check_keys(
    policy: Policy, member_id: str, *, log_key: SigningKey, witness_key: SigningKey, now: int
) -> Member:
    """The member, if ``log_key`` is one of its log keys valid at ``now`` and ``witness_key`` is
    its witness key; PolicyError otherwise."""
    member = policy.member(member_id)
    if member is None:
        raise PolicyError(
            f"member {member_id!r} is not in policy version {policy.version}", rule="unknown-member"
        )
    listed = [k for k in member.log_keys if k.public_key == log_key.public_key]
    if not listed:
        raise PolicyError(
            f"the log key in the data directory is not one of {member_id}'s log keys in policy version "
            f"{policy.version}",
            rule="key-not-listed",
        )
    k = listed[0]
    if (
        now < k.valid_from
        or (k.valid_until is not None and now >= k.valid_until)
        or k.compromised_at is not None
    ):
        raise PolicyError(
            f"{member_id}'s log key is not valid now: window {k.window()}", rule="key-not-valid"
        )
    if member.witness_key.public_key != witness_key.public_key:
        raise PolicyError(
            f"the witness key in the data directory is not {member_id}'s witness key in policy version "
            f"{policy.version}",
            rule="key-not-listed",
        )
    return member


@dataclass(kw_only=True)
class NodeConfig:
    """Everything a node needs to run. Build it with :func:`load_config`."""

    data_dir: Path
    member_id: str
    policy: PolicyChain
    log_key: SigningKey
    witness_key: SigningKey
    #: Seconds between checkpoints while entries arrive.
    checkpoint_interval: float = 1.0
    #: Also write the tiles and checkpoint here as static files.
    tiles_dir: Path | None = None
    #: Submit our checkpoints to the other members' witnesses.
    submit: bool = True
    #: How requests to other members travel (tests route them in-process).
    transport: httpx.AsyncBaseTransport | None = None
    #: Longest wait between two tries of a witness that failed.
    max_backoff: float = 10.0
    #: Keep verified copies of the other members' logs, synced every ``mirror_interval`` s.
    mirror: bool = True
    mirror_interval: float = 2.0
    #: Extra places to read a member's log from (URLs or directories), by member id.
    mirror_sources: dict[str, list[str]] = field(default_factory=dict)
    #: Record each adopted policy version (its document's hash) as a statement in our log.
    record_policy: bool = True
    #: Seconds between two looks for newer policy versions (on disk and at the peers).
    policy_interval: float = 5.0
    #: Compare checkpoints and fork alerts with the other members every ``gossip_interval`` s.
    gossip: bool = True
    gossip_interval: float = 5.0
    #: The client mirrors and gossip read with (tests route it in-process); None: a new one.
    mirror_client: httpx.Client | None = None
    clock: Callable[[], float] = field(default=time.time)
    #: Accept clerks' bearer tokens over plain HTTP from non-loopback addresses
    #: (only behind a TLS-terminating proxy on a trusted network).
    allow_plain_http: bool = False
    #: The TLS certificate the node serves (for its expiry metric), if any.
    tls_cert: Path | None = None
    #: Worker processes that make the QR texts of large issuing batches (0: in the node).
    render_workers: int = 0

    @property
    def member(self) -> Member:
        """This node's member entry in the current policy."""
        return self.policy.policy.require_member(self.member_id)


def init_data_dir(
    data_dir: Path,
    *,
    document: bytes,
    member_id: str,
    log_key: SigningKey,
    witness_key: SigningKey,
    passphrase: bytes | None = None,
) -> Member:
    """Create a node's data directory: keys (mode 0600), member id, pinned policy, empty log.

    ``document`` is the signed policy to pin; refuses a member it does not list and a
    directory that already holds a node. Returns the member as the policy lists it.
    """
    trusted = TrustedPolicy(document)
    member = trusted.policy.member(member_id)
    if member is None:
        raise MalformedError(f"member {member_id!r} is not in policy version {trusted.version}")
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise FileError(f"{data_dir}: cannot create the data directory: {e.strerror}") from None
    if any((data_dir / n).exists() for n in ("member", "log.key", "witness.key", "log.db")):
        raise FileError(f"{data_dir}: already holds a node; refusing to overwrite it")
    try:
        policy_dir(data_dir).mkdir(mode=0o755, exist_ok=True)
    except OSError as e:
        raise FileError(f"{data_dir}: cannot create the data directory: {e.strerror}") from None
    log_key.save(data_dir / "log.key", passphrase=passphrase)
    witness_key.save(data_dir / "witness.key", passphrase=passphrase)
    write_file(data_dir / "member", member_id.encode() + b"\n", mode=0o644, what="member id")
    write_file(
        policy_dir(data_dir) / f"{trusted.version:08d}.note", document, mode=0o644, what="policy document"
    )
    LogStore.create(data_dir / "log.db", origin=member.origin).close()
    return member


def read_member(data_dir: Path) -> str:
    """The member id in ``DATA/member``."""
    raw = read_capped(data_dir / "member", limit=256, what="member id file")
    try:
        return raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise MalformedError(f"{data_dir / 'member'}: the member id is not ASCII") from None


def load_config(
    data_dir: str | os.PathLike[str],
    *,
    checkpoint_interval: float = 1.0,
    tiles_dir: Path | None = None,
    submit: bool = True,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], float] = time.time,
    passphrase: bytes | None = None,
    allow_plain_http: bool = False,
    mirror: bool = True,
    mirror_interval: float = 2.0,
    mirror_sources: dict[str, list[str]] | None = None,
    gossip: bool = True,
    gossip_interval: float = 5.0,
    tls_cert: Path | None = None,
    render_workers: int = 0,
) -> NodeConfig:
    """Read and check a data directory; refuses an expired policy or keys it does not list."""
    d = Path(data_dir)
    member_id = read_member(d)
    chain = PolicyChain(policy_dir(d), now=clock)
    log_key = SigningKey.load(d / "log.key", passphrase=passphrase)
    witness_key = SigningKey.load(d / "witness.key", passphrase=passphrase)
    check_keys(chain.policy, member_id, log_key=log_key, witness_key=witness_key, now=int(clock()))
    return NodeConfig(
        data_dir=d,
        member_id=member_id,
        policy=chain,
        log_key=log_key,
        witness_key=witness_key,
        checkpoint_interval=checkpoint_interval,
        tiles_dir=tiles_dir,
        submit=submit,
        transport=transport,
        clock=clock,
        allow_plain_http=allow_plain_http,
        tls_cert=tls_cert,
        mirror=mirror,
        mirror_interval=mirror_interval,
        mirror_sources=dict(mirror_sources or {}),
        gossip=gossip,
        gossip_interval=gossip_interval,
        render_workers=render_workers,
    )
