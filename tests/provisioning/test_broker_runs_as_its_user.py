"""The TLS broker's configuration as `hall central broker-config` writes it, started the way production starts
it (as root here: Mosquitto then drops to its own user): it starts, writes its pid file and log, persists
what it holds, and a restart keeps a retained message and a QoS 1 message queued for an offline kiosk."""

from __future__ import annotations

import os
import pwd
import subprocess
import threading

import paho.mqtt.client as mqtt
import pytest

from central.broker_config import write_broker_config
from central.pki import CentralPki
from central.store import Store
from contract import Topics
from tests.conftest import free_port

from . import Rig, close, wait_for

TOPICS = Topics("hall/v1")


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path).start()
    yield r
    r.stop()


def _uid_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Uid:"))


def _persistent_kiosk(rig, kiosk, received: list[bytes]) -> mqtt.Client:
    """The kiosk with a persistent session (as the agent connects), subscribed to its ack and bundle."""
    subscribed = threading.Event()
    c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=kiosk.device, clean_session=False)
    c.tls_set(ca_certs=str(kiosk.tls.ca), certfile=str(kiosk.tls.cert), keyfile=str(kiosk.tls.key))
    c.on_connect = lambda client, *a: client.subscribe([(TOPICS.ack(kiosk.device), 1), (TOPICS.bundle(kiosk.device), 1)])
    c.on_subscribe = lambda *a: subscribed.set()
    c.on_message = lambda client, userdata, msg: received.append(msg.payload)
    c.connect("127.0.0.1", rig.broker.port, keepalive=10)
    c.loop_start()
    assert subscribed.wait(5), "the kiosk could not subscribe"
    return c


def test_generated_config_runs_as_the_brokers_user_and_keeps_messages_across_a_restart(rig):
    broker, files = rig.broker, rig.broker.files
    expected_uid = pwd.getpwnam("mosquitto").pw_uid if os.geteuid() == 0 else os.geteuid()
    assert "user root" not in files.conf.read_text()
    assert _uid_of(broker.proc.pid) == expected_uid, "the broker must run as its own user, not root"
    assert wait_for(lambda: files.pid.is_file() and files.pid.read_text().strip() == str(broker.proc.pid)), "no pid file"
    assert wait_for(lambda: "running" in broker.log.read_text()), "the broker wrote no log"

    kiosk = rig.enrol("kiosk")
    received: list[bytes] = []
    client = _persistent_kiosk(rig, kiosk, received)
    client.disconnect()
    client.loop_stop()
    central = rig.central_client()
    assert central.connected
    central.mqtt.publish(TOPICS.bundle(kiosk.device), b"retained bundle", qos=1, retain=True).wait_for_publish(5)
    central.mqtt.publish(TOPICS.ack(kiosk.device), b"queued ack", qos=1).wait_for_publish(5)
    close(central)

    broker.stop()  # SIGTERM: mosquitto saves what it holds
    assert (files.state / "mosquitto.db").is_file(), "persistence wrote no mosquitto.db"
    broker.start()
    client = _persistent_kiosk(rig, kiosk, received)
    try:
        assert wait_for(lambda: {b"retained bundle", b"queued ack"} <= set(received)), f"after the restart: {received}"
    finally:
        client.disconnect()
        client.loop_stop()


def test_files_the_brokers_user_cannot_reach_are_reported(tmp_path):
    rig_dir = tmp_path / "central"
    store = Store(rig_dir / "central.db")
    try:
        files = write_broker_config(store, CentralPki.for_data_dir(rig_dir), rig_dir / "broker", port=free_port())
    finally:
        store.close()
    if os.geteuid() != 0:
        assert files.warnings == ()  # the broker keeps our user: what we wrote, it can reach
        return
    # pytest's tmp dirs live under a 0700 directory of root's, which the mosquitto user cannot enter
    blocked = [p for p in tmp_path.parents if not os.stat(p).st_mode & 0o001][-1]
    assert len(files.warnings) == 1 and f"cannot enter {blocked}" in files.warnings[0], files.warnings
    run = subprocess.run(["mosquitto", "-c", str(files.conf)], capture_output=True, text=True, timeout=20,
                         env={**os.environ, "PATH": os.environ["PATH"] + ":/usr/sbin"})
    assert run.returncode != 0, "the warning said it would not start"
