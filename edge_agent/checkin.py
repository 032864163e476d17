"""The check-in flow: card → member → meeting → face → signed record → feedback.

One check-in is handled at a time, in arrival order; the face check runs in the
face worker process (off the event loop) so the page and readers never stall.
The record is committed to the outbox before the screen says "checked in".
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from contract import Proof

from .clock import SystemClock, parse_iso
from .display import Display
from .errors import AlreadyCheckedIn, DiskFullError
from .face.verdicts import FaceError, WorkerError
from .face.worker import WorkerDown, WorkerRestarting
from .outbox import Outbox
from .override import Failed, OverrideDesk
from .roster import Roster

log = logging.getLogger("edge_agent.checkin")


class Outcome(str, Enum):
    ACCEPTED = "accepted"
    ALREADY = "already"
    FACE_MISMATCH = "face_mismatch"
    NO_FACE = "no_face"
    SEVERAL_FACES = "several_faces"
    TOO_FAR = "too_far"
    NO_CAMERA = "no_camera"
    FACE_ERROR = "face_error"
    FACE_RESTARTING = "face_restarting"
    FACE_DOWN = "face_down"
    SYSTEM_ERROR = "system_error"
    NO_TEMPLATE = "no_template"
    NOT_LIVE = "not_live"
    UNKNOWN_CARD = "unknown_card"
    OTHER_CELL = "other_cell"
    NO_MEETING = "no_meeting"
    BAD_QR = "bad_qr"
    NO_ROSTER = "no_roster"
    DISK_FULL = "disk_full"
    # the secretary's override (edge_agent/override.py)
    OVERRIDE_ACCEPTED = "override_accepted"
    OVERRIDE_PIN = "override_pin"  # an officer tapped: waiting for their PIN
    OVERRIDE_NOT_OFFICER = "override_not_officer"
    OVERRIDE_NO_PIN = "override_no_pin"
    OVERRIDE_WRONG_PIN = "override_wrong_pin"
    OVERRIDE_LOCKED = "override_locked"


# face worker verdict status (its .value) -> outcome
FACE_OUTCOMES = {
    "no_match": Outcome.FACE_MISMATCH,
    "no_face": Outcome.NO_FACE,
    "several_faces": Outcome.SEVERAL_FACES,
    "too_far": Outcome.TOO_FAR,
    "no_camera": Outcome.NO_CAMERA,
    "no_template": Outcome.NO_TEMPLATE,
    "not_live": Outcome.NOT_LIVE,
}


class FaceVerifier(Protocol):
    def verify(self, templates: list[list[float]], timeout: float = ...) -> Any: ...


class Signals(Protocol):
    def accepted(self) -> None: ...
    def rejected(self) -> None: ...
    def busy(self) -> None: ...
    def idle(self) -> None: ...


@dataclass
class Result:
    outcome: Outcome
    member: str | None = None
    name: str | None = None
    meeting: str | None = None
    seq: int | None = None
    distance: float | None = None
    detail: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    failed: Failed | None = None  # a failed face check an officer may confirm


class CheckinService:
    def __init__(
        self,
        *,
        roster: Roster,
        outbox: Outbox,
        face: FaceVerifier,
        display: Display,
        signals: Signals | None = None,
        clock: SystemClock | None = None,
        meeting_early_s: int = 1800,
        verdict_hold_s: float = 8.0,
        time_zone: str = "Asia/Ho_Chi_Minh",
        face_timeout_s: float = 10.0,
        override: OverrideDesk | None = None,
    ):
        self.roster, self.outbox, self.face, self.display = roster, outbox, face, display
        self.signals = signals
        self.clock = clock or SystemClock()
        self.early_s, self.hold_s, self.face_timeout_s = meeting_early_s, verdict_hold_s, face_timeout_s
        self.tz = ZoneInfo(time_zone)  # the hall's: what the member reads is local time
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=16)
        self.results: list[Result] = []
        self._idle_task: asyncio.Task | None = None
        self.override = override  # None: no secretary override on this kiosk
        self._expiry_task: asyncio.Task | None = None
        # One step at a time: a tap, the override button, a PIN. A PIN typed while a tap is being
        # decided waits for it, and the screen never shows two flows at once.
        self._flow = asyncio.Lock()
        # Told (result, the card event being handled) of every result as it is finished: the agent queues the
        # refusals for central (edge_agent/attempts.py). It must return at once.
        self.on_result: Any = None
        self._event: Any = None

    def submit(self, event: Any) -> None:
        """Thread-safe entry for reader callbacks is loop.call_soon_threadsafe(service.submit, event)."""
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            log.warning("check-in queue full; dropped %s (the member can tap again)", event.kind)

    async def run(self) -> None:
        while True:
            event = await self.queue.get()
            try:
                await self.handle(event)
            except Exception:  # the screen itself failed: keep taking taps
                log.exception("check-in screen failed for %s", getattr(event, "kind", event))

    async def handle(self, event: Any) -> Result:
        async with self._flow:
            self._event = event
            if self._idle_task:
                self._idle_task.cancel()
            try:
                if self.override and self.override.stage in ("officer", "pin"):
                    if self._is_officer_tap(event):
                        return await self._officer_card(event)
                    # Anyone else's card (the member trying again, the next member in line) is their own
                    # check-in: a pending override must never hold the queue of members at the desk.
                    log.info("override for %s abandoned: the next card is not an officer's",
                             self.override.failed.member.id if self.override.failed else "?")
                    self._end_override()
                result = await self._decide(event)
            except Exception as exc:
                # A bug or a broken part, not the member's face: say so, and keep the traceback for the technician.
                log.exception("check-in of %s %s failed with an internal error", getattr(event, "kind", "?"),
                              "(QR)" if getattr(event, "kind", "") != "member_card" else getattr(event, "value", "?"))
                if self.override:
                    self.override.clear()
                result = Result(Outcome.SYSTEM_ERROR, detail=f"{type(exc).__name__}: {exc}")
            self._finish(result)
            return result

    def _is_officer_tap(self, event: Any) -> bool:
        """The card of the pending override's secretary or chair (their own failed check included:
        _officer_card tells them the other officer must confirm)."""
        desk = self.override
        tapper = self._member_of(event)
        return bool(desk and desk.failed and tapper is not None
                    and tapper.id in (desk.failed.meeting.secretary, desk.failed.meeting.chair))

    def _member_of(self, event: Any) -> Any:
        if event.kind == "member_card":
            return self.roster.by_card(event.value)
        from hardware.cccd import parse_cccd
        from hardware.errors import CccdError

        try:
            return self.roster.by_cccd(parse_cccd(event.value).id_number)
        except CccdError:
            return None

    async def _decide(self, event: Any) -> Result:
        if self.roster.bundle is None:
            return Result(Outcome.NO_ROSTER)
        kind, value = event.kind, event.value
        if kind == "member_card":
            member = self.roster.by_card(value)
        else:
            from hardware.cccd import parse_cccd  # keeps the agent importable without the reader stack
            from hardware.errors import CccdError

            try:
                member = self.roster.by_cccd(parse_cccd(value).id_number)
            except CccdError as exc:
                log.info("rejected QR: %s", exc.reason)
                return Result(Outcome.BAD_QR, detail=exc.reason, extra={"reason": exc.reason})
        if member is None:
            log.info("unknown %s %s", kind, value if kind == "member_card" else "(QR)")
            return Result(Outcome.UNKNOWN_CARD)
        base = dict(member=member.id, name=member.name)
        now = self.clock.now()
        found = self.roster.lookup(member, now, self.early_s)
        if found.meeting is None:
            if found.other_meeting is not None:
                return Result(Outcome.OTHER_CELL, **base, extra={"meeting": found.other_meeting.title})
            return Result(Outcome.NO_MEETING, **base)
        meeting = found.meeting
        base["meeting"] = meeting.id
        existing = self.outbox.existing_checkin(meeting.id, member.id)
        if existing is not None:
            return Result(Outcome.ALREADY, **base, seq=existing[0])
        templates = self.roster.templates(member.id)
        if not templates:
            return Result(Outcome.NO_TEMPLATE, **base, failed=Failed(member, meeting, Outcome.NO_TEMPLATE.value, kind))

        self.display.show("verifying", tone="busy", name=member.name)
        if self.signals:
            self.signals.busy()
        try:
            verdict = await asyncio.to_thread(self.face.verify, templates, self.face_timeout_s)
        except WorkerRestarting as exc:
            log.warning("face check of %s not made: %s", member.id, exc)
            return Result(Outcome.FACE_RESTARTING, **base, detail=str(exc))
        except WorkerDown as exc:
            log.error("face check of %s not made: %s", member.id, exc)
            return Result(Outcome.FACE_DOWN, **base, detail=str(exc),
                          failed=Failed(member, meeting, Outcome.FACE_DOWN.value, kind))
        except (WorkerError, FaceError) as exc:
            log.error("face worker failed: %s", exc)
            return Result(Outcome.FACE_ERROR, **base, detail=str(exc))
        status = getattr(verdict.status, "value", verdict.status)
        distance = None if verdict.distance is None else round(float(verdict.distance), 4)
        if status != "match":
            outcome = FACE_OUTCOMES.get(status, Outcome.FACE_ERROR)
            threshold = getattr(verdict, "threshold", None)
            failed = Failed(member, meeting, outcome.value, kind, distance=distance,
                            threshold=None if threshold is None else round(float(threshold), 4),
                            liveness=getattr(verdict, "liveness", None))
            return Result(outcome, **base, distance=distance, failed=failed)
        proof = Proof(
            card_kind=kind, face_distance=distance, face_threshold=round(float(verdict.threshold), 4),
            liveness=getattr(verdict, "liveness", None),
        )
        try:
            record = await asyncio.to_thread(
                self.outbox.append, meeting=meeting.id, member=member.id, proof=proof, time_reading=self.clock.reading()
            )
        except AlreadyCheckedIn as exc:
            return Result(Outcome.ALREADY, **base, seq=exc.seq)
        except DiskFullError as exc:
            log.error("check-in of %s refused: %s", member.id, exc)
            return Result(Outcome.DISK_FULL, **base, distance=distance, detail=str(exc))
        return Result(Outcome.ACCEPTED, **base, seq=record.seq, distance=distance, extra={"meeting_title": meeting.title})

    def _finish(self, result: Result) -> None:
        self.results.append(result)
        del self.results[:-100]
        if self.on_result:
            self.on_result(result, self._event)
        fields = dict(result.extra)
        if result.outcome is Outcome.ALREADY and result.meeting and result.member:
            fields["time"] = self._checkin_time(result.meeting, result.member)
        ok = result.outcome in (Outcome.ACCEPTED, Outcome.ALREADY, Outcome.OVERRIDE_ACCEPTED)
        offered = bool(self.override and result.failed and self.override.offer(result.failed))
        if self.override and not offered and self.override.stage == "offer":
            self.override.clear()  # a new verdict replaces the earlier one's offer
        self.display.show(
            result.outcome.value,
            # Restarting is a wait, not a refusal of the member: the spinner, not the red cross.
            tone="ok" if ok else "busy" if result.outcome is Outcome.FACE_RESTARTING else "bad",
            name=result.name,
            # Result.detail is for the log and the technician (English, technical): the member reads the catalog line.
            detail=result.extra.get("meeting_title"),
            override="offer" if offered else None,
            **{k: v for k, v in fields.items() if k not in ("meeting_title", "reason")},
        )
        if self.signals:
            (self.signals.accepted if ok else self.signals.rejected)()
        log.info("check-in %s member=%s seq=%s distance=%s", result.outcome.value, result.member, result.seq, result.distance)
        self._idle_task = asyncio.get_running_loop().create_task(self._back_to_idle())

    def _checkin_time(self, meeting: str, member: str) -> str:
        existing = self.outbox.existing_checkin(meeting, member)
        return parse_iso(existing[1]).astimezone(self.tz).strftime("%H:%M") if existing else "?"

    async def _back_to_idle(self) -> None:
        await asyncio.sleep(self.hold_s)
        if self.override and self.override.stage == "offer":
            self.override.clear()  # the offer lasts as long as its verdict
        self.display.show("idle")
        if self.signals:
            self.signals.idle()

    # -- the secretary's override ------------------------------------------------------------

    async def override_start(self) -> bool:
        """The member pressed "Secretary confirms" on a refusal: ask for an officer's card."""
        async with self._flow:
            if not self.override or not self.override.start():
                return False
            if self._idle_task:
                self._idle_task.cancel()
            self._ask("override_officer", member=self.override.failed.member.name)
            return True

    async def override_cancel(self) -> bool:
        async with self._flow:
            if not self.override or self.override.stage is None:
                return False
            log.info("override for %s cancelled", self.override.failed.member.id if self.override.failed else "?")
            self._end_override()
            self.display.show("idle")
            return True

    async def _officer_card(self, event: Any) -> Result:
        desk = self.override
        assert desk is not None and desk.failed is not None
        failed = desk.failed
        tapper = self._member_of(event)
        base = dict(member=failed.member.id, name=failed.member.name, meeting=failed.meeting.id)
        if tapper is not None and tapper.id == failed.member.id:
            # An officer whose own face failed is confirmed by the other officer, never by their own PIN:
            # a card and a PIN alone (both of which can be lent) must not stand in for the face.
            log.info("override for %s: an officer cannot confirm their own check-in", failed.member.id)
            desk.stage = "officer"
            self._ask("override_self", member=failed.member.name)
            return self._note(Result(Outcome.OVERRIDE_NOT_OFFICER, **base))
        until = desk.lockouts.locked_until(tapper.id)
        if until is not None:
            return self._refuse_locked(base, tapper, until)
        if not self.roster.pin_hash(tapper.id):
            log.warning("override for %s: officer %s has no PIN in the bundle", failed.member.id, tapper.id)
            self._end_override()
            return self._finish_override(Result(Outcome.OVERRIDE_NO_PIN, **base, extra={"officer": tapper.name}))
        desk.officer_tapped(tapper)
        self._ask("override_pin", member=failed.member.name, officer=tapper.name)
        return self._note(Result(Outcome.OVERRIDE_PIN, **base, extra={"officer": tapper.name}))

    async def override_pin(self, pin: str) -> dict[str, Any]:
        """The officer's PIN from the touch pad: right → the member's record; wrong → attempts left or the lockout."""
        async with self._flow:
            desk = self.override
            if not desk or desk.stage != "pin" or desk.officer is None or desk.failed is None:
                return {"result": "not_pending"}
            failed, officer = desk.failed, desk.officer
            base = dict(member=failed.member.id, name=failed.member.name, meeting=failed.meeting.id)
            until = desk.lockouts.locked_until(officer.id)
            if until is not None:
                self._refuse_locked(base, officer, until)
                return {"result": "locked"}
            if await asyncio.to_thread(desk.check_pin, pin, self.roster.pin_hash(officer.id)):
                desk.lockouts.right(officer.id)
                self._end_override()
                result = await self._override_record(failed, officer, base)
                self._finish_override(result)
                return {"result": "right" if result.outcome is Outcome.OVERRIDE_ACCEPTED else result.outcome.value}
            left, until = desk.lockouts.wrong(officer.id)
            log.warning("override for %s: wrong PIN of officer %s, %d attempt(s) left", failed.member.id, officer.id, left)
            if until is not None:
                self._refuse_locked(base, officer, until)
                return {"result": "locked"}
            self._ask("override_wrong_pin", left=str(left), member=failed.member.name, officer=officer.name)
            self._note(Result(Outcome.OVERRIDE_WRONG_PIN, **base, extra={"left": str(left)}))
            return {"result": "wrong", "left": left}

    async def _override_record(self, failed: Failed, officer: Any, base: dict[str, Any]) -> Result:
        proof = Proof(card_kind=failed.card_kind, face_distance=failed.distance, face_threshold=failed.threshold,
                      liveness=failed.liveness, override=officer.id, override_reason=failed.reason)
        try:
            record = await asyncio.to_thread(self.outbox.append, meeting=failed.meeting.id, member=failed.member.id,
                                             proof=proof, time_reading=self.clock.reading())
        except AlreadyCheckedIn as exc:
            return Result(Outcome.ALREADY, **base, seq=exc.seq)
        except DiskFullError as exc:
            log.error("override check-in of %s refused: %s", failed.member.id, exc)
            return Result(Outcome.DISK_FULL, **base, detail=str(exc))
        log.info("override: %s checked in by officer %s after %s", failed.member.id, officer.id, failed.reason)
        return Result(Outcome.OVERRIDE_ACCEPTED, **base, seq=record.seq, distance=failed.distance,
                      extra={"officer": officer.name, "meeting_title": failed.meeting.title})

    def _refuse_locked(self, base: dict[str, Any], officer: Any, until: float) -> Result:
        assert self.override is not None
        self._end_override()
        end, today = datetime.fromtimestamp(until, self.tz), datetime.fromtimestamp(self.override.lockouts.now(), self.tz)
        # lockouts double up to a day: one that ends on another day names the day too
        shown = end.strftime("%H:%M") if end.date() == today.date() else end.strftime("%H:%M %d/%m")
        return self._finish_override(Result(Outcome.OVERRIDE_LOCKED, **base, extra={
            "until": shown, "attempts": str(self.override.lockouts.attempts), "officer": officer.name}))

    def _finish_override(self, result: Result) -> Result:
        """A final override screen (confirmed, locked, no PIN): shown like a verdict, then idle."""
        self._finish(result)
        return result

    def _note(self, result: Result) -> Result:
        self.results.append(result)
        del self.results[:-100]
        if self.on_result:
            self.on_result(result, self._event)
        return result

    def _ask(self, screen: str, **fields: str) -> None:
        """An override step waiting for the officer: its screen, and a fresh expiry."""
        assert self.override is not None
        self.display.show(screen, tone="ask", name=fields.get("member"), override=self.override.stage, **fields)
        if self._expiry_task:
            self._expiry_task.cancel()
        self._expiry_task = asyncio.get_running_loop().create_task(self._expire(self.override.pending_s))

    def _end_override(self) -> None:
        if self._expiry_task:
            self._expiry_task.cancel()
            self._expiry_task = None
        if self.override:
            self.override.clear()

    async def _expire(self, after: float) -> None:
        await asyncio.sleep(after)
        async with self._flow:
            if self.override and self.override.stage in ("officer", "pin"):
                log.info("override for %s expired without progress", self.override.failed.member.id if self.override.failed else "?")
                self._expiry_task = None
                self.override.clear()
                self.display.show("idle")
