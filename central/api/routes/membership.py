"""Who a cell expected at a meeting: its members on the meeting's date (central/membership.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Query

from ... import membership
from ...errors import NotFound, RegistryError
from ..deps import StoreDep, Viewer

router = APIRouter(prefix="/api/cells", tags=["membership"])
HALL_ZONE = ZoneInfo("Asia/Ho_Chi_Minh")  # "today" is the halls' day, not UTC's (7 hours behind)


@router.get("/{cell}/expected")
def expected(cell: str, store: StoreDep, _: Viewer,
             on: str | None = Query(None, max_length=10, description="the date, YYYY-MM-DD; default today")) -> dict[str, Any]:
    on = on or datetime.now(HALL_ZONE).date().isoformat()
    try:
        members = membership.expected_members(store, cell, on)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except RegistryError as exc:
        raise HTTPException(422, str(exc)) from None
    return {"cell": cell, "on": on, "count": len(members), "members": members}
