"""`hall card`: exit codes and output, through click's runner and as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from click.testing import CliRunner

from hall.cli import main
from hardware.pn532_sim import SimulatedPn532
from hardware.qr_scanner import SimulatedQrScanner
from hardware.serial_ports import open_pty_pair

SAMPLE = "001099012345|123456789|Nguyễn Văn An|15081999|Nam|Số 1 Tràng Tiền, Hoàn Kiếm, Hà Nội|20042021"
HALL = Path(sys.executable).parent / "hall"


def test_parse_prints_fields_as_json():
    result = CliRunner().invoke(main, ["card", "parse", SAMPLE])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["full_name"] == "Nguyễn Văn An"  # not \u-escaped
    assert "Nguyễn Văn An" in result.stdout
    assert data["date_of_birth"] == "1999-08-15"
    assert data["old_id_number"] == "123456789"


def test_parse_reads_stdin_with_dash():
    result = CliRunner().invoke(main, ["card", "parse", "-"], input=SAMPLE + "\r\n")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["id_number"] == "001099012345"


def test_invalid_payload_exits_2_with_reason_on_stderr():
    result = CliRunner().invoke(main, ["card", "parse", "001099012345|x|y"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.strip() == "invalid CCCD QR: expected 7 fields separated by '|', got 3"


def test_help_describes_the_commands():
    result = CliRunner().invoke(main, ["card", "--help"])
    assert result.exit_code == 0
    assert "parse" in result.output and "listen" in result.output
    assert "CCCD" in result.output


def test_real_process_exit_codes():
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    ok = subprocess.run([str(HALL), "card", "parse", SAMPLE], capture_output=True, text=True, env=env, timeout=30)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["address"] == "Số 1 Tràng Tiền, Hoàn Kiếm, Hà Nội"
    bad = subprocess.run(
        [str(HALL), "card", "parse", SAMPLE.replace("15081999", "31021999")], capture_output=True, text=True, env=env, timeout=30
    )
    assert bad.returncode == 2
    assert bad.stderr.strip() == "invalid CCCD QR: date of birth 31021999 is not a real date"


def test_listen_prints_taps_and_parsed_scans():
    nfc_master, nfc_path = open_pty_pair()
    qr_master, qr_path = open_pty_pair()
    chip = SimulatedPn532(fd=nfc_master)
    chip.start()
    scanner = SimulatedQrScanner(fd=qr_master)

    def act():
        chip.present_card("04A1B2C3D4E5F6", seconds=0.3)
        scanner.scan(SAMPLE)
        scanner.scan("not a cccd")

    timer = threading.Timer(0.5, act)
    timer.start()
    try:
        result = CliRunner().invoke(main, ["card", "listen", "--pn532", nfc_path, "--qr", qr_path, "--seconds", "1.5"])
    finally:
        timer.cancel()
        chip.stop()
        os.close(nfc_master)
        os.close(qr_master)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert {"kind": "member_card", "value": "04A1B2C3D4E5F6", "source": f"pn532:{nfc_path}"} in lines
    cccd = [rec for rec in lines if rec.get("cccd")]
    assert cccd and cccd[0]["cccd"]["full_name"] == "Nguyễn Văn An"
    assert any(rec.get("invalid") == "expected 7 fields separated by '|', got 1" for rec in lines)


def test_listen_needs_a_port():
    result = CliRunner().invoke(main, ["card", "listen"])
    assert result.exit_code == 2
    assert "give --pn532 and/or --qr" in result.output
