"""The clerks' HTTP API under ``/v1`` (documented at ``/docs``).

==============================================  ==========  =========================================
``GET  /v1/types``                              public      types to issue/revoke; status reasons
``POST /v1/certificates``                       issue       issue one certificate
``POST /v1/certificates/batch``                 issue       issue up to 5,000 at once (all or none)
``GET  /v1/certificates``                       any clerk   list this department's certificates
``GET  /v1/certificates/{id}``                  any clerk   credential and status history
``GET  /v1/certificates/{id}/qr.png`` / ``.svg``  any clerk   the QR code (``?reveal=a,b`` for some claims)
``POST /v1/certificates/{id}/revoke``           revoke      also ``suspend`` and ``reinstate``
``POST /v1/certificates/{id}/replace``          issue       a new edition that supersedes it
==============================================  ==========  =========================================

Every request sends ``Authorization: Bearer <clerk token>``. No token, or one that is not a
current clerk's token of this node → 401; a role the clerk lacks, a type outside the
mandate, or a bearer token over plain HTTP from a non-loopback address (unless the node
runs with ``allow_plain_http``) → 403. Claims that do not fit → 422 with
``{"error": …, "problems": [{"item", "field", "rule"}]}``. An ``Idempotency-Key`` header
makes a retried request return the same certificate (or status change); the same key
with a different request → 409. Every change, every read of claims, and every 401/403
is appended to the operation trail before the reply.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request, Response
from pydantic import BaseModel, Field, ValidationError
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ledger.credential.credential import Credential
from ledger.credential.qr import render_png, render_svg
from ledger.errors import ConflictError, LedgerError, MalformedError, SchemaError, StorageError, TooLargeError
from ledger.log.index import IndexKind
from ledger.log.statement import Kind, Reason
from node import trail
from node.clerks import Clerk, ForbiddenError, Role, TokenError, authenticate, require
from node.issuing import (
    MAX_BATCH,
    ClaimProblem,
    ClaimsError,
    Desk,
    Issued,
    IssueItem,
    NotFoundError,
    json_bytes,
    json_text,
    parse_reason,
    status_of,
)

__all__ = ["install"]

ClaimValue = str | int
_Body = TypeVar("_Body", bound=BaseModel)


class IssueBody(BaseModel):
    """One certificate to issue."""

    type: str = Field(description="certificate type code, e.g. business_licence")
    claims: dict[str, ClaimValue] = Field(description="claim name → value (dates as YYYY-MM-DD)")
    valid_from: int | None = Field(default=None, description="Unix seconds; default now")
    valid_until: int | None = Field(default=None, description="Unix seconds; default the type's longest")


class BatchItem(BaseModel):
    """One certificate of a batch."""

    claims: dict[str, ClaimValue]
    valid_from: int | None = None
    valid_until: int | None = None
    idempotency_key: str | None = Field(default=None, description="this item's own key")


class BatchBody(BaseModel):
    """Up to 5,000 certificates of one type, issued together or not at all."""

    type: str
    items: list[BatchItem] = Field(min_length=1, max_length=MAX_BATCH)
    include: list[str] | None = Field(
        default=None, description="parts of each result to send: credential, qr_text (default both)"
    )


class ReplaceBody(BaseModel):
    """The new edition's claims."""

    claims: dict[str, ClaimValue]
    valid_from: int | None = None
    valid_until: int | None = None
    reason: str | int | None = Field(default=None, description="e.g. information_changed")


class StatusBody(BaseModel):
    """Why the status changes."""

    reason: str | int | None = Field(default=None, description="e.g. holder_request, under_investigation")


def _json(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json_text(doc).encode(),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def _links(cert_id: str) -> dict[str, str]:
    base = f"/v1/certificates/{cert_id}"
    return {"self": base, "qr_png": base + "/qr.png", "qr_svg": base + "/qr.svg"}


_BOTH = frozenset({"credential", "qr_text"})


def issued_json(i: Issued, include: frozenset[str] = _BOTH) -> bytes:
    """The reply for one issued certificate, as UTF-8 JSON (the stored credential JSON spliced in)."""
    c = i.credential
    doc: dict[str, Any] = {
        "cert_id": c.cert_id,
        "type": c.statement.cert_type,
        "index": i.index,
        "replayed": i.replayed,
        "links": _links(c.cert_id),
    }
    if "qr_text" in include:
        doc["qr_text"] = i.qr_text if i.qr_text is not None else c.to_qr_text()
    raw = json_bytes(doc)
    if "credential" in include:
        cred = i.credential_bytes if i.credential_bytes is not None else i.credential_json.encode()
        raw = b"".join((raw[:-1], b',"credential":', cred, b"}"))
    return raw


def _raw(body: bytes, status: int) -> Response:
    return Response(body, status_code=status, media_type="application/json")


def _loopback(host: str | None) -> bool:
    if host is None:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def guard(request: Request, needed: Role | None) -> Clerk:
    """The clerk making the request, allowed ``needed``; refusals go to the trail."""
    desk: Desk = request.app.state.desk
    header = request.headers.get("authorization")
    host = request.client.host if request.client else None
    clerk: Clerk | None = None
    try:
        plain = request.scope.get("scheme") != "https"
        if header and plain and not _loopback(host) and not desk.config.allow_plain_http:
            raise ForbiddenError(
                "bearer tokens are refused over plain HTTP from a non-loopback address; use HTTPS"
            )
        clerk = authenticate(desk.private, member_id=desk.config.member_id, authorization=header)
        if needed is not None:
            require(clerk, needed)
    except (TokenError, ForbiddenError) as e:
        await refused(request, clerk, e)
        raise
    request.state.clerk = clerk
    return clerk


async def refused(request: Request, clerk: Clerk | None, e: LedgerError) -> None:
    """Record a 401 or 403 in the trail."""
    desk: Desk = request.app.state.desk
    status = 401 if isinstance(e, TokenError) else 403
    host = request.client.host if request.client else "?"
    await desk.record_event(
        trail.TrailEvent(
            actor=clerk.name if clerk else "-",
            operator=clerk.operator if clerk else "",
            action="refused",
            status=status,
            target=tuple(v for v in request.path_params.values() if isinstance(v, str)),
            detail=f"{request.method} {request.url.path} from {host}: {e}",
        )
    )


def _need(role: Role | None) -> Callable[[Request], Awaitable[Clerk]]:
    async def dependency(request: Request) -> Clerk:
        return await guard(request, role)

    return dependency


Issuer = Annotated[Clerk, Depends(_need(Role.ISSUE))]
Revoker = Annotated[Clerk, Depends(_need(Role.REVOKE))]
AnyClerk = Annotated[Clerk, Depends(_need(None))]


def _field(loc: Sequence[int | str]) -> tuple[int, str]:
    if len(loc) >= 2 and loc[0] == "items" and isinstance(loc[1], int):
        return loc[1], ".".join(str(x) for x in loc[2:]) or "items"
    return 0, ".".join(str(x) for x in loc) or "body"


def _parse(model: type[_Body], raw: bytes) -> _Body:
    """The request body as ``model``; MalformedError if it is not JSON, ClaimsError (422)
    naming every field that does not fit."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as e:
        errors = e.errors(include_url=False, include_input=False)
        if any(err["type"] == "json_invalid" for err in errors):
            raise MalformedError("the request body is not valid JSON") from None
        problems = []
        for err in errors:
            item, name = _field(err["loc"])
            problems.append(ClaimProblem(item=item, field=name, rule=err["msg"].lower()))
        raise ClaimsError(problems) from None


def _inline(schema: Any, defs: dict[str, Any]) -> Any:
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline(v, defs) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [_inline(v, defs) for v in schema]
    return schema


def _documented(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI for an endpoint that reads ``model`` and an optional ``Idempotency-Key``."""
    schema = model.model_json_schema()
    return {
        "parameters": [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "maxLength": 200},
                "description": "a retry with the same key returns the same certificate(s)",
            }
        ],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _inline(schema, schema.get("$defs", {}))}},
        },
    }


class FastLane:
    """ASGI middleware: the busiest endpoints (issuing) straight to their handlers.

    FastAPI's router and dependency solving cost more than a small issue request's own
    work on the event loop; the handlers parse, authenticate and answer by themselves
    (the same functions are routed for the documentation), and a refusal gets the
    answer the app's exception handlers give (:func:`error_response`).
    """

    def __init__(
        self, app: ASGIApp, *, lanes: dict[tuple[str, str], Callable[[Request], Awaitable[Response]]]
    ):
        self.app = app
        self.lanes = lanes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = (
            self.lanes.get((scope.get("method", ""), scope.get("path", "")))
            if scope["type"] == "http"
            else None
        )
        if handler is None or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive, send)
        try:
            response = await handler(request)
        except ClientDisconnect:  # gone (or cut off by BodyCap, which has answered): no reply
            return
        except LedgerError as e:
            mapped = error_response(e)
            if mapped is None:
                raise
            response = mapped
        await response(scope, receive, send)


#: Largest request body the clerks' API reads (a full batch of long claims fits).
MAX_BODY = 16 << 20


class BodyCap:
    """ASGI middleware: 413 for a ``/v1/`` request body over ``MAX_BODY`` bytes, before it is read."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and (not value.isdigit() or int(value) > MAX_BODY):
                await _too_large(send)
                return
        seen = 0
        refused = False

        async def capped() -> Message:
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > MAX_BODY and not refused:
                    refused = True
                    await _too_large(send)
                if refused:
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:  # once refused, the app's own answer (if any) is dropped
                await send(message)

        await self.app(scope, capped, guarded_send)


async def _too_large(send: Send) -> None:
    body = json.dumps({"error": f"request body is over {MAX_BODY} bytes"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def install(app: FastAPI, desk: Desk) -> None:
    """Add the clerks' API and its error handling to ``app``."""
    router = APIRouter(prefix="/v1", tags=["clerks"])
    member_id = desk.config.member_id
    app.state.desk = desk

    async def mandate(request: Request, check: Callable[[], Any]) -> None:
        try:
            check()
        except ForbiddenError as e:
            await refused(request, getattr(request.state, "clerk", None), e)
            raise

    @router.get("/types", summary="The certificate types this department may issue or revoke")
    def types() -> Response:
        policy = desk.config.policy.policy
        now = int(desk.config.clock())
        out = []
        for t in policy.types:
            may_issue = policy.may_issue(member_id, t.code, at=now)
            may_revoke = policy.may_revoke(member_id, t.code, at=now)
            if may_issue or may_revoke:
                out.append(
                    {
                        "code": t.code,
                        "name": t.name,
                        "may_issue": may_issue,
                        "may_revoke": may_revoke,
                        "max_validity_days": t.max_validity_days,
                        "claims": [
                            {
                                "name": c.name,
                                "label": c.label,
                                "kind": c.kind,
                                "required": c.required,
                                "max_length": c.max_length,
                            }
                            for c in t.claims
                        ],
                    }
                )
        reasons = [{"name": r.name.lower(), "zh": r.label_zh, "en": r.label_en} for r in Reason]
        return _json({"member": member_id, "types": out, "reasons": reasons})

    async def issue_one(request: Request) -> Response:
        clerk = await guard(request, Role.ISSUE)
        body = _parse(IssueBody, await request.body())
        await mandate(request, lambda: desk.issuable(body.type))
        [issued] = await desk.issue(
            clerk,
            body.type,
            [
                IssueItem(
                    claims=body.claims,
                    valid_from=body.valid_from,
                    valid_until=body.valid_until,
                    idempotency_key=request.headers.get("idempotency-key"),
                )
            ],
            qr_text=True,
        )
        return _raw(issued_json(issued), 200 if issued.replayed else 201)

    async def issue_batch(request: Request) -> Response:
        clerk = await guard(request, Role.ISSUE)
        body = _parse(BatchBody, await request.body())
        idempotency_key = request.headers.get("idempotency-key")
        await mandate(request, lambda: desk.issuable(body.type))
        include = frozenset(body.include if body.include is not None else ("credential", "qr_text"))
        if not include <= {"credential", "qr_text"}:
            raise MalformedError("include lists credential and/or qr_text")
        items = [
            IssueItem(
                claims=it.claims,
                valid_from=it.valid_from,
                valid_until=it.valid_until,
                idempotency_key=it.idempotency_key
                if it.idempotency_key is not None
                else (None if idempotency_key is None else f"{idempotency_key}/{n}"),
            )
            for n, it in enumerate(body.items)
        ]
        issued = await desk.issue(clerk, body.type, items, action="issue-batch", qr_text="qr_text" in include)
        status = 200 if all(i.replayed for i in issued) else 201
        parts = [issued_json(i, include) for i in issued]
        return _raw(b"".join((b'{"certificates":[', b",".join(parts), b"]}")), status)

    # Routed for the documentation; requests reach them through FastLane (below).
    router.add_api_route(
        "/certificates",
        issue_one,
        methods=["POST"],
        summary="Issue one certificate",
        status_code=201,
        openapi_extra=_documented(IssueBody),
    )
    router.add_api_route(
        "/certificates/batch",
        issue_batch,
        methods=["POST"],
        summary="Issue a batch of certificates (all or none)",
        status_code=201,
        openapi_extra=_documented(BatchBody),
    )
    lanes: dict[tuple[str, str], Callable[[Request], Awaitable[Response]]] = {
        ("POST", "/v1/certificates"): issue_one,
        ("POST", "/v1/certificates/batch"): issue_batch,
    }

    @router.get("/certificates", summary="List this department's certificates (no claims)")
    async def list_certificates(
        clerk: AnyClerk,
        type: str | None = None,
        after: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Response:
        rows = desk.private.list_records(type_code=type, after=after, limit=limit)
        return _json(
            {
                "certificates": [
                    {"cert_id": c, "type": t, "created": cr, "status": desk.status(c), "links": _links(c)}
                    for c, t, _, _, _, cr in rows
                ]
            }
        )

    async def read_record(clerk: Clerk, cert_id: str, what: str) -> Credential:
        rec = desk.record(cert_id)
        await desk.record_event(
            trail.TrailEvent(
                actor=clerk.name, operator=clerk.operator, action=what, status=200, target=(cert_id,)
            )
        )
        return Credential.loads(rec.credential)

    @router.get("/certificates/{cert_id}", summary="A certificate with its claims and status history")
    async def get_certificate(clerk: AnyClerk, cert_id: str) -> Response:
        cred = await read_record(clerk, cert_id, "read")
        history = desk.history(cert_id)
        return _json(
            {
                "cert_id": cert_id,
                "type": cred.statement.cert_type,
                "status": status_of([IndexKind[h["event"].upper()] for h in history]),
                "history": history,
                "credential": cred.to_json(),
                "qr_text": cred.to_qr_text(),
                "links": _links(cert_id),
            }
        )

    def _reveal(reveal: str | None) -> list[str] | None:
        if reveal is None or reveal == "":
            return None
        return [r for r in reveal.split(",") if r]

    @router.get("/certificates/{cert_id}/qr.png", summary="The QR code as PNG")
    async def qr_png(clerk: AnyClerk, cert_id: str, reveal: str | None = None) -> Response:
        cred = await read_record(clerk, cert_id, "read-qr")
        return Response(render_png(cred.to_qr_text(_reveal(reveal))), media_type="image/png")

    @router.get("/certificates/{cert_id}/qr.svg", summary="The QR code as SVG")
    async def qr_svg(clerk: AnyClerk, cert_id: str, reveal: str | None = None) -> Response:
        cred = await read_record(clerk, cert_id, "read-qr")
        return Response(render_svg(cred.to_qr_text(_reveal(reveal))), media_type="image/svg+xml")

    async def change(
        request: Request, clerk: Clerk, *, cert_id: str, kind: Kind, body: StatusBody | None, key: str | None
    ) -> Response:
        rec = desk.record(cert_id)
        await mandate(request, lambda: desk.revocable(rec.type))
        result = await desk.change(
            clerk, cert_id, kind=kind, reason=parse_reason(body.reason if body else None), idempotency_key=key
        )
        return _json(result)

    @router.post("/certificates/{cert_id}/revoke", summary="Revoke a certificate")
    async def revoke(
        request: Request,
        clerk: Revoker,
        cert_id: str,
        body: StatusBody | None = None,
        idempotency_key: Annotated[str | None, Header()] = None,
    ) -> Response:
        return await change(request, clerk, cert_id=cert_id, kind=Kind.REVOKE, body=body, key=idempotency_key)

    @router.post("/certificates/{cert_id}/suspend", summary="Suspend a certificate")
    async def suspend(
        request: Request,
        clerk: Revoker,
        cert_id: str,
        body: StatusBody | None = None,
        idempotency_key: Annotated[str | None, Header()] = None,
    ) -> Response:
        return await change(
            request, clerk, cert_id=cert_id, kind=Kind.SUSPEND, body=body, key=idempotency_key
        )

    @router.post("/certificates/{cert_id}/reinstate", summary="Reinstate a suspended certificate")
    async def reinstate(
        request: Request,
        clerk: Revoker,
        cert_id: str,
        body: StatusBody | None = None,
        idempotency_key: Annotated[str | None, Header()] = None,
    ) -> Response:
        return await change(
            request, clerk, cert_id=cert_id, kind=Kind.REINSTATE, body=body, key=idempotency_key
        )

    @router.post("/certificates/{cert_id}/replace", summary="Issue a new edition replacing a certificate")
    async def replace(
        request: Request,
        clerk: Issuer,
        cert_id: str,
        body: ReplaceBody,
        idempotency_key: Annotated[str | None, Header()] = None,
    ) -> Response:
        _check_utf8(body.claims)
        rec = desk.record(cert_id)
        await mandate(request, lambda: desk.issuable(rec.type))
        # Held from the status check to the logged replace: a revoke racing it waits, then
        # finds the certificate replaced (and the other way round).
        async with desk.status_lock(cert_id):
            if idempotency_key is None or desk.private.record_by_key(idempotency_key) is None:
                status = await asyncio.to_thread(desk.status, cert_id)
                if status not in ("valid", "suspended"):
                    raise ConflictError(f"cannot replace a certificate that is {status}")
            [issued] = await desk.issue(
                clerk,
                rec.type,
                [
                    IssueItem(
                        claims=body.claims,
                        valid_from=body.valid_from,
                        valid_until=body.valid_until,
                        idempotency_key=idempotency_key,
                    )
                ],
                action="replace",
                replaces=rec,
                reason=parse_reason(body.reason),
                qr_text=True,
            )
        return _raw(issued_json(issued), 200 if issued.replayed else 201)

    app.include_router(router)
    app.add_middleware(FastLane, lanes=lanes)
    app.add_middleware(BodyCap)  # outside FastLane: the cap holds for its requests too
    _handlers(app)


def _check_utf8(claims: dict[str, ClaimValue]) -> None:
    """JSON can escape a lone surrogate, which no UTF-8 text holds: MalformedError (400),
    as the issue endpoints answer it."""
    for k, v in claims.items():
        for text in (k, v) if isinstance(v, str) else (k,):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise MalformedError("claims: a name or value is not valid UTF-8 text") from None


def _problems(e: Exception) -> dict[str, Any]:
    assert isinstance(e, ClaimsError)
    return {"problems": [{"item": p.item, "field": p.field, "rule": p.rule} for p in e.problems]}


#: The answer to each refusal, most specific class first: (class, status, extra fields).
_ERRORS: tuple[tuple[type[LedgerError], int, Callable[[Exception], dict[str, Any]] | None], ...] = (
    (TokenError, 401, None),
    (ForbiddenError, 403, None),
    (NotFoundError, 404, None),
    (ClaimsError, 422, _problems),
    (SchemaError, 422, None),
    (ConflictError, 409, None),
    (TooLargeError, 413, None),
    (StorageError, 503, None),
    (MalformedError, 400, None),
)
_STATUS = {cls: (status, extra) for cls, status, extra in _ERRORS}


def error_response(exc: Exception) -> Response | None:
    """The JSON answer to a refusal of the clerks' API, or None for an error it does not map
    (looked up along the exception's class hierarchy, as the app's exception handlers do)."""
    for cls in type(exc).__mro__:
        found = _STATUS.get(cls)
        if found is not None:
            status, extra = found
            doc: dict[str, Any] = {"error": str(exc)}
            if extra is not None:
                doc.update(extra(exc))
            headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
            return _json(doc, status, headers)
    return None


def _handlers(app: FastAPI) -> None:
    async def handle(request: Request, exc: Exception) -> Response:
        response = error_response(exc)
        assert response is not None  # registered only for the classes it maps
        return response

    for cls, _, _ in _ERRORS:
        app.add_exception_handler(cls, handle)
