"""May a verified record count as attendance? Member, cell, meeting, hall and time window, checked at ingest.

A kiosk's signature proves which kiosk made a record, not that what it claims
could have happened: a registered kiosk (or one whose key was stolen) can sign a
check-in for a member of another cell, for someone unknown, for a meeting that
does not exist or is held in another hall, or at a time outside the meeting. A
record that fails is still stored — the device's chain must stay whole, and it
is acknowledged like any other — but with the reason in ``records.not_counted``,
no ``attendance`` row (so it cannot pre-empt a valid later check-in: the first
*valid* check-in wins) and an alarm kept in ``rejections``.

Time window: [meeting start − ``attendance_early_s``, meeting end] (the kiosk
offers check-in in the same window by its own clock).
- When central trusts the record's placed time (``device-synced`` or
  ``boot-anchor``), that time must fall in the window.
- When it does not (clock unsynchronised, or ahead of central's), the record was
  made at some unknown moment before central received it: all central knows is
  that a record received before the window opened cannot belong to the meeting.
  Otherwise it counts, and its clock flag stays beside it. (Judging the kiosk's
  unverified wall clock instead would refuse honest check-ins from a Pi that
  booted with last week's time.)
The judgement is made once, when the record is stored; if a later boot anchor
re-places an unsynchronised record, its attendance time moves but its count stands.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from .clock_placement import (
    BOOT_ANCHOR,
    DEVICE_SYNCED,
    Executes,
    Placement,
    iso,
    parse_time,
)

TRUSTED = frozenset({DEVICE_SYNCED, BOOT_ANCHOR})
DEFAULT_EARLY_S = 1800.0


class RecordValidity:
    """Judges records inside the ingest transaction; ``begin``/``end`` bracket a batch's lookups cache."""

    def __init__(self, db: Executes, early_s: float = DEFAULT_EARLY_S):
        self.db, self.early = db, timedelta(seconds=early_s)
        self._meetings: dict[str, Any] | None = None
        self._cells: dict[str, str | None] | None = None

    def begin(self) -> None:
        self._meetings, self._cells = {}, {}

    def end(self) -> None:
        self._meetings = self._cells = None

    def _meeting(self, meeting: str) -> Any:
        if self._meetings is not None and meeting in self._meetings:
            return self._meetings[meeting]
        row = self.db.execute("SELECT cell, hall, starts_at, ends_at FROM meetings WHERE id = ?", [meeting]).fetchone()
        if self._meetings is not None:
            self._meetings[meeting] = row
        return row

    def _cell(self, member: str) -> str | None:
        if self._cells is not None and member in self._cells:
            return self._cells[member]
        row = self.db.execute("SELECT cell FROM members WHERE id = ?", [member]).fetchone()
        cell = None if row is None else row[0]
        if self._cells is not None:
            self._cells[member] = cell
        return cell

    def problem(self, *, member: str, meeting: str, device_hall: str | None, placement: Placement,
                received: datetime) -> str | None:
        """Why the record must not count as attendance, or None when it may."""
        m = self._meeting(meeting)
        if m is None:
            return f"meeting {meeting} does not exist"
        cell, hall, starts_at, ends_at = m
        member_cell = self._cell(member)
        if member_cell is None:
            return f"member {member} is not in the registry"
        if member_cell != cell:
            return f"member {member} belongs to cell {member_cell}, meeting {meeting} is of cell {cell}"
        if device_hall != hall:
            return f"meeting {meeting} is held in hall {hall}, the kiosk stands in hall {device_hall}"
        opens, closes = parse_time(starts_at), parse_time(ends_at)
        if opens is None or closes is None:
            return f"meeting {meeting} has unreadable times"
        opens -= self.early
        if placement.placed_by in TRUSTED:
            placed = parse_time(placement.placed_at)
            if placed is None or not opens <= placed <= closes:
                return f"checked in at {placement.placed_at}, outside meeting {meeting} (check-in {iso(opens)} to {iso(closes)})"
        elif received < opens:
            return f"received at {iso(received)}, before check-in for meeting {meeting} opens at {iso(opens)}"
        return None


def not_counted(store: Any, meeting: str) -> list[dict[str, Any]]:
    """Records stored for ``meeting`` that do not count as attendance, with why (oldest first)."""
    return store.rows(
        "SELECT r.device, r.seq, r.member, m.name, r.placed_at, r.not_counted AS reason FROM records r "
        "LEFT JOIN members m ON m.id = r.member WHERE r.meeting = ? AND r.not_counted IS NOT NULL ORDER BY r.received_at, r.seq",
        [meeting],
    )
