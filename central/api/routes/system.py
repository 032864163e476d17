"""Liveness (public, no data), the collector's counters and who the caller is (staff)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from ... import device_queries
from ..deps import Public, StoreDep, Viewer

router = APIRouter(tags=["system"])


@router.get("/healthz", dependencies=[Public])
async def healthz() -> dict[str, str]:
    # On the event loop itself, not a worker thread: it answers only while the loop is free.
    return {"status": "ok"}


@router.get("/api/collector")
def collector(request: Request, _: Viewer) -> dict[str, Any]:
    c = request.app.state.collector
    return c.stats() if c is not None else {"connected": False, "running": False}


@router.get("/api/me")
def me(staff: Viewer, store: StoreDep) -> dict[str, Any]:
    """Who is logged in, and what the page may show them (alarm count for everyone, details for technicians)."""
    return {
        "name": staff.name,
        "role": staff.role.name,
        "via": staff.via,
        "alarms": device_queries.open_alarms(store),
    }
