"""Shared dependencies. Every route declares who may call it.

Staff routes take one of the Annotated roles as a parameter (``staff: Viewer``,
``Secretary``, ``Technician``, ``Admin``), which also tells the route who is calling for the
audit log. Routes anyone may call declare ``Public``; calls made by machines on
this host (the media server's callbacks) declare ``MachineCallback`` next to
their own check.

A caller proves who they are with, in this order:
- ``Authorization: Bearer hct_...``: a user's API token (for scripts and machines);
- ``Authorization: Bearer <staff token>``: the shared bootstrap token, an admin,
  while ``staff_token_enabled`` (compatibility with the demo and older scripts);
  a token is taken from this header only, never from a URL, and an address
  presenting many unknown tokens gets 429 for a while (central/api/throttle.py);
- the ``hall_session`` cookie set by ``/login``: a server-side session. It is
  HttpOnly and SameSite=Strict, so scripts and other sites cannot use it, and a
  state-changing request carrying it must come from this site's own pages: its
  Origin (or Referer) must be one of central's configured public origins.

401 means "who are you?" (no or bad credentials), 403 "you may not" (role too low).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated, TypeVar
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Request, status

from ..accounts import STAFF_TOKEN_ACTOR, Role, Staff, session_staff, token_staff
from ..errors import Conflict, NotFound, RegistryError
from ..store import Store
from .throttle import Guard, source_of

T = TypeVar("T")
SESSION_COOKIE = "hall_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Integers a route passes to SQLite must fit its 64-bit INTEGER, or the query fails with a 500.
SQLITE_MAX_INT = 2**63 - 1


def remote_of(request: Request) -> str | None:
    return request.client.host if request.client else None


def guard_of(request: Request) -> Guard:
    """The app's count of failed credentials (central/api/throttle.py)."""
    found = getattr(request.app.state, "guard", None)
    if found is None:
        found = request.app.state.guard = Guard()
    return found


def _bearer(request: Request) -> str | None:
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    return presented.strip() if scheme.lower() == "bearer" and presented.strip() else None


def current_staff(request: Request) -> Staff | None:
    """Who is calling, or None. Looked up once per request."""
    if hasattr(request.state, "staff"):
        return request.state.staff
    store: Store = request.app.state.store
    staff_token: str | None = request.app.state.staff_token
    staff: Staff | None = None
    presented = _bearer(request)
    if presented is not None:
        # Guessing tokens is slowed per address: past the limit nothing it presents is looked at.
        guard, source = guard_of(request), source_of(remote_of(request))
        if guard.tokens_refused(source):
            raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS,
                                detail="too many unknown tokens from this address; wait a few minutes / quá nhiều lần thử")
        # A bearer credential that does not check out is not silently replaced by a cookie.
        if staff_token and hmac.compare_digest(presented.encode(), staff_token.encode()):
            staff = Staff(STAFF_TOKEN_ACTOR, Role.admin, None, "staff-token")
        else:
            staff = token_staff(store, presented)
            if staff is None:
                guard.token_failed(source)
    elif session := request.cookies.get(SESSION_COOKIE):
        staff = session_staff(store, session, staff_token=staff_token)
    request.state.staff = staff
    return staff


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` as browsers write Origin: lower case, no path, no default port."""
    parts = urlsplit(url.strip())
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        return ""
    if port is None or (scheme, port) in (("http", 80), ("https", 443)):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def _from_our_pages(request: Request) -> bool:
    """Whether a request carrying the session cookie comes from central's own pages.

    Browsers send Origin (or at least Referer) with every state-changing request; one with
    neither is refused. It is compared with the origins central is configured to be served
    at, never with the Host header, which the requester chooses (DNS rebinding).
    """
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        return False
    return origin_of(source) in request.app.state.public_origins


def require_role(role: Role) -> Callable[[Request], Staff]:
    def dependency(request: Request) -> Staff:
        staff = current_staff(request)
        if staff is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail="staff login required / cần đăng nhập nhân viên",
                headers={"WWW-Authenticate": "Bearer"},
            )
        # Only the cookie rides along on a cross-site request; a bearer token is never sent by a browser on its own.
        if staff.via == "session" and request.method not in SAFE_METHODS and not _from_our_pages(request):
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail="cross-site request refused / yêu cầu từ trang khác bị từ chối")
        if not staff.may(role):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"needs the {role.name} role; {staff.name} is {staff.role.name} / cần quyền {role.name}",
            )
        return staff

    dependency.__name__ = dependency.__qualname__ = f"require_{role.name}"
    dependency.role = role  # type: ignore[attr-defined]  # read by the route walk in the tests
    return dependency


require_viewer = require_role(Role.viewer)
require_secretary = require_role(Role.secretary)
require_technician = require_role(Role.technician)
require_admin = require_role(Role.admin)
ROLE_CHECKS = {require_viewer: Role.viewer, require_secretary: Role.secretary, require_technician: Role.technician, require_admin: Role.admin}

Viewer = Annotated[Staff, Depends(require_viewer)]
Secretary = Annotated[Staff, Depends(require_secretary)]
Technician = Annotated[Staff, Depends(require_technician)]
Admin = Annotated[Staff, Depends(require_admin)]


def public() -> None:
    """Marks a route anyone may call; such routes return no member or device data."""


def machine_callback() -> None:
    """Marks a route called by a machine on this host (a media server's callback), never by staff or browsers.

    The route must carry its own check of the caller (loopback only, a shared secret...):
    staff credentials do not open it.
    """


def get_store(request: Request) -> Store:
    return request.app.state.store


Public = Depends(public)
MachineCallback = Depends(machine_callback)
StoreDep = Annotated[Store, Depends(get_store)]
# Kept for routes written before roles: a viewer. New routes take ``Viewer`` etc. as a parameter.
require_staff = require_viewer
StaffOnly = Depends(require_viewer)


def answered(call: Callable[[], T]) -> T:
    """``call()``, with central's errors as the HTTP answers every route gives them: an unknown id 404, a change
    that collides with the current state 409, anything else refused 422 (each with its message in words)."""
    try:
        return call()
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    except RegistryError as exc:
        raise HTTPException(422, str(exc)) from None  # its constant was renamed across Starlette versions
