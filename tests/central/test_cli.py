"""`hall central ...` through click's runner, on a real data directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from nacl.signing import SigningKey

from central import keys
from central.settings import CentralSettings
from central.store import open_store
from contract import device_id_from_public_key, public_key_text
from hall.cli import main


@pytest.fixture
def hall(tmp_path):
    runner = CliRunner()
    env = {"HALL_CENTRAL_DATA_DIR": str(tmp_path / "central")}

    def invoke(*args: str, **extra_env: str):
        return runner.invoke(main, ["central", *args], env={**env, **extra_env}, catch_exceptions=False)

    invoke.data_dir = tmp_path / "central"
    return invoke


def test_key_prints_centrals_public_key_stably(hall):
    assert hall("hall", "H1", "--name", "Hall one").exit_code == 0  # a central with data
    first, second = hall("key"), hall("key")
    assert first.exit_code == 0 and first.output == second.output
    assert first.output.strip() == keys.central_public_key(CentralSettings(data_dir=hall.data_dir))


def test_device_add_prints_the_id_derived_from_the_key(hall):
    key = SigningKey.generate()
    result = hall("device", "add", "--public-key", public_key_text(key), "--hall", "H1")
    assert result.exit_code == 0
    assert result.output.strip() == device_id_from_public_key(key.verify_key)
    listed = hall("device", "list")
    assert device_id_from_public_key(key.verify_key) in listed.output and "H1" in listed.output
    bad = hall("device", "add", "--public-key", "not-a-key", "--hall", "H1")
    assert bad.exit_code == 1 and "bad device public key" in bad.output


def test_meeting_add_stores_utc_echoes_the_zone_given_and_refuses_times_without_zone(hall):
    hall("hall", "H1", "--name", "Hall one")
    hall("cell", "C1", "--name", "Cell one")
    ok = hall("meeting", "add", "--id", "mt1", "--cell", "C1", "--hall", "H1", "--title", "Họp",
              "--starts", "2030-03-01T08:00+07:00", "--ends", "2030-03-01T10:00+07:00")
    assert ok.exit_code == 0, ok.output
    assert "2030-03-01T08:00+07:00 – 2030-03-01T10:00+07:00" in ok.output and "01:00" not in ok.output
    in_utc = hall("meeting", "add", "--id", "mt3", "--cell", "C1", "--hall", "H1", "--title", "UTC",
                  "--starts", "2030-03-02T01:00Z", "--ends", "2030-03-02T03:00:00+00:00")
    assert "2030-03-02T01:00Z – 2030-03-02T03:00Z" in in_utc.output, in_utc.output
    with open_store(hall.data_dir) as store:
        assert store.row("SELECT starts_at, ends_at FROM meetings WHERE id = 'mt1'") == {
            "starts_at": "2030-03-01T01:00:00Z", "ends_at": "2030-03-01T03:00:00Z"}
    naive = hall("meeting", "add", "--id", "mt2", "--cell", "C1", "--hall", "H1", "--title", "x",
                 "--starts", "2030-03-01T08:00", "--ends", "2030-03-01T10:00+07:00")
    assert naive.exit_code == 1 and "no time zone" in naive.output
    listed = hall("meeting", "list").output  # in the halls' local time (Asia/Ho_Chi_Minh)
    assert "mt1\t2030-03-01T08:00+07:00\t2030-03-01T10:00+07:00\tH1\tC1\tHọp" in listed
    assert "mt3\t2030-03-02T08:00+07:00" in listed


def test_meeting_add_refuses_a_hall_or_cell_that_does_not_exist(hall):
    hall("hall", "H1", "--name", "Hall one")
    hall("cell", "C1", "--name", "Cell one")
    args = ["--title", "Họp", "--starts", "2030-03-01T08:00+07:00", "--ends", "2030-03-01T10:00+07:00"]
    no_hall = hall("meeting", "add", "--id", "mt1", "--cell", "C1", "--hall", "H9", *args)
    assert no_hall.exit_code == 1
    assert "no hall H9" in no_hall.output and "hall central hall H9 --name" in no_hall.output and "H1" in no_hall.output
    no_cell = hall("meeting", "add", "--id", "mt1", "--cell", "C-TYPO", "--hall", "H1", *args)
    assert no_cell.exit_code == 1
    assert "no cell C-TYPO" in no_cell.output and "hall central cell C-TYPO --name" in no_cell.output and "C1" in no_cell.output
    with open_store(hall.data_dir) as store:
        assert store.rows("SELECT id FROM meetings") == []
        assert [r["id"] for r in store.rows("SELECT id FROM halls")] == ["H1"]
        assert [r["id"] for r in store.rows("SELECT id FROM cells")] == ["C1"]


def test_help_says_where_the_data_lives(hall):
    shown = " ".join(hall("--help").output.split())
    assert "HALL_CENTRAL_DATA_DIR" in shown and "--data-dir" in shown and "var/central" in shown
    assert "var/demo/central" in shown  # where `hall demo` keeps it


NEEDS_DATA = [("key",), ("meeting", "list"), ("device", "list"), ("device", "revoke", "d0"), ("user", "list"),
              ("user", "passwd", "lan"), ("user", "token", "list", "lan"), ("audit",),
              ("meeting", "add", "--id", "m", "--cell", "C", "--hall", "H", "--title", "t",
               "--starts", "2030-03-01T08:00+07:00", "--ends", "2030-03-01T10:00+07:00")]


@pytest.mark.parametrize("args", NEEDS_DATA, ids=[" ".join(a[:2]) for a in NEEDS_DATA])
def test_commands_that_need_data_refuse_a_data_dir_without_a_database_and_create_nothing(hall, args):
    result = hall(*args)
    assert result.exit_code == 1, result.output
    message = " ".join(result.output.split())
    assert f"no central database in {hall.data_dir.resolve()}" in message, message
    assert "--data-dir" in message and "HALL_CENTRAL_DATA_DIR" in message and "var/demo/central" in message
    assert not hall.data_dir.exists()


def test_data_dir_option_points_every_command_at_that_data(hall, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    assert hall("--data-dir", str(elsewhere), "hall", "H7", "--name", "Hall seven").exit_code == 0
    assert hall("--data-dir", str(elsewhere), "meeting", "list").exit_code == 0
    assert hall("meeting", "list").exit_code == 1  # HALL_CENTRAL_DATA_DIR still names the other, empty one
    with open_store(elsewhere) as store:
        assert store.rows("SELECT id, name FROM halls") == [{"id": "H7", "name": "Hall seven"}]
    assert not hall.data_dir.exists()


def test_enroll_and_import_from_the_command_line(hall, faces_dir, tmp_path):
    result = hall("enroll", "--id", "obama", "--name", "Barack Obama", "--cell", "C1", "--card", "04A1B2C3",
                  str(faces_dir / "obama" / "obama2.jpg"))
    assert result.exit_code == 0, result.output
    assert "enrolled obama with 1 face template(s)" in result.output
    csv_file = tmp_path / "m.csv"
    csv_file.write_text("id,name,cell,cccd,cards,photos\nrose,Rose Leslie,C1,,,rose_leslie/img1.jpg\nbad,Bad,C1,12,,rose_leslie/img2.jpg\n")
    imported = hall("import", str(csv_file), "--photos", str(faces_dir))
    assert imported.exit_code == 2  # some rows refused
    assert "line 3 (bad): bad CCCD number" in imported.output
    assert "imported 1 member(s), 1 row(s) refused" in imported.output
    with open_store(hall.data_dir) as store:
        assert [r["id"] for r in store.rows("SELECT id FROM members ORDER BY id")] == ["obama", "rose"]


def test_run_refuses_a_placeholder_staff_token(hall):
    result = hall("run", HALL_CENTRAL_STAFF_TOKEN="changeme")
    assert result.exit_code == 1 and "placeholder" in result.output


def test_misspelt_setting_is_an_error_not_ignored(hall):
    result = hall("key", HALL_CENTRAL_DATADIR="/tmp/elsewhere")
    assert result.exit_code == 1 and "HALL_CENTRAL_DATADIR" in result.output


def _audit(data_dir) -> list[tuple[str, str]]:
    with open_store(data_dir) as store:
        return [(r["actor"], r["action"]) for r in store.rows("SELECT actor, action FROM audit ORDER BY id")]


def test_user_add_prints_a_generated_password_once_and_it_logs_in(hall):
    from central import accounts

    result = hall("user", "add", "--username", "Lan", "--role", "admin")
    assert result.exit_code == 0, result.output
    password = result.output.split("password (shown once): ")[1].strip()
    with open_store(hall.data_dir) as store:
        staff, reason = accounts.authenticate(store, "lan", password)
        assert staff is not None and staff.role is accounts.Role.admin, reason
    again = hall("user", "add", "--username", "lan", "--role", "viewer")
    assert again.exit_code == 1 and "already exists" in again.output
    listed = hall("user", "list").output
    assert "lan\tadmin\tactive" in listed and password not in listed
    actions = _audit(hall.data_dir)
    assert actions[0][0].startswith("cli:") and actions[0][1] == "user.create"


def test_user_passwd_disable_role_and_tokens(hall):
    from click.testing import CliRunner

    from central import accounts

    env = {"HALL_CENTRAL_DATA_DIR": str(hall.data_dir)}
    runner = CliRunner()
    made = runner.invoke(main, ["central", "user", "add", "--username", "tech", "--role", "technician", "--password-stdin"],
                         input="first-password-1\n", env=env)
    assert made.exit_code == 0 and "shown once" not in made.output
    assert runner.invoke(main, ["central", "user", "passwd", "tech", "--password-stdin"], input="\n", env=env).exit_code == 1
    assert runner.invoke(main, ["central", "user", "passwd", "tech", "--password-stdin"], input="second-password-2\n", env=env).exit_code == 0
    with open_store(hall.data_dir) as store:
        assert accounts.authenticate(store, "tech", "first-password-1")[0] is None
        assert accounts.authenticate(store, "tech", "second-password-2")[0] is not None
    assert hall("user", "role", "tech", "viewer").exit_code == 0
    token = hall("user", "token", "add", "tech", "--name", "backup host")
    assert token.exit_code == 0 and token.output.strip().splitlines()[-1].startswith("hct_")
    secret = token.output.strip().splitlines()[-1]
    listed = hall("user", "token", "list", "tech").output
    assert "backup host\tactive" in listed and secret not in listed
    assert hall("user", "disable", "tech").exit_code == 0
    with open_store(hall.data_dir) as store:
        assert accounts.token_staff(store, secret) is None
    assert "tech\tviewer\tdisabled" in hall("user", "list").output
    assert hall("user", "disable", "tech", "--enable").exit_code == 0
    assert hall("user", "token", "revoke", "tech", "1").exit_code == 0
    assert hall("user", "token", "revoke", "tech", "1").exit_code == 1
    assert hall("user", "passwd", "ghost").exit_code == 1
    assert [a for _, a in _audit(hall.data_dir)] == [
        "user.create", "user.password", "user.role", "token.create", "user.disable", "user.enable", "token.revoke"]
    shown = hall("audit", "--action", "user.").output.splitlines()
    assert len(shown) == 5 and "user.enable" in shown[0]


def test_device_commands_are_audited(hall):
    key = SigningKey.generate()
    device_id = hall("device", "add", "--public-key", public_key_text(key), "--hall", "H1").output.strip()
    hall("device", "revoke", device_id)
    assert [a for _, a in _audit(hall.data_dir)] == ["device.register", "device.revoke"]
    assert device_id in hall("audit").output


def test_import_says_each_refused_row_once(tmp_path, faces_dir):
    """As a user runs it (a process of its own: no test harness catching log records)."""
    csv_file = tmp_path / "m.csv"
    csv_file.write_text("id,name,cell,cccd,cards,photos\nbad,Bad,C1,12,,rose_leslie/img2.jpg\nworse,Worse,C1,,04A1B2C3D4E5F607,x.jpg\n")
    run = subprocess.run([str(Path(sys.executable).with_name("hall")), "central", "import", str(csv_file), "--photos", str(faces_dir)],
                         capture_output=True, text=True, timeout=120, check=False,
                         env={**os.environ, "HALL_CENTRAL_DATA_DIR": str(tmp_path / "central")})
    said = run.stdout + run.stderr
    assert run.returncode == 1, said
    assert said.count("bad CCCD number") == 1 and said.count("8 bytes") == 1, said
    assert "imported 0 member(s), 2 row(s) refused" in said
