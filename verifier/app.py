"""The verification service over HTTP: the API, the web page and the consortium page.

``create_app(service=...)`` builds a FastAPI application over any
:class:`~verifier.service.VerificationService`:

* ``POST /v1/verify``: QR text as JSON ``{"text": "CL1:..."}`` or as ``text/plain``;
* ``POST /v1/verify/image``: a PNG or JPEG photo or screenshot of the QR code, as the
  raw request body;
* ``GET /v1/status``, ``GET /v1/stats``: replica freshness and alerts, and certificates
  issued and revoked per day per member (counts only);
* ``GET /healthz``; ``/`` and ``/consortium``: the pages; ``/docs``: the OpenAPI docs.

Every verification request ends in a verdict in the JSON form of
:meth:`~verifier.verdict.Verdict.to_json`, including refused ones (too large, not an
image, no QR code, unreadable, altered input: all MALFORMED); the HTTP status says
which refusal it was. Bodies are capped before they are read in full, images also in
pixels before their pixels are decoded, and each client address gets a token bucket.
"""

from __future__ import annotations

import io
import logging
import re
import time
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import anyio
import orjson
from anyio import to_thread
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ledger.credential.qr import MAX_IMAGE_PIXELS, read_qr_codes
from ledger.errors import LedgerError, StorageError
from verifier.ratelimit import RateLimiter
from verifier.service import VerificationService, malformed
from verifier.textinput import MANGLED_WARNING, clean_text, mangled_reason
from verifier.verdict import Code, Verdict

__all__ = ["Limits", "create_app"]

log = logging.getLogger("certledger.verifier")

_STATIC = Path(__file__).resolve().parent / "static"  # package data
_VERDICT_EXAMPLE = {
    "code": "VALID",
    "class": "valid",
    "reason": {"zh": "有效", "en": "valid"},
    "checked_at": 1717236000,
    "as_of": 1717235400,
    "issuer": {"id": "hangzhou-xihu-amr", "name": "杭州市西湖区市场监督管理局"},
    "cert_id": "1.2.156.3005.2.11100000000013338W032.11330106MB1234567X.0001.001.M",
    "cert_type": {"code": "business_licence", "name": "营业执照"},
    "valid_from": 1717171200,
    "valid_until": None,
    "claims": [{"name": "name", "label": "名称", "value": "杭州西溪数字科技有限公司"}],
    "hidden": ["address"],
    "evidence": None,
    "replaced_by": None,
    "warnings": [],
}
_LIMITED: dict[int | str, dict[str, Any]] = {
    429: {"description": "Too many requests from this address; see the Retry-After header"}
}
_VERDICT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The verdict",
        "content": {"application/json": {"example": _VERDICT_EXAMPLE}},
    },
    400: {"description": 'Not JSON, not UTF-8, or not {"text": ...}: a MALFORMED verdict'},
    503: {"description": "The verifier cannot read its replica: a STALE verdict saying to try later"},
    413: {"description": "Body or image too large: a MALFORMED verdict"},
    415: {"description": "Unsupported content type or image format: a MALFORMED verdict"},
    422: {"description": "No QR code, several certificate codes, or an undecodable image: MALFORMED"},
    **_LIMITED,
}


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Request caps. ``max_pixels`` is checked from the image header, before decoding."""

    max_text_body: int = 8 * 1024
    max_image_body: int = 8 * 1024 * 1024
    max_pixels: int = MAX_IMAGE_PIXELS  # 4096 x 4096
    rate: float = 5.0  # requests per second per client address on /v1/
    burst: int = 20
    body_seconds: float = 30.0  # a request body must arrive within this time
    decodes: int = 2  # images decoded at once (each may take ~120 MB at the pixel cap)


class _Refused(Exception):
    """A request refused before verification; carries the HTTP status and the verdict."""

    def __init__(
        self,
        status: int,
        reason_zh: str,
        reason_en: str,
        *,
        headers: dict[str, str] | None = None,
        verdict: Verdict | None = None,
    ):
        super().__init__(reason_en)
        self.status = status
        self.headers = headers or {}
        self.verdict = verdict if verdict is not None else malformed(reason_zh, reason_en)


def _unavailable(e: StorageError) -> _Refused:
    """503 for a replica this service cannot read: its own fault, not the certificate's.
    The body is a STALE verdict (the page shows its reason) saying to try again later."""
    log.error("verification failed: the replica cannot be read", extra={"error": str(e)})
    zh = "核验服务暂时无法读取本地账本副本，无法确认证照状态：请稍后再试，或联系核验服务管理员"
    en = (
        "this verifier cannot read its ledger replica right now, so no verdict can be given: "
        f"try again later or tell the verifier's operator ({e})"
    )
    verdict = Verdict(code=Code.STALE, reason_zh=zh, reason_en=en, checked_at=int(time.time()))
    return _Refused(503, zh, en, headers={"Retry-After": "30"}, verdict=verdict)


class _JSON(JSONResponse):
    """JSON rendered by orjson: the same compact UTF-8 bytes as Starlette's JSONResponse
    for these documents, about ten times faster for a verdict."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class _Lazy:
    """An object made on first use (an anyio limiter needs the running event loop)."""

    def __init__(self, make: Callable[[], anyio.CapacityLimiter]) -> None:
        self._make = make
        self._made: anyio.CapacityLimiter | None = None

    def get(self) -> anyio.CapacityLimiter:
        if self._made is None:
            self._made = self._make()
        return self._made


def _too_large(limit: int) -> _Refused:
    return _Refused(413, f"请求过大：超过 {limit} 字节", f"request too large: over {limit} bytes")


async def _read_capped(receive: Receive, declared: str | None, limit: int, seconds: float = 30.0) -> bytes:
    """The request body, refused (413) when ``declared`` (Content-Length) or the bytes
    received so far exceed ``limit``, or (408) when it has not all arrived within
    ``seconds``; :class:`ClientDisconnect` if the client left."""
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    try:
        with anyio.fail_after(seconds):
            return await _read_all(receive, limit)
    except TimeoutError:
        raise _Refused(
            408, f"请求内容未在 {seconds:g} 秒内传完", f"the request body did not arrive within {seconds:g} s"
        ) from None


async def _read_all(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnect()
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        if not message.get("more_body", False):
            if not chunks:
                return chunk
            chunks.append(chunk)
            return b"".join(chunks)
        chunks.append(chunk)


_PURPOSE = re.compile(r"[a-z0-9][a-z0-9_]{0,62}")


def _purpose(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _PURPOSE.fullmatch(value):
        raise _Refused(400, "用途名称无效", "purpose must be a purpose name such as 'identity'")
    return value


def _text_of(body: bytes, content_type: str, purpose: str | None) -> tuple[str, str | None]:
    media = content_type.split(";", maxsplit=1)[0].strip().lower()
    try:
        raw = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _Refused(400, "请求不是 UTF-8 文本", "request body is not UTF-8 text") from None
    if media == "application/json":
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise _Refused(400, "请求不是有效的 JSON", "request body is not valid JSON") from None
        if (
            not isinstance(obj, dict)
            or not {"text"} <= set(obj) <= {"text", "purpose"}
            or not isinstance(obj["text"], str)
        ):
            raise _Refused(
                400,
                '请求须为 {"text": "…"}，可另加 "purpose"',
                'request body must be a JSON object {"text": "...", "purpose": "..."} (purpose optional)',
            )
        return str(obj["text"]), _purpose(obj.get("purpose", purpose))
    if media in ("text/plain", ""):
        return raw, purpose
    raise _Refused(
        415,
        "不支持的内容类型：请发送 JSON 或纯文本",
        f"unsupported content type {media!r}: send application/json or text/plain",
    )


def _qr_texts(body: bytes, limits: Limits) -> list[str]:
    """The QR texts in a PNG or JPEG, refusing other formats and too many pixels before decoding."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our cap is lower
            img = Image.open(io.BytesIO(body), formats=("PNG", "JPEG"))
    except Image.DecompressionBombError:
        raise _Refused(413, "图片像素过多", f"image over {limits.max_pixels} pixels") from None
    except Exception:  # Pillow raises many types for what it cannot open
        raise _Refused(
            415, "无法识别的图片：请上传 PNG 或 JPEG", "not a PNG or JPEG image this reader understands"
        ) from None
    w, h = img.size
    if w * h > limits.max_pixels:
        raise _Refused(
            413,
            f"图片像素过多（{w}×{h}），上限 {limits.max_pixels} 像素",
            f"image of {w}x{h} pixels is over the {limits.max_pixels}-pixel limit",
        )
    try:
        return read_qr_codes(img)
    except LedgerError as e:
        raise _Refused(422, "图片无法解码", f"the image cannot be decoded: {e}") from None


def _pick_code(texts: list[str]) -> str:
    codes = sorted({t for t in texts if t.startswith("CL1:")})
    if len(codes) > 1:
        raise _Refused(
            422,
            "图片中有多个证照二维码：请只拍一个",
            "more than one certificate QR code in the image: photograph one",
        )
    if codes:
        return codes[0]
    if not texts:
        raise _Refused(
            422,
            "图片中未找到二维码：请靠近、对准、避免反光后重拍",
            "no QR code found in the image: move closer, hold steady, avoid glare and try again",
        )
    return texts[0]


def create_app(
    *, service: VerificationService, limits: Limits | None = None, registry: CollectorRegistry | None = None
) -> FastAPI:
    """The verifier's ASGI application over ``service``; ``GET /metrics`` serves ``registry``
    (Prometheus text) when one is given."""
    lim = limits or Limits()
    limiter = RateLimiter(rate=lim.rate, burst=lim.burst)
    decoders = _Lazy(lambda: anyio.CapacityLimiter(lim.decodes))
    app = FastAPI(
        docs_url=None,
        redoc_url=None,
        title="certledger verifier",
        version="1",
        description=(
            "Checks certledger QR-coded certificates offline against a verified replica of every "
            "member's log. Every verification ends in one verdict code with a reason in Chinese and "
            "English."
        ),
    )

    def rate_limited(request: Request) -> None:
        take_token(request.client.host if request.client else "unknown")

    def take_token(client: str) -> None:
        wait = limiter.take(client)
        if wait > 0:
            raise _Refused(
                429,
                "请求过于频繁，请稍后再试",
                "too many requests from this address: wait and try again",
                headers={"Retry-After": RateLimiter.retry_after(wait)},
            )

    @app.exception_handler(_Refused)
    async def refused(request: Request, exc: _Refused) -> Response:
        return _JSON(exc.verdict.to_json(), status_code=exc.status, headers=exc.headers)

    async def verify(text: str, purpose: str | None) -> Verdict:
        text = clean_text(text)
        how = mangled_reason(text)
        if how is not None:
            return malformed(*how, warnings=(MANGLED_WARNING,))
        # from local data on the event loop (CPU only: a thread would add a hand-off and no
        # parallelism); only a certificate missing from the replica waits, in a thread, for
        # its issuer's log to be synced
        try:
            verdict = service.verify_text(text, purpose=purpose, sync=False)
            if verdict.code in _ON_DEMAND and service.on_demand_sync:
                verdict = await to_thread.run_sync(lambda: service.verify_text(text, purpose=purpose))
        except StorageError as e:
            raise _unavailable(e) from None
        return verdict

    async def verify_text_asgi(scope: Scope, receive: Receive, send: Send) -> None:
        """``POST /v1/verify`` as a plain ASGI endpoint, served before FastAPI's routing,
        dependency solving and parameter validation (see :class:`_FastRoute`): the rate
        limit, the body cap, the content types, the purpose from the body or the query
        string, and every refusal as a verdict, in that order."""
        status, extra = 200, _API_HEADERS
        try:
            client = scope.get("client")
            take_token(client[0] if client else "unknown")
            declared: str | None = None
            content_type: str | None = None
            for name, value in scope["headers"]:  # the first of each, as Starlette's Headers
                if name == b"content-length" and declared is None:
                    declared = value.decode("latin-1")
                elif name == b"content-type" and content_type is None:
                    content_type = value.decode("latin-1")
            query: bytes = scope.get("query_string", b"")
            asked = dict(parse_qsl(query.decode("latin-1"), keep_blank_values=True)) if query else {}
            body = await _read_capped(receive, declared, lim.max_text_body, lim.body_seconds)
            text, wanted = _text_of(body, content_type or "", _purpose(asked.get("purpose")))
            verdict = await verify(text, wanted)
        except _Refused as exc:
            status, verdict = exc.status, exc.verdict
            extra = [*((k.lower().encode(), v.encode()) for k, v in exc.headers.items()), *_API_HEADERS]
        except ClientDisconnect:
            return  # nobody to answer
        data = orjson.dumps(verdict.to_json())
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-length", str(len(data)).encode()), *extra],
            }
        )
        await send({"type": "http.response.body", "body": data})

    @app.post(
        "/v1/verify",
        responses=_VERDICT_RESPONSES,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["text"],
                            "properties": {
                                "text": {"type": "string", "maxLength": lim.max_text_body},
                                "purpose": {"type": "string", "pattern": _PURPOSE.pattern},
                            },
                            "additionalProperties": False,
                        }
                    },
                    "text/plain": {"schema": {"type": "string"}},
                },
            }
        },
        summary="Verify the text of a certificate QR code",
    )
    async def verify_text(request: Request, purpose: str | None = None) -> Response:
        # declared for the OpenAPI document; requests are answered by verify_text_asgi,
        # which reads the purpose from the query string itself
        return _Served(verify_text_asgi)

    @app.post(
        "/v1/verify/image",
        responses=_VERDICT_RESPONSES,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "image/png": {"schema": {"type": "string", "format": "binary"}},
                    "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                },
            }
        },
        summary="Verify the certificate QR code in a PNG or JPEG photo or screenshot",
    )
    async def verify_image(request: Request, purpose: str | None = None) -> Response:
        rate_limited(request)
        wanted = _purpose(purpose)
        body = await _read_capped(
            request.receive, request.headers.get("content-length"), lim.max_image_body, lim.body_seconds
        )
        # The pixel cap bounds one decode; this bounds how many run at once (and so memory).
        texts = await to_thread.run_sync(_qr_texts, body, lim, limiter=decoders.get())
        verdict = await verify(_pick_code(texts), wanted)
        return _JSON(verdict.to_json())

    @app.get("/v1/status", responses=_LIMITED, summary="Replica freshness and alerts")
    async def status(request: Request) -> dict[str, Any]:
        rate_limited(request)
        try:
            return await to_thread.run_sync(service.status)
        except StorageError as e:
            raise _unavailable(e) from None

    @app.get(
        "/v1/stats",
        responses=_LIMITED,
        summary="Certificates issued and revoked per day per member (counts only)",
    )
    async def stats(request: Request) -> dict[str, Any]:
        rate_limited(request)
        try:
            return await to_thread.run_sync(service.stats)
        except StorageError as e:
            raise _unavailable(e) from None

    if registry is not None:
        metrics_registry = registry

        @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
        async def metrics() -> Response:
            return Response(generate_latest(metrics_registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    def page(name: str) -> Callable[[], Awaitable[Response]]:
        async def serve() -> Response:
            return FileResponse(_STATIC / name, media_type="text/html; charset=utf-8")

        return serve

    app.add_api_route("/", page("index.html"), methods=["GET"], include_in_schema=False)
    app.add_api_route("/consortium", page("consortium.html"), methods=["GET"], include_in_schema=False)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="certledger verifier API",
            swagger_js_url="/static/vendor/swagger-ui-bundle.js",
            swagger_css_url="/static/vendor/swagger-ui.css",
            swagger_favicon_url="/static/favicon.svg",
        )

    app.mount("/static", StaticFiles(directory=_STATIC), name="static")
    app.add_middleware(_FastRoute, method="POST", path="/v1/verify", endpoint=verify_text_asgi)
    app.add_middleware(_SecurityHeaders)

    return app


class _Served(Response):
    """A response that hands the request to a plain ASGI endpoint."""

    def __init__(self, endpoint: ASGIApp) -> None:
        super().__init__()
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.endpoint(scope, receive, send)


class _FastRoute:
    """Serves one route (method and exact path) with a plain ASGI endpoint, before
    FastAPI's routing, dependency solving and parameter validation, which cost more than
    a third of a whole verification; every other request goes on to the application.
    The FastAPI route stays declared for the OpenAPI document."""

    def __init__(self, app: ASGIApp, *, method: str, path: str, endpoint: ASGIApp) -> None:
        self.app = app
        self.method = method
        self.path = path
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == self.method:
            path: str = scope["path"]
            root: str = scope.get("root_path", "")
            if root and path.startswith(root + "/"):
                path = path[len(root) :]
            if path == self.path:
                await self.endpoint(scope, receive, send)
                return
        await self.app(scope, receive, send)


class _SecurityHeaders:
    """Adds security headers to every response; a strict CSP on everything but the API docs
    (Swagger UI starts from an inline script). Plain ASGI, so it costs next to nothing."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = list(_HEADERS)
        if scope.get("path") != "/docs":
            extra.append((b"content-security-policy", _CSP.encode()))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"permissions-policy", b"camera=(self)"),
)
_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob: mediastream:; "
    "script-src 'self'; style-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_API_HEADERS = [(b"content-type", b"application/json")]
#: Verdicts that a sync may change: the certificate may be newer than the replica, its
#: key newer than the trust policy, or the policy expired with a newer one available.
_ON_DEMAND = frozenset({Code.NOT_IN_LEDGER, Code.UNKNOWN_ISSUER, Code.STALE})
