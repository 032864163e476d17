"""Attendance exports: CSV and XLSX (one long sheet, member x meeting, plus summary sheets) and a cell's monthly
report as a one-page PDF a secretary prints and signs.

The writers are pure functions over plain rows (``csv_bytes``, ``xlsx_bytes``, ``report_pdf``); the gathering
functions read the statuses from central/attendance_sheet.py and the figures from central/attendance_rollup.py,
so an export holds exactly what the JSON API says.

Both spreadsheet formats carry two header rows: the stable English column ids (row 1, what scripts key on) and
their Vietnamese labels (row 2, what people read). A long row is one member at one meeting; a present or late row
carries the hash of the record that counted it, so anyone can check an exported row against central's records.
Dates and times stay ISO text (``meeting_day`` YYYY-MM-DD, ``checked_in_at`` UTC with Z) in both formats: the
same characters as the JSON API and the CSV, sortable as text, and never re-read by a spreadsheet's locale as
a day-first or month-first date.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import xlsxwriter
from fpdf import FPDF
from fpdf.fonts import FontFace

from . import attendance_rollup, attendance_sheet
from .attendance_sheet import Rules
from .errors import RegistryError
from .store import Store

# (id, Vietnamese label). The ids are a contract with whoever reads the file: never rename one, only add.
LONG_COLUMNS: tuple[tuple[str, str], ...] = (
    ("meeting_id", "Mã cuộc họp"),
    ("meeting_title", "Tên cuộc họp"),
    ("meeting_day", "Ngày họp"),
    ("cell_id", "Mã chi bộ"),
    ("cell_name", "Tên chi bộ"),
    ("member_id", "Mã đảng viên"),
    ("member_name", "Họ và tên"),
    ("standing", "Đảng viên chính thức / dự bị"),
    ("status", "Tình trạng"),
    ("checked_in_at", "Giờ điểm danh (UTC)"),
    ("minutes_late", "Số phút muộn"),
    ("excuse_reason", "Lý do vắng"),
    ("override", "Thư ký xác nhận"),
    ("record_hash", "Mã băm bản ghi"),
    ("closed", "Đã chốt"),
    # Not in the first design's list: a member counted present who did not belong to the cell that day
    # (transferred in later) is a row too, so their record is exported, but outside every rate.
    ("expected", "Thuộc chi bộ ngày họp"),
)
TOTALS_COLUMNS: tuple[tuple[str, str], ...] = (
    ("expected", "Số phải dự"),
    ("present", "Có mặt đúng giờ"),
    ("late", "Đến muộn"),
    ("excused", "Vắng có lý do"),
    ("unexcused", "Vắng không lý do"),
    ("pending", "Chưa điểm danh"),
    ("attended", "Có mặt (cả muộn)"),
    ("overrides", "Thư ký xác nhận"),
    ("not_expected", "Ngoài danh sách"),
    ("rate", "Tỷ lệ dự họp"),
    ("rate_excluding_excused", "Tỷ lệ không tính vắng có lý do"),
)
MEETING_COLUMNS = (("meeting_id", "Mã cuộc họp"), ("meeting_title", "Tên cuộc họp"), ("meeting_day", "Ngày họp"),
                   ("cell_id", "Mã chi bộ"), ("cell_name", "Tên chi bộ"), ("closed", "Đã chốt"), *TOTALS_COLUMNS)
MEMBER_COLUMNS = (("member_id", "Mã đảng viên"), ("member_name", "Họ và tên"), ("standing", "Đảng viên chính thức / dự bị"),
                  ("meetings", "Số cuộc họp phải dự"), *TOTALS_COLUMNS)
MONTH_COLUMNS = (("month", "Tháng"), ("meetings", "Số cuộc họp"), *TOTALS_COLUMNS)
CELL_COLUMNS = (("cell_id", "Mã chi bộ"), ("cell_name", "Tên chi bộ"), ("commune", "Xã / phường"),
                ("meetings", "Số cuộc họp"), ("met_in_month", "Đã họp trong tháng"), *TOTALS_COLUMNS)
COMMUNE_COLUMNS = (("commune_code", "Mã xã / phường"), ("commune", "Xã / phường"), ("cells", "Số chi bộ"), *TOTALS_COLUMNS)
NOTE_COLUMNS = (("note", "Ghi chú"),)

STATUS_LABELS = {"present": "có mặt", "late": "đến muộn", "excused": "vắng có lý do", "unexcused": "vắng không lý do",
                 "pending": "chưa điểm danh"}
# A long sheet over this many rows is left out of an area's workbook (its summaries stay): 100,000 rows is a
# commune's year many times over, ~15 MB of XLSX built in memory; a province's members x meetings runs into the
# millions, past what a spreadsheet opens (1,048,576 rows). A cell's export refuses rather than truncates.
MAX_LONG_ROWS = 100_000
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")  # apt fonts-dejavu-core: every Vietnamese letter, with diacritics

# A spreadsheet reads a cell starting with one of these as a formula (or, for tab, CR and NUL, strips the
# character and reads what follows as one): "=HYPERLINK(...)" in a member's name would become a live link that
# can carry other cells' contents away, or worse, on the secretary's machine. OWASP ASVS 5.0 1.2.10 names
# = + - @ tab NUL; OWASP's CSV injection page adds CR. A leading apostrophe makes the cell plain text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\0")


class ExportTooLarge(RegistryError):
    """The export would hold more rows than one response should carry; a narrower window would not."""


def inert(value: Any) -> Any:
    """``value`` as a spreadsheet shows it as data: a text starting like a formula gets a leading apostrophe.

    Numbers, booleans and None pass unchanged, so a count or a rate stays a number (a negative number is a
    number, not a formula). Used by the CSV and the XLSX writers alike.
    """
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _csv_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):  # before int: bool is an int
        return "true" if value else "false"  # as the JSON API spells them
    return str(inert(value))


def csv_bytes(columns: Sequence[tuple[str, str]], rows: Iterable[Mapping[str, Any]]) -> bytes:
    """UTF-8 with a byte-order mark (without it Excel reads the file as the machine's code page and mangles every
    Vietnamese letter); row 1 the column ids, row 2 their Vietnamese labels, then one line per row (RFC 4180
    quoting by the csv module, CRLF line ends)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([c for c, _ in columns])
    writer.writerow([label for _, label in columns])
    for row in rows:
        writer.writerow([_csv_text(row.get(c)) for c, _ in columns])
    return "\ufeff".encode() + out.getvalue().encode("utf-8")


@dataclass(frozen=True)
class Sheet:
    name: str  # at most 31 characters, Excel's limit
    columns: Sequence[tuple[str, str]]
    rows: Sequence[Mapping[str, Any]]


WIDTH_MIN, WIDTH_MAX = 8, 48  # characters; a 64-character record hash is cut on screen, whole in the cell


def xlsx_bytes(sheets: Sequence[Sheet]) -> bytes:
    """One workbook, built in memory. Each sheet: ids in row 1, Vietnamese labels in row 2 (both frozen, so they
    stay on screen while scrolling), the rows below; rates as numbers shown as percentages.

    Belt and braces against formula injection: ``strings_to_formulas: False`` makes xlsxwriter store every
    text as a text cell, never a formula, so nothing runs when the file opens; ``inert`` also prefixes the
    apostrophe, because a text cell reading ``=HYPERLINK(...)`` becomes a live formula again the moment
    someone edits it (F2, Enter) or saves the sheet as CSV, and the next program that opens that CSV evaluates it.
    ``strings_to_urls`` is off too: a name holding "http://..." stays text rather than a clickable link.
    """
    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True, "strings_to_formulas": False, "strings_to_urls": False,
                                        "strings_to_numbers": False})
    header = book.add_format({"bold": True, "bg_color": "#DDE6F0", "bottom": 1})
    label = book.add_format({"italic": True, "bg_color": "#F2F5F9", "bottom": 1, "text_wrap": True})
    percent = book.add_format({"num_format": "0.0%"})
    for sheet in sheets:
        ws = book.add_worksheet(sheet.name[:31])
        widths = [max(WIDTH_MIN, len(c)) for c, _ in sheet.columns]
        for col, (ident, text) in enumerate(sheet.columns):
            ws.write_string(0, col, ident, header)
            ws.write_string(1, col, text, label)
        for r, row in enumerate(sheet.rows, start=2):
            for col, (ident, _) in enumerate(sheet.columns):
                value = row.get(ident)
                if value is None:
                    continue
                if isinstance(value, bool):
                    ws.write_boolean(r, col, value)
                elif isinstance(value, int | float):
                    ws.write_number(r, col, value, percent if ident.startswith("rate") else None)
                else:
                    text = inert(str(value))
                    ws.write_string(r, col, text)
                    widths[col] = max(widths[col], min(len(text), WIDTH_MAX))
        for col, width in enumerate(widths):
            ws.set_column(col, col, min(width + 2, WIDTH_MAX))
        ws.freeze_panes(2, 0)
        ws.autofilter(1, 0, 1 + len(sheet.rows), len(sheet.columns) - 1)
    book.close()
    return buffer.getvalue()


def percent_text(rate: float | None) -> str:
    """A rate as Vietnamese writes it (decimal comma), or a dash when nobody was expected."""
    return "—" if rate is None else f"{rate * 100:.1f}%".replace(".", ",")


def _day_text(day: str) -> str:
    return date.fromisoformat(day).strftime("%d/%m/%Y")


class _Report(FPDF):
    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("DejaVu", size=7)
        self.set_text_color(110)
        self.cell(0, 5, self.footer_text, align="C")


MAX_PDF_MEETINGS, MAX_PDF_NAMES = 10, 14  # past these the lists are cut with "and N more", so the page stays one page


def report_pdf(report: Mapping[str, Any]) -> bytes:
    """A cell's month on one A4 page: each meeting's counts and both rates, the month's total, the members absent
    without a reason (with the days), the year's early warnings, and signature lines for the cell secretary.

    ``report``: {"cell": {"id","name","commune","province"}, "month": "YYYY-MM", "year": int, "totals": T,
    "meetings": [{"id","title","day","closed","totals": T}], "unexcused": [{"member","name","meetings": [(day, title)]}],
    "warnings": [W], "warn_level", "rule_level", "generated_at": ISO text}.
    """
    cell, month = report["cell"], report["month"]
    pdf = _Report(orientation="P", unit="mm", format="A4")
    pdf.footer_text = f"Lập lúc {report['generated_at']} từ dữ liệu điểm danh của trung tâm / generated by hall central"
    pdf.add_font("DejaVu", "", str(FONT_DIR / "DejaVuSans.ttf"))
    pdf.add_font("DejaVu", "B", str(FONT_DIR / "DejaVuSans-Bold.ttf"))
    pdf.add_font("DejaVu", "I", str(FONT_DIR / "DejaVuSans-Oblique.ttf"))
    pdf.set_auto_page_break(True, margin=15)
    pdf.set_margins(15, 12, 15)
    pdf.add_page()
    pdf.set_title(f"Báo cáo điểm danh {cell['name']} tháng {month}")
    pdf.set_author("hall central")

    # Letterhead: the Party unit on the left, as on the Party's own documents, the Party's name on the right.
    half = (pdf.w - pdf.l_margin - pdf.r_margin) / 2
    top = pdf.get_y()
    nl = {"new_x": "LEFT", "new_y": "NEXT"}  # under the previous line, in the same column
    pdf.set_font("DejaVu", size=9)
    pdf.multi_cell(half, 4.5, f"ĐẢNG BỘ {(cell.get('commune') or '').upper()}".strip(), align="C", **nl)
    pdf.set_font("DejaVu", "B", 9)
    name = cell["name"].upper()
    pdf.multi_cell(half, 4.5, name if name.startswith("CHI BỘ") else f"CHI BỘ {name}", align="C", **nl)
    pdf.set_font("DejaVu", size=8)
    pdf.multi_cell(half, 4, f"({cell['id']})", align="C", **nl)
    left_bottom = pdf.get_y()
    pdf.set_xy(pdf.l_margin + half, top)
    pdf.set_font("DejaVu", "B", 9)
    pdf.multi_cell(half, 4.5, "ĐẢNG CỘNG SẢN VIỆT NAM", align="C", **nl)
    pdf.set_font("DejaVu", "I", 8)
    pdf.multi_cell(half, 4.5, cell.get("province") or "", align="C", **nl)
    pdf.set_y(max(left_bottom, pdf.get_y()) + 4)

    year_text, month_text = month[:4], month[5:7]
    pdf.set_font("DejaVu", "B", 13)
    pdf.cell(0, 7, f"BÁO CÁO ĐIỂM DANH SINH HOẠT CHI BỘ THÁNG {month_text}/{year_text}", align="C",
             new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", "I", 9)
    pdf.cell(0, 5, f"Monthly attendance report — {cell['name']} — {month}", align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)

    pdf.set_font("DejaVu", "B", 10)
    pdf.cell(0, 6, "1. Các cuộc họp trong tháng / Meetings", new_x="LMARGIN", new_y="NEXT")
    meetings = list(report["meetings"])
    heads = ("Ngày", "Cuộc họp", "Phải dự", "Có mặt", "Muộn", "Vắng có lý do", "Vắng không lý do", "Tỷ lệ",
             "Tỷ lệ trừ vắng có lý do")
    if meetings:
        pdf.set_font("DejaVu", size=8)
        with pdf.table(col_widths=(17, 47, 13, 13, 12, 16, 17, 15, 20), text_align=("LEFT", "LEFT", *["RIGHT"] * 7),
                       line_height=4.5, headings_style=_bold(), padding=0.8) as table:
            table.row(heads)
            for m in meetings[:MAX_PDF_MEETINGS]:
                table.row(_meeting_cells(_day_text(m["day"]), m["title"] + ("" if m.get("closed") else " (chưa chốt)"),
                                         m["totals"]))
            table.row(_meeting_cells("Cả tháng", f"{len(meetings)} cuộc họp / meetings", report["totals"]),
                      style=FontFace(emphasis="BOLD"))
        if len(meetings) > MAX_PDF_MEETINGS:
            pdf.set_font("DejaVu", "I", 8)
            pdf.cell(0, 5, f"… và {len(meetings) - MAX_PDF_MEETINGS} cuộc họp khác (xem tệp XLSX)", new_x="LMARGIN", new_y="NEXT")
    else:
        pdf.set_font("DejaVu", size=9)
        pdf.cell(0, 6, "Chi bộ không họp trong tháng này / the cell did not meet this month.", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)

    pdf.set_font("DejaVu", "B", 10)
    pdf.cell(0, 6, "2. Đảng viên vắng không lý do / Absent without a reason", new_x="LMARGIN", new_y="NEXT")
    _names(pdf, [f"{u['name']} ({u['member']}): {'; '.join(f'{_day_text(d)} {t}' for d, t in u['meetings'])}"
                 for u in report["unexcused"]], "Không có / none.")
    pdf.ln(2)

    pdf.set_font("DejaVu", "B", 10)
    pdf.multi_cell(0, 5.5, f"3. Cảnh báo sớm năm {report['year']} / Early warning: vắng không lý do từ {report['warn_level']} "
                         f"lần (cảnh báo), {report['rule_level']} lần (mức theo quy định)", new_x="LMARGIN", new_y="NEXT")
    _names(pdf, [f"{w['name']} ({w['member']}): {w['unexcused']} lần vắng không lý do — "
                 f"{'đến mức quy định / rule level' if w['level'] == 'rule' else 'cảnh báo / warning'}"
                 for w in report["warnings"]], "Không có / none.")
    pdf.ln(8)

    # Signatures: who drew it up, and the cell secretary who answers for it.
    pdf.set_font("DejaVu", size=9)
    pdf.cell(half, 5, "", new_x="RIGHT", new_y="TOP")
    pdf.set_font("DejaVu", "I", 9)
    pdf.cell(half, 5, "…………, ngày …… tháng …… năm ……", align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", "B", 10)
    pdf.cell(half, 5, "NGƯỜI LẬP BÁO CÁO", align="C", new_x="RIGHT", new_y="TOP")
    pdf.cell(half, 5, "T/M CHI BỘ — BÍ THƯ CHI BỘ", align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", "I", 8)
    pdf.cell(half, 4, "Prepared by", align="C", new_x="RIGHT", new_y="TOP")
    pdf.cell(half, 4, "Cell secretary", align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.cell(half, 4, "(Ký, ghi rõ họ tên)", align="C", new_x="RIGHT", new_y="TOP")
    pdf.cell(half, 4, "(Ký, ghi rõ họ tên)", align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(18)
    pdf.cell(half, 4, "………………………………", align="C", new_x="RIGHT", new_y="TOP")
    pdf.cell(half, 4, "………………………………", align="C", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def _bold() -> FontFace:
    return FontFace(emphasis="BOLD", fill_color=(221, 230, 240))


def _meeting_cells(day: str, title: str, t: Mapping[str, Any]) -> list[str]:
    return [day, title, str(t["expected"]), str(t["present"]), str(t["late"]), str(t["excused"]), str(t["unexcused"]),
            percent_text(t["rate"]), percent_text(t["rate_excluding_excused"])]


def _names(pdf: FPDF, lines: list[str], empty: str) -> None:
    pdf.set_font("DejaVu", size=9)
    if not lines:
        pdf.cell(0, 5, empty, new_x="LMARGIN", new_y="NEXT")
        return
    for line in lines[:MAX_PDF_NAMES]:
        pdf.multi_cell(0, 4.6, "• " + line, new_x="LMARGIN", new_y="NEXT")
    if len(lines) > MAX_PDF_NAMES:
        pdf.set_font("DejaVu", "I", 9)
        pdf.cell(0, 5, f"… và {len(lines) - MAX_PDF_NAMES} người khác (xem trang của chi bộ)", new_x="LMARGIN", new_y="NEXT")


# -- gathering: what the JSON API says, as rows --------------------------------------------------------------------

DEFAULT_RULES = Rules()


def _check_size(rows: int) -> None:
    if rows > MAX_LONG_ROWS:
        raise ExportTooLarge(f"the export would hold {rows:,} member-meeting rows, more than {MAX_LONG_ROWS:,}: "
                             "choose a shorter window")


def long_rows(store: Store, meetings: Sequence[Mapping[str, Any]], *, now: datetime | None = None,
              late_after_min: int = 15) -> list[dict[str, Any]]:
    """One row per member per meeting (the meetings' order, each sheet's order: by name), from the same statuses the
    sheet and the roll-ups read. ``meetings``: {"id","title","day","closed","cell","cell_name"}."""
    found = attendance_sheet.statuses(store, [m["id"] for m in meetings], now=now, late_after_min=late_after_min)
    out = []
    for m in meetings:
        for r in found.get(m["id"], []):
            out.append({
                "meeting_id": m["id"], "meeting_title": m["title"], "meeting_day": m["day"], "cell_id": m["cell"],
                "cell_name": m["cell_name"], "member_id": r["member"], "member_name": r["name"],
                "standing": r["standing"], "status": r["status"], "checked_in_at": r["checked_in_at"],
                "minutes_late": r["minutes_late"], "excuse_reason": r["reason"], "override": r["override"],
                "record_hash": r["hash"], "closed": bool(m["closed"]), "expected": r["expected"]})
    return out


def _rows_of(meetings: Iterable[Mapping[str, Any]]) -> int:
    return sum(m["totals"]["expected"] + m["totals"]["not_expected"] for m in meetings)


@dataclass(frozen=True)
class CellExport:
    report: dict[str, Any]  # attendance_rollup.cell_attendance's answer: what GET /api/cells/{cell}/attendance returns
    rows: list[dict[str, Any]]  # the long sheet


def cell_export(store: Store, cell: str, *, date_from: str | None = None, date_to: str | None = None,
                now: datetime | None = None, levels: Rules = DEFAULT_RULES) -> CellExport:
    """A cell's meetings in the window (the cell page's: ended or closed ones) with each member's row."""
    report = attendance_rollup.cell_attendance(store, cell, date_from=date_from, date_to=date_to, now=now, levels=levels)
    _check_size(_rows_of(report["meetings"]))
    info = report["cell"]
    meetings = [{**m, "cell": info["id"], "cell_name": info["name"]} for m in report["meetings"]]
    return CellExport(report, long_rows(store, meetings, now=now, late_after_min=levels.late_after_min))


def cell_csv(export: CellExport) -> bytes:
    return csv_bytes(LONG_COLUMNS, export.rows)


def _totals_row(totals: Mapping[str, Any], **fields: Any) -> dict[str, Any]:
    return {**fields, **totals}


def _warning_rows(warnings: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [{"member_id": w["member"], "member_name": w["name"], "cell_id": w["cell"], "cell_name": w["cell_name"],
             "unexcused": w["unexcused"], "level": w["level"],
             "meetings": ", ".join(f"{m['day']} {m['meeting']}" for m in w["meetings"])} for w in warnings]


WARNING_COLUMNS = (("member_id", "Mã đảng viên"), ("member_name", "Họ và tên"), ("cell_id", "Mã chi bộ hiện nay"),
                   ("cell_name", "Chi bộ hiện nay"), ("unexcused", "Số lần vắng không lý do"),
                   ("level", "Mức (warning: cảnh báo, rule: theo quy định)"), ("meetings", "Các cuộc họp vắng"))


def cell_xlsx(export: CellExport) -> bytes:
    """The long sheet, then per meeting, per month, per member, and the year's early warnings."""
    r, info = export.report, export.report["cell"]
    return xlsx_bytes([
        Sheet("attendance", LONG_COLUMNS, export.rows),
        Sheet("meetings", MEETING_COLUMNS, [_totals_row(m["totals"], meeting_id=m["id"], meeting_title=m["title"],
                                                        meeting_day=m["day"], cell_id=info["id"], cell_name=info["name"],
                                                        closed=m["closed"]) for m in r["meetings"]]),
        Sheet("months", MONTH_COLUMNS, [_totals_row(m["totals"], month=m["month"], meetings=m["meetings"]) for m in r["months"]]),
        Sheet("members", MEMBER_COLUMNS, [_totals_row(m["totals"], member_id=m["member"], member_name=m["name"],
                                                      standing=m["standing"], meetings=m["meetings"]) for m in r["members"]]),
        Sheet("warnings", WARNING_COLUMNS, _warning_rows(r["warnings"])),
    ])


def _area_meetings(store: Store, level: str, code: int, year: int, cells: Mapping[str, Mapping[str, Any]],
                   now: datetime | None) -> list[dict[str, Any]]:
    """The meetings an area's roll-up counts: closed ones filed under the area (``meeting_totals``), and its cells'
    ended, unclosed ones; by day."""
    column = "t.commune_code" if level == "commune" else "t.province_code"
    date_from, date_to = f"{year:04d}-01-01", f"{year:04d}-12-31"
    found = store.rows(
        "SELECT m.id, m.title, t.day, m.cell, c.name AS cell_name, 1 AS closed FROM meeting_totals t "
        f"JOIN meetings m ON m.id = t.meeting LEFT JOIN cells c ON c.id = m.cell WHERE {column} = ? "
        "AND t.day BETWEEN ? AND ?", [code, date_from, date_to])
    first, last = attendance_rollup.starts_between(date_from, date_to)
    ids = sorted(cells)
    moment = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")  # as meetings store times
    for chunk in attendance_sheet.chunks(ids):
        for m in store.rows(
            "SELECT id, title, starts_at, cell FROM meetings WHERE closed_at IS NULL AND starts_at >= ? AND starts_at < ? "
            f"AND ends_at <= ? AND cell IN ({','.join('?' * len(chunk))})", [first, last, moment, *chunk]):
            found.append({"id": m["id"], "title": m["title"], "day": attendance_sheet.meeting_day(m["starts_at"]),
                          "cell": m["cell"], "cell_name": cells[m["cell"]]["name"], "closed": 0})
    return sorted(found, key=lambda m: (m["day"], m["cell"], m["id"]))


def area_xlsx(store: Store, level: str, code: int | str, *, year: int, now: datetime | None = None,
              levels: Rules = DEFAULT_RULES) -> tuple[dict[str, Any], bytes]:
    """(the area as the JSON API names it, the workbook). A commune's or a province's year: per cell (and per commune for a province), per month, early warnings, and the
    long sheet while it stays under MAX_LONG_ROWS (a province's is millions of rows: a note says where to get it)."""
    r = attendance_rollup.area_attendance(store, level, code, year=year, now=now, levels=levels)
    area = r["area"]
    sheets = [Sheet("cells", CELL_COLUMNS, [_totals_row(c["totals"], cell_id=c["id"], cell_name=c["name"],
                                                         commune=c["commune"], meetings=c["meetings"],
                                                         met_in_month=c["met_in_month"]) for c in r["cells"]])]
    if level == "province":
        sheets.append(Sheet("communes", COMMUNE_COLUMNS, [_totals_row(c["totals"], commune_code=c["code"], commune=c["name"],
                                                                      cells=c["cells"]) for c in r["communes"]]))
    sheets.append(Sheet("months", MONTH_COLUMNS, [_totals_row(m["totals"], month=m["month"], meetings=m["meetings"])
                                                  for m in r["months"]]))
    filter_key = "commune_code" if level == "commune" else "province_code"
    found = attendance_rollup.warnings(store, year=r["year"], now=now, levels=levels, **{filter_key: area["code"]})
    sheets.append(Sheet("warnings", WARNING_COLUMNS, _warning_rows(found["members"])))
    size = r["totals"]["expected"] + r["totals"]["not_expected"]
    if size <= MAX_LONG_ROWS:
        meetings = _area_meetings(store, level, area["code"], r["year"], {c["id"]: c for c in r["cells"]}, now)
        rows = long_rows(store, meetings, now=now, late_after_min=levels.late_after_min)
        sheets.insert(0, Sheet("attendance", LONG_COLUMNS, rows))
        sheets.insert(1, Sheet("meetings", MEETING_COLUMNS, _meeting_summaries(meetings, rows)))
    else:
        sheets.insert(0, Sheet("note", NOTE_COLUMNS, [{"note": (
            f"{size:,} dòng đảng viên × cuộc họp: quá lớn cho một tệp; tải từng xã hoặc từng chi bộ. / {size:,} "
            f"member-meeting rows, more than {MAX_LONG_ROWS:,}: export each commune or cell for the detail.")}]))
    return area, xlsx_bytes(sheets)


def _meeting_summaries(meetings: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    by_meeting: dict[str, list[dict[str, Any]]] = {m["id"]: [] for m in meetings}
    for row in rows:
        by_meeting[row["meeting_id"]].append({"expected": row["expected"], "status": row["status"],
                                              "override": row["override"]})
    return [_totals_row(attendance_sheet.totals(by_meeting[m["id"]]), meeting_id=m["id"], meeting_title=m["title"],
                        meeting_day=m["day"], cell_id=m["cell"], cell_name=m["cell_name"], closed=bool(m["closed"]))
            for m in meetings]


def month_window(month: str) -> tuple[str, str]:
    """The first and last day of ``month`` (YYYY-MM, checked)."""
    month = attendance_rollup.check_month(month)
    first = date.fromisoformat(f"{month}-01")
    following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return first.isoformat(), date.fromordinal(following.toordinal() - 1).isoformat()


def cell_month(store: Store, cell: str, *, month: str | None = None, now: datetime | None = None,
               levels: Rules = DEFAULT_RULES) -> dict[str, Any]:
    """What the monthly report prints (``report_pdf``'s input): the cell page's figures for the month, who was absent
    without a reason at which meetings, and the early warnings of the month's year. ``month`` defaults to this one."""
    month = month or attendance_rollup.today(now).strftime("%Y-%m")
    date_from, date_to = month_window(month)
    export = cell_export(store, cell, date_from=date_from, date_to=date_to, now=now, levels=levels)
    absent: dict[str, dict[str, Any]] = {}
    for row in export.rows:
        if row["expected"] and row["status"] == "unexcused":
            entry = absent.setdefault(row["member_id"], {"member": row["member_id"], "name": row["member_name"],
                                                         "meetings": []})
            entry["meetings"].append((row["meeting_day"], row["meeting_title"]))  # two meetings can share a day
    r = export.report
    local = (now or datetime.now(UTC)).astimezone(attendance_rollup.HALL_ZONE)
    return {"cell": r["cell"], "month": month, "year": int(month[:4]), "totals": r["totals"], "meetings": r["meetings"],
            "unexcused": sorted(absent.values(), key=lambda a: (a["name"] or "", a["member"])),
            "warnings": r["warnings"], "warn_level": levels.absence_warn_level, "rule_level": levels.absence_rule_level,
            "generated_at": local.strftime("%H:%M %d/%m/%Y (giờ Việt Nam)")}
