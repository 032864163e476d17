"""Central places each record in time from the evidence it carries, and flags a clock it cannot trust."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from central import registry
from central.api import create_app
from central.collector import process_batch
from central.ingest import Ingest
from central.store import open_store
from contract import DeviceTime, Proof, RecordBody, SignedRecord, Topics, sign_record
from tests.central import STAFF_TOKEN, Device, settings_for

AUTH = {"Authorization": f"Bearer {STAFF_TOKEN}"}


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class Kiosk:
    """A signing device whose clock readings the test chooses."""

    def __init__(self, device: Device):
        self.device = device

    def record(self, member: str, *, wall: datetime | str, synced: bool, monotonic: float, boot: str = "boot-1") -> SignedRecord:
        d = self.device
        body = RecordBody(
            device=d.id, seq=d.seq + 1, prev=d.prev, meeting="mt1", member=member,
            proof=Proof(card_kind="member_card", face_distance=0.3, face_threshold=0.5),
            time=DeviceTime(wall=wall if isinstance(wall, str) else iso(wall), synced=synced, boot_id=boot, monotonic=monotonic),
        )
        rec = sign_record(d.key, body)
        d.seq, d.prev = rec.seq, rec.hash
        return rec


@pytest.fixture
def env(tmp_path):
    settings = settings_for(tmp_path)
    store = open_store(settings.data_dir)
    for m in ("m1", "m2", "m3"):
        registry.add_member(store, m, f"Member {m}", "C1")
    now = datetime.now(UTC)
    registry.add_meeting(store, "mt1", cell="C1", hall="H1", title="Họp", starts=iso(now - timedelta(hours=3)), ends=iso(now + timedelta(hours=1)))
    device = Device()
    registry.add_device(store, device.public_key, "H1")
    ingest = Ingest(store, Topics())
    api = TestClient(create_app(store=store, staff_token=settings.checked_staff_token()))

    def send(*records: SignedRecord) -> None:
        # the collector's own batch path: one transaction, placement inside it
        process_batch(ingest, [(Topics().attendance(r.device), r.to_wire(), False) for r in records])

    def stored(seq: int) -> dict:
        return store.row("SELECT * FROM records WHERE device = ? AND seq = ?", [device.id, seq])

    yield Kiosk(device), send, stored, api, store, now
    store.close()


def attendance(api: TestClient) -> dict[str, dict]:
    return {p["member_id"]: p for p in api.get("/api/meetings/mt1/attendance", headers=AUTH).json()["present"]}


def test_synchronised_record_is_placed_at_the_device_time_without_a_flag(env):
    kiosk, send, stored, api, _, now = env
    wall = now - timedelta(minutes=5)
    send(kiosk.record("m1", wall=wall, synced=True, monotonic=500.0))
    row = stored(1)
    assert (row["placed_at"], row["placed_by"], row["clock_flag"]) == (iso(wall), "device-synced", None)
    shown = attendance(api)["m1"]
    assert shown["checked_in_at"] == iso(wall) and shown["device_time"] == iso(wall) and shown["clock_flag"] is None


def test_clock_ahead_of_central_is_flagged_and_placed_when_received(env):
    kiosk, send, stored, api, _, now = env
    send(kiosk.record("m1", wall=now + timedelta(hours=2), synced=True, monotonic=500.0))
    row = stored(1)
    assert row["placed_by"] == "received" and row["placed_at"] == row["received_at"]
    assert re.fullmatch(r"device clock ahead by 7\d\d\d s", row["clock_flag"]), row["clock_flag"]
    assert abs((parse(row["placed_at"]) - now).total_seconds()) < 60
    shown = attendance(api)["m1"]
    assert shown["clock_flag"] == row["clock_flag"] and shown["device_time"] == iso(now + timedelta(hours=2))
    assert shown["checked_in_at"] == row["placed_at"]


def test_unsynchronised_record_is_placed_from_a_synchronised_one_of_the_same_boot(env):
    kiosk, send, stored, api, _, now = env
    anchor_wall = now - timedelta(hours=1)
    send(kiosk.record("m1", wall=anchor_wall, synced=True, monotonic=1000.0))
    # NTP lost and the clock set three days back; 600 s later by the monotonic clock
    send(kiosk.record("m2", wall=anchor_wall - timedelta(days=3), synced=False, monotonic=1600.0))
    # still unsynchronised but right: placed from the anchor, nothing to flag
    send(kiosk.record("m3", wall=anchor_wall + timedelta(seconds=900), synced=False, monotonic=1900.0))
    off, good = stored(2), stored(3)
    assert (off["placed_at"], off["placed_by"]) == (iso(anchor_wall + timedelta(seconds=600)), "boot-anchor")
    assert "device clock differs by -259800 s (placed from record 1 of the same boot)" in off["clock_flag"]
    assert (good["placed_at"], good["placed_by"]) == (iso(anchor_wall + timedelta(seconds=900)), "boot-anchor")
    assert attendance(api)["m2"]["checked_in_at"] == iso(anchor_wall + timedelta(seconds=600))


def test_a_record_from_another_boot_is_not_placed_by_this_boots_anchor(env):
    kiosk, send, stored, _, _, now = env
    send(kiosk.record("m1", wall=now - timedelta(hours=1), synced=True, monotonic=1000.0, boot="boot-1"))
    send(kiosk.record("m2", wall=now - timedelta(minutes=10), synced=False, monotonic=30.0, boot="boot-2"))
    row = stored(2)
    assert (row["placed_at"], row["placed_by"]) == (iso(now - timedelta(minutes=10)), "device-unsynced")
    assert row["clock_flag"] == "clock not synchronised; time unverified"


def test_clock_jumping_back_an_hour_between_two_records_is_flagged(env):
    kiosk, send, stored, api, _, now = env
    first = now - timedelta(minutes=30)
    send(kiosk.record("m1", wall=first, synced=True, monotonic=2000.0))
    send(kiosk.record("m2", wall=first + timedelta(seconds=60) - timedelta(hours=1), synced=True, monotonic=2060.0))
    assert stored(1)["clock_flag"] is None
    assert stored(2)["clock_flag"] == "clock jumped by -3600 s since record 1"
    assert attendance(api)["m2"]["clock_flag"] == "clock jumped by -3600 s since record 1"


def test_clock_never_set_is_flagged_and_placed_again_once_the_boot_is_synchronised(env):
    kiosk, send, stored, api, _, now = env
    send(kiosk.record("m1", wall="1970-01-01T00:02:05.000Z", synced=False, monotonic=125.0))
    row = stored(1)
    assert row["clock_flag"] == "clock not set (year 1970)" and row["placed_by"] == "received"
    assert abs((parse(row["placed_at"]) - now).total_seconds()) < 60
    assert attendance(api)["m1"]["device_time"] == "1970-01-01T00:02:05.000Z"

    # The kiosk went on offline; later NTP set its clock, in the same boot.
    synced_wall = now + timedelta(seconds=1)
    send(kiosk.record("m2", wall=synced_wall, synced=True, monotonic=3725.0))
    row = stored(1)
    expected = iso(synced_wall - timedelta(seconds=3600))
    assert (row["placed_at"], row["placed_by"]) == (expected, "boot-anchor")
    assert row["clock_flag"] == "clock not set (year 1970) (placed from record 2 of the same boot)"
    assert attendance(api)["m1"]["checked_in_at"] == expected
    assert stored(2)["clock_flag"] is None  # the clock being set is not a jump


def test_flagged_records_of_a_device_are_listed_for_staff(env):
    kiosk, send, _, api, store, now = env
    send(kiosk.record("m1", wall=now - timedelta(minutes=3), synced=True, monotonic=10.0))
    send(kiosk.record("m2", wall=now + timedelta(hours=1), synced=True, monotonic=20.0))
    device = kiosk.device.id
    flagged = api.get(f"/api/devices/{device}/records", params={"flagged": 1}, headers=AUTH).json()
    assert [(r["seq"], r["member"]) for r in flagged] == [(2, "m2")]
    assert flagged[0]["clock_flag"].startswith("device clock ahead by") and flagged[0]["device_time"] == iso(now + timedelta(hours=1))
    assert [r["seq"] for r in api.get(f"/api/devices/{device}/records", headers=AUTH).json()] == [2, 1]
    assert api.get(f"/api/devices/{device}/records", params={"flagged": 1}).status_code == 401
    [listed] = api.get("/api/devices", headers=AUTH).json()
    assert listed["clock_flags"] == 1


@pytest.mark.parametrize("monotonic", [1e18, -1e18, float("inf"), float("nan")])
def test_an_impossible_monotonic_reading_is_flagged_and_placed_at_receipt_not_an_error(monotonic):
    """Before the contract refused them, 1e18 raised OverflowError here and wedged the device's chain."""
    from central.clock_placement import RECEIVED, Evidence, decide, jump

    received = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    anchor = Evidence(1, "2030-01-01T11:00:00.000Z", True, "b1", 100.0)
    absurd = Evidence(2, "1970-01-01T00:02:00.000Z", False, "b1", monotonic)
    placed_at, placed_by, flags = decide(absurd, received, anchor)
    assert (placed_at, placed_by) == (iso(received), RECEIVED)
    assert any("impossible" in f for f in flags) and "clock not set (year 1970)" in flags
    assert jump(absurd, anchor) is None and jump(Evidence(3, "2030-01-01T11:00:01.000Z", False, "b1", 101.0), absurd) is None
