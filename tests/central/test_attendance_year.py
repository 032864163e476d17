"""A synthetic year of a commune (tests/central/synthetic_year.py), built through central's real functions, against
figures computed here from the plan alone: who belonged where on each meeting's day, who checked in when, who was
excused before the close and who only afterwards. Then properties every roll-up must keep."""

from __future__ import annotations

from collections import Counter

import pytest

from central import attendance_rollup, regions
from central.store import open_store
from tests.central.synthetic_year import COMMUNE, NOW, OTHER_COMMUNE, PROVINCE, YEAR, Plan, build_year

KEYS = ("expected", "present", "late", "excused", "unexcused", "pending", "not_expected")


@pytest.fixture(scope="module")
def year(tmp_path_factory):
    store = open_store(tmp_path_factory.mktemp("year") / "central")
    plan = build_year(store)
    yield store, plan
    store.close()


def counts(plan: Plan, meetings, member: str | None = None) -> dict[str, int]:
    """Expected counts from the plan: each expected member under the status the plan gives them."""
    c = Counter(dict.fromkeys(KEYS, 0))
    for m in meetings:
        for x in plan.expected(m):
            if member is None or x == member:
                c["expected"] += 1
                c[plan.status(m, x)] += 1
    return dict(c)


def rates(c: dict[str, int]) -> tuple[float | None, float | None]:
    attended = c["present"] + c["late"]
    return (round(attended / c["expected"], 4) if c["expected"] else None,
            round(attended / (c["expected"] - c["excused"]), 4) if c["expected"] - c["excused"] else None)


def same(t: dict, c: dict[str, int], what: str) -> None:
    assert {k: t[k] for k in KEYS} == c, what
    assert (t["rate"], t["rate_excluding_excused"]) == rates(c), what
    assert t["attended"] == c["present"] + c["late"], what


def test_a_cell_s_year_meeting_by_month_and_member_by_member(year):
    store, plan = year
    for cell in plan.cells:
        got = attendance_rollup.cell_attendance(store, cell, date_from=f"{YEAR}-01-01", date_to=f"{YEAR}-12-31", now=NOW)
        mine = [m for m in plan.meetings if m.cell == cell]
        same(got["totals"], counts(plan, mine), cell)
        assert [(m["id"], m["day"], m["closed"]) for m in got["meetings"]] == [(m.id, m.day.isoformat(), m.closed) for m in mine]
        for m, g in zip(mine, got["meetings"], strict=True):
            same(g["totals"], counts(plan, [m]), m.id)
        assert [mo["month"] for mo in got["months"]] == [f"{YEAR}-{n:02d}" for n in range(1, 13)]
        for mo in got["months"]:
            in_month = [m for m in mine if m.day.isoformat().startswith(mo["month"])]
            assert mo["meetings"] == len(in_month), (cell, mo["month"])
            same(mo["totals"], counts(plan, in_month), f"{cell} {mo['month']}")
        # every member expected at least once, with their meetings in this cell only
        members = sorted({x for m in mine for x in plan.expected(m)}, key=lambda x: (plan.names[x], x))
        assert [e["member"] for e in got["members"]] == members
        for e in got["members"]:
            theirs = [m for m in mine if e["member"] in plan.expected(m)]
            assert e["meetings"] == len(theirs)
            same(e["totals"], counts(plan, theirs, e["member"]), f"{cell} {e['member']}")
            assert e["standing"] == plan.standing_on(e["member"], theirs[-1].day)
        assert [e["member"] for e in got["below"]] == [e["member"] for e in got["members"]
                                                      if e["totals"]["rate"] is not None and e["totals"]["rate"] < 0.5]


def test_the_cell_b_meeting_at_0630_on_the_first_counts_in_its_own_month_not_utc_s(year):
    store, plan = year
    got = attendance_rollup.cell_attendance(store, "cb-b", date_from=f"{YEAR}-03-01", date_to=f"{YEAR}-03-31", now=NOW)
    assert [m["id"] for m in got["meetings"]] == [f"cb-b-{YEAR}-03"]  # 23:30 UTC on 28 February
    assert got["meetings"][0]["day"] == f"{YEAR}-03-01"


def test_a_transferred_member_counts_in_each_cell_only_for_the_months_they_belonged(year):
    store, plan = year
    a = attendance_rollup.cell_attendance(store, "cb-a", date_from=f"{YEAR}-01-01", date_to=f"{YEAR}-12-31", now=NOW)
    b = attendance_rollup.cell_attendance(store, "cb-b", date_from=f"{YEAR}-01-01", date_to=f"{YEAR}-12-31", now=NOW)
    in_a = next(e for e in a["members"] if e["member"] == "a02")
    in_b = next(e for e in b["members"] if e["member"] == "a02")
    assert (in_a["meetings"], in_b["meetings"]) == (6, 6)  # A meets on the 5th (Jan-Jun), B on the 1st (Jul-Dec)
    mine = attendance_rollup.member_attendance(store, "a02", year=YEAR, now=NOW)
    assert [m["cell"] for m in mine["meetings"]] == ["cb-a"] * 6 + ["cb-b"] * 6
    assert mine["totals"]["expected"] == 12
    # the one who left is expected until they left; the one who joined in March from then on
    c = attendance_rollup.cell_attendance(store, "cb-c", date_from=f"{YEAR}-01-01", date_to=f"{YEAR}-12-31", now=NOW)
    by_id = {e["member"]: e for e in c["members"]}
    assert by_id["c01"]["meetings"] == 8 and by_id["c09"]["meetings"] == 8  # Jan-Aug 8th; Apr-Dec without November
    assert by_id["c09"]["standing"] == "official"
    history = [e["kind"] for e in attendance_rollup.member_attendance(store, "c09", year=YEAR, now=NOW)["history"]]
    assert history == ["joined", "probationary", "official"]


def test_the_commune_and_the_province_roll_ups(year):
    store, plan = year
    commune = regions.commune(PROVINCE, COMMUNE)
    other = regions.commune(PROVINCE, OTHER_COMMUNE)
    province = regions.province(PROVINCE)
    in_commune = [m for m in plan.meetings if plan.cells[m.cell] == COMMUNE]
    got = attendance_rollup.area_attendance(store, "commune", commune.code, year=YEAR, month=f"{YEAR}-11", now=NOW)
    assert got["area"] == {"level": "commune", "code": commune.code, "name": commune.name, "province": province.name,
                           "province_code": province.code}
    same(got["totals"], counts(plan, in_commune), "commune")
    for mo in got["months"]:
        same(mo["totals"], counts(plan, [m for m in in_commune if m.day.isoformat().startswith(mo["month"])]), mo["month"])
    expected_rank = sorted((c for c in plan.cells if plan.cells[c] == COMMUNE),
                           key=lambda c: -rates(counts(plan, [m for m in in_commune if m.cell == c]))[0])
    assert [c["id"] for c in got["cells"]] == expected_rank
    for c in got["cells"]:
        theirs = [m for m in in_commune if m.cell == c["id"]]
        assert c["meetings"] == len(theirs)
        same(c["totals"], counts(plan, theirs), c["id"])
        assert c["met_in_month"] == (c["id"] != "cb-c")
    assert [c["id"] for c in got["not_met"]] == ["cb-c"]  # cell C did not meet in November
    # a past year's default month is December, when every cell met (C's meeting is not closed yet, but it was held)
    december = attendance_rollup.area_attendance(store, "commune", commune.code, year=YEAR, now=NOW)
    assert december["month"] == f"{YEAR}-12" and december["not_met"] == []

    prov = attendance_rollup.area_attendance(store, "province", province.code, year=YEAR, now=NOW)
    same(prov["totals"], counts(plan, plan.meetings), "province")
    assert {c["id"] for c in prov["cells"]} == set(plan.cells)
    assert {(c["code"], c["cells"]) for c in prov["communes"]} == {(commune.code, 3), (other.code, 1)}
    for c in prov["communes"]:
        name = COMMUNE if c["code"] == commune.code else OTHER_COMMUNE
        same(c["totals"], counts(plan, [m for m in plan.meetings if plan.cells[m.cell] == name]), name)


def test_early_warnings_sum_a_member_s_unexcused_absences_across_cells_and_drop_late_excuses(year):
    store, plan = year
    unexcused = Counter(x for m in plan.meetings for x in plan.expected(m) if plan.status(m, x) == "unexcused")
    want = {x: ("rule" if n >= 3 else "warning", n) for x, n in unexcused.items() if n >= 2}
    assert want == {"a03": ("rule", 3), "b03": ("rule", 3), "a04": ("warning", 2)}  # the plan made sure of these
    got = attendance_rollup.warnings(store, year=YEAR, now=NOW)
    assert {w["member"]: (w["level"], w["unexcused"]) for w in got["members"]} == want
    b03 = next(w for w in got["members"] if w["member"] == "b03")
    assert [m["meeting"] for m in b03["meetings"]] == [f"cb-b-{YEAR}-02", f"cb-b-{YEAR}-03", f"cb-d-{YEAR}-05"]
    assert b03["cell"] == "cb-d"  # where they are now
    # filters keep the members who belonged there, with their whole year's count
    other = regions.commune(PROVINCE, OTHER_COMMUNE).code
    assert [w["member"] for w in attendance_rollup.warnings(store, year=YEAR, commune_code=other, now=NOW)["members"]] == ["b03"]
    assert {w["member"] for w in attendance_rollup.warnings(store, year=YEAR, cell="cb-b", now=NOW)["members"]} == {"b03"}
    assert {w["member"] for w in attendance_rollup.warnings(store, year=YEAR, cell="cb-a", now=NOW)["members"]} == {"a03", "a04"}
    assert attendance_rollup.member_attendance(store, "a04", year=YEAR, now=NOW)["warning"]["level"] == "warning"
    assert attendance_rollup.member_attendance(store, "a01", year=YEAR, now=NOW)["warning"] is None
    assert attendance_rollup.warnings(store, year=YEAR - 1, now=NOW)["members"] == []
    # most absences first; a limited list is the full list's head, and still says how many there are by level
    assert [w["unexcused"] for w in got["members"]] == [3, 3, 2] and (got["count"], got["by_level"]) == (3, {"warning": 1, "rule": 2})
    province = regions.province(PROVINCE).code
    whole = attendance_rollup.warnings(store, year=YEAR, province_code=province, now=NOW)
    head = attendance_rollup.warnings(store, year=YEAR, province_code=province, now=NOW, limit=2)
    assert {w["member"] for w in whole["members"]} == set(want) and head["members"] == whole["members"][:2]
    assert (head["count"], head["by_level"]) == (whole["count"], whole["by_level"]) == (3, {"warning": 1, "rule": 2})


def test_a_member_s_year_lists_each_meeting_with_its_status_and_reason(year):
    store, plan = year
    for member in ("a02", "b03", "c01", "c09", "d04"):
        got = attendance_rollup.member_attendance(store, member, year=YEAR, now=NOW)
        theirs = [m for m in plan.meetings if member in plan.expected(m)]
        assert [(r["meeting"], r["status"]) for r in got["meetings"]] == [(m.id, plan.status(m, member)) for m in theirs]
        same(got["totals"], counts(plan, theirs, member), member)
        for r, m in zip(got["meetings"], theirs, strict=True):
            what = plan.outcome.get((m.id, member), ("absent",))
            if r["status"] == "excused":
                assert r["reason"] == what[1] and r["reason_label"]
            if r["status"] == "late":
                assert r["minutes_late"] == what[1]


def test_properties_rates_in_range_counts_add_up_and_cells_sum_to_communes_sum_to_the_province(year):
    store, plan = year
    prov = attendance_rollup.area_attendance(store, "province", regions.province(PROVINCE).code, year=YEAR, now=NOW)
    cells = [attendance_rollup.cell_attendance(store, c, date_from=f"{YEAR}-01-01", date_to=f"{YEAR}-12-31", now=NOW)
             for c in plan.cells]
    totals = [prov["totals"], *(c["totals"] for c in prov["cells"]), *(c["totals"] for c in prov["communes"]),
              *(mo["totals"] for mo in prov["months"])]
    for c in cells:
        totals += [c["totals"], *(m["totals"] for m in c["meetings"]), *(e["totals"] for e in c["members"])]
    for t in totals:
        for rate in (t["rate"], t["rate_excluding_excused"]):
            assert rate is None or 0 <= rate <= 1
        assert t["present"] + t["late"] + t["excused"] + t["unexcused"] + t["pending"] == t["expected"]
    for key in KEYS:
        by_cell = sum(c["totals"][key] for c in cells)
        assert by_cell == sum(c["totals"][key] for c in prov["cells"]) == sum(c["totals"][key] for c in prov["communes"])
        assert by_cell == sum(mo["totals"][key] for mo in prov["months"]) == prov["totals"][key]
        for c in cells:  # a cell's meetings, months and members each add up to the cell
            assert sum(m["totals"][key] for m in c["meetings"]) == sum(mo["totals"][key] for mo in c["months"]) == c["totals"][key]
            if key != "not_expected":
                assert sum(e["totals"][key] for e in c["members"]) == c["totals"][key]
