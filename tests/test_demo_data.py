"""The demo's data at central: the meeting's officers with the demo PIN, and the live member of the shared clip."""

from __future__ import annotations

from central import keys, officers, registry
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
