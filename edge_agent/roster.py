"""The hall's roster, schedule and face templates, as last received from central.

The signed bundle is kept on disk encrypted with the device's storage key (its
roster and templates are also sealed to the device key: names, ID numbers and card
UIDs are personal data), so a kiosk that reboots without network still knows its
members. A bundle older than the one held is refused: no rollback.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from nacl.secret import SecretBox
from nacl.signing import SigningKey, VerifyKey

from contract import Bundle, Meeting, Member, decode_signed, open_members, open_pins, open_templates
from contract.errors import ContractError

from .clock import parse_iso
from .errors import BundleRejected
from .identity import write_file_atomically

log = logging.getLogger("edge_agent.roster")

BUNDLE_FILE = "bundle.sealed"


@dataclass(frozen=True)
class Lookup:
    member: Member | None
    meeting: Meeting | None  # the meeting of the member's cell happening now, if any
    other_meeting: Meeting | None  # a meeting of another cell happening now at this hall


class Roster:
    def __init__(self, *, data_dir: Path, device_key: SigningKey, central_key: VerifyKey, storage_box: SecretBox):
        self._path = Path(data_dir) / BUNDLE_FILE
        self._device_key, self._central_key, self._box = device_key, central_key, storage_box
        self._lock = threading.Lock()
        self.bundle: Bundle | None = None
        self.members: list[Member] = []
        self._templates: dict[str, list[list[float]]] = {}
        self._pins: dict[str, str] = {}  # officer member id -> argon2id hash of their PIN
        self._by_card: dict[str, Member] = {}
        self._by_cccd: dict[str, Member] = {}
        if self._path.exists():
            try:
                self._install(self._box.decrypt(self._path.read_bytes()), persist=False)
            except Exception as exc:
                log.error("stored bundle unreadable (%s); waiting for central to send one", exc)

    @property
    def version(self) -> int | None:
        return self.bundle.version if self.bundle else None

    def receive(self, payload: bytes) -> Bundle:
        """Verify and install a bundle from central; BundleRejected if forged, for another device, or older."""
        return self._install(payload, persist=True)

    def _install(self, payload: bytes, *, persist: bool) -> Bundle:
        try:
            bundle: Bundle = decode_signed(self._central_key, payload, Bundle)
            members = open_members(self._device_key, bundle.members_sealed)
            templates = open_templates(self._device_key, bundle.templates_sealed)
            pins = open_pins(self._device_key, bundle.pins_sealed) if bundle.pins_sealed else {}
        except ContractError as exc:
            raise BundleRejected(f"bundle refused: {exc}") from exc
        with self._lock:
            if self.bundle and bundle.version < self.bundle.version:
                raise BundleRejected(f"bundle version {bundle.version} is older than ours ({self.bundle.version}): rollback refused")
            if self.bundle and bundle.version == self.bundle.version:
                return self.bundle
            if persist:
                write_file_atomically(self._path, self._box.encrypt(payload))
            self.bundle, self.members, self._templates, self._pins = bundle, members, templates, pins
            self._by_card = {uid.upper(): m for m in members for uid in m.cards}
            self._by_cccd = {m.cccd: m for m in members if m.cccd}
        log.info("roster version %d installed: %d members, %d meetings", bundle.version, len(members), len(bundle.meetings))
        return bundle

    def templates(self, member_id: str) -> list[list[float]]:
        return self._templates.get(member_id, [])

    def pin_hash(self, member_id: str) -> str | None:
        return self._pins.get(member_id)

    def meeting(self, meeting_id: str) -> Meeting | None:
        return next((m for m in self.bundle.meetings if m.id == meeting_id), None) if self.bundle else None

    def by_card(self, uid: str) -> Member | None:
        return self._by_card.get(uid.upper())

    def by_cccd(self, number: str) -> Member | None:
        return self._by_cccd.get(number)

    def meetings_now(self, now: datetime, early_s: int) -> list[Meeting]:
        if not self.bundle:
            return []
        return [
            m for m in self.bundle.meetings
            if parse_iso(m.starts_at) - timedelta(seconds=early_s) <= now <= parse_iso(m.ends_at)
        ]

    def lookup(self, member: Member | None, now: datetime, early_s: int) -> Lookup:
        meetings = self.meetings_now(now, early_s)
        mine = next((m for m in meetings if member and m.cell == member.cell), None)
        other = next((m for m in meetings if not member or m.cell != member.cell), None)
        return Lookup(member, mine, other)
