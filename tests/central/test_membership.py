"""Who a cell expected at a meeting: its members on the meeting's date, from each member's history in cells."""

from __future__ import annotations

import sqlite3

import pytest
from click.testing import CliRunner

from central import membership, registry
from central.errors import NotFound, RegistryError
from central.store import open_store
from hall.cli import main

BY = "test-secretary"


@pytest.fixture
def store(tmp_path):
    s = open_store(tmp_path / "central")
    for cell in ("chi-bo-1", "chi-bo-2"):
        registry.add_cell(s, cell)
    for member, cell in (("an", "chi-bo-1"), ("binh", "chi-bo-1"), ("cuong", "chi-bo-2")):
        registry.add_member(s, member, member.title(), cell)
        membership.set_joined(s, member, "2025-01-10", by=BY)
    yield s
    s.close()


def ids(store, cell, on):
    return [m["member"] for m in membership.expected_members(store, cell, on)]


def test_a_member_transferred_mid_year_is_expected_in_the_old_cell_before_and_the_new_cell_after(store):
    assert membership.transfer(store, "binh", "chi-bo-2", "2025-06-15", by=BY) == "chi-bo-1"
    assert ids(store, "chi-bo-1", "2025-06-14") == ["an", "binh"]
    assert ids(store, "chi-bo-2", "2025-06-14") == ["cuong"]
    assert ids(store, "chi-bo-1", "2025-06-15") == ["an"]  # a transfer takes effect on its date
    assert ids(store, "chi-bo-2", "2025-06-15") == ["binh", "cuong"]
    assert ids(store, "chi-bo-1", "2025-01-09") == []  # before anyone joined
    # today's cell follows (the kiosks' rosters), and the move is in the history with who recorded it
    assert registry.cell_members(store, "chi-bo-2")[0]["id"] == "binh"
    kinds = [(e["kind"], e["cell"], e["at"], e["recorded_by"]) for e in membership.history(store, "binh")]
    assert kinds[1:] == [("transferred_out", "chi-bo-1", "2025-06-15", BY), ("transferred_in", "chi-bo-2", "2025-06-15", BY)]
    assert {m["member"]: m["since"] for m in membership.expected_members(store, "chi-bo-2", "2025-07-01")} == {
        "binh": "2025-06-15", "cuong": "2025-01-10"}


def test_probationary_to_official_changes_standing_on_that_date(store):
    membership.set_standing(store, "an", "probationary", "2025-01-10", by=BY)
    membership.set_standing(store, "an", "official", "2026-01-10", by=BY)

    def standing(on):
        return {m["member"]: m["standing"] for m in membership.expected_members(store, "chi-bo-1", on)}

    assert standing("2025-12-31") == {"an": "probationary", "binh": None}  # binh's standing was never recorded
    assert standing("2026-01-10") == {"an": "official", "binh": None}
    with pytest.raises(RegistryError, match="already official"):
        membership.set_standing(store, "an", "official", "2026-02-01", by=BY)


def test_a_deceased_member_is_not_expected_after_and_nothing_more_is_recorded_for_them(store):
    assert membership.leave(store, "an", "deceased", "2025-09-03", by=BY) == "chi-bo-1"
    assert ids(store, "chi-bo-1", "2025-09-02") == ["an", "binh"]
    assert ids(store, "chi-bo-1", "2025-09-03") == ["binh"]
    assert ids(store, "chi-bo-1", "2026-03-01") == ["binh"]
    with pytest.raises(RegistryError, match="deceased on 2025-09-03"):
        membership.transfer(store, "an", "chi-bo-2", "2025-10-01", by=BY)


def test_bad_input_is_refused_and_changes_nothing(store):
    before = membership.history(store, "binh")
    with pytest.raises(NotFound):
        membership.transfer(store, "nobody", "chi-bo-2", "2025-06-15", by=BY)
    with pytest.raises(NotFound):
        membership.transfer(store, "binh", "chi-bo-9", "2025-06-15", by=BY)
    with pytest.raises(RegistryError, match="before binh's last membership event"):
        membership.transfer(store, "binh", "chi-bo-2", "2024-12-31", by=BY)
    for bad in ("2025-6-15", "20250615", "2025-02-30", "", "2025-06-15T00:00"):
        with pytest.raises(RegistryError, match="ISO date"):
            membership.transfer(store, "binh", "chi-bo-2", bad, by=BY)
    with pytest.raises(RegistryError, match="already belongs"):
        membership.transfer(store, "binh", "chi-bo-1", "2025-06-15", by=BY)
    with pytest.raises(RegistryError, match="bad reason"):
        membership.leave(store, "binh", "expelled", "2025-06-15", by=BY)
    with pytest.raises(RegistryError, match="at most"):
        membership.transfer(store, "binh", "chi-bo-2", "2025-06-15", by=BY, note="x" * 501)
    with pytest.raises(NotFound):
        membership.expected_members(store, "chi-bo-9", "2025-06-15")
    assert membership.history(store, "binh") == before
    assert registry.cell_members(store, "chi-bo-1")[1]["id"] == "binh"


def test_enrolment_records_the_join_and_a_re_enrolment_under_another_cell_a_transfer(store):
    registry.add_member(store, "dung", "Dung", "chi-bo-1")
    assert [e["kind"] for e in membership.history(store, "dung")] == ["joined"]
    registry.add_member(store, "dung", "Dung", "chi-bo-2")  # the enrolment CSV moved them
    assert [(e["kind"], e["cell"]) for e in membership.history(store, "dung")] == [
        ("joined", "chi-bo-1"), ("transferred_out", "chi-bo-1"), ("transferred_in", "chi-bo-2")]
    with pytest.raises(RegistryError, match="can no longer change"):
        membership.set_joined(store, "dung", "2025-01-01", by=BY)


def test_the_migration_dates_members_enrolled_before_it_at_their_creation(tmp_path):
    path = tmp_path / "central"
    store = open_store(path)
    registry.add_cell(store, "chi-bo-1")
    registry.add_member(store, "an", "An", "chi-bo-1")
    db = store.db.conn
    # as a database from before migration 12: no history, an old member
    db.execute("DROP TRIGGER membership_enrolled")
    db.execute("DROP TRIGGER membership_reenrolled")
    db.execute("DROP TABLE membership_events")
    db.execute("UPDATE members SET created_at = '2019-03-04T01:02:03.000Z'")
    db.execute("DELETE FROM _sqlite_migrations WHERE name = 'm012_membership_history'")
    db.commit()
    store.close()
    store = open_store(path)
    assert [(e["kind"], e["at"], e["recorded_by"]) for e in membership.history(store, "an")] == [
        ("joined", "2019-03-04", "migration")]
    assert ids(store, "chi-bo-1", "2019-03-04") == ["an"] and ids(store, "chi-bo-1", "2019-03-03") == []
    store.close()


def test_the_api_gives_a_meeting_dates_expected_members_as_the_function_does(store, tmp_path):
    from fastapi.testclient import TestClient

    from central.api import create_app
    from tests.central import STAFF_TOKEN

    membership.transfer(store, "binh", "chi-bo-2", "2025-06-15", by=BY)
    membership.set_standing(store, "cuong", "official", "2025-02-01", by=BY)
    registry.add_hall(store, "hall-1")
    registry.add_meeting(store, "m-june", cell="chi-bo-2", hall="hall-1", title="June",
                         starts="2025-06-20T01:00:00Z", ends="2025-06-20T03:00:00Z")
    meeting_date = registry.get_meeting(store, "m-june")["starts_at"][:10]
    client = TestClient(create_app(store=store, staff_token=STAFF_TOKEN))
    auth = {"Authorization": f"Bearer {STAFF_TOKEN}"}
    got = client.get(f"/api/cells/chi-bo-2/expected?on={meeting_date}", headers=auth)
    assert got.status_code == 200
    assert got.json()["members"] == membership.expected_members(store, "chi-bo-2", meeting_date)
    assert [m["member"] for m in got.json()["members"]] == ["binh", "cuong"] and got.json()["count"] == 2
    assert client.get("/api/cells/chi-bo-2/expected?on=2025-13-01", headers=auth).status_code == 422
    assert client.get("/api/cells/chi-bo-2/expected?on=" + "2" * 11, headers=auth).status_code == 422
    today = client.get("/api/cells/chi-bo-2/expected", headers=auth).json()  # no date: the halls' today
    assert today["members"] == membership.expected_members(store, "chi-bo-2", today["on"])
    assert client.get("/api/cells/chi-bo-9/expected?on=2025-06-20", headers=auth).status_code == 404
    assert client.get("/api/cells/chi-bo-2/expected?on=2025-06-20").status_code == 401


def test_the_commands_record_history_and_audit_and_refuse_bad_input(tmp_path):
    runner = CliRunner()
    env = {"HALL_CENTRAL_DATA_DIR": str(tmp_path / "central")}

    def hall(*args):
        return runner.invoke(main, ["central", *args], env=env)

    with open_store(tmp_path / "central") as s:
        registry.add_cell(s, "chi-bo-1")
        registry.add_cell(s, "chi-bo-2")
        registry.add_member(s, "an", "An", "chi-bo-1")
    assert hall("member", "joined", "an", "--on", "2025-01-10").exit_code == 0
    ok = hall("member", "transfer", "an", "--to", "chi-bo-2", "--on", "2025-06-15", "--note", "QĐ 12")
    assert ok.exit_code == 0, ok.output
    assert "from chi-bo-1 to chi-bo-2 on 2025-06-15" in ok.output
    assert hall("member", "standing", "an", "official", "--on", "2025-07-01").exit_code == 0
    refused = hall("member", "transfer", "an", "--to", "chi-bo-1", "--on", "2025-05-01")
    assert refused.exit_code == 1 and "before an's last membership event" in refused.output
    assert hall("member", "leave", "nobody", "--on", "2025-08-01", "--reason", "left").exit_code == 1
    assert hall("member", "leave", "an", "--on", "2025-08-01", "--reason", "moved").exit_code == 2
    assert hall("member", "leave", "an", "--on", "2025-08-01", "--reason", "left").exit_code == 0
    shown = hall("member", "history", "an").output.splitlines()
    assert [line.split("\t")[:3] for line in shown] == [
        ["2025-01-10", "joined", "chi-bo-1"], ["2025-06-15", "transferred_out", "chi-bo-1"],
        ["2025-06-15", "transferred_in", "chi-bo-2"], ["2025-07-01", "official", "chi-bo-2"],
        ["2025-08-01", "left", "chi-bo-2"]]
    with open_store(tmp_path / "central") as s:
        actions = [r["action"] for r in s.rows("SELECT action FROM audit WHERE action LIKE 'member.%' ORDER BY id")]
        assert membership.expected_members(s, "chi-bo-2", "2025-08-01") == []
    assert actions == ["member.joined", "member.transfer", "member.standing", "member.leave"]


def test_the_database_refuses_a_date_that_is_not_a_calendar_day(store):
    with pytest.raises(sqlite3.IntegrityError):
        with store.transaction() as db:
            db.execute("INSERT INTO membership_events (member, cell, at, kind, recorded_by, recorded_at) "
                       "VALUES ('an', 'chi-bo-1', '2025-02-30', 'left', 'x', 'x')")
