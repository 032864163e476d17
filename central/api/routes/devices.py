"""Kiosks: registration, last status, chain head."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter

from ..deps import StaffOnly, StoreDep

router = APIRouter(prefix="/api/devices", tags=["devices"], dependencies=[StaffOnly])


@router.get("")
def list_devices(store: StoreDep) -> list[dict[str, Any]]:
    out = []
    for r in store.rows(
        "SELECT d.id, d.hall, d.registered_at, d.revoked_at, s.state, s.status, s.last_seen, "
        "COALESCE(c.seq, 0) AS acked_seq, (SELECT COUNT(*) FROM pending p WHERE p.device = d.id) AS held, "
        "(SELECT COUNT(*) FROM rejections j WHERE j.device = d.id AND j.alarm = 1) AS alarms "
        "FROM devices d LEFT JOIN device_status s ON s.device = d.id LEFT JOIN chain c ON c.device = d.id "
        "ORDER BY d.hall, d.id"
    ):
        raw = r.pop("status")
        status = json.loads(raw) if raw else {}
        out.append({
            **r,
            "online": r["state"] == "online" and not r["revoked_at"],
            "queue_depth": status.get("queue_depth"),
            "oldest_unsent_age_s": status.get("oldest_unsent_age_s"),
            "version": status.get("version"),
            "bundle_version": status.get("bundle_version"),
            "faults": status.get("faults", []),
            "stream": status.get("stream"),
            "clock_synced": status.get("clock_synced"),
        })
    return out
