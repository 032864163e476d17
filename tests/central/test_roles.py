"""Who may call what: every route of the app, walked, against a declared table of required roles."""

from __future__ import annotations

import re

import pytest

from central import accounts
from central.accounts import Role
from central.api.app import all_routes
from central.api.deps import ROLE_CHECKS, machine_callback, public
from central.api.routes.enrol import router as enrol_router
from central.api.routes.media import loopback_only
from central.api.routes.media import router as media_router
from tests.central import STAFF_TOKEN

V, S, T, A = Role.viewer, Role.secretary, Role.technician, Role.admin
# Pages of this app anyone may load; they show no member or device data without a login.
PAGES = {("GET", "/"), ("GET", "/login"), ("POST", "/login"), ("GET", "/login/once/{code}"), ("POST", "/logout"),
         ("GET", "/healthz"), ("GET", "/fleet"), ("GET", "/fleet/devices"), ("GET", "/fleet/devices/{device}"),
         ("GET", "/attendance/meetings/{meeting}"), ("GET", "/attendance/cells/{cell}"), ("GET", "/attendance/communes/{code}"),
         ("GET", "/attendance/provinces/{code}"), ("GET", "/attendance/members/{member}")}
# Every route needing no staff login: the pages, and routes that check a credential of their own (a one-time token...).
PUBLIC = PAGES | {("POST", "/enrol"), ("GET", "/enrol/ca"),  # the CA certificate is public by nature
                  ("GET", "/vendor/uplot/{name}"),  # the vendored chart library: public code, no data
                  ("GET", "/attendance/assets/{name}"),  # the attendance pages' script and style: code, no data
                  ("GET", "/fleet/assets/{name}")}  # the fleet pages' shared style and script: code, no data
# Called by central's own media server, never by staff: they check their caller themselves.
MACHINE = {("POST", "/media/on_publish"), ("POST", "/media/on_record_done")}
REQUIRED = {
    ("GET", "/api/me"): V,
    ("GET", "/api/collector"): V,
    ("GET", "/api/media"): V,
    ("GET", "/api/media/hls/{device}/{file}"): V,  # a hall's live stream (HLS), staff only
    ("GET", "/api/media/main/{file}"): V,  # the main room's, for staff on the device page
    ("GET", "/api/names"): V,  # members' names and meetings' titles for ids a page shows
    ("GET", "/api/meetings"): V,
    ("GET", "/api/meetings/{meeting_id}/attendance"): V,
    ("GET", "/api/cells/{cell}/expected"): V,
    ("GET", "/api/cells/{cell}/attendance"): V,  # the roll-ups (central/attendance_rollup.py)
    ("GET", "/api/communes/{code}/attendance"): V,
    ("GET", "/api/provinces/{code}/attendance"): V,
    ("GET", "/api/members/{member}/attendance"): V,
    ("GET", "/api/attendance/warnings"): V,
    ("GET", "/api/cells/{cell}/attendance.csv"): V,  # the exports (central/attendance_export.py)
    ("GET", "/api/cells/{cell}/attendance.xlsx"): V,
    ("GET", "/api/cells/{cell}/report.pdf"): V,
    ("GET", "/api/communes/{code}/attendance.xlsx"): V,
    ("GET", "/api/provinces/{code}/attendance.xlsx"): V,
    ("GET", "/api/meetings/{meeting_id}/sheet"): V,
    ("POST", "/api/meetings/{meeting_id}/excuses"): S,
    ("POST", "/api/meetings/{meeting_id}/close"): S,
    ("POST", "/api/meetings/{meeting_id}/amendments"): S,
    ("GET", "/api/devices"): V,
    ("GET", "/api/devices/{device}/records"): V,
    ("GET", "/api/devices/{device}/outcomes"): V,
    ("GET", "/api/devices/{device}/attempts"): V,
    ("GET", "/api/halls/{hall}/outcomes"): V,
    ("GET", "/api/fleet/devices"): V,
    ("GET", "/api/fleet/devices/{device}/history"): V,
    ("GET", "/api/fleet/devices/{device}/samples"): V,
    ("GET", "/metrics"): V,  # a viewer's API token in Prometheus' authorization (never anonymous)
    ("GET", "/api/fleet/events"): V,  # the overview's live stream (a plain GET without text/event-stream: one snapshot)
    ("POST", "/api/devices"): T,
    ("POST", "/api/devices/{device}/revoke"): T,
    ("POST", "/api/devices/{device}/commands"): T,
    ("GET", "/api/devices/{device}/commands"): T,
    ("GET", "/api/rejections"): T,
    ("GET", "/api/rejections/summary"): T,
    ("GET", "/api/alarms"): T,
    ("GET", "/api/alerts"): V,
    ("GET", "/api/alerts/rules"): V,
    ("PUT", "/api/alerts/rules"): A,
    ("GET", "/api/alerts/{alert_id}"): V,
    ("POST", "/api/alerts/{alert_id}/ack"): T,
    ("GET", "/api/users"): A,
    ("POST", "/api/users"): A,
    ("PATCH", "/api/users/{username}"): A,
    ("POST", "/api/users/{username}/password"): A,
    ("GET", "/api/users/{username}/tokens"): A,
    ("POST", "/api/users/{username}/tokens"): A,
    ("DELETE", "/api/users/{username}/tokens/{token_id}"): A,
    ("GET", "/api/audit"): A,
}
@pytest.fixture
def staffed(staffed):
    """The shared fixture's users, and a secretary with an API token."""
    accounts.add_user(staffed.store, "secretary", "secretary", "secretary-pass-Do4")
    staffed.tokens["secretary"] = accounts.issue_token(staffed.store, "secretary", "secretary script")[1]
    return staffed


UNAUTHENTICATED = [{}, {"Authorization": "Bearer hct_not-a-real-token"}, {"Authorization": "Bearer wrong-staff-token-0000"},
                   {"Cookie": "hall_session=forged"}]


def _routes(app):
    app.include_router(media_router)  # as the media deployment does
    app.include_router(enrol_router)  # as CentralService does
    return {(method, r.path): r for r in all_routes(app.routes) for method in r.methods}


def _checks(route) -> set:
    found, stack = set(), list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        found.add(dep.call)
        stack.extend(dep.dependencies)
    return found


def _concrete(path: str) -> str:
    # "nobody" / 999999 name nothing, so an allowed call answers 404 or 422 and changes nothing.
    return re.sub(r"\{token_id\}", "999999", re.sub(r"\{(?!token_id)[^}]+\}", "nobody", path))


def test_every_route_is_in_the_table_and_declares_the_role_the_table_says(staffed):
    routes = _routes(staffed.app)
    assert set(routes) == PUBLIC | MACHINE | set(REQUIRED), "a route was added or removed: declare who may call it here"
    for key, route in routes.items():
        checks = _checks(route)
        declared = {ROLE_CHECKS[c] for c in checks if c in ROLE_CHECKS}
        if key in REQUIRED:
            assert declared == {REQUIRED[key]}, (key, declared)
            assert public not in checks and machine_callback not in checks, key
        else:
            assert not declared, key
            assert public in checks or machine_callback in checks, f"{key} declares neither a role nor public/machine"


def test_unauthenticated_calls_get_401_and_under_privileged_ones_403_on_every_staff_route(staffed):
    routes = _routes(staffed.app)
    for n, ((method, path), needed) in enumerate(REQUIRED.items()):
        # each route from its own address: the unknown tokens below would trip the per-address guard
        client = staffed.client(client=(f"192.0.2.{n + 1}", 40000))
        url = _concrete(path)
        assert (method, path) in routes
        for headers in UNAUTHENTICATED:
            response = client.request(method, url, headers=headers)
            assert response.status_code == 401, (method, path, headers, response.status_code)
            assert response.headers["www-authenticate"] == "Bearer"
        for role in Role:
            response = client.request(method, url, headers={"Authorization": f"Bearer {staffed.tokens[role.name]}"})
            if role < needed:
                assert response.status_code == 403, (method, path, role.name, response.status_code)
            else:
                assert response.status_code not in (401, 403), (method, path, role.name, response.status_code)
        # the bootstrap token is an admin
        assert client.request(method, url, headers={"Authorization": f"Bearer {STAFF_TOKEN}"}).status_code not in (401, 403)


def test_a_viewer_session_cookie_is_held_to_the_same_roles(staffed):
    viewer = staffed.login("viewer")
    for (method, path), needed in REQUIRED.items():
        status = viewer.request(method, _concrete(path)).status_code
        assert (status == 403) == (needed > V), (method, path, status)


def test_the_login_page_health_and_logout_answer_without_credentials(staffed):
    client = staffed.client()
    for method, path in PAGES:
        response = client.request(method, path, follow_redirects=False)
        assert "www-authenticate" not in response.headers, (method, path)  # not refused by a role check
        assert response.status_code in (200, 303, 401), (method, path, response.status_code)
        if response.status_code == 401:  # "/" and a failed POST /login show the login form, and no data
            assert 'id="password"' in response.text and "present-member" not in response.text


def test_staff_credentials_do_not_open_machine_callbacks(staffed):
    client = staffed.client()
    routes = _routes(staffed.app)
    for key in MACHINE:
        assert loopback_only in _checks(routes[key])
        response = client.request(key[0], key[1], headers={"Authorization": f"Bearer {staffed.tokens['admin']}"})
        assert response.status_code == 403  # TestClient is not on loopback: not the media server


def test_integers_beyond_sqlite_s_range_are_refused_with_422_on_every_route(staffed):
    # SQLite's INTEGER is 64-bit: a larger id reached the query and failed there with a 500.
    client = staffed.client(raise_server_exceptions=False, headers={"Authorization": f"Bearer {STAFF_TOKEN}"})
    checked = []
    for (method, path), route in _routes(staffed.app).items():
        for param in route.dependant.query_params + route.dependant.path_params:
            if int not in (param.field_info.annotation, *getattr(param.field_info.annotation, "__args__", ())):
                continue
            for value in (2**63, -(2**63) - 1):
                url = _concrete(path).replace("999999", str(value)) if f"{{{param.name}}}" in path else _concrete(path)
                params = {} if f"{{{param.name}}}" in path else {param.name: str(value)}
                response = client.request(method, url, params=params)
                assert response.status_code == 422, (method, path, param.name, value, response.status_code)
            checked.append((path, param.name))
    assert {("/api/audit", "before_id"), ("/api/devices/{device}/records", "before_seq"),
            ("/api/users/{username}/tokens/{token_id}", "token_id")} <= set(checked)
