"""What a member sees on the kiosk's screen, in Chromium: full-screen colour with a symbol of its own shape
for each verdict, what to do next after a refusal, the hall, its meeting and its local time when idle.

The page is served by the real kiosk page app, fed by the real check-in flow on a real roster bundle and
outbox; the face verdict is told (as in test_checkin), because these cases are about the screen.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from nacl.signing import SigningKey

from tests.edge_agent.kiosk_rig import SIZES, PageKiosk, open_page, screen
from tests.edge_agent.test_checkin import make_bundle

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
HALL_NAME = "Nhà văn hoá thôn Đông, xã An Bình"


@pytest.fixture
def make_kiosk(tmp_path):
    made: list[PageKiosk] = []

    def make(verdict_s: float = 30.0) -> PageKiosk:
        # the roster's meeting "Sinh hoạt chi bộ" started 18:55 UTC
        made.append(PageKiosk(tmp_path / f"k{len(made)}", SigningKey.generate(), make_bundle, hall_name=HALL_NAME,
                              verdict_s=verdict_s))
        return made[-1]

    yield make
    for k in made:
        k.stop()


def fills_the_screen(page) -> bool:
    return page.evaluate("""() => { const r = document.body.getBoundingClientRect();
        return r.width >= innerWidth && r.height >= innerHeight; }""")


def overflowing(page) -> list[str]:
    """Elements whose text does not fit their box, or the page scrolling past the screen."""
    return page.evaluate("""() => {
        const bad = [];
        if (document.documentElement.scrollHeight > innerHeight + 1 || document.documentElement.scrollWidth > innerWidth + 1)
            bad.push('page scrolls');
        for (const el of document.querySelectorAll('#text p, header span, #symbol')) {
            const r = el.getBoundingClientRect();
            if (r.width === 0) continue;
            if (el.scrollWidth > el.clientWidth + 1 || r.right > innerWidth + 1 || r.bottom > innerHeight + 1 || r.top < 0)
                bad.push(el.id || el.tagName);
        }
        const footer = document.querySelector('footer').getBoundingClientRect();
        const text = document.getElementById('text').getBoundingClientRect();
        if (text.bottom > footer.top + 1) bad.push('text under the footer');
        return bad; }""")


def test_accepted_is_full_screen_green_with_a_tick(make_kiosk, chromium):
    kiosk = make_kiosk()
    page = open_page(chromium, kiosk)
    kiosk.tap("04AA")
    s = screen(page, "accepted")
    assert s["symbols"] == {"ok": True, "bad": False, "wait": False}
    assert s["background"] == "rgb(11, 107, 46)" and fills_the_screen(page)
    assert s["vi"] == "Đã điểm danh" and s["en"] == "Checked in" and s["name"] == "Nguyễn Văn An"


def test_a_refusal_is_full_screen_red_with_a_cross_and_says_what_to_do(make_kiosk, chromium):
    kiosk = make_kiosk()
    page = open_page(chromium, kiosk)
    kiosk.face.status = "no_match"
    kiosk.tap("04AA")
    s = screen(page, "face_mismatch")
    assert s["symbols"] == {"ok": False, "bad": True, "wait": False}
    assert s["background"] == "rgb(164, 22, 26)" and fills_the_screen(page)
    assert "chạm lại" in s["vi"] and "thư ký" in s["vi"] and "see the secretary" in s["en"]

    kiosk.tap("04BB")  # a member of cell C2 while C1's meeting is on: the meeting's name, never a cell id
    s = screen(page, "other_cell")
    assert "chi bộ khác" in s["vi"] and "«Sinh hoạt chi bộ»" in s["vi"] and "C2" not in s["vi"] + s["en"]
    assert "another cell" in s["en"] and "secretary" in s["en"]

    kiosk.tap("027061012345|Nguyễn Văn An|04081961", kind="cccd_qr")
    s = screen(page, "bad_qr")
    assert s["vi"].startswith("Mã QR không đọc được") and "quét lại" in s["vi"]
    assert s["en"].startswith("QR code not readable") and page.inner_text("#detail") == ""  # said once, in each language


def test_idle_screen_shows_hall_meeting_and_the_local_clock(make_kiosk, chromium):
    kiosk = make_kiosk()
    page = open_page(chromium, kiosk)
    assert page.inner_text("#hall") == HALL_NAME
    meeting = page.inner_text("#meeting")
    assert "Đang họp" in meeting and "Sinh hoạt chi bộ" in meeting
    assert "01:55–03:55" in meeting  # 18:55–20:55 UTC in Asia/Ho_Chi_Minh
    shown = page.inner_text("#time")
    now = datetime.now(HCM)
    assert shown in {(now + timedelta(minutes=d)).strftime("%H:%M") for d in (-1, 0, 1)}, shown
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") != "rgb(11, 107, 46)"


def test_already_checked_in_says_the_local_time(make_kiosk, chromium):
    kiosk = make_kiosk()
    page = open_page(chromium, kiosk)
    kiosk.tap("04AA")
    screen(page, "accepted")
    kiosk.tap("04AA")
    s = screen(page, "already")
    assert s["vi"] == "Đã điểm danh trước đó lúc 02:00" and s["en"] == "Already checked in at 02:00"  # 19:00 UTC
    assert s["symbols"]["ok"]


def test_a_verdict_stays_the_configured_seconds_and_the_next_tap_replaces_it(make_kiosk, chromium):
    kiosk = make_kiosk(verdict_s=2.0)
    page = open_page(chromium, kiosk)
    kiosk.tap("04FF")
    screen(page, "unknown_card")
    shown_at = time.monotonic()
    kiosk.tap("04AA")  # the next member does not wait for the refusal to go
    screen(page, "accepted", timeout=1_500)
    replaced_after = time.monotonic() - shown_at
    accepted_at = time.monotonic()
    page.wait_for_selector("#screen[data-screen='idle']", timeout=15_000)
    stayed = time.monotonic() - accepted_at
    assert replaced_after < 1.5 and stayed >= 1.5, (replaced_after, stayed)


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_every_screen_fits_the_kiosk_display(make_kiosk, chromium, size):
    kiosk = make_kiosk()
    page = open_page(chromium, kiosk, size)
    assert overflowing(page) == [], "idle"
    kiosk.face.status = "no_match"
    for uid, name in (("04AA", "face_mismatch"), ("04BB", "other_cell"), ("04CC", "no_template")):
        kiosk.tap(uid)
        screen(page, name)
        assert overflowing(page) == [], name
    kiosk.face.status = "match"
    kiosk.tap("04AA")
    screen(page, "accepted")
    assert overflowing(page) == [], "accepted"
