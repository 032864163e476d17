"""Central as one process: collector and API together, over real MQTT and HTTP."""

from __future__ import annotations

import json
import os
import signal
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from central import accounts, registry
from central.errors import SettingsError
from central.service import CentralService, central_public_key
from central.settings import CentralSettings
from central.store import open_store
from contract import (
    Ack,
    Bundle,
    Topics,
    decode_signed,
    open_members,
    verify_key_from_text,
)
from tests.central import STAFF_TOKEN, Device, Probe, settings_for, wait_until
from tests.conftest import free_port


def test_service_stores_a_check_in_and_the_page_api_shows_it(tmp_path, broker):
    settings = settings_for(tmp_path, broker.port, http_port=free_port())
    device = Device()
    now = datetime.now(UTC)
    with open_store(settings.data_dir) as store:  # registry changes from another connection, as the CLI makes them
        registry.add_member(store, "m1", "Nguyễn Văn A", "C1")
        registry.add_meeting(store, "mt1", cell="C1", hall="H1", title="Họp", starts=now - timedelta(minutes=5), ends=now + timedelta(hours=1))
        registry.add_device(store, device.public_key, "H1")
    topics = Topics(settings.topic_prefix)
    central_key = verify_key_from_text(central_public_key(settings))
    with CentralService(settings) as service:
        probe = Probe(broker.port, [t for t, _ in topics.device_subscriptions(device.id)])  # what a kiosk listens to
        try:
            bundle = decode_signed(central_key, probe.wait(topics.bundle(device.id))[0], Bundle)
            assert [m.id for m in open_members(device.key, bundle.members_sealed)] == ["m1"]
            probe.publish(topics.attendance(device.id), device.record("m1", "mt1").to_wire())
            wait_until(lambda: any(decode_signed(central_key, p, Ack).seq == 1 for p in probe.on(topics.ack(device.id))), what="ack 1")
        finally:
            probe.close()
        with httpx.Client(base_url=service.url, timeout=5) as http:
            assert http.get("/healthz").status_code == 200
            assert http.get("/api/meetings/mt1/attendance").status_code == 401
            http.get(f"/login/once/{accounts.issue_login_link(service.store)}")
            present = http.get("/api/meetings/mt1/attendance").json()["present"]
            assert [p["member_id"] for p in present] == ["m1"]
            assert http.get("/api/collector").json()["stored"] == 1


def test_service_refuses_to_start_with_a_placeholder_token(tmp_path):
    settings = CentralSettings(data_dir=tmp_path / "c", staff_token="changeme")
    with pytest.raises(SettingsError):
        CentralService(settings).start()
    assert not (tmp_path / "c" / "central.db").exists()  # refused before touching anything


def test_with_the_staff_token_switched_off_only_accounts_log_in(tmp_path, broker):
    from central import accounts

    settings = CentralSettings(data_dir=tmp_path / "c", mqtt_port=broker.port, http_port=free_port(),
                               staff_token="", staff_token_enabled=False, session_hours=0.5)
    with open_store(settings.data_dir) as store:
        accounts.add_user(store, "root", "admin", "root-password-42")
    with CentralService(settings) as service, httpx.Client(base_url=service.url, timeout=5) as http:
        assert http.get(f"/login/once/{accounts.issue_login_link(service.store)}").status_code == 401  # no staff-token admin
        login = http.post("/login", data={"username": "root", "password": "root-password-42"})
        assert login.status_code == 303 and "Max-Age=1800" in login.headers["set-cookie"]
        assert http.get("/api/me").json()["name"] == "root"


def test_a_frozen_broker_is_shown_and_kiosk_states_become_unknown_until_it_answers_again(tmp_path, broker):
    """Mosquitto stopped with SIGSTOP: the TCP connection stays up, nothing answers; central must notice and say so."""
    settings = settings_for(tmp_path, broker.port, http_port=free_port(), broker_heartbeat_s=0.2, broker_silence_s=2.0)
    device = Device()
    with open_store(settings.data_dir) as store:
        registry.add_device(store, device.public_key, "H1")
    with CentralService(settings) as service, httpx.Client(base_url=service.url, timeout=5,
                                                           headers={"Authorization": f"Bearer {STAFF_TOKEN}"}) as http:
        kiosk = Probe(broker.port)
        kiosk.publish(Topics().status(device.id), json.dumps({"v": 1, "device": device.id, "state": "online", "queue_depth": 0}).encode(),
                      retain=True)
        kiosk.close()
        wait_until(lambda: http.get("/api/devices").json()[0]["state"] == "online", what="kiosk online")
        assert http.get("/api/collector").json()["broker"]["state"] == "connected"

        os.kill(broker.proc.pid, signal.SIGSTOP)
        try:
            link = wait_until(lambda: (b := http.get("/api/collector").json()["broker"])["state"] == "unresponsive" and b,
                              timeout=15, what="central to notice the frozen broker")
            assert link["ok"] is False and "has not answered" in link["detail"]
            [shown] = http.get("/api/devices").json()
            assert (shown["state"], shown["online"], shown["reported_state"]) == ("unknown", False, "online")
            assert "no working link to the broker" in shown["state_reason"]
        finally:
            os.kill(broker.proc.pid, signal.SIGCONT)
        wait_until(lambda: http.get("/api/collector").json()["broker"]["state"] == "connected", timeout=15,
                   what="central to see the broker answer again")
        assert http.get("/api/devices").json()[0]["state"] == "online"


def test_a_kiosk_whose_last_status_is_old_is_shown_as_unknown_not_online(tmp_path, broker):
    settings = settings_for(tmp_path, broker.port, http_port=free_port(), device_stale_s=1.0)
    device = Device()
    with open_store(settings.data_dir) as store:
        registry.add_device(store, device.public_key, "H1")
    with CentralService(settings) as service, httpx.Client(base_url=service.url, timeout=5,
                                                           headers={"Authorization": f"Bearer {STAFF_TOKEN}"}) as http:
        kiosk = Probe(broker.port)
        kiosk.publish(Topics().status(device.id), json.dumps({"v": 1, "device": device.id, "state": "online"}).encode())
        kiosk.close()
        wait_until(lambda: http.get("/api/devices").json()[0]["reported_state"] == "online", what="status stored")
        # nothing more arrives: once the status is older than device_stale_s, central no longer vouches for it
        shown = wait_until(lambda: (d := http.get("/api/devices").json()[0])["state"] == "unknown" and d, timeout=10,
                           what="stale status shown as unknown")
        assert shown["online"] is False and shown["state_reason"].startswith("no status for")
