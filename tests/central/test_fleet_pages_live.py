"""The device page in Chromium: names instead of ids, outcomes in Vietnamese with English beside, the chart's time
axis in Vietnamese style in the halls' time zone, the hall's live stream for logged-in staff only (real nginx-rtmp,
real ffmpeg); and the overview's alert Ack seen by another tab, live."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import httpx

from central.alerts import queries as alert_queries
from central.media import media_secret
from central.service import CentralService
from contract import Topics
from tests.central import STAFF_TOKEN, Probe, wait_until
from tests.central import test_fleet_pages as pages
from tests.central.test_attempts import attempt
from tests.conftest import free_port

hall_with_meeting = pages.hall_with_meeting  # the fixture: a hall with a meeting now, its kiosk, users kt and xem
login, shots, status = pages.login, pages.shots, pages.status


def test_device_page_shows_names_vietnamese_outcomes_and_a_vietnamese_time_axis(hall_with_meeting, broker, chromium):
    settings, kiosk, _ = hall_with_meeting
    topics = Topics()
    probe = Probe(broker.port)
    with CentralService(settings) as service:
        probe.publish(topics.status(kiosk.id), status(kiosk, temperature_c=55.0, queue_depth=1), retain=True)
        probe.publish(topics.attendance(kiosk.id), kiosk.record("m1", "mt1").to_wire())
        probe.publish(topics.attempt(kiosk.id), attempt(kiosk.key, 1, "face_mismatch", member="m2", meeting="mt1"))
        probe.publish(topics.attempt(kiosk.id), attempt(kiosk.key, 2, "unknown_card"))
        wait_until(lambda: service.store.scalar("SELECT COUNT(*) FROM attempts") == 2
                   and service.store.scalar("SELECT COUNT(*) FROM records") == 1, timeout=15, what="record and attempts stored")
        page = chromium.new_page(viewport={"width": 1440, "height": 900})
        try:
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            login(page, service.url, "xem", "viewer-password-123", f"/fleet/devices/{kiosk.id}")
            page.wait_for_selector("body[data-loaded=yes]", timeout=15_000)
            record = page.locator("#records .record").first
            assert "Nguyễn Văn A" in record.locator(".member").inner_text()
            assert "Họp chi bộ tháng 11" in record.locator(".meeting").inner_text()
            mismatch = page.locator('#attempts .attempt[data-outcome="face_mismatch"]')
            assert "Khuôn mặt không khớp thẻ" in mismatch.inner_text() and "face mismatch" in mismatch.inner_text()
            assert "Trần Thị B" in mismatch.locator(".member").inner_text()
            assert "Thẻ không có trong danh sách" in page.locator('#attempts .attempt[data-outcome="unknown_card"]').inner_text()
            mix = page.locator('#outcomes .outcome[data-outcome="accepted"]').inner_text()
            assert "Đã điểm danh" in mix and "checked in" in mix

            # 24 h clock and day/month in Asia/Ho_Chi_Minh: the first tick carries the date, no am/pm anywhere.
            assert page.locator("#live").is_hidden()  # the kiosk is not streaming: no empty player
            assert "not streaming" in page.locator("#live-state").inner_text()
            ticks = page.locator("#chart-queue").get_attribute("data-x-ticks").split("|")
            assert all(re.fullmatch(r"\d\d:\d\d(\n\d\d/\d\d)?", t) for t in ticks), ticks
            assert "\n" in ticks[0]
            today_hall = datetime.now(UTC).astimezone(__import__("zoneinfo").ZoneInfo("Asia/Ho_Chi_Minh")).strftime("%d/%m")
            assert any(t.endswith(today_hall) for t in ticks), ticks
            page.click('.range button[data-range="7d"]')
            page.wait_for_function("document.getElementById('chart-queue').dataset.xTicks.split('|').some(t => /^\\d\\d\\/\\d\\d$/.test(t))")
            assert errors == []
            shots(page, "device-names")
        finally:
            page.close()
        # The names lookup is bounded like any input.
        auth = {"Authorization": f"Bearer {STAFF_TOKEN}"}
        too_many = "&".join(f"member=m{n}" for n in range(101))
        assert httpx.get(service.url + "api/names?" + too_many, headers=auth, timeout=10).status_code == 400
        assert httpx.get(service.url + "api/names?member=m1", timeout=10).status_code == 401
        got = httpx.get(service.url + "api/names?member=m1&member=nobody&meeting=mt1", headers=auth, timeout=10).json()
        assert got == {"members": {"m1": "Nguyễn Văn A"}, "meetings": {"mt1": "Họp chi bộ tháng 11"}}
    probe.close()


def test_a_technicians_ack_on_the_overview_shows_who_acknowledged_in_another_tab_live(hall_with_meeting, broker, chromium):
    settings, kiosk, _ = hall_with_meeting
    with CentralService(settings) as service:
        at = datetime.now(UTC).isoformat()
        with service.store.transaction() as conn:
            alert = alert_queries.open_alert(conn, "disk_low", kiosk.id, kiosk.id, "H1", "Đĩa sắp đầy / disk low", {}, at)
        tech, viewer = (chromium.new_page(viewport={"width": 1440, "height": 900}) for _ in range(2))
        try:
            login(viewer, service.url, "xem", "viewer-password-123", "/fleet")
            login(tech, service.url, "kt", "kt-password-123", "/fleet")
            item = f'#alerts .alert[data-alert-id="{alert}"]'
            viewer.wait_for_selector(item + "[data-state=open]", timeout=15_000)
            assert viewer.locator(item + " button.ack").count() == 0  # a viewer may not acknowledge
            viewer.evaluate("window.__stayed = 'same page'")
            tech.click(item + " button.ack", timeout=15_000)
            tech.wait_for_selector(item + "[data-state=acknowledged]", timeout=10_000)
            assert "acknowledged by kt" in tech.locator(item).inner_text()
            viewer.wait_for_selector(item + "[data-state=acknowledged]", timeout=15_000)  # over the viewer's stream
            assert "acknowledged by kt" in viewer.locator(item).inner_text()
            assert viewer.evaluate("window.__stayed") == "same page"
            assert alert_queries.one(service.store, alert)["acked_by"] == "kt"
            shots(viewer, "overview-acked")
        finally:
            tech.close()
            viewer.close()


def test_staff_watch_the_halls_live_stream_on_the_device_page_and_strangers_get_401(hall_with_meeting, broker, chromium,
                                                                                    tmp_path):
    from edge_agent.streaming import Streamer, lavfi_pattern
    from tests.stream import require_media_tools
    from tests.stream import wait_until as wait_for  # says what it saw on a timeout
    from tests.stream.test_media import SMALL

    require_media_tools()
    settings, kiosk, _ = hall_with_meeting
    ports = {settings.http_port}
    while len(ports) < 3:  # bind(0) twice may hand out the same port: nginx would then fail to bind
        ports.add(free_port())
    rtmp, http = sorted(ports - {settings.http_port})
    settings = settings.model_copy(update={"media_enabled": True, "media_rtmp_port": rtmp, "media_http_port": http})
    with CentralService(settings) as service:
        playlist = service.url + f"api/media/hls/{kiosk.id}/index.m3u8"
        auth = {"Authorization": f"Bearer {STAFF_TOKEN}"}
        assert httpx.get(playlist, headers=auth, timeout=10).status_code == 404  # not streaming yet
        ingest = service.media.hall_ingest_url(media_secret(settings.data_dir), kiosk.id)
        pusher = Streamer(source=lavfi_pattern(size="320x180", fps=10), ingest_url=ingest, recording_dir=tmp_path / "rec",
                          quota_bytes=50_000_000, profile=SMALL, segment_s=2, recovery_wait_s=1)
        page = chromium.new_page(viewport={"width": 1440, "height": 900})
        pusher.start()
        try:
            wait_for(lambda: httpx.get(playlist, headers=auth, timeout=10).status_code == 200, 40,
                     "the hall's playlist served to staff", every=0.3,
                     on_timeout=lambda: (pusher.state(), service.media.running, service.media.last_errors()))
            text = httpx.get(playlist, headers=auth, timeout=10).text
            assert ".ts" in text and ingest.rpartition(".")[2] not in text  # named by device id, never the stream key
            # Without a login: 401, playlist and segment alike; nginx's own port does not serve the halls at all.
            segment = next(line for line in text.splitlines() if line.endswith(".ts"))
            assert httpx.get(playlist, timeout=10).status_code == 401
            assert httpx.get(service.url + f"api/media/hls/{kiosk.id}/{segment}", timeout=10).status_code == 401
            assert httpx.get(service.url + f"api/media/hls/{kiosk.id}/{segment}", headers=auth, timeout=10).status_code == 200
            nginx = f"http://127.0.0.1:{settings.media_http_port}/hls/{kiosk.id}/index.m3u8"
            assert httpx.get(nginx, timeout=10).status_code == 404
            for bad in ("nginx.conf", "index.m3u8.bak", "..", "%2e%2e%2fmedia.key"):
                assert httpx.get(service.url + f"api/media/hls/{kiosk.id}/{bad}", headers=auth, timeout=10).status_code == 404, bad

            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            login(page, service.url, "xem", "viewer-password-123", f"/fleet/devices/{kiosk.id}")
            page.wait_for_function("() => { const v = document.getElementById('live'); return v.readyState >= 2 || v.currentTime > 0; }",
                                   timeout=30_000)
            assert page.locator("#live").get_attribute("src").endswith(f"/api/media/hls/{kiosk.id}/index.m3u8")
            page.wait_for_selector("#live-state[data-state=playing]", timeout=20_000)
            assert page.evaluate("document.getElementById('live').videoWidth") == 320
            page.wait_for_function("document.getElementById('live').currentTime > 0", timeout=30_000)
            assert errors == []
            shots(page, "device-live")
        finally:
            page.close()
            pusher.stop()
