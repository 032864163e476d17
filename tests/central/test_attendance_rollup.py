"""The roll-ups' JSON API: who may read it, what bad parameters and unknown ids get, and what a transferred member
counts for in each cell."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from central import accounts, regions
from central.api import create_app
from central.store import open_store
from tests.central import STAFF_TOKEN
from tests.central.synthetic_year import COMMUNE, PROVINCE, YEAR, build_year

ROUTES = ("/api/cells/cb-a/attendance", "/api/communes/{commune}/attendance", "/api/provinces/{province}/attendance",
          "/api/members/a02/attendance", "/api/attendance/warnings")


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    store = open_store(tmp_path_factory.mktemp("rollup") / "central")
    build_year(store)
    accounts.add_user(store, "viewer", "viewer", "viewer-pass-Ao1")
    token = accounts.issue_token(store, "viewer", "viewer script")[1]
    client = TestClient(create_app(store=store, staff_token=STAFF_TOKEN))
    client.headers["Authorization"] = f"Bearer {token}"
    yield client
    store.close()


def url(path: str) -> str:
    return path.format(commune=regions.commune(PROVINCE, COMMUNE).code, province=regions.province(PROVINCE).code)


def test_anonymous_callers_get_401_and_a_viewer_reads_every_roll_up(api):
    anonymous = TestClient(api.app)
    for path in ROUTES:
        assert anonymous.get(url(path), params={"year": YEAR}).status_code == 401, path
        response = api.get(url(path), params={} if "/cells/" in path else {"year": YEAR})
        assert response.status_code == 200, (path, response.text)
    cell = api.get("/api/cells/cb-a/attendance", params={"from": f"{YEAR}-01-01", "to": f"{YEAR}-12-31"}).json()
    assert set(cell) == {"cell", "from", "to", "totals", "meetings", "months", "members", "below", "threshold", "warnings"}
    assert set(cell["totals"]) == {"expected", "present", "late", "excused", "unexcused", "pending", "attended", "overrides",
                                   "not_expected", "rate", "rate_excluding_excused"}
    assert cell["cell"]["commune"] == regions.commune(PROVINCE, COMMUNE).name


@pytest.mark.parametrize("path,params", [
    ("/api/cells/cb-a/attendance", {"from": "2025-13-01"}),
    ("/api/cells/cb-a/attendance", {"from": "20250101"}),
    ("/api/cells/cb-a/attendance", {"from": "2025-06-01", "to": "2025-01-01"}),  # ends before it starts
    ("/api/cells/cb-a/attendance", {"from": "1999-01-01", "to": "1999-12-31"}),
    ("/api/cells/cb-a/attendance", {"from": "2000-01-01", "to": "2025-12-31"}),  # too long a window
    ("/api/cells/cb-a/attendance", {"from": "x" * 5000}),
    ("/api/communes/{commune}/attendance", {"year": "1999"}),
    ("/api/communes/{commune}/attendance", {"year": "2101"}),
    ("/api/communes/{commune}/attendance", {"year": "twenty"}),
    ("/api/communes/{commune}/attendance", {"year": str(YEAR), "month": "2025-1"}),
    ("/api/communes/{commune}/attendance", {"year": str(YEAR), "month": "2024-12"}),  # not in that year
    ("/api/provinces/{province}/attendance", {"year": str(YEAR), "month": "2025-13"}),
    ("/api/members/a02/attendance", {"year": "99999999999999999999"}),
    ("/api/attendance/warnings", {"year": str(YEAR), "cell": "cb-a", "commune": "70"}),
    ("/api/attendance/warnings", {"year": str(YEAR), "cell": "x" * 65}),
    ("/api/attendance/warnings", {"year": str(YEAR), "province": "-1"}),
])
def test_bad_parameters_get_a_422_that_says_what_is_wrong(api, path, params):
    response = api.get(url(path), params=params)
    assert response.status_code == 422, (path, params, response.status_code, response.text)
    assert response.json()["detail"]


@pytest.mark.parametrize("path", ["/api/cells/nobody/attendance", "/api/communes/999999/attendance",
                                  "/api/communes/mt1/attendance", "/api/provinces/99/attendance",
                                  "/api/members/nobody/attendance", "/api/attendance/warnings?cell=nobody"])
def test_unknown_ids_get_404(api, path):
    response = api.get(path if "?" in path or "/cells/" in path else f"{path}?year={YEAR}")
    assert response.status_code == 404, (path, response.status_code, response.text)


def test_a_transferred_member_counts_in_each_cell_only_for_the_months_they_belonged(api):
    # a02 moved from cell A to cell B on 20 June: A's page lists them January to June, B's July to December
    def months_of(cell: str) -> list[str]:
        page = api.get(f"/api/cells/{cell}/attendance", params={"from": f"{YEAR}-01-01", "to": f"{YEAR}-12-31"}).json()
        return [m["day"][:7] for m in page["meetings"]
                if "a02" in {r["member"] for r in api.get(f"/api/meetings/{m['id']}/sheet").json()["members"]
                             if r["expected"]}]

    assert months_of("cb-a") == [f"{YEAR}-{n:02d}" for n in range(1, 7)]
    assert months_of("cb-b") == [f"{YEAR}-{n:02d}" for n in range(7, 13)]
    first_half = api.get("/api/cells/cb-a/attendance", params={"from": f"{YEAR}-01-01", "to": f"{YEAR}-06-30"}).json()
    second_half = api.get("/api/cells/cb-a/attendance", params={"from": f"{YEAR}-07-01", "to": f"{YEAR}-12-31"}).json()
    assert next(e for e in first_half["members"] if e["member"] == "a02")["meetings"] == 6
    assert "a02" not in {e["member"] for e in second_half["members"]}
    in_b = api.get("/api/cells/cb-b/attendance", params={"from": f"{YEAR}-01-01", "to": f"{YEAR}-12-31"}).json()
    assert next(e for e in in_b["members"] if e["member"] == "a02")["meetings"] == 6
    year = api.get("/api/members/a02/attendance", params={"year": YEAR}).json()
    assert [(m["cell"], m["day"][:7]) for m in year["meetings"]] == (
        [("cb-a", f"{YEAR}-{n:02d}") for n in range(1, 7)] + [("cb-b", f"{YEAR}-{n:02d}") for n in range(7, 13)])
    assert year["totals"]["expected"] == 12
