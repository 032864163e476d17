"""A synthetic year (2025) of one commune's cells, planned first and then built through central's real functions.

The plan says who belongs to which cell on which day, who checks in when, who is excused before the close and
who only afterwards (an amendment). ``build`` replays it in date order: the registry and membership history, signed
check-in records through the ingest (so the record validity and clock placement of real kiosks apply), excuses,
closes and amendments through central/attendance_sheet.py. Tests compute the figures they expect from the plan
alone, never from the code under test.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from central import attendance_sheet, membership, registry
from central.ingest import Ingest
from central.store import Store
from contract import DeviceTime, Proof, RecordBody, Topics, sign_record
from tests.central import Device

YEAR = 2025
ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
PROVINCE = "Hà Nội"
COMMUNE, OTHER_COMMUNE = "Hoàn Kiếm", "Ba Đình"
BY = "test-secretary"
LATE_AFTER_MIN = 15
BEFORE = date(YEAR - 1, 12, 1)  # everyone of the first roster joined then
NOW = datetime(YEAR + 1, 2, 1, 12, 0, tzinfo=UTC)  # "now" for the roll-ups: the year is over


@dataclass
class Meeting:
    id: str
    cell: str
    starts: datetime  # aware, UTC
    closed: bool = True

    @property
    def ends(self) -> datetime:
        return self.starts + timedelta(hours=2)

    @property
    def day(self) -> date:
        return self.starts.astimezone(ZONE).date()


@dataclass
class Plan:
    cells: dict[str, str]  # cell -> commune name
    names: dict[str, str]  # member -> name
    stays: dict[str, list[tuple[str, date, date | None]]]  # member -> [(cell, from, until exclusive)]
    standing: dict[str, list[tuple[date, str]]]  # member -> [(from, probationary|official)]
    events: list[tuple[date, str, str, tuple]] = field(default_factory=list)  # (day, kind, member, args)
    meetings: list[Meeting] = field(default_factory=list)
    # (meeting, member) -> ("in", minutes after the start) | ("excused", reason) | ("excused_late", reason)
    # | ("absent",); a member expected and not listed is absent
    outcome: dict[tuple[str, str], tuple] = field(default_factory=dict)

    def cell_on(self, member: str, day: date) -> str | None:
        for cell, start, until in self.stays[member]:
            if start <= day and (until is None or day < until):
                return cell
        return None

    def standing_on(self, member: str, day: date) -> str | None:
        found = None
        for start, kind in self.standing.get(member, []):
            if start <= day:
                found = kind
        return found

    def expected(self, m: Meeting) -> list[str]:
        return sorted(x for x in self.names if self.cell_on(x, m.day) == m.cell)

    def status(self, m: Meeting, member: str) -> str:
        """What the member's row must say now, from the plan alone."""
        what = self.outcome.get((m.id, member), ("absent",))
        if what[0] == "in":
            return "late" if what[1] > LATE_AFTER_MIN else "present"
        if what[0] == "excused" or (what[0] == "excused_late" and m.closed):
            return "excused"
        return "unexcused"


def plan_year(seed: int = 11) -> Plan:
    rnd = random.Random(seed)
    cells = {"cb-a": COMMUNE, "cb-b": COMMUNE, "cb-c": COMMUNE, "cb-d": OTHER_COMMUNE}
    names, stays, standing = {}, {}, {}
    for cell in cells:
        for i in range(1, 9):
            member = f"{cell[-1]}{i:02d}"
            names[member] = f"Đảng viên {cell[-1].upper()}{i:02d}"
            stays[member] = [(cell, BEFORE, None)]
            standing[member] = [(BEFORE, "official")]
    plan = Plan(cells, names, stays, standing)

    def move(member: str, to: str, on: date) -> None:
        cell, start, _ = plan.stays[member][-1]
        plan.stays[member][-1] = (cell, start, on)
        plan.stays[member].append((to, on, None))
        plan.events.append((on, "transfer", member, (to,)))

    # Transfers mid-year: inside the commune, and out to the other commune of the province.
    move("a02", "cb-b", date(YEAR, 6, 20))
    move("b03", "cb-d", date(YEAR, 4, 10))
    # A member who left, and one who joined mid-year as probationary and was made official.
    cell, start, _ = plan.stays["c01"][0]
    plan.stays["c01"] = [(cell, start, date(YEAR, 8, 15))]
    plan.events.append((date(YEAR, 8, 15), "leave", "c01", ("left",)))
    names["c09"] = "Đảng viên C09 (mới)"
    plan.stays["c09"] = [("cb-c", date(YEAR, 3, 15), None)]
    plan.standing["c09"] = [(date(YEAR, 3, 15), "probationary")]
    plan.events.append((date(YEAR, 3, 15), "join", "c09", ("cb-c",)))
    for member, on in (("a05", date(YEAR, 7, 1)), ("c09", date(YEAR, 9, 20)), ("d04", date(YEAR, 2, 2))):
        if member != "c09":
            plan.standing[member] = [(BEFORE, "probationary")]
        plan.standing[member].append((on, "official"))
        plan.events.append((on, "official", member, ()))
    # Monthly meetings. Cell B meets on the 1st at 06:30 in Hà Nội: 23:30 UTC the day before, in the previous
    # month by UTC's calendar. Cell C does not meet in November; its December meeting is never closed (live).
    hours = {"cb-a": (5, 19, 0), "cb-b": (1, 6, 30), "cb-c": (8, 14, 0), "cb-d": (12, 8, 0)}
    for month in range(1, 13):
        for cell, (day, hour, minute) in hours.items():
            if cell == "cb-c" and month == 11:
                continue
            starts = datetime(YEAR, month, day, hour, minute, tzinfo=ZONE).astimezone(UTC)
            plan.meetings.append(Meeting(f"{cell}-{YEAR}-{month:02d}", cell, starts,
                                         closed=not (cell == "cb-c" and month == 12)))
    plan.meetings.sort(key=lambda m: (m.starts, m.id))
    for m in plan.meetings:
        for member in plan.expected(m):
            roll = rnd.random()
            if roll < 0.55:
                plan.outcome[(m.id, member)] = ("in", rnd.randint(-25, LATE_AFTER_MIN))
            elif roll < 0.75:
                plan.outcome[(m.id, member)] = ("in", rnd.randint(LATE_AFTER_MIN + 1, 90))
            elif roll < 0.85:
                plan.outcome[(m.id, member)] = ("excused", rnd.choice(list(attendance_sheet.REASONS)))
            elif roll < 0.92:
                plan.outcome[(m.id, member)] = ("excused_late", rnd.choice(list(attendance_sheet.REASONS)))
            else:
                plan.outcome[(m.id, member)] = ("absent",)
    # Early warnings, made sure of: a03 misses three meetings without a reason (the rule level); b03 misses two in
    # cell B before the transfer and one in cell D after (summed across cells); a04 misses three, but one is excused
    # late (an amendment), which leaves a warning.
    forced = {}
    for meeting, member, what in (("cb-a-2025-01", "a03", ("absent",)), ("cb-a-2025-02", "a03", ("absent",)),
                                  ("cb-a-2025-03", "a03", ("absent",)), ("cb-b-2025-02", "b03", ("absent",)),
                                  ("cb-b-2025-03", "b03", ("absent",)), ("cb-d-2025-05", "b03", ("absent",)),
                                  ("cb-a-2025-04", "a04", ("absent",)), ("cb-a-2025-05", "a04", ("absent",)),
                                  ("cb-a-2025-06", "a04", ("excused_late", "illness"))):
        plan.outcome[(meeting, member)] = forced[(meeting, member)] = what
    for m in plan.meetings:  # nobody else reaches a level by chance: it would blur what the test shows
        for member in plan.expected(m):
            if (m.id, member) not in forced and plan.outcome[(m.id, member)][0] == "absent":
                plan.outcome[(m.id, member)] = ("in", 3)
    return plan


class Builder:
    """Replays a plan into a store through the registry, the membership history, the ingest and the sheet."""

    def __init__(self, store: Store, plan: Plan):
        self.store, self.plan = store, plan
        self.ingest = Ingest(store, Topics())
        self.devices: dict[str, Device] = {}
        self.monotonic_base = datetime(YEAR - 1, 1, 1, tzinfo=UTC)

    def build(self) -> None:
        s, plan = self.store, self.plan
        for cell, commune in plan.cells.items():
            hall = f"hall-{cell}"
            registry.add_hall(s, hall, f"Hội trường {cell}", commune=commune, province=PROVINCE)
            registry.add_cell(s, cell, f"Chi bộ {cell[-1].upper()}", commune=commune, province=PROVINCE)
            self.devices[cell] = Device()
            registry.add_device(s, self.devices[cell].public_key, hall)
        for member in sorted(plan.names):
            cell, start, _ = plan.stays[member][0]
            if start == BEFORE:
                self._join(member, cell, start)
        for m in plan.meetings:
            registry.add_meeting(s, m.id, cell=m.cell, hall=f"hall-{m.cell}", title=f"Sinh hoạt chi bộ {m.id[-7:]}",
                                 starts=m.starts, ends=m.ends)
        steps = [(day, 0, kind, member, args) for day, kind, member, args in plan.events]
        steps += [(m.day, 1, "meeting", m.id, (m,)) for m in plan.meetings]
        for _, _, kind, who, args in sorted(steps, key=lambda x: x[:4]):
            getattr(self, f"_{kind}")(who, *args)

    def _join(self, member: str, cell: str, on: date | None = None) -> None:
        on = on or self.plan.stays[member][0][1]
        registry.add_member(self.store, member, self.plan.names[member], cell)
        membership.set_joined(self.store, member, on.isoformat(), by=BY)
        first = self.plan.standing[member][0]
        membership.set_standing(self.store, member, first[1], first[0].isoformat(), by=BY)

    def _transfer(self, member: str, to: str) -> None:
        on = next(start for cell, start, _ in self.plan.stays[member] if cell == to)
        membership.transfer(self.store, member, to, on.isoformat(), by=BY)

    def _leave(self, member: str, reason: str) -> None:
        membership.leave(self.store, member, reason, self.plan.stays[member][-1][2].isoformat(), by=BY)

    def _official(self, member: str) -> None:
        on = self.plan.standing[member][-1][0]
        membership.set_standing(self.store, member, "official", on.isoformat(), by=BY)

    def _meeting(self, _: str, m: Meeting) -> None:
        plan = self.plan
        check_ins = sorted((what[1], member) for (mid, member), what in plan.outcome.items() if mid == m.id and what[0] == "in")
        with self.store.transaction(), self.ingest.batch():
            for minutes, member in check_ins:
                self.ingest.handle(Topics().attendance(self.devices[m.cell].id),
                                   self._record(m, member, m.starts + timedelta(minutes=minutes)))
        assert self.store.scalar("SELECT COUNT(*) FROM attendance WHERE meeting = ?", [m.id]) == len(check_ins), m.id
        excuses = {member: what for (mid, member), what in plan.outcome.items() if mid == m.id and what[0].startswith("excused")}
        during = m.starts + timedelta(minutes=30)
        for member, what in sorted(excuses.items()):
            if what[0] == "excused":
                attendance_sheet.record_excuse(self.store, m.id, member, what[1], "báo trước", by=BY, now=during,
                                               late_after_min=LATE_AFTER_MIN)
        if not m.closed:
            return
        attendance_sheet.close(self.store, m.id, by=BY, now=m.ends + timedelta(minutes=10), late_after_min=LATE_AFTER_MIN)
        for member, what in sorted(excuses.items()):
            if what[0] == "excused_late":  # after the close: recorded as an amendment
                done = attendance_sheet.record_excuse(self.store, m.id, member, what[1], "báo sau", by=BY,
                                                      now=m.ends + timedelta(days=2), late_after_min=LATE_AFTER_MIN)
                assert done["amended"] is True

    def _record(self, m: Meeting, member: str, at: datetime) -> bytes:
        device = self.devices[m.cell]
        body = RecordBody(
            device=device.id, seq=device.seq + 1, prev=device.prev, meeting=m.id, member=member,
            proof=Proof(card_kind="member_card", face_distance=0.3, face_threshold=0.5),
            time=DeviceTime(wall=at.strftime("%Y-%m-%dT%H:%M:%SZ"), synced=True, boot_id="boot-1",
                            monotonic=(at - self.monotonic_base).total_seconds()),
        )
        rec = sign_record(device.key, body)
        device.seq, device.prev = rec.seq, rec.hash
        return rec.to_wire()


def build_year(store: Store, seed: int = 11) -> Plan:
    plan = plan_year(seed)
    Builder(store, plan).build()
    return plan
