"""The TLS broker from broker_config: each kiosk only on its own topics; a revoked kiosk is shut out after a reload."""

from __future__ import annotations

import time

import pytest
from click.testing import CliRunner

from contract import Topics
from hall.cmd_central import device_revoke

from . import Rig, close, mqtt_client, wait_for

TOPICS = Topics("hall/v1")


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    r = Rig(tmp_path_factory.mktemp("rig")).start()
    yield r
    r.stop()


def test_a_kiosk_cannot_publish_or_read_under_another_kiosks_id(rig):
    a, b = rig.enrol("a"), rig.enrol("b")
    central = rig.central_client(subscribe=["hall/v1/+/attendance", "hall/v1/+/status", "hall/v1/+/attempt",
                                            "hall/v1/+/command_reply"])
    reader_a = rig.device_client(a, subscribe=[TOPICS.bundle(b.device), TOPICS.ack(b.device), TOPICS.command(b.device)])
    dev_b = rig.device_client(b, subscribe=[TOPICS.bundle(b.device)])
    forger = rig.device_client(a)
    clients = [central, reader_a, dev_b, forger]
    try:
        assert all(c.connected for c in clients)
        forger.mqtt.publish(TOPICS.attendance(b.device), b"forged by A", qos=1)
        forger.mqtt.publish(TOPICS.status(b.device), b"forged status", qos=1)
        forger.mqtt.publish(TOPICS.attempt(b.device), b"forged attempt", qos=1)
        forger.mqtt.publish(TOPICS.command_reply(b.device), b"forged reply", qos=1)
        forger.mqtt.publish(TOPICS.command(a.device), b"A commands itself", qos=1)  # only central may command
        # Mosquitto 2.0 drops the forged messages (and here also the forger's connection); A's own
        # topic still works from a new connection.
        own = rig.device_client(a)
        clients.append(own)
        own.mqtt.publish(TOPICS.attendance(a.device), b"A's own record", qos=1).wait_for_publish(3)
        own.mqtt.publish(TOPICS.attempt(a.device), b"A's own attempt", qos=1).wait_for_publish(3)
        own.mqtt.publish(TOPICS.command_reply(a.device), b"A's own reply", qos=1).wait_for_publish(3)
        central.mqtt.publish(TOPICS.command(b.device), b"command for B", qos=1).wait_for_publish(3)
        central.mqtt.publish(TOPICS.bundle(b.device), b"B's bundle", qos=1, retain=True).wait_for_publish(3)
        assert wait_for(lambda: (TOPICS.attendance(a.device), b"A's own record") in central.received)
        assert wait_for(lambda: (TOPICS.bundle(b.device), b"B's bundle") in dev_b.received)
        assert wait_for(lambda: (TOPICS.attempt(a.device), b"A's own attempt") in central.received)
        assert wait_for(lambda: (TOPICS.command_reply(a.device), b"A's own reply") in central.received)
        time.sleep(0.3)
        assert all(payload not in (b"forged by A", b"forged status", b"forged attempt", b"forged reply")
                   for _, payload in central.received)
        assert reader_a.received == []  # A may not read B's bundle either
    finally:
        for c in clients:
            close(c)


def test_a_revoked_kiosk_cannot_connect_after_revocation_and_reload(rig, monkeypatch):
    gone, kept = rig.enrol("gone"), rig.enrol("kept")
    before = rig.device_client(gone)
    assert before.connected
    central = rig.central_client(subscribe=["hall/v1/+/attendance"])
    monkeypatch.setenv("HALL_CENTRAL_DATA_DIR", str(rig.data_dir))
    result = CliRunner().invoke(device_revoke, [gone.device, "--broker-dir", str(rig.broker.files.dir)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"revoked {gone.device}" in result.output and "told to reload" in result.output
    try:
        # The broker reloads from its main loop: give it a moment, then the handshake fails.
        assert wait_for(lambda: _refused(rig, gone), timeout=5, step=0.2)
        ok = rig.device_client(kept)
        assert ok.connected, "revoking one kiosk must not shut out the others"
        close(ok)
        # The revoked kiosk's old connection may linger, but the ACL no longer lets it publish.
        before.mqtt.publish(TOPICS.attendance(gone.device), b"after revocation", qos=1)
        marker = rig.device_client(kept)
        marker.mqtt.publish(TOPICS.attendance(kept.device), b"marker", qos=1).wait_for_publish(3)
        assert wait_for(lambda: (TOPICS.attendance(kept.device), b"marker") in central.received)
        assert all(p != b"after revocation" for _, p in central.received)
        close(marker)
    finally:
        close(before)
        close(central)
    assert gone.device not in rig.broker.files.acl.read_text() and kept.device in rig.broker.files.acl.read_text()


def _refused(rig, result) -> bool:
    c = mqtt_client(rig.broker.port, result.tls.ca, result.tls.cert, result.tls.key, timeout=1.0)
    close(c)
    return not c.connected
