"""The staff API and page: who may call what, and what the attendance view says."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from central import accounts, registry
from central.api import create_app
from central.api.app import all_routes
from central.errors import AccountError, SettingsError
from central.ingest import Ingest
from central.settings import CentralSettings
from central.store import open_store
from contract import Topics
from tests.central import STAFF_TOKEN, Device, settings_for

AUTH = {"Authorization": f"Bearer {STAFF_TOKEN}"}


def _iso(hours: float) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).isoformat()


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


def test_the_bootstrap_staff_token_still_opens_every_read_route_as_admin(env):
    # The demo, e2e tests and older scripts send it as a Bearer header; it acts as an admin.
    client, _, _ = env
    gets = [r for r in all_routes(client.app.routes) if r.path.startswith("/api") and "GET" in r.methods]
    assert len(gets) >= 8
    for n, route in enumerate(gets):
        # an id that is a number in its route (alerts) gets a number, a text id the demo meeting's
        path = re.sub(r"\{[^}]*_id\}", "1", route.path) if "/alerts/" in route.path else route.path
        path = re.sub(r"\{[^}]+\}", "mt1", path).replace("/users/mt1", "/users/nobody")
        assert client.get(path).status_code == 401, route.path
        # each route's wrong token from its own address: more routes than the per-address guard's 20 would trip it
        wrong = TestClient(client.app, client=(f"192.0.2.{n + 1}", 40000))
        assert wrong.get(path, headers={"Authorization": "Bearer wrong-token-wrong-token"}).status_code == 401
        # 422: a placeholder where a number goes (a commune's code) is refused before any lookup; never a 500
        assert client.get(path, headers=AUTH).status_code in (200, 404, 422), route.path
    assert client.get("/api/me", headers=AUTH).json()["role"] == "admin"


def test_health_is_public_and_says_nothing_else(env):
    client, _, _ = env
    assert client.get("/healthz").json() == {"status": "ok"}


def test_a_one_time_login_link_opens_a_server_side_session_once(env):
    client, store, _ = env
    assert client.get("/").status_code == 401  # the login form, no data
    code = accounts.issue_login_link(store)  # what the demo and `hall central login-link` print, for the staff-token admin
    assert code.encode() not in store.path.read_bytes() + Path(f"{store.path}-wal").read_bytes()  # only its hash
    response = client.get(f"/login/once/{code}", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/fleet"  # the page staff land on
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and code not in cookie and STAFF_TOKEN not in cookie
    page = client.get("/")
    assert page.status_code == 200 and "Điểm danh" in page.text and "Attendance" in page.text
    assert client.get("/api/me").json()["name"] == "staff-token" and client.get("/api/me").json()["role"] == "admin"
    assert store.scalar("SELECT COUNT(*) FROM sessions WHERE user_id IS NULL") == 1  # the link itself is gone
    again = TestClient(client.app).get(f"/login/once/{code}", follow_redirects=False)
    assert again.status_code == 401 and "set-cookie" not in again.headers  # used up
    late = accounts.issue_login_link(store, ttl_s=60)
    store.db.execute("UPDATE sessions SET expires_at = '2000-01-01T00:00:00.000Z' WHERE via = 'login-link'")
    assert TestClient(client.app).get(f"/login/once/{late}").status_code == 401
    with pytest.raises(AccountError):
        accounts.issue_login_link(store, "nobody")
    actions = [(e["actor"], e["action"], e["detail"]) for e in store.rows("SELECT * FROM audit ORDER BY id")]
    assert actions == [("staff-token", "login.success", "one-time login link"),
                       ("?", "login.failure", "unknown or already used login link"), ("?", "login.failure", "expired login link")]


def test_the_staff_token_is_never_taken_from_a_url(env):
    client, store, _ = env
    response = client.get("/login", params={"token": STAFF_TOKEN}, follow_redirects=False)
    assert response.status_code == 400 and "set-cookie" not in response.headers and "login-link" in response.text
    assert client.get("/api/me").status_code == 401
    assert store.scalar("SELECT COUNT(*) FROM sessions") == 0
    assert client.get("/api/me", headers=AUTH).status_code == 200  # the header still works, for scripts


def test_guessing_login_links_or_bearer_tokens_is_slowed_per_address(env):
    client, store, _ = env
    guesser = TestClient(client.app, client=("203.0.113.5", 40000))
    for n in range(10):
        assert guesser.get(f"/login/once/guess{n}").status_code == 401
        assert guesser.get("/api/me", headers={"Authorization": f"Bearer hct_guess{n}"}).status_code == 401
    assert guesser.get("/api/me", headers=AUTH).status_code == 429  # refused before any token is looked at
    assert guesser.get(f"/login/once/{accounts.issue_login_link(store)}").status_code == 429
    assert TestClient(client.app, client=("198.51.100.5", 40000)).get("/api/me", headers=AUTH).status_code == 200


def test_a_session_opened_with_an_old_staff_token_ends_when_the_token_changes(env):
    client, store, _ = env
    client.get(f"/login/once/{accounts.issue_login_link(store)}")
    assert client.get("/api/meetings").status_code == 200
    renewed = TestClient(create_app(store=store, staff_token="a-brand-new-staff-token-987654"), cookies=client.cookies)
    assert renewed.get("/api/meetings").status_code == 401
    without = TestClient(create_app(store=store, staff_token=None), cookies=client.cookies)
    assert without.get("/api/meetings").status_code == 401
    assert without.get("/api/meetings", headers=AUTH).status_code == 401
    # A link for the staff-token admin opens nothing while the staff token is switched off.
    assert without.get(f"/login/once/{accounts.issue_login_link(store)}", follow_redirects=False).status_code == 401


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
