"""The kiosk's touch page with its real check-in flow, for the screen tests (test_kiosk_screen.py, test_override.py).

The page app and the check-in flow share one event loop in a thread, as in the agent, on a real roster bundle
and outbox; the face verdict is told (tests.edge_agent.test_checkin.ToldVerifier) because these cases are about
the screen, not faces.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn
from nacl.signing import SigningKey

from edge_agent.checkin import CheckinService
from edge_agent.display import Display
from edge_agent.identity import DeviceIdentity
from edge_agent.kiosk_page import HallScreen, create_app
from edge_agent.outbox import Outbox
from edge_agent.roster import Roster
from hardware.events import CardEvent
from tests.conftest import free_port, wait_port
from tests.edge_agent.test_checkin import NOW, FixedClock, ToldVerifier

SIZES = [(800, 480), (1024, 600), (1280, 800)]  # the kiosk screens the page must fit
HCM = "Asia/Ho_Chi_Minh"


class PageKiosk:
    """``bundle(central, device_key)`` makes the roster it holds (kept across a restart on the same ``data``);
    ``desk`` is the override desk, when the test is about overrides (the page then offers them)."""

    def __init__(self, data: Path, central: SigningKey, bundle: Callable[[SigningKey, SigningKey], bytes], *,
                 hall_name: str, verdict_s: float = 30.0, desk: Any = None):
        ident = DeviceIdentity(data)
        self.roster = Roster(data_dir=data, device_key=ident.signing_key, central_key=central.verify_key,
                             storage_box=ident.storage_box)
        if self.roster.bundle is None:
            self.roster.receive(bundle(central, ident.signing_key))
        self.outbox = Outbox(data / "o.sqlite3", signing_key=ident.signing_key)
        self.face = ToldVerifier()
        self.display = Display()
        self.desk = desk
        clock = FixedClock(NOW)
        self.service = CheckinService(roster=self.roster, outbox=self.outbox, face=self.face, display=self.display,
                                      clock=clock, verdict_hold_s=verdict_s, time_zone=HCM, override=desk)
        app = create_app(self.display, hall=HallScreen(self.roster, clock=clock, hall_name=hall_name, time_zone=HCM,
                                                       verdict_s=verdict_s), checkin=self.service if desk else None)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=lambda: asyncio.run(self._serve()), name="kiosk-page", daemon=True)
        self.thread.start()
        wait_port(self.port, timeout=30)

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        flow = asyncio.create_task(self.service.run())
        try:
            await self.server.serve()
        finally:
            flow.cancel()

    def tap(self, uid: str, kind: str = "member_card") -> None:
        self.loop.call_soon_threadsafe(self.service.submit, CardEvent(kind=kind, value=uid, source="test"))

    def on_loop(self, fn, *args) -> None:
        self.loop.call_soon_threadsafe(fn, *args)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        self.outbox.close()


def open_page(chromium, kiosk: PageKiosk, size=(1280, 800)):
    """The touch page at ``size``, idle, with its hall's name shown."""
    page = chromium.new_page(viewport={"width": size[0], "height": size[1]})
    page.goto(kiosk.url)
    page.wait_for_selector("#screen[data-screen='idle']")
    page.wait_for_function("document.getElementById('hall').textContent.length > 0")
    return page


def screen(page, name: str, timeout: float = 15_000) -> dict[str, Any]:
    """Wait for screen ``name``; what it says (Vietnamese, English, the member's name), its colour and symbols."""
    page.wait_for_selector(f"#screen[data-screen='{name}']", timeout=timeout)
    return {
        "vi": page.inner_text("#vi"), "en": page.inner_text("#en"), "name": page.inner_text("#name"),
        "background": page.evaluate("getComputedStyle(document.body).backgroundColor"),
        "symbols": {s: page.is_visible(f"#sym-{s}") for s in ("ok", "bad", "wait")},
    }
