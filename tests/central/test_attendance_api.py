"""The meeting sheet's API: viewers read it, secretaries record excuses, close and amend; every write is audited."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from central import accounts, attendance_sheet
from central.api import create_app
from tests.central import STAFF_TOKEN
from tests.central.test_attendance_sheet import days_ago, make_world, rows

ORIGIN = "http://testserver"


@pytest.fixture
def api(tmp_path):
    """A world with meeting mt1 (yesterday, an checked in), a viewer and a secretary with API tokens."""
    world = make_world(tmp_path / "central")
    start = days_ago(1)
    world.meeting("mt1", start)
    world.check_in("an", "mt1", start + timedelta(minutes=20))
    app = create_app(store=world.store, staff_token=STAFF_TOKEN, public_origins=[ORIGIN])
    tokens = {}
    for role in ("viewer", "secretary"):
        accounts.add_user(world.store, role, role, f"{role}-pass-Xy9")
        tokens[role] = {"Authorization": f"Bearer {accounts.issue_token(world.store, role, 'script')[1]}"}
    yield TestClient(app), tokens, world
    world.store.close()


def test_a_viewer_reads_the_sheet_with_the_spec_s_keys(api):
    client, tokens, world = api
    s = client.get("/api/meetings/mt1/sheet", headers=tokens["viewer"]).json()
    assert set(s) == {"meeting", "late_after_min", "frozen", "totals", "members", "amendments"}
    assert set(s["meeting"]) == {"id", "title", "cell", "cell_name", "hall", "hall_name", "starts_at", "ends_at", "day",
                                 "state", "closed_at", "closed_by"}
    assert set(s["totals"]) == set(attendance_sheet.TOTAL_KEYS)
    assert set(s["members"][0]) == {"member", "name", "standing", "expected", "status", "checked_in_at", "minutes_late",
                                    "reason", "reason_label", "note", "override", "device", "seq", "hash", "amended"}
    assert (s["meeting"]["cell_name"], s["meeting"]["hall_name"]) == ("Chi bộ thôn 1", "Hội trường xã")
    assert rows(s)["an"]["status"] == "late" and rows(s)["an"]["minutes_late"] == 20
    assert client.get("/api/meetings/nothing/sheet", headers=tokens["viewer"]).status_code == 404


def test_the_late_setting_of_the_running_service_decides_late(api):
    client, tokens, _ = api
    client.app.state.attendance_rules = attendance_sheet.Rules(late_after_min=30)
    s = client.get("/api/meetings/mt1/sheet", headers=tokens["viewer"]).json()
    assert s["late_after_min"] == 30 and rows(s)["an"]["status"] == "present"


def test_a_viewer_may_not_write_a_secretary_may_and_each_write_is_audited_with_the_actor(api):
    client, tokens, world = api
    excuse = {"member": "binh", "reason": "work", "note": "đi tập huấn"}
    for path, body in (("excuses", excuse), ("close", None), ("amendments", {"member": "cuong", "status": "excused",
                                                                             "reason": "illness"})):
        assert client.post(f"/api/meetings/mt1/{path}", json=body, headers=tokens["viewer"]).status_code == 403
    assert world.store.scalar("SELECT COUNT(*) FROM audit WHERE action LIKE 'attendance.%'") == 0

    r = client.post("/api/meetings/mt1/excuses", json=excuse, headers=tokens["secretary"])
    assert r.status_code == 200 and r.json()["amended"] is False
    assert rows(r.json()["sheet"])["binh"]["reason_label"] == "đi công tác"
    r = client.post("/api/meetings/mt1/close", headers=tokens["secretary"])
    assert r.status_code == 200 and r.json()["frozen"] and r.json()["meeting"]["closed_by"] == "secretary"
    again = client.post("/api/meetings/mt1/close", headers=tokens["secretary"])
    assert again.status_code == 409 and "was closed" in again.json()["detail"]
    r = client.post("/api/meetings/mt1/amendments", json={"member": "cuong", "status": "excused", "reason": "illness",
                                                          "note": "giấy viện"}, headers=tokens["secretary"])
    assert r.status_code == 200 and rows(r.json())["cuong"]["amended"] is True
    assert r.json()["amendments"][0]["recorded_by"] == "secretary"
    # a late excuse through the same endpoint becomes an amendment
    r = client.post("/api/meetings/mt1/excuses", json={"member": "binh", "reason": "family"}, headers=tokens["secretary"])
    assert r.status_code == 200 and r.json()["amended"] is True
    assert [(a["actor"], a["action"]) for a in world.store.rows(
        "SELECT actor, action FROM audit WHERE action LIKE 'attendance.%' ORDER BY id")] == [
        ("secretary", "attendance.excuse"), ("secretary", "attendance.close"), ("secretary", "attendance.amend"),
        ("secretary", "attendance.amend")]


def test_bad_requests_get_clear_4xx_answers_and_change_nothing(api):
    client, tokens, world = api
    sec = tokens["secretary"]
    before = client.get("/api/meetings/mt1/sheet", headers=sec).json()
    cases = [
        ("excuses", {"member": "binh", "reason": "illness", "note": "x" * 501}, 422, None),
        ("excuses", {"member": "binh", "reason": "bored"}, 422, None),
        ("excuses", {"member": "binh", "reason": "illness", "extra": 1}, 422, None),
        ("excuses", {"member": "an", "reason": "illness"}, 422, "only for an absence"),
        ("excuses", {"member": "dung", "reason": "illness"}, 422, "not expected"),
        ("excuses", {"member": "nobody", "reason": "illness"}, 404, "no member"),
        ("amendments", {"member": "binh", "status": "excused", "reason": "illness"}, 422, "record an excuse instead"),
        ("amendments", {"member": "binh", "status": "absent"}, 422, None),
    ]
    for path, body, code, words in cases:
        r = client.post(f"/api/meetings/mt1/{path}", json=body, headers=sec)
        assert r.status_code == code, (body, r.status_code, r.text)
        if words:
            assert words in r.json()["detail"], r.json()
    assert client.post("/api/meetings/nothing/close", headers=sec).status_code == 404
    assert client.post("/api/meetings/mt1/excuses", content=b"{" + b" " * 20000 + b"}",
                       headers=sec | {"Content-Type": "application/json"}).status_code == 413
    assert client.get("/api/meetings/mt1/sheet", headers=sec).json() == before
    client.post("/api/meetings/mt1/close", headers=sec)
    same = client.post("/api/meetings/mt1/amendments", json={"member": "binh", "status": "unexcused"}, headers=sec)
    assert same.status_code == 422 and "already unexcused" in same.json()["detail"]


def test_a_secretary_s_browser_session_may_close_only_from_central_s_own_pages(api):
    client, _, world = api
    browser = TestClient(client.app)
    assert browser.post("/login", data={"username": "secretary", "password": "secretary-pass-Xy9"},
                        follow_redirects=False).status_code == 303
    assert browser.post("/api/meetings/mt1/close", headers={"Origin": "https://evil.example"}).status_code == 403
    assert browser.post("/api/meetings/mt1/close", headers={"Origin": ORIGIN}).status_code == 200
