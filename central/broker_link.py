"""Central's own view of its link to the MQTT broker: connected, unresponsive, or disconnected — and since when.

A TCP connection to a frozen broker (SIGSTOP, a hung host, a silent network
path) stays "connected" in paho until the keepalive runs out, and everything
central shows about kiosks comes through that broker. So the collector
publishes a QoS 1 heartbeat on a topic of its own every ``broker_heartbeat_s``;
the broker's PUBACK — or that of any other message central published — is the
proof it is still processing central's session. A heartbeat unanswered for
``broker_silence_s`` marks the link unresponsive; a disconnect marks it
disconnected. Either way device states are unknown to central, and the API and
page say so. Thread-safe: paho's thread reports, the worker and the API read.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

CONNECTED, UNRESPONSIVE, DISCONNECTED, CONNECTING = "connected", "unresponsive", "disconnected", "connecting"


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class BrokerLink:
    def __init__(self, heartbeat_s: float, silence_s: float):
        self.heartbeat_s, self.silence_s = heartbeat_s, silence_s
        self._lock = threading.Lock()
        self._connected = False
        self._since = time.time()  # wall time of the last change between connected and not
        self._ever = False
        self._detail: str | None = None
        self._sent: float | None = None  # monotonic time of the last heartbeat
        self._sent_wall: float | None = None
        self._replied = 0.0  # monotonic time of the broker's last answer

    # paho's thread -------------------------------------------------------------------

    def connected(self) -> None:
        with self._lock:
            self._connected, self._ever, self._detail = True, True, None
            self._since, self._replied, self._sent = time.time(), time.monotonic(), None

    def disconnected(self, detail: str) -> None:
        with self._lock:
            if self._connected or self._detail is None:
                self._since = time.time()
            self._connected, self._detail = False, detail

    def answered(self) -> None:
        with self._lock:
            self._replied = time.monotonic()

    # worker thread -------------------------------------------------------------------

    def heartbeat_due(self) -> bool:
        """Time to send a heartbeat: connected, and the last one was answered at least ``heartbeat_s`` ago."""
        with self._lock:
            if not self._connected:
                return False
            return self._sent is None or (self._replied >= self._sent and time.monotonic() - self._sent >= self.heartbeat_s)

    def heartbeat_sent(self) -> None:
        with self._lock:
            self._sent, self._sent_wall = time.monotonic(), time.time()

    # anyone --------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """{"state", "since", "detail", "ok"}: ``ok`` is False whenever central cannot know what kiosks do."""
        with self._lock:
            if not self._connected:
                state = DISCONNECTED if self._ever else CONNECTING
                return {"state": state, "since": _iso(self._since), "ok": False,
                        "detail": self._detail or "not connected to the broker yet"}
            waiting = self._sent is not None and self._replied < self._sent
            silent_for = time.monotonic() - self._sent if waiting else 0.0  # type: ignore[operator]
            if waiting and silent_for > self.silence_s:
                return {"state": UNRESPONSIVE, "since": _iso(self._sent_wall), "ok": False,  # type: ignore[arg-type]
                        "detail": f"the broker has not answered for {silent_for:.0f} s"}
            return {"state": CONNECTED, "since": _iso(self._since), "ok": True, "detail": None}
