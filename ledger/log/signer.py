"""A log key that remembers the last checkpoint it signed, outside the log database.

The database can be rewritten, or replaced by last night's backup; the signer's memory
cannot be, as long as it is kept apart from the database. :class:`LogSigner` holds a
log's signing key and the path of a small *state file* (by default next to the key
file: ``<key file>.last-checkpoint``) recording the origin, key ID, size and root of
the last checkpoint signed with that key. Before signing it refuses, with
:class:`~ledger.errors.ConflictError`, any checkpoint that is not consistent with the
remembered one:

* a smaller tree (``rule: signer-smaller``);
* the same size with another root (``signer-fork``);
* a larger tree whose consistency proof from the remembered one fails
  (``signer-inconsistent``).

The new state is written durably (temporary file, fsync, rename, fsync of the
directory) before the signature is returned. An exclusive ``flock`` on
``<state file>.lock`` serialises signers sharing one state file, across processes.

A missing state file means nothing was signed with this key yet. A state file for
another origin or key is refused (``signer-state``): never copy it between keys, and
never restore it from a backup (that would bring back an old memory).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ledger.errors import ConflictError, FileError, MalformedError, ProofError, StorageError
from ledger.files import loads_json, read_capped, write_file
from ledger.keys import SIG_TYPE_ED25519, SigningKey, key_id
from ledger.log import merkle
from ledger.log.checkpoint import Checkpoint, sign_checkpoint

__all__ = ["STATE_SUFFIX", "LogSigner", "SignerState"]

#: Appended to a key file's name to name its state file.
STATE_SUFFIX = ".last-checkpoint"
_FORMAT = "certledger-signer-state/v1"
_MAX_STATE = 4096

#: ``prove(old_size)``: the RFC 9162 consistency proof from the tree of ``old_size``
#: entries to the tree being signed.
ConsistencyProver = Callable[[int], list[bytes]]


@dataclass(frozen=True, kw_only=True)
class SignerState:
    """The last checkpoint a log key signed: origin, key ID, size and root hash."""

    origin: str
    key_id: bytes
    size: int
    root_hash: bytes

    def to_bytes(self) -> bytes:
        """The state file's exact bytes (one JSON object and a newline)."""
        return (
            "{"
            f'"format":"{_FORMAT}",'
            f'"key_id":"{self.key_id.hex()}",'
            f'"origin":{_json_str(self.origin)},'
            f'"root":"{self.root_hash.hex()}",'
            f'"size":{self.size}'
            "}\n"
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes, *, what: str) -> SignerState:
        """Parse a state file strictly (MalformedError naming ``what`` otherwise)."""
        raw = loads_json(data, what=what, max_size=_MAX_STATE, max_depth=1)
        if not isinstance(raw, dict) or set(raw) != {"format", "key_id", "origin", "root", "size"}:
            raise MalformedError(f"{what}: must hold exactly format, key_id, origin, root and size")
        if raw["format"] != _FORMAT:
            raise MalformedError(f"{what}: unknown format {raw['format']!r}")
        kid, root, size, origin = raw["key_id"], raw["root"], raw["size"], raw["origin"]
        if not isinstance(kid, str) or len(kid) != 8 or kid != kid.lower():
            raise MalformedError(f"{what}: key_id must be 8 lower-case hex digits")
        if not isinstance(root, str) or len(root) != 64 or root != root.lower():
            raise MalformedError(f"{what}: root must be 64 lower-case hex digits")
        if type(size) is not int or size < 0:
            raise MalformedError(f"{what}: size must be a non-negative integer")
        if not isinstance(origin, str):
            raise MalformedError(f"{what}: origin must be a string")
        try:
            state = cls(origin=origin, key_id=bytes.fromhex(kid), size=size, root_hash=bytes.fromhex(root))
        except ValueError:
            raise MalformedError(f"{what}: key_id and root must be hex") from None
        Checkpoint(origin=origin, size=size, root_hash=state.root_hash)  # validates origin and size
        if state.to_bytes() != bytes(data):
            raise MalformedError(f"{what}: not in canonical form")
        return state


def _json_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


class LogSigner:
    """A log signing key with the memory of the last checkpoint it signed.

    ``state`` is the state file's path; :meth:`beside` puts it next to the key file.
    Pass a ``LogSigner`` to :meth:`ledger.log.store.LogStore.checkpoint` (or call
    :meth:`sign` with a consistency prover). Thread-safe.
    """

    def __init__(self, *, key: SigningKey, state: str | os.PathLike[str]) -> None:
        self._key = key
        self._state = Path(state)
        self._mutex = threading.Lock()

    @classmethod
    def beside(cls, key_file: str | os.PathLike[str], *, key: SigningKey) -> LogSigner:
        """The signer for ``key`` loaded from ``key_file``, remembering in
        ``<key file>.last-checkpoint``."""
        p = Path(key_file)
        return cls(key=key, state=p.with_name(p.name + STATE_SUFFIX))

    @property
    def key(self) -> SigningKey:
        """The signing key."""
        return self._key

    @property
    def state_path(self) -> Path:
        """The state file."""
        return self._state

    def key_id(self, origin: str) -> bytes:
        """This key's C2SP key ID as the log key of ``origin``."""
        return key_id(origin, SIG_TYPE_ED25519, self._key.public_key.raw)

    def last(self) -> SignerState | None:
        """The remembered checkpoint, or None if this key has signed nothing yet."""
        try:
            data = read_capped(self._state, limit=_MAX_STATE, what="signer state file")
        except FileError:
            if not os.path.lexists(self._state):
                return None
            raise
        return SignerState.from_bytes(data, what=f"{self._state}")

    def check(self, checkpoint: Checkpoint, *, prove: ConsistencyProver) -> None:
        """ConflictError unless ``checkpoint`` is consistent with the remembered one.

        ``prove(old)`` gives the consistency proof from size ``old`` to the checkpoint's
        size, read from the log being signed.
        """
        self._check(self.last(), checkpoint, prove)

    def _check(self, last: SignerState | None, cp: Checkpoint, prove: ConsistencyProver) -> None:
        if last is None:
            return
        where = f"the signer state {self._state}"
        kid = self.key_id(cp.origin)
        if last.origin != cp.origin or last.key_id != kid:
            raise ConflictError(
                f"{where} belongs to log {last.origin} key {last.key_id.hex()}, not to log {cp.origin} "
                f"key {kid.hex()} (rule: signer-state): a state file is never shared or copied between keys"
            )
        if cp.size < last.size:
            raise ConflictError(
                f"this key already signed a checkpoint of size {last.size}, but the log has only {cp.size} "
                "entries (rule: signer-smaller): entries were lost, e.g. a backup was restored; refusing "
                "to sign a smaller tree (recover the log from a mirror first)"
            )
        if cp.size == last.size:
            if cp.root_hash != last.root_hash:
                raise ConflictError(
                    f"this key already signed size {last.size} with root {last.root_hash.hex()}, but the "
                    f"log's root at that size is now {cp.root_hash.hex()} (rule: signer-fork): the log was "
                    "rewritten or restored; refusing to sign a contradicting checkpoint"
                )
            return
        if last.size == 0:
            return
        try:
            proof = prove(last.size)
            merkle.check_tree(proof, cp.size, cp.root_hash, last.size, last.root_hash)
        except (ProofError, StorageError) as e:
            raise ConflictError(
                f"the tree of size {cp.size} does not extend the checkpoint of size {last.size} this key "
                f"already signed (rule: signer-inconsistent): {e}; the log was rewritten or restored; "
                "refusing to sign"
            ) from None

    def sign(self, checkpoint: Checkpoint, *, prove: ConsistencyProver) -> bytes:
        """Check ``checkpoint`` against the remembered one, remember it durably, then
        return it signed as a C2SP note.

        Raises ConflictError (see the module docstring) and nothing is remembered or
        signed; FileError if the state cannot be written (nothing is signed either).
        """
        with self._mutex, self._locked():
            last = self.last()
            self._check(last, checkpoint, prove)
            state = SignerState(
                origin=checkpoint.origin,
                key_id=self.key_id(checkpoint.origin),
                size=checkpoint.size,
                root_hash=checkpoint.root_hash,
            )
            if state != last:
                write_file(self._state, state.to_bytes(), mode=0o600, overwrite=True, what="signer state")
            return sign_checkpoint(checkpoint, key=self._key)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        lock = Path(f"{self._state}.lock")
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(lock, flags, 0o600)
        except OSError as e:
            raise FileError(f"{lock}: cannot open the signer lock file: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
