"""Attendance exports read back as a committee's spreadsheet would: CSV (csv module) and XLSX (openpyxl) hold the
JSON API's figures, formula-looking names come out inert, Vietnamese survives; the monthly PDF's text holds them."""

from __future__ import annotations

import csv
import io
import re

import openpyxl
import pytest

from central.attendance_export import LONG_COLUMNS, Sheet, csv_bytes, inert, xlsx_bytes

# Names a member could be enrolled under that a spreadsheet would otherwise run (OWASP CSV injection).
HOSTILE = ['=HYPERLINK("http://x","y")', "-2+3", "+84 912 345 678", "@SUM(A1:A9)", "\t=1+1", "\r=1+1", "\0=1+1"]
VIETNAMESE = "Nguyễn Thị Ánh Tuyết — Đảng viên dự bị"


def _excel_text(value: str) -> str:
    # XML cannot hold control characters: XLSX writes them _xHHHH_, which Excel decodes and openpyxl leaves as is
    return re.sub(r"_x([0-9A-F]{4})_", lambda m: chr(int(m.group(1), 16)), value)


def _csv_rows(data: bytes) -> list[list[str]]:
    assert data.startswith(b"\xef\xbb\xbf"), "no UTF-8 byte-order mark: Excel would read the file in the local code page"
    return list(csv.reader(io.StringIO(data[3:].decode("utf-8"), newline="")))


@pytest.mark.parametrize("text", HOSTILE)
def test_a_text_starting_like_a_formula_gets_an_apostrophe_and_everything_else_passes(text):
    assert inert(text) == "'" + text
    for plain in ("Trần Văn Sống", "a=b", "Mr -", "", "'already quoted"):
        assert inert(plain) == plain
    for number in (0, -5, 3.25, -0.5, True, None):
        assert inert(number) is number  # numbers stay numbers, negative ones too


def test_csv_has_a_bom_the_column_ids_then_vietnamese_labels_and_inert_hostile_names():
    columns = (("member_name", "Họ và tên"), ("minutes_late", "Số phút muộn"), ("override", "Thư ký xác nhận"))
    rows = [{"member_name": name, "minutes_late": -3 if n == 0 else n, "override": n % 2 == 0}
            for n, name in enumerate([VIETNAMESE, *HOSTILE])]
    got = _csv_rows(csv_bytes(columns, rows))
    assert got[0] == ["member_name", "minutes_late", "override"]
    assert got[1] == ["Họ và tên", "Số phút muộn", "Thư ký xác nhận"]
    assert got[2] == [VIETNAMESE, "-3", "true"]
    assert [r[0] for r in got[3:]] == ["'" + h for h in HOSTILE]
    assert all(not r[0].startswith(("=", "+", "-", "@", "\t", "\r", "\0")) for r in got[2:])


def test_xlsx_stores_hostile_names_as_inert_text_numbers_as_numbers_and_freezes_both_header_rows():
    columns = (("member_name", "Họ và tên"), ("minutes_late", "Số phút muộn"), ("rate", "Tỷ lệ dự họp"),
               ("override", "Thư ký xác nhận"))
    rows = [{"member_name": name, "minutes_late": n, "rate": 0.8333, "override": False}
            for n, name in enumerate([VIETNAMESE, *HOSTILE])]
    book = openpyxl.load_workbook(io.BytesIO(xlsx_bytes([Sheet("attendance", columns, rows)])))
    ws = book["attendance"]
    assert [c.value for c in ws[1]] == ["member_name", "minutes_late", "rate", "override"]
    assert [c.value for c in ws[2]] == ["Họ và tên", "Số phút muộn", "Tỷ lệ dự họp", "Thư ký xác nhận"]
    assert ws.freeze_panes == "A3"
    assert ws["A3"].value == VIETNAMESE and ws["B3"].value == 0 and ws["C3"].value == 0.8333
    assert ws["D3"].value is False and ws["C3"].number_format == "0.0%"
    names = [ws.cell(row=r, column=1) for r in range(4, 4 + len(HOSTILE))]
    assert [_excel_text(c.value) for c in names] == ["'" + h for h in HOSTILE]
    assert all(c.data_type == "s" for c in names)  # text cells: nothing a spreadsheet evaluates
    assert ws.column_dimensions["A"].width > 20  # sized to the names, not Excel's default 8.43


def test_the_long_sheet_columns_are_the_designs_stable_ids():
    assert [c for c, _ in LONG_COLUMNS][:15] == [
        "meeting_id", "meeting_title", "meeting_day", "cell_id", "cell_name", "member_id", "member_name", "standing",
        "status", "checked_in_at", "minutes_late", "excuse_reason", "override", "record_hash", "closed"]
