"""Alerts: rules over what central stores, evaluated with an injected clock on a real store; statuses arrive
through central's real ingest; notifications go to a real SMTP server (aiosmtpd on loopback) and a real
HTTP server that checks the webhook's HMAC."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.header import decode_header, make_header
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller

from central import registry
from central.alerts import queries
from central.alerts.engine import AlertEngine
from central.alerts.notify import EmailChannel, Notifier, WebhookChannel
from central.ingest import Ingest
from central.store import open_store
from contract import DeviceTime, Topics
from tests.central import Device
from tests.conftest import free_port

GRACE, HOLD, BOOT = 120.0, 120.0, 300.0
SECRET = b"webhook-secret-0123456789"
UP = 10_000.0  # long past the boot grace


class Inbox:
    """What a mail server or a webhook receiver got, with a condition to wait on (no sleeps)."""

    def __init__(self) -> None:
        self.items: list = []
        self.cond = threading.Condition()

    def add(self, item) -> None:
        with self.cond:
            self.items.append(item)
            self.cond.notify_all()

    def wait_for(self, n: int, timeout: float = 30.0) -> list:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.items) >= n, timeout), f"{len(self.items)} of {n} arrived"
            return list(self.items)


@pytest.fixture
def smtp():
    inbox = Inbox()

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            inbox.add(message_from_bytes(envelope.content))
            return "250 OK"

    inbox.port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=inbox.port)
    controller.start()
    yield inbox
    controller.stop()


@pytest.fixture
def webhook():
    inbox = Inbox()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(min(int(self.headers["Content-Length"]), 65536))
            expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
            good = hmac.compare_digest(expected, self.headers.get("X-Hall-Signature", ""))
            inbox.add((good, json.loads(body)))
            self.send_response(204 if good else 401)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    inbox.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    yield inbox
    server.shutdown()
    server.server_close()


class Fleet:
    """A real store with halls, a meeting, kiosks, and central's ingest to hand it their statuses."""

    def __init__(self, tmp_path, now: datetime):
        self.store = open_store(tmp_path / "central")
        self.ingest = Ingest(self.store, Topics())
        self.topics = Topics()
        self.now = now
        registry.add_hall(self.store, "HALL-A", "Nhà văn hoá thôn Đông")
        registry.add_meeting(self.store, "MEET-1", cell="C1", hall="HALL-A", title="Họp chi bộ",
                             starts=now - timedelta(minutes=10), ends=now + timedelta(hours=2))

    def kiosk(self, hall: str = "HALL-A") -> Device:
        device = Device()
        registry.add_device(self.store, device.public_key, hall)
        return device

    def status(self, device: Device, state: str = "online", **fields) -> None:
        body = {"v": 1, "device": device.id, "state": state, **fields}
        if state == "online":
            body = {"uptime_s": UP, "stream": {"state": "live"}, "queue_depth": 0, **body}
        assert self.ingest.handle(self.topics.status(device.id), json.dumps(body).encode()) is None or True

    def alerts(self, state=None) -> list[dict]:
        return queries.listed(self.store, state, 100, None)


@pytest.fixture
def fleet(tmp_path):
    f = Fleet(tmp_path, datetime.now(UTC).replace(microsecond=0))
    yield f
    f.store.close()


def engine(fleet: Fleet, notifier=None) -> AlertEngine:
    # Statuses carry real receive times while the clock here is injected: freshness is not what these tests test.
    return AlertEngine(fleet.store, notifier=notifier, boot_grace_s=BOOT, hold_s=HOLD, reopen_window_s=1800, stale_s=1e9)


def at(fleet: Fleet, seconds: float) -> datetime:
    return fleet.now + timedelta(seconds=seconds)


def test_a_kiosk_offline_during_a_meeting_alerts_after_the_grace_by_mail_and_signed_webhook_and_resolves_after_the_hold(
        fleet, smtp, webhook):
    notifier = Notifier([EmailChannel("127.0.0.1", smtp.port, "central@hall.test", ["ops@hall.test"]),
                         WebhookChannel(webhook.url, SECRET)], retries=2, backoff_s=0.2)
    notifier.start()
    try:
        alerts = engine(fleet, notifier)
        kiosk = fleet.kiosk()
        fleet.status(kiosk)
        alerts.evaluate(at(fleet, 0))
        fleet.status(kiosk, "offline")  # the broker's last will
        alerts.evaluate(at(fleet, 10))
        alerts.evaluate(at(fleet, 10 + GRACE - 1))
        assert fleet.alerts() == [], "opened before the grace"
        alerts.evaluate(at(fleet, 10 + GRACE + 1))
        [alert] = fleet.alerts("open")
        assert (alert["rule"], alert["device"], alert["hall"]) == ("meeting_kiosk_down", kiosk.id, "HALL-A")
        assert "Họp chi bộ" in alert["summary"]

        [mail] = smtp.wait_for(1)
        subject = str(make_header(decode_header(mail["Subject"])))
        assert subject.startswith("[CẢNH BÁO] Kiosk mất kết nối"), subject  # Vietnamese first
        assert "[ALERT] kiosk offline" in subject and "— máy 1" in subject and kiosk.id not in subject  # by name
        [(good, body)] = webhook.wait_for(1)
        assert good, "the webhook's HMAC does not verify"
        assert body["event"] == "opened" and body["alert"]["id"] == alert["id"] and body["nonce"]
        sent = datetime.fromisoformat(body["sent_at"].replace("Z", "+00:00"))
        assert abs((datetime.now(UTC) - sent).total_seconds()) < 60  # a receiver refuses an old one: no replay

        fleet.status(kiosk)  # back
        alerts.evaluate(at(fleet, 200))
        alerts.evaluate(at(fleet, 200 + HOLD - 1))
        assert fleet.alerts("open"), "resolved before the hold"
        alerts.evaluate(at(fleet, 200 + HOLD + 1))
        [resolved] = fleet.alerts("resolved")
        assert resolved["id"] == alert["id"] and resolved["resolved_at"]
        mails = smtp.wait_for(2)
        assert str(make_header(decode_header(mails[1]["Subject"]))).startswith("[ĐÃ HẾT]")
        hooks = webhook.wait_for(2)
        assert hooks[1][0] and hooks[1][1]["event"] == "resolved"
        assert [e["event"] for e in queries.one(fleet.store, alert["id"])["history"]] == ["opened", "resolved"]
        assert notifier.counts()["email"]["sent"] == 2 and notifier.counts()["webhook"]["failed"] == 0
    finally:
        notifier.stop()


def test_an_offline_kiosk_in_a_hall_without_a_meeting_raises_nothing_but_one_whose_meeting_starts_soon_does(fleet):
    alerts = engine(fleet)
    quiet, soon = fleet.kiosk("HALL-QUIET"), fleet.kiosk("HALL-SOON")
    registry.add_meeting(fleet.store, "MEET-LATER", cell="C1", hall="HALL-QUIET", title="Tomorrow",
                         starts=fleet.now + timedelta(hours=20), ends=fleet.now + timedelta(hours=21))
    registry.add_meeting(fleet.store, "MEET-SOON", cell="C1", hall="HALL-SOON", title="Soon",
                         starts=fleet.now + timedelta(minutes=20), ends=fleet.now + timedelta(hours=1))
    fleet.status(quiet, "offline")
    fleet.status(soon, "offline")
    for t in (0, GRACE + 1, 3600):
        alerts.evaluate(at(fleet, t))
    assert [(a["rule"], a["device"]) for a in fleet.alerts()] == [("meeting_kiosk_down", soon.id)]


def test_a_kiosk_that_has_just_booted_raises_nothing_until_its_boot_grace_is_over(fleet):
    alerts = engine(fleet)
    kiosk = fleet.kiosk()
    # up for 30 s, its stream not live yet, a hot CPU: all expected while it starts
    fleet.status(kiosk, uptime_s=30, stream={"state": "stopped"}, temperature_c=90.0)
    alerts.evaluate(at(fleet, 0))
    fleet.status(kiosk, uptime_s=200, stream={"state": "stopped"}, temperature_c=90.0)
    alerts.evaluate(at(fleet, GRACE + 50))
    assert fleet.alerts() == []
    fleet.status(kiosk, uptime_s=BOOT + 10, stream={"state": "stopped"}, temperature_c=90.0)
    alerts.evaluate(at(fleet, GRACE + 60))
    alerts.evaluate(at(fleet, 2 * GRACE + 70))
    assert {a["rule"] for a in fleet.alerts("open")} == {"meeting_kiosk_down", "temperature_high"}
    [down] = [a for a in fleet.alerts() if a["rule"] == "meeting_kiosk_down"]
    assert "không phát hình" in down["summary"] and "not streaming" in down["summary"]


def test_a_flapping_kiosk_is_one_alert_with_a_count(fleet, webhook):
    notifier = Notifier([WebhookChannel(webhook.url, SECRET)], retries=0)
    notifier.start()
    try:
        alerts = engine(fleet, notifier)
        kiosk = fleet.kiosk()
        t = 0.0

        def step(state: str, seconds: float) -> None:
            nonlocal t
            fleet.status(kiosk, state)
            for _ in range(int(seconds // 15)):  # evaluated every 15 s
                t += 15
                alerts.evaluate(at(fleet, t))

        step("offline", GRACE + 30)  # opens
        for _ in range(3):  # back for a minute, gone again: never clear for the hold
            step("online", 60)
            step("offline", 60)
        assert len(fleet.alerts()) == 1 and fleet.alerts("open")
        step("online", HOLD + 30)  # clear for the hold: resolves
        assert fleet.alerts("resolved")
        step("offline", GRACE + 30)  # back within the reopen window: the same alert, counted
        [alert] = fleet.alerts()
        assert alert["state"] == "open" and alert["opened_count"] == 2
        events = [e["event"] for e in queries.one(fleet.store, alert["id"])["history"]]
        assert events == ["opened", "resolved", "reopened"]
        assert [body["event"] for _, body in webhook.wait_for(3)] == ["opened", "resolved", "reopened"]
    finally:
        notifier.stop()


def test_each_status_rule_opens_on_its_threshold(fleet):
    alerts = engine(fleet)
    registry.add_hall(fleet.store, "HALL-B")
    kiosks = {name: fleet.kiosk("HALL-B") for name in (
        "oldest_unsent", "acks_stalled", "clock_unsynced", "roster_behind", "disk_low", "power", "temperature_high")}
    healthy = fleet.kiosk("HALL-B")
    current = fleet.store.bundle_version()
    fields = {
        "oldest_unsent": {"queue_depth": 3, "oldest_unsent_age_s": 11 * 60, "last_ack_seq": 5},
        "acks_stalled": {"queue_depth": 4, "last_ack_seq": 7},
        "clock_unsynced": {"clock_synced": False},
        "roster_behind": {"bundle_version": current - 1},
        "disk_low": {"disk_free_bytes": 100 * 1024 * 1024},
        "power": {"throttled": 0x50005, "throttled_words": ["under-voltage now", "throttled now"]},
        "temperature_high": {"temperature_c": 81.5},
    }
    ok = {"queue_depth": 0, "clock_synced": True, "bundle_version": current, "disk_free_bytes": 8 << 30,
          "throttled": 0x50000, "temperature_c": 50.0}  # bits 16+ only: happened since boot, not now
    for name, device in kiosks.items():
        fleet.status(device, **{**ok, **fields[name]})
    fleet.status(healthy, **ok)
    for t in (0, 59 * 60, 61 * 60):
        alerts.evaluate(at(fleet, t))
    opened = {(a["rule"], a["device"]) for a in fleet.alerts("open")}
    assert {(rule, kiosks[rule].id) for rule in fields} <= opened
    assert not [a for a in fleet.alerts() if a["device"] == healthy.id]
    # the acks stall while the ack number stands still; an ack that moves restarts the clock
    fleet.status(kiosks["acks_stalled"], **{**ok, "queue_depth": 4, "last_ack_seq": 8})
    fresh = fleet.kiosk("HALL-B")
    fleet.status(fresh, **{**ok, "queue_depth": 2, "last_ack_seq": 1})
    alerts.evaluate(at(fleet, 62 * 60))
    fleet.status(fresh, **{**ok, "queue_depth": 2, "last_ack_seq": 2})
    alerts.evaluate(at(fleet, 70 * 60))
    fleet.status(fresh, **{**ok, "queue_depth": 2, "last_ack_seq": 3})
    alerts.evaluate(at(fleet, 78 * 60))
    assert not [a for a in fleet.alerts() if a["device"] == fresh.id], "acks moved every 8 min: not stalled"


def test_a_fork_alarm_and_a_face_mismatch_spike_at_one_hall_raise_alerts(fleet):
    from central import rejection_log
    from contract import AttemptBody, sign_attempt

    alerts = engine(fleet)
    kiosk, other = fleet.kiosk(), fleet.kiosk("HALL-OTHER")
    for device in (kiosk, other):
        fleet.status(device)
    rejection_log.add(fleet.store, fleet.topics.attendance(kiosk.id), kiosk.id, "fork: record 4 differs", b"{}", alarm=True)
    time = DeviceTime(wall="2030-01-01T01:05:00Z", synced=False, boot_id="b1", monotonic=12.5)
    for seq in range(1, 7):  # six mismatches in the last hour at HALL-A, none before: a spike
        body = AttemptBody(device=kiosk.id, seq=seq, outcome="face_mismatch", time=time)
        fleet.ingest.handle(fleet.topics.attempt(kiosk.id), sign_attempt(kiosk.key, body).to_wire())
    for seq in range(1, 3):  # two at another hall: under the minimum count
        body = AttemptBody(device=other.id, seq=seq, outcome="face_mismatch", time=time)
        fleet.ingest.handle(fleet.topics.attempt(other.id), sign_attempt(other.key, body).to_wire())
    alerts.evaluate(datetime.now(UTC))  # attempts are placed at their (real) receive time
    found = {(a["rule"], a["subject"]) for a in fleet.alerts("open")}
    assert ("chain_alarm", kiosk.id) in found
    assert ("mismatch_spike", "hall:HALL-A") in found
    assert ("mismatch_spike", "hall:HALL-OTHER") not in found


def test_central_evaluates_nothing_while_it_has_lost_the_broker(fleet):
    link = {"ok": True}
    alerts = AlertEngine(fleet.store, boot_grace_s=BOOT, hold_s=HOLD, stale_s=1e9, broker=lambda: link)
    kiosk = fleet.kiosk()
    fleet.status(kiosk, "offline")
    alerts.evaluate(at(fleet, 0))
    alerts.evaluate(at(fleet, GRACE + 1))
    assert fleet.alerts("open")
    link.update(ok=False, detail="broker gone")  # every kiosk is unknown: what they do is not known
    for t in (200, 200 + HOLD + 1, 200 + 2 * HOLD):
        assert alerts.evaluate(at(fleet, t))["skipped"]
    assert fleet.alerts("open"), "resolved on no evidence"
