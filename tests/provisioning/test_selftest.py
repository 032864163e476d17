"""`hall provision selftest` on an enrolled kiosk whose parts are the simulated twins; break one part at a time."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from edge_agent.clock import SystemClock
from hall.cmd_provision import provision
from hardware.camera import show_face
from provisioning.enrol import load_agent_settings
from provisioning.selftest import run_selftest

from . import Rig
from .test_enrol_e2e import _env


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    r = Rig(tmp_path_factory.mktemp("rig")).start()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def kiosk(rig):
    return rig.enrol("kiosk")


def _selftest(kiosk, twins, *extra: str, **env: str):
    return CliRunner().invoke(provision, ["selftest", "--sync-flag", str(twins["sync_flag"]), *extra],
                              env=_env(kiosk.data_dir, twins, **env))


def test_selftest_passes_with_the_simulated_twins(kiosk, twins):
    result = _selftest(kiosk, twins, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] is True and report["device"] == kiosk.device and report["hall"] == "H1"
    status = {c["name"]: c["status"] for c in report["checks"]}
    assert status == {"camera": "ok", "card reader": "ok", "qr scanner": "skip", "lights and buzzer": "ok",
                      "broker": "ok", "clock": "ok", "disk": "ok", "outbox": "ok"}


def test_empty_camera_stage_fails_with_a_fix(kiosk, twins):
    show_face(twins["stage"], None)
    result = _selftest(kiosk, twins)
    assert result.exit_code == 1
    line = next(x for x in result.output.splitlines() if "camera:" in x)
    assert line.strip().startswith("[FAIL] camera: no frames from still:")
    assert "put a face photo there" in line
    assert "1 check(s) failed" in result.output


def test_missing_reader_port_fails_with_a_fix(kiosk, twins, tmp_path):
    gone = str(tmp_path / "ttyUSB-unplugged")
    result = _selftest(kiosk, twins, "--json", HALL_AGENT_CARD_READER=gone)
    assert result.exit_code == 1
    report = json.loads(result.output)
    reader = next(c for c in report["checks"] if c["name"] == "card reader")
    assert reader["status"] == "fail" and f"cannot open {gone}" in reader["detail"]
    assert "check the reader's cable" in reader["fix"]
    assert [c["name"] for c in report["checks"] if c["status"] == "fail"] == ["card reader"]


def test_unsynced_clock_and_unreachable_broker_say_what_to_do(kiosk, twins, tmp_path):
    settings = load_agent_settings(kiosk.data_dir).model_copy(update={
        "camera": f"still:{twins['stage']}", "card_reader": twins["reader"], "mock_gpio": True, "mqtt_port": 1,
    })
    report = run_selftest(settings, clock=SystemClock(sync_flag=tmp_path / "no-such-flag"), broker_timeout=1)
    assert not report.ok
    assert report.check("clock").status == "warn" and "NTP" in report.check("clock").fix
    broker = report.check("broker")
    assert broker.status == "fail" and "cannot reach 127.0.0.1:1" in broker.detail and "firewall" in broker.fix


def test_selftest_before_enrolment_says_enrol_first(twins, tmp_path):
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    result = CliRunner().invoke(provision, ["selftest", "--sync-flag", str(twins["sync_flag"])],
                                env={**_env(fresh, twins), "HALL_AGENT_MQTT_PORT": "1"})
    assert result.exit_code == 1
    assert "(not enrolled)" in result.output and "hall provision enroll" in result.output
    assert not (fresh / "device.key").exists()  # a self-test must not invent an identity
    os.rmdir(fresh)


def test_a_kiosk_that_cannot_read_any_card_fails(kiosk, twins):
    result = _selftest(kiosk, twins, "--json", HALL_AGENT_CARD_READER="", HALL_AGENT_QR_SCANNER="")
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    reader = next(c for c in report["checks"] if c["name"] == "card reader")
    assert reader["status"] == "fail" and "cannot read any card" in reader["detail"]
    assert "HALL_AGENT_CARD_READER" in reader["fix"] and "HALL_AGENT_QR_SCANNER" in reader["fix"]
    # A QR scanner alone is enough to check members in.
    qr_only = _selftest(kiosk, twins, "--json", HALL_AGENT_CARD_READER="", HALL_AGENT_QR_SCANNER=twins["reader"])
    assert qr_only.exit_code == 0, qr_only.output
    status = {c["name"]: c["status"] for c in json.loads(qr_only.output)["checks"]}
    assert status["card reader"] == "skip" and status["qr scanner"] == "ok"


def test_an_unsynced_clock_is_a_warning_not_a_failure(kiosk, twins, tmp_path):
    result = CliRunner().invoke(provision, ["selftest", "--sync-flag", str(tmp_path / "not-synced")],
                                env=_env(kiosk.data_dir, twins))
    assert result.exit_code == 0, result.output
    clock = next(x for x in result.output.splitlines() if "clock:" in x)
    assert clock.strip().startswith("[warn] clock: not synchronised") and "NTP" in clock
    assert "all checks passed, 1 warning" in result.output


def test_selftest_output_is_not_cluttered_by_library_warnings(tmp_path):
    import subprocess
    import sys

    env = {**os.environ, "HALL_AGENT_DATA_DIR": str(tmp_path / "k"), "HALL_AGENT_CAMERA": "63",
           "HALL_AGENT_MOCK_GPIO": "false", "HALL_AGENT_MQTT_PORT": "1"}
    env.pop("OPENCV_LOG_LEVEL", None)
    done = subprocess.run([sys.executable, "-m", "hall", "provision", "selftest"], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 1
    assert "[FAIL] camera: cannot open 63" in done.stdout
    # OpenCV's "[ WARN:0@…] global cap_v4l.cpp …" lines and gpiozero's PinFactoryFallback tracebacks
    # said the same as the checklist, only less clearly.
    assert "WARN" not in done.stderr and "PinFactoryFallback" not in done.stderr, done.stderr
