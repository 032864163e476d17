"""The secretary's override at the kiosk, in Chromium: after a failed face check the meeting's secretary
(or chair) taps their own card and types their PIN on the touch page; the member's record then names
the officer and the failed check. Wrong PINs are limited per officer, and the limit survives a restart.

Real kiosk page app, check-in flow, roster bundle (officers and PIN hashes sealed as central seals them),
outbox and lockout file; the face verdict is told (as in test_checkin) because these cases are about
the override, not faces. The whole path through central is in tests/e2e/test_override_e2e.py.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher
from nacl.signing import SigningKey

from contract import (
    Bundle,
    Meeting,
    Member,
    device_id_from_public_key,
    encode_signed,
    parse_record,
    seal_members,
    seal_pins,
    seal_templates,
)
from edge_agent.checkin import Outcome
from edge_agent.override import OverrideDesk
from tests.edge_agent.kiosk_rig import SIZES, PageKiosk, open_page, screen
from tests.edge_agent.test_checkin import NOW

PIN = "246810"
MEMBER, SECRETARY, CHAIR, OTHER = "04A1", "04B2", "04C3", "04D4"  # card UIDs
SHOTS = Path("/tmp/shots")


def officers_bundle(central: SigningKey, device: SigningKey) -> bytes:
    members = [
        Member(id="A", name="Nguyễn Văn An", cell="C1", cards=[MEMBER]),
        Member(id="S", name="Trần Thị Thư", cell="C1", cards=[SECRETARY]),
        Member(id="CH", name="Lê Văn Bí", cell="C1", cards=[CHAIR]),
        Member(id="O", name="Phạm Văn Khác", cell="C1", cards=[OTHER]),
    ]
    start = NOW - timedelta(minutes=5)
    meeting = Meeting(id="MT", cell="C1", hall="H", title="Sinh hoạt chi bộ", starts_at=start.isoformat(),
                      ends_at=(start + timedelta(hours=2)).isoformat(), secretary="S", chair="CH")
    hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
    b = Bundle(device=device_id_from_public_key(device.verify_key), hall="H", version=1, issued_at=NOW.isoformat(),
               members_sealed=seal_members(device.verify_key, members), meetings=[meeting],
               templates_sealed=seal_templates(device.verify_key, {m.id: [[0.0] * 128] for m in members}),
               pins_sealed=seal_pins(device.verify_key, {"S": hasher.hash(PIN), "CH": hasher.hash("1357")}))
    return encode_signed(central, b)


class Wall:
    """The lockout's wall clock, moved by the test instead of waiting five minutes."""

    def __init__(self):
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


class Kiosk(PageKiosk):
    """The touch page and check-in flow with the override desk; the face check always fails first."""

    def __init__(self, data: Path, central: SigningKey, wall: Wall, *, pending_s: float = 60.0):
        desk = OverrideDesk(data, attempts=5, lockout_s=300.0, pending_s=pending_s, now=wall)
        super().__init__(data, central, officers_bundle, hall_name="Nhà văn hoá thôn Đông", desk=desk)
        self.face.status = "no_match"


@pytest.fixture
def kiosks(tmp_path):
    central, wall, made = SigningKey.generate(), Wall(), []

    def make(name: str = "k", **kw) -> Kiosk:
        made.append(Kiosk(tmp_path / name, central, wall, **kw))
        return made[-1]

    make.wall = wall
    yield make
    for k in made:
        if k.thread.is_alive():
            k.stop()


def type_pin(page, pin: str) -> None:
    for digit in pin:
        page.click(f"#pinpad [data-digit='{digit}']")
    assert page.locator("#dots span").count() == len(pin)  # dots only
    assert pin not in page.inner_text("body")
    page.click("#pin-ok")


def fails_and_asks_for_an_officer(kiosk: Kiosk, page) -> None:
    kiosk.tap(MEMBER)
    screen(page, "face_mismatch")
    page.click("#override-btn")
    shown = screen(page, "override_officer")
    assert "thư ký hoặc bí thư" in shown["vi"] and shown["name"] == "Nguyễn Văn An"
    assert page.is_visible("#cancel-btn") and not page.is_visible("#pinpad")


def records(kiosk: Kiosk) -> list:
    return [parse_record(q.payload) for q in kiosk.outbox.after(0, 100)]


def test_secretary_card_and_right_pin_check_the_member_in_with_the_override_recorded(kiosks, chromium):
    kiosk = kiosks()
    page = open_page(chromium, kiosk)
    kiosk.tap(MEMBER)
    screen(page, "face_mismatch")
    assert page.is_visible("#override-btn")
    assert "Thư ký xác nhận" in page.inner_text("#override-btn")
    page.click("#override-btn")
    screen(page, "override_officer")
    kiosk.tap(SECRETARY)
    shown = screen(page, "override_pin")
    assert shown["vi"] == "Đồng chí Trần Thị Thư: mời nhập mã PIN" and shown["en"] == "Trần Thị Thư: enter your PIN"
    assert page.is_visible("#pinpad")
    type_pin(page, PIN)
    shown = screen(page, "override_accepted")
    assert shown["vi"] == "Đã điểm danh (thư ký xác nhận)" and shown["name"] == "Nguyễn Văn An"
    assert page.inner_text("#detail") == "Sinh hoạt chi bộ"  # which meeting, as a plain check-in says
    [record] = records(kiosk)
    assert (record.member, record.proof.override, record.proof.override_reason) == ("A", "S", "face_mismatch")
    assert record.proof.face_distance == 0.8  # the measured distance stays
    assert kiosk.service.results[-1].outcome is Outcome.OVERRIDE_ACCEPTED
    page.close()


def test_a_card_that_is_not_an_officers_ends_the_override_and_is_that_members_own_check_in(kiosks, chromium):
    """A pending override must never hold the queue: the next member's tap (or the member trying again)
    is their own check-in, and the pending override is over."""
    kiosk = kiosks()
    page = open_page(chromium, kiosk)
    fails_and_asks_for_an_officer(kiosk, page)
    kiosk.face.status = "match"  # the next member in line has a face that passes
    kiosk.tap(OTHER)
    shown = screen(page, "accepted")
    assert shown["name"] == "Phạm Văn Khác" and kiosk.desk.stage is None
    assert [r.member for r in records(kiosk)] == ["O"]
    kiosk.tap(CHAIR)  # an officer's card now is just the chair checking in
    assert screen(page, "accepted")["name"] == "Lê Văn Bí"
    assert not page.is_visible("#pinpad") and [r.member for r in records(kiosk)] == ["O", "CH"]
    page.close()


class DownVerifier:
    """A face worker past its restart budget, as FaceWorker.verify reports it."""

    def verify(self, templates, timeout=5.0):
        from edge_agent.face.worker import WorkerDown

        raise WorkerDown("face worker down: restart budget exhausted")


def test_with_face_checking_down_the_idle_screen_says_so_and_the_secretary_can_confirm(kiosks, chromium):
    kiosk = kiosks()
    page = open_page(chromium, kiosk)
    kiosk.on_loop(kiosk.display.set_face_state, "down")
    page.wait_for_function("document.getElementById('vi').textContent.startsWith('Hệ thống nhận diện đang ngừng hoạt động')")
    kiosk.service.face = DownVerifier()
    kiosk.tap(MEMBER)
    screen(page, "face_down")
    page.click("#override-btn")
    screen(page, "override_officer")
    kiosk.tap(SECRETARY)
    screen(page, "override_pin")
    type_pin(page, PIN)
    screen(page, "override_accepted")
    assert [(r.member, r.proof.override, r.proof.override_reason) for r in records(kiosk)] == [("A", "S", "face_down")]
    page.close()


def test_an_officer_cannot_confirm_their_own_failed_check_but_the_other_officer_can(kiosks, chromium):
    kiosk = kiosks()
    page = open_page(chromium, kiosk)
    kiosk.tap(SECRETARY)  # the secretary's own face check fails
    screen(page, "face_mismatch")
    page.click("#override-btn")
    screen(page, "override_officer")
    kiosk.tap(SECRETARY)
    shown = screen(page, "override_self")
    assert "tự xác nhận" in shown["vi"] and "cannot confirm yourself" in shown["en"]
    assert kiosk.desk.stage == "officer" and not page.is_visible("#pinpad") and kiosk.outbox.depth() == 0
    kiosk.tap(CHAIR)
    screen(page, "override_pin")
    type_pin(page, "1357")
    screen(page, "override_accepted")
    assert [(r.member, r.proof.override) for r in records(kiosk)] == [("S", "CH")]
    page.close()


def test_five_wrong_pins_lock_the_override_which_a_restart_does_not_undo(kiosks, chromium):
    kiosk = kiosks()
    page = open_page(chromium, kiosk)
    fails_and_asks_for_an_officer(kiosk, page)
    kiosk.tap(SECRETARY)
    screen(page, "override_pin")
    for left in (4, 3, 2, 1):
        type_pin(page, "0000")
        page.wait_for_function(f"document.getElementById('vi').textContent.startsWith('PIN sai, còn {left} lần')")
        assert page.inner_text("#en").startswith(f"Wrong PIN, attempts left: {left}")
        assert page.is_visible("#pinpad")
    type_pin(page, "0000")
    shown = screen(page, "override_locked")
    assert re.fullmatch(r"Đồng chí Trần Thị Thư đã nhập sai PIN 5 lần — tạm khóa đến \d\d:\d\d\. "
                        r"Mời thư ký hoặc bí thư còn lại xác nhận", shown["vi"]), shown["vi"]
    assert shown["en"].startswith("Trần Thị Thư: wrong PIN 5 times — locked until")
    assert not page.is_visible("#pinpad") and kiosk.outbox.depth() == 0
    # the right PIN is refused while locked: the officer's tap no longer opens the PIN pad
    fails_and_asks_for_an_officer(kiosk, page)
    kiosk.tap(SECRETARY)
    screen(page, "override_locked")
    assert httpx.post(kiosk.url + "api/override/pin", json={"pin": PIN}).json()["result"] == "not_pending"
    page.close()
    kiosk.stop()

    # an agent restart on the same data directory keeps the lockout
    again = kiosks("k")
    page = open_page(chromium, again)
    fails_and_asks_for_an_officer(again, page)
    again.tap(SECRETARY)
    screen(page, "override_locked")
    # ... until it ends: then the right PIN checks the member in
    kiosks.wall.t += 301
    fails_and_asks_for_an_officer(again, page)
    again.tap(SECRETARY)
    screen(page, "override_pin")
    type_pin(page, PIN)
    screen(page, "override_accepted")
    assert again.outbox.depth() == 1
    page.close()


def test_a_pending_override_can_be_cancelled(kiosks, chromium):
    kiosk = kiosks()
    page = open_page(chromium, kiosk)
    fails_and_asks_for_an_officer(kiosk, page)
    page.click("#cancel-btn")
    screen(page, "idle")
    assert kiosk.desk.stage is None and kiosk.outbox.depth() == 0
    page.close()


def test_a_pending_override_without_progress_expires(kiosks, chromium):
    kiosk = kiosks("short", pending_s=2.0)
    page = open_page(chromium, kiosk)
    kiosk.tap(MEMBER)
    screen(page, "face_mismatch")
    page.click("#override-btn")
    # The refusal alone would stay 30 s and the wait below gives up after 15: idle now means the
    # pending override expired, nobody having tapped.
    screen(page, "idle", timeout=15_000)
    assert kiosk.desk.stage is None and kiosk.outbox.depth() == 0
    page.close()


def test_the_offer_is_only_for_failed_face_checks(kiosks, chromium):
    kiosk = kiosks()
    page = open_page(chromium, kiosk)
    kiosk.face.status = "several_faces"
    kiosk.tap(MEMBER)
    screen(page, "several_faces")
    assert not page.is_visible("#override-btn")
    assert httpx.post(kiosk.url + "api/override/start").status_code == 409
    kiosk.face.status = "not_live"
    kiosk.tap(MEMBER)
    screen(page, "not_live")
    assert page.is_visible("#override-btn")
    page.close()


def test_the_pin_endpoint_limits_its_body_and_checks_its_shape(kiosks):
    kiosk = kiosks()
    assert httpx.post(kiosk.url + "api/override/pin", content=b"{" + b" " * 4096 + b"}").status_code == 413
    assert httpx.post(kiosk.url + "api/override/pin", json={"pin": "12ab"}).status_code == 400
    assert httpx.post(kiosk.url + "api/override/pin", json={"pin": "1234\n"}).status_code == 400  # not a wrong attempt
    assert httpx.post(kiosk.url + "api/override/pin", json={"pin": PIN}).status_code == 409  # nothing pending


def test_idle_screen_asks_to_look_at_the_camera_until_a_face_is_seen(kiosks, chromium):
    kiosk = kiosks()
    page = open_page(chromium, kiosk)
    kiosk.on_loop(kiosk.display.set_face_seen, False)
    page.wait_for_function("document.getElementById('vi').textContent === 'Mời đồng chí nhìn vào camera'")
    assert page.inner_text("#en") == "Please look at the camera"
    kiosk.on_loop(kiosk.display.set_face_seen, True)
    page.wait_for_function("document.getElementById('vi').textContent.startsWith('Mời chạm thẻ')")
    page.close()


def unfit(page) -> list[str]:
    """What does not fit the screen: scrolling, text overflowing its box, a control outside the viewport."""
    return page.evaluate("""() => {
        const bad = [];
        if (document.documentElement.scrollHeight > innerHeight + 1 || document.documentElement.scrollWidth > innerWidth + 1)
            bad.push('page scrolls');
        const footer = document.querySelector('footer').getBoundingClientRect();
        for (const el of document.querySelectorAll('#text p, .actions button, #pinpad button, #dots')) {
            const r = el.getBoundingClientRect();
            if (r.width === 0) continue;
            if (el.scrollWidth > el.clientWidth + 1 || r.right > innerWidth + 1 || r.bottom > footer.top + 1 || r.top < 0)
                bad.push(el.id || el.textContent.trim().slice(0, 12));
        }
        return bad; }""")


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_every_override_screen_fits_the_kiosk_display(kiosks, chromium, size):
    SHOTS.mkdir(parents=True, exist_ok=True)
    kiosk = kiosks()
    page = open_page(chromium, kiosk, size)
    tag = f"{size[0]}x{size[1]}"

    def check(name: str) -> None:
        assert unfit(page) == [], name
        page.screenshot(path=str(SHOTS / f"override-{tag}-{name}.png"))

    kiosk.on_loop(kiosk.display.set_face_seen, False)
    page.wait_for_function("document.getElementById('vi').textContent === 'Mời đồng chí nhìn vào camera'")
    check("0-idle-look")
    kiosk.tap(MEMBER)
    screen(page, "face_mismatch")
    check("1-offer")
    page.click("#override-btn")
    screen(page, "override_officer")
    check("2-officer")
    kiosk.tap(SECRETARY)
    screen(page, "override_pin")
    page.click("#pinpad [data-digit='1']")
    page.click("#pinpad [data-digit='2']")
    check("4-pin")
    page.click("#pin-erase")
    page.click("#pin-erase")
    for _ in range(4):
        type_pin(page, "0000")
        page.wait_for_function("document.getElementById('screen').dataset.screen === 'override_wrong_pin'")
    check("5-wrong-pin")
    type_pin(page, "0000")
    screen(page, "override_locked")
    check("6-locked")
    kiosk.face.status = "no_match"
    kiosk.tap(MEMBER)
    screen(page, "face_mismatch")
    page.click("#override-btn")
    screen(page, "override_officer")
    kiosk.tap(CHAIR)
    screen(page, "override_pin")
    type_pin(page, "1357")
    screen(page, "override_accepted")
    check("7-accepted")
    page.close()
