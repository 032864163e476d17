"""Attendance rolled up (central/attendance_rollup.py), as JSON other systems can pull: a cell over a window, a commune
or a province over a year, a member's year, and the year's early warnings. Viewers may read them all."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request

from ... import attendance_rollup, attendance_sheet
from ..deps import StoreDep, Viewer, answered

router = APIRouter(prefix="/api", tags=["attendance roll-ups"])

YEAR = Query(None, ge=attendance_rollup.MIN_YEAR, le=attendance_rollup.MAX_YEAR, description="the calendar year; default this year")
MONTH = Query(None, min_length=7, max_length=7, description="YYYY-MM: the month 'did not meet' is about")
DAY_FROM = Query(None, alias="from", min_length=10, max_length=10, description="first day, YYYY-MM-DD (default 1 January)")
DAY_TO = Query(None, alias="to", min_length=10, max_length=10, description="last day, YYYY-MM-DD (default today)")
COMMUNE = Query(None, ge=1, le=999_999_999, description="a commune's official code (central/regions.py)")
PROVINCE = Query(None, ge=1, le=999_999_999, description="a province's official code (central/regions.py)")
CELL = Query(None, min_length=1, max_length=64)


def _year(year: int | None) -> int:
    return year if year is not None else attendance_rollup.today().year


@router.get("/cells/{cell}/attendance")
def cell_attendance(cell: str, request: Request, store: StoreDep, _: Viewer, date_from: str | None = DAY_FROM,
                    date_to: str | None = DAY_TO) -> dict[str, Any]:
    rules = attendance_sheet.rules_of(request.app)
    return answered(lambda: attendance_rollup.cell_attendance(store, cell, date_from=date_from, date_to=date_to,
                                                             levels=rules))


def _area(level: str, code: str, request: Request, store: Any, year: int | None, month: str | None) -> Any:
    rules = attendance_sheet.rules_of(request.app)
    return answered(lambda: attendance_rollup.area_attendance(store, level, code, year=_year(year), month=month,
                                                             levels=rules))


@router.get("/communes/{code}/attendance")
def commune_attendance(code: str, request: Request, store: StoreDep, _: Viewer, year: int | None = YEAR,
                       month: str | None = MONTH) -> dict[str, Any]:
    return _area("commune", code, request, store, year, month)


@router.get("/provinces/{code}/attendance")
def province_attendance(code: str, request: Request, store: StoreDep, _: Viewer, year: int | None = YEAR,
                        month: str | None = MONTH) -> dict[str, Any]:
    return _area("province", code, request, store, year, month)


@router.get("/members/{member}/attendance")
def member_attendance(member: str, request: Request, store: StoreDep, _: Viewer, year: int | None = YEAR) -> dict[str, Any]:
    rules = attendance_sheet.rules_of(request.app)
    return answered(lambda: attendance_rollup.member_attendance(store, member, year=_year(year), levels=rules))


@router.get("/attendance/warnings")
def warnings(request: Request, store: StoreDep, _: Viewer, year: int | None = YEAR, cell: str | None = CELL,
             commune: int | None = COMMUNE, province: int | None = PROVINCE,
             limit: int | None = Query(None, ge=1, le=100_000, description="list only the first so many "
                                       "(most absences first); count and by_level still tell them all")) -> dict[str, Any]:
    if sum(x is not None for x in (cell, commune, province)) > 1:
        raise HTTPException(422, "filter by one of cell, commune or province, not several")
    rules = attendance_sheet.rules_of(request.app)
    return answered(lambda: attendance_rollup.warnings(store, year=_year(year), cell=cell, commune_code=commune,
                                                      province_code=province, levels=rules, limit=limit))
