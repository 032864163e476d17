"""Kiosks: last status and chain head (viewers); registration and revocation (technicians, audited)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from pydantic import BaseModel, Field

from ... import attempts, audit, device_queries, device_state, registry
from ...errors import NotFound, RegistryError
from ..deps import SQLITE_MAX_INT, StoreDep, Technician, Viewer, remote_of

router = APIRouter(prefix="/api/devices", tags=["devices"])
halls_router = APIRouter(prefix="/api/halls", tags=["devices"])
# What a kiosk's status says about its health (edge_agent/health_probe.py), served as reported.
HEALTH_FIELDS = ("memory_used_bytes", "memory_total_bytes", "throttled", "throttled_words", "boot_count", "last_reboot",
                 "ip", "camera_fps", "readers", "software", "attempts_queued", "attempts_dropped", "disk_free_bytes",
                 "temperature_c", "uptime_s")
Days = Query(7, ge=1, le=attempts.MAX_DAYS, description="this many of the halls' local days, today included")


@router.get("")
def list_devices(store: StoreDep, _: Viewer, request: Request) -> list[dict[str, Any]]:
    """``state``/``online`` say what central can vouch for: ``unknown`` while it has lost the broker or the status is stale."""
    collector = request.app.state.collector
    broker = collector.link.state() if collector is not None else None
    stale_s = collector.settings.device_stale_s if collector is not None else device_state.DEFAULT_STALE_S
    out = []
    for r in device_queries.devices_with_status(store):
        raw = r.pop("status")
        status = json.loads(raw) if raw else {}
        out.append({
            **r,
            **device_state.shown(r, broker, stale_s),
            "queue_depth": status.get("queue_depth"),
            "oldest_unsent_age_s": status.get("oldest_unsent_age_s"),
            "version": status.get("version"),
            "bundle_version": status.get("bundle_version"),
            "faults": status.get("faults", []),
            "stream": status.get("stream"),
            "clock_synced": status.get("clock_synced"),
            "health": {k: status.get(k) for k in HEALTH_FIELDS},
        })
    return out


@router.get("/{device}/outcomes")
def device_outcomes(device: str, store: StoreDep, _: Viewer, days: int = Days) -> dict[str, Any]:
    """Check-in outcomes of one kiosk per day: refused attempts by outcome, and accepted check-ins from its records."""
    return {"device": device, **attempts.outcome_mix(store, days=days, device=device)}


@router.get("/{device}/attempts")
def device_attempts(device: str, store: StoreDep, _: Viewer, limit: int = Query(50, ge=1, le=500)) -> list[dict[str, Any]]:
    """A kiosk's latest refused attempts, newest first (member ids, never names or cards)."""
    return attempts.recent(store, device, limit=limit)


@halls_router.get("/{hall}/outcomes")
def hall_outcomes(hall: str, store: StoreDep, _: Viewer, days: int = Days) -> dict[str, Any]:
    """The outcome mix of every kiosk of a hall together, per day."""
    return {"hall": hall, **attempts.outcome_mix(store, days=days, hall=hall)}


@router.get("/{device}/records")
def device_records(
    device: str,
    store: StoreDep,
    _: Viewer,
    flagged: bool = Query(False, description="only records whose time central doubts (clock_flag set)"),
    limit: int = Query(100, ge=1, le=1000),
    before_seq: int | None = Query(None, ge=1, le=SQLITE_MAX_INT, description="page backwards: records with a lower seq"),
) -> list[dict[str, Any]]:
    """A device's stored records, newest first, with where central placed each in time and why it doubts it.

    An unknown device has no records: the list is empty.
    """
    return device_queries.device_records(store, device, flagged=flagged, limit=limit, before_seq=before_seq)


class NewDevice(BaseModel):
    public_key: str = Field(max_length=200, description="the kiosk's public key, as its provisioning printed it")
    hall: str = Field(max_length=64, description="hall the kiosk stands in (created if new)")


@router.post("", status_code=status.HTTP_201_CREATED)
def register_device(body: NewDevice, store: StoreDep, staff: Technician, request: Request) -> dict[str, str]:
    """Register a kiosk by its public key; returns the device id derived from it."""
    try:
        with store.transaction():
            device_id = registry.add_device(store, body.public_key, body.hall)
            audit.record(store, staff.name, "device.register", {"device": device_id, "hall": body.hall}, remote_of(request))
    except RegistryError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    return {"id": device_id, "hall": body.hall}


@router.post("/{device}/revoke")
def revoke_device(device: str, store: StoreDep, staff: Technician, request: Request) -> dict[str, Any]:
    """Revoke a kiosk: its records are refused from now on and its bundle is withdrawn."""
    try:
        with store.transaction():
            registry.revoke_device(store, device)
            audit.record(store, staff.name, "device.revoke", {"device": device}, remote_of(request))
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    return {"id": device, "revoked_at": registry.get_device(store, device)["revoked_at"]}
