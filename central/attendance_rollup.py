"""Attendance rolled up: a cell over a window, a commune or a province over a year, a member's year, early warnings.

Closed meetings are read from ``meeting_totals`` (one row per meeting, counts from ``status_now``, so a late excuse
entered as an amendment is in them) and, for per-member figures, from ``meeting_sheet``. Meetings that have ended but
are not closed yet count too, from their live sheet (``attendance_sheet.statuses``): a committee reading the page
before the secretary closed last night's meeting still sees it. Meetings not ended and not closed are left out (their
absentees are still "pending"). Counts are summed first and divided last: a roll-up's rate is never an average of
rates, so a cell of 40 weighs more than a cell of 5.

Province scale (10,000 cells, 120,000 meetings a year) is why area figures are GROUP BYs over ``meeting_totals``
(indexes ``meeting_totals_commune``/``_province``) and never a loop over meetings in Python.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import vietnam_provinces

from . import attendance_sheet, membership
from .attendance_sheet import Rules
from .errors import NotFound, RegistryError
from .registry import check_id
from .store import Store

HALL_ZONE = ZoneInfo("Asia/Ho_Chi_Minh")  # a meeting's day is the halls' date, not UTC's
COUNTS = attendance_sheet.COUNT_KEYS

LEVELS = ("commune", "province")
MIN_YEAR, MAX_YEAR = 2000, 2100
Levels = Rules  # the settings roll-ups read (its first name here; the exports import it)
DEFAULT_RULES = Rules()
MAX_WINDOW_DAYS = 366 * 5  # a cell page over five years is already more than anyone reads
# meeting_totals' columns summed as T's counts (pending is never frozen: 0 there)
_SUMS = ", ".join(f"SUM(t.{c}) AS {c}" for c in COUNTS if c != "pending")


# ---- checking what a caller asks for -------------------------------------------------------------------------------

def check_year(year: int | str) -> int:
    try:
        value = int(str(year).strip())
    except ValueError:
        raise RegistryError(f"bad year {year!r}: a number from {MIN_YEAR} to {MAX_YEAR}") from None
    if not MIN_YEAR <= value <= MAX_YEAR:
        raise RegistryError(f"bad year {year!r}: a number from {MIN_YEAR} to {MAX_YEAR}")
    return value


def check_month(month: str, year: int | None = None) -> str:
    text = (month or "").strip()
    try:
        parsed = datetime.strptime(text + "-01", "%Y-%m-%d").date() if len(text) == 7 else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.strftime("%Y-%m") != text:
        raise RegistryError(f"bad month {month!r}: expected YYYY-MM")
    check_year(parsed.year)
    if year is not None and parsed.year != year:
        raise RegistryError(f"month {text} is not in year {year}")
    return text


def check_window(date_from: str, date_to: str) -> tuple[str, str]:
    start, end = membership.check_date(date_from, "from date"), membership.check_date(date_to, "to date")
    check_year(start[:4]), check_year(end[:4])
    if end < start:
        raise RegistryError(f"the window ends ({end}) before it starts ({start})")
    if (date.fromisoformat(end) - date.fromisoformat(start)).days > MAX_WINDOW_DAYS:
        raise RegistryError(f"a window is at most {MAX_WINDOW_DAYS} days")
    return start, end


def today(now: datetime | None = None) -> date:
    return (now or datetime.now(UTC)).astimezone(HALL_ZONE).date()


# ---- totals ----------------------------------------------------------------------------------------------------------

def empty() -> dict[str, int]:
    return dict.fromkeys(COUNTS, 0)


def add(into: dict[str, int], other: dict[str, Any]) -> dict[str, int]:
    for c in COUNTS:
        into[c] += int(other.get(c) or 0)
    return into


def finish(counts: dict[str, Any]) -> dict[str, Any]:
    """T of summed counts: ``attended`` and both rates, divided once (central/attendance_sheet.py's own)."""
    return attendance_sheet.with_rates(counts)


def count_row(row: dict[str, Any]) -> dict[str, int]:
    """One sheet row as counts, as a meeting's totals count it: an expected member under their status, a member
    present who was not expected only as ``not_expected``; an override wherever a check-in was confirmed."""
    t = attendance_sheet.totals([row])
    return {c: t[c] for c in COUNTS}


# ---- time ------------------------------------------------------------------------------------------------------------

def _utc(day: date) -> str:
    """The halls' midnight starting ``day``, as meetings.starts_at is written (ISO UTC, seconds, Z)."""
    local = datetime(day.year, day.month, day.day, tzinfo=HALL_ZONE)
    return local.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def starts_between(date_from: str, date_to: str) -> tuple[str, str]:
    """[first, last) UTC bounds of ``starts_at`` for meetings whose local day lies in [date_from, date_to]."""
    return _utc(date.fromisoformat(date_from)), _utc(date.fromisoformat(date_to) + timedelta(days=1))


def _now_text(now: datetime | None) -> str:
    return (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def months_of(date_from: str, date_to: str) -> list[str]:
    y, m = int(date_from[:4]), int(date_from[5:7])
    out = []
    while f"{y:04d}-{m:02d}" <= date_to[:7]:
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def _year_window(year: int) -> tuple[str, str]:
    return f"{year:04d}-01-01", f"{year:04d}-12-31"


# ---- live meetings (ended, not closed) -------------------------------------------------------------------------------

def _live(store: Store, meeting_ids: list[str], now: datetime | None, levels: Rules) -> dict[str, list[dict[str, Any]]]:
    if not meeting_ids:
        return {}
    return attendance_sheet.statuses(store, meeting_ids, now=now, late_after_min=levels.late_after_min)


def _live_totals(rows: Iterable[dict[str, Any]]) -> dict[str, int]:
    c = empty()
    for r in rows:
        add(c, count_row(r))
    return c


def _unclosed_ended(store: Store, where: str, params: list[Any], first: str, last: str, now: str) -> list[dict[str, Any]]:
    """Meetings of the cells ``where`` selects (alias c), started in [first, last), ended by ``now``, not closed."""
    # CROSS JOIN keeps meetings first (SQLite never reorders it): the few open ones come from the partial index
    # meetings_open, instead of every meeting of every cell of a province being read to find them.
    return store.rows(
        "SELECT m.id, m.cell, m.title, m.starts_at FROM meetings m CROSS JOIN cells c ON c.id = m.cell "
        f"WHERE m.closed_at IS NULL AND m.starts_at >= ? AND m.starts_at < ? AND m.ends_at <= ? AND {where} "
        "ORDER BY m.starts_at, m.id", [first, last, now, *params])


# ---- a cell ----------------------------------------------------------------------------------------------------------

def _cell(store: Store, cell: str) -> dict[str, Any]:
    cell = check_id("cell", cell)
    found = store.row("SELECT id, name, commune, commune_code, province, province_code FROM cells WHERE id = ?", [cell])
    if found is None:
        raise NotFound(f"no cell {cell}")
    return found


def _member_row(into: dict[str, dict[str, Any]], r: dict[str, Any], day: str) -> None:
    entry = into.setdefault(r["member"], {"member": r["member"], "name": r["name"], "standing": None, "meetings": 0,
                                          "counts": empty(), "_day": ""})
    add(entry["counts"], count_row(r))
    if r.get("expected", True):
        entry["meetings"] += 1
        if day >= entry["_day"]:  # the standing of the latest meeting they were expected at
            entry["standing"], entry["_day"] = r.get("standing"), day


def cell_attendance(store: Store, cell: str, *, date_from: str | None = None, date_to: str | None = None,
                    now: datetime | None = None, levels: Rules = DEFAULT_RULES) -> dict[str, Any]:
    """A cell's page: its meetings in [date_from, date_to] (local days; default this year so far), by month, by member,
    members below ``levels.low_rate_threshold`` and this year's early warnings among its members."""
    info = _cell(store, cell)
    this_day = today(now)
    date_from = date_from or f"{this_day.year:04d}-01-01"
    date_to = date_to or this_day.isoformat()
    date_from, date_to = check_window(date_from, date_to)
    first, last = starts_between(date_from, date_to)
    meetings = store.rows(
        "SELECT m.id, m.title, m.starts_at, t.meeting IS NOT NULL AS closed, t.day, t.expected, t.present, t.late, "
        "t.excused, t.unexcused, t.overrides, t.not_expected FROM meetings m "
        "LEFT JOIN meeting_totals t ON t.meeting = m.id "
        "WHERE m.cell = ? AND m.starts_at >= ? AND m.starts_at < ? AND (m.closed_at IS NOT NULL OR m.ends_at <= ?) "
        "ORDER BY m.starts_at, m.id", [info["id"], first, last, _now_text(now)])
    live = _live(store, [m["id"] for m in meetings if not m["closed"]], now, levels)
    # Members' figures: the frozen rows (status_now) of the closed meetings, the live rows of the others.
    closed_ids = [m["id"] for m in meetings if m["closed"]]
    day_of = {}
    members: dict[str, dict[str, Any]] = {}
    out_meetings, months = [], {mo: {"month": mo, "meetings": 0, "counts": empty()} for mo in months_of(date_from, date_to)}
    total = empty()
    for m in meetings:
        day = m["day"] or attendance_sheet.meeting_day(m["starts_at"])
        day_of[m["id"]] = day
        counts = add(empty(), m) if m["closed"] else _live_totals(live.get(m["id"], []))
        if not m["closed"]:
            for r in live.get(m["id"], []):
                _member_row(members, r, day)
        out_meetings.append({"id": m["id"], "title": m["title"], "day": day, "closed": bool(m["closed"]),
                             "totals": finish(counts)})
        add(total, counts)
        month = months.get(day[:7])
        if month is not None:
            month["meetings"] += 1
            add(month["counts"], counts)
    for r in _frozen_rows(store, closed_ids):
        _member_row(members, r, day_of[r["meeting"]])
    listed = sorted((e for e in members.values() if e["meetings"] > 0), key=lambda e: (e["name"] or "", e["member"]))
    member_out = [{"member": e["member"], "name": e["name"], "standing": e["standing"], "meetings": e["meetings"],
                   "totals": finish(e["counts"])} for e in listed]
    below = [e for e in member_out if e["totals"]["rate"] is not None and e["totals"]["rate"] < levels.low_rate_threshold]
    return {
        "cell": info, "from": date_from, "to": date_to, "totals": finish(total), "meetings": out_meetings,
        "months": [{"month": mo["month"], "meetings": mo["meetings"], "totals": finish(mo["counts"])} for mo in months.values()],
        "members": member_out, "below": below, "threshold": levels.low_rate_threshold,
        "warnings": warnings(store, year=int(date_to[:4]), cell=info["id"], now=now, levels=levels)["members"],
    }


def _frozen_rows(store: Store, meeting_ids: list[str]) -> list[dict[str, Any]]:
    """Closed meetings' sheet rows as they stand now (``status_now``), with the members' names."""
    out: list[dict[str, Any]] = []
    for chunk in attendance_sheet.chunks(meeting_ids):
        out += store.rows(
            "SELECT s.meeting, s.member, m.name, s.standing, s.expected, s.status_now AS status, s.override "
            f"FROM meeting_sheet s JOIN members m ON m.id = s.member WHERE s.meeting IN ({','.join('?' * len(chunk))})",
            chunk)
    return out


# ---- a commune or a province ----------------------------------------------------------------------------------------

def _area(store: Store, level: str, code: int | str) -> tuple[dict[str, Any], str, list[Any]]:
    """The area's description, and the SQL condition (on cells, alias c) with its parameters that select its cells."""
    if level not in LEVELS:
        raise RegistryError(f"bad level {level!r}: one of {', '.join(LEVELS)}")
    text = str(code).strip()
    if not (text.isascii() and text.isdigit() and 0 < len(text) <= 9 and int(text) > 0):
        # an area's id is its official code: anything else names no area
        raise NotFound(f"no {level} {text[:20]!r}: an area is named by its official code, a number")
    code = int(text)
    if level == "commune":
        named = store.row("SELECT commune AS name, province, province_code FROM cells "
                          "WHERE province_code = ? AND commune_code = ? LIMIT 1", [_province_of(code), code])
        if named is None:
            named = _official("commune", code)
        return ({"level": level, "code": code, **named}, "c.province_code = ? AND c.commune_code = ?",
                [named["province_code"], code])
    named = store.row("SELECT province AS name, province, province_code FROM cells WHERE province_code = ? LIMIT 1", [code])
    if named is None:
        named = _official("province", code)
    return {"level": level, "code": code, **named}, "c.province_code = ?", [code]


def _province_of(commune_code: int) -> int | None:
    try:
        return int(vietnam_provinces.Ward.from_code(vietnam_provinces.WardCode(commune_code)).province_code)
    except ValueError:
        return None


def _official(level: str, code: int) -> dict[str, Any]:
    """The official names of an area no cell is in yet (central/regions.py's list); NotFound if the code is not in it."""
    try:
        if level == "commune":
            ward = vietnam_provinces.Ward.from_code(vietnam_provinces.WardCode(code))
            prov = vietnam_provinces.Province.from_code(ward.province_code)
            return {"name": ward.name, "province": prov.name, "province_code": int(prov.code)}
        prov = vietnam_provinces.Province.from_code(vietnam_provinces.ProvinceCode(code))
        return {"name": prov.name, "province": prov.name, "province_code": int(prov.code)}
    except ValueError:
        raise NotFound(f"no {level} {code}: no cell is in it and it is not in the list of communes and provinces") from None


def _rank(items: list[dict[str, Any]], name: str = "name") -> list[dict[str, Any]]:
    """Rate high to low, no rate last, then by name."""
    return sorted(items, key=lambda x: (x["totals"]["rate"] is None, -(x["totals"]["rate"] or 0), x[name] or "", x.get("id") or x.get("code")))


def area_attendance(store: Store, level: str, code: int | str, *, year: int, month: str | None = None,
                    now: datetime | None = None, levels: Rules = DEFAULT_RULES) -> dict[str, Any]:
    """A commune's or a province's year: totals, months, its cells ranked (and its communes, for a province), and the
    cells that did not meet in ``month`` (default: this month in this year, December in a past year)."""
    year = check_year(year)
    this_day = today(now)
    if month is None:
        month = f"{year:04d}-{this_day.month:02d}" if year == this_day.year else f"{year:04d}-12"
    month = check_month(month, year)
    area, where, params = _area(store, level, code)
    date_from, date_to = _year_window(year)
    first, last = starts_between(date_from, date_to)
    column = "t.commune_code" if level == "commune" else "t.province_code"
    cells = store.rows(f"SELECT c.id, c.name, c.commune, c.commune_code FROM cells c WHERE {where} ORDER BY c.id", params)
    per_cell = {r["cell"]: r for r in store.rows(
        f"SELECT t.cell, COUNT(*) AS meetings, {_SUMS} FROM meeting_totals t "
        f"WHERE {column} = ? AND t.day BETWEEN ? AND ? GROUP BY t.cell", [area["code"], date_from, date_to])}
    per_month = {r["month"]: r for r in store.rows(
        f"SELECT substr(t.day, 1, 7) AS month, COUNT(*) AS meetings, {_SUMS} FROM meeting_totals t "
        f"WHERE {column} = ? AND t.day BETWEEN ? AND ? GROUP BY month", [area["code"], date_from, date_to])}
    cell_counts = {c["id"]: add(empty(), per_cell.get(c["id"], {})) for c in cells}
    cell_meetings = {c["id"]: int(per_cell.get(c["id"], {}).get("meetings") or 0) for c in cells}
    month_counts = {mo: add(empty(), per_month.get(mo, {})) for mo in months_of(date_from, date_to)}
    month_meetings = {mo: int(per_month.get(mo, {}).get("meetings") or 0) for mo in month_counts}
    total = empty()
    for r in per_month.values():
        add(total, r)
    unclosed = _unclosed_ended(store, where, params, first, last, _now_text(now))
    live = _live(store, [m["id"] for m in unclosed], now, levels)
    for m in unclosed:
        counts, mo = _live_totals(live.get(m["id"], [])), attendance_sheet.meeting_day(m["starts_at"])[:7]
        add(total, counts), add(month_counts[mo], counts)
        month_meetings[mo] += 1
        if m["cell"] in cell_counts:
            add(cell_counts[m["cell"]], counts)
            cell_meetings[m["cell"]] += 1
    month_first, month_last = starts_between(f"{month}-01", f"{month}-{calendar.monthrange(year, int(month[5:]))[1]:02d}")
    met = {r["cell"] for r in store.rows(
        f"SELECT DISTINCT m.cell FROM cells c JOIN meetings m ON m.cell = c.id WHERE {where} "
        "AND m.starts_at >= ? AND m.starts_at < ? AND m.starts_at <= ?",
        [*params, month_first, month_last, _now_text(now)])}
    out_cells = _rank([{"id": c["id"], "name": c["name"], "commune": c["commune"], "commune_code": c["commune_code"],
                        "meetings": cell_meetings[c["id"]], "totals": finish(cell_counts[c["id"]]),
                        "met_in_month": c["id"] in met} for c in cells])
    answer: dict[str, Any] = {
        "area": area, "year": year, "month": month, "totals": finish(total),
        "months": [{"month": mo, "meetings": month_meetings[mo], "totals": finish(c)} for mo, c in month_counts.items()],
        "cells": out_cells,
        "not_met": [{"id": c["id"], "name": c["name"], "commune": c["commune"]}
                    for c in sorted(cells, key=lambda c: (c["name"] or "", c["id"])) if c["id"] not in met],
    }
    if level == "province":
        communes: dict[Any, dict[str, Any]] = {}
        for c in cells:
            entry = communes.setdefault(c["commune_code"], {"code": c["commune_code"], "name": c["commune"], "cells": 0,
                                                            "counts": empty()})
            entry["cells"] += 1
            add(entry["counts"], cell_counts[c["id"]])
        answer["communes"] = _rank([{"code": e["code"], "name": e["name"], "cells": e["cells"], "totals": finish(e["counts"])}
                                    for e in communes.values()])
    return answer


# ---- a member ----------------------------------------------------------------------------------------------------------

def member_attendance(store: Store, member: str, *, year: int, now: datetime | None = None,
                      levels: Rules = DEFAULT_RULES) -> dict[str, Any]:
    """A member's year, in every cell they belonged to: each meeting they were expected at, totals, warning, history."""
    member = check_id("member", member)
    year = check_year(year)
    info = store.row("SELECT m.id, m.name, m.cell, c.name AS cell_name FROM members m LEFT JOIN cells c ON c.id = m.cell "
                     "WHERE m.id = ?", [member])
    if info is None:
        raise NotFound(f"no member {member}")
    date_from, date_to = _year_window(year)
    first, last = starts_between(date_from, date_to)
    rows = store.rows(
        "SELECT s.meeting, mt.title, t.day, mt.cell, c.name AS cell_name, s.expected, s.standing, "
        "s.status_now AS status, s.checked_in_at, s.minutes_late, s.reason_now AS reason, s.override "
        "FROM meeting_sheet s JOIN meeting_totals t ON t.meeting = s.meeting JOIN meetings mt ON mt.id = s.meeting "
        "JOIN cells c ON c.id = mt.cell WHERE s.member = ? AND t.day BETWEEN ? AND ?", [member, date_from, date_to])
    # Unclosed meetings: those of every cell the member was ever in, then their live rows for this member.
    unclosed = _unclosed_ended(store, "c.id IN (SELECT cell FROM membership_events WHERE member = ?)", [member],
                               first, last, _now_text(now))
    live = _live(store, [m["id"] for m in unclosed], now, levels)
    names = {m["id"]: m for m in unclosed}
    cell_names = _cell_names(store, {m["cell"] for m in unclosed})
    for meeting_id, sheet_rows in live.items():
        for r in sheet_rows:
            if r["member"] == member:
                m = names[meeting_id]
                rows.append({**r, "meeting": meeting_id, "title": m["title"], "cell": m["cell"],
                             "cell_name": cell_names.get(m["cell"]), "day": attendance_sheet.meeting_day(m["starts_at"])})
    counts = empty()
    listed = []
    for r in sorted(rows, key=lambda r: (r["day"], r["meeting"])):
        add(counts, count_row(r))
        if r.get("expected", True):
            listed.append({"meeting": r["meeting"], "title": r["title"], "day": r["day"], "cell": r["cell"],
                           "cell_name": r["cell_name"], "status": r["status"], "checked_in_at": r.get("checked_in_at"),
                           "minutes_late": r.get("minutes_late"), "reason": r.get("reason"),
                           "reason_label": attendance_sheet.REASONS.get(r.get("reason") or "")})
    standing = store.scalar("SELECT kind FROM membership_events WHERE member = ? AND kind IN ('probationary', 'official') "
                            "ORDER BY at DESC, id DESC LIMIT 1", [member])
    found = warnings(store, year=year, member=member, now=now, levels=levels)["members"]
    return {"member": {"id": info["id"], "name": info["name"], "cell": info["cell"], "cell_name": info["cell_name"],
                       "standing": standing},
            "year": year, "totals": finish(counts), "meetings": listed, "warning": found[0] if found else None,
            "history": membership.history(store, member)}


def _cell_names(store: Store, cells: Iterable[str]) -> dict[str, str]:
    ids = sorted(set(cells))
    if not ids:
        return {}
    return {r["id"]: r["name"] for r in store.rows(f"SELECT id, name FROM cells WHERE id IN ({','.join('?' * len(ids))})", ids)}


# ---- early warnings ----------------------------------------------------------------------------------------------------

def warnings(store: Store, *, year: int, cell: str | None = None, commune_code: int | None = None,
             province_code: int | None = None, member: str | None = None, now: datetime | None = None,
             levels: Rules = DEFAULT_RULES, limit: int | None = None) -> dict[str, Any]:
    """Members whose unexcused absences in ``year``, summed over every cell they belonged to, reach the warning level
    (``rule`` from the rule level), most absences first. A filter (a cell, a commune or province code, a member) keeps
    the members who were expected at one of its meetings that year; their count still includes their other cells'
    meetings. ``limit``: list only the first so many (``count`` and ``by_level`` still tell them all): a province's
    page shows the first hundred of thousands and fetches the rest on demand."""
    year = check_year(year)
    date_from, date_to = _year_window(year)
    first, last = starts_between(date_from, date_to)
    now_text = _now_text(now)
    absences: list[dict[str, Any]] = []
    in_scope: set[str] | None = None
    if member is not None or cell is not None:
        # A few people: their rows through meeting_sheet_member, the unclosed meetings of the cells they were in.
        if member is not None:
            people = [check_id("member", member)]
        else:
            cell = _cell(store, cell)["id"]
            found = {r["member"] for r in store.rows(
                "SELECT DISTINCT s.member FROM meeting_totals t JOIN meeting_sheet s ON s.meeting = t.meeting "
                "WHERE t.cell = ? AND t.day BETWEEN ? AND ? AND s.expected = 1", [cell, date_from, date_to])}
            own = _unclosed_ended(store, "c.id = ?", [cell], first, last, now_text)
            for rows in _live(store, [m["id"] for m in own], now, levels).values():
                found |= {r["member"] for r in rows if r.get("expected", True)}
            people = sorted(found)
        in_scope = set(people)
        for chunk in attendance_sheet.chunks(people):
            marks = ",".join("?" * len(chunk))
            absences += _closed_absences(store, f"s.member IN ({marks})", chunk, date_from, date_to)
            unclosed = _unclosed_ended(store, f"c.id IN (SELECT cell FROM membership_events WHERE member IN ({marks}))",
                                       chunk, first, last, now_text)
            absences += _live_absences(store, unclosed, now, levels, set(chunk))
    else:
        area = None
        if commune_code is not None:
            area = ("commune_code", _area(store, "commune", commune_code)[0]["code"])
        elif province_code is not None:
            area = ("province_code", _area(store, "province", province_code)[0]["code"])
        unclosed = store.rows(
            "SELECT m.id, m.cell, m.title, m.starts_at, c.commune_code, c.province_code FROM meetings m "
            "JOIN cells c ON c.id = m.cell WHERE m.closed_at IS NULL AND m.starts_at >= ? AND m.starts_at < ? "
            "AND m.ends_at <= ?", [first, last, now_text])
        live = _live(store, [m["id"] for m in unclosed], now, levels)
        if area is not None:
            column, code = area
            counts, moved = _area_candidates(store, column, code, date_from, date_to)
            in_scope = set(counts) | moved
            for m in unclosed:
                if m[column] == code:
                    in_scope |= {r["member"] for r in live.get(m["id"], []) if r.get("expected", True)}
            live_absences = _live_absences(store, unclosed, now, levels, in_scope, live=live)
            for a in live_absences:
                counts[a["member"]] = counts.get(a["member"], 0) + 1
            # Counted first, listed after: only the members listed get their absences read and titled (a province
            # has tens of thousands of members with one absence, thousands at a level, and shows a hundred).
            counts = {m: n for m, n in counts.items() if n >= levels.absence_warn_level}
            listed = _order(store, counts, limit)
            for chunk in attendance_sheet.chunks(listed):
                absences += _closed_absences(store, f"s.member IN ({','.join('?' * len(chunk))})", chunk,
                                             date_from, date_to)
            absences += [a for a in live_absences if a["member"] in set(listed)]
            return _warned(store, year, levels, listed, absences, counts)
        absences = _closed_absences(store, "1 = 1", [], date_from, date_to)
        absences += _live_absences(store, unclosed, now, levels, in_scope, live=live)
    per_member: dict[str, int] = {}
    for a in absences:
        if in_scope is None or a["member"] in in_scope:
            per_member[a["member"]] = per_member.get(a["member"], 0) + 1
    counts = {m: n for m, n in per_member.items() if n >= levels.absence_warn_level}
    return _warned(store, year, levels, _order(store, counts, limit), absences, counts)


def _order(store: Store, counts: dict[str, int], limit: int | None) -> list[str]:
    """The flagged members, most absences first, then by name: the first ``limit`` of them (all without a limit)."""
    names: dict[str, str] = {}
    ids = sorted(counts)
    for chunk in attendance_sheet.chunks(ids):
        names |= {r["id"]: r["name"] for r in store.rows(
            f"SELECT id, name FROM members WHERE id IN ({','.join('?' * len(chunk))})", chunk)}
    ordered = sorted(ids, key=lambda m: (-counts[m], names.get(m) or "", m))
    return ordered if limit is None else ordered[:limit]


def _warned(store: Store, year: int, levels: Rules, listed: list[str], absences: list[dict[str, Any]],
            counts: dict[str, int]) -> dict[str, Any]:
    """The answer: ``listed`` members (in order) with their absences, and how many are flagged in all, by level."""
    chosen = set(listed)
    per_member: dict[str, list[dict[str, Any]]] = {}
    for a in absences:
        if a["member"] in chosen:
            per_member.setdefault(a["member"], []).append(a)
    people_by_id = {r["id"]: r for r in _members(store, listed)}
    rule = sum(1 for n in counts.values() if n >= levels.absence_rule_level)
    out = []
    for member_id in listed:
        found_rows, p = per_member.get(member_id, []), people_by_id.get(member_id, {})
        out.append({"member": member_id, "name": p.get("name"), "cell": p.get("cell"), "cell_name": p.get("cell_name"),
                    "unexcused": len(found_rows),
                    "level": "rule" if len(found_rows) >= levels.absence_rule_level else "warning",
                    "meetings": [{"meeting": a["meeting"], "title": a["title"], "day": a["day"]}
                                 for a in sorted(found_rows, key=lambda a: (a["day"], a["meeting"]))]})
    return {"year": year, "warn_level": levels.absence_warn_level, "rule_level": levels.absence_rule_level,
            "count": len(counts), "by_level": {"warning": len(counts) - rule, "rule": rule}, "members": out}


def _area_candidates(store: Store, column: str, code: int, date_from: str, date_to: str) -> tuple[dict[str, int], set[str]]:
    """Who, expected at the area's closed meetings of the window, may reach a warning level, with their closed
    unexcused absences of the window: the members with one there (all their meetings were the area's, so that is
    their count), and those moved into or out of its cells in the window (counted over every cell, since their
    absences elsewhere count too). Anyone else expected there had no unexcused absence anywhere. Read through the
    partial indexes of unexcused rows, never the area's whole sheet (millions of rows for a province)."""
    moved = {r["member"] for r in store.rows(
        "SELECT DISTINCT e.member FROM cells c JOIN membership_events e ON e.cell = c.id "
        f"WHERE c.{column} = ? AND e.at BETWEEN ? AND ? AND e.kind IN ('transferred_in', 'transferred_out')",
        [code, date_from, date_to])}
    counts = {r["member"]: r["n"] for r in store.rows(
        "SELECT s.member, COUNT(*) AS n FROM meeting_totals t JOIN meeting_sheet s ON s.meeting = t.meeting "
        f"WHERE t.{column} = ? AND t.day BETWEEN ? AND ? AND t.unexcused > 0 "
        "AND s.status_now = 'unexcused' AND s.expected = 1 GROUP BY s.member", [code, date_from, date_to])
        if r["member"] not in moved}
    people = sorted(moved)
    expected_there: set[str] = set()
    for chunk in attendance_sheet.chunks(people):
        marks = ",".join("?" * len(chunk))
        # CROSS JOIN: each member's few rows (meeting_sheet_member) first, never the area's totals first
        expected_there |= {r["member"] for r in store.rows(
            "SELECT DISTINCT s.member FROM meeting_sheet s CROSS JOIN meeting_totals t ON t.meeting = s.meeting "
            f"WHERE s.member IN ({marks}) AND s.expected = 1 AND t.{column} = ? AND t.day BETWEEN ? AND ?",
            [*chunk, code, date_from, date_to])}
        counts |= {r["member"]: r["n"] for r in store.rows(
            "SELECT s.member, COUNT(*) AS n FROM meeting_sheet s CROSS JOIN meeting_totals t ON t.meeting = s.meeting "
            f"WHERE s.member IN ({marks}) AND s.status_now = 'unexcused' AND s.expected = 1 AND t.day BETWEEN ? AND ? "
            "GROUP BY s.member", [*chunk, date_from, date_to])}
    counts = {m: n for m, n in counts.items() if m not in moved or m in expected_there}
    return counts, expected_there


def _closed_absences(store: Store, where: str, params: list[Any], date_from: str, date_to: str) -> list[dict[str, Any]]:
    """Unexcused absences of expected members at closed meetings of [date_from, date_to], as they stand now
    (``status_now``: an excuse entered late as an amendment removes one)."""
    return store.rows(
        "SELECT s.member, s.meeting, t.day, mt.title FROM meeting_sheet s JOIN meeting_totals t ON t.meeting = s.meeting "
        f"JOIN meetings mt ON mt.id = s.meeting WHERE {where} AND t.day BETWEEN ? AND ? "
        "AND s.status_now = 'unexcused' AND s.expected = 1", [*params, date_from, date_to])


def _live_absences(store: Store, unclosed: list[dict[str, Any]], now: datetime | None, levels: Rules,
                   members: set[str] | None, *, live: dict[str, list[dict[str, Any]]] | None = None) -> list[dict[str, Any]]:
    """Unexcused absences at ended, unclosed meetings (their live sheets), of ``members`` (None: anyone)."""
    if live is None:
        live = _live(store, [m["id"] for m in unclosed], now, levels)
    out = []
    for m in unclosed:
        for r in live.get(m["id"], []):
            if r["status"] == "unexcused" and r.get("expected", True) and (members is None or r["member"] in members):
                out.append({"member": r["member"], "meeting": m["id"], "title": m["title"],
                            "day": attendance_sheet.meeting_day(m["starts_at"])})
    return out


def _members(store: Store, ids: Iterable[str]) -> list[dict[str, Any]]:
    ids = sorted(ids)
    out: list[dict[str, Any]] = []
    for chunk in attendance_sheet.chunks(ids):
        out += store.rows("SELECT m.id, m.name, m.cell, c.name AS cell_name FROM members m "
                          f"LEFT JOIN cells c ON c.id = m.cell WHERE m.id IN ({','.join('?' * len(chunk))})", chunk)
    return out
