"""Whatever fails, every check-in reaches central exactly once, in order, verifiably.

Each case drives 1,000 check-ins through the real agent's record path (check-in flow →
signed, chained record → SQLite outbox → paho uplink) in its own process, against a real
Mosquitto and a real `hall central run`, breaks something mid-burst, and then checks central's
database: every sequence 1..N once, chain intact, signatures valid, outbox empty.
"""

from __future__ import annotations

import json
import random
import time

import paho.mqtt.client as mqtt
import pytest
from nacl.signing import SigningKey

from contract import Topics, public_key_text

from .harness import wait_for
from .proxy import PartitionProxy

pytestmark = pytest.mark.faults


def start(h, *driver_args):
    h.start_broker()
    h.start_central()
    return h.start_driver(*driver_args)


def seed_of_key_starting_with(prefix: str) -> bytes:
    """The first seed (counting up) whose Ed25519 public key, as text, starts with ``prefix``."""
    return next(seed for seed in (i.to_bytes(32, "big") for i in range(1, 100_000))
                if public_key_text(SigningKey(seed)).startswith(prefix))


@pytest.mark.parametrize("fault_records", [50])
@pytest.mark.parametrize("central_seed", [seed_of_key_starting_with("-")], ids=["key-starting-with-dash"])
def test_kiosk_starts_when_centrals_key_begins_with_a_dash(harness):
    """One central key in 64 starts with "-" (base64url): the kiosk must start and deliver all the same."""
    h = harness
    assert h.central_key.startswith("-")
    start(h)
    h.wait_complete()
    h.check_central()


def test_broker_killed_and_restarted_mid_burst(harness):
    h = harness
    start(h)
    wait_for(lambda: h.progressing() and h.stored() >= 200, what="a burst under way")
    h.kill(h.broker)
    time.sleep(2)
    h.start_broker()
    h.wait_complete()
    h.check_central()


def test_network_partition_longer_than_keepalive(harness):
    h = harness
    h.start_broker()
    h.start_central()
    proxy = PartitionProxy(h.mqtt_port)
    h.kiosk_mqtt_port = proxy.port
    try:
        h.start_driver("--keepalive", "2")
        wait_for(lambda: h.stored() >= 200, what="a burst under way")
        proxy.partition()
        stalled = h.stored()
        time.sleep(6)  # > 1.5 x keepalive: the agent must notice the link is dead
        assert h.stored() <= stalled + 64, "records crossed a partition"
        proxy.heal()
        h.wait_complete()
        h.check_central()
    finally:
        proxy.close()


def test_agent_killed_mid_write_and_restarted(harness):
    h = harness
    start(h, "--pace", "0.002")
    rng = random.Random(20261125)
    for _ in range(3):
        target = h.stored() + rng.randint(50, 200)
        wait_for(lambda target=target: h.progressing() and (h.stored() >= target or h.driver.event("done")), what="progress before the kill")
        h.driver.kill()
        h.start_driver("--pace", "0.002")
    h.wait_complete()
    h.check_central()


def test_central_killed_mid_ingest_and_restarted(harness):
    h = harness
    start(h)
    wait_for(lambda: h.stored() >= 300, what="ingest under way")
    h.kill(h.central)
    time.sleep(1)
    h.start_central()
    h.wait_complete()
    h.check_central()


def test_power_cut_kills_agent_and_broker_together(harness):
    h = harness
    start(h, "--pace", "0.001")
    wait_for(lambda: h.stored() >= 250, what="a burst under way")
    h.driver.kill()
    h.kill(h.broker)
    h.start_broker()
    h.start_driver("--pace", "0.001")
    h.wait_complete()
    h.check_central()


def test_full_outbox_refuses_with_a_reason_and_recovers(harness):
    h = harness
    h.start_broker()
    h.start_central()
    driver = h.start_driver("--outbox-max-mb", "0.25", "--pace", "0.01")
    wait_for(lambda: driver.event("ready"), what="the kiosk to receive its roster")
    h.central.stop()  # central goes away: nothing is acknowledged, the 0.25 MB outbox fills up
    full = wait_for(lambda: driver.event("disk_full"), what="the outbox to fill")
    assert full["text"]["vi"].startswith("Bộ nhớ đầy")
    assert any("full" in f for f in full["faults"])
    queued = h.outbox_depth()
    assert 0 < queued < h.members
    h.start_central()  # space returns as central acknowledges
    h.wait_complete(timeout=180)
    h.check_central()
    done = wait_for(lambda: driver.event("done"), what="the driver to finish")
    assert done["outcomes"]["disk_full"] >= 1 and done["outcomes"]["accepted"] == h.members


def test_clock_jumps_are_recorded_and_flagged(harness):
    h = harness
    start(h, "--clock-jumps")
    h.wait_complete()
    h.check_central()
    with h.central_db() as c:
        bodies = [json.loads(r[0]) for r in c.execute("SELECT body FROM records ORDER BY seq")]
        flags = [r[0] for r in c.execute("SELECT clock_flag FROM records ORDER BY seq")]
    walls = [b["time"]["wall"] for b in bodies]
    third = h.members // 3
    assert walls[third] < walls[third - 1], "the device clock went back an hour"
    assert not bodies[third]["time"]["synced"]
    # records made with the clock an hour back (unsynced) or a day ahead are flagged, not trusted
    assert flags[third] and "jump" in flags[third]
    assert all(flags[i] for i in range(third, h.members)), "central must flag records made with a wrong clock"
    assert any("ahead" in (f or "") for f in flags[2 * third:])


def test_duplicate_and_replayed_messages_are_no_ops(harness):
    h = harness
    start(h)
    h.wait_complete()
    topics = Topics()
    with h.central_db() as c:
        old = [r[0] for r in c.execute("SELECT body FROM records WHERE device = ? AND seq IN (1, 2, 500, 1000)", [h.device])]
    before = h.collector_counts()

    def duplicates() -> int:
        return h.collector_counts().get("duplicates", 0) - before.get("duplicates", 0)

    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id="replayer")
    client.connect("127.0.0.1", h.mqtt_port)
    client.loop_start()
    try:
        for body in old + old:
            client.publish(topics.attendance(h.device), body.encode(), qos=1).wait_for_publish(5)
        # evidence, not a sleep: central has processed every replay (and counted it as a duplicate)
        wait_for(lambda: duplicates() >= 8, what="central to process the 8 replays")
        client.publish(topics.attendance(h.device), old[0].encode(), qos=1).wait_for_publish(5)  # an old one, later
        wait_for(lambda: duplicates() >= 9, what="central to process the late replay")
    finally:
        client.loop_stop()
        client.disconnect()
    after = h.collector_counts()
    assert after.get("rejected", 0) == before.get("rejected", 0) and after.get("forks", 0) == before.get("forks", 0)
    h.check_central()
