"""Serial QR scanner over a real pty, with the simulated scanner on the other end."""

from __future__ import annotations

import logging
import os
import time

import pytest

from hardware.qr_scanner import LineSplitter, QrScanner, SimulatedQrScanner
from hardware.serial_ports import open_pty_pair, open_serial

SAMPLE = "001099012345|123456789|Nguyễn Văn An|15081999|Nam|Số 1 Tràng Tiền, Hoàn Kiếm, Hà Nội|20042021"


def wait_for(predicate, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


class Rig:
    def __init__(self, **kw):
        self.master, self.path = open_pty_pair()
        self.sim = SimulatedQrScanner(fd=self.master)
        self.port = open_serial(self.path)
        self.scans: list = []
        self.rejects: list[tuple[bytes, str]] = []
        self.scanner = QrScanner(port=self.port, on_scan=self.scans.append, on_reject=lambda raw, why: self.rejects.append((raw, why)), **kw)
        self.scanner.start()

    def values(self) -> list[str]:
        return [e.value for e in self.scans]

    def close(self) -> None:
        self.scanner.stop()
        self.port.close()
        os.close(self.master)


@pytest.fixture
def rig():
    r = Rig(max_line=256, line_timeout=0.3)
    yield r
    r.close()


def test_a_scan_becomes_one_cccd_qr_event(rig):
    rig.sim.scan(SAMPLE)
    assert wait_for(lambda: rig.scans)
    event = rig.scans[0]
    assert (event.kind, event.value, event.source) == ("cccd_qr", SAMPLE, f"qr:{rig.path}")
    assert rig.rejects == []


def test_cr_lf_and_crlf_terminators_including_split_crlf(rig):
    rig.sim.inject(b"one\rtwo\nthree\r\n")
    rig.sim.inject(b"four\r")
    time.sleep(0.1)
    rig.sim.inject(b"\nfive\r\n")  # the LF of a CRLF arriving late is not an empty line
    assert wait_for(lambda: len(rig.scans) == 5)
    time.sleep(0.1)
    assert rig.values() == ["one", "two", "three", "four", "five"]
    assert rig.rejects == []


def test_invalid_utf8_is_rejected_with_reason_and_the_next_scan_works(rig, caplog):
    caplog.set_level(logging.WARNING, logger="hardware.qr")
    rig.sim.inject(b"abc\xff\xfedef\r\n")
    rig.sim.scan(SAMPLE)
    assert wait_for(lambda: rig.scans and rig.rejects)
    assert rig.rejects == [(b"abc\xff\xfedef", "not valid UTF-8 (byte 0xFF at offset 3)")]
    assert rig.values() == [SAMPLE]
    assert rig.scanner.stats["rejected"] == 1 and rig.scanner.stats["scans"] == 1
    assert any("not valid UTF-8" in r.getMessage() for r in caplog.records)


def test_empty_line_is_rejected(rig):
    rig.sim.inject(b"\r\n")
    rig.sim.scan("ok")
    assert wait_for(lambda: rig.scans)
    assert [why for _, why in rig.rejects] == ["empty line"]


def test_overlong_line_is_rejected_once_and_the_next_scan_works(rig):
    rig.sim.inject(b"x" * 1000 + b"\r\n")
    rig.sim.scan("after")
    assert wait_for(lambda: rig.scans)
    assert [why for _, why in rig.rejects] == ["line longer than 256 bytes"]
    assert rig.values() == ["after"]


def test_unterminated_noise_does_not_stick_to_the_next_scan(rig):
    rig.sim.inject(b"\x07noise")
    assert wait_for(lambda: rig.rejects, 2)
    rig.sim.scan("clean")
    assert wait_for(lambda: rig.scans)
    assert rig.values() == ["clean"]
    assert rig.rejects[0][1].startswith("incomplete line")


def test_line_splitter_unit():
    s = LineSplitter(max_line=4)
    assert s.feed(b"ab\r\ncd\n\n12345\r") == [(b"ab", None), (b"cd", None), (b"", "empty line"), (b"12345", "line longer than 4 bytes")]
    assert not s.has_partial


def test_unplugged_scanner_is_reopened_by_name(tmp_path):
    master, path = open_pty_pair()
    link = tmp_path / "ttyQR"
    link.symlink_to(path)
    port = open_serial(str(link))
    scans: list = []
    scanner = QrScanner(port=port, on_scan=scans.append)
    scanner.start()
    second = None
    try:
        os.close(master)  # unplugged
        assert wait_for(lambda: scanner.stats["port_errors"] >= 1, 3)
        second, second_path = open_pty_pair()
        tmp = tmp_path / "ttyQR.new"
        tmp.symlink_to(second_path)
        os.replace(tmp, link)  # plugged back in under the same udev name

        def scanned() -> bool:
            SimulatedQrScanner(fd=second).scan("back")
            return wait_for(lambda: scans, 0.3)

        assert wait_for(scanned, 8)
        assert scans[0].value == "back"
    finally:
        scanner.stop()
        port.close()
        if second is not None:
            os.close(second)
