"""The node's witness: C2SP tlog-witness ``add-checkpoint`` for the other members' logs.

State lives in SQLite (``witness.db`` in the node's data directory)::

    latest    (origin PRIMARY KEY, size, root, note)   the latest checkpoint cosigned
                                                       per log, with our cosignature
    history   (origin, size, root, note)               every checkpoint cosigned
    alerts    (id, origin, kind, observed_at, alert)   fork evidence (ledger.log.alert)

Checking a request against ``latest`` and storing the new checkpoint happen in one
``BEGIN IMMEDIATE`` transaction, so concurrent requests (threads or processes) for one
origin can never roll the stored size back. A checkpoint that contradicts one we
cosigned is refused and kept as an alert when the request proves it: the same size with
another root, or a proof whose hashes come from the new tree and give another root for
the old size. A proof that merely fails is refused (422) and not kept: anyone can send
one. The checkpoint kept and served to monitors carries only the log signatures that
verified and our cosignature.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ledger.errors import MalformedError, ProofError, SignatureError, StorageError
from ledger.keys import SigningKey
from ledger.log import merkle, note
from ledger.log.alert import Alert, encode_alert
from ledger.log.checkpoint import DEFAULT_MAX_SIZE, Checkpoint, CosignatureSigner
from ledger.log.witness import AddCheckpoint, encode_size, parse_add_checkpoint
from ledger.trust.policy import Policy

__all__ = ["Answer", "Witness"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS latest (
    origin TEXT PRIMARY KEY, size INTEGER NOT NULL, root BLOB NOT NULL, note BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
    origin TEXT NOT NULL, size INTEGER NOT NULL, root BLOB NOT NULL, note BLOB NOT NULL,
    PRIMARY KEY (origin, size, root)
);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY, origin TEXT NOT NULL, kind TEXT NOT NULL,
    observed_at INTEGER NOT NULL, alert BLOB NOT NULL UNIQUE
);
"""


@dataclass(frozen=True, kw_only=True)
class Answer:
    """What to send back: HTTP status, body, content type."""

    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


def _text(status: int, message: str) -> Answer:
    return Answer(status=status, body=(message + "\n").encode("utf-8"))


class Witness:
    """Cosigns other members' checkpoints that extend what it cosigned before."""

    def __init__(
        self,
        *,
        path: Path,
        member_id: str,
        key: SigningKey,
        policy: Callable[[], Policy],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._path = path
        self._member_id = member_id
        self._policy = policy
        self._clock = clock
        self._lock = threading.Lock()
        me = policy().require_member(member_id)
        self._signer = CosignatureSigner(name=me.witness_key.name, key=key, clock=clock)
        try:
            self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.executescript(_SCHEMA)
        except sqlite3.Error as e:
            raise StorageError(f"{path}: cannot open the witness database: {e}") from None

    @property
    def name(self) -> str:
        """The witness's key name (its cosignature lines carry it)."""
        return self._signer.name

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._conn.close()

    # ------------------------------------------------------------------ reading

    def latest(self, origin: str) -> tuple[int, bytes] | None:
        """The size and cosigned note of the latest checkpoint cosigned for ``origin``."""
        with self._lock:
            row = self._conn.execute("SELECT size, note FROM latest WHERE origin = ?", (origin,)).fetchone()
        return None if row is None else (row[0], row[1])

    def origins(self) -> list[str]:
        """Every origin this witness has cosigned."""
        with self._lock:
            return [r[0] for r in self._conn.execute("SELECT origin FROM latest ORDER BY origin")]

    def near(self, origin: str, size: int) -> list[tuple[int, bytes, bytes]]:
        """``(size, root, note)`` of the checkpoints cosigned for ``origin`` nearest to
        ``size``: the largest below it, every one at it, and the smallest above it."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM (SELECT size, root, note FROM history WHERE origin = ? AND size < ? "
                "ORDER BY size DESC LIMIT 1) "
                "UNION ALL SELECT size, root, note FROM history WHERE origin = ? AND size = ? "
                "UNION ALL SELECT * FROM (SELECT size, root, note FROM history WHERE origin = ? AND size > ? "
                "ORDER BY size LIMIT 1)",
                (origin, size, origin, size, origin, size),
            ).fetchall()
        return [(int(r[0]), bytes(r[1]), bytes(r[2])) for r in rows]

    def alerts(self) -> list[bytes]:
        """Every alert kept, oldest first, as alert JSON bytes."""
        with self._lock:
            return [r[0] for r in self._conn.execute("SELECT alert FROM alerts ORDER BY id")]

    def alert_count(self) -> int:
        """How many alerts are kept."""
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM alerts").fetchone()[0])

    # ------------------------------------------------------------------ add-checkpoint

    def add_checkpoint(self, body: bytes) -> Answer:
        """Handle a tlog-witness ``add-checkpoint`` request body; never raises for bad input."""
        try:
            req = parse_add_checkpoint(body)
            parsed = note.parse(req.note, max_size=DEFAULT_MAX_SIZE)
            origin = parsed.text.split("\n", 1)[0]
        except MalformedError as e:
            return _text(400, f"malformed request: {e}")
        policy = self._policy()
        member = policy.member_by_origin(origin)
        if member is None or member.id == self._member_id:
            return _text(404, f"unknown log origin {origin!r}")
        now = int(self._clock())
        verifiers = [
            note.Ed25519Verifier(key=member.log_verifier_key(k))
            for k in member.log_keys
            if k.valid_from <= now and (k.valid_until is None or now < k.valid_until)
        ]
        try:
            opened = note.open(req.note, verifiers, max_size=DEFAULT_MAX_SIZE)
        except SignatureError as e:
            return _text(403, f"no trusted signature: {e}")
        except MalformedError as e:  # pragma: no cover - parsed above
            return _text(400, f"malformed checkpoint: {e}")
        try:
            cp = Checkpoint.parse(parsed.text)
        except MalformedError as e:
            return _text(400, f"malformed checkpoint: {e}")
        if req.old_size > cp.size:
            return _text(400, f"old size {req.old_size} is larger than the checkpoint size {cp.size}")
        # What we keep and serve: the checkpoint with the log signatures that verified
        # (never the other lines a submitter added), then our cosignature.
        logged = note.Note(text=parsed.text, signatures=opened.verified).to_bytes()
        with self._lock:
            return self._check_and_store(req, cp, parsed.text, logged, now)

    def _check_and_store(
        self, req: AddCheckpoint, cp: Checkpoint, text: str, logged: bytes, now: int
    ) -> Answer:
        c = self._conn
        try:
            c.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            return _text(503, f"witness database busy: {e}")
        try:
            answer = self._decide(req, cp, text, logged, now)
            c.execute("COMMIT")
            return answer
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                c.execute("ROLLBACK")
            raise

    def _alert(self, alert: Alert) -> None:
        origin, kind, now = alert.origin, alert.kind, alert.observed_at
        self._conn.execute(
            "INSERT OR IGNORE INTO alerts (origin, kind, observed_at, alert) VALUES (?, ?, ?, ?)",
            (origin, kind, now, encode_alert(alert)),
        )

    def _evidence(self, kind: str, origin: str, earlier: bytes, req: AddCheckpoint, now: int) -> Alert:
        return Alert(
            kind=kind,
            origin=origin,
            observed_by=self._member_id,
            observed_at=now,
            earlier=earlier,
            later=req.note,
            proof=req.proof,
        )

    def _decide(self, req: AddCheckpoint, cp: Checkpoint, text: str, logged: bytes, now: int) -> Answer:
        c = self._conn
        origin = cp.origin
        row = c.execute("SELECT size, root, note FROM latest WHERE origin = ?", (origin,)).fetchone()
        stored_size, stored_root, stored_note = (0, merkle.EMPTY_ROOT, b"") if row is None else row
        # A second root for a size we cosigned is a fork, whatever else is wrong.
        clash = c.execute(
            "SELECT note FROM history WHERE origin = ? AND size = ? AND root != ? LIMIT 1",
            (origin, cp.size, cp.root_hash),
        ).fetchone()
        if clash is not None:
            self._alert(self._evidence("same-size", origin, bytes(clash[0]), req, now))
        if req.old_size != stored_size:
            return Answer(status=409, body=encode_size(stored_size), content_type="text/x.tlog.size")
        if cp.size == 0 and cp.root_hash != merkle.EMPTY_ROOT:
            return _text(422, "a checkpoint of size 0 must have the empty tree's root")
        if req.old_size == 0:
            if req.proof:
                return _text(422, "a proof from size 0 must be empty")
        elif req.old_size == cp.size:
            if cp.root_hash != stored_root:  # the clash above kept the evidence
                return _text(422, f"size {cp.size} was cosigned with another root: fork kept as evidence")
            if req.proof:  # RFC 6962: the proof between two trees of one size is empty
                return _text(422, f"a proof from size {cp.size} to the same size must be empty")
        else:
            try:
                merkle.check_tree(list(req.proof), cp.size, cp.root_hash, req.old_size, stored_root)
            except ProofError as e:
                # Anyone may send a proof that fails: it is evidence only if its hashes
                # come from the new tree and give another root for the old size.
                with contextlib.suppress(ProofError):
                    merkle.check_fork(list(req.proof), cp.size, cp.root_hash, req.old_size, stored_root)
                    self._alert(self._evidence("inconsistent", origin, stored_note, req, now))
                return _text(422, f"bad consistency proof from size {req.old_size}: {e}")
        line = self._cosign(text)
        cosigned = logged + line
        c.execute(
            "INSERT OR REPLACE INTO latest (origin, size, root, note) VALUES (?, ?, ?, ?)",
            (origin, cp.size, cp.root_hash, cosigned),
        )
        c.execute(
            "INSERT OR IGNORE INTO history (origin, size, root, note) VALUES (?, ?, ?, ?)",
            (origin, cp.size, cp.root_hash, cosigned),
        )
        return Answer(status=200, body=line)

    def _cosign(self, text: str) -> bytes:
        """Our cosignature line over the exact checkpoint text the log signed."""
        sig = note.Signature(
            name=self._signer.name, key_id=self._signer.key_id, data=self._signer.sign(text.encode("utf-8"))
        )
        return sig.to_line().encode("utf-8")
