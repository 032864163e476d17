"""Helpers shared by central's tests: a simulated device that signs records, an MQTT probe."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from nacl.signing import SigningKey

from contract import GENESIS_HASH, DeviceTime, Proof, RecordBody, SignedRecord, device_id_from_public_key, public_key_text, sign_record

STAFF_TOKEN = "test-staff-token-0123456789"


def wait_until(check: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


class Device:
    """A kiosk's signing side: makes consecutive, chained, signed records."""

    def __init__(self, key: SigningKey | None = None):
        self.key = key or SigningKey.generate()
        self.id = device_id_from_public_key(self.key.verify_key)
        self.public_key = public_key_text(self.key)
        self.seq, self.prev = 0, GENESIS_HASH

    def record(self, member: str = "m1", meeting: str = "mt1", *, distance: float | None = 0.31, advance: bool = True) -> SignedRecord:
        body = RecordBody(
            device=self.id, seq=self.seq + 1, prev=self.prev, meeting=meeting, member=member,
            proof=Proof(card_kind="member_card", face_distance=distance, face_threshold=0.5),
            time=DeviceTime(wall="2030-01-01T01:05:00Z", synced=True, boot_id="b1", monotonic=12.5),
        )
        rec = sign_record(self.key, body)
        if advance:
            self.seq, self.prev = rec.seq, rec.hash
        return rec


class Probe:
    """A plain MQTT client that records what arrives on the topics it subscribes to."""

    def __init__(self, port: int, topics: list[str] | None = None, client_id: str = ""):
        self.messages: list[mqtt.MQTTMessage] = []
        self._cond = threading.Condition()
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        self._topics = topics or []
        self._subscribed = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._subscribed.wait(5) and self._topics:
            raise AssertionError("probe did not get its SUBACK")

    def _on_connect(self, client: mqtt.Client, *_: object) -> None:
        if self._topics:
            client.subscribe([(t, 1) for t in self._topics])
        else:
            self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(msg)
            self._cond.notify_all()

    def on(self, topic: str) -> list[bytes]:
        with self._cond:
            return [bytes(m.payload) for m in self.messages if m.topic == topic]

    def wait(self, topic: str, count: int = 1, timeout: float = 5.0) -> list[bytes]:
        return wait_until(lambda: len(self.on(topic)) >= count and self.on(topic), timeout, f"{count} message(s) on {topic}")

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def settings_for(tmp_path: Path, port: int = 1883, **extra: Any) -> Any:
    from central.settings import CentralSettings

    return CentralSettings(data_dir=tmp_path / "central", mqtt_port=port, staff_token=STAFF_TOKEN, bundle_check_s=0.2, **extra)
