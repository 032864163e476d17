"""Login and logout: the login page, POST /login with username and password, sessions in a cookie.

The cookie holds a random session id; the server keeps its hash, owner and expiry
(central/accounts.py), so logout and disabling a user end it at once. Failed
logins are counted per address and per username (central/api/throttle.py), so
guessing stays slow without letting anyone lock an owner out of their account.
"""

from __future__ import annotations

import html
from urllib.parse import parse_qs

import anyio
from fastapi import APIRouter, Query, Request, status
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ... import accounts, audit
from ...store import Store
from ..deps import SESSION_COOKIE, Public, StoreDep, current_staff, guard_of, remote_of
from ..throttle import Guard, source_of

router = APIRouter(tags=["session"])

MAX_FORM = 4096
# argon2id with argon2-cffi's defaults takes 64 MiB and ~0.1 s of 4 lanes: two at once keep a small
# server responsive and bounded in memory; more wait their turn, and past MAX_WAITING are turned away.
PASSWORD_CHECKS = 2
MAX_WAITING = 32

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


def _password_checks(request: Request) -> anyio.CapacityLimiter:
    found = getattr(request.app.state, "password_checks", None)
    if found is None:
        found = request.app.state.password_checks = anyio.CapacityLimiter(PASSWORD_CHECKS)
    return found


# Where a one-time link lands: the fleet overview, the page staff start from (issue 10); the attendance page
# is one click away in its header. The login form returns to the page it was shown on instead ("/" shows it).
LANDING = "/fleet"


def _signed_in(request: Request, session: str, to: str = "/") -> Response:
    response = RedirectResponse(to, status_code=status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        SESSION_COOKIE, session, max_age=int(request.app.state.session_ttl_s), path="/",
        httponly=True, samesite="strict", secure=request.url.scheme == "https",
    )
    return response


@router.get("/login", dependencies=[Public])
def login_form(token: str = Query("", include_in_schema=False)) -> Response:
    """The login page. A token in the URL is not looked at: URLs end up in logs, history and Referer headers."""
    if token:
        return login_page("Mã nhân viên không còn được nhận qua địa chỉ; hãy dùng liên kết đăng nhập một lần "
                          "(hall central login-link) / The staff token is no longer accepted in a URL: use a "
                          "one-time login link (hall central login-link)", status.HTTP_400_BAD_REQUEST)
    return login_page(status_code=status.HTTP_200_OK)


@router.get("/login/once/{code}", dependencies=[Public])
async def login_once(request: Request, store: StoreDep, code: str = PathParam(max_length=64)) -> Response:
    """A one-time login link from `hall central login-link` (or the demo's banner): used up on the first visit."""
    remote = remote_of(request)
    source, guard = source_of(remote), guard_of(request)
    if guard.tokens_refused(source):
        if guard.first_refusal(("token", source)):
            await run_in_threadpool(audit.record, store, "?", "login.failure",
                                    f"too many unknown tokens or login links from {source}; refused unchecked", remote)
        return login_page("Quá nhiều lần thử sai, hãy đợi vài phút / Too many attempts, wait a few minutes",
                          status.HTTP_429_TOO_MANY_REQUESTS)
    staff_token: str | None = request.app.state.staff_token
    staff, reason = await run_in_threadpool(accounts.redeem_login_link, store, code, staff_token=staff_token)
    if staff is None:
        guard.token_failed(source)
        await run_in_threadpool(audit.record, store, "?", "login.failure", reason, remote)
        return login_page("Liên kết đăng nhập đã dùng hoặc hết hạn / This login link is used up or expired")
    session = await run_in_threadpool(_open, store, staff, request.app.state.session_ttl_s, remote, "one-time login link",
                                      staff_token)
    return _signed_in(request, session, LANDING)


@router.post("/login", dependencies=[Public])
async def login(request: Request, store: StoreDep) -> Response:
    """Form fields ``username`` and ``password``: 303 to the page with a session cookie, or 401 with the form again.

    argon2 runs in worker threads, at most PASSWORD_CHECKS at once, so logins never stall other
    requests; the guard refuses an address or a username that keeps failing before argon2 runs.
    """
    body = await request.body()  # at most BODY_LIMITS["/login"] bytes: the app's BodyLimit refuses more while reading
    if len(body) > MAX_FORM:
        return login_page("Biểu mẫu quá lớn / Form too large", status.HTTP_413_CONTENT_TOO_LARGE)
    fields = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}
    username, password = fields.get("username", "").strip().lower()[:64], fields.get("password", "")
    remote = remote_of(request)
    source, guard = source_of(remote), guard_of(request)
    checks = _password_checks(request)
    if checks.statistics().tasks_waiting >= MAX_WAITING:
        return login_page("Máy chủ đang bận, hãy thử lại / Busy, try again in a moment",
                          status.HTTP_503_SERVICE_UNAVAILABLE, username)
    staff, reason = await anyio.to_thread.run_sync(_check_password, store, guard, source, username, password, limiter=checks)
    if staff is None:
        if reason.startswith("refused: "):
            if guard.first_refusal(("login", source)):  # one entry per address and window, however many names it tries
                await run_in_threadpool(audit.record, store, username or "?", "login.failure",
                                        f"too many failed attempts: {reason.removeprefix('refused: ')}; refused without "
                                        "checking, and further refusals are not logged for a while", remote)
            return login_page("Quá nhiều lần thử sai, hãy đợi vài phút / Too many attempts, wait a few minutes",
                              status.HTTP_429_TOO_MANY_REQUESTS, username)
        await run_in_threadpool(audit.record, store, username or "?", "login.failure", reason, remote)
        return login_page("Sai tên đăng nhập hoặc mật khẩu / Wrong username or password", username=username)
    session = await run_in_threadpool(_open, store, staff, request.app.state.session_ttl_s, remote, "password")
    return _signed_in(request, session)


def _check_password(store: Store, guard: Guard, source: str, username: str, password: str) -> tuple[accounts.Staff | None, str]:
    """In a worker thread. The guard is asked again here: requests queued together all passed it before any failed."""
    refusal = guard.login_refusal(source, username)
    if refusal is not None:
        return None, f"refused: {refusal}"
    staff, reason = accounts.authenticate(store, username, password)
    if staff is None:
        guard.login_failed(source, username)
    else:
        guard.login_succeeded(source, username)
    return staff, reason


def _open(store: Store, staff: accounts.Staff, ttl_s: float, remote: str | None, how: str, staff_token: str | None = None) -> str:
    with store.transaction():
        session = accounts.open_session(store, staff, ttl_s=ttl_s, remote=remote, staff_token=staff_token)
        audit.record(store, staff.name, "login.success", how, remote)
    return session


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
