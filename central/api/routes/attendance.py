"""One meeting's attendance sheet (central/attendance_sheet.py): read it, record an excuse, close it, amend it."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from ... import attendance_sheet
from ..deps import Secretary, StoreDep, Viewer, answered, remote_of

router = APIRouter(prefix="/api/meetings", tags=["attendance"])

Reason = Literal["illness", "work", "leave", "family", "other"]
Status = Literal["present", "late", "excused", "unexcused"]


class Excuse(BaseModel):
    model_config = ConfigDict(extra="forbid")
    member: str = Field(max_length=64)
    reason: Reason
    note: str | None = Field(None, max_length=attendance_sheet.MAX_NOTE)


class Amendment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    member: str = Field(max_length=64)
    status: Status
    reason: Reason | None = None  # with 'excused' only
    note: str | None = Field(None, max_length=attendance_sheet.MAX_NOTE)


@router.get("/{meeting_id}/sheet")
def sheet(meeting_id: str, request: Request, store: StoreDep, _: Viewer) -> dict[str, Any]:
    late = attendance_sheet.rules_of(request.app).late_after_min
    return answered(lambda: attendance_sheet.sheet(store, meeting_id, late_after_min=late))


@router.post("/{meeting_id}/excuses")
def excuse(meeting_id: str, body: Excuse, request: Request, store: StoreDep, staff: Secretary) -> dict[str, Any]:
    late = attendance_sheet.rules_of(request.app).late_after_min

    def call() -> dict[str, Any]:
        done = attendance_sheet.record_excuse(store, meeting_id, body.member, body.reason, body.note, by=staff.name,
                                              late_after_min=late, remote=remote_of(request))
        return {"amended": done["amended"], "sheet": attendance_sheet.sheet(store, meeting_id, late_after_min=late)}

    return answered(call)


@router.post("/{meeting_id}/close")
def close(meeting_id: str, request: Request, store: StoreDep, staff: Secretary) -> dict[str, Any]:
    late = attendance_sheet.rules_of(request.app).late_after_min
    return answered(lambda: attendance_sheet.close(store, meeting_id, by=staff.name, late_after_min=late,
                                                          remote=remote_of(request)))


@router.post("/{meeting_id}/amendments")
def amend(meeting_id: str, body: Amendment, request: Request, store: StoreDep, staff: Secretary) -> dict[str, Any]:
    late = attendance_sheet.rules_of(request.app).late_after_min

    def call() -> dict[str, Any]:
        attendance_sheet.amend(store, meeting_id, body.member, body.status, body.reason, body.note, by=staff.name,
                               remote=remote_of(request))
        return attendance_sheet.sheet(store, meeting_id, late_after_min=late)

    return answered(call)
