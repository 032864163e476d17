"""Attendance as files (central/attendance_export.py): a cell's CSV and XLSX over a window, a commune's or a province's
XLSX over a year, a cell's monthly report as a PDF to print and sign. The same figures as the JSON routes, the same
errors (404 for an unknown cell or area, 422 for a bad date, year or month)."""

from __future__ import annotations

import re
import unicodedata
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from ... import attendance_export, attendance_rollup, attendance_sheet
from ...attendance_rollup import MAX_YEAR, MIN_YEAR
from ...attendance_sheet import Rules
from ..deps import StoreDep, Viewer, answered

router = APIRouter(tags=["attendance exports"])

CSV = "text/csv; charset=utf-8"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PDF = "application/pdf"
FROM = Query(None, alias="from", max_length=10, description="first day, YYYY-MM-DD (default: 1 January this year)")
TO = Query(None, alias="to", max_length=10, description="last day, YYYY-MM-DD (default: today)")
YEAR = Query(None, ge=MIN_YEAR, le=MAX_YEAR, description="the calendar year (default: this year)")
MONTH = Query(None, max_length=7, description="YYYY-MM (default: this month)")


def _levels(request: Request) -> Rules:
    return attendance_sheet.rules_of(request.app)


def _ascii(text: str) -> str:
    """A file name any client takes: no diacritics (đ -> d), only letters, digits, dot, dash, underscore."""
    text = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    text = "".join(c for c in text if unicodedata.category(c) != "Mn")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:120] or "attendance"


def _readable(text: str) -> str:
    """The Vietnamese name, kept to letters, digits, spaces and - _ . (no slash, quote or control character)."""
    kept = "".join(c if unicodedata.category(c)[0] in "LN" or c in " -_." else " " for c in text)
    return re.sub(r" +", " ", kept).strip()[:120]


def download(content: bytes, media_type: str, ascii_name: str, name: str) -> Response:
    """An attachment named twice (RFC 6266): ``filename`` in ASCII for old clients, ``filename*`` in UTF-8 with the
    Vietnamese name for the others; the export is personal data, so it is not cached."""
    disposition = f'attachment; filename="{_ascii(ascii_name)}"; filename*=UTF-8\'\'{quote(_readable(name), safe="")}'
    return Response(content, media_type=media_type, headers={
        "Content-Disposition": disposition, "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})


def _cell_export(store: Any, cell: str, date_from: str | None, date_to: str | None,
                 request: Request) -> attendance_export.CellExport:
    return answered(lambda: attendance_export.cell_export(store, cell, date_from=date_from, date_to=date_to,
                                                       levels=_levels(request)))


def _cell_names(export: attendance_export.CellExport, ext: str) -> tuple[str, str]:
    r = export.report
    return (f"attendance-{r['cell']['id']}-{r['from']}-{r['to']}.{ext}",
            f"Điểm danh {r['cell']['name']} {r['from']} đến {r['to']}.{ext}")


@router.get("/api/cells/{cell}/attendance.csv")
def cell_csv(cell: str, request: Request, store: StoreDep, _: Viewer, date_from: str | None = FROM,
             date_to: str | None = TO) -> Response:
    export = _cell_export(store, cell, date_from, date_to, request)
    return download(attendance_export.cell_csv(export), CSV, *_cell_names(export, "csv"))


@router.get("/api/cells/{cell}/attendance.xlsx")
def cell_xlsx(cell: str, request: Request, store: StoreDep, _: Viewer, date_from: str | None = FROM,
              date_to: str | None = TO) -> Response:
    export = _cell_export(store, cell, date_from, date_to, request)
    return download(attendance_export.cell_xlsx(export), XLSX, *_cell_names(export, "xlsx"))


def _area_xlsx(level: str, number: int, year: int | None, request: Request, store: Any) -> Response:
    year = year or attendance_rollup.today().year
    area, content = answered(lambda: attendance_export.area_xlsx(store, level, number, year=year, levels=_levels(request)))
    return download(content, XLSX, f"attendance-{level}-{number}-{year}.xlsx",
                    f"Điểm danh {area.get('name') or number} năm {year}.xlsx")


@router.get("/api/communes/{code}/attendance.xlsx")
def commune_xlsx(code: int, request: Request, store: StoreDep, _: Viewer, year: int | None = YEAR) -> Response:
    return _area_xlsx("commune", code, year, request, store)


@router.get("/api/provinces/{code}/attendance.xlsx")
def province_xlsx(code: int, request: Request, store: StoreDep, _: Viewer, year: int | None = YEAR) -> Response:
    return _area_xlsx("province", code, year, request, store)


@router.get("/api/cells/{cell}/report.pdf")
def cell_report(cell: str, request: Request, store: StoreDep, _: Viewer, month: str | None = MONTH) -> Response:
    report = answered(lambda: attendance_export.cell_month(store, cell, month=month, levels=_levels(request)))
    content = attendance_export.report_pdf(report)
    return download(content, PDF, f"attendance-report-{report['cell']['id']}-{report['month']}.pdf",
                    f"Báo cáo điểm danh {report['cell']['name']} tháng {report['month']}.pdf")
