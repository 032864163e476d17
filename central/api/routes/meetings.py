"""Meetings and who attended them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException

from ... import record_validity, registry
from ..deps import StoreDep, Viewer

router = APIRouter(prefix="/api/meetings", tags=["meetings"])


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _state(meeting: dict[str, Any], now: str) -> str:
    if now < meeting["starts_at"]:
        return "upcoming"
    return "current" if now < meeting["ends_at"] else "past"


@router.get("")
def list_meetings(store: StoreDep, _: Viewer) -> list[dict[str, Any]]:
    now = _now()
    rows = store.rows(
        "SELECT m.*, (SELECT COUNT(*) FROM attendance a WHERE a.meeting = m.id) AS present, "
        "(SELECT COUNT(*) FROM members x WHERE x.cell = m.cell) AS expected "
        "FROM meetings m ORDER BY m.starts_at, m.id"
    )
    return [{**m, "state": _state(m, now)} for m in rows]


@router.get("/{meeting_id}/attendance")
def attendance(meeting_id: str, store: StoreDep, _: Viewer) -> dict[str, Any]:
    meeting = registry.get_meeting(store, meeting_id)
    if meeting is None:
        raise HTTPException(404, f"no meeting {meeting_id}")
    present = []
    for r in store.rows(
        "SELECT a.member, a.device, a.seq, a.checked_in_at, m.name, m.cell, r.body, r.device_wall, r.placed_by, r.clock_flag "
        "FROM attendance a "
        "LEFT JOIN members m ON m.id = a.member LEFT JOIN records r ON r.device = a.device AND r.seq = a.seq "
        "WHERE a.meeting = ? ORDER BY a.checked_in_at, a.member",
        [meeting_id],
    ):
        proof = json.loads(r["body"])["proof"] if r["body"] else {}
        present.append({
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
            "override": proof.get("override"),
        })
    absent = store.rows(
        "SELECT id AS member_id, name, cell FROM members WHERE cell = ? AND id NOT IN "
        "(SELECT member FROM attendance WHERE meeting = ?) ORDER BY name, id",
        [meeting["cell"], meeting_id],
    )
    return {"meeting": {**meeting, "state": _state(meeting, _now())}, "present": present, "absent": absent,
            # signed records central stored but did not count (wrong cell or hall, unknown member, outside the meeting)
            "not_counted": record_validity.not_counted(store, meeting_id)}
