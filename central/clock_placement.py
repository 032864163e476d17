"""Placing a record in time without trusting the kiosk's clock blindly.

A Raspberry Pi has no RTC: it may boot with 1970, or with the time it last shut
down (fake-hwclock), and be NTP-synchronised only later — or never while the
hall's network is down. Each record carries the evidence (``time.wall``,
``time.synced``, ``time.boot_id``, ``time.monotonic``); central decides when the
record happened (``placed_at``), how it knows (``placed_by``) and what a person
should doubt (``clock_flag``, ``None`` when nothing is doubtful).

Rules, with ``TOLERANCE_S`` = 120 s and ``received`` = when central received the
record (a record held for a gap keeps the time it arrived, not the time it was
appended):

1. Unreadable wall, or a year before ``MIN_YEAR`` (the clock was never set):
   flagged "clock not set (year 1970)"; placed by the boot anchor if there is
   one (rule 4), else at ``received`` (placed_by ``received``).
2. Wall later than ``received`` + tolerance: flagged "device clock ahead by N s";
   placed by the boot anchor when the record is unsynchronised and one exists,
   else at ``received``. A clock cannot be ahead of the moment central got the
   record, whatever ``synced`` says.
3. Synchronised and not ahead: placed at the wall (``device-synced``). Such a
   record is an *anchor* for its boot.
4. Not synchronised, with an anchor of the same device and boot (the nearest
   preceding one, or — when it arrives later — the first following one):
   placed at anchor.wall + (monotonic − anchor.monotonic) (``boot-anchor``),
   since the monotonic clock is right within one boot even when the wall clock
   is not. Flagged "device clock differs by ±N s (placed from record K of the
   same boot)" only if the wall is off by more than the tolerance.
5. Not synchronised, no anchor: placed at min(wall, received)
   (``device-unsynced`` or ``received``), flagged "clock not synchronised; time
   unverified". When an anchor for that boot arrives later, such records are
   placed again by rule 4 (their attendance time moves with them).

Independently, between a record and the previous record of the same device
(seq − 1) in the same boot: if the wall clock advanced by more or less than the
monotonic clock, by over the tolerance, the record is flagged "clock jumped by
±N s since record K". A jump at the moment the clock became synchronised
(previous unsynchronised, this one synchronised) is the clock being set, not a
fault: it is not flagged here, and the earlier records get rule 4.

A monotonic reading that no running system can have (negative, not finite, or over
``MAX_MONOTONIC_S``; the contract refuses such records, but rows stored before it did
may hold one) is never used for arithmetic: the record gets no boot anchor and no jump
check, is flagged "monotonic clock reading … is impossible" and is placed by rules 1–3
and 5 alone (at ``received`` when the wall is not trusted either).

Flags are joined with "; ". Times are ISO 8601 UTC with milliseconds and a Z,
like the rest of central.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from contract.records import MAX_MONOTONIC_S

TOLERANCE_S = 120.0
MIN_YEAR = 2024

DEVICE_SYNCED, BOOT_ANCHOR, DEVICE_UNSYNCED, RECEIVED = "device-synced", "boot-anchor", "device-unsynced", "received"
NOT_SYNCED = "clock not synchronised; time unverified"


class Executes(Protocol):
    def execute(self, sql: str, params: Any = ..., /) -> Any: ...


def parse_time(text: str) -> datetime | None:
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except (ValueError, TypeError):
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Evidence:
    """One record's clock reading, as stored in ``records``."""

    seq: int
    wall: str
    synced: bool
    boot_id: str
    monotonic: float
    when: datetime | None = field(init=False, compare=False, repr=False)  # ``wall`` parsed once

    def __post_init__(self) -> None:
        object.__setattr__(self, "when", parse_time(self.wall))

    @property
    def monotonic_ok(self) -> bool:
        m = self.monotonic
        return isinstance(m, (int, float)) and math.isfinite(m) and 0 <= m <= MAX_MONOTONIC_S


@dataclass(frozen=True)
class Placement:
    placed_at: str
    placed_by: str
    flag: str | None


def _seconds(delta: timedelta) -> int:
    return round(delta.total_seconds())


def _anchored(ev: Evidence, anchor: Evidence, received: datetime) -> tuple[datetime, str, list[str]]:
    try:
        placed = anchor.when + timedelta(seconds=ev.monotonic - anchor.monotonic)  # type: ignore[operator]
    except OverflowError:  # a date before year 1 or after 9999: the anchor is no help
        return received, RECEIVED, [f"boot anchor (record {anchor.seq}) places it outside the calendar"]
    if placed > received + timedelta(seconds=TOLERANCE_S):
        # Only a device misreporting its boot could get here; central's own clock wins.
        return received, RECEIVED, [f"boot anchor (record {anchor.seq}) places it {_seconds(placed - received)} s after it was received"]
    return placed, BOOT_ANCHOR, []


def decide(ev: Evidence, received_at: str | datetime, anchor: Evidence | None) -> tuple[str, str, list[str]]:
    """Rules 1–5 for one record; ``anchor``: a trusted record of the same device and boot, if any."""
    received = received_at if isinstance(received_at, datetime) else parse_time(received_at)
    assert received is not None, received_at
    wall = ev.when
    problem: str | None = None
    absurd: list[str] = []
    if not ev.monotonic_ok:
        absurd = [f"monotonic clock reading {ev.monotonic!r} s is impossible"]
        anchor = None
    if wall is None:
        problem = f"device time unreadable ({ev.wall[:40]!r})"
    elif wall.year < MIN_YEAR:
        problem = f"clock not set (year {wall.year})"
    elif wall > received + timedelta(seconds=TOLERANCE_S):
        problem = f"device clock ahead by {_seconds(wall - received)} s"
    if problem is None and ev.synced:
        # Kiosks already write central's form (ms, Z); formatting it again would only cost time.
        placed_at = ev.wall if len(ev.wall) == 24 and ev.wall[19] == "." and ev.wall[23] == "Z" else iso(wall)  # type: ignore[arg-type]
        return placed_at, DEVICE_SYNCED, absurd
    if not ev.synced and anchor is not None:
        placed, by, flags = _anchored(ev, anchor, received)
        source = f"placed from record {anchor.seq} of the same boot"
        if by == RECEIVED:
            flags = [problem, *flags] if problem else flags
        elif problem is not None:
            flags = [f"{problem} ({source})"]
        elif wall is not None and abs((wall - placed).total_seconds()) > TOLERANCE_S:
            flags = [f"device clock differs by {_seconds(wall - placed):+d} s ({source})"]
        return iso(placed), by, flags
    if problem is not None:
        return iso(received), RECEIVED, [problem, *absurd]
    assert wall is not None
    if wall <= received:
        return iso(wall), DEVICE_UNSYNCED, [NOT_SYNCED, *absurd]
    return iso(received), RECEIVED, [NOT_SYNCED, *absurd]


def jump(ev: Evidence, prev: Evidence | None) -> str | None:
    """The jump flag against the previous record of the device (seq − 1), if in the same boot."""
    if prev is None or prev.seq != ev.seq - 1 or prev.boot_id != ev.boot_id or (ev.synced and not prev.synced):
        return None
    if not (ev.monotonic_ok and prev.monotonic_ok):
        return None
    wall, prev_wall = ev.when, prev.when
    if wall is None or prev_wall is None:
        return None
    drift = (wall - prev_wall).total_seconds() - (ev.monotonic - prev.monotonic)
    if abs(drift) <= TOLERANCE_S:
        return None
    return f"clock jumped by {round(drift):+d} s since record {prev.seq}"


_EVIDENCE = "seq, device_wall, synced, boot_id, monotonic"


def _evidence(row: Any) -> Evidence | None:
    return None if row is None else Evidence(row[0], row[1], bool(row[2]), row[3], row[4])


class ClockPlacer:
    """Places records as ingest appends them, inside its transaction.

    While a batch runs (``begin``/``end``) it remembers the last record appended
    per device, and which boots are known to have no unanchored records, so the
    common case (a synced record following a synced record) costs no query.
    ``forget`` drops that memory: call it when a savepoint is rolled back.
    """

    def __init__(self, db: Executes):
        self.db = db
        self._last: dict[str, Evidence] | None = None
        self._settled: set[tuple[str, str]] | None = None

    def begin(self) -> None:
        self._last, self._settled = {}, set()

    def end(self) -> None:
        self._last = self._settled = None

    def forget(self) -> None:
        if self._last is not None:
            self.begin()

    def _previous(self, device: str, seq: int) -> Evidence | None:
        if self._last is not None:
            last = self._last.get(device)
            if last is not None and last.seq == seq - 1:
                return last
        return _evidence(self.db.execute(f"SELECT {_EVIDENCE} FROM records WHERE device = ? AND seq = ?", [device, seq - 1]).fetchone())

    def _anchor(self, device: str, ev: Evidence) -> Evidence | None:
        before = self.db.execute(
            f"SELECT {_EVIDENCE} FROM records WHERE device = ? AND boot_id = ? AND placed_by = '{DEVICE_SYNCED}' AND seq < ? "
            "ORDER BY seq DESC LIMIT 1", [device, ev.boot_id, ev.seq]).fetchone()
        found = _evidence(before)
        return found if found is not None and found.monotonic_ok else None

    def place(self, device: str, ev: Evidence, received_at: str | datetime) -> Placement:
        anchor = None if ev.synced else self._anchor(device, ev)
        placed_at, placed_by, flags = decide(ev, received_at, anchor)
        jumped = jump(ev, self._previous(device, ev.seq))
        if jumped:
            flags.append(jumped)
        return Placement(placed_at, placed_by, "; ".join(flags) or None)

    def stored(self, device: str, ev: Evidence, placement: Placement) -> None:
        """After the record's row is written: remember it, and let a new anchor place earlier records of its boot."""
        if self._last is not None:
            self._last[device] = ev
        if placement.placed_by != DEVICE_SYNCED or not ev.monotonic_ok:
            if not ev.synced and placement.placed_by != BOOT_ANCHOR and self._settled is not None:
                self._settled.discard((device, ev.boot_id))
            return
        key = (device, ev.boot_id)
        if self._settled is not None and key in self._settled:
            return
        self._reanchor(device, ev)
        if self._settled is not None:
            self._settled.add(key)

    def _reanchor(self, device: str, anchor: Evidence) -> None:
        rows = self.db.execute(
            f"SELECT {_EVIDENCE}, received_at FROM records WHERE device = ? AND boot_id = ? AND synced = 0 "
            f"AND placed_by <> '{BOOT_ANCHOR}' AND seq < ? ORDER BY seq", [device, anchor.boot_id, anchor.seq]).fetchall()
        for row in rows:
            ev = _evidence(row)
            assert ev is not None
            placed_at, placed_by, flags = decide(ev, row[5], anchor)
            jumped = jump(ev, _evidence(self.db.execute(
                f"SELECT {_EVIDENCE} FROM records WHERE device = ? AND seq = ?", [device, ev.seq - 1]).fetchone()))
            if jumped:
                flags.append(jumped)
            flag = "; ".join(flags) or None
            self.db.execute("UPDATE records SET placed_at = ?, placed_by = ?, clock_flag = ? WHERE device = ? AND seq = ?",
                            [placed_at, placed_by, flag, device, ev.seq])
            self.db.execute("UPDATE attendance SET checked_in_at = ? WHERE device = ? AND seq = ?", [placed_at, device, ev.seq])
