"""The fleet at central: the device list staff page through, each kiosk's state changes and its chart samples.

Writes come from the collector's ingest (``status_stored``, inside its batch transaction, after the status
is stored); reads from the fleet routes and /metrics. Everything a list page filters or sorts on is a column
(``device_fleet`` keeps the last report of each kiosk while it was online: the offline will carries no
figures, and the last known queue, disk and faults are what staff need about a kiosk that went away), so a
page of 10,000 kiosks is one SQL statement and Python only touches the rows on the page.

States: ``online``, ``offline``, ``unknown``, ``never_seen``, ``revoked``. They are
``central/device_state.shown``'s, with its "offline, never reported" named ``never_seen``; ``_STATE`` says
the same in SQL so that filters, sorting and counts run in the database (``shown`` is still what gives each
row on a page its reason, and a test holds the two to the same answer).
"""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from contract import Status

from . import device_state
from .clock_placement import iso
from .store import Store

STATES = ("online", "offline", "unknown", "never_seen", "revoked")
SEVERITIES = ("critical", "warning", "neutral", "ok")
MEETING_SOON = timedelta(minutes=30)  # a meeting starting within this counts as now: staff need the kiosk up before it
SAMPLE_EVERY_S = 300  # at most one chart sample per kiosk per 5 minutes
SAMPLES_KEEP = timedelta(days=8)  # the 7-day chart and a day of margin
EVENTS_KEEP = timedelta(days=400)
MAX_EVENTS = 1_000_000  # all kiosks together: a kiosk flapping for months cannot fill the disk
PRUNE_EVERY = 1000  # sample insertions between prunes
MAX_POINTS = 300  # a chart's points, whatever its range
RANGES = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}
MAX_PAGE_SIZE = 200

_inserted = 0


# ---------------------------------------------------------------- the list


@dataclass(frozen=True)
class View:
    """What the state of a kiosk depends on besides the database: central's broker link and the time."""

    broker: dict[str, Any] | None = None  # BrokerLink.state(), None without a collector in this process
    stale_s: float = device_state.DEFAULT_STALE_S
    now: datetime | None = None

    def at(self) -> datetime:
        return self.now or datetime.now(UTC)

    def params(self) -> dict[str, Any]:
        now = self.at()
        return {
            "link_down": int(self.broker is not None and not self.broker.get("ok")),
            "fresh_after": _julian(now - timedelta(seconds=self.stale_s)),
            "now": now.strftime("%Y-%m-%dT%H:%M:%SZ"),  # the form meetings' times are stored in (registry.utc_text)
            "soon": (now + MEETING_SOON).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }


def _julian(t: datetime) -> float:
    return t.timestamp() / 86400.0 + 2440587.5


# device_state.shown in SQL. An unreadable or missing last_seen on an "online" counts as stale, as there.
_STATE = """CASE
    WHEN d.revoked_at IS NOT NULL THEN 'revoked'
    WHEN :link_down THEN 'unknown'
    WHEN s.state IS NULL THEN 'never_seen'
    WHEN s.state = 'online' AND IFNULL(julianday(s.last_seen), 0) < :fresh_after THEN 'unknown'
    ELSE s.state END"""
_MEETING_NOW = "EXISTS (SELECT 1 FROM meetings m WHERE m.hall = d.hall AND m.ends_at > :now AND m.starts_at <= :soon)"
# Offline is no failure in a closed hall; in a hall with a meeting now (or soon) it is. Unknown: central cannot
# vouch either way, so it asks for a look without crying wolf.
_SEVERITY = """CASE
    WHEN state IN ('offline', 'never_seen') THEN CASE WHEN meeting_now THEN 'critical' ELSE 'neutral' END
    WHEN state = 'unknown' THEN CASE WHEN meeting_now THEN 'warning' ELSE 'neutral' END
    WHEN state = 'revoked' THEN 'neutral'
    WHEN fault_count > 0 THEN 'warning'
    ELSE 'ok' END"""
_BASE = f"""
SELECT d.id, d.name, d.hall, h.name AS hall_name, h.commune, h.commune_code, h.province, h.province_code,
    d.registered_at, d.revoked_at, s.state AS reported_state, s.last_seen,
    {_STATE} AS state, {_MEETING_NOW} AS meeting_now, IFNULL(f.fault_count, 0) AS fault_count,
    f.queue_depth, f.oldest_unsent_age_s, f.version, f.disk_free_bytes, f.temperature_c, f.bundle_version,
    f.reported_at, f.changed_at, c.seq AS central_seq, c.updated_at AS last_record_at
FROM devices d LEFT JOIN device_status s ON s.device = d.id LEFT JOIN device_fleet f ON f.device = d.id
    LEFT JOIN halls h ON h.id = d.hall LEFT JOIN chain c ON c.device = d.id"""
# Every kiosk with its state and severity: the device list, the totals and the live overview (central/fleet_live.py)
# all start from this, so they can never disagree on what "critical" means.
RATED = f"WITH base AS ({_BASE}), rated AS (SELECT *, {_SEVERITY} AS severity FROM base)"

SORTS = {
    "severity": "CASE severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 WHEN 'neutral' THEN 2 ELSE 3 END",
    "hall": "IFNULL(hall_name, hall)",
    "device": "id",
    "name": "name",
    # One expression, so that descending reverses all of it and halls without a place come last either way.
    "place": "CASE WHEN province IS NOT NULL THEN province || char(1) || IFNULL(commune, '') || char(1) "
             "|| IFNULL(hall_name, hall) END",
    "state": "state",
    "last_contact": "julianday(last_seen)",
    "last_record": "julianday(last_record_at)",
    "queue_depth": "queue_depth",
    "oldest_unsent_age": "oldest_unsent_age_s",
    "version": "version",
    "disk_free": "disk_free_bytes",
    "temperature": "temperature_c",
    "faults": "fault_count",
    "roster_behind": ":roster_current - bundle_version",
    "registered": "registered_at",
}


@dataclass(frozen=True)
class Filters:
    states: tuple[str, ...] = ()
    hall: str | None = None
    version: str | None = None
    has_fault: bool | None = None
    meeting_now: bool | None = None
    severity: str | None = None
    text: str | None = None  # part of a hall's id or name, or of a device id or name
    province_code: int | None = None  # central/regions.py's codes: "bac ninh" and "Tỉnh Bắc Ninh" are the same
    commune_codes: tuple[int, ...] = ()  # several when a commune is named without its province

    def where(self) -> tuple[str, dict[str, Any]]:
        clauses, params = [], {}
        if self.states:
            names = [f":state{i}" for i in range(len(self.states))]
            clauses.append(f"state IN ({', '.join(names)})")
            params.update({n[1:]: s for n, s in zip(names, self.states)})
        for column, value in (("hall", self.hall), ("version", self.version), ("severity", self.severity)):
            if value is not None:
                clauses.append(f"{column} = :f_{column}")
                params[f"f_{column}"] = value
        if self.province_code is not None:
            clauses.append("province_code = :f_province")
            params["f_province"] = self.province_code
        if self.commune_codes:
            names = [f":commune{i}" for i in range(len(self.commune_codes))]
            clauses.append(f"commune_code IN ({', '.join(names)})")
            params.update({n[1:]: c for n, c in zip(names, self.commune_codes)})
        if self.has_fault is not None:
            clauses.append("fault_count > 0" if self.has_fault else "fault_count = 0")
        if self.meeting_now is not None:
            clauses.append("meeting_now" if self.meeting_now else "NOT meeting_now")
        if self.text:
            like = "%" + self.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            clauses.append("(hall LIKE :text ESCAPE '\\' OR hall_name LIKE :text ESCAPE '\\' OR id LIKE :text ESCAPE '\\' "
                           "OR name LIKE :text ESCAPE '\\')")
            params["text"] = like
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def device_page(store: Store, view: View, filters: Filters = Filters(), *, sort: str = "severity", descending: bool = False,
                page: int = 1, size: int = 50) -> dict[str, Any]:
    """One page of the device list, the number of kiosks matching the filters, and the fleet's totals."""
    if sort not in SORTS:
        raise ValueError(f"cannot sort by {sort!r}; one of {', '.join(SORTS)}")
    size = max(1, min(size, MAX_PAGE_SIZE))
    where, params = filters.where()
    roster_current = store.bundle_version()
    params |= view.params() | {"roster_current": roster_current, "limit": size, "offset": (max(page, 1) - 1) * size}
    order = "DESC" if descending else "ASC"
    listed = f"{RATED} SELECT * FROM rated{where}"
    with store.lock:
        rows = store.rows(f"{listed} ORDER BY {SORTS[sort]} {order} NULLS LAST, id LIMIT :limit OFFSET :offset", params)
        matching = store.scalar(f"SELECT COUNT(*) FROM ({listed})", params)
        details = reports(store, [r["id"] for r in rows])
        meetings = _meetings_now(store, {r["hall"] for r in rows if r["meeting_now"]}, params)
    return {
        "page": max(page, 1), "size": size, "matching": matching, "pages": math.ceil(matching / size) if matching else 0,
        "sort": sort, "order": order.lower(), "roster_current": roster_current,
        "items": [_item(r, details.get(r["id"]), meetings.get(r["hall"]), view, roster_current) for r in rows],
        "totals": totals(store, view),
    }


def totals(store: Store, view: View) -> dict[str, Any]:
    """Counts over the whole fleet: by state (every state, zeros included) and by software version."""
    params = view.params()
    by_state = dict.fromkeys(STATES, 0)
    by_version: dict[str, int] = {}
    critical = 0
    for r in store.rows(f"{RATED} SELECT state, version, severity = 'critical' AS critical, COUNT(*) AS n FROM rated "
                        "GROUP BY state, version, critical", params):
        by_state[r["state"]] = by_state.get(r["state"], 0) + r["n"]
        if r["state"] != "revoked":
            key = r["version"] or "unknown"
            by_version[key] = by_version.get(key, 0) + r["n"]
        critical += r["n"] if r["critical"] else 0
    return {"devices": sum(by_state.values()), "by_state": by_state,
            "by_version": dict(sorted(by_version.items(), key=lambda kv: (-kv[1], kv[0]))), "critical": critical}


def reports(store: Store, devices: list[str]) -> dict[str, dict[str, Any]]:
    """These kiosks' last reports (JSON), parsed: the figures that are not worth a column of their own."""
    if not devices:
        return {}
    marks = ", ".join("?" * len(devices))
    out = {}
    for r in store.rows(f"SELECT s.device, s.status, f.report FROM device_status s LEFT JOIN device_fleet f "
                        f"ON f.device = s.device WHERE s.device IN ({marks})", devices):
        out[r["device"]] = json.loads(r["report"] or r["status"] or "{}")
    return out


def _meetings_now(store: Store, halls: set[str], params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    if not halls:
        return {}
    marks = ", ".join("?" * len(halls))
    out: dict[str, dict[str, Any]] = {}
    for r in store.rows(f"SELECT id, hall, title, starts_at, ends_at FROM meetings WHERE hall IN ({marks}) "
                        "AND ends_at > ? AND starts_at <= ? ORDER BY starts_at", [*halls, params["now"], params["soon"]]):
        out.setdefault(r.pop("hall"), r)
    return out


def _item(r: dict[str, Any], report: dict[str, Any] | None, meeting: dict[str, Any] | None, view: View,
          roster_current: int) -> dict[str, Any]:
    report = report or {}
    shown = device_state.shown({"state": r["reported_state"], "last_seen": r["last_seen"], "revoked_at": r["revoked_at"]},
                               view.broker, view.stale_s, view.at())
    held = r["bundle_version"]
    return {
        "id": r["id"], "name": r["name"] or r["id"],
        "hall": r["hall"], "hall_name": r["hall_name"] or r["hall"], "commune": r["commune"], "province": r["province"],
        "state": r["state"], "state_reason": shown["state_reason"], "reported_state": r["reported_state"],
        "state_since": r["changed_at"], "severity": r["severity"], "meeting_now": bool(r["meeting_now"]), "meeting": meeting,
        "last_contact": r["last_seen"], "last_record_at": r["last_record_at"], "central_seq": r["central_seq"] or 0,
        "reported_at": r["reported_at"],  # when the figures below were reported (the last status while online)
        "queue_depth": r["queue_depth"], "oldest_unsent_age_s": r["oldest_unsent_age_s"],
        "last_ack_seq": report.get("last_ack_seq"), "last_ack_at": report.get("last_ack_at"),
        "roster": {"held": held, "current": roster_current, "behind": None if held is None else max(roster_current - held, 0)},
        "version": r["version"], "software": report.get("software"),
        "disk_free_bytes": r["disk_free_bytes"], "temperature_c": r["temperature_c"],
        "memory_used_bytes": report.get("memory_used_bytes"), "memory_total_bytes": report.get("memory_total_bytes"),
        "throttled": report.get("throttled"), "throttled_words": report.get("throttled_words"),
        "clock_synced": report.get("clock_synced"), "stream": report.get("stream"), "faults": report.get("faults") or [],
    }


# ---------------------------------------------------------------- what each status changes


def status_stored(conn: sqlite3.Connection, device: str, status: Status, *, seen: str, retained: bool,
                  now: datetime | None = None) -> None:
    """Called by the ingest once ``status`` is stored in ``device_status`` (same transaction): note a state change
    or a reboot in ``device_events``, keep the figures of an online report, take a chart sample if one is due."""
    global _inserted
    now = now or datetime.now(UTC)
    at = iso(now)
    prev = conn.execute("SELECT state, boot_count, uptime_s, sampled_at FROM device_fleet WHERE device = ?", [device]).fetchone()
    event = _event(prev, status, retained)
    if event is not None:
        conn.execute("INSERT INTO device_events (device, at, kind, from_state, to_state, reason) VALUES (?, ?, ?, ?, ?, ?)",
                     [device, at, *event])
    changed_at = at if prev is None or prev[0] != status.state else None
    if status.state != "online":
        # The will says nothing else: the last report's figures stay, dated by reported_at.
        conn.execute("INSERT INTO device_fleet (device, state, changed_at) VALUES (?, ?, ?) ON CONFLICT(device) DO UPDATE "
                     "SET state = excluded.state, changed_at = IFNULL(?, changed_at)", [device, status.state, at, changed_at])
        return
    sample_due = not retained and (prev is None or prev[3] is None or now.timestamp() - prev[3] >= SAMPLE_EVERY_S)
    sampled_at = int(now.timestamp()) if sample_due else (prev[3] if prev else None)
    conn.execute(
        "INSERT INTO device_fleet (device, state, changed_at, reported_at, boot_count, uptime_s, sampled_at, queue_depth, "
        "oldest_unsent_age_s, version, disk_free_bytes, temperature_c, fault_count, bundle_version, report) "
        "VALUES (:device, :state, :at, :seen, :boot_count, :uptime_s, :sampled_at, :queue_depth, :oldest, :version, :disk, "
        ":temp, :faults, :bundle, :report) ON CONFLICT(device) DO UPDATE SET state = excluded.state, "
        "changed_at = IFNULL(:changed_at, changed_at), reported_at = excluded.reported_at, "
        "boot_count = IFNULL(excluded.boot_count, boot_count), uptime_s = excluded.uptime_s, sampled_at = excluded.sampled_at, "
        "queue_depth = excluded.queue_depth, oldest_unsent_age_s = excluded.oldest_unsent_age_s, version = excluded.version, "
        "disk_free_bytes = excluded.disk_free_bytes, temperature_c = excluded.temperature_c, "
        "fault_count = excluded.fault_count, bundle_version = excluded.bundle_version, report = excluded.report",
        {"device": device, "state": status.state, "at": at, "seen": seen, "boot_count": status.boot_count,
         "uptime_s": status.uptime_s, "sampled_at": sampled_at, "queue_depth": status.queue_depth,
         "oldest": status.oldest_unsent_age_s, "version": status.version, "disk": status.disk_free_bytes,
         "temp": status.temperature_c, "faults": len(status.faults), "bundle": status.bundle_version,
         "report": status.model_dump_json(), "changed_at": changed_at},
    )
    if sample_due:
        conn.execute("INSERT OR IGNORE INTO device_samples (device, at, queue_depth, oldest_unsent_age_s, temperature_c, "
                     "disk_free_bytes, memory_used_bytes) VALUES (?, ?, ?, ?, ?, ?, ?)",
                     [device, sampled_at, status.queue_depth, status.oldest_unsent_age_s, status.temperature_c,
                      status.disk_free_bytes, status.memory_used_bytes])
        _inserted += 1
        if _inserted % PRUNE_EVERY == 0:
            prune(conn, now)


def _event(prev: tuple | None, status: Status, retained: bool) -> tuple[str, str | None, str, str] | None:
    """(kind, from, to, reason) of what this status says happened, or None."""
    late = " (learned from the broker's retained status when central connected)" if retained else ""
    if prev is None:
        return "first_seen", None, status.state, f"first status from this kiosk: {status.state}{late}"
    before, boots, uptime = prev[0], prev[1], prev[2]
    if status.state == "offline":
        if before == "offline":
            return None
        return "went_offline", before, "offline", f"the broker published the kiosk's last will: its connection was lost{late}"
    reboot = None
    if status.boot_count is not None and boots is not None and status.boot_count != boots:
        reboot = f"rebooted: boot count {boots} → {status.boot_count}"
        if status.last_reboot:
            reboot += f" ({status.last_reboot})"
    elif status.uptime_s is not None and uptime is not None and status.uptime_s < uptime:
        reboot = f"agent restarted: uptime went back from {_uptime(uptime)} s to {_uptime(status.uptime_s)} s"
    if reboot is not None:
        return "rebooted", before, "online", (f"came back online; {reboot}" if before != "online" else reboot) + late
    if before != "online":
        return "came_online", before, "online", f"reported online again{late}"
    return None


def _uptime(seconds: float) -> str:
    # tenths under 10 s: a kiosk restarted soon after it started would read "from 0 s to 0 s"
    return f"{seconds:.1f}".removesuffix(".0") if seconds < 10 else f"{seconds:.0f}"


def prune(conn: sqlite3.Connection, now: datetime | None = None) -> None:
    now = now or datetime.now(UTC)
    conn.execute("DELETE FROM device_samples WHERE at < ?", [int((now - SAMPLES_KEEP).timestamp())])
    conn.execute("DELETE FROM device_events WHERE at < ?", [iso(now - EVENTS_KEEP)])
    conn.execute("DELETE FROM device_events WHERE id <= (SELECT MAX(id) FROM device_events) - ?", [MAX_EVENTS])


# ---------------------------------------------------------------- one kiosk


def exists(store: Store, device: str) -> bool:
    return store.scalar("SELECT 1 FROM devices WHERE id = ?", [device]) is not None


def history(store: Store, device: str, *, limit: int) -> list[dict[str, Any]]:
    """A kiosk's state changes and reboots, newest first."""
    return store.rows("SELECT at, kind, from_state, to_state, reason FROM device_events WHERE device = ? "
                      "ORDER BY id DESC LIMIT ?", [device, limit])


def samples(store: Store, device: str, *, span: str, now: datetime | None = None) -> dict[str, Any]:
    """The kiosk's samples over ``span`` (a key of RANGES) in at most MAX_POINTS buckets, oldest first.

    Each bucket holds the worst value seen in it (the longest queue and oldest unsent record, the hottest
    temperature, the least free disk, the most memory used): a chart must not average a problem away.
    """
    length = RANGES[span]
    now = now or datetime.now(UTC)
    width = math.ceil(length.total_seconds() / MAX_POINTS)
    until = int(now.timestamp())
    since = until - int(length.total_seconds()) + 1  # so the newest sample falls in bucket MAX_POINTS - 1, not MAX_POINTS
    points = store.rows(
        "SELECT :since + ((at - :since) / :width) * :width AS t, MAX(queue_depth) AS queue_depth, "
        "MAX(oldest_unsent_age_s) AS oldest_unsent_age_s, MAX(temperature_c) AS temperature_c, "
        "MIN(disk_free_bytes) AS disk_free_bytes, MAX(memory_used_bytes) AS memory_used_bytes, COUNT(*) AS samples "
        "FROM device_samples WHERE device = :device AND at >= :since AND at <= :until GROUP BY (at - :since) / :width "
        "ORDER BY t", {"since": since, "until": until, "width": width, "device": device},
    )
    return {"device": device, "range": span, "bucket_s": width, "since": iso(datetime.fromtimestamp(since, UTC)),
            "points": points}
