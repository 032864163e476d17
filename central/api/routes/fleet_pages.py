"""The fleet pages (overview, device list, device page), their vendored chart library, and the overview's live feed.

Pages carry no data: without a login they show the login form, as "/" does; with one, their scripts read
the staff API with the caller's own role (the buttons a viewer may not use are hidden, and the API refuses
them anyway). ``GET /api/fleet/events`` is the overview's one server-sent-event stream per tab (viewers).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from ... import device_queries, fleet_live
from ..deps import Public, StoreDep, Viewer, current_staff
from . import session
from .fleet import view_of

router = APIRouter(tags=["fleet pages"])
STATIC = Path(__file__).resolve().parent.parent.parent / "static"
PAGES = {name: STATIC / f"{name}.html" for name in ("fleet", "fleet_devices", "fleet_device")}
ASSETS = {"fleet.css": "text/css; charset=utf-8", "fleet.js": "text/javascript; charset=utf-8"}  # what the pages share
HEARTBEAT_S = 15.0  # a comment line this often keeps proxies from closing an idle stream, and finds a gone tab
# The chart library, as fetched from the npm registry (central/static/vendor/uplot/README.md): served only if unchanged.
VENDOR = {
    "uPlot.iife.min.js": ("application/javascript", "19c8d4c6ad88929a79f4ae49d6f7161566dfd0ba3d15cc495e974f787eb78f1f"),
    "uPlot.min.css": ("text/css", "df630c6a8d6f8eeaff264b50f73ce5b114f646ffd9a0bb74f049b0a00135fa04"),
    "LICENSE": ("text/plain", "8f989229699b4fe2f1a0432d0e9edc338a8a911e250e2d1b01ecd770a5f5b1bd"),
}
VENDOR_DIR = STATIC / "vendor" / "uplot"


def _page(request: Request, name: str) -> Response:
    if current_staff(request) is None:
        return session.login_page()
    return HTMLResponse(PAGES[name].read_text(encoding="utf-8"), headers={"Cache-Control": "no-store"})


@router.get("/fleet", response_class=HTMLResponse, dependencies=[Public])
def overview_page(request: Request) -> Response:
    return _page(request, "fleet")


@router.get("/fleet/devices", response_class=HTMLResponse, dependencies=[Public])
def devices_page(request: Request) -> Response:
    return _page(request, "fleet_devices")


@router.get("/fleet/devices/{device}", response_class=HTMLResponse, dependencies=[Public])
def device_page(request: Request, device: str) -> Response:
    return _page(request, "fleet_device")  # the script reads the id from the address


@router.get("/fleet/assets/{name}", dependencies=[Public])
def asset(name: str) -> Response:
    """The fleet pages' shared style and script (code, no data); only the files listed."""
    if name not in ASSETS:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such file")
    return Response((STATIC / name).read_bytes(), media_type=ASSETS[name], headers={"Cache-Control": "no-cache"})


@router.get("/vendor/uplot/{name}", dependencies=[Public])
def vendored(name: str) -> Response:
    """The chart library's files (public code, no data), checked against their pinned sha256."""
    if name not in VENDOR:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such file")
    media_type, digest = VENDOR[name]
    body = (VENDOR_DIR / name).read_bytes()
    if hashlib.sha256(body).hexdigest() != digest:
        raise HTTPException(status.HTTP_500_INTERNAL_SERVER_ERROR, f"vendored {name} does not match its pinned sha256")
    return Response(body, media_type=media_type, headers={"Cache-Control": "public, max-age=86400"})


MAX_NAMES = 100  # ids a page asks about at once (a page of records and attempts is well under)
MAX_ID = 64
MEMBER_IDS = Query([], description="member ids, repeated")
MEETING_IDS = Query([], description="meeting ids, repeated")


@router.get("/api/names")
def names(store: StoreDep, _: Viewer, member: list[str] = MEMBER_IDS, meeting: list[str] = MEETING_IDS) -> dict[str, Any]:
    """Members' names and meetings' titles for the ids a page shows (records and attempts carry ids only).

    ``?member=ID&member=ID&meeting=ID``; at most 100 of each, each at most 64 characters; unknown ids are left out.
    """
    for kind, ids in (("member", member), ("meeting", meeting)):
        if len(ids) > MAX_NAMES or any(not 0 < len(i) <= MAX_ID for i in ids):
            raise HTTPException(status.HTTP_400_BAD_REQUEST,
                                f"at most {MAX_NAMES} {kind} ids of 1-{MAX_ID} characters / tối đa {MAX_NAMES} mã")
    return device_queries.names(store, sorted(set(member)), sorted(set(meeting)))


def feed_of(request: Request) -> fleet_live.Feed:
    """The app's one feed: its thread reads the fleet every 2 s for all tabs together."""
    found = getattr(request.app.state, "fleet_feed", None)
    if found is None:
        holder = SimpleNamespace(app=request.app)  # view_of reads only the app: no request is kept alive
        found = request.app.state.fleet_feed = fleet_live.Feed(request.app.state.store, lambda: view_of(holder))
    return found


def close_feed(app: Any) -> None:
    """Ends the open streams (the service is stopping): the HTTP server waits for open responses to finish."""
    feed = getattr(app.state, "fleet_feed", None)
    if feed is not None:
        feed.close()


def _event(kind: str, data: dict[str, Any]) -> str:
    return f"event: {kind}\nid: {data['seq']}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


@router.get("/api/fleet/events")
async def events(request: Request, _: Viewer) -> Response:
    """Server-sent events: first ``snapshot`` (everything the overview shows), then ``changes`` (only what changed:
    counts, versions, alerts, kiosks' states, meetings in progress), heartbeat comments between.

    A client not asking for ``text/event-stream`` gets the current snapshot once, as JSON.
    """
    if "text/event-stream" not in request.headers.get("accept", ""):
        once = await asyncio.to_thread(fleet_live.snapshot, request.app.state.store, view_of(request))
        return Response(json.dumps(once), media_type="application/json", headers={"Cache-Control": "no-store"})
    feed = feed_of(request)
    try:
        client, first = await asyncio.to_thread(feed.subscribe, asyncio.get_running_loop())
    except fleet_live.TooManyClients as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"{exc}; try again later / quá nhiều kết nối") from None

    async def stream() -> AsyncIterator[str]:
        try:
            yield "retry: 3000\n\n" + _event("snapshot", first)
            while True:
                try:
                    item = await asyncio.wait_for(client.queue.get(), HEARTBEAT_S)
                except TimeoutError:
                    yield ": heartbeat\n\n"
                    continue
                if item is None:
                    return
                yield _event("changes", item)
        finally:
            feed.unsubscribe(client)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
