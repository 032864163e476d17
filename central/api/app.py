"""The FastAPI application: staff API, login and the attendance page."""

from __future__ import annotations

import hmac
import html
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from ..store import Store
from .deps import COOKIE, Public, cookie_value, is_staff
from .routes import devices, meetings, rejections, system

PAGE = Path(__file__).resolve().parent.parent / "static" / "index.html"
LOGIN_PAGE = """<!doctype html>
<html lang="vi"><head><meta charset="utf-8"><title>Đăng nhập / Login</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: sans-serif; max-width: 28em; margin: 4em auto">
<h1>Điểm danh — đăng nhập</h1><p lang="en">Attendance — staff login</p>
{message}
<form method="get" action="/login">
<label>Mã nhân viên / Staff token <input type="password" name="token" id="token" autocomplete="current-password" required></label>
<button type="submit">Đăng nhập / Log in</button></form></body></html>"""


def _login_page(message: str = "", status_code: int = 401) -> HTMLResponse:
    note = f'<p role="alert" style="color:#b00">{html.escape(message)}</p>' if message else ""
    return HTMLResponse(LOGIN_PAGE.format(message=note), status_code=status_code)


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


def create_app(*, store: Store, staff_token: str, collector: Any = None) -> FastAPI:
    """``staff_token`` must already be checked (CentralSettings.checked_staff_token)."""
    app = FastAPI(title="Hall central", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store, app.state.staff_token, app.state.collector = store, staff_token, collector
    for module in (meetings, devices, rejections, system):
        app.include_router(module.router)
    page = PAGE.read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, dependencies=[Public])
    def index(request: Request) -> Response:
        # Without a login the page shows only the login form; the data comes from /api (staff only).
        if not is_staff(request):
            return _login_page()
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    @app.get("/login", dependencies=[Public])
    def login(request: Request, token: str = Query("")) -> Response:
        if not token:
            return _login_page(status_code=200)
        if not hmac.compare_digest(token.encode(), request.app.state.staff_token.encode()):
            return _login_page("Sai mã / Wrong token")
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, cookie_value(token), httponly=True, samesite="strict", path="/", max_age=12 * 3600)
        return response

    @app.get("/logout", dependencies=[Public])
    def logout() -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    return app
