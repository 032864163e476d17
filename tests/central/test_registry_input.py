"""The registry refuses input no real reader or kiosk could ever match."""

from __future__ import annotations

import pytest

from central import registry
from central.errors import RegistryError
from central.store import open_store


@pytest.fixture
def store(tmp_path):
    s = open_store(tmp_path / "central")
    yield s
    s.close()


@pytest.mark.parametrize("uid", ["04A1B2C3", "04:a1:b2:c3:d4:e5:f6", "04 A1 B2 C3 D4 E5 F6 07 18 29"])
def test_card_uids_of_the_three_iso_14443a_sizes_are_accepted(store, uid):
    registry.add_member(store, "m1", "Nguyễn Văn A", "C1", cards=[uid])
    assert registry.member_cards(store, ["m1"])["m1"] == [uid.replace(":", "").replace(" ", "").upper()]


@pytest.mark.parametrize("uid, size", [("04A1B2C3D4E5F607", 8), ("04A1B2C3D4", 5), ("04A1B2C3D4E5F60718", 9), ("04A1B2", 3)])
def test_card_uids_no_pn532_can_read_are_refused_with_the_reason(store, uid, size):
    with pytest.raises(RegistryError) as refused:
        registry.add_member(store, "m1", "Nguyễn Văn A", "C1", cards=[uid])
    message = str(refused.value)
    assert f"{size} bytes" in message and "4, 7 or 10 bytes" in message, message
    assert store.rows("SELECT * FROM members") == [] and store.rows("SELECT * FROM cards") == []
