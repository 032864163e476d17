"""One meeting's attendance sheet: each expected member's status, live until the meeting is closed, frozen after.

Who is expected is the cell's membership on the meeting's day (central/membership.py), in the halls' time zone.
A live sheet is computed from the counted check-ins (``attendance``), the excuses (``absence_excuses``) and the
clock: before the meeting ends a member not checked in is ``pending``, after it ``unexcused``. Closing writes the
sheet into ``meeting_sheet`` (its ``status`` columns can never change: triggers) and the meeting's counts into
``meeting_totals`` for the roll-ups. After that a change is an amendment with who and when; it moves only
``status_now``. A check-in stored after the close (a kiosk that was offline) still counts in ``attendance`` but
does not change the frozen sheet: the secretary amends it if it should.

All of the sheet's SQL is here; the API routes only translate errors into status codes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from . import audit, membership
from .errors import CentralError, Conflict, NotFound, RegistryError
from .registry import check_id
from .store import Store, utc_now

log = logging.getLogger("central.attendance_sheet")

HALL_ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
STATUSES = ("present", "late", "excused", "unexcused")  # what a closed sheet can hold
LIVE_STATUSES = (*STATUSES, "pending")
REASONS = {"illness": "ốm đau", "work": "đi công tác", "leave": "nghỉ phép", "family": "việc gia đình",
           "other": "lý do khác"}
MAX_NOTE = membership.MAX_NOTE  # a note typed by staff: the same limit as the membership history's
AUTO_CLOSER = "central (auto)"
CLOSE_DUE_BATCH = 200  # meetings closed per call: the store's lock is not held for a whole backlog at once
TOTAL_KEYS = ("expected", "present", "late", "excused", "unexcused", "pending", "attended", "overrides", "not_expected",
              "rate", "rate_excluding_excused")
COUNT_KEYS = ("expected", "present", "late", "excused", "unexcused", "pending", "overrides", "not_expected")


@dataclass(frozen=True)
class Rules:
    """The settings attendance is counted by (CentralSettings' fields of the same names)."""

    late_after_min: int = 15
    absence_warn_level: int = 2
    absence_rule_level: int = 3
    low_rate_threshold: float = 0.5
    auto_close_after_h: float = 72.0

    @classmethod
    def from_settings(cls, settings: Any) -> Rules:
        return cls(**{name: getattr(settings, name) for name in cls.__dataclass_fields__})


def rules_of(app: Any) -> Rules:
    """The rules the running service was configured with (``app.state.attendance_rules``), else the defaults."""
    return getattr(app.state, "attendance_rules", None) or Rules()


# -- time ----------------------------------------------------------------------------------------------------------

def _moment(value: datetime | str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"time {value.isoformat()} has no time zone")
    return value.astimezone(UTC)


def _text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def meeting_day(starts_at: str | datetime) -> str:
    """The meeting's date in the halls' time zone (YYYY-MM-DD): a 06:30 meeting in Hà Nội is 23:30 UTC the day before."""
    return _moment(starts_at).astimezone(HALL_ZONE).date().isoformat()


def _state(meeting: dict[str, Any], now: datetime) -> str:
    if meeting.get("closed_at"):
        return "past"  # the secretary closed the session: it is over, whatever its scheduled end said
    if now < _moment(meeting["starts_at"]):
        return "upcoming"
    return "current" if now < _moment(meeting["ends_at"]) else "past"


def _lateness(starts_at: str, checked_in_at: str, late_after_min: int) -> tuple[str, int | None]:
    """(present|late, whole minutes after the start when late)."""
    after = _moment(checked_in_at) - _moment(starts_at)
    if after > timedelta(minutes=late_after_min):
        return "late", int(after.total_seconds() // 60)
    return "present", None


# -- totals --------------------------------------------------------------------------------------------------------

def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole > 0 else None


def with_rates(counts: dict[str, Any]) -> dict[str, Any]:
    """The totals object T from counts (missing counts are 0): ``attended`` and both rates added.

    Roll-ups sum the counts of many meetings first and call this once (never an average of rates).
    """
    c = {k: int(counts.get(k) or 0) for k in COUNT_KEYS}
    attended = c["present"] + c["late"]
    return {**{k: c[k] for k in COUNT_KEYS[:6]}, "attended": attended, "overrides": c["overrides"],
            "not_expected": c["not_expected"], "rate": _rate(attended, c["expected"]),
            "rate_excluding_excused": _rate(attended, c["expected"] - c["excused"])}


def totals(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """T of sheet rows (``expected``, ``status``, ``override``)."""
    counts = dict.fromkeys(COUNT_KEYS, 0)
    for r in rows:
        if r["override"] and r["status"] in ("present", "late"):
            counts["overrides"] += 1
        if not r["expected"]:
            counts["not_expected"] += 1
            continue
        counts["expected"] += 1
        counts[r["status"]] += 1
    return with_rates(counts)


# -- reading -------------------------------------------------------------------------------------------------------

_MEETING = ("SELECT m.id, m.title, m.cell, c.name AS cell_name, m.hall, h.name AS hall_name, m.starts_at, m.ends_at, "
            "m.closed_at, m.closed_by, c.commune_code, c.province_code FROM meetings m "
            "LEFT JOIN cells c ON c.id = m.cell LEFT JOIN halls h ON h.id = m.hall")


def _meeting(store: Store, meeting_id: str) -> dict[str, Any]:
    found = store.row(f"{_MEETING} WHERE m.id = ?", [meeting_id])
    if found is None:
        raise NotFound(f"no meeting {meeting_id}")
    return found


def _meeting_json(m: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {"id": m["id"], "title": m["title"], "cell": m["cell"], "cell_name": m["cell_name"], "hall": m["hall"],
            "hall_name": m["hall_name"], "starts_at": m["starts_at"], "ends_at": m["ends_at"],
            "day": meeting_day(m["starts_at"]), "state": _state(m, now), "closed_at": m["closed_at"],
            "closed_by": m["closed_by"]}


def _check_ins(store: Store, meeting_ids: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """meeting -> member -> counted check-in with its record's hash and override officer."""
    out: dict[str, dict[str, dict[str, Any]]] = {m: {} for m in meeting_ids}
    for chunk in chunks(meeting_ids):
        for r in store.rows(
            "SELECT a.meeting, a.member, a.device, a.seq, a.checked_in_at, r.hash, "
            "json_extract(r.body, '$.proof.override') AS override, mb.name FROM attendance a "
            "LEFT JOIN records r ON r.device = a.device AND r.seq = a.seq LEFT JOIN members mb ON mb.id = a.member "
            f"WHERE a.meeting IN ({','.join('?' * len(chunk))})", chunk):
            out[r["meeting"]][r["member"]] = r
    return out


def _excuses(store: Store, meeting_ids: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {m: {} for m in meeting_ids}
    for chunk in chunks(meeting_ids):
        for r in store.rows("SELECT meeting, member, reason, note, recorded_by, recorded_at FROM absence_excuses "
                            f"WHERE meeting IN ({','.join('?' * len(chunk))})", chunk):
            out[r["meeting"]][r["member"]] = r
    return out


def chunks(ids: list[str], size: int = 500) -> Iterable[list[str]]:
    """``ids`` in slices small enough for one ``IN (…)`` (SQLite's bound-parameter limit)."""
    for i in range(0, len(ids), size):
        yield ids[i:i + size]


def _row(member: str, name: str | None, standing: str | None, expected: bool, status: str, *,
         check_in: dict[str, Any] | None = None, minutes_late: int | None = None, reason: str | None = None,
         note: str | None = None, amended: bool = False, checked_in_at: str | None = None) -> dict[str, Any]:
    c = check_in or {}
    return {"member": member, "name": name, "standing": standing, "expected": expected, "status": status,
            "checked_in_at": c.get("checked_in_at", checked_in_at), "minutes_late": minutes_late, "reason": reason,
            "reason_label": REASONS.get(reason) if reason else None, "note": note, "override": bool(c.get("override")),
            "device": c.get("device"), "seq": c.get("seq"), "hash": c.get("hash"), "amended": amended,
            "override_by": c.get("override")}


def _sorted(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: (r["name"] or "", r["member"]))


def _live_rows(store: Store, m: dict[str, Any], check_ins: dict[str, dict[str, Any]],
               excuses: dict[str, dict[str, Any]], *, ended: bool, late_after_min: int) -> list[dict[str, Any]]:
    """Each expected member's status now (and each member counted present who was not expected)."""
    rows = []
    expected = membership.expected_members(store, m["cell"], meeting_day(m["starts_at"]))
    for e in expected:
        c, x = check_ins.get(e["member"]), excuses.get(e["member"])
        if c is not None:  # a check-in outweighs an excuse entered beforehand
            status, late = _lateness(m["starts_at"], c["checked_in_at"], late_after_min)
            rows.append(_row(e["member"], e["name"], e["standing"], True, status, check_in=c, minutes_late=late))
        elif x is not None:
            rows.append(_row(e["member"], e["name"], e["standing"], True, "excused", reason=x["reason"], note=x["note"]))
        else:
            rows.append(_row(e["member"], e["name"], e["standing"], True, "unexcused" if ended else "pending"))
    known = {e["member"] for e in expected}
    for member, c in check_ins.items():
        if member not in known:
            status, late = _lateness(m["starts_at"], c["checked_in_at"], late_after_min)
            rows.append(_row(member, c["name"], None, False, status, check_in=c, minutes_late=late))
    return _sorted(rows)


def _frozen_rows(store: Store, meeting_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {m: [] for m in meeting_ids}
    for chunk in chunks(meeting_ids):
        marks = ",".join("?" * len(chunk))
        for r in store.rows(
            "SELECT s.*, mb.name, COALESCE((SELECT a.note FROM attendance_amendments a WHERE a.meeting = s.meeting "
            "AND a.member = s.member ORDER BY a.id DESC LIMIT 1), x.note) AS note_now FROM meeting_sheet s "
            "LEFT JOIN members mb ON mb.id = s.member "
            "LEFT JOIN absence_excuses x ON x.meeting = s.meeting AND x.member = s.member "
            f"WHERE s.meeting IN ({marks})", chunk):
            out[r["meeting"]].append(_row(
                r["member"], r["name"], r["standing"], bool(r["expected"]), r["status_now"],
                check_in={k: r[k] for k in ("device", "seq", "hash", "override", "checked_in_at")},
                minutes_late=r["minutes_late"] if r["status_now"] == "late" else None, reason=r["reason_now"],
                note=r["note_now"], amended=r["amended_at"] is not None))
    return {m: _sorted(rows) for m, rows in out.items()}


def _amendments(store: Store, meeting_id: str) -> list[dict[str, Any]]:
    return store.rows(
        "SELECT a.id, a.member, mb.name, a.from_status, a.to_status, a.reason, a.note, a.recorded_by, a.recorded_at "
        "FROM attendance_amendments a LEFT JOIN members mb ON mb.id = a.member WHERE a.meeting = ? ORDER BY a.id",
        [meeting_id])


def _public(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "override_by"} for r in rows]


def sheet(store: Store, meeting_id: str, *, now: datetime | str | None = None, late_after_min: int = 15) -> dict[str, Any]:
    """The meeting's sheet: frozen (``status_now`` of its rows) once closed, live otherwise."""
    meeting_id, moment = check_id("meeting", meeting_id), _moment(now)
    with store.lock:  # one consistent view: ingest and close take the same lock
        m = _meeting(store, meeting_id)
        rows = _effective_rows(store, {meeting_id: m}, moment, late_after_min)[meeting_id]
        amendments = _amendments(store, meeting_id)
    return {"meeting": _meeting_json(m, moment), "late_after_min": late_after_min, "frozen": m["closed_at"] is not None,
            "totals": totals(rows), "members": _public(rows), "amendments": amendments}


def statuses(store: Store, meeting_ids: Iterable[str], *, now: datetime | str | None = None,
             late_after_min: int = 15) -> dict[str, list[dict[str, Any]]]:
    """The effective rows (the sheet's ``members``) of many meetings: ``status_now`` for closed ones, live for others.

    Unknown ids are left out.
    """
    ids, moment = list(dict.fromkeys(meeting_ids)), _moment(now)
    with store.lock:
        meetings: dict[str, dict[str, Any]] = {}
        for chunk in chunks(ids):
            for m in store.rows(f"{_MEETING} WHERE m.id IN ({','.join('?' * len(chunk))})", chunk):
                meetings[m["id"]] = m
        out = _effective_rows(store, meetings, moment, late_after_min)
    return {i: _public(out[i]) for i in ids if i in out}


def _effective_rows(store: Store, meetings: dict[str, dict[str, Any]], moment: datetime,
                    late_after_min: int) -> dict[str, list[dict[str, Any]]]:
    """meeting id -> its rows: frozen (``status_now``) for the closed ones, live for the others. Caller holds the lock."""
    closed = [i for i, m in meetings.items() if m["closed_at"] is not None]
    live = [i for i, m in meetings.items() if m["closed_at"] is None]
    out = _frozen_rows(store, closed)
    check_ins, excuses = _check_ins(store, live), _excuses(store, live)
    for i in live:
        m = meetings[i]
        out[i] = _live_rows(store, m, check_ins[i], excuses[i], ended=moment >= _moment(m["ends_at"]),
                            late_after_min=late_after_min)
    return out


# -- writing -------------------------------------------------------------------------------------------------------

def _reason(reason: str | None) -> str:
    if reason not in REASONS:
        raise RegistryError(f"bad reason {reason!r}: one of {', '.join(REASONS)}")
    return reason


def _check_member(store: Store, member: str) -> str:
    member = check_id("member", member)
    if store.scalar("SELECT 1 FROM members WHERE id = ?", [member]) is None:
        raise NotFound(f"no member {member}")
    return member


def record_excuse(store: Store, meeting_id: str, member: str, reason: str, note: str | None, *, by: str,
                  now: datetime | str | None = None, late_after_min: int = 15, remote: str | None = None) -> dict[str, Any]:
    """Record why ``member`` is absent; after the close this is an amendment to ``excused`` ({"amended": True})."""
    meeting_id, reason, note = check_id("meeting", meeting_id), _reason(reason), membership.check_note(note)
    with store.transaction() as db:
        m = _meeting(store, meeting_id)
        member = _check_member(store, member)
        if m["closed_at"] is not None:
            amend(store, meeting_id, member, "excused", reason, note, by=by, remote=remote)
            return {"amended": True}
        checked = store.row("SELECT checked_in_at FROM attendance WHERE meeting = ? AND member = ?", [meeting_id, member])
        if checked is not None:
            raise RegistryError(f"member {member} checked in to meeting {meeting_id} at {checked['checked_in_at']}: "
                                "an excuse is only for an absence")
        day = meeting_day(m["starts_at"])
        if member not in {e["member"] for e in membership.expected_members(store, m["cell"], day)}:
            raise RegistryError(f"member {member} was not a member of cell {m['cell']} on {day}: "
                                f"not expected at meeting {meeting_id}")
        db.execute(
            "INSERT INTO absence_excuses (meeting, member, reason, note, recorded_by, recorded_at) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(meeting, member) DO UPDATE SET reason = excluded.reason, note = excluded.note, "
            "recorded_by = excluded.recorded_by, recorded_at = excluded.recorded_at",
            [meeting_id, member, reason, note, by, utc_now()])
        audit.record(store, by, "attendance.excuse", {"meeting": meeting_id, "member": member, "reason": reason,
                                                      "note": note}, remote)
    return {"amended": False}


def close(store: Store, meeting_id: str, *, by: str, now: datetime | str | None = None,
          late_after_min: int = 15, remote: str | None = None) -> dict[str, Any]:
    """Freeze the meeting's sheet: a member not checked in and not excused by now is unexcused. Returns the sheet."""
    meeting_id, moment = check_id("meeting", meeting_id), _moment(now)
    with store.transaction() as db:
        m = _meeting(store, meeting_id)
        if m["closed_at"] is not None:
            raise Conflict(f"meeting {meeting_id} was closed at {m['closed_at']} by {m['closed_by']}: "
                           "record an amendment instead")
        if moment < _moment(m["starts_at"]):
            raise RegistryError(f"meeting {meeting_id} starts at {m['starts_at']}: it can be closed once it has started")
        rows = _live_rows(store, m, _check_ins(store, [meeting_id])[meeting_id], _excuses(store, [meeting_id])[meeting_id],
                          ended=True, late_after_min=late_after_min)
        db.conn.executemany(
            "INSERT INTO meeting_sheet (meeting, member, expected, standing, status, reason, checked_in_at, minutes_late, "
            "device, seq, hash, override, status_now, reason_now) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(meeting_id, r["member"], int(r["expected"]), r["standing"], r["status"], r["reason"], r["checked_in_at"],
              r["minutes_late"], r["device"], r["seq"], r["hash"], r["override_by"], r["status"], r["reason"])
             for r in rows])
        closed_at = _text(moment)
        db.execute("UPDATE meetings SET closed_at = ?, closed_by = ? WHERE id = ?", [closed_at, by, meeting_id])
        _write_totals(store, m, rows, amendments=0)
        t = totals(rows)
        audit.record(store, by, "attendance.close", {"meeting": meeting_id, "expected": t["expected"],
                                                     "attended": t["attended"], "excused": t["excused"],
                                                     "unexcused": t["unexcused"]}, remote)
    return sheet(store, meeting_id, now=moment, late_after_min=late_after_min)


def _write_totals(store: Store, m: dict[str, Any], rows: list[dict[str, Any]], *, amendments: int) -> None:
    t = totals(rows)
    store.db.execute(
        "INSERT INTO meeting_totals (meeting, cell, commune_code, province_code, day, expected, present, late, excused, "
        "unexcused, overrides, not_expected, amendments) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT(meeting) DO UPDATE SET expected = excluded.expected, present = excluded.present, "
        "late = excluded.late, excused = excluded.excused, unexcused = excluded.unexcused, "
        "overrides = excluded.overrides, not_expected = excluded.not_expected, amendments = excluded.amendments",
        [m["id"], m["cell"], m["commune_code"], m["province_code"], meeting_day(m["starts_at"]), t["expected"],
         t["present"], t["late"], t["excused"], t["unexcused"], t["overrides"], t["not_expected"], amendments])


def amend(store: Store, meeting_id: str, member: str, status: str, reason: str | None, note: str | None, *,
          by: str, remote: str | None = None) -> dict[str, Any]:
    """Change a closed meeting's status of ``member`` (``status_now``); the close's own status stays. Returns the sheet."""
    meeting_id, note = check_id("meeting", meeting_id), membership.check_note(note)
    if status not in STATUSES:
        raise RegistryError(f"bad status {status!r}: one of {', '.join(STATUSES)}")
    reason = reason or None
    if status == "excused":
        reason = _reason(reason)
    elif reason is not None:
        raise RegistryError(f"a reason goes with 'excused' only, not {status!r}: say why in the note")
    with store.transaction() as db:
        m = _meeting(store, meeting_id)
        member = _check_member(store, member)
        if m["closed_at"] is None:
            raise RegistryError(f"meeting {meeting_id} is not closed yet: record an excuse instead "
                                "(amendments change a closed meeting's sheet)")
        row = store.row("SELECT expected, status_now, reason_now FROM meeting_sheet WHERE meeting = ? AND member = ?",
                        [meeting_id, member])
        if row is None:
            raise RegistryError(f"member {member} is not on meeting {meeting_id}'s sheet: "
                                "not a member of its cell that day and not checked in")
        if row["status_now"] == status and (row["reason_now"] or None) == reason:
            raise RegistryError(f"member {member} is already {status} at meeting {meeting_id}")
        if not row["expected"] and status in ("excused", "unexcused"):
            raise RegistryError(f"member {member} was not expected at meeting {meeting_id}: only present or late")
        at = utc_now()
        db.execute("INSERT INTO attendance_amendments (meeting, member, from_status, to_status, reason, note, recorded_by, "
                   "recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   [meeting_id, member, row["status_now"], status, reason, note, by, at])
        db.execute("UPDATE meeting_sheet SET status_now = ?, reason_now = ?, amended_at = ? WHERE meeting = ? AND member = ?",
                   [status, reason, at, meeting_id, member])
        rows = _frozen_rows(store, [meeting_id])[meeting_id]
        count = store.scalar("SELECT COUNT(*) FROM attendance_amendments WHERE meeting = ?", [meeting_id])
        _write_totals(store, m, rows, amendments=count)
        audit.record(store, by, "attendance.amend", {"meeting": meeting_id, "member": member,
                                                     "from": row["status_now"], "to": status, "reason": reason,
                                                     "note": note}, remote)
    return sheet(store, meeting_id)


def close_due(store: Store, *, now: datetime | str | None = None, after_h: float = 72, late_after_min: int = 15,
              limit: int = CLOSE_DUE_BATCH) -> list[str]:
    """Close meetings that ended more than ``after_h`` hours ago and nobody closed (oldest first, at most ``limit``).

    They are closed now, by ``central (auto)``, so their figures freeze even when nobody remembers to close them
    (a member not checked in and not excused is unexcused). Returns the ids closed; the service calls this again
    while it returns ``limit`` ids.
    """
    moment = _moment(now)
    due = store.rows("SELECT id, ends_at FROM meetings WHERE closed_at IS NULL AND ends_at <= ? ORDER BY ends_at, id LIMIT ?",
                     [(moment - timedelta(hours=after_h)).strftime("%Y-%m-%dT%H:%M:%SZ"), limit])  # as meetings store times
    closed = []
    for m in due:
        try:
            close(store, m["id"], by=AUTO_CLOSER, now=moment, late_after_min=late_after_min)
        except Conflict:
            continue  # closed by a secretary meanwhile
        except CentralError as exc:  # one meeting central cannot close must not hold back the others
            log.warning("could not close meeting %s automatically: %s", m["id"], exc)
            continue
        closed.append(m["id"])
    return closed
