"""Alerts through the staff API: acknowledging records who (audited), rules' thresholds read by viewers and
changed by admins (audited, bounded), and the engine thread running inside `hall central run`'s service."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import httpx

from central import registry
from central.alerts.engine import AlertEngine
from central.service import CentralService
from contract import Topics
from tests.central import STAFF_TOKEN, Device, Probe, settings_for
from tests.conftest import free_port


def _offline_kiosk_alert(store) -> tuple[AlertEngine, int]:
    now = datetime.now(UTC)
    registry.add_meeting(store, "M1", cell="C1", hall="H1", title="Họp", starts=now, ends=now + timedelta(hours=1))
    device = Device()
    registry.add_device(store, device.public_key, "H1")
    store.db.execute("INSERT INTO device_status (device, state, status, last_seen) VALUES (?, 'offline', ?, ?)",
                     [device.id, json.dumps({"v": 1, "device": device.id, "state": "offline"}), now.isoformat()])
    engine = AlertEngine(store, hold_s=60)
    engine.evaluate(now)
    engine.evaluate(now + timedelta(seconds=121))
    [alert] = store.rows("SELECT id FROM alerts")
    return engine, alert["id"]


def test_a_technician_acknowledges_an_alert_and_it_records_who_and_when(staffed):
    engine, alert_id = _offline_kiosk_alert(staffed.store)
    viewer = staffed.client(headers={"Authorization": f"Bearer {staffed.tokens['viewer']}"})
    assert viewer.post(f"/api/alerts/{alert_id}/ack").status_code == 403
    listed = viewer.get("/api/alerts", params={"state": "open"}).json()
    assert [a["id"] for a in listed["alerts"]] == [alert_id] and listed["counts"] == {"open": 1}

    tech = staffed.login("technician")
    acked = tech.post(f"/api/alerts/{alert_id}/ack").json()
    assert acked["state"] == "acknowledged" and acked["acked_by"] == "technician" and acked["acked_at"]
    assert [(e["event"], e["actor"]) for e in acked["history"]] == [("opened", None), ("acknowledged", "technician")]
    [entry] = staffed.audit("alert.ack")
    assert entry["actor"] == "technician" and json.loads(entry["detail"])["alert"] == alert_id
    # again: unchanged, not audited twice; unknown: 404
    assert tech.post(f"/api/alerts/{alert_id}/ack").json()["acked_by"] == "technician"
    assert len(staffed.audit("alert.ack")) == 1
    assert tech.post("/api/alerts/999999/ack").status_code == 404
    assert viewer.get("/api/alerts", params={"state": "acknowledged"}).json()["alerts"][0]["id"] == alert_id
    # a resolved alert is history: it cannot be acknowledged
    staffed.store.db.execute("UPDATE device_status SET state = 'online', status = ?",
                             [json.dumps({"v": 1, "state": "online", "uptime_s": 9999, "stream": {"state": "live"}})])
    staffed.store.db.execute("UPDATE device_status SET status = json_set(status, '$.device', device)")
    later = datetime.now(UTC) + timedelta(seconds=200)
    engine.stale_s = 1e9
    engine.evaluate(later)
    engine.evaluate(later + timedelta(seconds=61))
    assert viewer.get(f"/api/alerts/{alert_id}").json()["state"] == "resolved"
    assert tech.post(f"/api/alerts/{alert_id}/ack").status_code == 409
    assert viewer.get("/api/alerts", params={"state": "bogus"}).status_code == 422


def test_admins_change_a_rule_s_threshold_within_its_bounds_audited_and_the_engine_uses_it(staffed):
    viewer = staffed.client(headers={"Authorization": f"Bearer {staffed.tokens['viewer']}"})
    rules = {r["rule"]: r for r in viewer.get("/api/alerts/rules").json()}
    assert rules["disk_low"]["params"]["min_free_mb"]["value"] == 500 and rules["disk_low"]["enabled"]
    assert rules["meeting_kiosk_down"]["params"]["grace_s"]["default"] == 120

    admin = staffed.login("admin")
    tech = staffed.login("technician", client=staffed.client())
    change = {"rules": {"disk_low": {"params": {"min_free_mb": 2048}}, "power": {"enabled": False}}}
    assert tech.put("/api/alerts/rules", json=change).status_code == 403
    for bad, says in (({"rules": {"disk_low": {"params": {"min_free_mb": 0}}}}, "between"),
                      ({"rules": {"disk_low": {"params": {"min_free": 10}}}}, "no parameter"),
                      ({"rules": {"nope": {"enabled": True}}}, "unknown rule")):
        response = admin.put("/api/alerts/rules", json=bad)
        assert response.status_code == 400 and says in response.json()["detail"], response.text
    assert admin.put("/api/alerts/rules", json={"rules": {"disk_low": {"params": {"min_free_mb": "x"}}}}).status_code == 422
    assert staffed.audit("alert.rules") == []  # nothing refused was applied or logged as applied

    updated = {r["rule"]: r for r in admin.put("/api/alerts/rules", json=change).json()}
    assert updated["disk_low"]["params"]["min_free_mb"]["value"] == 2048 and updated["disk_low"]["updated_by"] == "admin"
    assert updated["power"]["enabled"] is False
    [entry] = staffed.audit("alert.rules")
    assert entry["actor"] == "admin" and json.loads(entry["detail"])["disk_low"] == {"params": {"min_free_mb": 2048.0}}

    # 1 GiB free: fine by the default, low by the new threshold; under-voltage now, but that rule is off
    device = Device()
    registry.add_device(staffed.store, device.public_key, "H1")
    now = datetime.now(UTC)
    status = {"v": 1, "device": device.id, "state": "online", "uptime_s": 9999, "disk_free_bytes": 1 << 30, "throttled": 1}
    staffed.store.db.execute("INSERT INTO device_status (device, state, status, last_seen) VALUES (?, 'online', ?, ?)",
                             [device.id, json.dumps(status), now.isoformat()])
    AlertEngine(staffed.store).evaluate(now)
    assert [a["rule"] for a in viewer.get("/api/alerts").json()["alerts"]] == ["disk_low"]


def test_the_service_runs_the_engine_a_kiosk_s_last_will_opens_an_alert_the_api_shows(tmp_path, broker):
    settings = settings_for(tmp_path, broker.port, http_port=free_port(), alert_interval_s=0.2)
    device = Device()
    from central.store import open_store

    with open_store(settings.data_dir) as store:
        now = datetime.now(UTC)
        registry.add_meeting(store, "M1", cell="C1", hall="H1", title="Họp", starts=now, ends=now + timedelta(hours=1))
        registry.add_device(store, device.public_key, "H1")
    with CentralService(settings) as service:
        api = httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {STAFF_TOKEN}"}, timeout=10)
        assert api.put("/api/alerts/rules", json={"rules": {"meeting_kiosk_down": {"params": {"grace_s": 0}}}}).status_code == 200
        kiosk = Probe(broker.port)
        kiosk.publish(Topics().status(device.id), json.dumps({"v": 1, "device": device.id, "state": "offline"}).encode(),
                      retain=True)
        kiosk.close()
        seen = threading.Event()
        for _ in range(150):  # the engine evaluates every 0.2 s; wait for its evidence, up to 30 s
            alerts = api.get("/api/alerts", params={"state": "open"}).json()
            if alerts["alerts"]:
                seen.set()
                break
            seen.wait(0.2)
        assert seen.is_set(), alerts
        assert alerts["alerts"][0]["device"] == device.id and alerts["engine"]["evaluations"] >= 1
