"""The alerts' SQL: what the rules read (kiosks, meetings, alarms, attempts) and the alerts' own tables.

Times in ``alerts``/``alert_events``/``alert_pending`` are ISO 8601 UTC with milliseconds and a Z, so they
compare as text. Writes take a connection inside the caller's transaction (Store.transaction()).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .. import device_state
from ..clock_placement import iso, parse_time
from ..store import Store

ACTIVE = ("open", "acknowledged")


@dataclass
class DeviceView:
    id: str
    hall: str
    hall_name: str | None
    state: str  # as device_state.shown says: online | offline | unknown
    state_reason: str | None
    status: dict[str, Any]
    chain_seq: int
    uptime_now: float | None  # the reported uptime plus the age of that report
    name: str | None = None  # given at enrolment ("<hall> — cửa chính"): what staff call the kiosk

    @property
    def stream(self) -> dict[str, Any] | None:
        found = self.status.get("stream")
        return found if isinstance(found, dict) else None


def devices(store: Store, now: datetime, broker: dict[str, Any] | None, stale_s: float) -> list[DeviceView]:
    """Every registered, unrevoked kiosk with its last status and the state central can vouch for."""
    out = []
    for r in store.rows(
        "SELECT d.id, d.name, d.hall, h.name AS hall_name, d.revoked_at, s.state, s.status, s.last_seen, COALESCE(c.seq, 0) AS chain_seq "
        "FROM devices d LEFT JOIN halls h ON h.id = d.hall LEFT JOIN device_status s ON s.device = d.id "
        "LEFT JOIN chain c ON c.device = d.id WHERE d.revoked_at IS NULL"
    ):
        status = json.loads(r["status"]) if r["status"] else {}
        shown = device_state.shown(r, broker, stale_s, now)
        uptime, seen = status.get("uptime_s"), parse_time(r["last_seen"] or "")
        uptime_now = None
        if isinstance(uptime, int | float) and seen is not None:
            uptime_now = uptime + max(0.0, (now - seen).total_seconds())
        out.append(DeviceView(r["id"], r["hall"], r["hall_name"], shown["state"], shown["state_reason"], status,
                              r["chain_seq"], uptime_now, r["name"]))
    return out


def bundle_version(store: Store) -> int:
    return store.bundle_version()


def _seconds_text(moment: datetime) -> str:
    # meetings keep whole seconds (registry.utc_text)
    return iso(moment)[:19] + "Z"


def meetings_between(store: Store, now: datetime, until: datetime) -> dict[str, list[dict[str, Any]]]:
    """Per hall, the meetings on at ``now`` or starting by ``until``, earliest first."""
    out: dict[str, list[dict[str, Any]]] = {}
    for m in store.rows("SELECT id, hall, title, starts_at, ends_at FROM meetings WHERE ends_at > ? AND starts_at <= ? "
                        "ORDER BY starts_at, id", [_seconds_text(now), _seconds_text(until)]):
        m["starts_at_dt"] = parse_time(m["starts_at"])
        out.setdefault(m["hall"], []).append(m)
    return out


def recent_alarms(store: Store, since: datetime) -> dict[str, dict[str, Any]]:
    """Per device, chain alarms (forks, records not counted) received since ``since``: count and the latest reason."""
    return {r["device"]: r for r in store.rows(
        "SELECT device, COUNT(*) AS count, (SELECT reason FROM rejections j2 WHERE j2.device = j.device AND j2.alarm = 1 "
        "ORDER BY id DESC LIMIT 1) AS reason FROM rejections j WHERE alarm = 1 AND device IS NOT NULL AND received_at >= ? "
        "GROUP BY device", [iso(since)])}


def held_since(store: Store) -> dict[str, dict[str, Any]]:
    """Per device, records central holds because an earlier one is missing (a gap): how many and since when."""
    out = {}
    for r in store.rows("SELECT device, COUNT(*) AS count, MIN(received_at) AS oldest FROM pending GROUP BY device"):
        r["oldest"] = parse_time(r["oldest"])
        if r["oldest"] is not None:
            out[r["device"]] = r
    return out


def mismatches_by_hall(store: Store, since: datetime, split: datetime, now: datetime) -> dict[str, tuple[int, int, str | None]]:
    """Per hall with face mismatches since ``since``: (count in [split, now], count in [since, split), hall name)."""
    return {r["hall"]: (r["recent"], r["before"], r["name"]) for r in store.rows(
        "SELECT d.hall, h.name, SUM(a.at >= :split) AS recent, SUM(a.at < :split) AS before "
        "FROM attempts a JOIN devices d ON d.id = a.device LEFT JOIN halls h ON h.id = d.hall "
        "WHERE a.outcome = 'face_mismatch' AND a.at >= :since AND a.at <= :now GROUP BY d.hall",
        {"since": iso(since), "split": iso(split), "now": iso(now)})}


# --- rules staff changed ---

def rule_overrides(store: Store) -> dict[str, dict[str, Any]]:
    return {r["rule"]: {"enabled": bool(r["enabled"]), "params": json.loads(r["params"]), "updated_at": r["updated_at"],
                        "updated_by": r["updated_by"]} for r in store.rows("SELECT * FROM alert_rules")}


def save_rule(conn: sqlite3.Connection, rule: str, enabled: bool, params: dict[str, float], at: str, by: str) -> None:
    conn.execute("INSERT INTO alert_rules (rule, enabled, params, updated_at, updated_by) VALUES (?, ?, ?, ?, ?) "
                 "ON CONFLICT(rule) DO UPDATE SET enabled = excluded.enabled, params = excluded.params, "
                 "updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                 [rule, int(enabled), json.dumps(params, sort_keys=True), at, by])


# --- the engine's state ---

def pending(store: Store) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["rule"], r["subject"]): r for r in store.rows("SELECT * FROM alert_pending")}


def set_pending(conn: sqlite3.Connection, rule: str, subject: str, since: str, evidence: str | None) -> None:
    conn.execute("INSERT INTO alert_pending (rule, subject, since, evidence) VALUES (?, ?, ?, ?) "
                 "ON CONFLICT(rule, subject) DO UPDATE SET since = excluded.since, evidence = excluded.evidence",
                 [rule, subject, since, evidence])


def drop_pending(conn: sqlite3.Connection, rule: str, subject: str) -> None:
    conn.execute("DELETE FROM alert_pending WHERE rule = ? AND subject = ?", [rule, subject])


def active(store: Store) -> dict[tuple[str, str], dict[str, Any]]:
    """Unresolved alerts by (rule, subject)."""
    return {(r["rule"], r["subject"]): r for r in store.rows("SELECT * FROM alerts WHERE state IN ('open', 'acknowledged')")}


def last_resolved_since(store: Store, rule: str, subject: str, since: str) -> dict[str, Any] | None:
    return store.row("SELECT * FROM alerts WHERE state = 'resolved' AND rule = ? AND subject = ? AND resolved_at >= ? "
                     "ORDER BY resolved_at DESC LIMIT 1", [rule, subject, since])


def event(conn: sqlite3.Connection, alert: int, at: str, kind: str, actor: str | None = None, detail: str | None = None) -> None:
    conn.execute("INSERT INTO alert_events (alert, at, event, actor, detail) VALUES (?, ?, ?, ?, ?)",
                 [alert, at, kind, actor, detail])


def open_alert(conn: sqlite3.Connection, rule: str, subject: str, device: str | None, hall: str | None, summary: str,
               detail: dict[str, Any], at: str) -> int:
    cur = conn.execute(
        "INSERT INTO alerts (rule, subject, device, hall, state, summary, detail, first_opened_at, opened_at, last_true_at) "
        "VALUES (?, ?, ?, ?, 'open', ?, ?, ?, ?, ?)",
        [rule, subject, device, hall, summary, json.dumps(detail, default=str), at, at, at])
    event(conn, int(cur.lastrowid), at, "opened", detail=summary)
    return int(cur.lastrowid)


def reopen_alert(conn: sqlite3.Connection, alert: int, summary: str, detail: dict[str, Any], at: str) -> None:
    # acknowledging was about the previous episode: the reopened alert asks for attention again
    conn.execute("UPDATE alerts SET state = 'open', summary = ?, detail = ?, opened_at = ?, last_true_at = ?, clear_since = NULL, "
                 "resolved_at = NULL, acked_at = NULL, acked_by = NULL, opened_count = opened_count + 1 WHERE id = ?",
                 [summary, json.dumps(detail, default=str), at, at, alert])
    event(conn, alert, at, "reopened", detail=summary)


def still_true(conn: sqlite3.Connection, alert: int, summary: str, detail: dict[str, Any], at: str) -> None:
    conn.execute("UPDATE alerts SET summary = ?, detail = ?, last_true_at = ?, clear_since = NULL WHERE id = ?",
                 [summary, json.dumps(detail, default=str), at, alert])


def clearing(conn: sqlite3.Connection, alert: int, at: str) -> None:
    conn.execute("UPDATE alerts SET clear_since = ? WHERE id = ? AND clear_since IS NULL", [at, alert])


def resolve_alert(conn: sqlite3.Connection, alert: int, at: str) -> None:
    conn.execute("UPDATE alerts SET state = 'resolved', resolved_at = ? WHERE id = ?", [at, alert])
    event(conn, alert, at, "resolved")


def acknowledge(conn: sqlite3.Connection, alert: int, at: str, by: str) -> bool:
    """False when the alert is not open (already acknowledged, or resolved)."""
    changed = conn.execute("UPDATE alerts SET state = 'acknowledged', acked_at = ?, acked_by = ? WHERE id = ? AND state = 'open'",
                           [at, by, alert]).rowcount
    if changed:
        event(conn, alert, at, "acknowledged", actor=by)
    return bool(changed)


def prune(conn: sqlite3.Connection, before: str) -> int:
    """Resolved alerts older than ``before`` go, with their history."""
    return conn.execute("DELETE FROM alerts WHERE state = 'resolved' AND resolved_at < ?", [before]).rowcount


# --- what staff read ---

def _shaped(r: dict[str, Any]) -> dict[str, Any]:
    r["detail"] = json.loads(r["detail"])
    return r


def listed(store: Store, state: str | None, limit: int, before_id: int | None) -> list[dict[str, Any]]:
    """Newest first. ``state``: open, acknowledged, resolved, active (open or acknowledged) or None for all."""
    where, params = [], []
    if state == "active":
        where.append("state IN ('open', 'acknowledged')")
    elif state is not None:
        where.append("state = ?")
        params.append(state)
    if before_id is not None:
        where.append("id < ?")
        params.append(before_id)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    return [_shaped(r) for r in store.rows(f"SELECT * FROM alerts {clause} ORDER BY id DESC LIMIT ?", [*params, limit])]


def one(store: Store, alert: int) -> dict[str, Any] | None:
    # with the kiosk's and hall's names: a notification built from this names them, never by raw id alone
    found = store.row("SELECT a.*, d.name AS device_name, h.name AS hall_name FROM alerts a "
                      "LEFT JOIN devices d ON d.id = a.device LEFT JOIN halls h ON h.id = a.hall WHERE a.id = ?", [alert])
    if found is None:
        return None
    found = _shaped(found)
    found["history"] = store.rows("SELECT at, event, actor, detail FROM alert_events WHERE alert = ? ORDER BY id", [alert])
    return found


def counts(store: Store) -> dict[str, int]:
    return {r["state"]: r["n"] for r in store.rows("SELECT state, COUNT(*) AS n FROM alerts GROUP BY state")}
