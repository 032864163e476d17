"""A member taps a card (or scans a CCCD) at the kiosk: what the member sees, what central stores."""

from __future__ import annotations

import httpx
import pytest

from hall import demo_data

from .conftest import wait_for

OBAMA, BIDEN, KIT, ROSE, ALEX = demo_data.MEMBERS

pytestmark = pytest.mark.e2e


def api(system, path):
    return httpx.get(system.central_url + path, headers={"Authorization": f"Bearer {system.token}"}, timeout=5).json()


def present_ids(system):
    data = api(system, f"/api/meetings/{system.meeting}/attendance")
    return {row["member_id"] for row in data["present"]}


def verdict(page, screen, timeout=15_000):
    page.wait_for_selector(f"#screen[data-screen='{screen}']", timeout=timeout)
    return page.inner_text("#vi"), page.inner_text("#name"), page.inner_text("#en")


def reset_screens(page):
    page.evaluate("() => { window.__screens = []; }")


def test_kiosk_idle_page_is_vietnamese_first(kiosk_page):
    assert kiosk_page.get_attribute("html", "lang") == "vi"
    # no face in view yet asks the member to look at the camera first; a face in view, to tap the card
    vi, en = kiosk_page.inner_text("#vi"), kiosk_page.inner_text("#en")
    assert ("chạm thẻ" in vi and "Tap your member card" in en) or (vi, en) == ("Mời đồng chí nhìn vào camera", "Please look at the camera")


def test_wrong_face_on_a_members_card_is_rejected_and_not_stored(system, kiosk_page):
    reset_screens(kiosk_page)
    system.rig.tap(OBAMA.card, face=str(system.faces / BIDEN.probe))
    vi, name, _ = verdict(kiosk_page, "face_mismatch")
    assert vi.startswith("Khuôn mặt không khớp với thẻ") and name == OBAMA.name
    assert kiosk_page.evaluate("window.__screens").index("verifying") < kiosk_page.evaluate("window.__screens").index("face_mismatch")
    assert system.pins.pin(27).state  # red LED on
    assert system.agent.outbox.head()[0] == 0
    assert OBAMA.id not in present_ids(system)


def test_member_card_and_matching_face_is_checked_in_and_reaches_central(system, kiosk_page):
    reset_screens(kiosk_page)
    system.rig.tap(OBAMA.card)  # the camera shows obama2.jpg; obama.jpg was enrolled
    vi, name, _ = verdict(kiosk_page, "accepted")
    assert (vi, name) == ("Đã điểm danh", OBAMA.name)
    screens = kiosk_page.evaluate("window.__screens")
    assert "verifying" in screens and screens.index("verifying") < screens.index("accepted")
    assert system.pins.pin(17).state  # green LED on
    wait_for(lambda: OBAMA.id in present_ids(system), what="attendance at central")
    wait_for(lambda: system.agent.outbox.depth() == 0, what="central's ack emptying the outbox")


def test_second_tap_says_already_checked_in_without_a_new_record(system, kiosk_page):
    head = system.agent.outbox.head()[0]
    system.rig.tap(OBAMA.card)
    vi, _, en = verdict(kiosk_page, "already")
    assert vi.startswith("Đã điểm danh trước đó lúc") and "Already checked in" in en
    assert system.agent.outbox.head()[0] == head


def test_cccd_qr_from_the_serial_scanner_checks_in(system, kiosk_page):
    system.rig.scan(KIT.qr())
    vi, name, _ = verdict(kiosk_page, "accepted")
    assert name == KIT.name
    wait_for(lambda: KIT.id in present_ids(system), what="Kit's attendance at central")


def test_unknown_card(system, kiosk_page):
    system.rig.tap(demo_data.UNKNOWN_CARD, face="none")
    vi, _, _ = verdict(kiosk_page, "unknown_card")
    assert vi.startswith("Thẻ không có trong danh sách") and "thư ký" in vi


def test_member_of_another_cell(system, kiosk_page):
    system.rig.tap(ALEX.card)
    vi, name, _ = verdict(kiosk_page, "other_cell")
    assert name == ALEX.name and "chi bộ khác" in vi and demo_data.OTHER_CELL not in vi  # names, never ids


def test_malformed_qr_shows_the_reason(system, kiosk_page):
    system.rig.scan("027061012345|Obama|04081961")
    vi, _, en = verdict(kiosk_page, "bad_qr")
    assert vi.startswith("Mã QR không đọc được") and "quét lại" in vi
    assert en.startswith("QR code not readable") and "fields" not in en  # the parser's English reason goes to the log


def test_garbage_on_the_reader_line_is_survived(system, kiosk_page):
    reader = next(r for r in system.agent.readers if hasattr(r, "stats") and "bad_frames" in r.stats)
    before = reader.stats["bad_frames"]
    system.rig.garbage(bytes.fromhex("00ff05fbd44a0101") + b"\x13\x37garbage\x00\x00\xff")
    system.rig.tap(ROSE.card)
    vi, name, _ = verdict(kiosk_page, "accepted")
    assert name == ROSE.name
    assert reader.stats["bad_frames"] > before


def test_central_page_lists_who_is_present(system, browser):
    page = browser.new_page()
    page.goto(system.login_link())  # lands on the fleet overview
    page.goto(system.central_url + "/")  # the attendance page
    for member in (OBAMA, KIT, ROSE):
        row = page.wait_for_selector(f"tr.present-member[data-member-id='{member.id}']", timeout=10_000)
        assert member.name in row.inner_text()
    # Biden never checked in (his face did not match Obama's card): listed as absent, not present
    assert page.query_selector(f"tr.present-member[data-member-id='{BIDEN.id}']") is None
    assert page.query_selector(f"li.absent-member[data-member-id='{BIDEN.id}']") is not None
    page.close()


def test_the_hall_streams_into_the_meeting_and_central_shows_it_live(system, browser):
    devices = wait_for(lambda: [d for d in api(system, "/api/devices") if (d.get("stream") or {}).get("state") == "live"],
                       timeout=30, what="the kiosk's stream to go live")
    assert devices[0]["stream"]["fps"] > 10
    page = browser.new_page()
    page.goto(system.login_link())  # lands on the fleet overview
    page.goto(system.central_url + "/")  # the attendance page and its kiosk list
    cell = page.wait_for_selector("tr.device td.stream[data-stream='live']", timeout=10_000)
    assert "trực tiếp" in cell.inner_text()
    page.close()
    recordings = list((system.central.settings.data_dir / "media").rglob("*.flv"))
    assert recordings and max(r.stat().st_size for r in recordings) > 0, "central records the hall's push"
