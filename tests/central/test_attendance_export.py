"""Attendance exports read back as a committee's spreadsheet would: CSV (csv module) and XLSX (openpyxl) hold the
JSON API's figures, formula-looking names come out inert, Vietnamese survives; the monthly PDF's text holds them."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

import openpyxl
import pypdf
import pytest

from central import attendance_sheet, membership, registry
from central.attendance_export import (
    LONG_COLUMNS,
    TOTALS_COLUMNS,
    Sheet,
    csv_bytes,
    inert,
    month_window,
    percent_text,
    xlsx_bytes,
)
from central.ingest import Ingest
from contract import Topics
from tests.central import Device

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


# ---- the exports through the API, against the JSON API and the stored records -------------------------------------

BY = "test-secretary"
CELL, OTHER = "CB-DONG", "CB-TAY"
NAMES = {"m-an": "Nguyễn Văn An", "m-hoa": "Trần Thị Hòa", "m-sang": "Lê Văn Sáng",
         "m-x1": '=HYPERLINK("http://x","y")', "m-x2": "-Đỗ Âm", "m-x3": "+Phạm Cộng", "m-x4": "@Vũ Tại",
         "m-x5": "=cmd|' /C calc'!A0"}  # a leading tab never reaches the registry (names are stripped): see above


def _iso(minutes: float) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat()


def _window() -> dict[str, str]:
    # from yesterday: a meeting that started 50 minutes ago is on yesterday's date shortly after midnight in Hà Nội
    today = datetime.now(attendance_sheet.HALL_ZONE).date()
    return {"from": (today - timedelta(days=1)).isoformat(), "to": today.isoformat()}


@pytest.fixture
def year(staffed):
    """Two cells of Xã Gia Bình. CB-DONG: a meeting closed with members present, one excused before the close,
    the rest unexcused; a second where everyone checked in late, one amended to excused after the close."""
    store = staffed.store
    registry.add_hall(store, "H1", "Nhà văn hóa thôn Đông", commune="Gia Bình", province="Bắc Ninh")
    registry.add_cell(store, CELL, "Chi bộ thôn Đông", commune="Gia Bình", province="Bắc Ninh")
    registry.add_cell(store, OTHER, "Chi bộ thôn Tây", commune="Gia Bình", province="Bắc Ninh")
    for member, name in NAMES.items():
        registry.add_member(store, member, name, CELL)
        membership.set_joined(store, member, "2025-01-01", by=BY)
    registry.add_member(store, "m-tay", "Bùi Thị Tây", OTHER)
    membership.set_joined(store, "m-tay", "2025-01-01", by=BY)
    registry.add_meeting(store, "mt-on-time", cell=CELL, hall="H1", title="Họp chi bộ thường kỳ", starts=_iso(-5),
                         ends=_iso(120))
    registry.add_meeting(store, "mt-late", cell=CELL, hall="H1", title="=Họp chuyên đề", starts=_iso(-50), ends=_iso(60))
    registry.add_meeting(store, "mt-tay", cell=OTHER, hall="H1", title="Họp chi bộ thôn Tây", starts=_iso(-5),
                         ends=_iso(60))
    device = Device()
    registry.add_device(store, device.public_key, "H1")
    ingest, topics = Ingest(store, Topics()), Topics()
    with store.transaction():
        for meeting, member in (("mt-on-time", "m-an"), ("mt-on-time", "m-x1"), ("mt-on-time", "m-x5"),
                                ("mt-late", "m-an"), ("mt-late", "m-hoa"), ("mt-tay", "m-tay")):
            ingest.handle(topics.attendance(device.id), device.record(member, meeting).to_wire())
    attendance_sheet.record_excuse(store, "mt-on-time", "m-hoa", "illness", "nằm viện", by=BY)
    for meeting in ("mt-on-time", "mt-late", "mt-tay"):
        attendance_sheet.close(store, meeting, by=BY)
    attendance_sheet.amend(store, "mt-late", "m-sang", "excused", "work", "excuse handed in late", by=BY)
    client = staffed.client()
    client.headers["Authorization"] = f"Bearer {staffed.tokens['viewer']}"
    return client


def _record_hashes(store) -> dict[tuple[str, str], str]:
    return {(r["meeting"], r["member"]): r["hash"] for r in store.rows(
        "SELECT a.meeting, a.member, r.hash FROM attendance a JOIN records r ON r.device = a.device AND r.seq = a.seq")}


def _sheet_rows(client, meetings) -> list[tuple]:
    out = []
    for meeting in meetings:
        sheet = client.get(f"/api/meetings/{meeting}/sheet").json()
        for m in sheet["members"]:
            out.append((meeting, m["member"], m["name"], m["status"], m["checked_in_at"], m["minutes_late"], m["reason"],
                        m["override"], m["hash"], True))
    return out


def _long(rows: list[dict]) -> list[tuple]:
    return [(r["meeting_id"], r["member_id"], r["member_name"], r["status"], r["checked_in_at"], r["minutes_late"],
             r["excuse_reason"], r["override"], r["record_hash"], r["closed"]) for r in rows]


def _uninert(name):
    return name[1:] if isinstance(name, str) and name[:1] == "'" and name[1:2] in ("=", "+", "-", "@", "\t") else name


def _disposition(response) -> tuple[str, str]:
    header = response.headers["content-disposition"]
    assert header.startswith("attachment; ")
    ascii_name = header.split('filename="')[1].split('"')[0]
    assert ascii_name.isascii()
    return ascii_name, unquote(header.split("filename*=UTF-8''")[1])


def test_the_cell_csv_holds_every_members_status_at_each_meeting_as_the_sheets_say_with_record_hashes(staffed, year):
    window = _window()
    response = year.get(f"/api/cells/{CELL}/attendance.csv", params=window)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert _disposition(response) == (f"attendance-{CELL}-{window['from']}-{window['to']}.csv",
                                      f"Điểm danh Chi bộ thôn Đông {window['from']} đến {window['to']}.csv")
    got = _csv_rows(response.content)
    assert got[0] == [c for c, _ in LONG_COLUMNS] and got[1] == [label for _, label in LONG_COLUMNS]
    rows = [dict(zip(got[0], line)) for line in got[2:]]
    # every value a user would check, equal to the meeting sheets' (CSV spells null as empty, booleans as JSON does)
    text = [(m, member, name, status, at or "", "" if late is None else str(late), reason or "",
             "true" if override else "false", h or "", "true") for (m, member, name, status, at, late, reason, override, h, _)
            in _sheet_rows(year, ["mt-late", "mt-on-time"])]  # by day, then as the sheet sorts: both meet today
    assert sorted(_long([{**r, "member_name": _uninert(r["member_name"])} for r in rows])) == sorted(text)
    by = {(r["meeting_id"], r["member_id"]): r for r in rows}
    assert by["mt-on-time", "m-hoa"]["status"] == "excused" and by["mt-on-time", "m-hoa"]["excuse_reason"] == "illness"
    assert by["mt-late", "m-sang"]["status"] == "excused" and by["mt-late", "m-sang"]["excuse_reason"] == "work"
    assert by["mt-late", "m-an"]["status"] == "late" and int(by["mt-late", "m-an"]["minutes_late"]) >= 49
    assert by["mt-on-time", "m-sang"]["status"] == "unexcused" and by["mt-on-time", "m-sang"]["record_hash"] == ""
    # each attended row carries the hash of the record central stored for it
    hashes = _record_hashes(staffed.store)
    attended = [r for r in rows if r["status"] in ("present", "late")]
    assert len(attended) == 5 and all(r["record_hash"] == hashes[r["meeting_id"], r["member_id"]] for r in attended)
    # hostile names and titles come out inert, Vietnamese ones whole
    names = {r["member_id"]: r["member_name"] for r in rows}
    assert names["m-x1"] == "'" + NAMES["m-x1"] and names["m-x5"] == "'" + NAMES["m-x5"]
    assert {names[m] for m in ("m-x2", "m-x3", "m-x4")} == {"'" + NAMES[m] for m in ("m-x2", "m-x3", "m-x4")}
    assert names["m-hoa"] == "Trần Thị Hòa" and by["mt-late", "m-an"]["meeting_title"] == "'=Họp chuyên đề"
    assert {r["cell_name"] for r in rows} == {"Chi bộ thôn Đông"}


def test_the_cell_xlsx_long_sheet_and_summaries_equal_the_json_api(staffed, year):
    response = year.get(f"/api/cells/{CELL}/attendance.xlsx", params=_window())
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    book = openpyxl.load_workbook(io.BytesIO(response.content))
    assert book.sheetnames == ["attendance", "meetings", "months", "members", "warnings"]
    api = year.get(f"/api/cells/{CELL}/attendance", params=_window()).json()

    def records(ws):
        ids = [c.value for c in ws[1]]
        assert ws.freeze_panes == "A3" and ws[2][0].value  # the Vietnamese labels under the ids, both frozen
        return [dict(zip(ids, [c.value for c in row])) for row in ws.iter_rows(min_row=3)]

    long = records(book["attendance"])
    sheets = [(m, member, name, status, at, late, reason, override, h, True) for (m, member, name, status, at, late, reason,
              override, h, _) in _sheet_rows(year, ["mt-late", "mt-on-time"])]
    assert sorted(_long([{**r, "member_name": _uninert(r["member_name"])} for r in long])) == sorted(sheets)
    hashes = _record_hashes(staffed.store)
    assert all(r["record_hash"] == hashes[r["meeting_id"], r["member_id"]] for r in long if r["status"] in ("present", "late"))
    x1 = next(c for c in book["attendance"]["G"] if c.value == "'" + NAMES["m-x1"])
    assert x1.data_type == "s"  # a text cell with the apostrophe: no formula, no link
    assert not any(c.data_type == "f" for row in book["attendance"].iter_rows() for c in row)
    # the summaries are the cell page's figures, number for number
    keys = [c for c, _ in TOTALS_COLUMNS]
    meetings = records(book["meetings"])
    assert [(m["meeting_id"], m["meeting_day"], m["closed"], [m[k] for k in keys]) for m in meetings] == [
        (m["id"], m["day"], m["closed"], [m["totals"][k] for k in keys]) for m in api["meetings"]]
    members = records(book["members"])
    assert [(_uninert(m["member_name"]), m["meetings"], [m[k] for k in keys]) for m in members] == [
        (m["name"], m["meetings"], [m["totals"][k] for k in keys]) for m in api["members"]]
    months = records(book["months"])
    assert [(m["month"], m["meetings"], [m[k] for k in keys]) for m in months] == [
        (m["month"], m["meetings"], [m["totals"][k] for k in keys]) for m in api["months"]]
    assert sum(m["expected"] for m in months) == api["totals"]["expected"] == 16
    assert book["meetings"]["P3"].number_format == "0.0%"  # rate columns shown as percentages, stored as numbers


def test_the_commune_xlsx_ranks_its_cells_as_the_commune_api_does_and_holds_both_cells_rows(staffed, year):
    code = registry.get_cell(staffed.store, CELL)["commune_code"]
    response = year.get(f"/api/communes/{code}/attendance.xlsx")
    assert response.status_code == 200, response.text
    assert _disposition(response)[1] == f"Điểm danh Xã Gia Bình năm {datetime.now(attendance_sheet.HALL_ZONE).year}.xlsx"
    book = openpyxl.load_workbook(io.BytesIO(response.content))
    api = year.get(f"/api/communes/{code}/attendance").json()
    ws = book["cells"]
    ids = [c.value for c in ws[1]]
    cells = [dict(zip(ids, [c.value for c in row])) for row in ws.iter_rows(min_row=3)]
    keys = [c for c, _ in TOTALS_COLUMNS]
    assert [(c["cell_id"], c["meetings"], [c[k] for k in keys]) for c in cells] == [
        (c["id"], c["meetings"], [c["totals"][k] for k in keys]) for c in api["cells"]]
    long = list(book["attendance"].iter_rows(min_row=3, values_only=True))
    assert len(long) == api["totals"]["expected"] + api["totals"]["not_expected"] == 17
    assert {r[0] for r in long} == {"mt-on-time", "mt-late", "mt-tay"}
    province = year.get(f"/api/provinces/{registry.get_cell(staffed.store, CELL)['province_code']}/attendance.xlsx")
    assert province.status_code == 200 and "communes" in openpyxl.load_workbook(io.BytesIO(province.content)).sheetnames


def test_the_monthly_report_is_one_printable_page_with_the_cells_figures_absentees_and_signature_lines(staffed, year):
    month = attendance_sheet.sheet(staffed.store, "mt-on-time")["meeting"]["day"][:7]
    response = year.get(f"/api/cells/{CELL}/report.pdf", params={"month": month})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    assert _disposition(response) == (f"attendance-report-{CELL}-{month}.pdf",
                                      f"Báo cáo điểm danh Chi bộ thôn Đông tháng {month}.pdf")
    pdf = pypdf.PdfReader(io.BytesIO(response.content))
    assert len(pdf.pages) == 1
    text = pdf.pages[0].extract_text()
    first, last = month_window(month)
    api = year.get(f"/api/cells/{CELL}/attendance", params={"from": first, "to": last}).json()
    assert api["meetings"]
    assert "CHI BỘ THÔN ĐÔNG" in text and "ĐẢNG BỘ XÃ GIA BÌNH" in text
    assert f"THÁNG {month[5:]}/{month[:4]}" in text
    for m in api["meetings"]:
        t = m["totals"]
        assert (f"{t['expected']} {t['present']} {t['late']} {t['excused']} {t['unexcused']} {percent_text(t['rate'])} "
                f"{percent_text(t['rate_excluding_excused'])}") in text
    t = api["totals"]
    assert f"Cả tháng {len(api['meetings'])} cuộc họp / meetings {t['expected']} {t['present']} {t['late']}" in text
    absent = text.split("Absent without a reason")[1].split("Early warning")[0]
    day = datetime.strptime(attendance_sheet.sheet(staffed.store, "mt-on-time")["meeting"]["day"], "%Y-%m-%d")
    # unexcused at the on-time meeting; at the other, excused by an amendment after the close
    assert f"Lê Văn Sáng (m-sang): {day:%d/%m/%Y} Họp chi bộ thường kỳ\n" in absent
    assert "Trần Thị Hòa" not in absent and "Nguyễn Văn An" not in absent
    assert "BÍ THƯ CHI BỘ" in text and "Cell secretary" in text and "(Ký, ghi rõ họ tên)" in text


def test_unknown_cells_and_areas_are_404_and_bad_windows_422_as_on_the_json_routes(year):
    for path in ("/api/cells/nobody/attendance.csv", "/api/cells/nobody/attendance.xlsx", "/api/cells/nobody/report.pdf",
                 "/api/communes/999999/attendance.xlsx", "/api/provinces/999/attendance.xlsx"):
        assert year.get(path).status_code == 404, path
    for path, params in ((f"/api/cells/{CELL}/attendance.csv", {"from": "2026-02-30"}),
                         (f"/api/cells/{CELL}/attendance.xlsx", {"from": "2026-05-01", "to": "2026-04-01"}),
                         (f"/api/cells/{CELL}/report.pdf", {"month": "2026-13"}),
                         (f"/api/cells/{CELL}/report.pdf", {"month": "June"}),
                         ("/api/communes/nobody/attendance.xlsx", {}),
                         ("/api/communes/9454/attendance.xlsx", {"year": "1999"})):
        response = year.get(path, params=params)
        assert response.status_code == 422, (path, params, response.status_code)


def test_past_the_row_limit_a_cell_export_is_refused_and_an_area_workbook_keeps_its_summaries_with_a_note(
        staffed, year, monkeypatch):
    monkeypatch.setattr("central.attendance_export.MAX_LONG_ROWS", 10)  # the fixture's commune holds 17 rows
    response = year.get(f"/api/cells/{CELL}/attendance.csv", params=_window())
    assert response.status_code == 422 and "choose a shorter window" in response.json()["detail"]
    code = registry.get_cell(staffed.store, CELL)["commune_code"]
    book = openpyxl.load_workbook(io.BytesIO(year.get(f"/api/communes/{code}/attendance.xlsx").content))
    assert book.sheetnames == ["note", "cells", "months", "warnings"]
    assert "17 member-meeting rows" in book["note"]["A3"].value
