"""The clerk's page at ``/clerk/``: static files that talk to the node's ``/v1`` clerk API.

The page keeps the clerk's token in the tab's ``sessionStorage`` and sends it as
``Authorization: Bearer``. It loads nothing from elsewhere; a strict Content Security
Policy on ``/clerk`` holds it to this origin.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["install"]

_STATIC = Path(__file__).resolve().parent / "static" / "clerk"  # package data
_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
_HEADERS = (
    (b"content-security-policy", _CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-cache"),
)


class _PageHeaders:
    """Adds the page's security headers to responses under ``/clerk``. Plain ASGI."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not (path == "/clerk" or path.startswith("/clerk/")):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install(app: FastAPI) -> None:
    """Serve the clerk's page at ``/clerk/`` (``/clerk`` redirects there)."""

    @app.get("/clerk", include_in_schema=False)
    def clerk_redirect() -> RedirectResponse:
        return RedirectResponse("/clerk/", status_code=308)

    app.mount("/clerk", StaticFiles(directory=_STATIC, html=True), name="clerk")
    app.add_middleware(_PageHeaders)
