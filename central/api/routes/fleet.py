"""The fleet: the device list with paging, sorting and filters, a kiosk's history and chart samples (viewers),
and /metrics for Prometheus (a viewer's API token, sent as a Bearer header: never anonymous)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response, status

from ... import fleet, metrics, regions
from ...errors import RegistryError
from ..deps import StoreDep, Viewer

router = APIRouter(tags=["fleet"])

State = Literal["online", "offline", "unknown", "never_seen", "revoked"]
Severity = Literal["critical", "warning", "neutral", "ok"]
Sort = Literal[tuple(fleet.SORTS)]  # type: ignore[valid-type]
SORT = Query("severity")
STATES = Query(None, max_length=len(fleet.STATES), description="repeat for several")


def view_of(request: Request) -> fleet.View:
    """The broker link and staleness the collector of this process sees (none: central cannot be vouched for)."""
    collector = request.app.state.collector
    if collector is None:
        return fleet.View()
    return fleet.View(broker=collector.link.state(), stale_s=collector.settings.device_stale_s)


@router.get("/api/fleet/devices")
def devices(
    store: StoreDep, _: Viewer, request: Request,
    page: int = Query(1, ge=1, le=1_000_000),
    size: int = Query(50, ge=1, le=fleet.MAX_PAGE_SIZE),
    sort: Sort = SORT,
    order: Literal["asc", "desc"] = Query("asc"),
    state: list[State] | None = STATES,
    hall: str | None = Query(None, max_length=64),
    version: str | None = Query(None, max_length=64),
    has_fault: bool | None = None,
    meeting_now: bool | None = Query(None, description="the hall has a meeting now or within 30 min"),
    severity: Severity | None = None,
    q: str | None = Query(None, max_length=64, description="part of a hall's id or name, or of a device's id or name"),
    province: str | None = Query(None, max_length=64, description="province or city, as staff write it (bac ninh)"),
    commune: str | None = Query(None, max_length=64, description="commune or ward (in that province if given)"),
) -> dict[str, Any]:
    """One page of kiosks, the number matching, and the whole fleet's counts by state and by version.

    Offline is ``neutral`` in a hall without a meeting and ``critical`` in one with a meeting now or within 30 min.
    """
    try:
        province_code = regions.province(province).code if province else None
        commune_codes = regions.commune_codes(commune, province) if commune else ()
    except RegistryError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    filters = fleet.Filters(states=tuple(dict.fromkeys(state or ())), hall=hall, version=version, has_fault=has_fault,
                            meeting_now=meeting_now, severity=severity, text=(q or "").strip() or None,
                            province_code=province_code, commune_codes=commune_codes)
    return fleet.device_page(store, view_of(request), filters, sort=sort, descending=order == "desc", page=page, size=size)


@router.get("/api/fleet/devices/{device}/history")
def history(device: str, store: StoreDep, _: Viewer, limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
    """The kiosk's state changes (went offline, came back, rebooted), newest first."""
    _known(store, device)
    return {"device": device, "events": fleet.history(store, device, limit=limit)}


@router.get("/api/fleet/devices/{device}/samples")
def samples(device: str, store: StoreDep, _: Viewer, range: Literal["24h", "7d"] = Query("24h")) -> dict[str, Any]:
    """Queue depth, oldest unsent age, temperature, disk free and memory over 24 h or 7 days, at most 300 points."""
    _known(store, device)
    return fleet.samples(store, device, span=range)


@router.get("/metrics")
def prometheus(store: StoreDep, _: Viewer, request: Request) -> Response:
    """Prometheus text, read from the database at scrape time."""
    body, content_type = metrics.exposition(store, view_of(request), request.app.state.collector)
    return Response(body, media_type=content_type)


def _known(store: Any, device: str) -> None:
    if not fleet.exists(store, device):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no device {device} / không có thiết bị này")

