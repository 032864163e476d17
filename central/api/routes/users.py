"""Staff accounts and their API tokens (admins only), and the audit log.

Every change is recorded in the audit log in the same transaction. A generated
password or a new API token appears once, in the response that made it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, status
from pydantic import BaseModel, Field

from ... import accounts, audit
from ...errors import AccountError, UnknownUser
from ..deps import SQLITE_MAX_INT, Admin, StoreDep, remote_of

router = APIRouter(prefix="/api", tags=["users"])


@contextmanager
def _http_errors() -> Iterator[None]:
    try:
        yield
    except UnknownUser as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except AccountError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None


class NewUser(BaseModel):
    username: str = Field(max_length=64)
    role: str = Field(description="viewer, secretary, technician or admin")
    password: str | None = Field(None, max_length=accounts.MAX_PASSWORD_CHARS, description="omit to have one generated and returned once")


class UserChange(BaseModel):
    role: str | None = None
    disabled: bool | None = None


class NewPassword(BaseModel):
    password: str | None = Field(None, max_length=accounts.MAX_PASSWORD_CHARS, description="omit to have one generated and returned once")


class NewToken(BaseModel):
    name: str = Field(max_length=64, description="what uses the token, e.g. 'attendance export on host X'")


@router.get("/users")
def list_users(store: StoreDep, _: Admin) -> list[dict[str, Any]]:
    return accounts.list_users(store)


@router.post("/users", status_code=status.HTTP_201_CREATED)
def create_user(body: NewUser, store: StoreDep, staff: Admin, request: Request) -> dict[str, Any]:
    password = body.password or accounts.generate_password()
    with _http_errors(), store.transaction():
        user = accounts.add_user(store, body.username, body.role, password)
        audit.record(store, staff.name, "user.create", {"user": user["username"], "role": user["role"]}, remote_of(request))
    return {**user, "password": None if body.password else password}


@router.patch("/users/{username}")
def change_user(username: str, body: UserChange, store: StoreDep, staff: Admin, request: Request) -> dict[str, Any]:
    """Change a user's role and/or disable (ending their sessions) or re-enable them."""
    with _http_errors(), store.transaction():
        if body.role is not None:
            before = accounts.set_role(store, username, body.role)
            audit.record(store, staff.name, "user.role", {"user": username, "from": before, "to": body.role}, remote_of(request))
        if body.disabled is not None and accounts.set_disabled(store, username, body.disabled):
            audit.record(store, staff.name, "user.disable" if body.disabled else "user.enable", {"user": username}, remote_of(request))
        user = accounts.get_user(store, username)
    return user or {}


@router.post("/users/{username}/password")
def reset_password(username: str, body: NewPassword, store: StoreDep, staff: Admin, request: Request) -> dict[str, Any]:
    """Set a user's password (ending their sessions)."""
    password = body.password or accounts.generate_password()
    with _http_errors(), store.transaction():
        accounts.set_password(store, username, password)
        audit.record(store, staff.name, "user.password", {"user": username}, remote_of(request))
    return {"username": username, "password": None if body.password else password}


@router.get("/users/{username}/tokens")
def list_tokens(username: str, store: StoreDep, _: Admin) -> list[dict[str, Any]]:
    with _http_errors():
        return accounts.list_tokens(store, username)


@router.post("/users/{username}/tokens", status_code=status.HTTP_201_CREATED)
def create_token(username: str, body: NewToken, store: StoreDep, staff: Admin, request: Request) -> dict[str, Any]:
    """A new API token acting as this user; the token is in this response only."""
    with _http_errors(), store.transaction():
        token_id, token = accounts.issue_token(store, username, body.name)
        audit.record(store, staff.name, "token.create", {"user": username, "token_id": token_id, "name": body.name}, remote_of(request))
    return {"id": token_id, "name": body.name, "token": token}


@router.delete("/users/{username}/tokens/{token_id}")
def revoke_token(username: str, token_id: Annotated[int, Path(ge=1, le=SQLITE_MAX_INT)], store: StoreDep, staff: Admin,
                 request: Request) -> dict[str, Any]:
    with _http_errors(), store.transaction():
        accounts.revoke_token(store, username, token_id)
        audit.record(store, staff.name, "token.revoke", {"user": username, "token_id": token_id}, remote_of(request))
    return {"id": token_id, "revoked": True}


@router.get("/audit")
def audit_log(
    store: StoreDep,
    _: Admin,
    limit: int = Query(100, ge=1, le=1000),
    before_id: int | None = Query(None, ge=1, le=SQLITE_MAX_INT, description="page backwards: entries with a lower id"),
    actor: str | None = None,
    action: str | None = Query(None, description="an action, or a prefix ending in '.' such as 'login.'"),
) -> list[dict[str, Any]]:
    """Staff actions, newest first."""
    return audit.entries(store, limit=limit, before_id=before_id, actor=actor, action=action)
