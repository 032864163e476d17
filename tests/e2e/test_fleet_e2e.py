"""The fleet side of central end to end on real processes (issue 10): Mosquitto, a `hall central run` subprocess,
the fault suite's kiosk driver (the real Agent) in a hall with a meeting in progress, an SMTP server (aiosmtpd) and
a webhook receiver on loopback, and Chromium on /fleet.

A kiosk SIGKILLed during a meeting: its last will turns it offline on the overview without a reload, the
meeting_kiosk_down alert opens on the page, an e-mail (Vietnamese subject first) and an HMAC-signed webhook go out;
the kiosk comes back: online on the page, the alert resolves after its hold and both channels say so. A technician
runs the self-test from the device page and sees the live kiosk's checklist.

Alert timings are shortened by settings (rules every second, no boot grace, 3 s hold) and the rule's grace by
the admin API, so a run takes well under a minute; every wait is for evidence, never a sleep.
"""

from __future__ import annotations

import email
import hashlib
import hmac
import json
import re
import shutil
import threading
import time
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from central import accounts
from central.store import open_store
from tests.conftest import IN_CI, free_port
from tests.faults.harness import Harness, wait_for

pytestmark = pytest.mark.e2e

SHOTS = Path("/tmp/shots")
MEETING = "MT-FAULT"  # the harness's hall H-FAULT has this meeting from 3 h ago to 3 days ahead
WEBHOOK_SECRET = "e2e-webhook-secret-0123456789"
TECH, TECH_PASSWORD = "kt-fleet", "kt-fleet-password-1"
HOLD_S = 3.0
GRACE_S = 2.0


class Mailbox:
    """aiosmtpd's handler: every message the SMTP server accepts, parsed."""

    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"

    def subjects(self) -> list[str]:
        return [str(m["Subject"]) for m in list(self.messages)]


class Webhook:
    """A loopback HTTP server that keeps each body with whether its X-Hall-Signature verifies with the secret."""

    def __init__(self, secret: str):
        self.received: list[tuple[dict, bool]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(min(int(self.headers.get("Content-Length", 0)), 1 << 20))
                # computed here from the secret, not with central's own helper: the receiver's side of the contract
                want = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
                valid = hmac.compare_digest(want, self.headers.get("X-Hall-Signature", ""))
                hook.received.append((json.loads(body), valid))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self, event: str) -> list[tuple[dict, bool]]:
        return [(b, ok) for b, ok in list(self.received) if b.get("event") == event]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class FleetHarness(Harness):
    """The fault suite's processes, with central's alert settings pointed at the test's SMTP server and webhook."""

    alert_env: dict[str, str] = {}

    def start_central(self) -> None:
        from hall.processes import Child, wait_port
        from tests.faults.harness import HALL

        env = {"HALL_CENTRAL_DATA_DIR": str(self.central_dir), "HALL_CENTRAL_MQTT_PORT": str(self.mqtt_port),
               "HALL_CENTRAL_HTTP_PORT": str(self.http_port), "HALL_CENTRAL_STAFF_TOKEN": self.token, **self.alert_env}
        self.central = Child("central", [HALL, "central", "run"], log_path=self.work / "central.log", env=env)
        wait_port(self.http_port, proc=self.central)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    if not shutil.which("mosquitto"):
        import os

        os.environ["PATH"] += os.pathsep + "/usr/sbin"
    if not shutil.which("mosquitto"):
        (pytest.fail if IN_CI else pytest.skip)("mosquitto is not installed")
    from aiosmtpd.controller import Controller

    work = tmp_path_factory.mktemp("fleet")
    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    webhook = Webhook(WEBHOOK_SECRET)
    h = FleetHarness(work, members=3)
    h.alert_env = {
        "HALL_CENTRAL_ALERT_INTERVAL_S": "1", "HALL_CENTRAL_ALERT_BOOT_GRACE_S": "0",
        "HALL_CENTRAL_ALERT_HOLD_S": str(HOLD_S),
        "HALL_CENTRAL_ALERT_SMTP_HOST": "127.0.0.1", "HALL_CENTRAL_ALERT_SMTP_PORT": str(smtp.port),
        "HALL_CENTRAL_ALERT_SMTP_TO": "truc-ban@example.vn",
        "HALL_CENTRAL_ALERT_WEBHOOK_URL": webhook.url, "HALL_CENTRAL_ALERT_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }
    with open_store(h.central_dir) as store:
        accounts.add_user(store, TECH, "technician", TECH_PASSWORD)
    h.smtp, h.mailbox, h.webhook, h.shots = smtp, mailbox, webhook, work
    h.url = f"http://127.0.0.1:{h.http_port}"
    h.api = {"Authorization": f"Bearer {h.token}"}  # the staff token acts as admin
    try:
        h.start_broker()
        h.start_central()
        # the offline grace from its 120 s default to a couple of seconds, as an admin would through the API
        r = httpx.put(f"{h.url}/api/alerts/rules", headers=h.api, timeout=10,
                      json={"rules": {"meeting_kiosk_down": {"params": {"grace_s": GRACE_S}}}})
        assert r.status_code == 200, r.text
        h.start_driver()
        wait_for(lambda: h.progressing() and h.driver.event("ready"), what="the kiosk holding the hall's roster")
        h.ready_at = time.monotonic()
        wait_for(lambda: h.progressing() and h.driver.event("done"), what="the kiosk checking its 3 members in")
        yield h
    finally:
        h.stop_all()
        webhook.close()
        smtp.stop()


def shot(page, fleet, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(fleet.shots / f"fleet-e2e-{name}.png"), full_page=True)
    page.screenshot(path=str(SHOTS / f"fleet-e2e-{name}.png"), full_page=True)


def login_page(browser, fleet, path: str, username: str | None = None):
    """A new page logged in with a one-time link (the staff-token admin, or ``username``), then at ``path``."""
    with open_store(fleet.central_dir) as store:
        code = accounts.issue_login_link(store, username)
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.goto(f"{fleet.url}/login/once/{code}")
    page.wait_for_url(f"{fleet.url}/fleet")  # a one-time link lands on the fleet overview
    page.goto(fleet.url + path)
    return page


def alert_of(fleet, rule: str, device: str) -> dict | None:
    rows = httpx.get(f"{fleet.url}/api/alerts", headers=fleet.api, timeout=10).json()["alerts"]
    return next((a for a in rows if a["rule"] == rule and a.get("device") == device), None)


def meeting_hours_in_hall_time(fleet) -> str:
    """'13:07 25/11–16:07 28/11': the meeting's hours as staff in Việt Nam read them (UTC+7), from central's DB."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    with open_store(fleet.central_dir) as store:
        row = store.row("SELECT starts_at, ends_at FROM meetings WHERE id = ?", [MEETING])
    hall = ZoneInfo("Asia/Ho_Chi_Minh")
    return "–".join(datetime.fromisoformat(row[k].replace("Z", "+00:00")).astimezone(hall).strftime("%H:%M %d/%m")
                    for k in ("starts_at", "ends_at"))


def fleet_row(fleet, device: str) -> dict | None:
    rows = httpx.get(f"{fleet.url}/api/fleet/devices", headers=fleet.api, params={"size": 200}, timeout=10).json()["items"]
    return next((r for r in rows if r["id"] == device), None)


def test_a_kiosk_killed_during_a_meeting_alerts_live_and_mails_and_its_return_resolves(fleet, browser):
    device = fleet.device
    # Once the kiosk holds the roster, central hears so at once, not at its next periodic status (15 s): staff
    # would otherwise see "no roster from central yet" on a kiosk checking members in.
    wait_for(lambda: (r := fleet_row(fleet, device)) and r["state"] == "online" and r["faults"] == [], timeout=8.0,
             what="the kiosk's status without the boot-time 'no roster' fault")
    assert time.monotonic() - fleet.ready_at < 10.0
    name = fleet_row(fleet, device)["name"]
    assert name == "H-FAULT — máy 1"  # named at registration after its hall (which has no other name here)
    kiosk = f'#meeting-{MEETING} .kiosk[data-device-id="{device}"]'
    page = login_page(browser, fleet, "/fleet")
    try:
        page.wait_for_selector(f"{kiosk}[data-state=online]", timeout=30_000)
        page.wait_for_selector(f'#meeting-{MEETING} .present b:text-is("3")', timeout=30_000)
        assert page.locator(f"#meeting-{MEETING}").get_attribute("data-problems") == "0"
        assert page.locator("#alerts li.alert").count() == 0
        page.wait_for_selector("#live[data-state=live]", timeout=15_000)
        shot(page, fleet, "online")
        page.evaluate("window.__stayed = 'same page'")

        killed = time.monotonic()
        fleet.driver.kill()  # SIGKILL: no goodbye, the broker publishes the kiosk's last will
        page.wait_for_selector(f"{kiosk}[data-state=offline]", timeout=20_000)
        went_offline = time.monotonic() - killed
        assert "critical" in page.locator(".count-card[data-state=offline]").get_attribute("class")  # a meeting is on
        assert "offline" in page.locator(f"#meeting-{MEETING} .problems").inner_text()
        alert = page.wait_for_selector('#alerts li.alert[data-rule=meeting_kiosk_down][data-state=open]', timeout=30_000)
        alerted = time.monotonic() - killed
        summary = alert.query_selector("div").inner_text()
        assert "fault suite" in summary  # the meeting's title
        assert name in summary and device not in summary  # staff read the kiosk's name, never its raw id
        assert meeting_hours_in_hall_time(fleet) in summary and "Z" not in summary.split("fault suite")[1]  # not UTC ISO
        assert page.evaluate("window.__stayed") == "same page"  # it came over the event stream, not a reload
        shot(page, fleet, "offline-alert")
        opened = alert_of(fleet, "meeting_kiosk_down", device)
        assert opened is not None and opened["state"] == "open" and opened["hall"] == "H-FAULT"

        mail = wait_for(lambda: next((m for m in list(fleet.mailbox.messages) if "[CẢNH BÁO]" in str(m["Subject"])), None),
                        what="the alert's e-mail at the SMTP server")
        subject = str(mail["Subject"])
        assert subject.startswith("[CẢNH BÁO] ") and " / [ALERT] " in subject
        assert name in subject and device not in subject
        assert subject.index("[CẢNH BÁO]") < subject.index("[ALERT]")  # Vietnamese first
        assert "truc-ban@example.vn" in str(mail["To"]) and "fault suite" in mail.get_content()
        body, valid = wait_for(lambda: next(iter(fleet.webhook.events("opened")), None), what="the webhook's opening")
        assert valid, "the webhook's X-Hall-Signature does not verify with the shared secret"
        assert body["alert"]["id"] == opened["id"] and body["alert"]["device"] == device and body["nonce"]
        assert body["alert"]["device_name"] == name  # a receiver can show the name without asking central

        back = time.monotonic()
        fleet.start_driver()
        page.wait_for_selector(f"{kiosk}[data-state=online]", timeout=30_000)
        came_back = time.monotonic() - back
        # resolved only after the condition has been clear for the hold; then it leaves the open alerts
        page.wait_for_selector("#alerts li.alert", state="detached", timeout=30_000)
        resolved_after = time.monotonic() - back
        assert page.evaluate("window.__stayed") == "same page"
        shot(page, fleet, "back-online")
        resolved = alert_of(fleet, "meeting_kiosk_down", device)
        assert resolved["id"] == opened["id"] and resolved["state"] == "resolved" and resolved["resolved_at"]
        assert resolved_after >= HOLD_S

        mail = wait_for(lambda: next((m for m in list(fleet.mailbox.messages) if "[ĐÃ HẾT]" in str(m["Subject"])), None),
                        what="the resolve e-mail")
        assert " / [RESOLVED] " in str(mail["Subject"])
        body, valid = wait_for(lambda: next(iter(fleet.webhook.events("resolved")), None), what="the webhook's resolve")
        assert valid and body["alert"]["id"] == opened["id"] and body["alert"]["state"] == "resolved"
        assert body["nonce"] != fleet.webhook.events("opened")[0][0]["nonce"]
        # the device page's history: the last will, then the restart, in words staff can read
        events = httpx.get(f"{fleet.url}/api/fleet/devices/{device}/history", headers=fleet.api, timeout=10).json()["events"]
        kinds = [e["kind"] for e in reversed(events)]
        # "rebooted" when the uptime it reports went back, else "came_online" (the status before the kill may
        # have been the one sent at boot, with a smaller uptime than the new one's)
        assert kinds[-2] == "went_offline" and kinds[-1] in ("rebooted", "came_online"), kinds
        if kinds[-1] == "rebooted":
            before_s, after_s = re.findall(r"from (\S+) s to (\S+) s", events[0]["reason"])[0]
            assert before_s != after_s, events[0]["reason"]  # not "from 0 s to 0 s" for a kiosk restarted early on
        assert page.errors == []
        print(f"offline on the page {went_offline:.1f}s after SIGKILL, alert {alerted:.1f}s; "
              f"online again {came_back:.1f}s after restart, resolved {resolved_after:.1f}s")
    finally:
        page.close()


def test_a_technician_runs_the_self_test_from_the_device_page_and_sees_the_kiosks_checklist(fleet, browser):
    device = fleet.device
    wait_for(lambda: fleet.progressing() and fleet.driver.event("ready"), what="the kiosk running")
    page = login_page(browser, fleet, f"/fleet/devices/{device}", TECH)
    try:
        page.wait_for_selector('#who[data-role=technician]', timeout=15_000)
        page.wait_for_selector("#selftest", state="visible", timeout=15_000)
        page.click("#selftest")
        page.wait_for_selector("#command-state[data-state=replied]", timeout=45_000)
        checks = {li.query_selector("b").inner_text(): li.get_attribute("data-status")
                  for li in page.query_selector_all("#checklist li.check")}
        # from the running kiosk: it reaches the broker and holds the hall's roster
        assert checks.get("broker") == "ok" and checks.get("roster") == "ok", checks
        assert {"clock", "disk", "outbox", "check-ins"} <= set(checks)
        assert "H-FAULT" in page.locator("#checklist").inner_text()
        shot(page, fleet, "selftest")
        rows = httpx.get(f"{fleet.url}/api/devices/{device}/commands", headers=fleet.api, timeout=10).json()
        assert rows[0]["kind"] == "selftest" and rows[0]["state"] == "replied"
        with open_store(fleet.central_dir) as store:
            actors = [r["actor"] for r in store.rows("SELECT actor FROM audit WHERE action = 'device.command.selftest'")]
        assert actors == [TECH]  # audited as the technician who clicked
        assert page.errors == []
    finally:
        page.close()
