"""The staff API and page: who may call what, and what the attendance view says."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient

from central import registry
from central.api import create_app
from central.api.app import all_routes
from central.api.deps import public, require_staff
from central.errors import SettingsError
from central.ingest import Ingest
from central.settings import CentralSettings
from central.store import open_store
from contract import Topics
from tests.central import STAFF_TOKEN, Device, settings_for

AUTH = {"Authorization": f"Bearer {STAFF_TOKEN}"}


def _iso(hours: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(hours=hours)).isoformat()


@pytest.fixture
def env(tmp_path):
    settings = settings_for(tmp_path)
    store = open_store(settings.data_dir)
    registry.add_member(store, "m1", "Nguyễn Văn A", "C1")
    registry.add_member(store, "m2", "Trần Thị B", "C1")
    registry.add_meeting(store, "mt1", cell="C1", hall="H1", title="Họp chi bộ", starts=_iso(-0.5), ends=_iso(1))
    device = Device()
    registry.add_device(store, device.public_key, "H1")
    ingest = Ingest(store, Topics())
    with store.transaction():
        ingest.handle(Topics().attendance(device.id), device.record("m1", "mt1", distance=0.28).to_wire())
        ingest.handle(Topics().attendance(device.id), b"garbage")
    client = TestClient(create_app(store=store, staff_token=settings.checked_staff_token()))
    yield client, store, device
    store.close()


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "mt1", path)


def test_every_api_route_refuses_callers_without_credentials(env):
    client, _, _ = env
    api = [r for r in all_routes(client.app.routes) if r.path.startswith("/api")]
    assert len(api) >= 6
    for route in api:
        for method in route.methods:
            for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token"}, {"Cookie": "hall_staff=forged"}):
                response = client.request(method, _concrete(route.path), headers=headers)
                assert response.status_code == 401, (route.path, headers)
            assert client.request(method, _concrete(route.path), headers=AUTH).status_code == 200, route.path


def test_every_route_declares_who_may_call_it(env):
    client, _, _ = env
    routes = list(all_routes(client.app.routes))
    assert {"/", "/login", "/healthz", "/api/meetings"} <= {r.path for r in routes}
    for route in routes:
        declared = {d.call for d in route.dependant.dependencies}
        assert declared & {require_staff, public}, f"{route.path} declares neither require_staff nor public"


def test_health_is_public_and_says_nothing_else(env):
    client, _, _ = env
    assert client.get("/healthz").json() == {"status": "ok"}


def test_login_sets_a_strict_httponly_cookie_that_opens_page_and_api(env):
    client, _, _ = env
    assert client.get("/").status_code == 401  # the login form, no data
    assert client.get("/login", params={"token": "nope"}).status_code == 401
    response = client.get("/login", params={"token": STAFF_TOKEN}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert STAFF_TOKEN not in cookie
    page = client.get("/")
    assert page.status_code == 200 and "Điểm danh" in page.text and "Attendance" in page.text
    assert client.get("/api/meetings").status_code == 200


def test_attendance_lists_present_with_details_and_absent_members(env):
    client, _, device = env
    data = client.get("/api/meetings/mt1/attendance", headers=AUTH).json()
    assert data["meeting"]["state"] == "current"
    [present] = data["present"]
    assert present["member_id"] == "m1" and present["name"] == "Nguyễn Văn A" and present["cell"] == "C1"
    assert present["device"] == device.id and present["face_distance"] == 0.28
    # the test device's synced clock says 2030: central keeps that as the device's time, flags it,
    # and places the check-in when it was received instead
    assert present["device_time"] == "2030-01-01T01:05:00Z"
    assert present["clock_flag"].startswith("device clock ahead by")
    assert present["checked_in_at"] != "2030-01-01T01:05:00Z"
    assert [a["member_id"] for a in data["absent"]] == ["m2"]
    assert client.get("/api/meetings/nope/attendance", headers=AUTH).status_code == 404
    [meeting] = client.get("/api/meetings", headers=AUTH).json()
    assert (meeting["present"], meeting["expected"]) == (1, 2)


def test_devices_rejections_and_alarms_views(env):
    client, store, device = env
    [d] = client.get("/api/devices", headers=AUTH).json()
    assert d["id"] == device.id and d["acked_seq"] == 1 and d["online"] is False
    [rej] = client.get("/api/rejections", headers=AUTH).json()
    assert rej["reason"].startswith("bad record") and rej["payload"] == "garbage"
    assert client.get("/api/alarms", headers=AUTH).json() == []


def test_placeholder_staff_tokens_are_refused(tmp_path):
    for token in ("", "changeme", "CHANGEME", "<staff token>", "short-token"):
        with pytest.raises(SettingsError):
            CentralSettings(data_dir=tmp_path, staff_token=token).checked_staff_token()


def test_staff_token_from_systemd_credentials_directory(tmp_path, monkeypatch):
    (tmp_path / "staff_token").write_text("from-credentials-0123456789\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    monkeypatch.delenv("HALL_CENTRAL_STAFF_TOKEN", raising=False)
    assert CentralSettings().checked_staff_token() == "from-credentials-0123456789"


def test_unknown_setting_is_refused(monkeypatch):
    monkeypatch.setenv("HALL_CENTRAL_NO_SUCH_THING", "1")
    with pytest.raises(ValueError):
        CentralSettings()
