"""The attendance pages: a meeting's sheet, a cell's year, a commune's or a province's roll-up, a member's year.

Like the fleet pages they carry no data: without a login they show the login form, as "/" does; with one, their
scripts read the attendance API (central/api/routes/attendance.py, attendance_rollup.py) with the caller's own
role. The secretary's buttons (excuse, close, amend) are hidden from viewers, and the API refuses them anyway.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import HTMLResponse, Response

from ..deps import Public, current_staff
from . import session

router = APIRouter(tags=["attendance pages"])
STATIC = Path(__file__).resolve().parent.parent.parent / "static"
PAGES = {name: STATIC / f"{name}.html" for name in ("attendance_meeting", "attendance_cell", "attendance_area",
                                                     "attendance_member")}
# The pages' shared script and style: code, no data.
ASSETS = {"attendance.js": "application/javascript", "attendance.css": "text/css"}


def _page(request: Request, name: str) -> Response:
    if current_staff(request) is None:
        return session.login_page()
    return HTMLResponse(PAGES[name].read_text(encoding="utf-8"), headers={"Cache-Control": "no-store"})


# Each script reads its ids (and the level, commune or province) from the address.
@router.get("/attendance/meetings/{meeting}", response_class=HTMLResponse, dependencies=[Public])
def meeting_page(request: Request, meeting: str) -> Response:
    return _page(request, "attendance_meeting")


@router.get("/attendance/cells/{cell}", response_class=HTMLResponse, dependencies=[Public])
def cell_page(request: Request, cell: str) -> Response:
    return _page(request, "attendance_cell")


@router.get("/attendance/communes/{code}", response_class=HTMLResponse, dependencies=[Public])
def commune_page(request: Request, code: str) -> Response:
    return _page(request, "attendance_area")


@router.get("/attendance/provinces/{code}", response_class=HTMLResponse, dependencies=[Public])
def province_page(request: Request, code: str) -> Response:
    return _page(request, "attendance_area")


@router.get("/attendance/members/{member}", response_class=HTMLResponse, dependencies=[Public])
def member_page(request: Request, member: str) -> Response:
    return _page(request, "attendance_member")


@router.get("/attendance/assets/{name}", dependencies=[Public])
def asset(name: str) -> Response:
    if name not in ASSETS:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such file")
    return Response((STATIC / name).read_bytes(), media_type=ASSETS[name], headers={"Cache-Control": "no-cache"})
