"""The real PN532 driver and polling thread against the simulated chip, over a real pty."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import pytest

from hardware.errors import ReaderError
from hardware.pn532 import IN_LIST_PASSIVE_TARGET, Pn532, Pn532Reader, build_frame
from hardware.pn532_sim import SimulatedPn532
from hardware.serial_ports import open_pty_pair, open_serial

UID = "04A1B2C3D4E5F6"


def wait_for(predicate, timeout: float = 3.0, step: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


class Line:
    """A pty with the simulated chip on the master end; ``path`` is what the driver opens."""

    def __init__(self, **sim_kw):
        self.master, self.path = open_pty_pair()
        self.sim = SimulatedPn532(fd=self.master, **sim_kw)
        self.sim.start()

    def close(self) -> None:
        self.sim.stop()
        os.close(self.master)


@pytest.fixture
def line():
    ln = Line()
    yield ln
    ln.close()


@pytest.fixture
def port(line):
    p = open_serial(line.path)
    yield p
    p.close()


class Collector:
    def __init__(self):
        self.events = []
        self.lock = threading.Lock()

    def __call__(self, event):
        with self.lock:
            self.events.append(event)


@pytest.fixture
def reader(port):
    got = Collector()
    r = Pn532Reader(port=port, on_card=got, poll_interval=0.03, timeout=0.3)
    r.got = got
    r.start()
    assert r.connected.wait(3), "reader never talked to the simulated chip"
    yield r
    r.stop()


def test_low_level_commands(line, port):
    chip = Pn532(port=port, timeout=0.5)
    chip.wake()
    assert chip.firmware_version() == (0x32, 1, 6, 7)
    chip.set_passive_retries(1)
    assert chip.read_uid() is None
    line.sim.present_card("04:a1:b2:c3:d4:e5:f6", seconds=5)
    assert chip.read_uid() == bytes.fromhex(UID)
    assert line.sim.commands_seen == [0x14, 0x02, 0x32, 0x4A, 0x4A]
    assert chip.stats["bad_frames"] == 0 and chip.stats["timeouts"] == 0
    with pytest.raises(ValueError):
        chip.set_passive_retries(0xFF)


def test_reader_reports_firmware(reader):
    assert reader.firmware == (0x32, 1, 6, 7)


def test_held_card_is_one_event_and_a_second_tap_is_another(reader, line):
    line.sim.present_card(UID, seconds=0.8)
    assert wait_for(lambda: reader.got.events, 2)
    polls_before = line.sim.commands_seen.count(IN_LIST_PASSIVE_TARGET)
    assert wait_for(lambda: not line.sim.card_present, 2)
    time.sleep(0.2)
    # The card was seen on many polls while held, yet reported once.
    assert line.sim.commands_seen.count(IN_LIST_PASSIVE_TARGET) - polls_before >= 5
    assert [(e.kind, e.value) for e in reader.got.events] == [("member_card", UID)]
    assert reader.got.events[0].source == f"pn532:{line.path}"

    line.sim.present_card("11223344", seconds=0.3)
    assert wait_for(lambda: len(reader.got.events) == 2, 2)
    assert reader.got.events[1].value == "11223344"
    assert reader.stats["cards"] == 2


def test_noise_on_the_line_is_counted_logged_and_the_next_tap_still_read(reader, line, caplog):
    caplog.set_level(logging.WARNING, logger="hardware.pn532")
    good = build_frame(bytes([0x4B, 0x00]), tfi=0xD5)
    bad_lcs = bytearray(good)
    bad_lcs[4] ^= 0x55
    bad_dcs = bytearray(good)
    bad_dcs[-2] ^= 0x01
    for raw in (b"\xde\xad\xbe\xef line noise", bytes(bad_lcs), bytes(bad_dcs), good[:6]):
        line.sim.inject(raw)
        time.sleep(0.15)  # let each reach the reader on its own
    assert wait_for(lambda: reader.stats["bad_frames"] >= 4, 2), reader.stats
    reasons = " ".join(r.getMessage() for r in caplog.records if r.name == "hardware.pn532")
    for reason in ("garbage", "bad length checksum", "bad data checksum", "truncated frame"):
        assert reason in reasons

    line.sim.present_card(UID, seconds=0.4)
    assert wait_for(lambda: reader.got.events, 2)
    assert [e.value for e in reader.got.events] == [UID]
    assert reader.stats["frames_ok"] > 0


def test_silent_chip_gets_the_command_again(reader, line):
    line.sim.drop_next(1)
    assert wait_for(lambda: reader.stats["timeouts"] >= 1, 2)
    line.sim.present_card(UID, seconds=0.4)
    assert wait_for(lambda: reader.got.events, 2)
    assert reader.stats["errors"] == 0  # one resend was enough


def test_chip_that_never_answers_is_an_error_not_a_crash(line, port):
    chip = Pn532(port=port, timeout=0.1)
    line.sim.drop_next(3)
    with pytest.raises(ReaderError, match="after 3 attempts"):
        chip.firmware_version()
    assert chip.stats["timeouts"] == 3
    assert chip.firmware_version() == (0x32, 1, 6, 7)


def test_failing_handler_does_not_stop_the_reader(port, line):
    seen = []

    def handler(event):
        seen.append(event)
        raise RuntimeError("consumer bug")

    r = Pn532Reader(port=port, on_card=handler, poll_interval=0.03, timeout=0.3)
    r.start()
    try:
        line.sim.present_card(UID, 0.2)
        assert wait_for(lambda: len(seen) == 1, 2)
        assert wait_for(lambda: not line.sim.card_present, 1)
        time.sleep(0.15)
        line.sim.present_card("11223344", 0.2)
        assert wait_for(lambda: len(seen) == 2, 2)
    finally:
        r.stop()


def test_vanished_port_is_reopened_by_name(tmp_path: Path, caplog):
    """An unplugged USB adapter comes back under its udev symlink: same name, new tty."""
    caplog.set_level(logging.ERROR, logger="hardware.pn532")
    first = Line()
    link = tmp_path / "ttyPN532"
    link.symlink_to(first.path)
    port = open_serial(str(link))
    got = Collector()
    r = Pn532Reader(port=port, on_card=got, poll_interval=0.03, timeout=0.3)
    r.start()
    second = None
    try:
        assert r.connected.wait(3)
        first.close()  # unplugged
        assert wait_for(lambda: r.stats["port_errors"] >= 1, 3)
        assert not r.connected.is_set()
        second = Line()
        tmp = tmp_path / "ttyPN532.new"
        tmp.symlink_to(second.path)
        os.replace(tmp, link)  # plugged back in
        second.sim.present_card(UID, seconds=5)
        assert wait_for(lambda: got.events, 8), r.stats
        assert got.events[0].value == UID
        assert any("port failed" in rec.getMessage() for rec in caplog.records)
    finally:
        r.stop()
        port.close()
        if second:
            second.close()
