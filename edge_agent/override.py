"""The secretary's override: the meeting's secretary (or chair) confirms in person a member whose
face check failed, with their own card and PIN.

A failed face check offers the override while its verdict stays on screen; pressed, the desk
waits for an officer's card, then for that officer's PIN (checked against the argon2id hash
central sealed into the bundle). Wrong PINs are counted per officer in the data directory, so
pulling the plug does not give a guesser fresh attempts; past the limit that officer's
override is locked for a while. A pending override that makes no progress expires.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from contract import Meeting, Member

from .identity import write_file_atomically

log = logging.getLogger("edge_agent.override")

# The face checks an officer may stand in for (checkin.Outcome values): the member is there and the
# machine could not confirm the face, or cannot check faces at all (a dead camera, a face worker past its
# restart budget: without this nobody could check in until a technician came). Several faces and too far
# are the member's to fix; a worker that is restarting is back in seconds.
OVERRIDABLE = ("face_mismatch", "no_template", "not_live", "no_face", "no_camera", "face_down")
PENDING_S = 60.0  # a pending override without progress (officer's tap, a PIN) ends after this long
MAX_PIN_DIGITS = 8
LOCKOUT_FILE = "override_lockouts.json"
# Each lockout in a row lasts twice the one before (300 s, 600 s, …), up to a day, until a right PIN:
# with a fixed 5 min a stolen officer card would try 1,440 PINs a day and find a 4-digit PIN in days;
# doubling leaves it ~60 tries in the first day and 5 a day after.
MAX_LOCKOUT_S = 86400.0
_verifier = PasswordHasher()  # verify() reads the cost parameters from the hash itself


@dataclass(frozen=True)
class Failed:
    """A refused check-in an officer may confirm, with what the face check measured."""

    member: Member
    meeting: Meeting
    reason: str  # one of OVERRIDABLE
    card_kind: str
    distance: float | None = None
    threshold: float | None = None
    liveness: str | None = None


class PinLockouts:
    """Wrong PINs per officer and when each officer's lockout ends, kept in a file (wall-clock times:
    a restart or a reboot must not end a lockout early)."""

    def __init__(self, path: Path, *, attempts: int, lockout_s: float, now: Callable[[], float] = time.time):
        self.path, self.attempts, self.lockout_s, self._now = Path(path), attempts, lockout_s, now
        self._lock = threading.Lock()
        self._state: dict[str, dict[str, float]] = {}
        try:
            loaded = json.loads(self.path.read_text())
            if isinstance(loaded, dict):
                self._state = {str(k): {"wrong": float(v.get("wrong", 0)), "until": float(v.get("until", 0)),
                                        "lockouts": float(v.get("lockouts", 0))}
                               for k, v in loaded.items() if isinstance(v, dict)}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            log.error("PIN lockout file %s unreadable (%s): starting from no wrong attempts", self.path, exc)

    def now(self) -> float:
        """The wall clock lockouts are kept in."""
        return self._now()

    def locked_until(self, officer: str) -> float | None:
        with self._lock:
            until = self._state.get(officer, {}).get("until", 0.0)
            return until if until > self._now() else None

    def wrong(self, officer: str) -> tuple[int, float | None]:
        """Count a wrong PIN; returns (attempts left, lockout end or None)."""
        with self._lock:
            entry = self._state.setdefault(officer, {"wrong": 0.0, "until": 0.0, "lockouts": 0.0})
            entry.setdefault("lockouts", 0.0)
            if entry["until"] and entry["until"] <= self._now():
                entry.update(wrong=0.0, until=0.0)  # an ended lockout starts a fresh count (of wrong PINs only)
            entry["wrong"] += 1
            left = max(0, self.attempts - int(entry["wrong"]))
            if left == 0:
                length = min(MAX_LOCKOUT_S, self.lockout_s * 2 ** min(int(entry["lockouts"]), 32))
                entry["until"] = self._now() + length
                entry["lockouts"] += 1
            self._save()
            return left, (entry["until"] or None)

    def right(self, officer: str) -> None:
        with self._lock:
            if self._state.pop(officer, None) is not None:
                self._save()

    def _save(self) -> None:
        write_file_atomically(self.path, json.dumps(self._state).encode())


class OverrideDesk:
    """Where an override stands: nothing, offered (on a refusal screen), waiting for an officer's card,
    or waiting for that officer's PIN."""

    def __init__(self, data_dir: Path, *, attempts: int = 5, lockout_s: float = 300.0, pending_s: float = PENDING_S,
                 now: Callable[[], float] = time.time):
        self.lockouts = PinLockouts(Path(data_dir) / LOCKOUT_FILE, attempts=attempts, lockout_s=lockout_s, now=now)
        self.pending_s = pending_s
        self.stage: str | None = None  # None | "offer" | "officer" | "pin"
        self.failed: Failed | None = None
        self.officer: Member | None = None

    def offer(self, failed: Failed) -> bool:
        """Offer the override for ``failed`` when its meeting has an officer; True if offered."""
        if failed.reason not in OVERRIDABLE or not (failed.meeting.secretary or failed.meeting.chair):
            self.clear()
            return False
        self.stage, self.failed, self.officer = "offer", failed, None
        return True

    def clear(self) -> None:
        self.stage, self.failed, self.officer = None, None, None

    def start(self) -> bool:
        if self.stage != "offer":
            return False
        self.stage = "officer"
        return True

    def is_officer(self, member: Member) -> bool:
        assert self.failed is not None
        return member.id in (self.failed.meeting.secretary, self.failed.meeting.chair)

    def officer_tapped(self, member: Member) -> None:
        self.stage, self.officer = "pin", member

    def check_pin(self, pin: str, pin_hash: str | None) -> bool:
        """Runs argon2 (tens of milliseconds): call it off the event loop."""
        if not pin_hash:
            return False
        try:
            return _verifier.verify(pin_hash, pin)
        except (VerificationError, InvalidHashError):
            return False

    def describe(self) -> dict[str, Any]:
        return {"stage": self.stage, "member": self.failed.member.name if self.failed else None,
                "officer": self.officer.name if self.officer else None}
