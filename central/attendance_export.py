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
from datetime import date
from pathlib import Path
from typing import Any

import xlsxwriter
from fpdf import FPDF
from fpdf.fonts import FontFace

from .errors import RegistryError

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
    "meetings": [{"id","title","day","closed","totals": T}], "unexcused": [{"member","name","days": [..]}],
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
            table.row(_meeting_cells("Cả tháng", f"{len(meetings)} cuộc họp / meetings", report["totals"]))
        if len(meetings) > MAX_PDF_MEETINGS:
            pdf.set_font("DejaVu", "I", 8)
            pdf.cell(0, 5, f"… và {len(meetings) - MAX_PDF_MEETINGS} cuộc họp khác (xem tệp XLSX)", new_x="LMARGIN", new_y="NEXT")
    else:
        pdf.set_font("DejaVu", size=9)
        pdf.cell(0, 6, "Chi bộ không họp trong tháng này / the cell did not meet this month.", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)

    pdf.set_font("DejaVu", "B", 10)
    pdf.cell(0, 6, "2. Đảng viên vắng không lý do / Absent without a reason", new_x="LMARGIN", new_y="NEXT")
    _names(pdf, [f"{u['name']} ({u['member']}): {', '.join(_day_text(d) for d in u['days'])}" for u in report["unexcused"]],
           "Không có / none.")
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
