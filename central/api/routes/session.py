"""Login and logout: the login page, POST /login with username and password, sessions in a cookie.

The cookie holds a random session id; the server keeps its hash, owner and expiry
(central/accounts.py), so logout and disabling a user end it at once. Each
username gets a few wrong passwords per window; after that its logins are
refused until the window passes, whatever the password, so guessing stays slow
even though argon2 alone would allow some tries a second.
"""

from __future__ import annotations

import hmac
import html
import time
from urllib.parse import parse_qs

from fastapi import APIRouter, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ... import accounts, audit
from ..deps import SESSION_COOKIE, Public, StoreDep, current_staff, remote_of

router = APIRouter(tags=["session"])

MAX_FORM = 4096
FAILURES_ALLOWED = 5
FAILURE_WINDOW_S = 300.0

LOGIN_PAGE = """<!doctype html>
<html lang="vi"><head><meta charset="utf-8"><title>Đăng nhập / Login</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">
<style>
body {{ font-family: system-ui, sans-serif; max-width: 26em; margin: 4em auto; padding: 0 1em; color: #222; }}
h1 {{ color: #8b1a1a; font-size: 1.4em; margin-bottom: .2em; }}
.en {{ color: #777; font-size: .85em; }}
label {{ display: block; margin: .8em 0 .2em; }}
input {{ width: 100%; box-sizing: border-box; padding: .5em; font-size: 1em; }}
button {{ margin-top: 1.2em; padding: .6em 1.4em; font-size: 1em; background: #8b1a1a; color: #fff; border: 0; border-radius: 4px; }}
</style></head>
<body>
<h1>Điểm danh — Đăng nhập</h1><p class="en" lang="en">Attendance — staff login</p>
{message}
<form method="post" action="/login">
<label for="username">Tên đăng nhập <span class="en">Username</span></label>
<input id="username" name="username" autocomplete="username" autocapitalize="none" required value="{username}">
<label for="password">Mật khẩu <span class="en">Password</span></label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Đăng nhập <span lang="en">/ Log in</span></button>
</form></body></html>"""


def login_page(message: str = "", status_code: int = status.HTTP_401_UNAUTHORIZED, username: str = "") -> HTMLResponse:
    note = f'<p role="alert" style="color:#b00">{html.escape(message)}</p>' if message else ""
    body = LOGIN_PAGE.format(message=note, username=html.escape(username, quote=True))
    return HTMLResponse(body, status_code=status_code, headers={"Cache-Control": "no-store"})


class Throttle:
    """Recent failed logins per username, in memory (a restart forgets them; argon2 still paces guesses)."""

    def __init__(self, allowed: int = FAILURES_ALLOWED, window_s: float = FAILURE_WINDOW_S):
        self.allowed, self.window_s = allowed, window_s
        self._failures: dict[str, list[float]] = {}

    def _recent(self, key: str) -> list[float]:
        cutoff = time.monotonic() - self.window_s
        kept = [t for t in self._failures.get(key, []) if t > cutoff]
        if kept:
            self._failures[key] = kept
        else:
            self._failures.pop(key, None)
        return kept

    def blocked(self, key: str) -> bool:
        return len(self._recent(key)) >= self.allowed

    def failed(self, key: str) -> None:
        self._recent(key)
        self._failures.setdefault(key, []).append(time.monotonic())
        if len(self._failures) > 10_000:  # bounded: a flood of made-up names must not grow this forever
            for name in list(self._failures)[:5_000]:
                del self._failures[name]

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)


def _throttle(request: Request) -> Throttle:
    found = getattr(request.app.state, "login_throttle", None)
    if found is None:
        found = request.app.state.login_throttle = Throttle()
    return found


def _signed_in(request: Request, session: str) -> Response:
    response = RedirectResponse("/", status_code=status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        SESSION_COOKIE, session, max_age=int(request.app.state.session_ttl_s), path="/",
        httponly=True, samesite="strict", secure=request.url.scheme == "https",
    )
    return response


@router.get("/login", dependencies=[Public])
def login_form(request: Request, store: StoreDep, token: str = Query("", include_in_schema=False)) -> Response:
    """The login page. ``?token=`` (the shared staff token) is still accepted for the demo and older scripts."""
    if not token:
        return login_page(status_code=status.HTTP_200_OK)
    staff_token: str | None = request.app.state.staff_token
    remote = remote_of(request)
    if not staff_token or not hmac.compare_digest(token.encode(), staff_token.encode()):
        audit.record(store, accounts.STAFF_TOKEN_ACTOR, "login.failure", "wrong staff token in /login?token=", remote)
        return login_page("Sai mã / Wrong token")
    staff = accounts.Staff(accounts.STAFF_TOKEN_ACTOR, accounts.Role.admin, None, "session")
    with store.transaction():
        session = accounts.open_session(store, staff, ttl_s=request.app.state.session_ttl_s, remote=remote, staff_token=staff_token)
        audit.record(store, staff.name, "login.success", "staff token", remote)
    return _signed_in(request, session)


@router.post("/login", dependencies=[Public])
async def login(request: Request, store: StoreDep) -> Response:
    """Form fields ``username`` and ``password``: 303 to the page with a session cookie, or 401 with the form again."""
    body = (await request.body())[: MAX_FORM + 1]
    if len(body) > MAX_FORM:
        return login_page("Biểu mẫu quá lớn / Form too large", status.HTTP_413_CONTENT_TOO_LARGE)
    fields = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}
    username, password = fields.get("username", "").strip().lower()[:64], fields.get("password", "")
    remote = remote_of(request)
    throttle = _throttle(request)
    if throttle.blocked(username):
        audit.record(store, username or "?", "login.failure", "too many failed attempts; refused without checking", remote)
        return login_page("Quá nhiều lần thử sai, hãy đợi vài phút / Too many attempts, wait a few minutes",
                          status.HTTP_429_TOO_MANY_REQUESTS, username)
    staff, reason = accounts.authenticate(store, username, password)
    if staff is None:
        throttle.failed(username)
        audit.record(store, username or "?", "login.failure", reason, remote)
        return login_page("Sai tên đăng nhập hoặc mật khẩu / Wrong username or password", username=username)
    throttle.succeeded(username)
    with store.transaction():
        session = accounts.open_session(store, staff, ttl_s=request.app.state.session_ttl_s, remote=remote)
        audit.record(store, staff.name, "login.success", "password", remote)
    return _signed_in(request, session)


@router.post("/logout", dependencies=[Public])
def logout(request: Request, store: StoreDep) -> Response:
    """Ends the session on the server as well as in the browser."""
    session = request.cookies.get(SESSION_COOKIE)
    if session:
        staff = current_staff(request)
        with store.transaction():
            if accounts.close_session(store, session) and staff is not None:
                audit.record(store, staff.name, "logout", "", remote_of(request))
    response = RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response
