"""The audit log: which staff member did what, when, and from where.

Anyone changing something a staff member would ask about later ("who revoked
this kiosk?") calls ``record``. Call it inside the transaction that makes the
change, so the change and its entry are committed together or not at all.
"""

from __future__ import annotations

import getpass
import json
import logging
from collections.abc import Mapping
from typing import Any

from .store import Store, utc_now

log = logging.getLogger("central.audit")

MAX_FIELD = 2000  # a caller-supplied value (a username tried at login) must not bloat the log


def _clip(text: str) -> str:
    return text if len(text) <= MAX_FIELD else text[:MAX_FIELD] + "…"


def record(store: Store, actor: str, action: str, detail: str | Mapping[str, Any] = "", remote: str | None = None) -> int:
    """Append one entry; returns its id.

    ``actor`` is a username, ``staff-token`` or ``cli:<os user>``; ``action`` a dotted
    verb such as ``login.failure`` or ``device.revoke``; ``detail`` free text or a
    mapping (stored as JSON); ``remote`` the caller's address when it came over HTTP.
    """
    text = detail if isinstance(detail, str) else json.dumps(dict(detail), ensure_ascii=False, sort_keys=True, default=str)
    with store.transaction() as db:
        cur = db.execute(
            "INSERT INTO audit (at, actor, action, detail, remote) VALUES (?, ?, ?, ?, ?)",
            [utc_now(), _clip(actor), _clip(action), _clip(text), remote],
        )
        entry_id = int(cur.lastrowid)
    log.info("audit %s %s %s%s", actor, action, text, f" from {remote}" if remote else "")
    return entry_id


def entries(
    store: Store, *, limit: int = 100, before_id: int | None = None, actor: str | None = None, action: str | None = None
) -> list[dict[str, Any]]:
    """Newest first; ``action`` matches a whole action or a prefix ending in '.' (``login.``)."""
    where: list[str] = []
    params: list[Any] = []
    if before_id is not None:
        where.append("id < ?")
        params.append(before_id)
    if actor is not None:
        where.append("actor = ?")
        params.append(actor)
    if action is not None:
        if action.endswith("."):
            where.append("substr(action, 1, ?) = ?")
            params += [len(action), action]
        else:
            where.append("action = ?")
            params.append(action)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    return store.rows(f"SELECT * FROM audit {clause} ORDER BY id DESC LIMIT ?", [*params, limit])


def cli_actor() -> str:
    """The actor named for commands run on the central host's shell."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"
