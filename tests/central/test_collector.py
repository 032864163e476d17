"""The collector against a real Mosquitto and a real SQLite file."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from central import broker_config, keys, registry
from central.api import create_app
from central.collector import Collector
from central.store import open_store
from contract import (
    GENESIS_HASH,
    Ack,
    DeviceTime,
    Proof,
    RecordBody,
    Status,
    Topics,
    decode_signed,
    encode_signed,
    sign_record,
    verify_key_from_text,
)
from contract.topics import Kind
from edge_agent.outbox import Outbox
from edge_agent.uplink import Uplink
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
        # What the tests' records name: members m0..m199 of cell C1, meeting mt1 of C1 in hall H1, now.
        now = datetime.now(UTC)
        with self.store.transaction():
            for i in range(200):
                registry.add_member(self.store, f"m{i}", f"Member {i}", "C1")
            registry.add_meeting(self.store, "mt1", cell="C1", hall="H1", title="Họp", starts=now - timedelta(hours=1),
                                 ends=now + timedelta(hours=2))
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
    # literal topics: comparing with the function the collector was built from could not fail
    assert central.collector.subscriptions == [("hall/v1/+/attendance", 1), ("hall/v1/+/status", 1), ("hall/v1/+/attempt", 1),
                                               ("hall/v1/+/command_reply", 1)]
    acl = broker_config.acl_text(central.store)
    central_rights = acl.split("\n\n")[0].splitlines()
    assert {line.split()[2] for line in central_rights if line.startswith("topic read ")} == \
        {"hall/v1/+/attendance", "hall/v1/+/status", "hall/v1/+/attempt", "hall/v1/+/command_reply"}
    assert {line.split()[2] for line in central_rights if line.startswith("topic write ")} >= {"hall/v1/+/command"}
    [kiosk_rights] = [block for block in acl.split("\n\n") if block.startswith(f"user {central.device.id}")]
    assert sorted(line.split()[2] for line in kiosk_rights.splitlines() if line.startswith("topic write ")) == \
        [f"hall/v1/{central.device.id}/{kind}" for kind in ("attempt", "attendance", "command_reply", "status")]


def test_a_kiosk_subscribes_to_exactly_its_own_ack_and_bundle_and_receives_only_those(central, tmp_path):
    """edge_agent.uplink against the real broker: what it subscribes to, what reaches it, and the ACL's read rights."""
    kiosk, other = central.device, Device()
    registry.add_device(central.store, other.public_key, "H1")
    outbox = Outbox(tmp_path / "kiosk" / "outbox.db", signing_key=kiosk.key)
    bundles: list[bytes] = []
    uplink = Uplink(outbox=outbox, device_id=kiosk.id, central_key=central.public, host="127.0.0.1",
                    port=central.settings.mqtt_port, topics=Topics(), status=lambda: Status(device=kiosk.id, state="online"),
                    on_bundle=bundles.append)
    subscribed: list = []
    arrived: list[str] = []
    real_subscribe, real_on_message = uplink.client.subscribe, uplink.client.on_message

    def subscribe(topics, *a, **kw):
        subscribed.append(topics)
        return real_subscribe(topics, *a, **kw)

    def on_message(client, userdata, msg):
        arrived.append(msg.topic)
        real_on_message(client, userdata, msg)

    uplink.client.subscribe, uplink.client.on_message = subscribe, on_message
    uplink.start()
    try:
        wait_until(lambda: uplink.connected, what="kiosk uplink connected")
        wait_until(lambda: subscribed, what="kiosk subscription")
        assert subscribed == [[(f"hall/v1/{kiosk.id}/ack", 1), (f"hall/v1/{kiosk.id}/bundle", 1), (f"hall/v1/{kiosk.id}/command", 1)]]
        acl = broker_config.acl_text(central.store)
        [kiosk_rights] = [block for block in acl.split("\n\n") if block.startswith(f"user {kiosk.id}")]
        assert sorted(line.split()[2] for line in kiosk_rights.splitlines() if line.startswith("topic read ")) == \
            [f"hall/v1/{kiosk.id}/ack", f"hall/v1/{kiosk.id}/bundle", f"hall/v1/{kiosk.id}/command"]

        # central publishes for the other kiosk first, then for this one: only this one's arrive
        other_ack = encode_signed(central.key, Ack(device=other.id, seq=0, hash=GENESIS_HASH, at="2030-01-01T00:00:00Z"))
        central.probe.publish(f"hall/v1/{other.id}/ack", other_ack)
        central.probe.publish(f"hall/v1/{other.id}/bundle", b"bundle for the other kiosk")
        own_ack = encode_signed(central.key, Ack(device=kiosk.id, seq=0, hash=GENESIS_HASH, at="2030-01-01T00:00:00Z"))
        central.probe.publish(f"hall/v1/{kiosk.id}/bundle", b"bundle for this kiosk")
        central.probe.publish(f"hall/v1/{kiosk.id}/ack", own_ack)
        wait_until(lambda: uplink.last_ack_seq == 0 and bundles, what="this kiosk's ack and bundle")
        # the retained ack central itself publishes may also arrive; nothing of the other kiosk may
        assert all(t.startswith(f"hall/v1/{kiosk.id}/") for t in arrived), arrived
        assert b"bundle for this kiosk" in bundles and b"bundle for the other kiosk" not in bundles
    finally:
        uplink.stop()
        outbox.close()


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
    # none is refused; names the registry does not hold are stored but not counted (alarms, not rejections)
    assert [r for r in central.rejections() if not r["alarm"]] == []
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


def _signed(device: Device, member: str, meeting: str, *, wall: datetime | None = None, monotonic: float = 12.5):
    """A record of ``device`` whose (synchronised) clock says ``wall`` (default: now)."""
    body = RecordBody(
        device=device.id, seq=device.seq + 1, prev=device.prev, meeting=meeting, member=member,
        proof=Proof(card_kind="member_card", face_distance=0.3, face_threshold=0.5),
        time=DeviceTime(wall=(wall or datetime.now(UTC)).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                        synced=True, boot_id="b1", monotonic=monotonic),
    )
    rec = sign_record(device.key, body)
    device.seq, device.prev = rec.seq, rec.hash
    return rec


def test_records_central_cannot_count_are_stored_and_acked_raise_alarms_and_do_not_pre_empt_a_real_check_in(central):
    now = datetime.now(UTC)
    registry.add_member(central.store, "x1", "Member of another cell", "C2")
    registry.add_meeting(central.store, "mt-h2", cell="C1", hall="H2", title="Elsewhere", starts=now - timedelta(hours=1),
                         ends=now + timedelta(hours=1))
    d = central.device
    forged = [
        _signed(d, "x1", "mt1"),  # a member of another cell
        _signed(d, "ghost", "mt1"),  # nobody central knows
        _signed(d, "m1", "no-such-meeting"),
        _signed(d, "m1", "mt-h2"),  # a meeting held in another hall
        _signed(d, "m1", "mt1", wall=now - timedelta(hours=2)),  # before check-in opens (start − 30 min)
    ]
    real = _signed(d, "m1", "mt1")
    for rec in [*forged, real]:
        central.send(rec)
    assert central.wait_ack(6)[-1].hash == real.hash  # the chain stays whole and acks go on
    assert central.count("records") == 6 and central.count("pending") == 0
    # only the real check-in counts, though an invalid record for m1 at mt1 came first
    assert central.store.rows("SELECT meeting, member, seq FROM attendance") == [{"meeting": "mt1", "member": "m1", "seq": 6}]

    api = TestClient(create_app(store=central.store, staff_token=STAFF_TOKEN))
    auth = {"Authorization": f"Bearer {STAFF_TOKEN}"}
    alarms = api.get("/api/alarms", headers=auth).json()
    reasons = [a["reason"] for a in reversed(alarms)]
    assert len(reasons) == 5 and all(a["device"] == d.id for a in alarms)
    assert reasons[0] == "record 1 stored but not counted as attendance: member x1 belongs to cell C2, meeting mt1 is of cell C1"
    assert reasons[1].endswith("member ghost is not in the registry")
    assert reasons[2].endswith("meeting no-such-meeting does not exist")
    assert reasons[3].endswith("meeting mt-h2 is held in hall H2, the kiosk stands in hall H1")
    assert "outside meeting mt1" in reasons[4]
    assert api.get("/api/me", headers=auth).json()["alarms"] == 5
    shown = api.get("/api/meetings/mt1/attendance", headers=auth).json()
    assert [p["member_id"] for p in shown["present"]] == ["m1"]
    assert [(n["member"], n["seq"]) for n in shown["not_counted"]] == [("x1", 1), ("ghost", 2), ("m1", 5)]
    central.send(forged[0])  # a replay of an uncounted record: a duplicate, no second alarm
    central.wait_ack(6, count=2)
    assert len(api.get("/api/alarms", headers=auth).json()) == 5


def test_an_oversize_status_is_refused_kept_in_bounded_space_and_the_last_good_one_stays(central):
    status_topic = central.topics.status(central.device.id)
    good = {"v": 1, "device": central.device.id, "state": "online", "queue_depth": 1}
    central.probe.publish(status_topic, json.dumps(good).encode())
    wait_until(lambda: central.count("device_status"), what="status stored")
    huge = json.dumps({**good, "faults": ["x" * 1000] * 1000}).encode()  # ~1 MB
    central.probe.publish(status_topic, huge)
    [rej] = wait_until(central.rejections, what="rejection")
    assert rej["device"] == central.device.id and rej["reason"].startswith(f"bad status: status is {len(huge)} bytes, limit 8192")
    assert len(rej["payload"]) <= 8192
    assert json.loads(central.store.scalar("SELECT status FROM device_status"))["queue_depth"] == 1


def test_a_record_central_fails_on_is_an_alarm_with_its_device_and_is_stored_once_central_can(central):
    # A real failure inside central's transaction (a trigger stands in for a bug), on record 2 only.
    central.store.db.execute("CREATE TRIGGER boom BEFORE INSERT ON records WHEN NEW.member = 'm2' "
                             "BEGIN SELECT RAISE(ABORT, 'simulated fault'); END")
    r1, r2, r3 = central.device.record("m1"), central.device.record("m2"), central.device.record("m3")
    for rec in (r1, r2, r3):
        central.send(rec)
    central.wait_ack(1)
    wait_until(lambda: central.count("pending") == 1 and central.rejections(), what="record 3 held behind the failed record 2")
    central.send(r2)  # the kiosk resends (no ack progress): still failing, still one alarm
    marker = {"v": 1, "device": central.device.id, "state": "online"}  # handled after the resend: evidence it was handled
    central.probe.publish(central.topics.status(central.device.id), json.dumps(marker).encode())
    wait_until(lambda: central.count("device_status"), what="the resend handled")
    assert central.acks()[-1].seq == 1 and central.count("records") == 1
    [alarm] = central.rejections()
    assert alarm["alarm"] == 1 and alarm["device"] == central.device.id
    assert alarm["reason"].startswith("internal error: IntegrityError: simulated fault")
    central.store.db.execute("DROP TRIGGER boom")  # the fault is fixed (a new release, say)
    central.send(r2)  # the next resend is stored, and what waited behind it drains
    assert central.wait_ack(3)[-1].hash == r3.hash
    assert [r["member"] for r in central.store.rows("SELECT member FROM attendance ORDER BY seq")] == ["m1", "m2", "m3"]
