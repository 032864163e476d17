"""A meeting's attendance sheet: who was expected that day, present or late, excused or not, frozen at the close and
amended after it, closed by central itself when nobody did. Check-ins arrive through the real ingest path."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlite_utils import Database

from central import accounts, attendance_sheet, attendance_view, membership, registry
from central.attendance_sheet import Conflict, meeting_day
from central.collector import process_batch
from central.errors import NotFound, RegistryError
from central.ingest import Ingest
from central.service import AutoClose
from central.store import migrations, open_store
from contract import DeviceTime, Proof, RecordBody, Topics, sign_record
from hall.cli import main
from tests.central import Device, wait_until

BY = "secretary-test"


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class World:
    """Cells C1 and C2 in hall H1, members joined long ago, one kiosk, meetings in the past."""

    store: object
    device: Device
    ingest: Ingest

    def meeting(self, meeting_id: str, starts: datetime, *, cell: str = "C1", hours: float = 2.0) -> dict:
        registry.add_meeting(self.store, meeting_id, cell=cell, hall="H1", title=f"Sinh hoạt {meeting_id}",
                             starts=iso(starts), ends=iso(starts + timedelta(hours=hours)))
        return registry.get_meeting(self.store, meeting_id)

    def check_in(self, member: str, meeting: str, at: datetime, *, override: str | None = None) -> None:
        """A kiosk's signed record, synchronised clock, through the collector's batch path."""
        d = self.device
        proof = (Proof(card_kind="member_card", face_distance=0.62, face_threshold=0.5, override=override,
                       override_reason="face_mismatch") if override else
                 Proof(card_kind="member_card", face_distance=0.3, face_threshold=0.5))
        body = RecordBody(device=d.id, seq=d.seq + 1, prev=d.prev, meeting=meeting, member=member, proof=proof,
                          time=DeviceTime(wall=iso(at), synced=True, boot_id=f"boot-{d.seq + 1}", monotonic=100.0))
        record = sign_record(d.key, body)
        d.seq, d.prev = record.seq, record.hash
        process_batch(self.ingest, [(Topics().attendance(d.id), record.to_wire(), False)])


def make_world(path: Path) -> World:
    store = open_store(path)
    registry.add_hall(store, "H1", "Hội trường xã", commune="Xã Gia Bình", province="Bắc Ninh")
    registry.add_cell(store, "C1", "Chi bộ thôn 1")
    registry.add_cell(store, "C2", "Chi bộ thôn 2")
    for member, name, cell in (("an", "Nguyễn Văn An", "C1"), ("binh", "Trần Thị Bình", "C1"),
                               ("cuong", "Lê Văn Cường", "C1"), ("dung", "Phạm Thị Dung", "C2")):
        registry.add_member(store, member, name, cell)
        membership.set_joined(store, member, "2024-01-01", by=BY)
    device = Device()
    registry.add_device(store, device.public_key, "H1")
    return World(store, device, Ingest(store, Topics()))


@pytest.fixture
def world(tmp_path):
    w = make_world(tmp_path / "central")
    yield w
    w.store.close()


def days_ago(n: int) -> datetime:
    """08:00 in the halls' time zone, ``n`` days ago (01:00 UTC)."""
    day = (datetime.now(UTC) - timedelta(days=n)).date()
    return datetime.combine(day, time(1, 0), tzinfo=UTC)


def rows(s: dict) -> dict[str, dict]:
    return {m["member"]: m for m in s["members"]}


def test_a_check_in_up_to_late_after_min_minutes_after_the_start_is_present_and_after_it_late(world):
    start = days_ago(3)
    world.meeting("mt1", start)
    world.check_in("an", "mt1", start - timedelta(minutes=10))
    world.check_in("binh", "mt1", start + timedelta(minutes=15))  # exactly at the boundary: still present
    world.check_in("cuong", "mt1", start + timedelta(minutes=15, seconds=1))
    s = attendance_sheet.sheet(world.store, "mt1", late_after_min=15)
    got = {m: (r["status"], r["minutes_late"]) for m, r in rows(s).items()}
    assert got == {"an": ("present", None), "binh": ("present", None), "cuong": ("late", 15)}
    assert (s["totals"]["present"], s["totals"]["late"], s["totals"]["attended"], s["totals"]["rate"]) == (2, 1, 3, 1.0)
    # the setting decides: with 10 minutes, binh is late too
    s = attendance_sheet.sheet(world.store, "mt1", late_after_min=10)
    assert [rows(s)[m]["status"] for m in ("an", "binh", "cuong")] == ["present", "late", "late"]
    # each counted check-in carries its record's hash, as stored by central
    stored = world.store.scalar("SELECT hash FROM records WHERE member = 'an'")
    assert rows(s)["an"]["hash"] == stored and rows(s)["an"]["device"] == world.device.id


def test_expected_are_the_cell_s_members_on_the_meeting_s_day_and_a_later_arrival_is_not_counted_in_the_rate(world):
    first, second = days_ago(9), days_ago(2)
    world.meeting("before", first)
    world.meeting("after", second)
    # binh moves to C2 between the two meetings; dung moves into C1 after both
    membership.transfer(world.store, "binh", "C2", meeting_day(days_ago(5)), by=BY)
    membership.transfer(world.store, "dung", "C1", meeting_day(days_ago(1)), by=BY)
    world.check_in("dung", "before", first + timedelta(minutes=1))  # counted: dung is in C1 now
    before, after = (attendance_sheet.sheet(world.store, m) for m in ("before", "after"))
    assert [(m["member"], m["expected"]) for m in before["members"]] == [  # by name
        ("cuong", True), ("an", True), ("dung", False), ("binh", True)]
    assert rows(before)["dung"]["status"] == "present"
    t = before["totals"]
    assert (t["expected"], t["attended"], t["not_expected"], t["unexcused"], t["rate"]) == (3, 0, 1, 3, 0.0)
    assert sorted(rows(after)) == ["an", "cuong"] and after["totals"]["expected"] == 2


def test_the_meeting_day_is_the_halls_date(world):
    assert meeting_day("2025-06-14T23:30:00Z") == "2025-06-15"  # 06:30 in Hà Nội
    assert meeting_day("2025-06-14T16:59:59Z") == "2025-06-14"
    membership.transfer(world.store, "dung", "C1", "2025-06-15", by=BY)
    world.meeting("early", datetime(2025, 6, 14, 23, 30, tzinfo=UTC))
    s = attendance_sheet.sheet(world.store, "early")
    assert s["meeting"]["day"] == "2025-06-15" and "dung" in rows(s)


def test_a_member_not_checked_in_is_pending_until_the_meeting_ends_then_unexcused(world):
    start = days_ago(1)
    world.meeting("mt1", start)
    world.check_in("an", "mt1", start)
    assert attendance_sheet.sheet(world.store, "mt1", now=start - timedelta(hours=1))["meeting"]["state"] == "upcoming"
    during = attendance_sheet.sheet(world.store, "mt1", now=start + timedelta(hours=1))
    assert during["meeting"]["state"] == "current" and not during["frozen"]
    assert [rows(during)[m]["status"] for m in ("an", "binh", "cuong")] == ["present", "pending", "pending"]
    assert (during["totals"]["pending"], during["totals"]["unexcused"]) == (2, 0)
    ended = attendance_sheet.sheet(world.store, "mt1", now=start + timedelta(hours=2))
    assert ended["meeting"]["state"] == "past"
    assert (ended["totals"]["pending"], ended["totals"]["unexcused"], ended["totals"]["rate"]) == (0, 2, 0.3333)


def test_an_excuse_before_the_close_makes_the_member_excused_with_its_reason_and_is_audited(world):
    start = days_ago(1)
    world.meeting("mt1", start)
    world.check_in("an", "mt1", start)
    assert attendance_sheet.record_excuse(world.store, "mt1", "binh", "illness", "sốt cao", by=BY) == {"amended": False}
    s = attendance_sheet.sheet(world.store, "mt1")
    b = rows(s)["binh"]
    assert (b["status"], b["reason"], b["reason_label"], b["note"]) == ("excused", "illness", "ốm đau", "sốt cao")
    t = s["totals"]
    assert (t["excused"], t["unexcused"], t["rate"], t["rate_excluding_excused"]) == (1, 1, 0.3333, 0.5)
    [entry] = world.store.rows("SELECT actor, detail FROM audit WHERE action = 'attendance.excuse'")
    assert entry["actor"] == BY and '"binh"' in entry["detail"]
    # a second excuse replaces the first
    attendance_sheet.record_excuse(world.store, "mt1", "binh", "work", None, by=BY)
    assert rows(attendance_sheet.sheet(world.store, "mt1"))["binh"]["reason"] == "work"


def test_bad_excuses_are_refused_with_a_clear_reason_and_change_nothing(world):
    start = days_ago(1)
    world.meeting("mt1", start)
    world.check_in("an", "mt1", start)
    before = attendance_sheet.sheet(world.store, "mt1")
    with pytest.raises(RegistryError, match="checked in .* only for an absence"):
        attendance_sheet.record_excuse(world.store, "mt1", "an", "illness", None, by=BY)
    with pytest.raises(RegistryError, match="not expected"):
        attendance_sheet.record_excuse(world.store, "mt1", "dung", "illness", None, by=BY)  # of C2
    with pytest.raises(NotFound):
        attendance_sheet.record_excuse(world.store, "mt1", "nobody", "illness", None, by=BY)
    with pytest.raises(NotFound):
        attendance_sheet.record_excuse(world.store, "mt9", "binh", "illness", None, by=BY)
    with pytest.raises(RegistryError, match="bad reason"):
        attendance_sheet.record_excuse(world.store, "mt1", "binh", "lazy", None, by=BY)
    with pytest.raises(RegistryError, match="at most 500"):
        attendance_sheet.record_excuse(world.store, "mt1", "binh", "other", "x" * 501, by=BY)
    assert attendance_sheet.sheet(world.store, "mt1") == before
    assert world.store.scalar("SELECT COUNT(*) FROM audit WHERE action LIKE 'attendance.%'") == 0


def test_closing_freezes_the_sheet_a_later_check_in_is_stored_but_does_not_change_it(world):
    start = days_ago(1)
    world.meeting("mt1", start)
    world.check_in("an", "mt1", start, override="cuong")  # confirmed by the secretary
    attendance_sheet.record_excuse(world.store, "mt1", "binh", "leave", None, by=BY)
    with pytest.raises(RegistryError, match="once it has started"):
        attendance_sheet.close(world.store, "mt1", by=BY, now=start - timedelta(minutes=1))
    closed = attendance_sheet.close(world.store, "mt1", by=BY, now=start + timedelta(minutes=50))  # before its end
    assert closed["frozen"] and closed["meeting"]["closed_by"] == BY
    assert {m: r["status"] for m, r in rows(closed).items()} == {"an": "present", "binh": "excused", "cuong": "unexcused"}
    assert rows(closed)["an"]["override"] is True and closed["totals"]["overrides"] == 1
    # a kiosk that was offline delivers cuong's check-in after the close: stored and counted, the sheet stays
    world.check_in("cuong", "mt1", start + timedelta(minutes=5))
    assert world.store.scalar("SELECT COUNT(*) FROM attendance WHERE meeting = 'mt1' AND member = 'cuong'") == 1
    again = attendance_sheet.sheet(world.store, "mt1")
    assert rows(again)["cuong"]["status"] == "unexcused" and again["totals"] == closed["totals"]
    # closed before its scheduled end, it is over: not "in progress" on the page
    assert attendance_sheet.sheet(world.store, "mt1", now=start + timedelta(minutes=55))["meeting"]["state"] == "past"
    with pytest.raises(Conflict, match="was closed"):
        attendance_sheet.close(world.store, "mt1", by="someone-else")
    totals = world.store.row("SELECT * FROM meeting_totals WHERE meeting = 'mt1'")
    assert (totals["expected"], totals["present"], totals["excused"], totals["unexcused"], totals["overrides"]) == (
        3, 1, 1, 1, 1)
    assert (totals["day"], totals["commune_code"]) == (meeting_day(start), registry.get_hall(world.store, "H1")["commune_code"])
    # the frozen columns cannot be edited behind the sheet's back
    with pytest.raises(sqlite3.DatabaseError, match="frozen"):
        with world.store.transaction() as db:
            db.execute("UPDATE meeting_sheet SET status = 'present' WHERE meeting = 'mt1' AND member = 'cuong'")


def test_an_amendment_changes_status_now_and_totals_with_who_and_when_and_the_close_s_status_stays(world):
    start = days_ago(1)
    world.meeting("mt1", start)
    world.check_in("an", "mt1", start)
    with pytest.raises(RegistryError, match="record an excuse instead"):
        attendance_sheet.amend(world.store, "mt1", "binh", "excused", "illness", None, by=BY)
    attendance_sheet.close(world.store, "mt1", by=BY)
    with pytest.raises(RegistryError, match="already unexcused"):
        attendance_sheet.amend(world.store, "mt1", "binh", "unexcused", None, None, by=BY)
    with pytest.raises(RegistryError, match="a reason goes with 'excused' only"):
        attendance_sheet.amend(world.store, "mt1", "binh", "present", "illness", None, by=BY)
    # a late excuse after the close is an amendment
    assert attendance_sheet.record_excuse(world.store, "mt1", "binh", "illness", "giấy của trạm y tế",
                                          by="late-secretary") == {"amended": True}
    s = attendance_sheet.amend(world.store, "mt1", "cuong", "present", None, "ký sổ, máy hỏng", by=BY)
    assert {m: (r["status"], r["amended"]) for m, r in rows(s).items()} == {
        "an": ("present", False), "binh": ("excused", True), "cuong": ("present", True)}
    assert rows(s)["binh"]["reason_label"] == "ốm đau" and rows(s)["binh"]["note"] == "giấy của trạm y tế"
    t = s["totals"]
    assert (t["present"], t["excused"], t["unexcused"], t["rate"], t["rate_excluding_excused"]) == (2, 1, 0, 0.6667, 1.0)
    assert [(a["member"], a["from_status"], a["to_status"], a["recorded_by"]) for a in s["amendments"]] == [
        ("binh", "unexcused", "excused", "late-secretary"), ("cuong", "unexcused", "present", BY)]
    assert all(a["recorded_at"] for a in s["amendments"])
    frozen = {r["member"]: r["status"] for r in world.store.rows("SELECT member, status FROM meeting_sheet WHERE meeting = 'mt1'")}
    assert frozen == {"an": "present", "binh": "unexcused", "cuong": "unexcused"}
    totals = world.store.row("SELECT * FROM meeting_totals WHERE meeting = 'mt1'")
    assert (totals["present"], totals["excused"], totals["unexcused"], totals["amendments"]) == (2, 1, 0, 2)
    assert [a["actor"] for a in world.store.rows("SELECT actor FROM audit WHERE action = 'attendance.amend' ORDER BY id")] == [
        "late-secretary", BY]
    with pytest.raises(sqlite3.DatabaseError, match="never edited"):
        with world.store.transaction() as db:
            db.execute("UPDATE attendance_amendments SET to_status = 'late'")


def test_central_closes_a_meeting_nobody_closed_after_auto_close_after_h(world):
    world.meeting("old", days_ago(5))  # ended long ago
    world.meeting("recent", datetime.now(UTC) - timedelta(hours=60))  # ended 58 hours ago
    world.check_in("an", "old", days_ago(5))
    assert attendance_sheet.close_due(world.store, after_h=72) == ["old"]
    old = attendance_sheet.sheet(world.store, "old")
    assert old["frozen"] and old["meeting"]["closed_by"] == "central (auto)"
    assert (old["totals"]["attended"], old["totals"]["unexcused"]) == (1, 2)
    assert not attendance_sheet.sheet(world.store, "recent")["frozen"]
    assert attendance_sheet.close_due(world.store, after_h=72) == []
    # the service's loop does it by itself
    closer = AutoClose(world.store, attendance_sheet.Rules(auto_close_after_h=48), interval_s=0.05)
    closer.start()
    try:
        wait_until(lambda: world.store.scalar("SELECT closed_by FROM meetings WHERE id = 'recent'"), timeout=30,
                   what="the recent meeting closed by the service")
    finally:
        closer.stop()
    assert registry.get_meeting(world.store, "recent")["closed_by"] == "central (auto)"


def test_statuses_gives_the_effective_rows_of_closed_and_open_meetings_at_once(world):
    world.meeting("closed", days_ago(4))
    world.meeting("open", days_ago(2))
    world.check_in("an", "closed", days_ago(4))
    world.check_in("binh", "open", days_ago(2) + timedelta(minutes=30))
    attendance_sheet.close(world.store, "closed", by=BY)
    attendance_sheet.amend(world.store, "closed", "cuong", "excused", "family", None, by=BY)
    got = attendance_sheet.statuses(world.store, ["closed", "open", "missing"])
    assert set(got) == {"closed", "open"}
    assert {r["member"]: r["status"] for r in got["closed"]} == {"an": "present", "binh": "unexcused", "cuong": "excused"}
    assert {r["member"]: r["status"] for r in got["open"]} == {"an": "unexcused", "binh": "late", "cuong": "unexcused"}
    for m in ("closed", "open"):
        assert got[m] == attendance_sheet.sheet(world.store, m)["members"]


def test_the_meeting_list_and_absent_list_count_the_members_of_the_meeting_s_day(world):
    world.meeting("before", days_ago(9))
    membership.transfer(world.store, "binh", "C2", meeting_day(days_ago(5)), by=BY)
    world.check_in("an", "before", days_ago(9))
    counts = {m["id"]: m for m in attendance_view.meetings_with_counts(world.store)}
    assert (counts["before"]["expected"], counts["before"]["present"]) == (3, 1)  # binh was still in C1 then
    assert [a["member_id"] for a in attendance_view.absent(world.store, registry.get_meeting(world.store, "before"))] == [
        "cuong", "binh"]  # Lê Văn Cường, Trần Thị Bình
    attendance_sheet.close(world.store, "before", by=BY)
    membership.leave(world.store, "cuong", "left", meeting_day(days_ago(1)), by=BY)
    assert {m["id"]: m["expected"] for m in attendance_view.meetings_with_counts(world.store)}["before"] == 3


def test_a_cell_takes_its_place_from_the_cli_or_else_from_its_hall_at_its_first_meeting(world):
    runner = CliRunner()
    data = str(Path(world.store.path).parent)
    result = runner.invoke(main, ["central", "--data-dir", data, "cell", "C3", "--name", "Chi bộ 3",
                                  "--province", "Hà Nội", "--commune", "Phường Ba Đình"])
    assert result.exit_code == 0, result.output
    assert "(Phường Ba Đình, Thành phố Hà Nội)" in result.output
    c3 = registry.get_cell(world.store, "C3")
    assert (c3["commune"], c3["province"]) == ("Phường Ba Đình", "Thành phố Hà Nội") and c3["commune_code"]
    result = runner.invoke(main, ["central", "--data-dir", data, "cell", "C4", "--name", "X", "--commune", "Ba Đình"])
    assert result.exit_code != 0 and "needs its province" in result.output
    # C1 has no place of its own: its first meeting gives it the hall's; a cell with a place keeps it
    world.meeting("mt1", days_ago(1))
    world.meeting("mt3", days_ago(1), cell="C3")
    hall = registry.get_hall(world.store, "H1")
    c1 = registry.get_cell(world.store, "C1")
    assert (c1["commune_code"], c1["province_code"]) == (hall["commune_code"], hall["province_code"])
    assert registry.get_cell(world.store, "C3")["commune"] == "Phường Ba Đình"


def test_the_secretary_role_migration_keeps_every_user_s_session_and_api_token(tmp_path):
    path = tmp_path / "central" / "central.db"
    path.parent.mkdir()
    db = Database(sqlite3.connect(str(path)))
    db.execute("PRAGMA foreign_keys=ON")
    with db.conn:
        migrations.apply(db, stop_before="m014_secretary_role")
    session, token = "a-session-id-0123456789", accounts.TOKEN_PREFIX + "a-token-0123456789"
    with db.conn:
        db.execute("INSERT INTO users (id, username, role, password_hash, created_at, updated_at) "
                   "VALUES (7, 'lan', 'technician', 'x', '2025-01-01T00:00:00Z', '2025-01-01T00:00:00Z')")
        db.execute("INSERT INTO sessions (token_hash, user_id, via, created_at, expires_at) VALUES (?, 7, 'password', "
                   "'2025-01-01T00:00:00Z', '2999-01-01T00:00:00Z')", [accounts._digest(session)])
        db.execute("INSERT INTO api_tokens (user_id, name, token_hash, created_at) VALUES (7, 'script', ?, "
                   "'2025-01-01T00:00:00Z')", [accounts._digest(token)])
        with pytest.raises(sqlite3.IntegrityError):  # the old CHECK has no secretary
            db.execute("UPDATE users SET role = 'secretary' WHERE id = 7")
    db.close()
    store = open_store(path.parent)  # applies m014
    try:
        assert accounts.session_staff(store, session).name == "lan"
        assert accounts.token_staff(store, token).name == "lan"
        accounts.set_role(store, "lan", "secretary")
        assert accounts.token_staff(store, token).role is accounts.Role.secretary
        assert store.scalar("PRAGMA foreign_key_check") is None
        # the references still cascade: removing the user ends its session and token
        with store.transaction() as tx:
            tx.execute("DELETE FROM users WHERE id = 7")
        assert store.scalar("SELECT COUNT(*) FROM sessions") == 0 and store.scalar("SELECT COUNT(*) FROM api_tokens") == 0
    finally:
        store.close()


def test_staff_can_be_made_secretaries_from_the_command_line(world):
    data = str(Path(world.store.path).parent)
    result = CliRunner().invoke(main, ["central", "--data-dir", data, "user", "add", "--username", "thu-ky",
                                       "--role", "secretary", "--password-stdin"], input="a-long-password-1\n")
    assert result.exit_code == 0, result.output
    assert accounts.authenticate(world.store, "thu-ky", "a-long-password-1")[0].role is accounts.Role.secretary
