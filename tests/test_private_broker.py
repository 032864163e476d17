"""The private broker the demo and the tests start (hall.processes.mosquitto_config), started by whoever runs
them, root included: it writes its log, persists to mosquitto.db, and a restart keeps a retained message and
a QoS 1 message queued for an offline persistent session."""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt

from tests.conftest import wait_for


def _subscriber(port: int, topics: list[str], received: list[bytes]) -> mqtt.Client:
    subscribed = threading.Event()
    c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id="kiosk-like", clean_session=False)
    c.on_connect = lambda client, *a: client.subscribe([(t, 1) for t in topics])
    c.on_subscribe = lambda *a: subscribed.set()
    c.on_message = lambda client, userdata, msg: received.append(msg.payload)
    c.connect("127.0.0.1", port)
    c.loop_start()
    assert subscribed.wait(5), "could not subscribe"
    return c


def _stop(c: mqtt.Client) -> None:
    c.disconnect()
    c.loop_stop()


def test_private_broker_writes_its_log_and_keeps_messages_across_a_restart(broker):
    assert wait_for(lambda: broker.log.is_file() and "running" in broker.log.read_text()), "the broker wrote no log"
    received: list[bytes] = []
    _stop(_subscriber(broker.port, ["hall/test/queued", "hall/test/retained"], received))
    publisher = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id="central-like")
    publisher.connect("127.0.0.1", broker.port)
    publisher.loop_start()
    publisher.publish("hall/test/retained", b"retained", qos=1, retain=True).wait_for_publish(5)
    publisher.publish("hall/test/queued", b"queued", qos=1).wait_for_publish(5)
    _stop(publisher)

    broker.stop()  # SIGTERM: mosquitto saves what it holds
    assert (broker.workdir / "mosquitto.db").is_file(), "persistence wrote no mosquitto.db"
    broker.start()
    client = _subscriber(broker.port, ["hall/test/queued", "hall/test/retained"], received)
    try:
        assert wait_for(lambda: {b"retained", b"queued"} <= set(received)), f"after the restart: {received}"
    finally:
        _stop(client)
