"""Rejected messages, and the alarms among them (forks in a device's chain): technicians read them.

A rejected payload may hold a member's record, so viewers see only the alarm count (/api/me).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from ..deps import StoreDep, Technician

router = APIRouter(prefix="/api", tags=["rejections"])


@router.get("/rejections")
def rejections(store: StoreDep, _: Technician, limit: int = Query(100, ge=1, le=1000), device: str | None = None) -> list[dict[str, Any]]:
    where, params = ("WHERE device = ?", [device]) if device else ("", [])
    return store.rows(f"SELECT * FROM rejections {where} ORDER BY id DESC LIMIT ?", [*params, limit])


@router.get("/alarms")
def alarms(store: StoreDep, _: Technician, limit: int = Query(100, ge=1, le=1000)) -> list[dict[str, Any]]:
    return store.rows("SELECT * FROM rejections WHERE alarm = 1 ORDER BY id DESC LIMIT ?", [limit])
