"""What changed in the fleet since the last look: the live feed behind the fleet overview.

One thread per app (``Feed``) takes a snapshot of what the overview shows every ``every_s`` seconds: counts
by state and version, open alerts, each kiosk's state, the meetings in progress with their halls' kiosks.
It compares it with the one before and hands only the differences to every connected browser tab. So
the database is read once per period whatever the number of tabs, and a tab receives a few hundred bytes
when a kiosk goes offline, not the whole fleet again.

Each tab has a bounded queue. A tab that does not keep up (its queue full) is dropped: its connection
ends, the browser's EventSource reconnects and starts again from a fresh snapshot, which is cheaper and
more honest than holding an ever-growing backlog. The thread stops once no tab has listened for a while
and starts again with the next one.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import fleet
from .alerts import queries as alert_queries
from .store import Store

log = logging.getLogger("central.fleet_live")

EVERY_S = 2.0
QUEUE_PER_CLIENT = 32  # changes waiting for one tab; past this the tab is dropped and reconnects
MAX_CLIENTS = 200  # tabs at once: each holds a connection and a queue
IDLE_STOP_S = 30.0  # the thread stops after this long without any tab
MAX_ALERTS = 100  # open alerts in the overview (newest first)
MAX_MEETINGS = 200  # meetings in progress shown at once


# ---------------------------------------------------------------- the snapshot (its SQL lives here)

# Each kiosk's state and severity, as the device list computes them (central/fleet.py's SQL, one statement).
_DEVICES = f"{fleet.RATED} SELECT * FROM rated"  # every column, so a kiosk's name shows once the registry has one
_MEETINGS = ("SELECT m.id, m.title, m.hall, IFNULL(h.name, m.hall) AS hall_name, m.cell, m.starts_at, m.ends_at, "
             "(SELECT COUNT(*) FROM attendance a WHERE a.meeting = m.id) AS present, "
             "(SELECT COUNT(*) FROM members x WHERE x.cell = m.cell) AS expected "
             "FROM meetings m LEFT JOIN halls h ON h.id = m.hall WHERE m.starts_at <= :now AND m.ends_at > :now "
             "ORDER BY m.starts_at, m.id LIMIT :limit")


def _streams(store: Store, devices: list[str]) -> dict[str, dict[str, Any]]:
    """Stream state and faults from the kiosks' last reports (kept while online; the will carries none)."""
    return {d: {"stream": (r.get("stream") or {}).get("state"), "faults": r.get("faults") or []}
            for d, r in fleet.reports(store, devices).items()}


def snapshot(store: Store, view: fleet.View) -> dict[str, Any]:
    """Everything the overview shows, keyed so that two snapshots can be compared part by part."""
    params = view.params()
    with store.lock:  # one consistent read: counts, kiosks and meetings from the same moment
        totals = fleet.totals(store, view)
        devices = {r["id"]: r for r in store.rows(_DEVICES, params)}
        alerts = alert_queries.listed(store, "active", MAX_ALERTS, None)
        meetings = store.rows(_MEETINGS, {"now": params["now"], "limit": MAX_MEETINGS})
        halls = {m["hall"] for m in meetings}
        kiosks = [d for d in devices.values() if d["hall"] in halls and d["state"] != "revoked"]
        reports = _streams(store, [k["id"] for k in kiosks])
    alerts_by_hall: dict[str, list[str]] = {}
    for a in alerts:
        if a.get("hall"):
            alerts_by_hall.setdefault(a["hall"], []).append(a["summary"])
    rows = {}
    for m in meetings:
        here = sorted((k for k in kiosks if k["hall"] == m["hall"]), key=lambda k: k["id"])
        shown = [{"id": k["id"], "name": _name(k), "state": k["state"], "severity": k["severity"],
                  "stream": reports.get(k["id"], {}).get("stream") if k["state"] == "online" else None,
                  "faults": reports.get(k["id"], {}).get("faults", []) if k["state"] == "online" else []} for k in here]
        rows[m["id"]] = {**m, "kiosks": shown, "problems": _problems(shown, alerts_by_hall.get(m["hall"], []))}
    return {
        "counts": {"by_state": totals["by_state"], "devices": totals["devices"], "critical": totals["critical"]},
        "versions": totals["by_version"],
        "alerts": {str(a["id"]): _alert(a) for a in alerts},
        "devices": {d["id"]: {"name": _name(d), "hall": d["hall"], "hall_name": d["hall_name"] or d["hall"], "state": d["state"],
                              "severity": d["severity"]} for d in devices.values()},
        "meetings": rows,
    }


def _name(d: dict[str, Any]) -> str:
    """A kiosk's own name, else its hall's name and the start of its id (ids alone mean nothing to staff)."""
    return d.get("name") or f"{d['hall_name'] or d['hall']} · {d['id'][:9]}"


def _alert(a: dict[str, Any]) -> dict[str, Any]:
    return {k: a.get(k) for k in ("id", "rule", "device", "hall", "state", "summary", "opened_at", "acked_by", "acked_at",
                                  "opened_count")}


def _problems(kiosks: list[dict[str, Any]], alerts: list[str]) -> list[str]:
    """What staff should look at in a hall with a meeting now, in words (Vietnamese first)."""
    out = []
    if not kiosks:
        out.append("không có thiết bị / no kiosk in this hall")
    for k in kiosks:
        who = k["name"]
        if k["state"] in ("offline", "never_seen"):
            out.append(f"{who}: ngoại tuyến / offline")
        elif k["state"] == "unknown":
            out.append(f"{who}: không rõ trạng thái / state unknown")
        elif k["stream"] not in (None, "live"):
            out.append(f"{who}: truyền hình {k['stream']} / stream {k['stream']}")
        out.extend(f"{who}: {f}" for f in k["faults"])
    return out + alerts


def changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Only what differs between two snapshots; empty when nothing did."""
    out: dict[str, Any] = {}
    for part in ("counts", "versions"):
        if before.get(part) != after.get(part):
            out[part] = after[part]
    for part in ("alerts", "devices", "meetings"):
        old, new = before.get(part, {}), after.get(part, {})
        changed = {k: v for k, v in new.items() if old.get(k) != v}
        gone = [k for k in old if k not in new]
        if changed or gone:
            out[part] = {"changed": changed, "gone": gone}
    return out


# ---------------------------------------------------------------- one shared thread, many tabs


@dataclass(eq=False)
class Client:
    """One browser tab's stream: its queue lives on the event loop serving it."""

    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(QUEUE_PER_CLIENT))
    dropped: bool = False

    def offer(self, item: dict[str, Any] | None) -> None:
        """Called on the loop's thread. ``None`` tells the stream to end."""
        if self.dropped:
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped = True
            log.info("a fleet feed client fell %d changes behind; dropped (it reconnects)", QUEUE_PER_CLIENT)
            self.queue.get_nowait()  # room for the end marker: the stream closes at once
            self.queue.put_nowait(None)


class TooManyClients(Exception):
    pass


class Feed:
    def __init__(self, store: Store, view: Callable[[], fleet.View], *, every_s: float = EVERY_S):
        self.store, self.view, self.every_s = store, view, every_s
        self._lock = threading.Lock()
        self._clients: set[Client] = set()
        self._last: dict[str, Any] | None = None
        self._seq = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.errors = 0

    def subscribe(self, loop: asyncio.AbstractEventLoop) -> tuple[Client, dict[str, Any]]:
        """A new tab: its client and the full snapshot it starts from (changes follow in its queue)."""
        with self._lock:
            if len(self._clients) >= MAX_CLIENTS:
                raise TooManyClients(f"{MAX_CLIENTS} live views are open already")
            if self._last is None:
                self._last = snapshot(self.store, self.view())
            client = Client(loop)
            self._clients.add(client)
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name="fleet-live", daemon=True)
                self._thread.start()
            return client, {"seq": self._seq, "at": _now(), **self._last}

    def unsubscribe(self, client: Client) -> None:
        with self._lock:
            self._clients.discard(client)

    @property
    def clients(self) -> int:
        with self._lock:
            return len(self._clients)

    def close(self) -> None:
        """Ends every stream and the thread (the service is stopping)."""
        self._stop.set()
        with self._lock:
            clients, self._clients = list(self._clients), set()
        for c in clients:
            _call(c, None)

    def tick(self) -> dict[str, Any] | None:
        """Take a snapshot, send what changed to every tab; returns the changes (None when nothing changed)."""
        fresh = snapshot(self.store, self.view())
        with self._lock:
            diff = changes(self._last or {}, fresh)
            self._last = fresh
            if not diff:
                return None
            self._seq += 1
            event = {"seq": self._seq, "at": _now(), **diff}
            clients = list(self._clients)
        for c in clients:
            _call(c, event)
        return event

    def _run(self) -> None:
        idle_since = None
        while not self._stop.wait(self.every_s):
            with self._lock:
                if self._clients:
                    idle_since = None
                else:
                    idle_since = idle_since or time.monotonic()
                    if time.monotonic() - idle_since > IDLE_STOP_S:
                        self._thread, self._last = None, None  # the next tab starts from a fresh snapshot
                        return
            try:
                self.tick()
            except Exception:  # a failed read (locked, disk) must not end the feed for everyone
                self.errors += 1
                log.exception("fleet feed: snapshot failed")


def _call(client: Client, item: dict[str, Any] | None) -> None:
    try:
        client.loop.call_soon_threadsafe(client.offer, item)
    except RuntimeError:  # its loop has closed: the tab is gone
        client.dropped = True


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
