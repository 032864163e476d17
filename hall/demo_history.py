"""The demo cell's past months at central, so the attendance pages have a history to show on first run.

Six monthly meetings before this month, each closed by its secretary, with check-ins on time and late, an excuse
entered before the close and one after it (an amendment), and absences without reason (one member reaches the
warning level, another the Party's rule level). The check-ins are real signed records of the hall's previous
kiosk, chained and stored through central's own ingest; that kiosk is then revoked (it was replaced by the
demo's), so nothing here can be told from data a real kiosk sent.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from nacl.signing import SigningKey

from contract import GENESIS_HASH, DeviceTime, Proof, RecordBody, Topics, public_key_text, sign_record

MONTHS = 6
BY = "demo"
# member -> status per past meeting, oldest first: "p" on time, "l" 25 min late, "e" excused before the close,
# "a" excused after the close (an amendment), "u" absent without reason. Enough to show every status, a
# warning (2 unexcused) and the rule level (3).
PATTERN = {
    "M001": "puppup",  # Barack Obama: 2 unexcused -> warning
    "M002": "pupuup",  # Joe Biden: 3 unexcused -> rule level
    "M003": "ppplpp",  # Kit Harington (chair)
    "M004": "ppeppp",  # Rose Leslie (secretary)
    "M006": "plpppa",  # Trần Văn Sống
}


def past_months(now: datetime, count: int = MONTHS) -> list[tuple[int, int]]:
    """(year, month) of the ``count`` months before ``now``'s, oldest first."""
    year, month, out = now.year, now.month, []
    for _ in range(count):
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
        out.append((year, month))
    return out[::-1]


def seed_history(store, *, cell: str, hall: str, now: datetime | None = None) -> list[str]:
    """Add the past meetings (idempotent: nothing if they are there); returns their ids."""
    from central import attendance_sheet, membership, registry
    from central.ingest import Ingest

    now = now or datetime.now(UTC)
    months = past_months(now)
    ids = [f"MEET-{y:04d}{m:02d}10" for y, m in months]
    if store.scalar("SELECT 1 FROM meetings WHERE id = ?", [ids[0]]):
        return ids  # `hall demo --keep`: already seeded
    first = f"{months[0][0]:04d}-{months[0][1]:02d}-01"
    for member in PATTERN:
        if len(membership.history(store, member)) == 1:  # only the join of today's enrolment: date it back
            membership.set_joined(store, member, first, by=BY)
    key = SigningKey.generate()  # the previous kiosk's: used for these records only, then revoked
    device = registry.add_device(store, public_key_text(key), hall, position="máy cũ (đã thay)")
    ingest, topics = Ingest(store, Topics()), Topics()
    seq, prev = 0, GENESIS_HASH
    for (year, month), meeting_id, k in zip(months, ids, range(len(ids)), strict=True):
        starts = datetime(year, month, 10, 12, 0, tzinfo=UTC)  # 19:00 in the hall (UTC+7)
        ends = starts + timedelta(hours=2, minutes=30)
        registry.add_meeting(store, meeting_id, cell=cell, hall=hall, title=f"Sinh hoạt chi bộ thường kỳ tháng {month}",
                             starts=starts, ends=ends)
        with store.transaction(), ingest.batch():
            for member, statuses in PATTERN.items():
                if statuses[k] not in "pl":
                    continue
                at = starts + timedelta(minutes=25 if statuses[k] == "l" else 2)
                body = RecordBody(device=device, seq=seq + 1, prev=prev, meeting=meeting_id, member=member,
                                  proof=Proof(card_kind="member_card", face_distance=0.38, face_threshold=0.5),
                                  time=DeviceTime(wall=at.strftime("%Y-%m-%dT%H:%M:%SZ"), synced=True, boot_id="demo-old",
                                                  monotonic=(at - starts).total_seconds() + 86_400 * k))
                record = sign_record(key, body)
                seq, prev = record.seq, record.hash
                ingest.handle(topics.attendance(device), record.to_wire())
        for member, statuses in PATTERN.items():
            if statuses[k] == "e":
                attendance_sheet.record_excuse(store, meeting_id, member, "illness", "báo trước qua điện thoại", by=BY,
                                               now=starts - timedelta(hours=3))
        attendance_sheet.close(store, meeting_id, by=BY, now=ends)
        for member, statuses in PATTERN.items():
            if statuses[k] == "a":  # the excuse came two days later: an amendment of the closed sheet
                attendance_sheet.record_excuse(store, meeting_id, member, "work", "đi công tác, báo sau", by=BY,
                                               now=ends + timedelta(days=2))
    registry.revoke_device(store, device)
    return ids
