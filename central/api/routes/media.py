"""nginx-rtmp's publish callback: may this publisher push to the media server?

Called by central's own nginx (``on_publish`` in central/media.py), never by
staff or browsers: it answers loopback callers only. nginx POSTs the RTMP
connect/publish fields form-encoded (``call=publish&app=hall&name=...&addr=...``).
2xx lets the push in and 3xx lets it in renamed to the Location header (we answer
302 → ``<device_id>``, so the key never appears in HLS URLs or file names);
anything else makes nginx drop the publisher.
Every refusal is logged and kept in the rejections table (topic
``media/on_publish``) with its reason, the presented key redacted.

``on_record_done`` (nginx, when a recording file is closed) applies the
recordings' retention at once; ``GET /api/media`` shows staff what is kept.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import re
import time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import Response

from ... import registry
from ...ingest import reject
from ...media import HALL_HLS_APP, HLS_APP, KEY_SEP, MAIN_HALL, RELAY_PARAM, check_stream_key, relay_key
from ..deps import MachineCallback, StoreDep, Viewer

log = logging.getLogger(__name__)

TOPIC = "media/on_publish"
APPS = ("hall", "main", HLS_APP, HALL_HLS_APP)
RELAYED = {HLS_APP: "main", HALL_HLS_APP: "hall"}  # internal HLS application -> the one whose relay feeds it
MAX_BODY = 4096
REPEAT_WINDOW_S = 60.0


def loopback_only(request: Request) -> None:
    host = request.client.host if request.client else ""
    try:
        ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    # Through a reverse proxy on this host every caller looks local; a proxied call is not nginx-rtmp's.
    if any(h in request.headers for h in ("x-forwarded-for", "forwarded", "x-real-ip")):
        ok = False
    if not ok:
        log.warning("media callback from non-loopback %s refused", host)
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="media callbacks are for the local media server only")


def media_secret_of(request: Request) -> bytes | None:
    return getattr(request.app.state, "media_secret", None)


LoopbackOnly = Depends(loopback_only)
MediaSecret = Annotated[bytes | None, Depends(media_secret_of)]

callbacks = APIRouter(prefix="/media", tags=["media"], dependencies=[MachineCallback, LoopbackOnly])
staff = APIRouter(tags=["media"])


def _throttle(request: Request, what: tuple[object, ...]) -> int | None:
    """None if an identical refusal was kept within the window, else how many were skipped since.

    A refused kiosk's ffmpeg retries every couple of seconds; keeping each attempt
    would bury other rejections, so one row a minute says it all (and counts the rest).
    """
    seen: dict[tuple[object, ...], list[float]] | None = getattr(request.app.state, "media_refusals", None)
    if seen is None:
        seen = request.app.state.media_refusals = {}
    now = time.monotonic()
    entry = seen.get(what)
    if entry is not None and now - entry[0] < REPEAT_WINDOW_S:
        entry[1] += 1
        return None
    skipped = int(entry[1]) if entry else 0
    seen[what] = [now, 0]
    if len(seen) > 10_000:  # bounded: forget the oldest
        for key in sorted(seen, key=lambda k: seen[k][0])[:5_000]:
            del seen[key]
    return skipped


def _redacted(fields: dict[str, str]) -> bytes:
    shown = dict(fields)
    name = shown.get("name", "")
    if KEY_SEP in name:
        shown["name"] = name.partition(KEY_SEP)[0] + KEY_SEP + "***"
    if "?" in shown.get("tcurl", ""):
        shown["tcurl"] = shown["tcurl"].partition("?")[0] + "?***"
    return urlencode(shown).encode()


@callbacks.post("/on_publish", status_code=status.HTTP_302_FOUND)
async def on_publish(request: Request, store: StoreDep, secret: MediaSecret) -> Response:
    """Called by nginx-rtmp (not staff) when a device starts pushing: 302 allows (renamed to the device id), 403 refuses."""
    body = (await request.body())[:MAX_BODY]
    fields = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}
    name, app = fields.get("name", ""), fields.get("app", "")
    claimed = name.partition(KEY_SEP)[0] or None
    reason: str | None = None
    device_id: str | None = None
    if secret is None:
        reason = "central has no media secret configured"
    elif app not in APPS:
        reason = f"unknown application {app!r}"
    elif app in RELAYED:
        presented = parse_qs(urlsplit(fields.get("tcurl", "")).query).get(RELAY_PARAM, [""])[0]
        if not hmac.compare_digest(presented.encode(), relay_key(secret).encode()):
            reason = f"{app} takes only central's relay from {RELAYED[app]} (no relay key)"
    elif (device_id := check_stream_key(secret, name)) is None:
        reason = "wrong stream key" if claimed else "no stream key"
    else:
        row = registry.get_device(store, device_id)
        main_hall = getattr(getattr(request.app.state, "media_server", None), "main_hall", MAIN_HALL)
        if row is None:
            reason = "device not registered"
        elif row.get("revoked_at"):
            reason = f"device revoked on {row['revoked_at']}"
        elif app == "main" and row.get("hall") != main_hall:
            reason = f"only the main room (hall {main_hall}) may publish into main, not a device of hall {row.get('hall')}"
    if reason is not None:
        text = f"publish to {app or '?'} from {fields.get('addr', '?')} refused: {reason}"
        repeats = _throttle(request, (claimed, app, fields.get("addr"), reason))
        if repeats is None:
            log.warning("media: %s (again; kept once a minute)", text)
        else:
            if repeats:
                text += f" (and {repeats} identical attempts in the last {REPEAT_WINDOW_S:g}s not kept)"
            with store.transaction():
                reject(store, TOPIC, claimed, text, _redacted(fields))
        return Response(status_code=status.HTTP_403_FORBIDDEN, content=reason, media_type="text/plain")
    if app in RELAYED:
        return Response(status_code=status.HTTP_200_OK)  # the relay: already renamed to the device id
    log.info("media: device %s publishing to %s from %s", device_id, app, fields.get("addr", "?"))
    # A 3xx from on_publish makes nginx-rtmp rename the stream to Location: the HLS
    # playlist and the recordings are then named by device id, without the key.
    return Response(status_code=status.HTTP_302_FOUND, headers={"Location": device_id})


@callbacks.post("/on_record_done")
async def on_record_done(request: Request) -> Response:
    """Called by nginx-rtmp (not staff) when a recording file is closed: apply the retention now."""
    server = getattr(request.app.state, "media_server", None)
    if server is not None:
        deleted = await asyncio.to_thread(server.retention.enforce)
        if deleted:
            log.info("media: recording finished; retention deleted %d older recordings", deleted)
    return Response(status_code=status.HTTP_200_OK)


@staff.get("/api/media")
def media_status(request: Request, _: Viewer) -> dict[str, Any]:
    """The media server's addresses and the recordings kept: bytes used, quota, max age, what was deleted."""
    server = getattr(request.app.state, "media_server", None)
    if server is None:
        return {"enabled": False}
    main = sorted(p.stem for p in server.hls_dir.glob("*.m3u8") if MAIN_PLAYLIST.fullmatch(p.name))
    return {"enabled": True, "running": server.running, "urls": server.urls, "recordings": server.retention.status(),
            "main_streams": [f"/api/media/main/{name}.m3u8" for name in main]}


# Staff watch the halls (and the main room) through central, not nginx: the session and roles are checked
# here like any staff API, on the page's own origin, and nginx keeps no public door to a meeting's pictures.
# Only what nginx-rtmp writes is served: a playlist and its numbered segments, by strict name.
DEVICE_ID = re.compile(r"d[0-9a-f]{32}")
HALL_FILE = re.compile(r"index\.m3u8|[0-9]{1,12}\.ts")  # hls_nested: <hls_hall>/<device>/index.m3u8, <n>.ts
MAIN_PLAYLIST = re.compile(r"d[0-9a-f]{32}\.m3u8")
MAIN_FILE = re.compile(r"d[0-9a-f]{32}(?:\.m3u8|-[0-9]{1,12}\.ts)")  # <hls>/<device>.m3u8, <device>-<n>.ts
MAX_HLS_FILE = 64 * 1024 * 1024  # a 2 s segment is well under 1 MB; anything this big is not ours


def _hls(request: Request, where: str, *parts: str) -> Response:
    server = getattr(request.app.state, "media_server", None)
    if server is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no media server / không có máy chủ truyền hình")
    base: Path = getattr(server, where).resolve()
    path = base.joinpath(*parts).resolve()
    if not path.is_relative_to(base):  # the patterns already forbid it; a link placed in the dir must not lead out
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such stream file")
    try:
        with path.open("rb") as f:  # nginx deletes old segments as it goes: read at once, not stat then stream
            body = f.read(MAX_HLS_FILE + 1)
    except (FileNotFoundError, NotADirectoryError):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not streaming now / không có truyền hình lúc này") from None
    if len(body) > MAX_HLS_FILE:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such stream file")
    playlist = path.suffix == ".m3u8"
    return Response(body, media_type="application/vnd.apple.mpegurl" if playlist else "video/mp2t",
                    headers={"Cache-Control": "no-store" if playlist else "private, max-age=60"})


@staff.get("/api/media/hls/{device}/{file}")
def hall_hls(request: Request, device: str, file: str, _: Viewer) -> Response:
    """A hall kiosk's live stream as HLS (``index.m3u8`` and its segments), for logged-in staff."""
    if not DEVICE_ID.fullmatch(device) or not HALL_FILE.fullmatch(file):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such stream file")
    return _hls(request, "hall_hls_dir", device, file)


@staff.get("/api/media/main/{file}")
def main_hls(request: Request, file: str, _: Viewer) -> Response:
    """The main room's live stream as HLS (``<device>.m3u8`` and its segments), for logged-in staff."""
    if not MAIN_FILE.fullmatch(file):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such stream file")
    return _hls(request, "hls_dir", file)


# What the media deployment includes: nginx's callbacks (loopback only) and the staff status.
router = APIRouter()
router.include_router(callbacks)
router.include_router(staff)
