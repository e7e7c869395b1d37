"""The issuing desk: what the department's clerks do, with group commit and exactly-once retries.

A request that changes anything goes through two durable commits, each shared by every
request waiting at that moment:

1. the private store (:mod:`node.private`): the certificate's record (claims, salt secret),
   the signed statement and the trail event, in one transaction;
2. the public log, through the node's sequencer.

The reply is sent after both (SQLite and fsync work run off the event loop's thread);
the certificates' ``CL1:`` texts are made after them.

A crash between the two commits leaves a statement committed privately but not logged;
:meth:`Desk.start` appends every such statement before the node serves, and a retried
request (same ``Idempotency-Key``) finds its record and gets the same certificate, never
a second one. A key reused with a different request is a conflict.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import hashlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import orjson

from ledger.credential.claims import canonical_value
from ledger.credential.credential import Credential, issue_credential
from ledger.errors import ConflictError, LedgerError, MalformedError, PolicyError, SchemaError, StorageError
from ledger.log.index import IndexKind
from ledger.log.statement import Entry, Kind, Reason, SignedStatement, Statement
from ledger.trust.policy import CertificateType
from node import trail
from node.clerks import Clerk, ForbiddenError
from node.private import (
    FILE_NAME,
    OpRow,
    PrivateStore,
    RecordRow,
    RecordValues,
    StatementValues,
)
from node.render import Renderer, Rendering, render_here

if TYPE_CHECKING:
    from node.app import Node

__all__ = [
    "ClaimProblem",
    "ClaimsError",
    "Desk",
    "IssueItem",
    "Issued",
    "NotFoundError",
    "status_of",
]

log = logging.getLogger("certledger.node.issuing")

#: Most certificates one batch request may ask for.
MAX_BATCH = 5000
_MAX_KEY = 200


class NotFoundError(MalformedError):
    """No such certificate among this department's (HTTP 404)."""


@dataclass(frozen=True, kw_only=True)
class ClaimProblem:
    """One field of one request that does not fit the certificate type."""

    item: int
    field: str
    rule: str


class ClaimsError(SchemaError):
    """Claims that do not fit the type's schema (HTTP 422), every problem named."""

    def __init__(self, problems: Sequence[ClaimProblem]) -> None:
        self.problems = list(problems)
        first = self.problems[0]
        super().__init__(f"item {first.item}: {first.field}: {first.rule}")


@dataclass(frozen=True, kw_only=True)
class IssueItem:
    """One certificate asked for."""

    claims: Mapping[str, Any] = field(repr=False)
    valid_from: int | None = None
    valid_until: int | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True, kw_only=True)
class Issued:
    """An issued certificate: its credential and its log index (None if not known yet)."""

    credential: Credential
    index: int | None
    #: The credential's JSON text, as stored in the private store.
    credential_json: str
    replayed: bool = False
    #: The full-disclosure ``CL1:`` text, when it was asked for.
    qr_text: str | None = None
    #: ``credential_json`` as UTF-8, when it was made here.
    credential_bytes: bytes | None = None


def json_bytes(doc: Any) -> bytes:
    """Compact JSON as UTF-8, non-ASCII kept (orjson; the standard library for what it
    refuses, such as an integer beyond 64 bits). The same text as ``json.dumps`` with
    ``ensure_ascii=False`` and compact separators."""
    try:
        return orjson.dumps(doc)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def json_text(doc: Any) -> str:
    """:func:`json_bytes` as text."""
    return json_bytes(doc).decode()


def _fingerprint(doc: Any) -> bytes:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, ensure_ascii=False).encode()).digest()


def _check_key(key: str | None) -> None:
    if key is not None and (not key or len(key) > _MAX_KEY or not key.isprintable()):
        raise MalformedError(f"an idempotency key is 1 to {_MAX_KEY} printable characters")


def status_of(events: Sequence[IndexKind]) -> str:
    """A certificate's status after its events, in log order."""
    status = "unknown"
    for k in events:
        if k in (IndexKind.ISSUE, IndexKind.REPLACE, IndexKind.REINSTATE):
            status = "valid"
        elif k == IndexKind.SUSPEND:
            status = "suspended"
        elif k == IndexKind.REVOKE:
            status = "revoked"
        elif k == IndexKind.REPLACED:
            status = "replaced"
    return status


#: Which status a change needs and gives.
_CHANGES: dict[Kind, tuple[frozenset[str], str]] = {
    Kind.REVOKE: (frozenset({"valid", "suspended"}), "revoked"),
    Kind.SUSPEND: (frozenset({"valid"}), "suspended"),
    Kind.REINSTATE: (frozenset({"suspended"}), "valid"),
}


@dataclass
class _Job:
    records: Sequence[RecordValues]
    ops: Sequence[OpRow]
    statements: Sequence[StatementValues]
    events: Sequence[trail.TrailEvent]
    future: asyncio.Future[list[int]]
    #: Set when the rows are written and the transaction is committing (fsync).
    staged: asyncio.Event | None = None


class Desk:
    """The clerks' side of a node: issuing, status changes, look-ups and the trail."""

    def __init__(self, *, node: Node) -> None:
        self.node = node
        self.config = node.config
        self.private = PrivateStore(node.config.data_dir / FILE_NAME)
        self.renderer = Renderer(workers=node.config.render_workers)
        self._serials: dict[str, int] | None = None
        self._inflight: dict[str, asyncio.Future[None]] = {}
        self._cert_locks: dict[str, asyncio.Lock] = {}
        self._jobs: list[_Job] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        #: statement ids committed privately whose log append has not finished
        self._pending: set[int] = set()
        self._max_committed = 0

    # ------------------------------------------------------------------ life

    async def start(self) -> None:
        """Append what was committed privately but never logged, then take requests."""
        last = int(self.private.meta("recovered") or 0)
        missing, top = await asyncio.to_thread(self._missing, last)
        if missing:
            log.warning("appending statements committed before a crash", extra={"count": len(missing)})
            await self.node.sequencer.append(missing)
        self._max_committed = top
        await asyncio.to_thread(self.private.set_meta, "recovered", top)
        self._serials = await asyncio.to_thread(self.private.max_serials)
        self._task = asyncio.create_task(self._run(), name="private-writer")
        self.renderer.start()

    async def stop(self) -> None:
        """Commit what is queued and stop."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
        await asyncio.to_thread(self.renderer.close)
        self.private.close()

    def _missing(self, last: int) -> tuple[list[SignedStatement], int]:
        top = last
        out = []
        for sid, row in self.private.statements_after(last):
            top = sid
            if self._log_index(row.cert_id, row.data) is None:
                out.append(
                    SignedStatement(statement_bytes=row.data, key_id=row.key_id, signature=row.signature)
                )
        return out, top

    def _log_index(self, cert_id: str, data: bytes) -> int | None:
        """The log index of the entry holding statement ``data`` about ``cert_id``, or None."""
        reader = self.node.reader
        for ev in reader.cert_history(cert_id):
            if Entry.from_bytes(reader.entry(ev.index)).signed.statement_bytes == data:
                return ev.index
        return None

    # ------------------------------------------------------------------ private commits

    async def commit(
        self,
        *,
        records: Sequence[RecordValues] = (),
        ops: Sequence[OpRow] = (),
        statements: Sequence[StatementValues] = (),
        events: Sequence[trail.TrailEvent] = (),
        staged: asyncio.Event | None = None,
    ) -> list[int]:
        """Commit to the private store with whatever else is waiting; return the statements' ids.
        ``staged`` is set once the rows are written and only the commit itself (the WAL
        write and fsync, outside the GIL) is left to wait for.

        Records and statements are rows in column order (:data:`~node.private.RecordValues`,
        :data:`~node.private.StatementValues`); the sequences must not change until then."""
        if self._stopping or self._task is None:
            raise StorageError("the node is not taking requests; nothing was done")
        fut: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._jobs.append(_Job(records, ops, statements, events, fut, staged))
        self._wake.set()
        return await fut

    async def record_event(self, event: trail.TrailEvent) -> None:
        """Append one event to the trail, durably."""
        await self.commit(events=[event])

    async def _run(self) -> None:
        while True:
            if not self._jobs and not self._stopping:
                await self._wake.wait()
            self._wake.clear()
            while self._jobs:
                jobs, self._jobs = self._jobs, []
                loop = asyncio.get_running_loop()
                results = await asyncio.to_thread(self._commit_jobs, jobs, loop)
                for job, result in zip(jobs, results, strict=True):
                    if job.future.done():
                        continue
                    if isinstance(result, LedgerError):
                        job.future.set_exception(result)
                    else:
                        self._pending.update(result)
                        if result:
                            self._max_committed = max(self._max_committed, result[-1])
                        job.future.set_result(result)
            if self._stopping and not self._jobs:
                return

    def _watermark(self) -> int:
        return (min(self._pending) - 1) if self._pending else self._max_committed

    def _insert(self, conn: Any, job: _Job) -> list[int]:
        row = conn.execute("SELECT max(id) FROM statements").fetchone()
        first = (row[0] or 0) + 1
        PrivateStore.insert(
            conn,
            record_values=job.records,
            ops=job.ops,
            statement_values=job.statements,
            events=job.events,
        )
        return list(range(first, first + len(job.statements)))

    def _commit_jobs(
        self, jobs: list[_Job], loop: asyncio.AbstractEventLoop
    ) -> list[list[int] | LedgerError]:
        mark = self._watermark()
        try:
            with self.private.write() as conn:
                out: list[list[int] | LedgerError] = [self._insert(conn, j) for j in jobs]
                conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('recovered', ?)", (mark,))
                for j in jobs:
                    if j.staged is not None:
                        loop.call_soon_threadsafe(j.staged.set)
            return out
        except ConflictError:
            if len(jobs) == 1:
                return [ConflictError("that idempotency key or certificate is already taken")]
        except LedgerError as e:
            return [type(e)(str(e)) for _ in jobs]
        return [r for j in jobs for r in self._commit_jobs([j], loop)]

    async def _append(self, ids: list[int], signed: list[SignedStatement]) -> list[int]:
        try:
            indexes = await self.node.sequencer.append(signed)
        except ConflictError:  # the log can never take them: do not hold the watermark back
            self._pending.difference_update(ids)
            raise
        # On any other failure they stay pending: the recovery watermark stays below them,
        # so the next start appends them (they are committed privately).
        self._pending.difference_update(ids)
        return indexes

    # ------------------------------------------------------------------ issuing

    def _type(self, code: str) -> CertificateType:
        ctype = self.config.policy.policy.certificate_type(code)
        if ctype is None:
            raise ClaimsError([ClaimProblem(item=0, field="type", rule=f"unknown certificate type {code!r}")])
        return ctype

    def issuable(self, code: str) -> CertificateType:
        """The type, if this department may issue it; ForbiddenError otherwise."""
        return self._mandate(code, "issue")

    def revocable(self, code: str) -> CertificateType:
        """The type, if this department may revoke it; ForbiddenError otherwise."""
        return self._mandate(code, "revoke")

    def _mandate(self, code: str, action: Literal["issue", "revoke"]) -> CertificateType:
        ctype = self._type(code)
        try:
            ctype.check_mandate(self.config.member_id, action, at=int(self.config.clock()))
        except PolicyError as e:
            raise ForbiddenError(f"{code} is outside this department's mandate: {e}") from None
        return ctype

    def _validate(self, ctype: CertificateType, n: int, item: IssueItem, now: int) -> list[ClaimProblem]:
        problems = []
        names = {c.name for c in ctype.claims}
        for name in sorted(set(item.claims) - names, key=str):
            problems.append(
                ClaimProblem(item=n, field=f"claims.{name}", rule=f"{ctype.code} has no such claim")
            )
        for c in ctype.claims:
            if c.name not in item.claims:
                if c.required:
                    problems.append(ClaimProblem(item=n, field=f"claims.{c.name}", rule="required"))
                continue
            try:
                canonical_value(c, item.claims[c.name])
            except SchemaError as e:
                rule = str(e).split(": ", 1)[-1]
                problems.append(ClaimProblem(item=n, field=f"claims.{c.name}", rule=rule))
        vf = now if item.valid_from is None else item.valid_from
        vu = self._valid_until(ctype, item, vf)
        if vu is not None and vu <= vf:
            problems.append(ClaimProblem(item=n, field="valid_until", rule="must be after valid_from"))
        if (
            ctype.max_validity_days is not None
            and vu is not None
            and vu - vf > ctype.max_validity_days * 86400
        ):
            problems.append(
                ClaimProblem(
                    item=n, field="valid_until", rule=f"at most {ctype.max_validity_days} days of validity"
                )
            )
        return problems

    @staticmethod
    def _valid_until(ctype: CertificateType, item: IssueItem, vf: int) -> int | None:
        if item.valid_until is not None:
            return item.valid_until
        if ctype.max_validity_days is not None:
            return vf + ctype.max_validity_days * 86400
        return None

    async def issue(
        self,
        clerk: Clerk,
        type_code: str,
        items: Sequence[IssueItem],
        *,
        action: str = "issue",
        replaces: RecordRow | None = None,
        reason: Reason | None = None,
        qr_text: bool = False,
    ) -> list[Issued]:
        """Issue ``items`` (all or none), or return the certificates their keys already name.

        With ``qr_text`` each new certificate's ``CL1:`` text is made once it is durable
        (replayed ones are rendered by the caller).
        """
        if not 1 <= len(items) <= MAX_BATCH:
            raise MalformedError(f"1 to {MAX_BATCH} certificates per request")
        ctype = self.issuable(type_code)
        now = int(self.config.clock())
        fps: list[bytes] = []
        for it in items:
            _check_key(it.idempotency_key)
            # The fingerprint tells a retry from another request under the same key; an
            # item without a key can never be looked up by one, so it needs none.
            fps.append(
                b""
                if it.idempotency_key is None
                else _fingerprint(
                    [type_code, dict(it.claims), it.valid_from, it.valid_until, replaces and replaces.cert_id]
                )
            )
        keys = [it.idempotency_key for it in items if it.idempotency_key is not None]
        if len(set(keys)) != len(keys):
            raise MalformedError("two items of the request carry the same idempotency key")
        # Wait for requests already in flight with one of these keys.
        for k in keys:
            waiting = self._inflight.get(k)
            if waiting is not None:
                with contextlib.suppress(LedgerError):
                    await asyncio.shield(waiting)
        existing = self.private.records_by_keys(keys) if keys else {}
        out: list[Issued | None] = [None] * len(items)
        for n, it in enumerate(items):
            rec = existing.get(it.idempotency_key or "")
            if rec is not None:
                if rec.fingerprint != fps[n]:
                    raise ConflictError(
                        f"item {n}: idempotency key {it.idempotency_key!r} was used for a different request"
                    )
                out[n] = await self._replay(rec)
        replayed = [o.credential.cert_id for o in out if o is not None]
        if replayed:  # the reply hands the credentials out again: a read of personal data
            await self.record_event(
                trail.TrailEvent(
                    actor=clerk.name,
                    operator=clerk.operator,
                    action="replay",
                    status=200,
                    target=tuple(replayed),
                    detail=f"{type_code}: {len(replayed)} certificate(s) asked for again with their keys",
                )
            )
        fresh = [n for n in range(len(items)) if out[n] is None]
        if not fresh:
            return [o for o in out if o is not None]
        mine = {key for n in fresh if (key := items[n].idempotency_key) is not None}
        for k in mine:
            if k in self._inflight:
                raise ConflictError(f"a request with idempotency key {k!r} is in progress")
        gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for k in mine:
            self._inflight[k] = gate
        durable: asyncio.Future[list[int]] | None = None
        try:
            # A large batch's texts are made by the render workers while the batch is built
            # and committed here.
            rendering = self.renderer.begin(len(fresh)) if qr_text else None
            creds = self._build(
                clerk, ctype, items, fresh, now=now, replaces=replaces, reason=reason, rendering=rendering
            )
            raws = [json_bytes(c.to_json()) for c in creds]
            texts = [r.decode() for r in raws]
            records: list[RecordValues] = []
            statements: list[StatementValues] = []
            for n, c, raw in zip(fresh, creds, raws, strict=True):
                cid = c.cert_id
                *_, serial, version, _ = cid.split(".")
                records.append(
                    (
                        cid,
                        items[n].idempotency_key,
                        fps[n],
                        type_code,
                        int(serial),
                        version,
                        clerk.id,
                        now,
                        raw,
                    )
                )
                s = c.signed
                statements.append((cid, s.statement_bytes, s.key_id, s.signature))
            signed = [c.signed for c in creds]
            target = tuple(c.cert_id for c in creds)
            if replaces is not None:
                target += (replaces.cert_id,)
            # The QR texts are made while the private commit waits for its WAL write and
            # fsync (outside the GIL), not while its thread writes the rows: it binds each
            # row under the GIL, and the two threads fighting for it cost more CPU and wall
            # time than that overlap saved (~215 against ~181 us of CPU and ~205 against
            # ~187 us of wall time per certificate of a 2,000 batch).
            staged = asyncio.Event()
            durable = asyncio.ensure_future(
                self.commit(
                    records=records,
                    statements=statements,
                    events=[
                        trail.TrailEvent(
                            actor=clerk.name,
                            operator=clerk.operator,
                            action=action,
                            status=200,
                            target=target,
                            detail=f"{type_code}: {len(creds)} certificate(s)",
                        )
                    ],
                    staged=staged,
                )
            )
            qrs: list[str | None] = [None] * len(creds)
            failed = None
            if rendering is not None:
                qrs, failed = await rendering.texts()
            elif qr_text:
                written = asyncio.ensure_future(staged.wait())
                try:
                    await asyncio.wait([written, durable], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    written.cancel()
                qrs, failed = await render_here(creds)
            indexes = await self._append(await durable, signed)
            if failed is not None:
                raise failed
        except BaseException as e:
            if durable is not None and not durable.done():  # cancelled: the commit goes on alone
                durable.add_done_callback(lambda f: f.cancelled() or f.exception())
            if not gate.done():
                gate.set_exception(e if isinstance(e, LedgerError) else StorageError("request cancelled"))
                gate.exception()  # consumed here: waiters look the key up again
            raise
        finally:
            for k in mine:
                self._inflight.pop(k, None)
        if not gate.done():
            gate.set_result(None)
        for n, c, i, text, raw, q in zip(fresh, creds, indexes, texts, raws, qrs, strict=True):
            out[n] = Issued(credential=c, index=i, credential_json=text, qr_text=q, credential_bytes=raw)
        return [o for o in out if o is not None]

    def _build(
        self,
        clerk: Clerk,
        ctype: CertificateType,
        items: Sequence[IssueItem],
        fresh: Sequence[int],
        *,
        now: int,
        replaces: RecordRow | None,
        reason: Reason | None,
        rendering: Rendering | None = None,
    ) -> list[Credential]:
        """Sign the items at ``fresh``, or raise ClaimsError naming every problem of every item.

        Claims are checked once, by :func:`issue_credential`; only an item it refuses is
        looked at again, to name each field and rule. Serials are taken only when all pass.
        Each credential made is added to ``rendering``, if given, as soon as it is signed.
        """
        member = self.config.member
        assert self._serials is not None
        base = self._serials.get(ctype.code, 0)
        out: list[Credential] = []
        problems: list[ClaimProblem] = []
        for n in fresh:
            it = items[n]
            if replaces is None:
                serial, version = base + 1 + len(out), "001"
            else:
                serial, version = replaces.serial, f"{int(replaces.version) + 1:03d}"
            vf = now if it.valid_from is None else it.valid_from
            vu = self._valid_until(ctype, it, vf)
            if vu is not None and vu <= vf:
                problems.append(ClaimProblem(item=n, field="valid_until", rule="must be after valid_from"))
                continue
            try:
                cred = issue_credential(
                    cert_type=ctype,
                    issuer=member,
                    key=self.config.log_key,
                    serial=str(serial),
                    cert_version=version,
                    claims=it.claims,
                    operator=clerk.operator,
                    time=now,
                    valid_from=vf,
                    valid_until=vu,
                    replaces=None if replaces is None else replaces.cert_id,
                    reason=reason,
                )
            except SchemaError as e:
                found = self._validate(ctype, n, it, now)
                problems.extend(found or [ClaimProblem(item=n, field="claims", rule=str(e))])
            except PolicyError as e:  # a validity over the type's longest is the item's fault
                found = self._validate(ctype, n, it, now)
                if not found:
                    raise ForbiddenError(str(e)) from None
                problems.extend(found)
            else:
                out.append(cred)
                if rendering is not None:
                    rendering.add(cred)
        if problems:
            raise ClaimsError(problems)
        if replaces is None:
            self._serials[ctype.code] = base + len(out)
        return out

    async def _replay(self, rec: RecordRow) -> Issued:
        """The certificate a retried request asked for, appended to the log if it never got there."""
        cred = Credential.loads(rec.credential)
        index = await asyncio.to_thread(self._log_index, rec.cert_id, cred.signed.statement_bytes)
        if index is None:
            [index] = await self.node.sequencer.append([cred.signed])
        return Issued(credential=cred, index=index, credential_json=rec.credential, replayed=True)

    # ------------------------------------------------------------------ status changes

    def status_lock(self, cert_id: str) -> asyncio.Lock:
        """The lock every change of ``cert_id``'s status (revoke, suspend, reinstate,
        replace) holds from reading its status to logging the change."""
        return self._lock(cert_id)

    def _lock(self, cert_id: str) -> asyncio.Lock:
        lock = self._cert_locks.get(cert_id)
        if lock is None:
            if len(self._cert_locks) > 10_000:
                for k in [k for k, v in self._cert_locks.items() if not v.locked()]:
                    del self._cert_locks[k]
            lock = self._cert_locks[cert_id] = asyncio.Lock()
        return lock

    def record(self, cert_id: str) -> RecordRow:
        """This department's record of ``cert_id``; NotFoundError if it issued no such certificate."""
        rec = self.private.record(cert_id)
        if rec is None:
            raise NotFoundError(f"this department issued no certificate {cert_id!r}")
        return rec

    def history(self, cert_id: str) -> list[dict[str, Any]]:
        """The certificate's statements in the log, oldest first."""
        reader = self.node.reader
        out = []
        for ev in reader.cert_history(cert_id):
            stmt = Entry.from_bytes(reader.entry(ev.index)).signed.statement
            if not ev.matches(cert_id, stmt):
                continue
            out.append(
                {
                    "index": ev.index,
                    "event": ev.kind.label,
                    "time": stmt.time,
                    "operator": stmt.operator,
                    "reason": None if stmt.reason is None else stmt.reason.name.lower(),
                    "cert_id": stmt.cert_id,
                }
            )
        return out

    def status(self, cert_id: str) -> str:
        """The certificate's current status from the log."""
        return status_of([IndexKind[h["event"].upper()] for h in self.history(cert_id)])

    async def change(
        self, clerk: Clerk, cert_id: str, *, kind: Kind, reason: Reason, idempotency_key: str | None
    ) -> dict[str, Any]:
        """Revoke, suspend or reinstate one of this department's certificates."""
        _check_key(idempotency_key)
        fp = _fingerprint([cert_id, int(kind), int(reason)])
        if idempotency_key is not None:
            op = self.private.op_by_key(idempotency_key)
            if op is not None:
                return await self._replay_op(op, fp)
        rec = self.record(cert_id)
        ctype = self.revocable(rec.type)
        async with self._lock(cert_id):
            if idempotency_key is not None:
                op = self.private.op_by_key(idempotency_key)
                if op is not None:
                    return await self._replay_op(op, fp)
            status = await asyncio.to_thread(self.status, cert_id)
            allowed, after = _CHANGES[kind]
            if status not in allowed:
                raise ConflictError(f"cannot {kind.label} a certificate that is {status}")
            now = int(self.config.clock())
            member = self.config.member
            lk = next((k for k in member.log_keys if k.public_key == self.config.log_key.public_key), None)
            if (
                lk is None
                or now < lk.valid_from
                or (lk.valid_until is not None and now >= lk.valid_until)
                or (lk.compromised_at is not None and now >= lk.compromised_at)
            ):
                raise StorageError(
                    f"this node's log key is not a valid log key of {member.id} now under trust policy "
                    f"version {self.config.policy.policy.version}; install the new log key and restart"
                )
            signed = SignedStatement.sign(
                Statement(
                    kind=kind,
                    issuer=member.id,
                    cert_id=cert_id,
                    cert_type=ctype.code,
                    time=now,
                    operator=clerk.operator,
                    reason=reason,
                ),
                key=self.config.log_key,
                key_id=member.log_key_id(lk),
            )
            result = {
                "cert_id": cert_id,
                "action": kind.label,
                "reason": reason.name.lower(),
                "time": now,
                "status": after,
                "statement_sha256": hashlib.sha256(signed.statement_bytes).hexdigest(),
            }
            ids = await self.commit(
                ops=[
                    OpRow(
                        idem_key=idempotency_key,
                        fingerprint=fp,
                        cert_id=cert_id,
                        kind=int(kind),
                        clerk=clerk.id,
                        created=now,
                        result=json.dumps(result),
                    )
                ],
                statements=[(cert_id, signed.statement_bytes, signed.key_id, signed.signature)],
                events=[
                    trail.TrailEvent(
                        actor=clerk.name,
                        operator=clerk.operator,
                        action=kind.label,
                        status=200,
                        target=(cert_id,),
                        detail=f"reason {reason.name.lower()}",
                    )
                ],
            )
            [index] = await self._append(ids, [signed])
        return {**result, "index": index}

    async def _replay_op(self, op: OpRow, fp: bytes) -> dict[str, Any]:
        """The answer a retried status change got, its statement appended if it never reached the log."""
        if op.fingerprint != fp:
            raise ConflictError("that idempotency key was used for a different request")
        result: dict[str, Any] = json.loads(op.result)
        want = result["statement_sha256"]
        rows = self.private.statements_for(op.cert_id)
        row = next((r for r in rows if hashlib.sha256(r.data).hexdigest() == want), None)
        if row is None:
            raise StorageError(f"the private store lost the statement of {op.cert_id}; run an audit")
        index = await asyncio.to_thread(self._log_index, op.cert_id, row.data)
        if index is None:
            signed = SignedStatement(statement_bytes=row.data, key_id=row.key_id, signature=row.signature)
            [index] = await self.node.sequencer.append([signed])
        return {**result, "index": index, "replayed": True}


def parse_reason(value: str | int | None) -> Reason:
    """A reason by name (``holder_request``) or number; UNSPECIFIED when absent."""
    if value is None:
        return Reason.UNSPECIFIED
    try:
        if isinstance(value, int):
            return Reason(value)
        return Reason[value.upper()]
    except (KeyError, ValueError):
        names = ", ".join(r.name.lower() for r in Reason)
        raise ClaimsError([ClaimProblem(item=0, field="reason", rule=f"one of {names}")]) from None


def day_text(t: int) -> str:
    """A Unix time as a UTC date."""
    return _dt.datetime.fromtimestamp(t, _dt.UTC).date().isoformat()


def now_ms() -> int:
    """Milliseconds since 1970."""
    return int(time.time() * 1000)
