"""Staff accounts: users with a role, argon2 password hashes, login sessions and API tokens.

Roles are ordered: a viewer reads attendance, meetings and devices; a secretary
also records absences' reasons, closes meetings and amends their sheets; a technician
also registers and revokes kiosks and reads rejected messages; an admin also
manages accounts and reads the audit log.

Passwords are stored as argon2id hashes (argon2-cffi's RFC 9106 defaults).
Session ids and API tokens are 256-bit random strings (one-time login codes
192-bit and short-lived), so a plain SHA-256 of them is enough to keep a copied
database from opening a session: nothing short of guessing that many values
finds the preimage, and looking one up stays one index probe per request
instead of an argon2 run.

Nothing here records audit entries: the callers (API routes, CLI) know who asked
and from where, and record them in the same transaction.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from .errors import AccountError, UnknownUser
from .store import Store, utc_now

USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,31}")
MIN_PASSWORD_CHARS = 10
MAX_PASSWORD_CHARS = 1024  # argon2 takes any length; a megabyte "password" only costs us time
TOKEN_PREFIX = "hct_"  # recognisable in a leaked config file or a secret scanner
STAFF_TOKEN_ACTOR = "staff-token"
TOKEN_TOUCH_S = 60  # last_used_at is refreshed at most this often, not one fsync per API call
LOGIN_LINK = "login-link"  # sessions.via of a one-time login code not yet used
LOGIN_LINK_TTL_S = 15 * 60.0
MAX_LOGIN_LINK_TTL_S = 24 * 3600.0

_hasher = PasswordHasher()
_dummy_hash: str | None = None


class Role(enum.IntEnum):
    viewer = 1
    secretary = 2  # a cell secretary or committee staff: also records excuses, closes and amends meeting sheets
    technician = 3
    admin = 4

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.strip().lower()]
        except KeyError:
            raise AccountError(f"unknown role {text!r}; one of {', '.join(r.name for r in cls)}") from None


@dataclass(frozen=True)
class Staff:
    """Who is calling: a user (by session or API token) or the shared staff token."""

    name: str
    role: Role
    user_id: int | None
    via: str  # "session", "api-token" or "staff-token"

    def may(self, role: Role) -> bool:
        return self.role >= role


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_username(username: str) -> str:
    name = username.strip().lower()
    if not USERNAME.fullmatch(name) or name == STAFF_TOKEN_ACTOR or name.startswith("cli:"):
        raise AccountError(
            f"bad username {username!r}: 2–32 characters, lower-case letters, digits and . _ - (not {STAFF_TOKEN_ACTOR!r})"
        )
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_CHARS:
        raise AccountError(f"the password is {len(password)} characters; use at least {MIN_PASSWORD_CHARS}")
    if len(password) > MAX_PASSWORD_CHARS:
        raise AccountError(f"the password is longer than {MAX_PASSWORD_CHARS} characters")
    if len(set(password)) < 4:
        raise AccountError("the password repeats too few characters")
    return password


def generate_password() -> str:
    return secrets.token_urlsafe(15)  # 20 characters, 120 bits


def hash_password(password: str) -> str:
    return _hasher.hash(check_password(password))


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "password_hash"}


def get_user(store: Store, username: str) -> dict[str, Any] | None:
    row = store.row("SELECT * FROM users WHERE username = ?", [username.strip().lower()])
    return _public(row) if row else None


def _require_user(store: Store, username: str) -> dict[str, Any]:
    row = get_user(store, username)
    if row is None:
        raise UnknownUser(f"no staff account {username!r}")
    return row


def list_users(store: Store) -> list[dict[str, Any]]:
    return store.rows(
        "SELECT u.id, u.username, u.role, u.created_at, u.updated_at, u.disabled_at, "
        "(SELECT COUNT(*) FROM api_tokens t WHERE t.user_id = u.id AND t.revoked_at IS NULL) AS tokens, "
        "(SELECT COUNT(*) FROM sessions s WHERE s.user_id = u.id AND s.expires_at > ? AND s.via <> ?) AS sessions "
        "FROM users u ORDER BY u.username",
        [utc_now(), LOGIN_LINK],
    )


def add_user(store: Store, username: str, role: Role | str, password: str) -> dict[str, Any]:
    name, role = check_username(username), role if isinstance(role, Role) else Role.parse(role)
    password_hash = hash_password(password)  # slow: outside the write lock
    now = utc_now()
    with store.transaction() as db:
        if store.scalar("SELECT 1 FROM users WHERE username = ?", [name]):
            raise AccountError(f"staff account {name!r} already exists")
        db.execute(
            "INSERT INTO users (username, role, password_hash, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
            [name, role.name, password_hash, now, now],
        )
    return _require_user(store, name)


def set_password(store: Store, username: str, password: str) -> None:
    """Replace the password and end the user's sessions (API tokens stay: they are separate credentials)."""
    password_hash = hash_password(password)
    with store.transaction() as db:
        user = _require_user(store, username)
        db.execute("UPDATE users SET password_hash = ?, updated_at = ? WHERE id = ?", [password_hash, utc_now(), user["id"]])
        db.execute("DELETE FROM sessions WHERE user_id = ?", [user["id"]])


def set_role(store: Store, username: str, role: Role | str) -> str:
    """Returns the previous role's name. Refuses to demote the last enabled admin."""
    role = role if isinstance(role, Role) else Role.parse(role)
    with store.transaction() as db:
        user = _require_user(store, username)
        if user["role"] == "admin" and role is not Role.admin and not user["disabled_at"]:
            _keep_an_admin(store, user["id"])
        db.execute("UPDATE users SET role = ?, updated_at = ? WHERE id = ?", [role.name, utc_now(), user["id"]])
    return str(user["role"])


def set_disabled(store: Store, username: str, disabled: bool = True) -> bool:
    """Disable (ending sessions; tokens are refused while disabled) or re-enable; returns whether anything changed."""
    with store.transaction() as db:
        user = _require_user(store, username)
        if bool(user["disabled_at"]) == disabled:
            return False
        if disabled and user["role"] == "admin":
            _keep_an_admin(store, user["id"])
        db.execute("UPDATE users SET disabled_at = ?, updated_at = ? WHERE id = ?",
                   [utc_now() if disabled else None, utc_now(), user["id"]])
        if disabled:
            db.execute("DELETE FROM sessions WHERE user_id = ?", [user["id"]])
    return True


def _keep_an_admin(store: Store, leaving_id: int) -> None:
    others = store.scalar("SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled_at IS NULL AND id <> ?", [leaving_id])
    if not others:
        raise AccountError("this is the last enabled admin account; make another admin first")


def authenticate(store: Store, username: str, password: str) -> tuple[Staff | None, str]:
    """The user, or None and why not (for the audit log only: the caller tells the person just "wrong")."""
    global _dummy_hash
    row = store.row("SELECT * FROM users WHERE username = ?", [username.strip().lower()]) if username.strip() else None
    if row is None:
        # Spend the same argon2 time as for a real account, so timing does not reveal which names exist.
        if _dummy_hash is None:
            _dummy_hash = _hasher.hash(secrets.token_urlsafe(16))
        _verify(_dummy_hash, password[:MAX_PASSWORD_CHARS])
        return None, "unknown user"
    if len(password) > MAX_PASSWORD_CHARS or not _verify(row["password_hash"], password):
        return None, "wrong password"
    if row["disabled_at"]:
        return None, "account disabled"
    if _hasher.check_needs_rehash(row["password_hash"]):
        with store.transaction() as db:
            db.execute("UPDATE users SET password_hash = ? WHERE id = ?", [_hasher.hash(password), row["id"]])
    return Staff(row["username"], Role[row["role"]], row["id"], "session"), "ok"


def staff_token_fingerprint(token: str) -> str:
    return "staff-token:" + hmac.new(token.encode(), b"hall-central session fingerprint v1", hashlib.sha256).hexdigest()[:16]


def open_session(store: Store, staff: Staff, *, ttl_s: float, remote: str | None = None, staff_token: str | None = None) -> str:
    """A new session id (the cookie's value); only its hash is stored. Expired sessions are swept here."""
    session = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    via = "password" if staff.user_id is not None else staff_token_fingerprint(staff_token or "")
    with store.transaction() as db:
        db.execute("DELETE FROM sessions WHERE expires_at <= ?", [_iso(now)])
        db.execute(
            "INSERT INTO sessions (token_hash, user_id, via, created_at, expires_at, remote) VALUES (?, ?, ?, ?, ?, ?)",
            [_digest(session), staff.user_id, via, _iso(now), _iso(now + timedelta(seconds=ttl_s)), remote],
        )
    return session


def issue_login_link(store: Store, username: str | None = None, *, ttl_s: float = LOGIN_LINK_TTL_S) -> str:
    """A one-time login code for ``username``, or for the staff-token admin when None; only its hash is stored.

    It waits in ``sessions`` as a row whose ``via`` is 'login-link' (never accepted as a session)
    until it is redeemed (deleted) or expires. The URL is ``/login/once/<code>``.
    """
    if not 0 < ttl_s <= MAX_LOGIN_LINK_TTL_S:
        raise AccountError(f"a login link lasts between a second and {MAX_LOGIN_LINK_TTL_S / 3600:g} hours")
    code = secrets.token_urlsafe(24)
    now = datetime.now(UTC)
    with store.transaction() as db:
        user_id = None
        if username is not None:
            user = _require_user(store, username)
            if user["disabled_at"]:
                raise AccountError(f"staff account {user['username']!r} is disabled")
            user_id = user["id"]
        db.execute(
            "INSERT INTO sessions (token_hash, user_id, via, created_at, expires_at, remote) VALUES (?, ?, ?, ?, ?, NULL)",
            [_digest(code), user_id, LOGIN_LINK, _iso(now), _iso(now + timedelta(seconds=ttl_s))],
        )
    return code


def redeem_login_link(store: Store, code: str, *, staff_token: str | None) -> tuple[Staff | None, str]:
    """Use up a login code: who it logs in (None and why not, for the audit log). A code works once."""
    with store.transaction() as db:
        row = store.row(
            "SELECT s.user_id, s.expires_at, u.username, u.role, u.disabled_at FROM sessions s "
            "LEFT JOIN users u ON u.id = s.user_id WHERE s.token_hash = ? AND s.via = ?",
            [_digest(code), LOGIN_LINK],
        )
        if row is None:
            return None, "unknown or already used login link"
        db.execute("DELETE FROM sessions WHERE token_hash = ?", [_digest(code)])
    if row["expires_at"] <= utc_now():
        return None, "expired login link"
    if row["user_id"] is None:
        if staff_token is None:
            return None, "login link for the staff token, which is switched off"
        return Staff(STAFF_TOKEN_ACTOR, Role.admin, None, "session"), "ok"
    if row["disabled_at"]:
        return None, "login link of a disabled account"
    return Staff(row["username"], Role[row["role"]], row["user_id"], "session"), "ok"


def session_staff(store: Store, session: str, *, staff_token: str | None = None) -> Staff | None:
    """Who holds this session id, or None if it is unknown, expired, its user disabled or its staff token changed."""
    row = store.row(
        "SELECT s.user_id, s.via, s.expires_at, u.username, u.role, u.disabled_at FROM sessions s "
        "LEFT JOIN users u ON u.id = s.user_id WHERE s.token_hash = ? AND s.via <> ?",
        [_digest(session), LOGIN_LINK],
    )
    if row is None or row["expires_at"] <= utc_now():
        return None
    if row["user_id"] is None:
        if staff_token is None or not hmac.compare_digest(row["via"], staff_token_fingerprint(staff_token)):
            return None
        return Staff(STAFF_TOKEN_ACTOR, Role.admin, None, "session")
    if row["disabled_at"]:
        return None
    return Staff(row["username"], Role[row["role"]], row["user_id"], "session")


def close_session(store: Store, session: str) -> bool:
    with store.transaction() as db:
        return db.execute("DELETE FROM sessions WHERE token_hash = ?", [_digest(session)]).rowcount == 1


def issue_token(store: Store, username: str, name: str) -> tuple[int, str]:
    """A new API token for the user: (its id, the token). The token is shown once and stored only as a hash."""
    label = name.strip()
    if not label or len(label) > 64:
        raise AccountError("give the token a name of 1–64 characters (what machine or script uses it)")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with store.transaction() as db:
        user = _require_user(store, username)
        if user["disabled_at"]:
            raise AccountError(f"staff account {user['username']!r} is disabled")
        cur = db.execute(
            "INSERT INTO api_tokens (user_id, name, token_hash, created_at) VALUES (?, ?, ?, ?)",
            [user["id"], label, _digest(token), utc_now()],
        )
    return int(cur.lastrowid), token


def token_staff(store: Store, token: str) -> Staff | None:
    if not token.startswith(TOKEN_PREFIX):
        return None
    row = store.row(
        "SELECT t.id, t.user_id, t.last_used_at, u.username, u.role FROM api_tokens t JOIN users u ON u.id = t.user_id "
        "WHERE t.token_hash = ? AND t.revoked_at IS NULL AND u.disabled_at IS NULL",
        [_digest(token)],
    )
    if row is None:
        return None
    now = datetime.now(UTC)
    if row["last_used_at"] is None or row["last_used_at"] < _iso(now - timedelta(seconds=TOKEN_TOUCH_S)):
        with store.transaction() as db:
            db.execute("UPDATE api_tokens SET last_used_at = ? WHERE id = ?", [_iso(now), row["id"]])
    return Staff(row["username"], Role[row["role"]], row["user_id"], "api-token")


def list_tokens(store: Store, username: str) -> list[dict[str, Any]]:
    user = _require_user(store, username)
    return store.rows("SELECT id, name, created_at, last_used_at, revoked_at FROM api_tokens WHERE user_id = ? ORDER BY id", [user["id"]])


def revoke_token(store: Store, username: str, token_id: int) -> None:
    with store.transaction() as db:
        user = _require_user(store, username)
        if db.execute("UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND user_id = ? AND revoked_at IS NULL",
                      [utc_now(), token_id, user["id"]]).rowcount != 1:
            raise UnknownUser(f"{user['username']!r} has no active token {token_id}")
