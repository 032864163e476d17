"""`hall central ...` through click's runner, on a real data directory."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner
from nacl.signing import SigningKey

from central import keys
from central.settings import CentralSettings
from central.store import open_store
from contract import device_id_from_public_key, public_key_text
from hall.cli import main
from hall.cmd_central import central


@pytest.fixture
def hall(tmp_path):
    runner = CliRunner()
    env = {"HALL_CENTRAL_DATA_DIR": str(tmp_path / "central")}

    def invoke(*args: str, **extra_env: str):
        return runner.invoke(main, ["central", *args], env={**env, **extra_env}, catch_exceptions=False)

    invoke.data_dir = tmp_path / "central"
    return invoke


def _commands(group: click.Group, path: tuple[str, ...] = ()):
    for name, cmd in group.commands.items():
        yield (*path, name)
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*path, name))


def test_every_command_has_help(hall):
    paths = list(_commands(central))
    assert {("run",), ("enroll",), ("import",), ("meeting", "add"), ("device", "add"), ("device", "list"), ("key",)} <= set(paths)
    for path in paths:
        result = hall(*path, "--help")
        assert result.exit_code == 0 and "Usage:" in result.output, path


def test_key_prints_centrals_public_key_stably(hall):
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


def test_meeting_add_converts_to_utc_and_refuses_times_without_zone(hall):
    ok = hall("meeting", "add", "--id", "mt1", "--cell", "C1", "--hall", "H1", "--title", "Họp",
              "--starts", "2030-03-01T08:00+07:00", "--ends", "2030-03-01T10:00+07:00")
    assert ok.exit_code == 0 and "2030-03-01T01:00:00Z" in ok.output
    naive = hall("meeting", "add", "--id", "mt2", "--cell", "C1", "--hall", "H1", "--title", "x",
                 "--starts", "2030-03-01T08:00", "--ends", "2030-03-01T10:00+07:00")
    assert naive.exit_code == 1 and "no time zone" in naive.output
    assert "mt1" in hall("meeting", "list").output


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
