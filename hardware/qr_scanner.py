"""Serial QR/barcode scanner: one scan per line, and its simulated twin.

Scanners in serial (not keyboard) mode end each scan with CR, LF or CRLF. A line
that is empty, too long, not UTF-8, or never finished (no terminator within
``line_timeout``, e.g. noise on the wire) is rejected with a reason, so noise
never sticks to the front of the next real scan.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import serial

from .events import CardEvent
from .pn532_sim import DeviceLine
from .serial_ports import Backoff, port_label, read_available, try_reopen

log = logging.getLogger("hardware.qr")


class LineSplitter:
    """Bytes in, complete lines (or rejections) out. CRLF counts as one terminator."""

    def __init__(self, max_line: int):
        self.max_line = max_line
        self._buf = bytearray()
        self._after_cr = False
        self._overflow = False  # discarding the rest of a too-long line

    @property
    def has_partial(self) -> bool:
        return bool(self._buf) or self._overflow

    def feed(self, data: bytes) -> list[tuple[bytes, str | None]]:
        """Returns (raw line, None) for a line to decode, (raw, reason) for a rejection."""
        out: list[tuple[bytes, str | None] | None] = []
        for b in data:
            if b in (0x0D, 0x0A):
                if b == 0x0A and self._after_cr:
                    self._after_cr = False
                    continue
                self._after_cr = b == 0x0D
                out.append(self._finish())
                continue
            self._after_cr = False
            if self._overflow:
                continue
            self._buf.append(b)
            if len(self._buf) > self.max_line:
                out.append((bytes(self._buf), f"line longer than {self.max_line} bytes"))
                self._buf.clear()
                self._overflow = True
        return [item for item in out if item is not None]

    def expire(self, reason: str) -> list[tuple[bytes, str | None]]:
        raw, overflow = bytes(self._buf), self._overflow
        self._buf.clear()
        self._overflow = False
        return [] if overflow and not raw else [(raw, reason)]

    def _finish(self) -> tuple[bytes, str | None] | None:
        raw = bytes(self._buf)
        self._buf.clear()
        if self._overflow:
            self._overflow = False
            return None  # already rejected when it overflowed
        return (raw, "empty line") if not raw else (raw, None)


class QrScanner:
    def __init__(
        self,
        *,
        port: serial.SerialBase,
        on_scan: Callable[[CardEvent], None],
        on_reject: Callable[[bytes, str], None] | None = None,
        max_line: int = 1024,
        name: str = "qr",
        line_timeout: float = 1.0,
    ):
        self.port = port
        self.on_scan = on_scan
        self.on_reject = on_reject
        self.name = name
        self.line_timeout = line_timeout
        self.source = f"{name}:{port_label(port)}"
        self.stats: dict[str, int] = dict.fromkeys(("scans", "rejected", "bytes", "port_errors", "errors"), 0)
        self._lines = LineSplitter(max_line)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        if port.timeout is None or port.timeout > 0.1:
            port.timeout = 0.1

    def start(self) -> None:
        if self._thread and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-scanner", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        self._stopping.set()
        if self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        backoff = Backoff()
        last_rx = time.monotonic()
        while not self._stopping.is_set():
            try:
                data = read_available(self.port)
            except OSError as e:
                self.stats["port_errors"] += 1
                log.error("%s: port failed (%s); re-opening with backoff", self.source, e)
                self._reopen(backoff)
                continue
            try:
                if data:
                    backoff.reset()
                    last_rx = time.monotonic()
                    self.stats["bytes"] += len(data)
                    self._deliver(self._lines.feed(data))
                elif self._lines.has_partial and time.monotonic() - last_rx > self.line_timeout:
                    self._deliver(self._lines.expire(f"incomplete line (no CR/LF within {self.line_timeout:g} s)"))
            except Exception:  # the scanner thread must outlive any bug
                self.stats["errors"] += 1
                log.exception("%s: unexpected error handling input", self.source)

    def _deliver(self, lines: list[tuple[bytes, str | None]]) -> None:
        for raw, reason in lines:
            text = None
            if reason is None:
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    reason = f"not valid UTF-8 (byte 0x{raw[e.start]:02X} at offset {e.start})"
            if text is None:
                self._reject(raw, reason or "unreadable")
                continue
            self.stats["scans"] += 1
            event = CardEvent(kind="cccd_qr", value=text, source=self.source)
            log.info("%s: scan of %d characters", self.source, len(text))
            try:
                self.on_scan(event)
            except Exception:
                log.exception("%s: on_scan handler failed", self.source)

    def _reject(self, raw: bytes, reason: str) -> None:
        self.stats["rejected"] += 1
        shown = raw[:64].hex(" ") + (" ..." if len(raw) > 64 else "")
        log.warning("%s: rejected %d bytes (%s): %s", self.source, len(raw), reason, shown)
        if self.on_reject:
            try:
                self.on_reject(raw, reason)
            except Exception:
                log.exception("%s: on_reject handler failed", self.source)

    def _reopen(self, backoff: Backoff) -> None:
        while not backoff.wait(self._stopping):
            try:
                try_reopen(self.port)
            except OSError as e:
                log.warning("%s: still cannot open the port: %s", self.source, e)
                continue
            self._lines = LineSplitter(self._lines.max_line)
            log.info("%s: port re-opened", self.source)
            return


class SimulatedQrScanner:
    """The scanner's side of the line: writes what a scanner would send."""

    def __init__(self, *, fd: int):
        self.line = DeviceLine(fd)

    def scan(self, text: str) -> None:
        self.line.write(text.encode("utf-8") + b"\r\n")

    def inject(self, raw: bytes) -> None:
        self.line.write(raw)

