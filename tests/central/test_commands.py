"""Remote commands at central (issue 10): sent signed over a real Mosquitto, replies verified by a real collector.

The kiosk here is played by the test with the device's own key, so each wrong reply can be made on purpose;
tests/e2e/test_commands_e2e.py runs the same commands against a real agent.
"""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from nacl.signing import SigningKey

from central import registry
from central.api import create_app
from contract.commands import (
    MAX_REPLY_BYTES,
    CheckItem,
    CommandReply,
    CommandResult,
    parse_command,
    sign_reply,
)
from tests.central import STAFF_TOKEN, Device, Probe, wait_until
from tests.central.test_collector import Central

AUTH = {"Authorization": f"Bearer {STAFF_TOKEN}"}


@pytest.fixture
def central(tmp_path, broker):
    c = Central(tmp_path, broker)
    c.kiosk = Probe(broker.port, [f"{c.settings.topic_prefix}/+/command"])  # sees what a kiosk would receive
    c.http = TestClient(create_app(store=c.store, staff_token=STAFF_TOKEN, collector=c.collector))
    yield c
    c.kiosk.close()
    c.close()


def send(central, kind: str, device: str | None = None, **args) -> dict:
    response = central.http.post(f"/api/devices/{device or central.device.id}/commands", json={"kind": kind, **args},
                                 headers=AUTH)
    assert response.status_code == 202, response.text
    return response.json()


def received(central, device: str | None = None):
    topic = central.topics.command(device or central.device.id)
    return [parse_command(central.public, p) for p in central.kiosk.on(topic)]


def reply(key: SigningKey, command_id: str, *, device: str, kind: str = "selftest", ok: bool = True, result=None) -> bytes:
    return sign_reply(key, CommandReply(id=command_id, device=device, kind=kind, ok=ok, at="2030-01-01T00:00:00Z",
                                        result=result or CommandResult(checks=[CheckItem(name="broker", status="ok")])))


def listed(central, device: str | None = None) -> list[dict]:
    response = central.http.get(f"/api/devices/{device or central.device.id}/commands", headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_command_is_published_signed_for_its_kiosk_and_its_reply_is_stored_and_listed(central):
    sent = send(central, "logs", lines=50)
    [command] = wait_until(lambda: received(central), what="the command on the kiosk's topic")
    assert (command.id, command.device, command.kind, command.args.lines) == (sent["id"], central.device.id, "logs", 50)
    [row] = listed(central)
    assert (row["id"], row["state"], row["issued_by"], row["args"]) == (sent["id"], "waiting", "staff-token", {"lines": 50})
    assert central.store.rows("SELECT action, detail FROM audit WHERE action LIKE 'device.command%'")[0]["action"] == \
        "device.command.logs"

    lines = CommandResult(lines=["2030-01-01 INFO edge_agent.uplink: connected"])
    central.probe.publish(central.topics.command_reply(central.device.id),
                          reply(central.device.key, command.id, device=central.device.id, kind="logs", result=lines))
    row = wait_until(lambda: (r := listed(central)[0])["state"] == "replied" and r, what="the reply listed")
    assert row["ok"] is True and row["result"] == {"lines": ["2030-01-01 INFO edge_agent.uplink: connected"]}
    assert central.rejections() == []


def test_forged_misplaced_unknown_and_oversize_replies_are_refused_and_kept_with_the_reason(central):
    other = Device()
    registry.add_device(central.store, other.public_key, "H1")
    cmd = send(central, "selftest")["id"]
    topic = central.topics.command_reply(central.device.id)
    # signed by a key that is not this kiosk's
    central.probe.publish(topic, _forged(central, cmd))
    # another kiosk's reply, published on this kiosk's topic
    central.probe.publish(topic, reply(other.key, cmd, device=other.id))
    # a reply to a command central never sent this kiosk
    central.probe.publish(topic, reply(central.device.key, "00000000-0000-4000-8000-000000000000", device=central.device.id))
    # a reply for a command of this kiosk, sent by the other kiosk on its own topic
    central.probe.publish(central.topics.command_reply(other.id), reply(other.key, cmd, device=other.id))
    central.probe.publish(topic, b"{" + b" " * MAX_REPLY_BYTES + b"}")
    reasons = wait_until(lambda: len(central.rejections()) >= 5 and [r["reason"] for r in central.rejections()],
                         what="five rejections")
    assert "bad command reply signature: signature does not verify" in reasons[0]
    assert f"reply of device {other.id} published on the topic of {central.device.id}" in reasons[1]
    assert "which central did not send to" in reasons[2]
    assert f"central did not send to {other.id}" in reasons[3]
    assert f"limit {MAX_REPLY_BYTES}" in reasons[4]
    assert listed(central)[0]["state"] == "waiting"  # none of them counts as the answer

    # the right reply is taken; a second, different one is refused
    central.probe.publish(topic, reply(central.device.key, cmd, device=central.device.id))
    wait_until(lambda: listed(central)[0]["state"] == "replied", what="the real reply")
    central.probe.publish(topic, reply(central.device.key, cmd, device=central.device.id, ok=False))
    wait_until(lambda: len(central.rejections()) >= 6, what="the second reply refused")
    assert "a second, different reply" in central.rejections()[5]["reason"]
    assert listed(central)[0]["ok"] is True


def _forged(central, command_id: str) -> bytes:
    """This kiosk's id and a valid-looking signature by another key."""
    stranger = Device()
    body = json.loads(reply(stranger.key, command_id, device=stranger.id))
    body["device"] = central.device.id
    return json.dumps(body).encode()


def test_bad_requests_are_refused_before_anything_is_sent(central):
    device = central.device.id
    for body, code in [({"kind": "logs", "lines": 501}, 422), ({"kind": "logs"}, 400), ({"kind": "reboot"}, 422),
                       ({"kind": "resend", "from_seq": -1}, 422), ({"kind": "selftest", "shell": "rm -rf /"}, 422)]:
        response = central.http.post(f"/api/devices/{device}/commands", json=body, headers=AUTH)
        assert response.status_code == code, (body, response.text)
    assert central.http.post("/api/devices/nobody/commands", json={"kind": "selftest"}, headers=AUTH).status_code == 404
    registry.revoke_device(central.store, device)
    assert central.http.post(f"/api/devices/{device}/commands", json={"kind": "selftest"}, headers=AUTH).status_code == 400
    assert listed(central) == [] and central.kiosk.on(central.topics.command(device)) == []


def test_a_command_needs_the_broker(central):
    central.collector.stop()
    response = central.http.post(f"/api/devices/{central.device.id}/commands", json={"kind": "selftest"}, headers=AUTH)
    assert response.status_code == 503 and "broker" in response.json()["detail"]
    assert listed(central) == []
