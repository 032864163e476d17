"""The collector against a real Mosquitto and a real SQLite file."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from central import keys, registry
from central.api import create_app
from central.collector import Collector
from central.store import open_store
from contract import Ack, Topics, decode_signed, verify_key_from_text
from contract.topics import Kind
from tests.central import STAFF_TOKEN, Device, Probe, settings_for, wait_until


class Central:
    """Collector + store + a probe that sees everything central publishes."""

    def __init__(self, tmp_path, broker):
        self.settings = settings_for(tmp_path, broker.port)
        self.store = open_store(self.settings.data_dir)
        self.key = keys.signing_key(self.settings.data_dir)
        self.public = verify_key_from_text(keys.central_public_key(self.settings))
        self.topics = Topics(self.settings.topic_prefix)
        self.device = Device()
        registry.add_device(self.store, self.device.public_key, "H1")
        self.probe = Probe(broker.port, [f"{self.settings.topic_prefix}/+/{Kind.ACK.value}"])
        self.collector: Collector | None = None
        self.start()

    def start(self):
        self.collector = Collector(self.settings, self.store, key=self.key, box=keys.template_box(self.settings.data_dir))
        self.collector.start()
        wait_until(lambda: self.collector.connected, what="collector connected")

    def send(self, record, device=None):
        self.probe.publish(self.topics.attendance(device or record.device), record.to_wire())

    def acks(self, device=None) -> list[Ack]:
        return [decode_signed(self.public, p, Ack) for p in self.probe.on(self.topics.ack(device or self.device.id))]

    def wait_ack(self, seq: int, count: int = 1) -> list[Ack]:
        return wait_until(lambda: len([a for a in self.acks() if a.seq == seq]) >= count and self.acks(), what=f"ack {seq} x{count}")

    def rejections(self):
        return self.store.rows("SELECT * FROM rejections ORDER BY id")

    def count(self, table: str) -> int:
        return self.store.scalar(f"SELECT COUNT(*) FROM {table}")

    def close(self):
        self.collector.stop()
        self.probe.close()
        self.store.close()


@pytest.fixture
def central(tmp_path, broker):
    c = Central(tmp_path, broker)
    yield c
    c.close()


def test_subscribes_to_exactly_the_contract_topics(central):
    assert central.collector.subscriptions == Topics(central.settings.topic_prefix).central_subscriptions()
    assert sorted(t for t, _ in central.collector.subscriptions) == ["hall/v1/+/attendance", "hall/v1/+/status"]


def test_record_stored_once_and_acked_with_a_signature_that_verifies(central):
    rec = central.device.record("m1", "mt1")
    central.send(rec)
    ack = central.wait_ack(1)[-1]
    assert (ack.device, ack.seq, ack.hash) == (central.device.id, 1, rec.hash)
    stored = central.store.row("SELECT * FROM records")
    assert (stored["device"], stored["seq"], stored["hash"]) == (central.device.id, 1, rec.hash)
    assert central.store.rows("SELECT meeting, member, seq FROM attendance") == [{"meeting": "mt1", "member": "m1", "seq": 1}]
    # the ack is retained: a kiosk that connects later still learns it
    late = Probe(central.settings.mqtt_port, [central.topics.ack(central.device.id)])
    try:
        assert decode_signed(central.public, late.wait(central.topics.ack(central.device.id))[0], Ack).seq == 1
    finally:
        late.close()

    central.send(rec)  # a resend after a lost ack
    central.wait_ack(1, count=2)
    assert central.count("records") == 1 and central.count("attendance") == 1
    assert central.rejections() == []


def test_second_check_in_of_a_member_is_a_record_but_not_a_second_attendance(central):
    first, second = central.device.record("m1", "mt1"), central.device.record("m1", "mt1")
    central.send(first)
    central.send(second)
    central.wait_ack(2)
    assert central.count("records") == 2
    assert central.store.rows("SELECT seq FROM attendance") == [{"seq": 1}]


def test_forged_record_is_rejected_with_reason_and_not_acked(central):
    rec = central.device.record("m1", "mt1")
    forged = json.loads(rec.to_wire())
    forged["member"] = "someone-else"  # altered after signing
    central.probe.publish(central.topics.attendance(central.device.id), json.dumps(forged).encode())
    wait_until(central.rejections, what="rejection")
    rej = central.rejections()[0]
    assert "signature" in rej["reason"] and rej["device"] == central.device.id
    assert json.loads(rej["payload"])["member"] == "someone-else"  # the message is kept as received
    assert central.count("records") == 0 and central.acks() == []


def test_unknown_device_revoked_device_wrong_topic_and_garbage_are_each_kept_with_a_reason(central):
    stranger = Device()
    central.send(stranger.record())
    other = Device()
    registry.add_device(central.store, other.public_key, "H1")
    central.send(central.device.record(), device=other.id)  # someone else's record on other's topic
    central.probe.publish(central.topics.attendance(central.device.id), b"\xff\x00 not json")
    registry.revoke_device(central.store, other.id)
    central.send(other.record())
    wait_until(lambda: len(central.rejections()) == 4, what="4 rejections")
    reasons = [r["reason"] for r in central.rejections()]
    assert reasons[0] == f"unknown device {stranger.id}"
    assert "published on the topic of" in reasons[1]
    assert reasons[2].startswith("bad record: not JSON")
    assert central.rejections()[2]["payload_encoding"] == "base64"
    assert "revoked" in reasons[3]
    assert central.count("records") == 0


def test_gap_is_held_until_filled_then_the_ack_jumps(central):
    r1, r2, r3 = (central.device.record(f"m{i}") for i in (1, 2, 3))
    central.send(r1)
    central.wait_ack(1)
    central.send(r3)
    central.wait_ack(1, count=2)  # r3 is held: the ack still says 1
    assert central.count("records") == 1 and central.count("pending") == 1
    central.send(r2)
    ack = central.wait_ack(3)[-1]
    assert ack.hash == r3.hash
    assert [r["seq"] for r in central.store.rows("SELECT seq FROM records ORDER BY seq")] == [1, 2, 3]
    assert central.count("pending") == 0 and central.count("attendance") == 3


def test_fork_is_an_alarm_and_never_overwrites(central):
    original = central.device.record("m1")
    central.send(original)
    central.wait_ack(1)
    central.device.seq, central.device.prev = 0, original.prev  # a cloned or restored device reuses seq 1
    fork = central.device.record("m2")
    central.send(fork)
    wait_until(central.rejections, what="fork rejection")
    rej = central.rejections()[0]
    assert rej["alarm"] == 1 and rej["reason"].startswith("fork:")
    assert central.store.scalar("SELECT hash FROM records WHERE seq = 1") == original.hash
    assert central.store.rows("SELECT member FROM attendance") == [{"member": "m1"}]
    api = TestClient(create_app(store=central.store, staff_token=STAFF_TOKEN))
    [alarm] = api.get("/api/alarms", headers={"Authorization": f"Bearer {STAFF_TOKEN}"}).json()
    assert alarm["device"] == central.device.id and alarm["reason"].startswith("fork: record 1 differs")
    [device] = api.get("/api/devices", headers={"Authorization": f"Bearer {STAFF_TOKEN}"}).json()
    assert device["alarms"] == 1


def test_next_record_naming_a_different_predecessor_is_a_fork(central):
    central.send(central.device.record("m1"))
    central.wait_ack(1)
    central.device.prev = "ab" * 32  # seq 2, but chained to a record 1 central never saw
    central.send(central.device.record("m2"))
    wait_until(central.rejections, what="fork rejection")
    [rej] = central.rejections()
    assert rej["alarm"] == 1 and rej["reason"].startswith("fork: record 2 names prev abab")
    assert central.count("records") == 1
    assert central.wait_ack(1, count=2)[-1].seq == 1


def test_status_is_stored_and_a_bad_status_rejected(central):
    status_topic = central.topics.status(central.device.id)
    central.probe.publish(status_topic, json.dumps({"v": 1, "device": central.device.id, "state": "online", "queue_depth": 3}).encode(), retain=True)
    central.probe.publish(status_topic, b'{"v": 1, "state": "sleepy"}')
    wait_until(lambda: central.count("device_status") and central.rejections(), what="status + rejection")
    row = central.store.row("SELECT * FROM device_status")
    assert row["state"] == "online" and json.loads(row["status"])["queue_depth"] == 3
    assert central.rejections()[0]["reason"].startswith("bad status")


def test_records_sent_while_central_is_down_arrive_when_it_returns(central):
    central.send(central.device.record("m1"))
    central.wait_ack(1)
    central.collector.stop()
    central.send(central.device.record("m2"))  # the broker keeps it for central's persistent session
    central.start()
    central.wait_ack(2)
    assert central.count("records") == 2


def test_a_burst_of_records_is_stored_in_order_and_fully_acked(central):
    records = [central.device.record(f"m{i}") for i in range(200)]
    for rec in records:
        central.probe.client.publish(central.topics.attendance(rec.device), rec.to_wire(), qos=1)
    wait_until(lambda: central.acks() and central.acks()[-1].seq == 200, timeout=20, what="ack 200")
    assert central.count("records") == 200 and central.rejections() == []


TRICKY_MEMBERS = ['Nguyễn "Văn" A\\', "tab\there\nnew\x01\x1f\x7f", "😀 \u2028 \ue000 ü", "m" * 64]
TRICKY_DISTANCES = [1e-07, 3.0, None, 0.1 + 0.2, 1e16, 123456789.125, 5e-324, 0.000123, 1e21]


def test_records_with_any_text_or_number_are_verified_and_stored_with_the_kiosks_hash(central):
    from central.ingest import canonical_forms
    from contract import canonical_bytes

    records = [central.device.record(m, distance=d) for m in TRICKY_MEMBERS for d in TRICKY_DISTANCES]
    for rec in records:  # the fast canonical form is byte for byte the contract's
        assert canonical_forms(rec) == (rec.to_wire(), canonical_bytes(rec.body)), rec
    for rec in records:
        central.send(rec)
    central.wait_ack(len(records))
    assert central.rejections() == []
    stored = central.store.rows("SELECT seq, hash, body FROM records ORDER BY seq")
    assert [(r["hash"], r["body"].encode()) for r in stored] == [(rec.hash, rec.to_wire()) for rec in records]


def test_a_record_sent_in_non_canonical_json_is_accepted_and_stored_canonically(central):
    rec = central.device.record("m1")
    data = json.loads(rec.to_wire())
    loose = json.dumps(dict(reversed(list(data.items()))), indent=2, ensure_ascii=True).encode()
    assert loose != rec.to_wire()
    central.probe.publish(central.topics.attendance(central.device.id), loose)
    assert central.wait_ack(1)[-1].hash == rec.hash
    assert central.store.scalar("SELECT body FROM records").encode() == rec.to_wire()
