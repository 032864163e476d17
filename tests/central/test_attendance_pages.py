"""The attendance pages in Chromium against a real central service: a meeting's sheet, a cell's year, a commune's
and a province's roll-up, a member's year. The data goes in through the real functions (registry, membership
history, signed records through the ingest, excuses, close, a late excuse after the close); each page's numbers
are compared with the JSON API's, each count leads to exactly the members behind it, and a secretary excuses,
closes and amends from the page while a viewer sees no such buttons."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from central import accounts, attendance_sheet, membership, registry
from central.ingest import Ingest
from central.service import CentralService
from central.store import open_store
from contract import DeviceTime, Proof, RecordBody, Topics, sign_record
from tests.central import STAFF_TOKEN, Device, settings_for
from tests.conftest import free_port

SHOTS = Path("/tmp/shots")
SIZES = ((1440, 900), (1280, 800))
HALLS = ZoneInfo("Asia/Ho_Chi_Minh")
AUTH = {"Authorization": f"Bearer {STAFF_TOKEN}"}
YEAR = datetime.now(HALLS).year - 1  # a whole past year: every meeting of it has ended, whatever today is
PASSWORDS = {"xem": "viewer-password-123", "thuky": "secretary-password-123"}
NAMES = {"m1": "Nguyễn Văn An", "m2": "Trần Thị Bình", "m3": "Lê Văn Cường", "m4": "Phạm Thị Dung",
         "m5": "Hoàng Văn Em", "m6": "Vũ Thị Giang", "m7": "Đặng Văn Hải", "m8": "Bùi Thị Lan", "m9": "Đỗ Văn Minh"}
CELLS = {"C1": ("Chi bộ Khu phố 1", "Xã Gia Bình"), "C2": ("Chi bộ Khu phố 2", "Xã Gia Bình"),
         "C3": ("Chi bộ Thôn Đông", "Phường Thuận Thành")}
MEMBERS_OF = {"C1": ["m1", "m2", "m3", "m4", "m5"], "C2": ["m6", "m7"], "C3": ["m8", "m9"]}
# meeting -> (cell, month, day, {member: minutes after the start it checked in, "o" suffix: secretary override})
MEETINGS = {
    "c1-01": ("C1", 1, 10, {"m1": 2, "m2": 20, "m3": 0, "m4": "5o"}),
    "c1-02": ("C1", 2, 10, {"m1": 1, "m3": 31, "m5": 3}),
    "c1-03": ("C1", 3, 10, {"m1": 0}),
    "c1-04": ("C1", 4, 10, {"m1": 0, "m3": 2}),
    "c2-01": ("C2", 1, 12, {"m6": 0}),
    "c2-02": ("C2", 2, 12, {"m6": 0, "m7": 1}),
    "c2-03": ("C2", 3, 12, {"m5": 0, "m6": 3}),  # m5 transferred in on 1 March
    "c3-01": ("C3", 1, 15, {"m8": 0}),
}


def starts(meeting: str) -> datetime:
    _, month, day, _ = MEETINGS[meeting]
    return datetime(YEAR, month, day, 19, 0, tzinfo=HALLS).astimezone(UTC)


def check_in(ingest: Ingest, device: Device, member: str, meeting: str, at: datetime, *, override: bool = False) -> None:
    """A signed record as a kiosk makes it, with a synchronised clock reading ``at`` (central places it there)."""
    proof = (Proof(card_kind="member_card", face_distance=None, face_threshold=0.5, override="m1", override_reason="face_mismatch")
             if override else Proof(card_kind="member_card", face_distance=0.3, face_threshold=0.5))
    body = RecordBody(device=device.id, seq=device.seq + 1, prev=device.prev, meeting=meeting, member=member, proof=proof,
                      time=DeviceTime(wall=at.isoformat().replace("+00:00", "Z"), synced=True,
                                      boot_id=f"boot-{device.seq + 1}", monotonic=60.0))
    record = sign_record(device.key, body)
    device.seq, device.prev = record.seq, record.hash
    with ingest.store.transaction():
        assert ingest.handle(Topics().attendance(device.id), record.to_wire()) == device.id


@pytest.fixture
def year_of_meetings(tmp_path, broker):
    """Three cells of Bắc Ninh (two in Xã Gia Bình, one in Phường Thuận Thành), a year of meetings, a transfer,
    a probationary member made official, an excuse before the close and one after, and a meeting going on now."""
    settings = settings_for(tmp_path, broker.port, http_port=free_port())
    kiosks = {"H1": Device(), "H3": Device()}
    now = datetime.now(UTC)
    with open_store(settings.data_dir) as store:
        registry.add_hall(store, "H1", "Nhà văn hoá xã Gia Bình", province="Bắc Ninh", commune="Xã Gia Bình")
        registry.add_hall(store, "H3", "Hội trường phường Thuận Thành", province="Bắc Ninh", commune="Phường Thuận Thành")
        for cell, (name, commune) in CELLS.items():
            registry.add_cell(store, cell, name, province="Bắc Ninh", commune=commune)
        for cell, members in MEMBERS_OF.items():
            for member in members:
                registry.add_member(store, member, NAMES[member], cell)
                membership.set_joined(store, member, f"{YEAR - 1}-06-01", by="test")
        membership.set_standing(store, "m4", "probationary", f"{YEAR - 1}-06-01", by="test")
        membership.set_standing(store, "m4", "official", f"{YEAR}-02-01", by="test")
        for hall, device in kiosks.items():
            registry.add_device(store, device.public_key, hall)
        ingest = Ingest(store, Topics())
        for meeting, (cell, month, _, _) in MEETINGS.items():
            hall = "H3" if cell == "C3" else "H1"
            registry.add_meeting(store, meeting, cell=cell, hall=hall, title=f"Sinh hoạt chi bộ tháng {month}",
                                 starts=starts(meeting), ends=starts(meeting) + timedelta(hours=2))
        registry.add_meeting(store, "now", cell="C1", hall="H1", title="Sinh hoạt chi bộ hôm nay",
                             starts=now - timedelta(minutes=30), ends=now + timedelta(hours=1))
        for meeting, (cell, _, _, arrivals) in MEETINGS.items():
            if meeting == "c2-03":
                continue  # m5 checks in there once transferred
            for member, after in arrivals.items():
                minutes = int(str(after).rstrip("o"))
                check_in(ingest, kiosks["H3" if cell == "C3" else "H1"], member, meeting,
                         starts(meeting) + timedelta(minutes=minutes, seconds=10), override=str(after).endswith("o"))
        membership.transfer(store, "m5", "C2", f"{YEAR}-03-01", by="test", note="chuyển sinh hoạt")
        for member, after in MEETINGS["c2-03"][3].items():
            check_in(ingest, kiosks["H1"], member, "c2-03", starts("c2-03") + timedelta(minutes=after, seconds=10))
        check_in(ingest, kiosks["H1"], "m1", "now", now - timedelta(minutes=25))
        attendance_sheet.record_excuse(store, "c1-02", "m4", "illness", "nằm viện", by="thuky")
        for meeting in MEETINGS:
            attendance_sheet.close(store, meeting, by="thuky")
        attendance_sheet.record_excuse(store, "c1-03", "m3", "work", "báo muộn", by="thuky")  # after the close
        accounts.add_user(store, "xem", "viewer", PASSWORDS["xem"])
        accounts.add_user(store, "thuky", "secretary", PASSWORDS["thuky"])
    return settings


def api(service, path: str) -> dict:
    response = httpx.get(service.url + path.lstrip("/"), headers=AUTH, timeout=30)
    assert response.status_code == 200, (path, response.status_code, response.text)
    return response.json()


def shots(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    for width, height in SIZES:
        page.set_viewport_size({"width": width, "height": height})
        page.screenshot(path=str(SHOTS / f"attendance-{name}-{width}x{height}.png"), full_page=True)
    page.set_viewport_size({"width": 1440, "height": 900})


def login(page, url: str, user: str, path: str) -> None:
    url = url.rstrip("/")
    page.goto(url + path)  # the login form, answered with 401 (the console says so: not an error of the page)
    page.fill("#username", user)
    page.fill("#password", PASSWORDS[user])
    page.click("button[type=submit]")
    page.wait_for_url(url + "/")
    page.errors.clear()
    page.goto(url + path)
    if path != "/":
        page.wait_for_selector("body[data-loaded=yes]", timeout=15_000)


def pct(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.1f}".replace(".", ",") + " %"


def card_values(page) -> dict[str, str]:
    return {c.get_attribute("data-count"): c.locator(".v").inner_text() for c in page.locator("#counts .card").all()}


def assert_cards(page, totals: dict) -> None:
    shown = card_values(page)
    for key in ("expected", "attended", "present", "late", "excused", "unexcused", "overrides"):
        assert shown[key] == str(totals[key]), (key, shown[key], totals[key])
    assert shown["rate"] == pct(totals["rate"])
    assert shown["rate_excluding_excused"] == pct(totals["rate_excluding_excused"])
    if totals["pending"]:
        assert shown["pending"] == str(totals["pending"])


@pytest.fixture
def page_of(chromium):
    pages = []

    def make():
        page = chromium.new_page(viewport={"width": 1440, "height": 900}, locale="vi-VN")  # as staff laptops are set
        page.errors = []
        page.on("pageerror", lambda e: page.errors.append(str(e)))
        page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
        pages.append(page)
        return page

    yield make
    for page in pages:
        page.close()


def test_a_meeting_sheet_shows_the_apis_figures_and_each_count_lists_its_members(year_of_meetings, page_of):
    with CentralService(year_of_meetings) as service:
        page = page_of()
        login(page, service.url, "xem", "/attendance/meetings/c1-01")
        sheet = api(service, "/api/meetings/c1-01/sheet")
        assert_cards(page, sheet["totals"])
        assert page.locator("#frozen-badge [data-frozen=true]").count() == 1  # closed: "Đã chốt"
        assert "Đã chốt" in page.locator("#frozen-badge").inner_text()
        assert page.locator("#facts").inner_text().count("Chi bộ Khu phố 1") == 1  # the cell's name, not its id
        rows = page.locator("tr.member")
        assert rows.count() == len(sheet["members"])
        for m in sheet["members"]:
            row = page.locator(f'tr.member[data-member-id="{m["member"]}"]')
            assert row.get_attribute("data-status") == m["status"]
            assert row.locator(".name").inner_text().startswith(m["name"])
            assert row.locator(".minutes-late").inner_text() == ("" if m["minutes_late"] is None else str(m["minutes_late"]))
        assert page.locator('tr.member[data-member-id="m2"] .minutes-late').inner_text() == "20"
        # a viewer reads; the secretary's buttons are not there at all
        assert page.locator("button.excuse, button.amend, #close-box:not([hidden])").count() == 0
        shots(page, "meeting-viewer")

        for key, wanted in (("late", {"m2"}), ("unexcused", {"m5"}), ("overrides", {"m4"}),
                            ("attended", {"m1", "m2", "m3", "m4"})):
            page.click(f'#counts .card[data-count="{key}"]')
            page.wait_for_selector(f'#counts .card[data-count="{key}"][aria-current=true]')
            shown = {r.get_attribute("data-member-id") for r in page.locator("tr.member").all()}
            behind = {m["member"] for m in sheet["members"] if
                      (m["status"] in ("present", "late") if key == "attended" else
                       m["override"] if key == "overrides" else m["status"] == key) and m["expected"]}
            assert shown == behind == wanted, key
            assert f"show={key}" in page.url
        page.go_back()  # the filter is in the address: back is the previous list
        page.wait_for_function("location.search.includes('show=overrides')")
        page.wait_for_selector('#counts .card[data-count="overrides"][aria-current=true]')
        page.click("#show-all")
        page.wait_for_function("document.querySelectorAll('tr.member').length === 5")
        shots(page, "meeting-filtered")

        # a closed meeting amended after the close: the late excuse is listed with who and when
        page.goto(service.url + "attendance/meetings/c1-03")
        page.wait_for_selector("body[data-loaded=yes]")
        frozen = api(service, "/api/meetings/c1-03/sheet")
        assert_cards(page, frozen["totals"])
        amendment = page.locator('tr.amendment[data-member-id="m3"]')
        assert amendment.count() == 1
        text = amendment.inner_text()
        assert "thuky" in text and "Đi công tác" in text and "báo muộn" in text and NAMES["m3"] in text
        assert page.locator('tr.member[data-member-id="m3"] .amended-mark').count() == 1
        assert page.locator('tr.member[data-member-id="m3"]').get_attribute("data-status") == "excused"
        shots(page, "meeting-amended")

        # a meeting still open: still no excuse or close for a viewer
        page.goto(service.url + "attendance/meetings/now")
        page.wait_for_selector("body[data-loaded=yes]")
        assert page.locator('tr.member[data-member-id="m3"]').get_attribute("data-status") == "pending"
        assert page.locator("button.excuse, button.amend, #actions-head:not([hidden])").count() == 0
        assert page.locator("#close-box").is_hidden() and page.locator("#close").is_hidden()
        assert page.errors == []


def test_a_secretary_excuses_closes_and_amends_from_the_page_and_errors_are_shown_in_words(year_of_meetings, page_of):
    with CentralService(year_of_meetings) as service:
        page = page_of()
        login(page, service.url, "thuky", "/attendance/meetings/now")
        assert page.locator("#frozen-badge [data-frozen=false]").count() == 1
        assert page.locator('tr.member[data-member-id="m3"]').get_attribute("data-status") == "pending"
        assert page.locator('tr.member[data-member-id="m1"] button.excuse').count() == 0  # checked in: nothing to excuse
        page.click('tr.member[data-member-id="m3"] button.excuse')
        page.select_option('form.excuse-form[data-member-id="m3"] select[name=reason]', "work")
        page.fill('form.excuse-form[data-member-id="m3"] input[name=note]', "đi công tác Hà Nội")
        page.click('form.excuse-form[data-member-id="m3"] button[type=submit]')
        page.wait_for_selector('tr.member[data-member-id="m3"][data-status=excused]')
        assert "Đi công tác" in page.locator('tr.member[data-member-id="m3"] .reason').inner_text()
        m3 = next(m for m in api(service, "/api/meetings/now/sheet")["members"] if m["member"] == "m3")
        assert (m3["status"], m3["reason"], m3["note"]) == ("excused", "work", "đi công tác Hà Nội")
        assert card_values(page)["excused"] == "1"
        shots(page, "meeting-secretary-live")

        page.click("#close")
        assert page.locator("#close-confirm").is_visible()
        assert "chưa điểm danh" in page.locator("#close-pending").inner_text()  # m2 and m4 will be unexcused
        page.click("#close-yes")
        page.wait_for_selector("#frozen-badge [data-frozen=true]")
        closed = api(service, "/api/meetings/now/sheet")
        assert closed["frozen"] and closed["meeting"]["closed_by"] == "thuky"
        assert_cards(page, closed["totals"])
        assert card_values(page)["unexcused"] == "2"  # m2 and m4; m5 was transferred out in March
        assert page.locator("#close-box").is_hidden()

        # an amendment refused by the API is shown in words, and changes nothing
        page.click('tr.member[data-member-id="m1"] button.amend')
        page.select_option('form.amend-form[data-member-id="m1"] select[name=status]', "present")
        page.fill('form.amend-form[data-member-id="m1"] input[name=note]', "thử lại")
        page.click('form.amend-form[data-member-id="m1"] button[type=submit]')
        refused = httpx.post(service.url + "api/meetings/now/amendments", headers=AUTH, timeout=30,
                             json={"member": "m1", "status": "present", "note": "thử lại"})
        assert refused.status_code == 422
        page.wait_for_function("text => document.getElementById('error').textContent.includes(text)", arg=refused.json()["detail"])
        assert page.locator("tr.amendment").count() == 0

        page.click('tr.member[data-member-id="m2"] button.amend')
        page.select_option('form.amend-form[data-member-id="m2"] select[name=status]', "excused")
        page.select_option('form.amend-form[data-member-id="m2"] select[name=reason]', "illness")
        page.fill('form.amend-form[data-member-id="m2"] input[name=note]', "giấy ốm nộp sau")
        page.click('form.amend-form[data-member-id="m2"] button[type=submit]')
        page.wait_for_selector('tr.amendment[data-member-id="m2"]')
        assert page.locator("#error").inner_text() == ""
        assert "thuky" in page.locator('tr.amendment[data-member-id="m2"] .by').inner_text()
        assert page.locator('tr.member[data-member-id="m2"]').get_attribute("data-status") == "excused"
        assert_cards(page, api(service, "/api/meetings/now/sheet")["totals"])
        shots(page, "meeting-secretary-closed")
        assert page.errors == [] or all("409" in e or "422" in e for e in page.errors)  # the refused POST's console line


def test_a_cells_year_numbers_equal_the_api_and_drill_down_to_members(year_of_meetings, page_of):
    with CentralService(year_of_meetings) as service:
        page = page_of()
        login(page, service.url, "xem", f"/attendance/cells/C1?year={YEAR}")
        data = api(service, page.locator("body").get_attribute("data-api"))
        assert data["from"] == f"{YEAR}-01-01" and data["to"] == f"{YEAR}-12-31"
        assert_cards(page, data["totals"])
        crumbs = page.locator("#crumbs").inner_text()
        assert "Bắc Ninh" in crumbs and "Xã Gia Bình" in crumbs and "Chi bộ Khu phố 1" in crumbs
        assert [r.get_attribute("data-meeting-id") for r in page.locator("tr.meeting").all()] == [m["id"] for m in data["meetings"]]
        for m in data["meetings"]:
            row = page.locator(f'tr.meeting[data-meeting-id="{m["id"]}"]')
            for key in ("expected", "present", "late", "excused", "unexcused", "overrides"):
                assert row.locator(f"td.{key}").inner_text() == str(m["totals"][key]), (m["id"], key)
            assert row.locator("td.rate").inner_text() == pct(m["totals"]["rate"])
        # the trend: one point a month with meetings
        assert page.locator("#trend").get_attribute("data-points") == str(sum(1 for m in data["months"] if m["totals"]["rate"] is not None))
        assert page.locator("#trend canvas").count() >= 1
        assert page.locator("tr.month").count() == 12
        # members: everyone expected at least once (m5 until March), below the threshold and the warnings
        assert {r.get_attribute("data-member-id") for r in page.locator("tr.member").all()} == {m["member"] for m in data["members"]}
        assert {r.get_attribute("data-member-id") for r in page.locator("tr.below").all()} == {m["member"] for m in data["below"]}
        assert {(r.get_attribute("data-member-id"), r.get_attribute("data-level")) for r in page.locator("tr.warning").all()} == \
            {(w["member"], w["level"]) for w in data["warnings"]}
        assert ("m2", "rule") in {(w["member"], w["level"]) for w in data["warnings"]}
        rule = page.locator('tr.warning[data-level=rule] .badge').first.evaluate("e => getComputedStyle(e).backgroundColor")
        warning = page.locator('tr.warning[data-level=warning] .badge').first.evaluate("e => getComputedStyle(e).backgroundColor")
        assert rule != warning  # the two levels look different
        shots(page, "cell")

        page.click('#counts .card[data-count="unexcused"]')
        page.wait_for_selector('#counts .card[data-count="unexcused"][aria-current=true]')
        shown = {r.get_attribute("data-member-id") for r in page.locator("tr.member").all()}
        assert shown == {m["member"] for m in data["members"] if m["totals"]["unexcused"] > 0}
        assert page.locator("#shown-count").get_attribute("data-count") == str(len(shown))
        # a meeting's count opens its sheet filtered to those members
        page.click('tr.meeting[data-meeting-id="c1-02"] td.late a')
        page.wait_for_url("**/attendance/meetings/c1-02?show=late")
        page.wait_for_selector("body[data-loaded=yes]")
        assert {r.get_attribute("data-member-id") for r in page.locator("tr.member").all()} == {"m3"}

        # another window: the page reads the API for it
        page.goto(service.url + f"attendance/cells/C1?from={YEAR}-02-01&to={YEAR}-02-28")
        page.wait_for_selector("body[data-loaded=yes]")
        feb = api(service, page.locator("body").get_attribute("data-api"))
        assert [r.get_attribute("data-meeting-id") for r in page.locator("tr.meeting").all()] == ["c1-02"]
        assert_cards(page, feb["totals"])
        assert page.errors == []


def test_the_commune_and_province_pages_rank_cells_and_show_who_did_not_meet(year_of_meetings, page_of):
    with CentralService(year_of_meetings) as service:
        page = page_of()
        cell = api(service, "/api/cells/C1/attendance")
        commune, province = cell["cell"]["commune_code"], cell["cell"]["province_code"]
        login(page, service.url, "xem", f"/attendance/communes/{commune}?year={YEAR}&month={YEAR}-04")
        data = api(service, page.locator("body").get_attribute("data-api"))
        assert data["area"]["name"] == "Xã Gia Bình" and data["month"] == f"{YEAR}-04"
        assert_cards(page, data["totals"])
        assert "Xã Gia Bình" in page.locator("#title").inner_text()
        ids = [r.get_attribute("data-cell-id") for r in page.locator("tr.cell").all()]
        known = [c["id"] for c in data["cells"] if c["totals"]["rate"] is not None]
        assert ids[:len(known)] == known[::-1]  # worst first
        for c in data["cells"]:
            row = page.locator(f'tr.cell[data-cell-id="{c["id"]}"]')
            assert row.locator(".rate-cell").inner_text() == pct(c["totals"]["rate"])
            assert row.locator(".met").get_attribute("data-met") == str(c["met_in_month"]).lower()
        assert {li.get_attribute("data-cell-id") for li in page.locator("li.not-met").all()} == {c["id"] for c in data["not_met"]} == {"C2"}
        shots(page, "commune")
        page.uncheck('.worst-first[data-list="cells"]')
        assert [r.get_attribute("data-cell-id") for r in page.locator("tr.cell").all()] == [c["id"] for c in data["cells"]]
        page.click('tr.cell[data-cell-id="C2"] .name a')
        page.wait_for_url(f"**/attendance/cells/C2?year={YEAR}")
        page.wait_for_selector("body[data-loaded=yes]")
        assert "Chi bộ Khu phố 2" in page.locator("#title").inner_text()

        page.goto(service.url + f"attendance/provinces/{province}?year={YEAR}")
        page.wait_for_selector("body[data-loaded=yes]")
        data = api(service, page.locator("body").get_attribute("data-api"))
        assert data["area"]["name"] == "Bắc Ninh" and data["month"] == f"{YEAR}-12"
        assert_cards(page, data["totals"])
        assert {r.get_attribute("data-cell-id") for r in page.locator("tr.cell").all()} == {"C1", "C2", "C3"}
        assert [r.get_attribute("data-code") for r in page.locator("tr.commune").all()] == \
            [str(c["code"]) for c in data["communes"] if c["totals"]["rate"] is not None][::-1]
        assert page.locator("li.not-met").count() == len(data["not_met"]) == 3  # nobody met in December
        assert {r.get_attribute("data-member-id") for r in page.locator("tr.warning").all()} == \
            {w["member"] for w in api(service, f"/api/attendance/warnings?year={YEAR}&province={province}")["members"]}
        shots(page, "province")
        assert page.errors == []


def test_a_members_year_meeting_by_meeting_with_the_warning_and_history(year_of_meetings, page_of):
    with CentralService(year_of_meetings) as service:
        page = page_of()
        login(page, service.url, "xem", f"/attendance/members/m5?year={YEAR}")
        data = api(service, page.locator("body").get_attribute("data-api"))
        assert_cards(page, data["totals"])
        assert [(r.get_attribute("data-meeting-id"), r.get_attribute("data-status")) for r in page.locator("tr.meeting").all()] == \
            [(m["meeting"], m["status"]) for m in data["meetings"]]
        assert {m["cell"] for m in data["meetings"]} == {"C1", "C2"}  # both cells of the year
        text = page.locator("#meetings").inner_text()
        assert "Chi bộ Khu phố 1" in text and "Chi bộ Khu phố 2" in text
        kinds = [r.get_attribute("data-kind") for r in page.locator("tr.event").all()]
        assert kinds == [e["kind"] for e in data["history"]] == ["joined", "transferred_out", "transferred_in"]
        history = page.locator("#history").inner_text()
        assert "Chuyển sinh hoạt đến" in history and "Chi bộ Khu phố 2" in history and "C2\t" not in history
        assert page.locator("#warning").is_hidden() == (data["warning"] is None)
        shots(page, "member-transferred")

        page.goto(service.url + f"attendance/members/m2?year={YEAR}")
        page.wait_for_selector("body[data-loaded=yes]")
        data = api(service, page.locator("body").get_attribute("data-api"))
        assert data["warning"]["level"] == "rule"
        assert page.locator("#warning").get_attribute("data-level") == "rule"
        assert str(data["warning"]["unexcused"]) in page.locator("#warning").inner_text()
        # a rate under the 50 % threshold is not shown in the good-news green
        assert data["totals"]["rate"] < 0.5
        assert "low" in page.locator('#counts .card[data-count="rate"]').get_attribute("class")
        page.click('#counts .card[data-count="unexcused"]')
        page.wait_for_selector('#counts .card[data-count="unexcused"][aria-current=true]')
        assert [r.get_attribute("data-meeting-id") for r in page.locator("tr.meeting").all()] == \
            [m["meeting"] for m in data["meetings"] if m["status"] == "unexcused"]
        shots(page, "member-warning")
        assert page.errors == []


def test_the_landing_page_links_each_meeting_to_its_sheet(year_of_meetings, page_of):
    with CentralService(year_of_meetings) as service:
        page = page_of()
        login(page, service.url, "xem", "/")
        page.wait_for_selector("#meeting-now")
        page.click("#meeting-now a.title")
        page.wait_for_url("**/attendance/meetings/now")
        page.wait_for_selector("body[data-loaded=yes]")
        assert page.locator("#title").inner_text().startswith("Sinh hoạt chi bộ hôm nay")
        assert page.errors == []
