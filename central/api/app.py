"""The FastAPI application: staff API, login and the attendance page."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..store import Store
from .deps import Public, current_staff, origin_of
from .routes import commands, devices, meetings, rejections, session, system, users
from .routes.alerts import router as alerts_router
from .routes.attendance import router as attendance_router
from .routes.attendance_exports import router as attendance_exports_router
from .routes.attendance_pages import router as attendance_pages_router
from .routes.attendance_rollup import router as attendance_rollup_router
from .routes.fleet import router as fleet_router
from .routes.fleet_pages import router as fleet_pages_router
from .routes.membership import router as membership_router

PAGE = Path(__file__).resolve().parent.parent / "static" / "index.html"
DEFAULT_SESSION_S = 12 * 3600.0

log = logging.getLogger("central.api")

# Largest request body each path may send, enforced while the body arrives (BodyLimit).
# The first matching prefix wins; every route's real bodies are far smaller.
BODY_LIMITS: tuple[tuple[str, int], ...] = (
    ("/login", 4 * 1024),  # a username and a password (at most 1024 characters) as a form
    ("/logout", 1024),
    ("/media/", 4 * 1024),  # nginx-rtmp's form-encoded callback fields
    ("/enrol", 64 * 1024),  # a CSR and a few keys as JSON
)
DEFAULT_BODY_LIMIT = 16 * 1024  # the JSON staff API: a user, a device, a token name


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once a body passes its limit; FastAPI passes HTTPExceptions through its body parsing."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, detail=f"request body larger than {limit} bytes / nội dung quá lớn",
                         headers={"Connection": "close"})


class BodyLimit:
    """Pure ASGI middleware: refuses a request body over its path's limit while it is received.

    A declared Content-Length over the limit is answered 413 before a byte of the body is
    read; a chunked (or understated) body is counted as it arrives and the request ends with
    413 as soon as it passes the limit, so no more than the limit plus one received chunk is
    ever held. ``Connection: close`` stops the client from sending the rest.
    """

    def __init__(self, app: ASGIApp, limits: Iterable[tuple[str, int]] = BODY_LIMITS, default: int = DEFAULT_BODY_LIMIT):
        self.app, self.limits, self.default = app, tuple(limits), default

    def limit_for(self, path: str) -> int:
        return next((limit for prefix, limit in self.limits if path.startswith(prefix)), self.default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = _content_length(scope)
        if declared is not None and (declared < 0 or declared > limit):
            log.warning("refused a %s-byte body to %s %s (limit %d)", declared, scope["method"], scope["path"], limit)
            await PlainTextResponse(BodyTooLarge(limit).detail, 413, headers={"Connection": "close"})(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    log.warning("refused a body over %d bytes to %s %s while reading it", limit, scope["method"], scope["path"])
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counted, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return -1  # unreadable: refused like an oversize one
    return None


def all_routes(routes: Iterable[BaseRoute]) -> Iterator[APIRoute]:
    """Every APIRoute, descending into included routers.

    FastAPI >= 0.16x keeps an included router as one lazy entry in ``app.routes``,
    so a flat walk would see none of the /api routes.
    """
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from all_routes(inner.routes)
        elif isinstance(route, APIRoute):
            yield route


def create_app(
    *, store: Store, staff_token: str | None, collector: Any = None, session_ttl_s: float = DEFAULT_SESSION_S,
    public_origins: Iterable[str] = (),
) -> FastAPI:
    """``staff_token``: the checked bootstrap token (CentralSettings.checked_staff_token), or None to accept accounts only.

    ``public_origins``: where staff open the page (CentralSettings.allowed_origins); a state-changing
    request with a session cookie from anywhere else is refused. None given: cookies change nothing.
    """
    app = FastAPI(title="Hall central", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(BodyLimit)
    app.state.store, app.state.staff_token, app.state.collector = store, staff_token or None, collector
    app.state.session_ttl_s = session_ttl_s
    app.state.public_origins = frozenset(filter(None, map(origin_of, public_origins)))
    for module in (session, meetings, devices, rejections, users, system):
        app.include_router(module.router)
    app.include_router(devices.halls_router)
    app.include_router(fleet_router)
    app.include_router(fleet_pages_router)
    app.include_router(alerts_router)
    app.include_router(commands.router)
    app.include_router(membership_router)
    app.include_router(attendance_router)
    app.include_router(attendance_exports_router)
    app.include_router(attendance_rollup_router)
    app.include_router(attendance_pages_router)
    page = PAGE.read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, dependencies=[Public])
    def index(request: Request) -> Response:
        # Without a login the page shows only the login form; the data comes from /api (staff only).
        if current_staff(request) is None:
            return session.login_page()
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    return app
