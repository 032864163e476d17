"""A meeting's officers (secretary and chair) and their PINs.

When a member's face check fails at the kiosk, the meeting's secretary or chair may confirm
the member in person: they tap their own card and type their PIN on the kiosk's screen.
Central keeps only an argon2id hash of each PIN; the bundle carries the hashes of the officers
of the meetings it holds, sealed to the kiosk (a 4-8 digit PIN falls to a brute force of its
hash, so the hash must not be readable on the broker).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from argon2 import PasswordHasher

from .errors import NotFound, RegistryError
from .registry import check_id
from .store import Store, utc_now

PIN_RE = re.compile(r"^[0-9]{4,8}$")
# OWASP's argon2id minimum (19 MiB, 2 passes, 1 lane): 16 ms to verify on the x86 build machine; a Pi 4
# has several times less memory bandwidth, still well under the 0.3 s a member waits at the kiosk.
PIN_HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)


def check_pin(pin: str) -> str:
    if not PIN_RE.match(pin or ""):
        raise RegistryError("a PIN is 4 to 8 digits")
    return pin


def set_pin(store: Store, member_id: str, pin: str) -> None:
    """Store the argon2id hash of ``pin`` for ``member_id`` (replacing any earlier one)."""
    member_id = check_id("member", member_id)
    pin_hash = PIN_HASHER.hash(check_pin(pin))
    with store.transaction() as db:
        if store.scalar("SELECT 1 FROM members WHERE id = ?", [member_id]) is None:
            raise NotFound(f"no member {member_id}")
        db.execute(
            "INSERT INTO member_pins (member_id, pin_hash, set_at) VALUES (?, ?, ?) "
            "ON CONFLICT(member_id) DO UPDATE SET pin_hash = excluded.pin_hash, set_at = excluded.set_at",
            [member_id, pin_hash, utc_now()],
        )
        store.bump_bundle_version()


def set_officers(store: Store, meeting_id: str, *, secretary: str | None = None, chair: str | None = None) -> dict[str, str | None]:
    """Name the meeting's secretary and/or chair (members of its cell); an officer not given is kept.

    Returns the officers now in force.
    """
    with store.transaction() as db:
        meeting = store.row("SELECT id, cell, secretary, chair FROM meetings WHERE id = ?", [meeting_id])
        if meeting is None:
            raise NotFound(f"no meeting {meeting_id}")
        chosen = {"secretary": meeting["secretary"], "chair": meeting["chair"]}
        for role, member_id in (("secretary", secretary), ("chair", chair)):
            if member_id is None:
                continue
            member = store.row("SELECT id, cell FROM members WHERE id = ?", [check_id("member", member_id)])
            if member is None:
                raise RegistryError(f"no member {member_id} to be the {role} of {meeting_id}")
            if member["cell"] != meeting["cell"]:
                raise RegistryError(f"{member_id} is a member of {member['cell']}, not of {meeting['cell']} whose meeting "
                                    f"{meeting_id} is: the {role} must be of the meeting's cell")
            chosen[role] = member_id
        db.execute("UPDATE meetings SET secretary = ?, chair = ? WHERE id = ?", [chosen["secretary"], chosen["chair"], meeting_id])
        store.bump_bundle_version()
    return chosen


def pin_hashes(store: Store, member_ids: Iterable[str]) -> dict[str, str]:
    """The PIN hashes of those of ``member_ids`` who have a PIN."""
    ids = sorted({m for m in member_ids if m})
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    return {r["member_id"]: r["pin_hash"]
            for r in store.rows(f"SELECT member_id, pin_hash FROM member_pins WHERE member_id IN ({marks})", ids)}


def has_pin(store: Store, member_id: str) -> bool:
    return store.scalar("SELECT 1 FROM member_pins WHERE member_id = ?", [member_id]) is not None
