"""Remote commands on real parts (issue 10): central's API -> Mosquitto -> the kiosk agent -> its signed reply -> central.

Self-test, logs and resend round trips; a forged command and one for another kiosk are refused by the kiosk.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import paho.mqtt.client as mqtt
import pytest
from nacl.signing import SigningKey

from contract import Topics
from contract.commands import encode_command, new_command
from hall import demo_data

from .conftest import wait_for

OBAMA = demo_data.MEMBERS[0]

pytestmark = pytest.mark.e2e


def command(system, kind: str, **args) -> dict:
    """Send a command through central's API and wait for the kiosk's reply to be listed."""
    device = system.agent.identity.device_id
    headers = {"Authorization": f"Bearer {system.token}"}
    sent = httpx.post(f"{system.central_url}/api/devices/{device}/commands", json={"kind": kind, **args}, headers=headers,
                      timeout=10)
    assert sent.status_code == 202, sent.text

    def replied():
        rows = httpx.get(f"{system.central_url}/api/devices/{device}/commands", headers=headers, timeout=10).json()
        return next((r for r in rows if r["id"] == sent.json()["id"] and r["state"] == "replied"), None)

    return wait_for(replied, timeout=30, what=f"the kiosk's reply to {kind}")


def test_a_remote_self_test_returns_the_kiosks_checklist(system):
    row = command(system, "selftest")
    checks = {c["name"]: c for c in row["result"]["checks"]}
    assert checks["broker"]["status"] == "ok" and "connected" in checks["broker"]["detail"]
    assert checks["roster"]["status"] == "ok" and demo_data.HALL in checks["roster"]["detail"]
    assert checks["face worker"]["status"] == "ok" and checks["disk"]["status"] in ("ok", "warn")
    assert {"clock", "camera", "card_reader", "qr_scanner", "outbox", "check-ins"} <= set(checks)
    assert row["ok"] is (not any(c["status"] == "fail" for c in checks.values()))
    assert system.central.store.scalar("SELECT COUNT(*) FROM audit WHERE action = 'device.command.selftest'") == 1


def test_a_forged_command_and_one_for_another_kiosk_are_refused_and_the_log_says_so(system, module_broker):
    agent = system.agent
    device = agent.identity.device_id
    topic = Topics().command(device)
    before = agent.uplink.rejected_messages
    forged = encode_command(SigningKey.generate(), new_command(device, "resend", from_seq=0))  # not central's key
    # central's own key, but addressed to another kiosk and published on this one's topic
    for_other = encode_command(_central_signing_key(system), new_command("d" + "0" * 32, "selftest"))
    attacker = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
    attacker.connect("127.0.0.1", module_broker.port)
    attacker.loop_start()
    try:
        attacker.publish(topic, forged, qos=1).wait_for_publish(5)
        attacker.publish(topic, for_other, qos=1).wait_for_publish(5)
        wait_for(lambda: agent.uplink.rejected_messages >= before + 2, timeout=15, what="two refused commands")
    finally:
        attacker.disconnect()
        attacker.loop_stop()
    reasons = [why for _, why in agent.commands.refused]
    assert any("signature does not verify" in r for r in reasons)
    assert any("is for device d000" in r for r in reasons)
    assert not any(r.kind == "resend" for r in agent.commands.replied)  # neither was run

    lines = command(system, "logs", lines=200)["result"]["lines"]
    assert 0 < len(lines) <= 200 and all(len(line) <= 300 for line in lines)
    assert any("refused command" in line and "signature does not verify" in line for line in lines)
    assert any("is for device d000" in line for line in lines)


def test_resend_makes_central_see_the_kiosks_held_records_again_and_changes_nothing(system):
    agent = system.agent
    device = agent.identity.device_id
    ack_topic = Topics().ack(device)
    store = system.central.store
    # Central's acks are lost on the way (the kiosk stops hearing them), so the kiosk keeps records central has.
    agent.uplink.client.unsubscribe(ack_topic)
    try:
        system.rig.tap(OBAMA.card)
        wait_for(lambda: store.scalar("SELECT COUNT(*) FROM records WHERE device = ?", [device]) == 1, timeout=30,
                 what="the check-in stored at central")
        assert agent.outbox.depth() == 1  # not acknowledged as far as the kiosk knows
        duplicates = system.central.collector.ingest.counts["duplicates"]
        resend = command(system, "resend", from_seq=1)["result"]["resend"]
        assert resend == {"from_seq": 1, "acked_seq": 0, "head_seq": 1, "resent": 1, "first": 1, "last": 1}
        wait_for(lambda: system.central.collector.ingest.counts["duplicates"] > duplicates, timeout=15,
                 what="central receiving the record again")
        assert store.scalar("SELECT COUNT(*) FROM records WHERE device = ?", [device]) == 1
        assert store.scalar("SELECT COUNT(*) FROM attendance WHERE member = ? AND device = ?", [OBAMA.id, device]) == 1
        assert store.rows("SELECT reason FROM rejections WHERE device = ?", [device]) == []
    finally:
        agent.uplink.client.subscribe(ack_topic, 1)
    wait_for(lambda: agent.outbox.depth() == 0, timeout=15, what="the retained ack reaching the kiosk again")


def _central_signing_key(system):
    from central import keys

    return keys.signing_key(system.central.settings.data_dir)


def test_a_replayed_command_runs_once_and_an_expired_one_is_answered_without_running(system, module_broker):
    agent = system.agent
    device = agent.identity.device_id
    key = _central_signing_key(system)
    once = encode_command(key, new_command(device, "selftest"))
    stale = new_command(device, "logs", lines=5, now=datetime.now(UTC) - timedelta(minutes=10), lifetime_s=60)
    replayer = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
    replayer.connect("127.0.0.1", module_broker.port)
    replayer.loop_start()
    try:
        for payload in (once, once, encode_command(key, stale)):
            replayer.publish(Topics().command(device), payload, qos=1).wait_for_publish(5)
        wait_for(lambda: any(r.id == stale.id for r in agent.commands.replied), timeout=15, what="the expired one answered")
    finally:
        replayer.disconnect()
        replayer.loop_stop()
    wait_for(lambda: any("a replay" in why for _, why in agent.commands.refused), what="the replay refused")
    replies = [r for r in agent.commands.replied if r.id in (stale.id, parse_id(once))]
    assert [r.kind for r in replies].count("selftest") == 1
    expired = next(r for r in replies if r.id == stale.id)
    assert expired.ok is False and "expired" in expired.result.error and expired.result.lines is None


def parse_id(payload: bytes) -> str:
    return json.loads(payload)["id"]
