"""The demo's data at central: the meeting's officers with the demo PIN, and the live member of the shared clip."""

from __future__ import annotations

from central import attendance_rollup, keys, officers, registry
from central.store import open_store
from hall import demo_data
from tests.central import Device, settings_for


def test_demo_meeting_has_officers_with_pins_and_the_live_member_is_enrolled(tmp_path, faces_dir):
    settings = settings_for(tmp_path)
    box = keys.template_box(settings.data_dir)
    with open_store(settings.data_dir) as store:
        meeting_id = demo_data.seed_central(store, box, faces_dir, [Device().public_key], media_dir=tmp_path / "media")
        meeting = registry.get_meeting(store, meeting_id)
        assert (meeting["secretary"], meeting["chair"]) == (demo_data.SECRETARY.id, demo_data.CHAIR.id)
        pins = officers.pin_hashes(store, [demo_data.SECRETARY.id, demo_data.CHAIR.id])
        assert all(officers.PIN_HASHER.verify(h, demo_data.DEMO_PIN) for h in pins.values()) and len(pins) == 2
        live = demo_data.LIVE_MEMBER
        assert [m["id"] for m in registry.cell_members(store, demo_data.CELL) if m["id"] == live.id] == [live.id]
        assert len(registry.member_templates(store, box, [live.id])[live.id]) == 1
        assert registry.member_cards(store, [live.id])[live.id] == [live.card]


def test_the_demo_cell_has_six_closed_past_months_with_every_status_and_two_warnings(tmp_path, faces_dir):
    """So that a new user's attendance pages show a history: real signed records of the hall's previous kiosk
    (revoked since), through central's ingest; seeding again (`hall demo --keep`) adds nothing."""
    from datetime import UTC, datetime

    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    settings = settings_for(tmp_path)
    box = keys.template_box(settings.data_dir)
    with open_store(settings.data_dir) as store:
        for _ in range(2):
            demo_data.seed_central(store, box, faces_dir, [Device().public_key], media_dir=tmp_path / "media", now=now)
        year = attendance_rollup.cell_attendance(store, demo_data.CELL, date_from="2026-01-01", date_to="2026-11-24", now=now)
        assert [m["id"] for m in year["meetings"]] == [f"MEET-2026{m:02d}10" for m in range(5, 11)]
        assert all(m["closed"] for m in year["meetings"])
        t = year["totals"]
        assert (t["expected"], t["present"], t["late"], t["excused"], t["unexcused"]) == (30, 21, 2, 2, 5)
        assert {w["name"]: w["level"] for w in year["warnings"]} == {"Joe Biden": "rule", "Barack Obama": "warning"}
        assert store.scalar("SELECT COUNT(*) FROM attendance_amendments") == 1  # an excuse that came after the close
        assert store.scalar("SELECT COUNT(*) FROM rejections") == 0
        old = store.row("SELECT name, revoked_at FROM devices WHERE name LIKE '%máy cũ%'")
        assert old["revoked_at"] is not None  # replaced by the demo's kiosk, which is "cửa chính"
