"""Liveness (public, no data) and the collector's counters (staff)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from ..deps import Public, StaffOnly

router = APIRouter(tags=["system"])


@router.get("/healthz", dependencies=[Public])
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/api/collector", dependencies=[StaffOnly])
def collector(request: Request) -> dict[str, Any]:
    c = request.app.state.collector
    return c.stats() if c is not None else {"connected": False, "running": False}
