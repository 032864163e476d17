"""The FastAPI application: staff API, login and the attendance page."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from ..store import Store
from .deps import Public, current_staff
from .routes import devices, meetings, rejections, session, system, users

PAGE = Path(__file__).resolve().parent.parent / "static" / "index.html"
DEFAULT_SESSION_S = 12 * 3600.0


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
    *, store: Store, staff_token: str | None, collector: Any = None, session_ttl_s: float = DEFAULT_SESSION_S
) -> FastAPI:
    """``staff_token``: the checked bootstrap token (CentralSettings.checked_staff_token), or None to accept accounts only."""
    app = FastAPI(title="Hall central", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store, app.state.staff_token, app.state.collector = store, staff_token or None, collector
    app.state.session_ttl_s = session_ttl_s
    for module in (session, meetings, devices, rejections, users, system):
        app.include_router(module.router)
    page = PAGE.read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, dependencies=[Public])
    def index(request: Request) -> Response:
        # Without a login the page shows only the login form; the data comes from /api (staff only).
        if current_staff(request) is None:
            return session.login_page()
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    return app
