"""Bundles: signed, retained, per device, templates sealed to that device only."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest
from nacl.signing import SigningKey

from central import keys, registry
from central.bundles import build_bundle
from central.collector import Collector
from central.errors import RegistryError
from central.store import open_store
from contract import Bundle, Topics, decode_signed, open_templates, verify_key_from_text
from contract.errors import ContractError
from tests.central import Device, Probe, settings_for, wait_until


def _iso(hours: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(hours=hours)).isoformat()


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


def test_bundle_holds_the_halls_future_meetings_their_cells_members_and_sealed_templates(world):
    settings, store, box, device = world
    key = keys.signing_key(settings.data_dir)
    bundle = decode_signed(verify_key_from_text(keys.central_public_key(settings)), build_bundle(store, device.id, key=key, box=box), Bundle)
    assert (bundle.device, bundle.hall) == (device.id, "H1")
    assert [m.id for m in bundle.meetings] == ["mt1"]
    assert [(m.id, m.cards, m.cccd) for m in bundle.members] == [("m1", ["04A1B2C3"], "001099012345"), ("m2", [], None)]
    templates = open_templates(device.key, bundle.templates_sealed)
    assert templates == {"m1": [_template(1), _template(2)], "m2": [_template(3)]}
    with pytest.raises(ContractError):
        open_templates(SigningKey.generate(), bundle.templates_sealed)  # another kiosk cannot read them


def test_every_registry_change_bumps_the_version(world):
    settings, store, box, device = world
    before = store.bundle_version()
    registry.add_meeting(store, "mt3", cell="C2", hall="H1", title="Later", starts=_iso(5), ends=_iso(6))
    assert store.bundle_version() > before
    key = keys.signing_key(settings.data_dir)
    bundle = decode_signed(key.verify_key, build_bundle(store, device.id, key=key, box=box), Bundle)
    assert bundle.version == store.bundle_version()
    assert {m.id for m in bundle.members} == {"m1", "m2", "m3"}


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
