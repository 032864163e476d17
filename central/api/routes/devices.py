"""Kiosks: registration, last status, chain head."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Query

from ..deps import StaffOnly, StoreDep

router = APIRouter(prefix="/api/devices", tags=["devices"], dependencies=[StaffOnly])


@router.get("")
def list_devices(store: StoreDep) -> list[dict[str, Any]]:
    out = []
    for r in store.rows(
        "SELECT d.id, d.hall, d.registered_at, d.revoked_at, s.state, s.status, s.last_seen, "
        "COALESCE(c.seq, 0) AS acked_seq, (SELECT COUNT(*) FROM pending p WHERE p.device = d.id) AS held, "
        "(SELECT COUNT(*) FROM rejections j WHERE j.device = d.id AND j.alarm = 1) AS alarms, "
        "(SELECT COUNT(*) FROM records r WHERE r.device = d.id AND r.clock_flag IS NOT NULL) AS clock_flags "
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


@router.get("/{device}/records")
def device_records(
    device: str,
    store: StoreDep,
    flagged: bool = Query(False, description="only records whose time central doubts (clock_flag set)"),
    limit: int = Query(100, ge=1, le=1000),
    before_seq: int | None = Query(None, ge=1, description="page backwards: records with a lower seq"),
) -> list[dict[str, Any]]:
    """A device's stored records, newest first, with where central placed each in time and why it doubts it.

    An unknown device has no records: the list is empty.
    """
    where, params = ["device = ?"], [device]
    if flagged:
        where.append("clock_flag IS NOT NULL")
    if before_seq is not None:
        where.append("seq < ?")
        params.append(before_seq)
    return store.rows(
        "SELECT seq, meeting, member, received_at, device_wall AS device_time, synced, boot_id, monotonic, "
        f"placed_at, placed_by, clock_flag FROM records WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?",
        [*params, limit],
    )
