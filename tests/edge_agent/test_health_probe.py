"""The kiosk's health readings (edge_agent/health_probe.py), from files and a command in tmp_path."""

from __future__ import annotations

import os

from edge_agent.health_probe import HealthProbe, decode_throttled, parse_throttled


def probe(tmp_path, **kw):
    sys = tmp_path / "sys"
    sys.mkdir(exist_ok=True)
    defaults = dict(throttled_path=sys / "get_throttled", bootstatus_path=sys / "bootstatus", boot_id_path=sys / "boot_id",
                    meminfo_path=sys / "meminfo", vcgencmd=None)
    return HealthProbe(tmp_path / "data", **{**defaults, **kw})


def test_the_throttled_bits_decode_into_words():
    assert decode_throttled(0x50005) == ["under-voltage now", "throttled now", "under-voltage has occurred", "throttled has occurred"]
    assert decode_throttled(0) == []
    assert parse_throttled("50005\n") == parse_throttled("throttled=0x50005\n") == 0x50005
    assert parse_throttled("garbage") is None


def test_on_a_pc_without_the_pi_firmware_or_a_watchdog_every_pi_reading_is_none(tmp_path):
    p = probe(tmp_path)
    snap = p.snapshot()
    assert snap["throttled"] is None and snap["throttled_words"] is None and snap["last_reboot"] is None
    assert snap["memory_used_bytes"] is None and snap["boot_count"] is None  # no files in tmp_path/sys


def test_get_throttled_from_sysfs_else_from_vcgencmd(tmp_path):
    (tmp_path / "sys").mkdir()
    (tmp_path / "sys" / "get_throttled").write_text("50005\n")
    assert probe(tmp_path).snapshot()["throttled_words"][0] == "under-voltage now"
    (tmp_path / "sys" / "get_throttled").unlink()
    tool = tmp_path / "vcgencmd"
    tool.write_text("#!/bin/sh\n[ \"$1\" = get_throttled ] && echo throttled=0x20002\n")
    os.chmod(tool, 0o755)
    assert probe(tmp_path, vcgencmd=str(tool)).throttled() == 0x20002


def test_memory_boot_count_and_watchdog_reboot(tmp_path):
    sys = tmp_path / "sys"
    sys.mkdir()
    (sys / "meminfo").write_text("MemTotal:        3884000 kB\nMemFree:  100 kB\nMemAvailable:    2884000 kB\n")
    (sys / "bootstatus").write_text("32\n")
    (sys / "boot_id").write_text("boot-a\n")
    p = probe(tmp_path)
    assert p.memory() == (1000000 * 1024, 3884000 * 1024)
    assert p.last_reboot == "watchdog" and p.boot_count == 1
    assert probe(tmp_path).boot_count == 1  # the agent restarted within the same boot
    (sys / "boot_id").write_text("boot-b\n")
    (sys / "bootstatus").write_text("0\n")
    again = probe(tmp_path)
    assert again.boot_count == 2 and again.last_reboot == "not watchdog"


def test_camera_fps_from_the_face_workers_frame_counter(tmp_path):
    p = probe(tmp_path)
    assert p.camera_fps({"frames_read": 100}, now=10.0) is None  # the first look has nothing to compare with
    assert p.camera_fps({"frames_read": 250}, now=20.0) == 15.0
    assert p.camera_fps({"frames_read": 3}, now=21.0) is None  # a restarted worker counts from zero
    assert p.camera_fps(None) is None


def test_ip_of_the_default_route_or_none(tmp_path):
    ip = probe(tmp_path, route_probe=("127.0.0.1", 9)).ip()
    assert ip == "127.0.0.1"
    assert probe(tmp_path, route_probe=("no-such-host.invalid", 9)).ip() is None
