"""Staff accounts through the real app and a real SQLite file: passwords, sessions, tokens, audit."""

from __future__ import annotations

import json

from nacl.signing import SigningKey

from central import accounts, audit
from contract import device_id_from_public_key, public_key_text
from tests.central.conftest import PASSWORD, SESSION_S


def _db_bytes(store) -> bytes:
    store.db.execute("PRAGMA wal_checkpoint(FULL)")
    return store.path.read_bytes()


def test_passwords_are_stored_as_argon2id_hashes_never_in_plain(staffed):
    rows = staffed.store.rows("SELECT username, password_hash FROM users")
    assert len(rows) == 3 and all(r["password_hash"].startswith("$argon2id$") for r in rows)
    raw = _db_bytes(staffed.store)
    assert not any(p.encode() in raw for p in PASSWORD.values())
    assert not any(t.encode() in raw for t in staffed.tokens.values())  # API tokens: only their hashes


def test_login_sets_a_strict_httponly_session_cookie_and_opens_the_page(staffed):
    client = staffed.client()
    assert client.get("/").status_code == 401 and 'id="password"' in client.get("/").text
    response = client.post("/login", data={"username": "Viewer", "password": PASSWORD["viewer"]}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("hall_session=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert f"Max-Age={int(SESSION_S)}" in cookie and "Path=/" in cookie and "Secure" not in cookie  # plain http here
    session = client.cookies["hall_session"]
    assert session.encode() not in _db_bytes(staffed.store)  # the server keeps a hash
    page = client.get("/")
    assert page.status_code == 200 and "Điểm danh" in page.text
    assert client.get("/api/me").json()["name"] == "viewer"
    assert client.get("/api/meetings").status_code == 200 and client.get("/api/devices").status_code == 200
    [entry] = staffed.audit("login.success")
    assert (entry["actor"], entry["detail"], entry["remote"]) == ("viewer", "password", "testclient")


def test_the_cookie_is_marked_secure_when_served_over_https(staffed):
    client = staffed.client(base_url="https://testserver")
    response = client.post("/login", data={"username": "viewer", "password": PASSWORD["viewer"]}, follow_redirects=False)
    assert "Secure" in response.headers["set-cookie"]


def test_wrong_password_or_unknown_user_gets_401_the_same_answer_and_an_audit_entry(staffed):
    client = staffed.client()
    wrong = client.post("/login", data={"username": "admin", "password": "not-the-password"})
    unknown = client.post("/login", data={"username": "mallory", "password": "whatever-it-is"})
    assert wrong.status_code == unknown.status_code == 401
    assert "Sai tên đăng nhập hoặc mật khẩu" in wrong.text and "hall_session" not in wrong.headers.get("set-cookie", "")
    assert wrong.text.replace("admin", "mallory") == unknown.text  # nothing tells which names exist
    assert [(e["actor"], e["detail"]) for e in staffed.audit("login.failure")] == [
        ("admin", "wrong password"), ("mallory", "unknown user")]
    assert client.get("/api/me").status_code == 401


def test_repeated_wrong_passwords_stop_the_guesser_not_the_account_s_owner(staffed):
    guesser = staffed.client(client=("203.0.113.9", 40000))
    for _ in range(5):
        assert guesser.post("/login", data={"username": "admin", "password": "guess-guess-guess"}).status_code == 401
    locked = guesser.post("/login", data={"username": "admin", "password": PASSWORD["admin"]})
    assert locked.status_code == 429 and "hall_session" not in locked.headers.get("set-cookie", "")
    assert staffed.audit("login.failure")[-1]["detail"].startswith("too many failed attempts")
    # The owner, at an address that has not been failing, still logs in with the right password.
    staffed.login("admin", client=staffed.client(client=("198.51.100.9", 40000)))
    staffed.login("viewer")  # other accounts are not affected


def test_guessing_one_account_from_many_addresses_leaves_the_owner_a_way_in(staffed):
    for n in range(20):  # a botnet: four guesses from each of five addresses, then more addresses...
        guesser = staffed.client(client=(f"203.0.113.{n // 4 + 20}", 40000))
        assert guesser.post("/login", data={"username": "admin", "password": f"guess-{n}-guess"}).status_code == 401
    # Past that many failures for the account, addresses that have failed no longer get to try it at all...
    failing = staffed.client(client=("203.0.113.20", 40000))
    assert failing.post("/login", data={"username": "admin", "password": PASSWORD["admin"]}).status_code == 429
    # ...while one that has not failed may: the owner logs in.
    staffed.login("admin", client=staffed.client(client=("198.51.100.10", 40000)))


def test_failed_logins_from_one_address_are_limited_across_usernames(staffed):
    sprayer = staffed.client(client=("203.0.113.7", 40000))
    for n in range(10):  # one guess at each of many names: no single account sees more than one failure
        assert sprayer.post("/login", data={"username": f"user{n}", "password": "Spring2025!"}).status_code == 401
    refused = sprayer.post("/login", data={"username": "admin", "password": PASSWORD["admin"]})
    assert refused.status_code == 429 and "hall_session" not in refused.headers.get("set-cookie", "")
    assert sprayer.post("/login", data={"username": "user99", "password": "Spring2025!"}).status_code == 429
    staffed.login("admin", client=staffed.client(client=("198.51.100.2", 40000)))  # other addresses are not affected
    refusals = [e for e in staffed.audit("login.failure") if e["detail"].startswith("too many failed attempts")]
    assert [e["remote"] for e in refusals] == ["203.0.113.7"]  # one entry for the address, not one per attempt


def test_logout_ends_the_session_on_the_server(staffed):
    client = staffed.login("technician")
    stolen = client.cookies["hall_session"]
    response = client.post("/logout", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert client.get("/api/me").status_code == 401
    replay = staffed.client(cookies={"hall_session": stolen})
    assert replay.get("/api/me").status_code == 401  # the old cookie value is dead, not just forgotten by the browser
    assert [e["actor"] for e in staffed.audit("logout")] == ["technician"]


def test_a_session_expires(staffed):
    client = staffed.login("viewer")
    assert client.get("/api/me").status_code == 200
    staffed.store.db.execute("UPDATE sessions SET expires_at = '2000-01-01T00:00:00.000Z'")
    assert client.get("/api/me").status_code == 401
    assert client.get("/").status_code == 401  # back to the login form
    staffed.login("admin")  # a new login sweeps the expired rows
    assert staffed.store.scalar("SELECT COUNT(*) FROM sessions WHERE expires_at < '2001'") == 0


def test_disabling_a_user_ends_their_sessions_and_tokens_at_once(staffed):
    client = staffed.login("technician")
    token = {"Authorization": f"Bearer {staffed.tokens['technician']}"}
    assert staffed.client().get("/api/rejections", headers=token).status_code == 200
    admin = staffed.login("admin")
    assert admin.patch("/api/users/technician", json={"disabled": True}).json()["disabled_at"]
    assert client.get("/api/me").status_code == 401
    assert staffed.client().get("/api/me", headers=token).status_code == 401
    assert staffed.client().post("/login", data={"username": "technician", "password": PASSWORD["technician"]}).status_code == 401
    admin.patch("/api/users/technician", json={"disabled": False})
    assert staffed.client().get("/api/me", headers=token).status_code == 200
    assert [e["action"] for e in staffed.audit() if e["action"].startswith("user.")] == ["user.disable", "user.enable"]


def test_a_role_change_applies_to_the_next_request(staffed):
    viewer = staffed.login("viewer")
    assert viewer.get("/api/rejections").status_code == 403
    staffed.login("admin").patch("/api/users/viewer", json={"role": "technician"})
    assert viewer.get("/api/rejections").status_code == 200
    [entry] = staffed.audit("user.role")
    assert entry["actor"] == "admin" and json.loads(entry["detail"]) == {"user": "viewer", "from": "viewer", "to": "technician"}


def test_admin_creates_a_user_whose_generated_password_is_shown_once_and_works(staffed):
    admin = staffed.login("admin")
    made = admin.post("/api/users", json={"username": "Lan.Nguyen", "role": "viewer"})
    assert made.status_code == 201 and made.json()["username"] == "lan.nguyen"
    password = made.json()["password"]
    assert len(password) >= 16 and "password" not in admin.get("/api/users").json()[0]
    staffed.login("lan.nguyen", password)
    assert admin.post("/api/users", json={"username": "lan.nguyen", "role": "viewer"}).status_code == 400  # exists
    assert admin.post("/api/users", json={"username": "x y", "role": "viewer"}).status_code == 400
    assert admin.post("/api/users", json={"username": "weak", "role": "viewer", "password": "short"}).status_code == 400
    assert admin.post("/api/users", json={"username": "boss", "role": "emperor"}).status_code == 400
    [entry] = staffed.audit("user.create")
    assert entry["actor"] == "admin" and json.loads(entry["detail"]) == {"user": "lan.nguyen", "role": "viewer"}


def test_the_last_admin_cannot_be_demoted_or_disabled(staffed):
    admin = staffed.login("admin")
    assert admin.patch("/api/users/admin", json={"role": "viewer"}).status_code == 400
    assert admin.patch("/api/users/admin", json={"disabled": True}).status_code == 400
    assert admin.patch("/api/users/nobody", json={"role": "viewer"}).status_code == 404
    assert staffed.store.scalar("SELECT role FROM users WHERE username = 'admin'") == "admin"


def test_api_tokens_are_shown_once_act_as_their_user_and_can_be_revoked(staffed):
    admin = staffed.login("admin")
    made = admin.post("/api/users/viewer/tokens", json={"name": "export job"})
    assert made.status_code == 201
    token, token_id = made.json()["token"], made.json()["id"]
    assert token.startswith("hct_")
    listed = admin.get("/api/users/viewer/tokens").json()
    assert {t["name"] for t in listed} == {"viewer script", "export job"} and all("token" not in t for t in listed)
    machine = staffed.client(headers={"Authorization": f"Bearer {token}"})
    assert machine.get("/api/me").json() == {"name": "viewer", "role": "viewer", "via": "api-token", "alarms": 0}
    assert admin.delete(f"/api/users/viewer/tokens/{token_id}").status_code == 200
    assert machine.get("/api/me").status_code == 401
    assert [e["action"] for e in staffed.audit() if e["action"].startswith("token.")] == ["token.create", "token.revoke"]


def test_a_password_change_ends_sessions(staffed):
    viewer = staffed.login("viewer")
    reset = staffed.login("admin").post("/api/users/viewer/password", json={})
    assert viewer.get("/api/me").status_code == 401
    staffed.login("viewer", reset.json()["password"])
    assert staffed.audit("user.password")[0]["actor"] == "admin"


def test_cross_site_posts_with_a_session_cookie_are_refused(staffed):
    technician = staffed.login("technician")
    evil = technician.post("/api/devices/nobody/revoke", headers={"Origin": "https://evil.example"})
    assert evil.status_code == 403
    assert technician.post("/api/devices/nobody/revoke", headers={"Origin": "http://testserver"}).status_code == 404


def test_a_cookie_request_must_name_a_configured_origin_not_just_match_its_own_host_header(staffed):
    session = {"hall_session": staffed.login("technician").cookies["hall_session"]}
    bare = staffed.client(cookies=session)  # no Origin, no Referer: a browser always sends one of them on POST
    assert bare.post("/api/devices/nobody/revoke").status_code == 403
    # DNS rebinding: evil.example resolves to central, so Origin and Host agree; neither is central's origin.
    rebound = {"Origin": "http://evil.example:8800", "Host": "evil.example:8800"}
    assert bare.post("/api/devices/nobody/revoke", headers=rebound).status_code == 403
    assert bare.post("/api/devices/nobody/revoke", headers={"Origin": "null"}).status_code == 403
    # From central's own page: the Origin, or failing that the Referer, names it.
    assert bare.post("/api/devices/nobody/revoke", headers={"Origin": "http://testserver"}).status_code == 404
    assert bare.post("/api/devices/nobody/revoke", headers={"Referer": "http://testserver/"}).status_code == 404
    # A bearer token is not a cookie: scripts send no Origin and are not refused for it.
    script = staffed.client(headers={"Authorization": f"Bearer {staffed.tokens['technician']}"})
    assert script.post("/api/devices/nobody/revoke").status_code == 404


def test_central_s_origins_default_to_where_it_listens_and_can_be_set(tmp_path):
    from central.settings import CentralSettings

    loopback = CentralSettings(data_dir=tmp_path, http_port=8800).allowed_origins()
    assert "http://127.0.0.1:8800" in loopback and "http://localhost:8800" in loopback
    assert CentralSettings(data_dir=tmp_path, http_host="10.0.0.5", http_port=80).allowed_origins() == ["http://10.0.0.5:80"]
    assert CentralSettings(data_dir=tmp_path, public_origins="https://diem-danh.example, https://10.0.0.5:8443").allowed_origins() == [
        "https://diem-danh.example", "https://10.0.0.5:8443"]


def test_device_registration_and_revocation_by_technicians_are_audited(staffed):
    key = SigningKey.generate()
    device_id = device_id_from_public_key(key.verify_key)
    technician = staffed.login("technician")
    made = technician.post("/api/devices", json={"public_key": public_key_text(key), "hall": "H1"})
    assert made.status_code == 201 and made.json()["id"] == device_id
    assert technician.post("/api/devices", json={"public_key": "nonsense", "hall": "H1"}).status_code == 400
    assert technician.post(f"/api/devices/{device_id}/revoke").json()["revoked_at"]
    assert [d["revoked_at"] is not None for d in technician.get("/api/devices").json()] == [True]
    log = staffed.login("admin").get("/api/audit", params={"action": "device."}).json()
    assert [(e["actor"], e["action"], json.loads(e["detail"])["device"]) for e in log] == [
        ("technician", "device.revoke", device_id), ("technician", "device.register", device_id)]
    assert log[0]["remote"] == "testclient"


def test_others_can_record_audit_entries_and_page_through_them(staffed):
    for n in range(5):
        audit.record(staffed.store, "cli:root", "member.enrol", {"member": f"m{n}"})
    newest = audit.entries(staffed.store, limit=2, action="member.enrol")
    older = audit.entries(staffed.store, limit=10, before_id=newest[-1]["id"], actor="cli:root")
    assert [json.loads(e["detail"])["member"] for e in newest + older] == ["m4", "m3", "m2", "m1", "m0"]
    assert audit.record(staffed.store, "x", "y", "z" * 5000) and len(staffed.audit("y")[0]["detail"]) < 2100


def test_account_rules(staffed):
    store = staffed.store
    for bad in ("a", "UPPER CASE", "staff-token", "cli:root", "x" * 40):
        try:
            accounts.add_user(store, bad, "viewer", "long-enough-password")
        except accounts.AccountError:
            continue
        raise AssertionError(f"{bad!r} accepted")
    assert accounts.authenticate(store, "viewer", "x" * 5000) == (None, "wrong password")


def test_hall_central_login_link_prints_a_one_time_link_for_an_account(staffed):
    from click.testing import CliRunner

    from hall.cli import main

    env = {"HALL_CENTRAL_DATA_DIR": str(staffed.store.path.parent), "HALL_CENTRAL_HTTP_PORT": "8811"}
    result = CliRunner().invoke(main, ["central", "login-link", "--user", "technician", "--minutes", "5"], env=env)
    assert result.exit_code == 0, result.output
    link = result.stdout.strip()
    assert link.startswith("http://127.0.0.1:8811/login/once/")
    client = staffed.client()
    path = link.removeprefix("http://127.0.0.1:8811")
    assert client.get(path, follow_redirects=False).status_code == 303
    assert client.get("/api/me").json()["name"] == "technician"
    assert staffed.client().get(path, follow_redirects=False).status_code == 401  # once only
    [made] = staffed.audit("login-link.create")
    assert made["actor"].startswith("cli:") and json.loads(made["detail"]) == {"user": "technician", "minutes": 5.0}
    assert staffed.audit("login.success")[-1]["detail"] == "one-time login link"
    refused = CliRunner().invoke(main, ["central", "login-link", "--user", "nobody"], env=env)
    assert refused.exit_code == 1 and "no staff account 'nobody'" in refused.output
