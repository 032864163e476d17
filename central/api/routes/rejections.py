"""Rejected messages, and the alarms among them (forks in a device's chain, records that do not count as
attendance, internal errors): technicians read them.

A rejected payload may hold a member's record, so viewers see only the alarm count (/api/me).
The table is bounded (central/rejection_log.py); the summary says how much was dropped.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from ... import rejection_log
from ..deps import StoreDep, Technician

router = APIRouter(prefix="/api", tags=["rejections"])


@router.get("/rejections")
def rejections(store: StoreDep, _: Technician, limit: int = Query(100, ge=1, le=1000), device: str | None = None) -> list[dict[str, Any]]:
    return rejection_log.recent(store, limit=limit, device=device)


@router.get("/rejections/summary")
def rejections_summary(store: StoreDep, _: Technician) -> dict[str, Any]:
    """How many rejections and alarms are kept, how many the limits dropped, and the limits."""
    return rejection_log.summary(store)


@router.get("/alarms")
def alarms(store: StoreDep, _: Technician, limit: int = Query(100, ge=1, le=1000)) -> list[dict[str, Any]]:
    return rejection_log.recent(store, limit=limit, alarms_only=True)
