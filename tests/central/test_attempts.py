"""Refused attempts from kiosks at central (issue 10), through a real Mosquitto into a real collector and store."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from nacl.signing import SigningKey

from central import registry
from central.api import create_app
from contract import AttemptBody, DeviceTime, Status, Topics, sign_attempt
from contract.attempts import MAX_ATTEMPT_BYTES
from edge_agent.attempts import AttemptQueue
from edge_agent.health_probe import HealthProbe
from edge_agent.outbox import Outbox
from edge_agent.uplink import Uplink
from tests.central import STAFF_TOKEN, wait_until
from tests.central.test_collector import Central
from tests.conftest import Broker

NOW = DeviceTime(wall="2030-01-01T01:05:00Z", synced=False, boot_id="b1", monotonic=12.5)


@pytest.fixture
def central(tmp_path, broker):
    c = Central(tmp_path, broker)
    yield c
    c.close()


def attempt(key: SigningKey, seq: int, outcome: str = "face_mismatch", **fields) -> bytes:
    from contract import device_id_from_public_key

    body = AttemptBody(device=device_id_from_public_key(key.verify_key), seq=seq, outcome=outcome, time=NOW, **fields)
    return sign_attempt(key, body).to_wire()


def api(central, path):
    client = TestClient(create_app(store=central.store, staff_token=STAFF_TOKEN))
    response = client.get(path, headers={"Authorization": f"Bearer {STAFF_TOKEN}"})
    assert response.status_code == 200, response.text
    return response.json()


def note(queue: AttemptQueue, outcome: str, *, member=None, meeting=None, kind="member_card", value="04AA", distance=None):
    queue.note(SimpleNamespace(outcome=outcome, member=member, meeting=meeting, distance=distance, failed=None),
               SimpleNamespace(kind=kind, value=value), NOW)


def kiosk_uplink(central, tmp_path, queue: AttemptQueue, port: int | None = None, status=None) -> tuple[Uplink, Outbox]:
    device = central.device
    outbox = Outbox(tmp_path / "kiosk" / "outbox.sqlite3", signing_key=device.key)
    uplink = Uplink(outbox=outbox, device_id=device.id, central_key=central.public, host="127.0.0.1",
                    port=port or central.settings.mqtt_port, topics=Topics(),
                    status=status or (lambda: Status(device=device.id, state="online")), on_bundle=lambda _: None,
                    attempts=queue)
    return uplink, outbox


def test_refused_attempts_from_a_kiosk_are_stored_once_and_counted_beside_accepted_check_ins(central, tmp_path):
    queue = AttemptQueue(tmp_path / "kiosk" / "attempts.sqlite3", signing_key=central.device.key)
    uplink, outbox = kiosk_uplink(central, tmp_path, queue)
    try:
        note(queue, "face_mismatch", member="m1", meeting="mt1", distance=0.71)
        note(queue, "unknown_card", value="04FFFFFFFFFF01")
        note(queue, "accepted", member="m2", meeting="mt1")  # not a refusal: never queued
        assert queue.flush() and queue.depth() == 2
        uplink.start()
        wait_until(lambda: central.count("attempts") == 2, timeout=15, what="two attempts at central")
        wait_until(lambda: queue.depth() == 0, what="the kiosk forgetting attempts the broker acknowledged")
        central.send(central.device.record("m2", "mt1"))  # an accepted check-in, as a record
        central.wait_ack(1)

        rows = {r["outcome"]: r for r in central.store.rows("SELECT * FROM attempts")}
        assert rows["face_mismatch"]["member"] == "m1" and rows["face_mismatch"]["face_distance"] == 0.71
        assert rows["unknown_card"]["member"] is None and len(rows["unknown_card"]["card_ref"]) == 16
        assert "04FFFFFFFFFF01" not in rows["unknown_card"]["body"]

        # a second copy (a resend after a lost PUBACK) changes nothing
        central.probe.publish(central.topics.attempt(central.device.id), rows["face_mismatch"]["body"].encode())
        wait_until(lambda: central.collector.ingest.counts["attempts"] >= 2, what="ingest")

        mix = api(central, f"/api/devices/{central.device.id}/outcomes?days=1")
        assert mix["totals"] == {"face_mismatch": 1, "unknown_card": 1, "accepted": 1}
        assert api(central, "/api/halls/H1/outcomes?days=1")["totals"] == mix["totals"]
        assert api(central, "/api/halls/nowhere/outcomes?days=7")["totals"] == {}
        assert central.count("attempts") == 2 and central.rejections() == []
    finally:
        uplink.stop()
        outbox.close()
        queue.close()


def test_an_attempt_made_while_the_broker_is_down_arrives_after_it_returns(central, broker: Broker, tmp_path):
    # the broker keeps central's persistent session across its restart (persistence on, as deployed)
    queue = AttemptQueue(tmp_path / "kiosk" / "attempts.sqlite3", signing_key=central.device.key)
    uplink, outbox = kiosk_uplink(central, tmp_path, queue)
    try:
        uplink.start()
        wait_until(lambda: uplink.connected, what="kiosk connected")
        broker.stop()
        wait_until(lambda: not uplink.connected, what="kiosk sees the broker gone")
        note(queue, "not_live", member="m3", meeting="mt1")
        assert queue.flush() and queue.depth() == 1
        broker.start()
        wait_until(lambda: central.count("attempts") == 1, timeout=60, what="the attempt at central after the broker returned")
        assert central.store.row("SELECT outcome, member FROM attempts") == {"outcome": "not_live", "member": "m3"}
        wait_until(lambda: queue.depth() == 0, what="the kiosk's queue emptied")
    finally:
        uplink.stop()
        outbox.close()
        queue.close()


def test_a_forged_an_oversize_and_a_misplaced_attempt_are_refused_and_kept_with_the_reason(central):
    device = central.device
    topic = central.topics.attempt(device.id)
    thief = SigningKey.generate()
    forged = json.loads(attempt(thief, 1))
    forged["device"] = device.id  # claims our kiosk, signed with another key
    central.probe.publish(topic, json.dumps(forged).encode())
    oversize = json.loads(attempt(device.key, 2))
    oversize["liveness"] = "x" * MAX_ATTEMPT_BYTES
    central.probe.publish(topic, json.dumps(oversize).encode())
    registry.add_device(central.store, _public(thief), "H1")
    central.probe.publish(central.topics.attempt(_id(thief)), attempt(device.key, 3))  # ours, on another kiosk's topic
    central.probe.publish(topic, attempt(device.key, 4, outcome="unknown_card"))
    central.probe.publish(topic, attempt(device.key, 4, outcome="no_face"))  # a second, different attempt 4
    wait_until(lambda: len(central.rejections()) == 4, what="four rejections")
    reasons = [r["reason"] for r in central.rejections()]
    assert reasons[0] == "bad attempt signature: signature does not verify"
    assert reasons[1].startswith("bad attempt: attempt is ") and f"limit {MAX_ATTEMPT_BYTES}" in reasons[1]
    assert reasons[2] == f"attempt of device {device.id} published on the topic of {_id(thief)}"
    assert reasons[3].startswith("attempt 4 differs from the stored one")
    assert json.loads(central.rejections()[0]["payload"])["device"] == device.id  # kept as received
    assert central.store.rows("SELECT seq, outcome FROM attempts") == [{"seq": 4, "outcome": "unknown_card"}]


def _public(key: SigningKey) -> str:
    from contract import public_key_text

    return public_key_text(key)


def _id(key: SigningKey) -> str:
    from contract import device_id_from_public_key

    return device_id_from_public_key(key.verify_key)


def test_a_status_from_the_health_probe_carries_the_new_fields_to_the_device_api(central, tmp_path):
    (tmp_path / "sys").mkdir()
    (tmp_path / "sys" / "get_throttled").write_text("50005\n")
    (tmp_path / "sys" / "bootstatus").write_text("32\n")
    (tmp_path / "sys" / "boot_id").write_text("boot-1\n")
    probe = HealthProbe(tmp_path / "kiosk", throttled_path=tmp_path / "sys" / "get_throttled",
                        bootstatus_path=tmp_path / "sys" / "bootstatus", boot_id_path=tmp_path / "sys" / "boot_id",
                        vcgencmd=None)
    queue = AttemptQueue(tmp_path / "kiosk" / "attempts.sqlite3", signing_key=central.device.key)
    def status():
        return Status(device=central.device.id, state="online", **probe.snapshot(), camera_fps=14.9,
                      attempts_queued=queue.depth(), attempts_dropped=queue.dropped())

    uplink, outbox = kiosk_uplink(central, tmp_path, queue, status=status)
    try:
        uplink.start()
        [row] = wait_until(lambda: [d for d in api(central, "/api/devices") if d["health"]["throttled"] is not None],
                           timeout=10, what="the status at central")
        health = row["health"]
        assert health["throttled"] == 0x50005
        assert health["throttled_words"] == ["under-voltage now", "throttled now", "under-voltage has occurred",
                                             "throttled has occurred"]
        assert health["last_reboot"] == "watchdog" and health["boot_count"] == 1
        assert health["memory_total_bytes"] > health["memory_used_bytes"] > 0
        assert health["camera_fps"] == 14.9 and health["attempts_queued"] == 0 and health["attempts_dropped"] == 0
        assert health["software"].startswith("0.1.0")
    finally:
        uplink.stop()
        outbox.close()
        queue.close()
