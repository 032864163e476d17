"""Rejected messages, and the alarms among them (forks in a device's chain)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from ..deps import StaffOnly, StoreDep

router = APIRouter(prefix="/api", tags=["rejections"], dependencies=[StaffOnly])


@router.get("/rejections")
def rejections(store: StoreDep, limit: int = Query(100, ge=1, le=1000), device: str | None = None) -> list[dict[str, Any]]:
    where, params = ("WHERE device = ?", [device]) if device else ("", [])
    return store.rows(f"SELECT * FROM rejections {where} ORDER BY id DESC LIMIT ?", [*params, limit])


@router.get("/alarms")
def alarms(store: StoreDep, limit: int = Query(100, ge=1, le=1000)) -> list[dict[str, Any]]:
    return store.rows("SELECT * FROM rejections WHERE alarm = 1 ORDER BY id DESC LIMIT ?", [limit])
