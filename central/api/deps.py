"""Shared dependencies. Every route declares who may call it: ``StaffOnly`` or ``Public``.

Staff prove themselves with ``Authorization: Bearer <staff token>`` or the
``hall_staff`` cookie set by ``/login``. The cookie holds an HMAC of the token,
not the token, and is HttpOnly + SameSite=Strict so other sites cannot ride it.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from ..store import Store

COOKIE = "hall_staff"


def cookie_value(token: str) -> str:
    return hmac.new(token.encode(), b"hall-central staff cookie v1", hashlib.sha256).hexdigest()


def is_staff(request: Request) -> bool:
    token: str = request.app.state.staff_token
    header = request.headers.get("authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() == "bearer" and presented and hmac.compare_digest(presented.strip().encode(), token.encode()):
        return True
    cookie = request.cookies.get(COOKIE)
    return bool(cookie) and hmac.compare_digest(cookie.encode(), cookie_value(token).encode())


def require_staff(request: Request) -> None:
    if not is_staff(request):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="staff login required / cần đăng nhập nhân viên",
            headers={"WWW-Authenticate": "Bearer"},
        )


def public() -> None:
    """Marks a route anyone may call; such routes return no member or device data."""


def get_store(request: Request) -> Store:
    return request.app.state.store


StaffOnly = Depends(require_staff)
Public = Depends(public)
StoreDep = Annotated[Store, Depends(get_store)]
