"""Members' history in cells, and who a cell expected at a meeting on a given date.

Attendance is counted against the members of the cell *on the meeting's date*: a member transferred
in June is expected at the old cell's meetings until then and at the new cell's from then on. An event
dated D takes effect on D (a member transferred on D belongs to the new cell on D). Events are only
ever appended, in date order per member: a change dated before the member's last event is refused,
since it would rewrite figures already reported.

Standing (probationary / official) is None until an event records it: members enrolled before this
history existed, or enrolled without it, have no recorded standing.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from .errors import NotFound, RegistryError
from .registry import check_id
from .store import Store, utc_now

CELL_KINDS = ("joined", "transferred_in")  # the member belongs to the event's cell from its date
GONE_KINDS = ("transferred_out", "left", "deceased")  # ... and no longer from its date
STANDINGS = ("probationary", "official")
LEAVE_REASONS = ("left", "deceased")
MAX_NOTE = 500  # a note typed by staff, not a document


def check_date(value: str | date, what: str = "date") -> str:
    """An ISO calendar date (YYYY-MM-DD) as text."""
    if isinstance(value, date):
        return value.isoformat()
    text = (value or "").strip()
    try:
        parsed = date.fromisoformat(text)
    except ValueError:
        raise RegistryError(f"bad {what} {value!r}: expected an ISO date, YYYY-MM-DD") from None
    if parsed.isoformat() != text:  # fromisoformat also takes 20260105 and 2026-W01-1
        raise RegistryError(f"bad {what} {value!r}: expected an ISO date, YYYY-MM-DD")
    return text


def check_note(note: str | None) -> str | None:
    """A staff note, stripped (None when blank); at most MAX_NOTE characters."""
    if note is None or not note.strip():
        return None
    if len(note) > MAX_NOTE:
        raise RegistryError(f"a note is at most {MAX_NOTE} characters")
    return note.strip()


def history(store: Store, member: str) -> list[dict[str, Any]]:
    """The member's events, oldest first."""
    member = check_id("member", member)
    if store.scalar("SELECT 1 FROM members WHERE id = ?", [member]) is None:
        raise NotFound(f"no member {member}")
    return store.rows("SELECT id, member, cell, at, kind, recorded_by, recorded_at, note FROM membership_events "
                      "WHERE member = ? ORDER BY at, id", [member])


def _state(events: list[dict[str, Any]]) -> tuple[str | None, str | None, str | None]:
    """(cell the member belongs to or None, standing, how they left) after ``events`` in order."""
    cell = standing = gone = None
    for e in events:
        if e["kind"] in CELL_KINDS:
            cell, gone = e["cell"], None
        elif e["kind"] in GONE_KINDS:
            cell, gone = None, e["kind"]
        elif e["kind"] in STANDINGS:
            standing = e["kind"]
    return cell, standing, gone


def _last_event(store: Store, member: str) -> dict[str, Any]:
    events = history(store, member)
    if not events:  # every member has one (the migration's seed, the enrolment trigger); say so if not
        raise RegistryError(f"member {member} has no membership history")
    return events[-1] | {"state": _state(events)}


def _check_order(member: str, last: dict[str, Any], on: str) -> None:
    if on < last["at"]:
        raise RegistryError(f"{on} is before {member}'s last membership event ({last['kind']} on {last['at']}): "
                            "history is only added to in date order")


def _append(store: Store, member: str, cell: str, on: str, kind: str, by: str, note: str | None) -> None:
    store.db.execute("INSERT INTO membership_events (member, cell, at, kind, recorded_by, recorded_at, note) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?)", [member, cell, on, kind, by, utc_now(), note])


def _current(store: Store, member: str, on: str) -> tuple[str, dict[str, Any]]:
    last = _last_event(store, member)
    cell, _, gone = last["state"]
    if cell is None:
        raise RegistryError(f"member {member} {gone.replace('_', ' ') if gone else 'left'} on {last['at']}; "
                            "nothing more can be recorded")
    _check_order(member, last, on)
    return cell, last


def transfer(store: Store, member: str, to_cell: str, on: str, *, by: str, note: str | None = None) -> str:
    """Move ``member`` to ``to_cell`` from date ``on``; returns the cell they left."""
    member, to_cell, on, note = check_id("member", member), check_id("cell", to_cell), check_date(on), check_note(note)
    with store.transaction() as db:
        if store.scalar("SELECT 1 FROM cells WHERE id = ?", [to_cell]) is None:
            raise NotFound(f"no cell {to_cell}")
        from_cell, _ = _current(store, member, on)
        if from_cell == to_cell:
            raise RegistryError(f"member {member} already belongs to {to_cell}")
        _append(store, member, from_cell, on, "transferred_out", by, note)
        _append(store, member, to_cell, on, "transferred_in", by, note)
        # after the events, so the re-enrolment trigger sees the move already recorded
        db.execute("UPDATE members SET cell = ?, updated_at = ? WHERE id = ?", [to_cell, utc_now(), member])
        store.bump_bundle_version()  # the kiosks' rosters are per cell
    return from_cell


def set_standing(store: Store, member: str, standing: str, on: str, *, by: str, note: str | None = None) -> None:
    """Record that ``member`` is probationary or official from date ``on``."""
    member, on, note = check_id("member", member), check_date(on), check_note(note)
    if standing not in STANDINGS:
        raise RegistryError(f"bad standing {standing!r}: one of {', '.join(STANDINGS)}")
    with store.transaction():
        cell, last = _current(store, member, on)
        if last["state"][1] == standing:
            raise RegistryError(f"member {member} is already {standing}")
        _append(store, member, cell, on, standing, by, note)


def leave(store: Store, member: str, reason: str, on: str, *, by: str, note: str | None = None) -> str:
    """Record that ``member`` left the Party or died on date ``on``; returns their last cell.

    The member stays in the registry (their past attendance keeps its name); they are not expected after ``on``.
    """
    member, on, note = check_id("member", member), check_date(on), check_note(note)
    if reason not in LEAVE_REASONS:
        raise RegistryError(f"bad reason {reason!r}: one of {', '.join(LEAVE_REASONS)}")
    with store.transaction():
        cell, _ = _current(store, member, on)
        _append(store, member, cell, on, reason, by, note)
    return cell


def expected_members(store: Store, cell: str, on_date: str | date) -> list[dict[str, Any]]:
    """The members of ``cell`` on ``on_date``, by id: ``{"member", "name", "standing", "since"}``.

    ``since`` is the date they (last) joined or transferred into the cell; ``standing`` is
    probationary, official or None (not recorded).
    """
    cell, on = check_id("cell", cell), check_date(on_date)
    if store.scalar("SELECT 1 FROM cells WHERE id = ?", [cell]) is None:
        raise NotFound(f"no cell {cell}")
    rows = store.rows(
        "SELECT e.member, e.cell, e.at, e.kind, m.name FROM membership_events e JOIN members m ON m.id = e.member "
        "WHERE e.member IN (SELECT DISTINCT member FROM membership_events WHERE cell = ? AND at <= ?) AND e.at <= ? "
        "ORDER BY e.member, e.at, e.id", [cell, on, on])
    by_member: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_member.setdefault(r["member"], []).append(r)
    found = []
    for member, events in by_member.items():
        now_in, standing, _ = _state(events)
        if now_in == cell:
            since = next(e["at"] for e in reversed(events) if e["kind"] in CELL_KINDS)
            found.append({"member": member, "name": events[0]["name"], "standing": standing, "since": since})
    return found


def set_joined(store: Store, member: str, on: str, *, by: str) -> None:
    """Date a member's joining (enrolment records the day it happened) while nothing else is recorded for them.

    Once a later event exists, moving the start would change figures already built on it: refused.
    """
    member, on = check_id("member", member), check_date(on)
    with store.transaction() as db:
        events = history(store, member)
        if len(events) != 1 or events[0]["kind"] != "joined":
            raise RegistryError(f"member {member} has more history than a join: its join date can no longer change")
        db.execute("UPDATE membership_events SET at = ?, recorded_by = ?, recorded_at = ?, note = ? WHERE id = ?",
                   [on, by, utc_now(), f"đặt lại ngày vào (trước là {events[0]['at']}) / join date set (was {events[0]['at']})", events[0]["id"]])
