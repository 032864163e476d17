"""What the staff read about a meeting's attendance: who is present and how each was proven, who is absent,
and how many check-ins a secretary confirmed instead of the face check (overrides)."""

from __future__ import annotations

import json
from typing import Any

from . import membership
from .attendance_sheet import meeting_day
from .store import Store


def present(store: Store, meeting_id: str) -> list[dict[str, Any]]:
    """Counted check-ins of ``meeting_id`` in time order, with their proof; an override names its officer."""
    out = []
    for r in store.rows(
        "SELECT a.member, a.device, a.seq, a.checked_in_at, m.name, m.cell, r.body, r.device_wall, r.placed_by, r.clock_flag "
        "FROM attendance a "
        "LEFT JOIN members m ON m.id = a.member LEFT JOIN records r ON r.device = a.device AND r.seq = a.seq "
        "WHERE a.meeting = ? ORDER BY a.checked_in_at, a.member",
        [meeting_id],
    ):
        proof = json.loads(r["body"])["proof"] if r["body"] else {}
        out.append({
            "member_id": r["member"],
            "name": r["name"],  # None: a record for someone no longer (or not yet) in the registry
            "cell": r["cell"],
            "checked_in_at": r["checked_in_at"],  # where central placed the record in time
            "device_time": r["device_wall"],  # what the kiosk's clock said
            "placed_by": r["placed_by"],
            "clock_flag": r["clock_flag"],  # None, or why the time deserves doubt
            "device": r["device"],
            "seq": r["seq"],
            "card_kind": proof.get("card_kind"),
            "face_distance": proof.get("face_distance"),
            "liveness": proof.get("liveness"),
            "override": proof.get("override"),  # the officer's member id when a secretary confirmed the member
            "override_reason": proof.get("override_reason"),  # the face check that failed first
        })
    officers = _names(store, [p["override"] for p in out])
    for p in out:
        p["override_by"] = officers.get(p["override"]) if p["override"] else None
    return out


def absent(store: Store, meeting: dict[str, Any]) -> list[dict[str, Any]]:
    """The members of the meeting's cell on its day (not today's members) with no counted check-in."""
    came = {r["member"] for r in store.rows("SELECT member FROM attendance WHERE meeting = ?", [meeting["id"]])}
    expected = membership.expected_members(store, meeting["cell"], meeting_day(meeting["starts_at"]))
    return sorted(({"member_id": e["member"], "name": e["name"], "cell": meeting["cell"]}
                   for e in expected if e["member"] not in came), key=lambda r: (r["name"], r["member_id"]))


def meetings_with_counts(store: Store) -> list[dict[str, Any]]:
    """Every meeting with how many are present, expected (the cell's members on the meeting's day: frozen at the
    close, else from the membership history), and present by a secretary's override."""
    meetings = store.rows(
        "SELECT m.*, (SELECT COUNT(*) FROM attendance a WHERE a.meeting = m.id) AS present, t.expected AS expected, "
        "(SELECT COUNT(*) FROM attendance a JOIN records r ON r.device = a.device AND r.seq = a.seq "
        " WHERE a.meeting = m.id AND json_extract(r.body, '$.proof.override') IS NOT NULL) AS overrides "
        "FROM meetings m LEFT JOIN meeting_totals t ON t.meeting = m.id ORDER BY m.starts_at, m.id"
    )
    for m in meetings:
        if m["expected"] is None:
            m["expected"] = len(membership.expected_members(store, m["cell"], meeting_day(m["starts_at"])))
    return meetings


def officer_names(store: Store, meeting: dict[str, Any]) -> dict[str, str | None]:
    names = _names(store, [meeting.get("secretary"), meeting.get("chair")])
    return {"secretary_name": names.get(meeting.get("secretary")), "chair_name": names.get(meeting.get("chair"))}


def _names(store: Store, member_ids: list[str | None]) -> dict[str, str]:
    ids = sorted({m for m in member_ids if m})
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    return {r["id"]: r["name"] for r in store.rows(f"SELECT id, name FROM members WHERE id IN ({marks})", ids)}
