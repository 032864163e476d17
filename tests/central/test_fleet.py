"""The fleet API: the device list (paging, sorting, filters, meeting-aware severity, totals), each kiosk's state
history and chart samples, and /metrics; statuses go through central's real ingest into a real store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from central import accounts, device_state, fleet, registry
from central.api import create_app
from central.ingest import Ingest
from central.store import open_store
from contract import Status, Topics, encode_status
from tests.central import Device


class Fleet:
    def __init__(self, store):
        self.store, self.topics, self.ingest = store, Topics(), Ingest(store, Topics())
        accounts.add_user(store, "viewer", "viewer", "viewer-pass-Ao1")
        token = accounts.issue_token(store, "viewer", "test")[1]
        self.client = TestClient(create_app(store=store, staff_token=None), headers={"Authorization": f"Bearer {token}"})

    def device(self, hall: str) -> str:
        return registry.add_device(self.store, Device().public_key, hall)

    def status(self, device: str, state: str = "online", **fields) -> None:
        with self.store.transaction():
            self.ingest.handle(self.topics.status(device), encode_status(Status(device=device, state=state, **fields)))

    def page(self, **params) -> dict:
        response = self.client.get("/api/fleet/devices", params=params)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
def env(tmp_path):
    store = open_store(tmp_path / "central")
    yield Fleet(store)
    store.close()


def _now_utc(minutes: float) -> datetime:
    return datetime.now(UTC) + timedelta(minutes=minutes)


def test_the_list_pages_sorts_filters_and_rates_offline_by_whether_the_hall_meets(env):
    registry.add_hall(env.store, "H-MEET", "Nhà văn hoá Đông")
    registry.add_hall(env.store, "H-SOON", "Nhà văn hoá Tây")
    registry.add_hall(env.store, "H-IDLE", "Nhà văn hoá Bắc")
    registry.add_meeting(env.store, "mt-now", cell="C1", hall="H-MEET", title="Họp", starts=_now_utc(-10), ends=_now_utc(50))
    registry.add_meeting(env.store, "mt-soon", cell="C1", hall="H-SOON", title="Họp", starts=_now_utc(20), ends=_now_utc(80))
    registry.add_meeting(env.store, "mt-later", cell="C1", hall="H-IDLE", title="Họp", starts=_now_utc(90), ends=_now_utc(150))
    meet_off, soon_off, idle_off = env.device("H-MEET"), env.device("H-SOON"), env.device("H-IDLE")
    busy, faulty, never = env.device("H-IDLE"), env.device("H-MEET"), env.device("H-IDLE")
    for d in (meet_off, soon_off, idle_off):
        env.status(d, version="1.0.0", queue_depth=7)
        env.status(d, "offline")  # the broker's last will
    env.status(busy, version="1.0.1", queue_depth=900, oldest_unsent_age_s=3600.0, disk_free_bytes=10**9, temperature_c=71.5,
               bundle_version=1, faults=[])
    env.status(faulty, version="0.9.0", queue_depth=2, faults=["camera not working"], clock_synced=False,
               throttled_words=["under-voltage now"], stream={"state": "live", "fps": 25.0})

    listed = env.page(size=200)
    rows = {r["id"]: r for r in listed["items"]}
    assert listed["matching"] == 6 and listed["totals"]["devices"] == 6
    assert listed["totals"]["by_state"] == {"online": 2, "offline": 3, "unknown": 0, "never_seen": 1, "revoked": 0}
    assert listed["totals"]["by_version"] == {"1.0.0": 3, "0.9.0": 1, "1.0.1": 1, "unknown": 1}
    # offline is a failure only where a meeting is on now or within 30 minutes
    assert rows[meet_off]["severity"] == "critical" and rows[meet_off]["meeting_now"] and rows[meet_off]["meeting"]["id"] == "mt-now"
    assert rows[soon_off]["severity"] == "critical" and rows[soon_off]["meeting"]["id"] == "mt-soon"
    assert rows[idle_off]["severity"] == "neutral" and not rows[idle_off]["meeting_now"]
    assert rows[never]["state"] == "never_seen" and rows[never]["severity"] == "neutral"
    assert rows[faulty]["severity"] == "warning" and rows[busy]["severity"] == "ok"
    # the last report's figures outlive the will that carries none
    assert rows[meet_off]["queue_depth"] == 7 and rows[meet_off]["state"] == "offline" and rows[meet_off]["version"] == "1.0.0"
    assert rows[busy]["hall_name"] == "Nhà văn hoá Bắc" and rows[busy]["roster"] == {"held": 1, "current": env.store.bundle_version(),
                                                                                    "behind": env.store.bundle_version() - 1}
    assert rows[faulty]["faults"] == ["camera not working"] and rows[faulty]["clock_synced"] is False
    assert rows[faulty]["throttled_words"] == ["under-voltage now"] and rows[faulty]["stream"]["state"] == "live"
    assert rows[busy]["last_contact"] and rows[never]["last_contact"] is None
    # critical first by default
    assert [r["severity"] for r in listed["items"]][:2] == ["critical", "critical"]

    by_queue = [r["queue_depth"] for r in env.page(sort="queue_depth", order="desc")["items"]]
    assert by_queue == [900, 7, 7, 7, 2, None]  # unknowns last whichever the direction
    assert [r["queue_depth"] for r in env.page(sort="queue_depth")["items"]] == [2, 7, 7, 7, 900, None]
    first, second = env.page(size=4, sort="device"), env.page(size=4, page=2, sort="device")
    assert first["pages"] == 2 and len(first["items"]) == 4 and len(second["items"]) == 2
    assert [r["id"] for r in first["items"] + second["items"]] == sorted(rows)

    def ids(**params):
        return {r["id"] for r in env.page(**params)["items"]}

    assert ids(state="offline") == {meet_off, soon_off, idle_off}
    assert ids(state=["offline", "never_seen"], hall="H-IDLE") == {idle_off, never}
    assert ids(has_fault="true") == {faulty} and ids(version="1.0.1") == {busy}
    assert ids(meeting_now="true") == {meet_off, soon_off, faulty} and ids(severity="critical") == {meet_off, soon_off}
    assert ids(q="Bắc") == {idle_off, busy, never} and ids(q=busy[5:15]) == {busy} and ids(q="%") == set()
    assert env.page(state="offline")["totals"]["devices"] == 6  # totals are the whole fleet's
    assert env.client.get("/api/fleet/devices", params={"size": 201}).status_code == 422
    assert env.client.get("/api/fleet/devices", params={"sort": "name; DROP TABLE devices"}).status_code == 422
    assert env.client.get("/api/fleet/devices", params={"state": "sleepy"}).status_code == 422


def test_the_list_s_state_is_device_state_shown_s_in_every_case(env):
    # shown() says what central may vouch for; the SQL that filters and counts must say the same
    revoked, never, online, offline = (env.device("H1") for _ in range(4))
    for d in (revoked, online, offline):
        env.status(d)
    env.status(offline, "offline")
    registry.revoke_device(env.store, revoked)
    now = datetime.now(UTC)
    views = [fleet.View(now=now), fleet.View(now=now + timedelta(seconds=120)),  # every "online" gone stale
             fleet.View(broker={"ok": False, "since": "x", "detail": "down"}, now=now), fleet.View(broker={"ok": True}, now=now)]
    seen_states = set()
    for view in views:
        page = fleet.device_page(env.store, view, size=10)
        for r in page["items"]:
            row = env.store.row("SELECT d.revoked_at, s.state, s.last_seen FROM devices d LEFT JOIN device_status s "
                                "ON s.device = d.id WHERE d.id = ?", [r["id"]])
            expected = device_state.shown(row, view.broker, view.stale_s, view.at())
            name = "never_seen" if expected["state"] == "offline" and row["state"] is None else expected["state"]
            assert r["state"] == name, (r["id"], view, r["state"], expected)
            assert r["state_reason"] == expected["state_reason"]
            seen_states.add(r["state"])
        assert sum(page["totals"]["by_state"].values()) == 4
    assert seen_states == {"online", "offline", "unknown", "never_seen", "revoked"}


def test_state_changes_and_reboots_are_kept_as_history(env):
    d = env.device("H1")
    env.status(d, boot_count=3, uptime_s=500.0)
    env.status(d, boot_count=3, uptime_s=515.0)  # nothing happened
    env.status(d, "offline")
    env.status(d, "offline")  # a repeated will changes nothing
    env.status(d, boot_count=3, uptime_s=520.0)
    env.status(d, "offline")
    env.status(d, boot_count=4, uptime_s=12.0, last_reboot="watchdog")
    env.status(d, boot_count=4, uptime_s=3.0)  # the agent restarted, the Pi did not
    response = env.client.get(f"/api/fleet/devices/{d}/history", params={"limit": 50})
    assert response.status_code == 200
    events = response.json()["events"][::-1]
    assert [(e["kind"], e["from_state"], e["to_state"]) for e in events] == [
        ("first_seen", None, "online"), ("went_offline", "online", "offline"), ("came_online", "offline", "online"),
        ("went_offline", "online", "offline"), ("rebooted", "offline", "online"), ("rebooted", "online", "online")]
    assert "last will" in events[1]["reason"]
    assert events[4]["reason"] == "came back online; rebooted: boot count 3 → 4 (watchdog)"
    assert events[5]["reason"] == "agent restarted: uptime went back from 12 s to 3 s"
    assert all(e["at"] for e in events)
    assert [e["kind"] for e in env.client.get(f"/api/fleet/devices/{d}/history", params={"limit": 2}).json()["events"]] == \
        ["rebooted", "rebooted"]
    assert env.client.get("/api/fleet/devices/dnobody/history").status_code == 404
    # a retained status replayed when central reconnects is the same report: no event
    with env.store.transaction():
        env.ingest.handle(env.topics.status(d), encode_status(Status(device=d, state="online", boot_count=4, uptime_s=3.0)),
                          retained=True)
    assert len(env.client.get(f"/api/fleet/devices/{d}/history").json()["events"]) == 6


def test_samples_are_taken_once_per_five_minutes_kept_eight_days_and_served_in_at_most_300_points(env):
    d = env.device("H1")
    env.status(d, queue_depth=5, temperature_c=50.0, disk_free_bytes=900, memory_used_bytes=100, oldest_unsent_age_s=30.0)
    env.status(d, queue_depth=6, temperature_c=51.0)  # within 5 minutes of the last sample: not sampled
    assert env.store.rows("SELECT queue_depth, temperature_c, disk_free_bytes FROM device_samples WHERE device = ?", [d]) == \
        [{"queue_depth": 5, "temperature_c": 50.0, "disk_free_bytes": 900}]
    with env.store.transaction() as db:  # five minutes pass
        db.execute("UPDATE device_fleet SET sampled_at = sampled_at - 300")
        db.execute("UPDATE device_samples SET at = at - 300")
    env.status(d, queue_depth=8, temperature_c=60.0)
    assert env.store.scalar("SELECT COUNT(*) FROM device_samples WHERE device = ?", [d]) == 2
    day = env.client.get(f"/api/fleet/devices/{d}/samples").json()
    assert day["range"] == "24h" and [p["queue_depth"] for p in day["points"]] in ([5, 8], [8])
    assert max(p["temperature_c"] for p in day["points"]) == 60.0

    # eight and a half days of a sample every 5 minutes, a spike in the middle of one 7-day bucket
    now = int(datetime.now(UTC).timestamp())
    rows = [(d, now - 600 - i * 300, i % 4, 40.0 + (30.0 if i == 1001 else 0.0), 10**9 - i) for i in range(8 * 288 + 150)]
    with env.store.transaction() as db:
        db.conn.executemany("INSERT OR IGNORE INTO device_samples (device, at, queue_depth, temperature_c, disk_free_bytes) "
                            "VALUES (?, ?, ?, ?, ?)", rows)
    week = env.client.get(f"/api/fleet/devices/{d}/samples", params={"range": "7d"}).json()
    assert 250 <= len(week["points"]) <= 300 and week["bucket_s"] == 2016
    assert max(p["temperature_c"] for p in week["points"]) == 70.0  # the worst value of a bucket, not averaged away
    assert all(p["t"] >= now - 7 * 86400 for p in week["points"])
    day = env.client.get(f"/api/fleet/devices/{d}/samples", params={"range": "24h"}).json()
    assert len(day["points"]) <= 300
    assert env.client.get(f"/api/fleet/devices/{d}/samples", params={"range": "1y"}).status_code == 422
    assert env.client.get("/api/fleet/devices/dnobody/samples").status_code == 404
    with env.store.transaction() as db:
        fleet.prune(db.conn)
    oldest = env.store.scalar("SELECT MIN(at) FROM device_samples WHERE device = ?", [d])
    assert oldest >= now - 8 * 86400 and env.store.scalar("SELECT COUNT(*) FROM device_samples") < len(rows)


def test_metrics_need_a_viewer_and_tell_the_fleet_ingest_and_rejections(env):
    registry.add_meeting(env.store, "mt1", cell="C1", hall="H1", title="Họp", starts=_now_utc(-5), ends=_now_utc(60))
    kiosk = Device()
    d = registry.add_device(env.store, kiosk.public_key, "H1")
    gone, never = env.device("H1"), env.device("H2")
    env.status(d, version="1.0.0")
    env.status(gone, version="0.9.0")
    env.status(gone, "offline")
    with env.store.transaction():
        for _ in range(3):
            env.ingest.handle(env.topics.attendance(d), kiosk.record("m1", "mt1").to_wire())
        env.ingest.handle(env.topics.status(d), b'{"v": 1, "state": "sleepy"}')
    assert TestClient(env.client.app).get("/metrics").status_code == 401
    response = env.client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(response.text) for s in family.samples}
    assert samples[("hall_devices", (("state", "online"),))] == 1
    assert samples[("hall_devices", (("state", "offline"),))] == 1
    assert samples[("hall_devices", (("state", "never_seen"),))] == 1
    assert samples[("hall_devices_critical", ())] == 1  # the offline kiosk's hall meets now
    assert samples[("hall_devices_by_version", (("version", "1.0.0"),))] == 1
    assert samples[("hall_records_ingested_total", ())] == 3
    assert samples[("hall_rejections_total", (("kind", "rejection"),))] == 1
    # now minus the newest record's device time (the test kiosk's clock says 2030-01-01T01:05:00Z)
    lag = (datetime.now(UTC) - datetime(2030, 1, 1, 1, 5, tzinfo=UTC)).total_seconds()
    assert abs(samples[("hall_ingest_lag_seconds", ())] - lag) < 600
    assert ("process_resident_memory_bytes", ()) in samples
    assert never
