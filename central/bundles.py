"""Per-device bundles: the hall's roster, schedule and face templates, signed by central.

A bundle holds the meetings of the device's hall that have not ended yet, every
member of the cells those meetings are for (names, CCCD numbers, card UIDs), and
those members' templates, and the PIN hashes (argon2id) of the meetings' secretaries
and chairs; members, templates and PINs are sealed to the device's own key, so the
retained copy on the broker shows no personal data to anyone else. ``version`` is the
registry's change counter: it only grows, so a kiosk can refuse a bundle older than the
one it has.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from nacl.secret import SecretBox
from nacl.signing import SigningKey

from contract import Bundle, Meeting, Member, Topics, encode_signed, seal_members, seal_pins, seal_templates, verify_key_from_text
from contract.topics import QOS, RETAIN, Kind

from . import officers, registry
from .errors import NotFound, RegistryError
from .store import Store

log = logging.getLogger("central.bundles")

Publish = Callable[[str, bytes, int, bool], object]  # (topic, payload, qos, retain)


def _now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_bundle(store: Store, device_id: str, *, key: SigningKey, box: SecretBox) -> bytes:
    """The signed bundle for ``device_id``, ready to publish."""
    device = registry.get_device(store, device_id)
    if device is None:
        raise NotFound(f"no device {device_id}")
    if device["revoked_at"]:
        raise RegistryError(f"device {device_id} is revoked")
    now = _now_text()
    with store.lock:  # one consistent view of version, meetings and members
        version = store.bundle_version()
        meetings = store.rows(
            "SELECT id, cell, hall, title, starts_at, ends_at, secretary, chair FROM meetings "
            "WHERE hall = ? AND ends_at > ? ORDER BY starts_at, id",
            [device["hall"], now],
        )
        cells = sorted({m["cell"] for m in meetings})
        members = []
        if cells:
            marks = ",".join("?" * len(cells))
            members = store.rows(f"SELECT id, name, cell, cccd FROM members WHERE cell IN ({marks}) ORDER BY id", cells)
        ids = [m["id"] for m in members]
        cards = registry.member_cards(store, ids)
        templates = registry.member_templates(store, box, ids)
        pins = officers.pin_hashes(store, [m[role] for m in meetings for role in ("secretary", "chair")])
    device_key = verify_key_from_text(device["public_key"])
    bundle = Bundle(
        device=device_id,
        hall=device["hall"],
        version=version,
        issued_at=now,
        members_sealed=seal_members(
            device_key, [Member(id=m["id"], name=m["name"], cell=m["cell"], cards=cards[m["id"]], cccd=m["cccd"]) for m in members]),
        meetings=[Meeting(**m) for m in meetings],
        templates_sealed=seal_templates(device_key, templates),
        # Left out while no officer has a PIN: such a bundle still reads on a kiosk that predates PINs.
        pins_sealed=seal_pins(device_key, pins) if pins else None,
    )
    return encode_signed(key, bundle)


def publish_bundles(store: Store, topics: Topics, publish: Publish, *, key: SigningKey, box: SecretBox) -> int:
    """Publish (retained) the bundle of every registered, unrevoked device; returns how many.

    A revoked device's retained bundle is cleared so it stops receiving the roster.
    """
    count = 0
    for device in registry.list_devices(store):
        topic = topics.bundle(device["id"])
        if device["revoked_at"]:
            publish(topic, b"", QOS[Kind.BUNDLE], True)
            continue
        publish(topic, build_bundle(store, device["id"], key=key, box=box), QOS[Kind.BUNDLE], RETAIN[Kind.BUNDLE])
        count += 1
    log.info("published %d bundle(s) at version %d", count, store.bundle_version())
    return count
