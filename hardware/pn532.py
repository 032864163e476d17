"""PN532 NFC reader on a UART (HSU): frame codec, command driver, polling thread.

Frames (PN532 user manual UM0701-02, section 6.2):

    normal   00 00 FF LEN LCS TFI PD0..PDn DCS 00     LEN+LCS = 0, TFI+PD*+DCS = 0 (mod 256)
    extended 00 00 FF FF FF LENM LENL LCS TFI ... DCS 00
    ACK      00 00 FF 00 FF 00
    NACK     00 00 FF FF 00 00
    error    00 00 FF 01 FF 7F 81 00                  (application-level error)

TFI is D4 host->PN532 and D5 PN532->host; a response carries the command code + 1.
A UART line picks up noise, and a USB adapter can drop bytes, so the parser
resynchronises on the 00 FF start code and never trusts a length it cannot check.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import serial

from .errors import ReaderError
from .events import CardEvent
from .serial_ports import Backoff, port_label, read_available, try_reopen

log = logging.getLogger("hardware.pn532")

START = b"\x00\xff"
ACK_FRAME = b"\x00\x00\xff\x00\xff\x00"
NACK_FRAME = b"\x00\x00\xff\xff\x00\x00"
ERROR_FRAME = b"\x00\x00\xff\x01\xff\x7f\x81\x00"
TFI_HOST = 0xD4
TFI_PN532 = 0xD5
# HSU wake-up: 0x55 0x55 then a long preamble, so the chip's UART locks on before the first frame.
WAKEUP = b"\x55\x55" + b"\x00" * 14

GET_FIRMWARE_VERSION = 0x02
SAM_CONFIGURATION = 0x14
RF_CONFIGURATION = 0x32
IN_LIST_PASSIVE_TARGET = 0x4A


def _checksum(data: bytes) -> int:
    return (-sum(data)) & 0xFF


def build_frame(data: bytes, *, tfi: int = TFI_HOST) -> bytes:
    """An information frame carrying ``data`` (command code + parameters).

    Normal frame up to 254 data bytes, extended frame beyond (up to 264, the chip's limit).
    """
    body = bytes([tfi]) + bytes(data)
    n = len(body)
    if n <= 0xFF:
        head = bytes([0x00, 0x00, 0xFF, n, _checksum(bytes([n]))])
    elif n <= 265:
        hi, lo = n >> 8, n & 0xFF
        head = bytes([0x00, 0x00, 0xFF, 0xFF, 0xFF, hi, lo, _checksum(bytes([hi, lo]))])
    else:
        raise ValueError(f"PN532 frame data too long: {len(data)} bytes")
    return head + body + bytes([_checksum(body), 0x00])


@dataclass(frozen=True)
class Ack:
    pass


@dataclass(frozen=True)
class Nack:
    pass


@dataclass(frozen=True)
class ErrorFrame:
    """The chip could not process the last command (syntax error in the frame it got)."""


@dataclass(frozen=True)
class Frame:
    tfi: int
    data: bytes  # command (or response) code followed by its parameters


@dataclass(frozen=True)
class Rejected:
    raw: bytes
    reason: str


Item = Ack | Nack | ErrorFrame | Frame | Rejected


class FrameParser:
    """Incremental HSU frame parser. ``feed`` bytes as they come, get frames and
    rejected chunks (each with its reason) back; call ``expire`` after a silence to
    give up on a partial frame (a truncated one) instead of waiting forever."""

    def __init__(self, *, idle: bytes = b"\x00"):
        # Bytes that may sit between frames without being noise: preamble/postamble
        # zeros (and, on the chip's side, the 0x55 wake-up bytes).
        self._idle = frozenset(idle)
        self._buf = bytearray()

    @property
    def has_partial(self) -> bool:
        return any(b not in self._idle for b in self._buf)

    def reset(self) -> None:
        self._buf.clear()

    def feed(self, data: bytes) -> list[Item]:
        self._buf += data
        return self._parse(final=False)

    def expire(self) -> list[Item]:
        return self._parse(final=True)

    def _parse(self, *, final: bool) -> list[Item]:
        out: list[Item] = []
        buf = self._buf
        while buf:
            i = buf.find(START)
            if i < 0:
                # A trailing 00 may be the first half of the next start code.
                keep = 1 if (buf[-1] == 0 and not final) else 0
                self._junk(bytes(buf[: len(buf) - keep]), "garbage without a start code", out)
                del buf[: len(buf) - keep]
                break
            if i > 0:
                self._junk(bytes(buf[:i]), "garbage before a start code", out)
                del buf[:i]
            result, used = self._frame_at(buf)
            if result is None:
                if not final:
                    break
                result = f"truncated frame ({len(buf)} bytes, expected {used})"
            if isinstance(result, str):
                # Skip only this start code: the real frame may begin inside the bad one.
                nxt = buf.find(START, 2)
                end = nxt if nxt >= 0 else len(buf)
                out.append(Rejected(bytes(buf[:end]), result))
                del buf[:end]
                continue
            out.append(result)
            del buf[:used]
        return out

    def _junk(self, chunk: bytes, reason: str, out: list[Item]) -> None:
        if any(b not in self._idle for b in chunk):
            out.append(Rejected(chunk, reason))

    @staticmethod
    def _frame_at(buf: bytearray) -> tuple[Item | str | None, int]:
        """Parse the frame whose start code is at buf[0]. Returns (item, bytes used),
        (reason, 0) for a bad frame, or (None, bytes needed) when more must arrive."""
        if len(buf) < 4:
            return None, 4
        length, lcs = buf[2], buf[3]
        if length == 0x00 and lcs == 0xFF:
            return Ack(), 4
        if length == 0xFF and lcs == 0x00:
            return Nack(), 4
        if length == 0xFF and lcs == 0xFF:
            if len(buf) < 7:
                return None, 7
            hi, lo, xlcs = buf[4], buf[5], buf[6]
            if (hi + lo + xlcs) & 0xFF:
                return "bad extended length checksum", 0
            length, body_at = (hi << 8) | lo, 7
        else:
            if (length + lcs) & 0xFF:
                return f"bad length checksum (LEN {length:02X}, LCS {lcs:02X})", 0
            body_at = 4
        if length == 0:
            return "zero-length frame", 0
        need = body_at + length + 1
        if len(buf) < need:
            return None, need
        body = bytes(buf[body_at : body_at + length])
        if (sum(body) + buf[need - 1]) & 0xFF:
            return f"bad data checksum (DCS {buf[need - 1]:02X})", 0
        if body == b"\x7f":
            return ErrorFrame(), need
        if body[0] not in (TFI_HOST, TFI_PN532):
            return f"unknown frame identifier {body[0]:02X}", 0
        return Frame(body[0], body[1:]), need


class _NoAnswer(Exception):
    pass


class Pn532:
    """Commands and responses over HSU. Not thread-safe: one owner (the reader thread)."""

    def __init__(self, *, port: serial.SerialBase, timeout: float = 1.0, frame_gap: float = 0.1):
        self.port = port
        self.timeout = timeout
        # A partial frame silent for this long is truncated. Generous: USB-serial
        # adapters deliver a frame in chunks up to ~16 ms apart.
        self.frame_gap = frame_gap
        self.source = f"pn532:{port_label(port)}"
        self.stats: dict[str, int] = dict.fromkeys(
            ("commands", "frames_ok", "bad_frames", "timeouts", "error_frames", "stale_frames", "bad_responses"), 0
        )
        self._parser = FrameParser()
        self._items: deque[Item] = deque()
        self._last_rx = time.monotonic()
        # Short reads so that deadlines and stop() are honoured promptly.
        if port.timeout is None or port.timeout > 0.05:
            port.timeout = 0.05

    def reset(self) -> None:
        """Forget buffered input (after the port was re-opened)."""
        self._parser.reset()
        self._items.clear()

    def wake(self) -> None:
        self.port.write(WAKEUP)
        # Normal mode, virtual-card timeout 20 x 50 ms, IRQ pin used.
        self.command(SAM_CONFIGURATION, bytes([0x01, 0x14, 0x01]))

    def firmware_version(self) -> tuple[int, int, int, int]:
        resp = self.command(GET_FIRMWARE_VERSION)
        if len(resp) != 4:
            self.stats["bad_responses"] += 1
            raise ReaderError(f"{self.source}: firmware version has {len(resp)} bytes, expected 4")
        return resp[0], resp[1], resp[2], resp[3]

    def set_passive_retries(self, retries: int) -> None:
        """RFConfiguration item 5: how often InListPassiveTarget retries before
        answering NbTg=0. 0xFF would mean forever (the command then blocks), so refuse it."""
        if not 0 <= retries <= 0xFE:
            raise ValueError("retries must be 0..254 (255 means wait forever)")
        self.command(RF_CONFIGURATION, bytes([0x05, 0xFF, 0x01, retries]))

    def read_uid(self) -> bytes | None:
        """One ISO 14443-A target (106 kbps), its NFCID1, or None if none in the field."""
        resp = self.command(IN_LIST_PASSIVE_TARGET, bytes([0x01, 0x00]))
        if not resp:
            self.stats["bad_responses"] += 1
            raise ReaderError(f"{self.source}: empty InListPassiveTarget response")
        if resp[0] == 0:
            return None
        # NbTg, Tg, SENS_RES(2), SEL_RES, NFCIDLength, NFCID1...
        if len(resp) < 6 or resp[5] not in (4, 7, 10) or len(resp) < 6 + resp[5]:
            self.stats["bad_responses"] += 1
            raise ReaderError(f"{self.source}: malformed InListPassiveTarget response {resp.hex(' ')}")
        return bytes(resp[6 : 6 + resp[5]])

    def command(self, code: int, params: bytes = b"", *, timeout: float | None = None, attempts: int = 3) -> bytes:
        """Send a command, wait for ACK and the response; resend after a silence or
        an error frame. Returns the response parameters (after code + 1)."""
        for attempt in range(1, attempts + 1):
            self._drain()
            self.stats["commands"] += 1
            self.port.write(build_frame(bytes([code]) + params))
            try:
                return self._await_response(code, time.monotonic() + (timeout or self.timeout))
            except _NoAnswer as e:
                log.warning("%s: %s to command 0x%02X (attempt %d of %d)", self.source, e, code, attempt, attempts)
        raise ReaderError(f"{self.source}: no valid answer to command 0x{code:02X} after {attempts} attempts")

    def _await_response(self, code: int, deadline: float) -> bytes:
        acked = False
        while True:
            item = self._next_item(deadline)
            if item is None:
                self.stats["timeouts"] += 1
                raise _NoAnswer("no response" if acked else "no ACK")
            if isinstance(item, Ack):
                self.stats["frames_ok"] += 1
                acked = True
            elif isinstance(item, ErrorFrame):
                self.stats["error_frames"] += 1
                raise _NoAnswer("error frame (chip could not parse the command)")
            elif isinstance(item, Frame) and item.tfi == TFI_PN532 and item.data[:1] == bytes([code + 1]):
                # Accepted even without an ACK: the ACK may have been the garbled chunk.
                self.stats["frames_ok"] += 1
                return item.data[1:]
            else:
                self.stats["stale_frames"] += 1
                log.info("%s: ignored unexpected %r while waiting for 0x%02X", self.source, item, code + 1)

    def _next_item(self, deadline: float) -> Item | None:
        while not self._items:
            now = time.monotonic()
            if now >= deadline:
                return None
            data = read_available(self.port)
            if data:
                self._last_rx = time.monotonic()
                self._take(self._parser.feed(data))
            elif self._parser.has_partial and time.monotonic() - self._last_rx >= self.frame_gap:
                self._take(self._parser.expire())
        return self._items.popleft()

    def _drain(self) -> None:
        """Before a command: whatever already waits is noise or a late answer to an
        older command; a partial frame will never be completed."""
        waiting = self.port.in_waiting
        items = self._parser.feed(self.port.read(waiting)) if waiting else []
        items += self._parser.expire()
        self._take(items)
        while self._items:
            item = self._items.popleft()
            self.stats["stale_frames"] += 1
            log.info("%s: discarded stale %r", self.source, item)

    def _take(self, items: list[Item]) -> None:
        for item in items:
            if isinstance(item, Rejected):
                self.stats["bad_frames"] += 1
                log.warning("%s: rejected %d bytes (%s): %s", self.source, len(item.raw), item.reason, item.raw.hex(" "))
            else:
                self._items.append(item)


class Pn532Reader:
    """Polls a PN532 for member cards on a background thread.

    A card held on the reader is one event until it has been missing for
    ``release_polls`` polls in a row. Bad input, a silent chip and a vanished port
    are logged, counted in ``stats`` and retried (with backoff) until ``stop()``.
    """

    def __init__(
        self,
        *,
        port: serial.SerialBase,
        on_card: Callable[[CardEvent], None],
        poll_interval: float = 0.1,
        name: str = "pn532",
        timeout: float = 0.5,
        release_polls: int = 2,
        passive_retries: int = 1,
    ):
        self.pn532 = Pn532(port=port, timeout=timeout)
        self.on_card = on_card
        self.poll_interval = poll_interval
        self.name = name
        self.release_polls = release_polls
        self.passive_retries = passive_retries
        self.source = f"{name}:{port_label(port)}"
        self.stats = self.pn532.stats
        self.stats.update(cards=0, errors=0, port_errors=0)
        self.firmware: tuple[int, int, int, int] | None = None
        self.connected = threading.Event()  # the chip answered and is being polled
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> serial.SerialBase:
        return self.pn532.port

    def start(self) -> None:
        if self._thread and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-reader", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        self._stopping.set()
        if self._thread:
            self._thread.join(timeout)
        self.connected.clear()

    def _run(self) -> None:
        backoff = Backoff()
        held: bytes | None = None
        misses = 0
        ready = False
        while not self._stopping.is_set():
            try:
                if not ready:
                    self.pn532.wake()
                    self.firmware = self.pn532.firmware_version()
                    self.pn532.set_passive_retries(self.passive_retries)
                    ready = True
                    backoff.reset()
                    self.connected.set()
                    log.info("%s: PN532 firmware %s ready", self.source, ".".join(map(str, self.firmware[1:3])))
                uid = self.pn532.read_uid()
            except ReaderError as e:
                self.stats["errors"] += 1
                ready = False
                self.connected.clear()
                log.warning("%s: %s; waking the chip again", self.source, e)
                backoff.wait(self._stopping)
                continue
            except OSError as e:
                self.stats["port_errors"] += 1
                ready = False
                self.connected.clear()
                log.error("%s: port failed (%s); re-opening with backoff", self.source, e)
                self._reopen(backoff)
                continue
            except Exception:  # the poller must outlive any bug in one poll
                self.stats["errors"] += 1
                ready = False
                log.exception("%s: unexpected error while polling", self.source)
                backoff.wait(self._stopping)
                continue
            if uid is None:
                misses += 1
                if held is not None and misses >= self.release_polls:
                    log.debug("%s: card %s removed", self.source, held.hex().upper())
                    held = None
            else:
                misses = 0
                if uid != held:
                    held = uid
                    self._emit(uid)
            self._stopping.wait(self.poll_interval)

    def _reopen(self, backoff: Backoff) -> None:
        while not backoff.wait(self._stopping):
            try:
                try_reopen(self.pn532.port)
            except OSError as e:
                log.warning("%s: still cannot open the port: %s", self.source, e)
                continue
            self.pn532.reset()
            log.info("%s: port re-opened", self.source)
            return

    def _emit(self, uid: bytes) -> None:
        self.stats["cards"] += 1
        event = CardEvent(kind="member_card", value=uid.hex().upper(), source=self.source)
        log.info("%s: card %s", self.source, event.value)
        try:
            self.on_card(event)
        except Exception:  # a failing consumer must not stop the reader
            log.exception("%s: on_card handler failed for %s", self.source, event.value)
