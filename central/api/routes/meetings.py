"""Meetings and who attended them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException

from ... import attendance_view, record_validity, registry
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
    return [{**m, "state": _state(m, now)} for m in attendance_view.meetings_with_counts(store)]


@router.get("/{meeting_id}/attendance")
def attendance(meeting_id: str, store: StoreDep, _: Viewer) -> dict[str, Any]:
    meeting = registry.get_meeting(store, meeting_id)
    if meeting is None:
        raise HTTPException(404, f"no meeting {meeting_id}")
    present = attendance_view.present(store, meeting_id)
    return {"meeting": {**meeting, **attendance_view.officer_names(store, meeting), "state": _state(meeting, _now())},
            "present": present, "absent": attendance_view.absent(store, meeting),
            # check-ins a secretary (or chair) confirmed after a failed face check
            "overrides": sum(1 for p in present if p["override"]),
            # signed records central stored but did not count (wrong cell or hall, unknown member, outside the meeting)
            "not_counted": record_validity.not_counted(store, meeting_id)}
