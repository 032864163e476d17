"""The kiosk's touch page: served on loopback only, updated by server-sent events.

Who may call it: only the kiosk's own browser. The app refuses any request whose
peer is not a loopback address, on top of binding to 127.0.0.1, so a
misconfigured bind address does not expose members' names to the hall network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse

from .clock import SystemClock, parse_iso
from .display import Display
from .roster import Roster

STATIC = Path(__file__).parent / "static"
HEARTBEAT_S = 15.0
MAX_PIN_BODY = 256  # {"pin": "12345678"} is 17 bytes
PIN_RE = re.compile(r"^[0-9]{1,8}$")


def _is_loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host in ("testclient", "localhost")


class HallScreen:
    """What the idle screen shows around the prompt: the hall, the meeting on now (or the next one) in the
    hall's local time, and the zone the page's clock runs in."""

    def __init__(self, roster: Roster | None, *, clock: SystemClock | None = None, hall_name: str = "",
                 time_zone: str = "Asia/Ho_Chi_Minh", early_s: int = 1800, verdict_s: float = 8.0):
        self.roster, self.clock = roster, clock or SystemClock()
        self.hall_name, self.time_zone, self.tz = hall_name, time_zone, ZoneInfo(time_zone)
        self.early_s, self.verdict_s = early_s, verdict_s

    def snapshot(self) -> dict[str, Any]:
        bundle = self.roster.bundle if self.roster else None
        now = self.clock.now()
        current = self.roster.meetings_now(now, self.early_s) if self.roster else []
        upcoming = sorted((m for m in (bundle.meetings if bundle else []) if parse_iso(m.starts_at) > now and m not in current),
                          key=lambda m: parse_iso(m.starts_at))
        return {
            "hall": self.hall_name or (bundle.hall if bundle else ""),
            "time_zone": self.time_zone,
            "verdict_s": self.verdict_s,
            "now": self._describe(current[0], now) if current else None,
            "next": self._describe(upcoming[0], now) if upcoming else None,
        }

    def _describe(self, meeting, now: datetime) -> dict[str, str]:
        starts, ends = parse_iso(meeting.starts_at).astimezone(self.tz), parse_iso(meeting.ends_at).astimezone(self.tz)
        today = now.astimezone(self.tz).date()
        day = ("hôm nay / today" if starts.date() == today
               else "ngày mai / tomorrow" if starts.date() == today + timedelta(days=1) else starts.strftime("%d/%m/%Y"))
        return {"title": meeting.title, "starts": starts.strftime("%H:%M"), "ends": ends.strftime("%H:%M"), "day": day}


async def _read_limited(request: Request, limit: int) -> bytes | None:
    """The body, or None once it passes ``limit`` bytes (counted while it arrives, not trusted from a header)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return body


def create_app(display: Display, *, main_room_hls_url: str = "", hall: HallScreen | None = None, checkin: Any = None) -> FastAPI:
    app = FastAPI(title="Hall kiosk page", docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def loopback_only(request: Request, call_next):
        if not _is_loopback(request):
            from fastapi.responses import PlainTextResponse

            return PlainTextResponse("the kiosk page is served to the kiosk only", status_code=403)
        return await call_next(request)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        """Caller: the kiosk's own browser (loopback)."""
        return FileResponse(STATIC / "kiosk.html", media_type="text/html; charset=utf-8")

    @app.get("/main-room", include_in_schema=False)
    async def main_room(request: Request):
        """Caller: the hall display's browser (loopback). The main meeting room, full screen."""
        from fastapi.responses import RedirectResponse

        if "src" not in request.query_params and main_room_hls_url:
            from urllib.parse import urlencode

            return RedirectResponse("/main-room?" + urlencode({"src": main_room_hls_url}))
        return FileResponse(STATIC / "main_room.html", media_type="text/html; charset=utf-8")

    @app.get("/api/state")
    async def state() -> dict:
        """Caller: the kiosk's own browser (loopback). What the screen shows now, and recent verdicts."""
        return {**display.snapshot(), "recent": list(display.recent)}

    @app.get("/api/hall")
    async def hall_screen() -> dict:
        """Caller: the kiosk's own browser (loopback). The hall, its meeting now or next (local times), its time zone."""
        return (hall or HallScreen(None)).snapshot()

    @app.get("/events")
    async def events(request: Request) -> StreamingResponse:
        """Caller: the kiosk's own browser (loopback). Server-sent events, one JSON state per message."""
        queue = display.subscribe()

        async def stream():
            try:
                while True:
                    try:
                        data = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
                        yield f"data: {data}\n\n"
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                    if await request.is_disconnected():
                        break
            finally:
                display.unsubscribe(queue)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    @app.post("/api/override/start", response_model=None)
    async def override_start() -> dict | JSONResponse:
        """Caller: the kiosk's own browser (loopback), the "Secretary confirms" button on a refusal."""
        if checkin is None or not await checkin.override_start():
            return JSONResponse({"error": "nothing to confirm now"}, status_code=409)
        return {"ok": True}

    @app.post("/api/override/cancel")
    async def override_cancel() -> dict:
        """Caller: the kiosk's own browser (loopback), the Cancel button of a pending override."""
        return {"ok": bool(checkin is not None and await checkin.override_cancel())}

    @app.post("/api/override/pin", response_model=None)
    async def override_pin(request: Request) -> dict | JSONResponse:
        """Caller: the kiosk's own browser (loopback), the PIN pad. Body {"pin": "digits"}, at most 256 bytes.
        Answers {"result": "right" | "wrong" (with "left") | "locked" | "not_pending"}; the screen follows by SSE."""
        body = await _read_limited(request, MAX_PIN_BODY)
        if body is None:
            return JSONResponse({"error": f"body over {MAX_PIN_BODY} bytes"}, status_code=413)
        try:
            pin = json.loads(body).get("pin")
        except (ValueError, AttributeError):
            pin = None
        if not isinstance(pin, str) or not PIN_RE.fullmatch(pin):  # fullmatch: "$" would let "1234\n" through
            return JSONResponse({"error": "expected {\"pin\": \"1-8 digits\"}"}, status_code=400)
        if checkin is None:
            return JSONResponse({"result": "not_pending"}, status_code=409)
        answer = await checkin.override_pin(pin)
        return answer if answer["result"] != "not_pending" else JSONResponse(answer, status_code=409)

    @app.get("/healthz", response_model=None)
    async def healthz() -> dict | JSONResponse:
        """Caller: the watchdog and the self-test (loopback). 503 with the reasons while a fault stops
        check-ins (face worker down, no roster, disk or outbox full); refreshed every second."""
        blocking = display.health.get("blocking") or []
        if blocking:
            return JSONResponse({"ok": False, "faults": blocking}, status_code=503)
        return {"ok": True, "faults": display.health.get("faults") or []}

    return app
