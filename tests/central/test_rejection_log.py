"""Rejections are kept with their reason in bounded space: a flood cannot fill central's disk, alarms outlast plain rejections."""

from __future__ import annotations

from fastapi.testclient import TestClient

from central import registry
from central.api import create_app
from central.collector import process_batch
from central.ingest import Ingest
from central.rejection_log import MAX_KEPT_PAYLOAD, Limits, prune
from central.store import open_store
from contract import Topics
from tests.central import STAFF_TOKEN, Device

AUTH = {"Authorization": f"Bearer {STAFF_TOKEN}"}


def test_a_flood_of_rejections_is_capped_alarms_are_kept_and_what_was_dropped_is_counted(tmp_path):
    store = open_store(tmp_path / "central")
    store.rejection_limits = Limits(max_rows=100, max_age_s=86400.0, prune_every=10)
    device = Device()
    registry.add_device(store, device.public_key, "H1")
    ingest, topic = Ingest(store, Topics()), Topics().attendance(device.id)
    # two different records 1: the first is stored but not counted (no such member: an alarm), the second is a fork (an alarm)
    fork_seq1 = [device.record("m1"), Device(device.key).record("m2")]
    process_batch(ingest, [(topic, r.to_wire(), False) for r in fork_seq1])
    process_batch(ingest, [(topic, b"x" * 100_000, False) for _ in range(1000)])  # 1,000 garbage messages of 100 kB

    kept = store.scalar("SELECT COUNT(*) FROM rejections")
    assert kept <= 100 + 10  # the cap, give or take one pruning interval
    assert store.scalar("SELECT MAX(LENGTH(payload)) FROM rejections") <= MAX_KEPT_PAYLOAD
    alarms = [r["reason"] for r in store.rows("SELECT reason FROM rejections WHERE alarm = 1 ORDER BY id")]  # the oldest rows, yet kept
    assert len(alarms) == 2 and "not counted" in alarms[0] and alarms[1].startswith("fork:")
    api = TestClient(create_app(store=store, staff_token=STAFF_TOKEN))
    summary = api.get("/api/rejections/summary", headers=AUTH).json()
    assert summary["kept"] == kept and summary["alarms"] == 2 and summary["alarms_dropped"] == 0
    assert summary["dropped"] == 1002 - kept and summary["max_rows"] == 100
    assert len(api.get("/api/rejections", headers=AUTH, params={"limit": 1000}).json()) == kept
    store.close()


def test_old_plain_rejections_age_out_and_alarms_give_way_only_to_the_row_cap(tmp_path):
    store = open_store(tmp_path / "central")
    store.rejection_limits = Limits(max_rows=100, max_age_s=3600.0, prune_every=1000)
    with store.transaction() as db:
        for i in range(150):
            db.execute("INSERT INTO rejections (received_at, topic, device, reason, alarm, payload, payload_encoding) "
                       "VALUES (?, 't', NULL, ?, ?, '', 'text')", ["2020-01-01T00:00:00.000Z", f"old {i}", int(i < 120)])
    assert prune(store) == {"rejections": 30, "alarms": 20}  # plain ones by age, then the oldest alarms for the cap
    assert store.scalar("SELECT COUNT(*) FROM rejections") == 100
    assert store.scalar("SELECT MIN(reason) FROM rejections WHERE alarm = 1") == "old 100"
    api = TestClient(create_app(store=store, staff_token=STAFF_TOKEN))
    summary = api.get("/api/rejections/summary", headers=AUTH).json()
    assert (summary["dropped"], summary["alarms_dropped"]) == (30, 20)
    store.close()
