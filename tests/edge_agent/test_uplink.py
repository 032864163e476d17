"""The uplink against a real Mosquitto, with the test playing central's side of the contract."""

from __future__ import annotations

import functools
import threading
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
import pytest
from nacl.signing import SigningKey

from contract import (
    Ack,
    DeviceTime,
    Proof,
    Status,
    Topics,
    decode_status,
    encode_signed,
    parse_record,
)
from edge_agent.outbox import Outbox
from edge_agent.uplink import Uplink
from tests.conftest import wait_for

PROOF = Proof(card_kind="member_card", face_distance=0.3, face_threshold=0.5)
TIME = DeviceTime(wall="2026-11-25T01:00:00.000Z", synced=True, boot_id="b", monotonic=1.0)


class FakeCentral:
    """Central's side of the contract in a few lines: receive records, publish signed retained acks."""

    def __init__(self, port: int, topics: Topics, ack: bool = True):
        self.key = SigningKey.generate()
        self.topics, self.ack_enabled = topics, ack
        self.received: list[int] = []
        self.statuses: list[Status] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id="fake-central")
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *a: c.subscribe(topics.central_subscriptions())
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg):
        device, kind = self.topics.parse(msg.topic)
        if kind.value == "status":
            self.statuses.append(decode_status(msg.payload))
            return
        record = parse_record(msg.payload)
        with self.lock:
            self.received.append(record.seq)
            if self.ack_enabled:
                ack = Ack(device=device, seq=record.seq, hash=record.hash, at=datetime.now(UTC).isoformat())
                client.publish(self.topics.ack(device), encode_signed(self.key, ack), qos=1, retain=True)

    def stop(self):
        self.client.loop_stop()
        self.client.disconnect()


wait_for = functools.partial(wait_for, timeout=15.0)


@pytest.fixture
def parts(tmp_path, broker):
    key = SigningKey.generate()
    outbox = Outbox(tmp_path / "o.sqlite3", signing_key=key)
    topics = Topics("test/v1")
    central = FakeCentral(broker.port, topics)
    bundles: list[bytes] = []

    def make_uplink(**kw):
        return Uplink(
            outbox=outbox, device_id=outbox.device_id, central_key=central.key.verify_key, host="127.0.0.1",
            port=broker.port, topics=topics, status=lambda: Status(device=outbox.device_id, state="online", queue_depth=outbox.depth()),
            on_bundle=bundles.append, keepalive=5, **kw,
        )

    yield outbox, central, make_uplink
    central.stop()


def test_records_are_sent_in_order_and_deleted_on_ack(parts):
    outbox, central, make_uplink = parts
    for i in range(200):
        outbox.append(meeting="M", member=str(i), proof=PROOF, time_reading=TIME)
    uplink = make_uplink(window=16)
    uplink.start()
    try:
        wait_for(lambda: outbox.depth() == 0, what="outbox drained")
        assert central.received == list(range(1, 201))
        assert outbox.acked_seq() == 200
        wait_for(lambda: any(s.state == "online" for s in central.statuses), what="online status")
    finally:
        uplink.stop()
    wait_for(lambda: central.statuses[-1].state == "offline", what="offline status on clean stop")


def test_records_made_while_broker_is_down_are_sent_after_it_returns(parts, broker):
    outbox, central, make_uplink = parts
    uplink = make_uplink()
    uplink.start()
    try:
        wait_for(lambda: uplink.connected, what="connected")
        broker.stop()
        wait_for(lambda: not uplink.connected, what="disconnect noticed")
        for i in range(20):
            outbox.append(meeting="M", member=str(i), proof=PROOF, time_reading=TIME)
        assert outbox.depth() == 20
        broker.start()
        wait_for(lambda: outbox.depth() == 0, timeout=40, what="drained after broker restart")
        assert sorted(set(central.received)) == list(range(1, 21))
    finally:
        uplink.stop()


def test_forged_ack_does_not_delete_records(parts, broker):
    outbox, central, make_uplink = parts
    central.ack_enabled = False
    rec = outbox.append(meeting="M", member="A", proof=PROOF, time_reading=TIME)
    uplink = make_uplink()
    uplink.start()
    try:
        wait_for(lambda: central.received == [1], what="record received")
        forger = SigningKey.generate()
        fake = Ack(device=outbox.device_id, seq=1, hash=rec.hash, at="now")
        central.client.publish(central.topics.ack(outbox.device_id), encode_signed(forger, fake), qos=1, retain=True)
        wait_for(lambda: uplink.rejected_messages >= 1, what="forged ack rejected")
        assert outbox.depth() == 1
    finally:
        uplink.stop()


def test_the_last_status_central_gets_is_the_newest_the_kiosk_built(parts, broker):
    """Two threads publish statuses (the sender's periodic one, and the one sent at once when the roster arrives).
    A status built before the roster came must not reach central after the one built after it: staff would read
    "no roster from central yet" on a working kiosk until the next periodic status (this failed CI once)."""
    outbox, central, _ = parts
    facts = {"faults": ["no roster from central yet"]}
    entered, release = threading.Event(), threading.Event()
    built_by_other = threading.Event()

    def status() -> Status:
        built = Status(device=outbox.device_id, state="online", faults=list(facts["faults"]))
        if threading.current_thread().name == "stale-status":
            entered.set()
            release.wait(10)  # this thread is preempted between building its status and publishing it
        elif entered.is_set():
            built_by_other.set()
        return built

    uplink = Uplink(outbox=outbox, device_id=outbox.device_id, central_key=central.key.verify_key, host="127.0.0.1",
                    port=broker.port, topics=central.topics, status=status, on_bundle=lambda p: None, keepalive=5,
                    status_interval_s=3600)
    uplink.start()
    try:
        wait_for(lambda: uplink.connected and len(central.statuses) >= 2, what="the statuses sent on connect")
        before = len(central.statuses)
        stale = threading.Thread(target=uplink.publish_status, name="stale-status")
        stale.start()
        assert entered.wait(10)
        facts["faults"] = []  # the roster arrived: the kiosk sends its news at once
        fresh = threading.Thread(target=uplink.publish_status, name="fresh-status")
        fresh.start()
        built_by_other.wait(1.0)  # unserialised, the fresh status is built and sent now; serialised, it waits
        release.set()
        stale.join(10)
        fresh.join(10)
        wait_for(lambda: len(central.statuses) >= before + 2, what="both statuses at central")
        assert central.statuses[-1].faults == [], [s.faults for s in central.statuses]
    finally:
        uplink.stop()
