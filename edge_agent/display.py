"""The kiosk screen's state, pushed to the page over server-sent events."""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from typing import Any

from .catalog import say


class Display:
    """Holds what the screen shows now and fans it out to every open page."""

    def __init__(self, history: int = 20):
        self._subscribers: set[asyncio.Queue[str]] = set()
        self.state: dict[str, Any] = {}
        self.recent: deque[dict[str, Any]] = deque(maxlen=history)
        self.health: dict[str, Any] = {}
        self.face_seen: bool | None = None  # None: the face worker does not say
        self.face_state: str | None = None  # None (working), "restarting" or "down": from the worker's fault
        self.show("idle")

    def show(self, screen: str, *, tone: str = "neutral", name: str | None = None, detail: str | None = None,
             override: str | None = None, **fields: str) -> None:
        """Call on the event loop. ``override``: the secretary override's step the page offers
        (None, "offer": its button, "officer": waiting for a card, "pin": the PIN pad)."""
        # Idle without a face in view asks the member to look at the camera first: the decision is
        # taken on a face that was looking.
        text_key = screen
        if screen == "idle" and self.face_state in ("restarting", "down"):
            # Tell members before they tap, in words, that face checking is not available now.
            text_key = "idle_face_" + self.face_state
        elif screen == "idle" and self.face_seen is False:
            text_key = "idle_look"
        self.state = {
            "screen": screen,
            "tone": tone,  # neutral | busy | ok | bad | ask (the override waiting for its officer)
            "text": say(text_key, **fields),
            "name": name,
            "detail": detail,
            "override": override,
            "face_seen": self.face_seen,
            "at": time.time(),
        }
        if screen not in ("idle", "verifying") and tone != "ask":
            self.recent.appendleft(self.state)
        self._broadcast()

    def set_face_seen(self, seen: bool) -> None:
        """Whether the camera sees a usable face; call on the event loop (the face worker's thread
        hands it over with loop.call_soon_threadsafe). Changes the idle prompt only."""
        if seen == self.face_seen:
            return
        self.face_seen = seen
        if self.state.get("screen") == "idle":
            self.show("idle")

    def set_face_state(self, state: str | None) -> None:
        """None while the face worker works, else "restarting" or "down"; call on the event loop.
        Changes the idle prompt only."""
        if state == self.face_state:
            return
        self.face_state = state
        if self.state.get("screen") == "idle":
            self.show("idle")

    def set_health(self, **health: Any) -> None:
        if health != self.health:
            self.health = health
            self._broadcast()

    def snapshot(self) -> dict[str, Any]:
        return {**self.state, "health": self.health}

    def _broadcast(self) -> None:
        data = json.dumps(self.snapshot(), ensure_ascii=False)
        for q in list(self._subscribers):
            try:
                q.put_nowait(data)
            except asyncio.QueueFull:
                pass  # a stalled page misses intermediate states, never blocks the kiosk

    def subscribe(self) -> asyncio.Queue[str]:
        q: asyncio.Queue[str] = asyncio.Queue(maxsize=32)
        q.put_nowait(json.dumps(self.snapshot(), ensure_ascii=False))
        self._subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[str]) -> None:
        self._subscribers.discard(q)
