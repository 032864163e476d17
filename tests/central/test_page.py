"""The staff page in a real browser: a viewer logs in, sees a check-in appear without reloading, logs out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from central import accounts, registry
from central.service import CentralService
from central.store import open_store
from contract import Topics
from tests.central import Device, Probe, settings_for
from tests.conftest import free_port


def test_page_shows_the_current_meeting_and_a_new_check_in_live(tmp_path, broker, chromium):
    settings = settings_for(tmp_path, broker.port, http_port=free_port())
    device, now = Device(), datetime.now(UTC)
    with open_store(settings.data_dir) as store:
        registry.add_member(store, "m1", "Nguyễn Văn A", "C1")
        registry.add_member(store, "m2", "Trần Thị B", "C1")
        registry.add_meeting(store, "mt1", cell="C1", hall="H1", title="Họp chi bộ", starts=now - timedelta(minutes=5), ends=now + timedelta(hours=1))
        registry.add_device(store, device.public_key, "H1")
        accounts.add_user(store, "lan", "viewer", "lan-password-123")
    with CentralService(settings) as service:
        page = chromium.new_page()
        try:
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(service.url)
            assert page.locator("#password").count() == 1  # not logged in: only the login form
            page.fill("#username", "lan")
            page.fill("#password", "lan-password-123")
            page.click("button[type=submit]")
            page.wait_for_selector("#meeting-mt1")
            assert page.locator(".absent-member").count() == 2
            assert page.locator(f'.device[data-device-id="{device.id}"]').count() == 1
            kiosk = Probe(broker.port)
            kiosk.publish(Topics().attendance(device.id), device.record("m1", "mt1").to_wire())
            kiosk.close()
            row = page.wait_for_selector('.present-member[data-member-id="m1"]', timeout=6000)
            assert "Nguyễn Văn A" in row.inner_text()
            assert page.locator(".absent-member").count() == 1
            assert page.locator('#who[data-role="viewer"]').count() == 1
            assert errors == []
            page.click("#logout")
            page.wait_for_selector("#password")
            page.goto(service.url)
            assert page.locator("#password").count() == 1 and page.locator("#meetings").count() == 0
        finally:
            page.close()
