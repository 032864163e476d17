"""Opening serial ports, making pseudo-terminal pairs for the simulated twins,
and the reconnect-with-backoff rule the reader threads share."""

from __future__ import annotations

import os
import threading
import tty

import serial

from .errors import ReaderError


def open_pty_pair() -> tuple[int, str]:
    """A fresh pseudo-terminal: (master fd, slave path).

    The simulated device owns the master end; the driver opens the slave path
    exactly as it would open /dev/ttyS0. Both ends are put in raw mode so that no
    byte is translated, echoed or swallowed by the line discipline before
    pyserial (which also sets raw mode) opens the slave.
    """
    master, slave = os.openpty()
    try:
        tty.setraw(master)
        tty.setraw(slave)
        path = os.ttyname(slave)
    except BaseException:
        os.close(master)
        os.close(slave)
        raise
    os.close(slave)
    return master, path


def open_serial(url: str, *, baudrate: int = 115200, timeout: float = 0.2) -> serial.Serial:
    """Open a serial port by device path (/dev/ttyS0, /dev/pts/5, a udev symlink) or
    pyserial URL (loop://, rfc2217://...). Raises ReaderError with the cause."""
    kwargs: dict = {"baudrate": baudrate, "timeout": timeout, "write_timeout": 2.0}
    if "://" not in url:
        # Two processes reading one UART each get half the bytes; refuse instead.
        kwargs["exclusive"] = True
    try:
        return serial.serial_for_url(url, **kwargs)
    except (serial.SerialException, OSError, ValueError) as e:
        raise ReaderError(f"serial: cannot open {url}: {e}") from e


def port_label(port: serial.SerialBase) -> str:
    """The name a port was opened with, for logs and CardEvent.source."""
    return str(getattr(port, "port", None) or getattr(port, "name", None) or "?")


def read_available(port: serial.SerialBase) -> bytes:
    """Whatever is waiting, or wait up to the port's timeout for at least one byte."""
    return port.read(port.in_waiting or 1)


class Backoff:
    """Delays for retrying a vanished port: 0.2 s doubling up to ``maximum``."""

    def __init__(self, first: float = 0.2, maximum: float = 5.0):
        self.first = first
        self.maximum = maximum
        self.next = first

    def reset(self) -> None:
        self.next = self.first

    def wait(self, stopping: threading.Event) -> bool:
        """Sleep the current delay (interrupted by ``stopping``); True if stopping."""
        delay = self.next
        self.next = min(self.next * 2, self.maximum)
        return stopping.wait(delay)


def try_reopen(port: serial.SerialBase) -> None:
    """Close and re-open a port by its original name; raises OSError if still gone.

    A USB adapter that was unplugged and plugged back comes back under its udev
    symlink, so re-opening by name finds it again.
    """
    try:
        port.close()
    except Exception:  # closing a dead port may fail in any way
        pass
    try:
        port.open()
    except (serial.SerialException, ValueError) as e:
        raise OSError(str(e)) from e
