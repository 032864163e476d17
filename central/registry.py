"""The registry: halls, cells, members, meetings and devices.

Every change that alters what a kiosk's bundle holds bumps the bundle version in
the same transaction, so the collector (in this process or another) notices and
republishes. Halls and cells referenced by a member, meeting or device are
created on first use with their id as name; ``add_hall``/``add_cell`` rename them.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from nacl.secret import SecretBox

from contract import device_id_from_public_key, verify_key_from_text
from contract.errors import ContractError
from contract.messages import TEMPLATE_DIMENSIONS

from . import regions
from .errors import NotFound, RegistryError
from .store import Store, utc_now

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
CARD_RE = re.compile(r"^[0-9A-F]+$")
# ISO 14443-A UIDs are single (4), double (7) or triple (10) size; a PN532 reads no other length,
# so a card registered with another length could never check anyone in.
CARD_UID_BYTES = (4, 7, 10)
CCCD_RE = re.compile(r"^[0-9]{12}$")
MAX_NAME = 120


def check_id(kind: str, value: str) -> str:
    value = (value or "").strip()
    if not ID_RE.match(value):
        raise RegistryError(f"bad {kind} id {value!r}: 1-64 letters, digits or . _ : -, starting with a letter or digit")
    return value


def normalise_card(uid: str) -> str:
    """Card UIDs are stored as the contract says: upper-case hex, no separators."""
    clean = re.sub(r"[\s:-]", "", uid or "").upper()
    if not CARD_RE.match(clean) or len(clean) % 2:
        raise RegistryError(f"bad card UID {uid!r}: expected hex digits, two per byte (separators : - or space allowed)")
    if len(clean) // 2 not in CARD_UID_BYTES:
        raise RegistryError(f"bad card UID {uid!r}: it is {len(clean) // 2} bytes; a member card's UID is 4, 7 or 10 bytes "
                            "(ISO 14443-A single, double or triple size), as the card reader shows it")
    return clean


def check_cccd(cccd: str | None) -> str | None:
    if cccd is None or not cccd.strip():
        return None
    if not CCCD_RE.match(cccd.strip()):
        raise RegistryError(f"bad CCCD number {cccd!r}: expected 12 digits")
    return cccd.strip()


def utc_text(value: str | datetime) -> str:
    """ISO 8601 UTC with a Z; a time without a zone is refused rather than guessed."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise RegistryError(f"bad time {value!r}: use ISO 8601, e.g. 2025-03-01T08:00:00+07:00") from None
    if value.tzinfo is None:
        raise RegistryError(f"time {value.isoformat()} has no time zone: add Z or an offset such as +07:00")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _bump(store: Store) -> None:
    store.bump_bundle_version()


def _ensure(store: Store, table: str, ident: str) -> None:
    store.db.execute(f"INSERT OR IGNORE INTO {table} (id, name, created_at) VALUES (?, ?, ?)", [ident, ident, utc_now()])


def _place(commune: str | None, province: str | None) -> dict[str, Any]:
    """The columns of a hall's or cell's place, checked against central/regions.py's list (official spelling and
    codes); empty when neither is given (left as it was)."""
    place: dict[str, Any] = {}
    if commune is not None and province is None:
        raise RegistryError("a commune needs its province (--province): the same commune name exists in several")
    if province is not None:
        prov = regions.province(province)
        place |= {"province": prov.name, "province_code": prov.code}
        if commune is not None:
            com = regions.commune(prov.name, commune)
            place |= {"commune": com.name, "commune_code": com.code}
        else:
            place |= {"commune": None, "commune_code": None}  # a commune of another province would be wrong now
    return place


def add_hall(store: Store, hall_id: str, name: str | None = None, *, commune: str | None = None,
             province: str | None = None) -> None:
    """Add or rename a hall; ``commune``/``province`` (checked against central/regions.py's list, stored in its
    spelling with its codes) are left as they were when not given."""
    hall_id = check_id("hall", hall_id)
    place = _place(commune, province)
    columns = ["id", "name", "created_at", *place]
    updates = ", ".join(f"{c} = excluded.{c}" for c in ["name", *place])
    with store.transaction() as db:
        db.execute(
            f"INSERT INTO halls ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
            f"ON CONFLICT(id) DO UPDATE SET {updates}",
            [hall_id, check_name("hall", name) if name else hall_id, utc_now(), *place.values()],
        )


def get_hall(store: Store, hall_id: str) -> dict[str, Any] | None:
    return store.row("SELECT * FROM halls WHERE id = ?", [hall_id])


def check_name(kind: str, value: str) -> str:
    """A name people read on a page: 1-120 characters, no control characters (they would break a line or a log)."""
    text = re.sub(r" +", " ", value or "").strip()
    if not text or len(text) > MAX_NAME or any(unicodedata.category(c).startswith("C") for c in text):
        raise RegistryError(f"bad {kind} name {value!r}: 1-{MAX_NAME} characters, no control characters")
    return text


def device_name(store: Store, hall: str, position: str | None) -> str:
    """'<hall's name> — <position>'; without a position, '— máy N' with N the kiosk's rank in its hall."""
    hall_name = store.scalar("SELECT name FROM halls WHERE id = ?", [hall]) or hall
    if position:
        return check_name("device", f"{hall_name} — {check_name('position', position)}")
    count = store.scalar("SELECT COUNT(*) FROM devices WHERE hall = ?", [hall]) or 0
    return f"{hall_name} — máy {count + 1}"


def add_cell(store: Store, cell_id: str, name: str | None = None, *, commune: str | None = None,
             province: str | None = None) -> None:
    """Add or rename a cell; its ``commune``/``province`` (what the commune and province roll-ups group by) are
    checked like a hall's, and left as they were when not given: a cell without a place takes its hall's when its
    first meeting is added."""
    cell_id = check_id("cell", cell_id)
    place = _place(commune, province)
    columns = ["id", "name", "created_at", *place]
    updates = ", ".join(f"{c} = excluded.{c}" for c in ["name", *place])
    with store.transaction() as db:
        db.execute(
            f"INSERT INTO cells ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
            f"ON CONFLICT(id) DO UPDATE SET {updates}",
            [cell_id, name or cell_id, utc_now(), *place.values()],
        )
        _bump(store)


def get_cell(store: Store, cell_id: str) -> dict[str, Any] | None:
    return store.row("SELECT * FROM cells WHERE id = ?", [cell_id])


def add_member(
    store: Store,
    member_id: str,
    name: str,
    cell: str,
    *,
    cccd: str | None = None,
    cards: Iterable[str] = (),
    templates: Sequence[Sequence[float]] | None = None,
    box: SecretBox | None = None,
) -> bool:
    """Create or update a member; ``templates`` (with ``box``) replace the enrolled ones. True if new."""
    member_id, cell = check_id("member", member_id), check_id("cell", cell)
    if not (name or "").strip():
        raise RegistryError(f"member {member_id} has no name")
    cccd = check_cccd(cccd)
    uids = sorted({normalise_card(c) for c in cards})
    if templates is not None:
        if box is None:
            raise RegistryError("templates need the template key (box) to be stored encrypted")
        for enc in templates:
            if len(enc) != TEMPLATE_DIMENSIONS:
                raise RegistryError(f"a face template has {len(enc)} numbers, expected {TEMPLATE_DIMENSIONS}")
    now = utc_now()
    with store.transaction() as db:
        check_member_conflicts(store, member_id, cccd=cccd, cards=uids)
        _ensure(store, "cells", cell)
        is_new = store.scalar("SELECT 1 FROM members WHERE id = ?", [member_id]) is None
        db.execute(
            "INSERT INTO members (id, name, cell, cccd, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET name = excluded.name, cell = excluded.cell, cccd = excluded.cccd, "
            "updated_at = excluded.updated_at",
            [member_id, name.strip(), cell, cccd, now, now],
        )
        db.execute("DELETE FROM cards WHERE member_id = ?", [member_id])
        for uid in uids:
            db.execute("INSERT INTO cards (uid, member_id) VALUES (?, ?)", [uid, member_id])
        if templates is not None:
            assert box is not None
            db.execute("DELETE FROM templates WHERE member_id = ?", [member_id])
            for enc in templates:
                sealed = box.encrypt(json.dumps([float(x) for x in enc]).encode())
                db.execute(
                    "INSERT INTO templates (member_id, encoding_sealed, created_at) VALUES (?, ?, ?)",
                    [member_id, bytes(sealed), now],
                )
        _bump(store)
    return is_new


def check_member_conflicts(store: Store, member_id: str, *, cccd: str | None, cards: Iterable[str]) -> None:
    """RegistryError if a card or the CCCD number already identifies another member."""
    for uid in cards:
        owner = store.scalar("SELECT member_id FROM cards WHERE uid = ?", [normalise_card(uid)])
        if owner is not None and owner != member_id:
            raise RegistryError(f"card {normalise_card(uid)} already belongs to member {owner}")
    cccd = check_cccd(cccd)
    if cccd:
        owner = store.scalar("SELECT id FROM members WHERE cccd = ?", [cccd])
        if owner is not None and owner != member_id:
            raise RegistryError(f"CCCD {cccd} already belongs to member {owner}")


def member_templates(store: Store, box: SecretBox, member_ids: Iterable[str]) -> dict[str, list[list[float]]]:
    """Decrypted templates of ``member_ids`` (members without templates are left out)."""
    ids = list(member_ids)
    out: dict[str, list[list[float]]] = {}
    if not ids:
        return out
    marks = ",".join("?" * len(ids))
    for r in store.rows(f"SELECT member_id, encoding_sealed FROM templates WHERE member_id IN ({marks}) ORDER BY id", ids):
        out.setdefault(r["member_id"], []).append(json.loads(box.decrypt(r["encoding_sealed"])))
    return out


def add_meeting(
    store: Store, meeting_id: str, *, cell: str, hall: str, title: str, starts: str | datetime, ends: str | datetime
) -> None:
    meeting_id, cell, hall = check_id("meeting", meeting_id), check_id("cell", cell), check_id("hall", hall)
    starts_at, ends_at = utc_text(starts), utc_text(ends)
    if ends_at <= starts_at:
        raise RegistryError(f"meeting {meeting_id} ends ({ends_at}) before it starts ({starts_at})")
    if not (title or "").strip():
        raise RegistryError(f"meeting {meeting_id} has no title")
    with store.transaction() as db:
        _ensure(store, "cells", cell)
        _ensure(store, "halls", hall)
        db.execute(
            "INSERT INTO meetings (id, cell, hall, title, starts_at, ends_at) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET cell = excluded.cell, hall = excluded.hall, title = excluded.title, "
            "starts_at = excluded.starts_at, ends_at = excluded.ends_at",
            [meeting_id, cell, hall, title.strip(), starts_at, ends_at],
        )
        # A cell with no place yet meets where it lives: its hall's commune and province.
        db.execute(
            "UPDATE cells SET (commune, commune_code, province, province_code) = "
            "(SELECT commune, commune_code, province, province_code FROM halls WHERE id = ?) "
            "WHERE id = ? AND province_code IS NULL",
            [hall, cell],
        )
        _bump(store)


def add_device(store: Store, public_key: str, hall: str, *, position: str | None = None, name: str | None = None) -> str:
    """Register a kiosk by its public key (text form); returns the device id derived from it.

    A new kiosk is named ``name``, else after its hall and ``position`` (``device_name``); registering a known
    kiosk again keeps its name unless a name or position is given."""
    try:
        device_id = device_id_from_public_key(verify_key_from_text(public_key.strip()))
    except ContractError as exc:
        raise RegistryError(f"bad device public key: {exc}") from None
    hall = check_id("hall", hall)
    with store.transaction() as db:
        existing = store.row("SELECT revoked_at FROM devices WHERE id = ?", [device_id])
        if existing and existing["revoked_at"]:
            raise RegistryError(f"device {device_id} was revoked on {existing['revoked_at']}; make a new key")
        _ensure(store, "halls", hall)
        given = check_name("device", name) if name else device_name(store, hall, position) if position else None
        db.execute(
            "INSERT INTO devices (id, public_key, hall, registered_at, name) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET hall = excluded.hall, name = IFNULL(?, name)",
            [device_id, public_key.strip(), hall, utc_now(), given or device_name(store, hall, None), given],
        )
        _bump(store)
    return device_id


def rename_device(store: Store, device_id: str, name: str) -> str:
    """Give a kiosk a new name; returns the old one (for the audit log)."""
    name = check_name("device", name)
    with store.transaction() as db:
        old = store.row("SELECT name FROM devices WHERE id = ?", [device_id])
        if old is None:
            raise NotFound(f"no device {device_id}")
        db.execute("UPDATE devices SET name = ? WHERE id = ?", [name, device_id])
    return old["name"]


def revoke_device(store: Store, device_id: str) -> None:
    with store.transaction() as db:
        if db.execute("UPDATE devices SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", [utc_now(), device_id]).rowcount != 1:
            if store.scalar("SELECT 1 FROM devices WHERE id = ?", [device_id]) is None:
                raise NotFound(f"no device {device_id}")
        _bump(store)


def get_device(store: Store, device_id: str) -> dict[str, Any] | None:
    return store.row("SELECT * FROM devices WHERE id = ?", [device_id])


def list_devices(store: Store) -> list[dict[str, Any]]:
    return store.rows("SELECT * FROM devices ORDER BY hall, id")


def get_meeting(store: Store, meeting_id: str) -> dict[str, Any] | None:
    return store.row("SELECT * FROM meetings WHERE id = ?", [meeting_id])


def list_meetings(store: Store) -> list[dict[str, Any]]:
    return store.rows("SELECT * FROM meetings ORDER BY starts_at, id")


def cell_members(store: Store, cell: str) -> list[dict[str, Any]]:
    return store.rows("SELECT id, name, cell FROM members WHERE cell = ? ORDER BY name, id", [cell])


def member_cards(store: Store, member_ids: Iterable[str]) -> dict[str, list[str]]:
    ids = list(member_ids)
    out: dict[str, list[str]] = {i: [] for i in ids}
    if ids:
        marks = ",".join("?" * len(ids))
        for r in store.rows(f"SELECT uid, member_id FROM cards WHERE member_id IN ({marks}) ORDER BY uid", ids):
            out[r["member_id"]].append(r["uid"])
    return out


def check_meeting_place(store: Store, *, cell: str, hall: str) -> None:
    """RegistryError unless ``hall`` and ``cell`` exist: a typo would make a meeting no kiosk and no member has."""
    for kind, ident in (("hall", hall), ("cell", cell)):
        table = "halls" if kind == "hall" else "cells"
        if store.scalar(f"SELECT 1 FROM {table} WHERE id = ?", [ident]) is None:
            known = [r["id"] for r in store.rows(f"SELECT id FROM {table} ORDER BY id LIMIT 11")]
            listed = ", ".join(known[:10]) + (", …" if len(known) > 10 else "") if known else "none yet"
            raise RegistryError(f"no {kind} {ident}: add it first with `hall central {kind} {ident} --name NAME` "
                                f"(known {kind}s: {listed})")
