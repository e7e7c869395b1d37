"""Switch a stopped node to a rotated log key (``certledger node rotate-key``).

A node signs with ``DATA/log.key`` and remembers its last checkpoint in
``DATA/log.key.last-checkpoint``; that memory belongs to one key only. To rotate,
:func:`rotate_log_key` (with the node stopped: it takes the log's writer lock) checks
that the newest adopted policy lists the new key for this member and that it is valid
now, keeps the old key and its memory under ``DATA/retired-keys/<key id>/`` (never
deleted), and gives the new key a memory of the log's latest checkpoint, so that its
first checkpoint must extend what the old key signed. :func:`stage_log_key` generates a
key for the policy proposal first (``DATA/log.key.next``); the node may keep running.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ledger.errors import ConflictError, FileError, PolicyError, StorageError
from ledger.files import fsync_path, read_capped, write_file
from ledger.keys import SIG_TYPE_ED25519, SigningKey, VerifierKey, key_id
from ledger.log.signer import STATE_SUFFIX, LogSigner, SignerState
from ledger.log.store import LogStore
from node.config import PolicyChain, check_keys, policy_dir, read_member

__all__ = ["NEXT_KEY", "RETIRED_DIR", "Rotated", "rotate_log_key", "stage_log_key"]

#: Where ``rotate-key --generate`` puts the new key until the policy lists it.
NEXT_KEY = "log.key.next"
#: Where retired log keys are kept, each with its state file, by key ID.
RETIRED_DIR = "retired-keys"
_MAX_KEY_FILE = 64 * 1024


@dataclass(frozen=True, kw_only=True)
class Rotated:
    """What a rotation did: the old and new key IDs, where the old key is kept, and the
    size the new key's first checkpoint must extend."""

    old_key_id: bytes
    new_key_id: bytes
    retired: Path
    size: int


def _not_listed(member_id: str, version: int, vkey: VerifierKey, data_dir: Path) -> PolicyError:
    return PolicyError(
        f"the new log key {vkey.key_id.hex()} is not yet one of {member_id}'s log keys in policy "
        f"version {version}: propose it ('certledger consortium propose --current <newest policy> "
        f"rotate-log-key={member_id}:{vkey}'), have it signed, install it with 'certledger node "
        f"update-policy <file> --data {data_dir}', then run this again",
        rule="key-not-listed",
    )


def stage_log_key(data_dir: Path, *, passphrase: bytes | None = None) -> tuple[Path, VerifierKey, bool]:
    """Generate a new log key into ``DATA/log.key.next`` (mode 0600; refuses to overwrite).

    Returns its path, its verifier key (for ``rotate-log-key=MEMBER:KEY``) and whether
    the newest adopted policy already lists it.
    """
    member_id = read_member(data_dir)
    policy = PolicyChain(policy_dir(data_dir)).policy
    member = policy.require_member(member_id)
    key = SigningKey.generate()
    path = data_dir / NEXT_KEY
    key.save(path, passphrase=passphrase)
    vkey = VerifierKey(name=member.origin, public_key=key.public_key, sig_type=SIG_TYPE_ED25519)
    return path, vkey, any(k.public_key == key.public_key for k in member.log_keys)


def rotate_log_key(
    data_dir: Path,
    *,
    new_key_file: Path,
    passphrase: bytes | None = None,
    clock: Callable[[], float] = time.time,
) -> Rotated:
    """Make the key in ``new_key_file`` the node's log key; the node must be stopped.

    Refuses (nothing changed) if the node is running (``node-running``), if the new key
    is the current one (``same-key``), if the newest adopted policy does not list it for
    this member (``key-not-listed``, saying what to do) or it is not valid now
    (``key-not-valid``), or if the log does not extend what the old key signed.
    """
    member_id = read_member(data_dir)
    chain = PolicyChain(policy_dir(data_dir), now=clock)
    policy = chain.policy
    member = policy.require_member(member_id)
    key_file = data_dir / "log.key"
    old_key = SigningKey.load(key_file, passphrase=passphrase)
    new_key = SigningKey.load(new_key_file, passphrase=passphrase)
    witness_key = SigningKey.load(data_dir / "witness.key", passphrase=passphrase)
    origin = member.origin
    old_kid = key_id(origin, SIG_TYPE_ED25519, old_key.public_key.raw)
    new_kid = key_id(origin, SIG_TYPE_ED25519, new_key.public_key.raw)
    if old_kid == new_kid:
        raise ConflictError(f"{new_key_file} is already the node's log key (rule: same-key)")
    if not any(k.public_key == new_key.public_key for k in member.log_keys):
        vkey = VerifierKey(name=origin, public_key=new_key.public_key, sig_type=SIG_TYPE_ED25519)
        raise _not_listed(member_id, policy.version, vkey, data_dir)
    check_keys(policy, member_id, log_key=new_key, witness_key=witness_key, now=int(clock()))

    try:
        store = LogStore.open(data_dir / "log.db")
    except StorageError as e:
        if "already open for writing" not in str(e):
            raise
        raise StorageError(f"the node is running; stop it first (rule: node-running): {e}") from None
    with store:
        old_signer = LogSigner.beside(key_file, key=old_key)
        store.check_signer(old_signer)
        last = old_signer.last()
        size = max(last.size if last else 0, _latest_size(store))
        state = SignerState(origin=origin, key_id=new_kid, size=size, root_hash=store.root(size))
        retired = data_dir / RETIRED_DIR / old_kid.hex()
        _retire(key_file, retired)
        staged = data_dir / "log.key.rotating"
        if staged.exists():
            staged.unlink()
        new_key.save(staged, passphrase=passphrase)
        state_file = key_file.with_name(key_file.name + STATE_SUFFIX)
        write_file(state_file, state.to_bytes(), mode=0o600, overwrite=True, what="signer state")
        os.replace(staged, key_file)
        fsync_path(data_dir)
    if new_key_file.resolve() == (data_dir / NEXT_KEY).resolve():
        new_key_file.unlink()
    return Rotated(old_key_id=old_kid, new_key_id=new_kid, retired=retired, size=size)


def _latest_size(store: LogStore) -> int:
    """The size of the log's largest stored checkpoint (0 if none), checked against the log."""
    best = None
    for c in store.checkpoints():
        best = c
    if best is None:
        return 0
    if store.root(best.size) != bytes(best.root_hash):
        raise ConflictError(
            f"the log's root at size {best.size} differs from its stored checkpoint (rule: checkpoint-root)"
        )
    return best.size


def _retire(key_file: Path, retired: Path) -> None:
    """Copy the key file and its state file into ``retired`` (refusing to overwrite)."""
    try:
        retired.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise FileError(f"{retired}: cannot create the retired key directory: {e.strerror}") from None
    for name in (key_file.name, key_file.name + STATE_SUFFIX):
        src = key_file.with_name(name)
        if not src.exists():
            continue
        data = read_capped(src, limit=_MAX_KEY_FILE, what="key file")
        write_file(retired / name, data, mode=0o600, what="retired key")
