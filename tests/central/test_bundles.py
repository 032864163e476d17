"""Bundles: signed, retained, per device, roster and templates sealed to that device only."""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from nacl.signing import SigningKey

from central import keys, registry
from central.bundles import build_bundle
from central.collector import Collector
from central.errors import RegistryError
from central.store import open_store
from contract import Bundle, Topics, decode_signed, open_members, open_templates, verify_key_from_text
from contract.errors import ContractError
from tests.central import Device, Probe, settings_for, wait_until


def _iso(hours: float) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).isoformat()


def _template(seed: int) -> list[float]:
    rng = random.Random(seed)
    return [rng.uniform(-0.3, 0.3) for _ in range(128)]


@pytest.fixture
def world(tmp_path):
    settings = settings_for(tmp_path)
    store = open_store(settings.data_dir)
    box = keys.template_box(settings.data_dir)
    registry.add_member(store, "m1", "Nguyễn Văn A", "C1", cards=["04:a1:b2:c3"], cccd="001099012345", templates=[_template(1), _template(2)], box=box)
    registry.add_member(store, "m2", "Trần Thị B", "C1", templates=[_template(3)], box=box)
    registry.add_member(store, "m3", "Lê Văn C", "C2", templates=[_template(4)], box=box)  # C2 meets elsewhere
    registry.add_member(store, "m4", "Phạm D", "C3", templates=[_template(5)], box=box)  # C3 met in H1, in the past
    registry.add_meeting(store, "mt1", cell="C1", hall="H1", title="Họp chi bộ", starts=_iso(1), ends=_iso(3))
    registry.add_meeting(store, "mt2", cell="C2", hall="H2", title="Elsewhere", starts=_iso(1), ends=_iso(3))
    registry.add_meeting(store, "mt0", cell="C3", hall="H1", title="Over", starts=_iso(-3), ends=_iso(-1))
    device = Device()
    registry.add_device(store, device.public_key, "H1")
    yield settings, store, box, device
    store.close()


def test_bundle_holds_the_halls_future_meetings_their_cells_sealed_members_and_sealed_templates(world):
    settings, store, box, device = world
    key = keys.signing_key(settings.data_dir)
    bundle = decode_signed(verify_key_from_text(keys.central_public_key(settings)), build_bundle(store, device.id, key=key, box=box), Bundle)
    assert (bundle.device, bundle.hall) == (device.id, "H1")
    assert [m.id for m in bundle.meetings] == ["mt1"]
    members = open_members(device.key, bundle.members_sealed)
    assert [(m.id, m.name, m.cards, m.cccd) for m in members] == [
        ("m1", "Nguyễn Văn A", ["04A1B2C3"], "001099012345"), ("m2", "Trần Thị B", [], None)]
    templates = open_templates(device.key, bundle.templates_sealed)
    assert templates == {"m1": [_template(1), _template(2)], "m2": [_template(3)]}
    with pytest.raises(ContractError):
        open_templates(SigningKey.generate(), bundle.templates_sealed)  # another kiosk cannot read them
    with pytest.raises(ContractError):
        open_members(SigningKey.generate(), bundle.members_sealed)


def test_every_registry_change_bumps_the_version(world):
    settings, store, box, device = world
    before = store.bundle_version()
    registry.add_meeting(store, "mt3", cell="C2", hall="H1", title="Later", starts=_iso(5), ends=_iso(6))
    assert store.bundle_version() > before
    key = keys.signing_key(settings.data_dir)
    bundle = decode_signed(key.verify_key, build_bundle(store, device.id, key=key, box=box), Bundle)
    assert bundle.version == store.bundle_version()
    assert {m.id for m in open_members(device.key, bundle.members_sealed)} == {"m1", "m2", "m3"}


def test_revoked_device_gets_no_bundle(world):
    settings, store, box, device = world
    registry.revoke_device(store, device.id)
    with pytest.raises(RegistryError, match="revoked"):
        build_bundle(store, device.id, key=keys.signing_key(settings.data_dir), box=box)


def test_collector_publishes_retained_bundles_and_republishes_after_a_change(world, broker):
    settings, store, box, device = world
    settings = settings.model_copy(update={"mqtt_port": broker.port})
    collector = Collector(settings, store, key=keys.signing_key(settings.data_dir), box=box)
    collector.start()
    topic = Topics(settings.topic_prefix).bundle(device.id)
    central_key = verify_key_from_text(keys.central_public_key(settings))
    try:
        wait_until(lambda: collector.published_bundle_version == store.bundle_version(), what="first bundle")
        probe = Probe(broker.port, [topic])  # subscribes after the publish: sees the retained copy
        first = decode_signed(central_key, probe.wait(topic)[0], Bundle)
        assert [m.id for m in first.meetings] == ["mt1"]

        registry.add_meeting(store, "mt4", cell="C1", hall="H1", title="Thêm", starts=_iso(2), ends=_iso(4))
        second = decode_signed(central_key, probe.wait(topic, count=2)[-1], Bundle)
        assert second.version > first.version
        assert [m.id for m in second.meetings] == ["mt1", "mt4"]
        probe.close()
    finally:
        collector.stop()


@dataclass
class _Verdict:
    status: str
    distance: float = 0.3
    threshold: float = 0.5


class _FaceOfM1:
    """Answers "match" only when handed m1's enrolled templates: the kiosk must have opened them."""

    def verify(self, templates, timeout=5.0):
        return _Verdict("match" if templates == [_template(1), _template(2)] else "no_match")


def _personal_data_forms(text: str) -> set[bytes]:
    """``text`` as it could appear in a JSON payload: raw UTF-8 or \\u-escaped."""
    return {text.encode(), json.dumps(text).strip('"').encode(), json.dumps(text, ensure_ascii=False).strip('"').encode()}


def test_the_retained_bundle_reveals_no_personal_data_and_the_kiosk_still_checks_members_in(world, broker, tmp_path):
    from nacl.secret import SecretBox
    from nacl.utils import random as random_bytes

    from edge_agent.checkin import CheckinService, Outcome
    from edge_agent.clock import SystemClock
    from edge_agent.display import Display
    from edge_agent.outbox import Outbox
    from edge_agent.roster import Roster
    from hardware.events import CardEvent

    settings, store, box, device = world
    registry.add_meeting(store, "mt-now", cell="C1", hall="H1", title="Họp chi bộ", starts=_iso(-0.2), ends=_iso(2))
    settings = settings.model_copy(update={"mqtt_port": broker.port})
    collector = Collector(settings, store, key=keys.signing_key(settings.data_dir), box=box)
    collector.start()
    topic = Topics(settings.topic_prefix).bundle(device.id)
    try:
        wait_until(lambda: collector.published_bundle_version == store.bundle_version(), what="the bundle")
        probe = Probe(broker.port, [topic])  # subscribes after the publish: gets the copy the broker retains
        retained = probe.wait(topic)[0]
        probe.close()
    finally:
        collector.stop()

    personal = ["Nguyễn Văn A", "Trần Thị B", "001099012345", "04A1B2C3", "04:A1:B2:C3", "04a1b2c3"]
    for text in personal:
        for form in _personal_data_forms(text):
            assert form not in retained, f"the retained bundle shows {text!r}"

    kiosk_dir = tmp_path / "kiosk"
    central_key = verify_key_from_text(keys.central_public_key(settings))
    roster = Roster(data_dir=kiosk_dir, device_key=device.key, central_key=central_key,
                    storage_box=SecretBox(random_bytes(SecretBox.KEY_SIZE)))
    roster.receive(retained)
    assert roster.by_cccd("001099012345").name == "Nguyễn Văn A"
    service = CheckinService(roster=roster, outbox=Outbox(kiosk_dir / "outbox.sqlite3", signing_key=device.key), face=_FaceOfM1(),
                             display=Display(), clock=SystemClock(sync_flag=tmp_path / "no-sync"), verdict_hold_s=0.05)
    result = asyncio.run(service.handle(CardEvent(kind="member_card", value="04a1b2c3", source="test")))
    assert (result.outcome, result.member, result.name, result.meeting) == (Outcome.ACCEPTED, "m1", "Nguyễn Văn A", "mt-now")

    other = Roster(data_dir=tmp_path / "other", device_key=SigningKey.generate(), central_key=central_key,
                   storage_box=SecretBox(random_bytes(SecretBox.KEY_SIZE)))
    with pytest.raises(Exception, match="not sealed to this device"):
        other.receive(retained)  # another kiosk cannot read this hall's roster
