"""A simulated PN532 on the device end of a serial line (the master side of a pty).

It speaks the same HSU framing as the chip: ACK, then the response frame, for the
commands the driver uses; the 0x55 wake-up bytes are ignored; frames it cannot
parse are logged and dropped, as the chip drops them. Test handles:
``present_card``, ``remove_card``, ``inject`` (raw noise), ``drop_next`` (stay
silent, as a chip that missed a command).
"""

from __future__ import annotations

import errno
import logging
import os
import select
import threading
import time
from typing import Protocol

from .pn532 import (
    ACK_FRAME,
    ERROR_FRAME,
    GET_FIRMWARE_VERSION,
    IN_LIST_PASSIVE_TARGET,
    RF_CONFIGURATION,
    SAM_CONFIGURATION,
    TFI_HOST,
    TFI_PN532,
    Frame,
    FrameParser,
    Nack,
    Rejected,
    build_frame,
)

log = logging.getLogger("hardware.pn532_sim")


class _SerialLike(Protocol):
    def read(self, size: int = 1) -> bytes: ...
    def write(self, data: bytes) -> int | None: ...


class DeviceLine:
    """The device's end of the line: a raw file descriptor or a pyserial-like object."""

    def __init__(self, fd: int | _SerialLike):
        self.fd = fd
        self._lock = threading.Lock()

    def read(self, timeout: float) -> bytes:
        if not isinstance(self.fd, int):
            return self.fd.read(getattr(self.fd, "in_waiting", 0) or 1)
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return b""
        try:
            return os.read(self.fd, 4096)
        except OSError as e:
            # EIO: nobody has the pty slave open (yet, or any more). Not an error for a device.
            if e.errno == errno.EIO:
                time.sleep(timeout)
                return b""
            raise

    def write(self, data: bytes) -> None:
        with self._lock:
            if not isinstance(self.fd, int):
                self.fd.write(data)
                return
            view = memoryview(data)
            while view:
                n = os.write(self.fd, view)
                view = view[n:]


def parse_uid(uid_hex: str) -> bytes:
    """'04:a1:b2 c3-d4e5f6' -> bytes; a real NFCID1 is 4, 7 or 10 bytes."""
    cleaned = "".join(ch for ch in uid_hex if ch not in ": -")
    try:
        uid = bytes.fromhex(cleaned)
    except ValueError as e:
        raise ValueError(f"card UID must be hex, got {uid_hex!r}") from e
    if len(uid) not in (4, 7, 10):
        raise ValueError(f"card UID must be 4, 7 or 10 bytes, got {len(uid)}")
    return uid


class SimulatedPn532:
    def __init__(self, *, fd: int | _SerialLike, firmware: tuple[int, int, int, int] = (0x32, 1, 6, 7)):
        self.line = DeviceLine(fd)
        self.firmware = firmware
        self.commands_seen: list[int] = []
        self.rejected: list[str] = []  # reasons for the frames it dropped
        self._parser = FrameParser(idle=b"\x00\x55")
        self._card: tuple[bytes, float] | None = None
        self._drop = 0
        self._last_response: bytes | None = None
        self._state_lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="pn532-sim", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread:
            self._thread.join(2.0)

    def present_card(self, uid_hex: str, seconds: float = 0.8) -> None:
        uid = parse_uid(uid_hex)
        with self._state_lock:
            self._card = (uid, time.monotonic() + seconds)

    def remove_card(self) -> None:
        with self._state_lock:
            self._card = None

    @property
    def card_present(self) -> bool:
        return self._current_uid() is not None

    def inject(self, raw: bytes) -> None:
        self.line.write(raw)

    def drop_next(self, count: int = 1) -> None:
        """Ignore the next ``count`` command frames entirely (no ACK, no response)."""
        with self._state_lock:
            self._drop += count

    def _current_uid(self) -> bytes | None:
        with self._state_lock:
            if self._card and time.monotonic() < self._card[1]:
                return self._card[0]
            return None

    def _run(self) -> None:
        last_rx = time.monotonic()
        while not self._stopping.is_set():
            try:
                data = self.line.read(0.05)
            except OSError as e:
                log.warning("simulated PN532: line closed (%s)", e)
                return
            if data:
                last_rx = time.monotonic()
                items = self._parser.feed(data)
            elif self._parser.has_partial and time.monotonic() - last_rx > 0.1:
                items = self._parser.expire()
            else:
                continue
            for item in items:
                try:
                    self._handle(item)
                except OSError as e:
                    log.warning("simulated PN532: cannot answer (%s)", e)

    def _handle(self, item: object) -> None:
        if isinstance(item, Rejected):
            self.rejected.append(item.reason)
            log.warning("simulated PN532: dropped %d bytes (%s)", len(item.raw), item.reason)
        elif isinstance(item, Nack):
            if self._last_response:  # the host asks for the last response again
                self.line.write(self._last_response)
        elif isinstance(item, Frame) and item.tfi == TFI_HOST:
            code = item.data[0]
            self.commands_seen.append(code)
            with self._state_lock:
                if self._drop:
                    self._drop -= 1
                    return
            self.line.write(ACK_FRAME)
            params = self._respond(code, item.data[1:])
            response = ERROR_FRAME if params is None else build_frame(bytes([code + 1]) + params, tfi=TFI_PN532)
            self._last_response = response
            self.line.write(response)
        else:
            log.info("simulated PN532: ignored %r", item)

    def _respond(self, code: int, params: bytes) -> bytes | None:
        if code == GET_FIRMWARE_VERSION:
            return bytes(self.firmware)
        if code in (SAM_CONFIGURATION, RF_CONFIGURATION):
            return b""
        if code == IN_LIST_PASSIVE_TARGET:
            if len(params) < 2:
                return None
            uid = self._current_uid()
            if uid is None or params[1] != 0x00:  # only 106 kbps type A cards here
                return b"\x00"
            # NbTg=1, Tg=1, SENS_RES 00 44, SEL_RES 00, NFCIDLength, NFCID1
            return bytes([1, 1, 0x00, 0x44, 0x00, len(uid)]) + uid
        return None
