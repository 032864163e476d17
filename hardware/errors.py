"""Errors raised by the hardware drivers and the CCCD parser.

Each one mixes in a built-in so that code which only knows the standard library
(``except OSError``, ``except ValueError``) still catches it.
"""

from __future__ import annotations

from contract.errors import HallError


class HardwareError(HallError, IOError):
    """A device could not be opened, answered wrongly, or went away."""


class ReaderError(HardwareError):
    """A card reader (PN532, serial QR scanner) failed."""


class CameraError(HardwareError):
    """A camera source cannot be opened or gives no frames."""


class CccdError(HallError, ValueError):
    """A CCCD QR payload was rejected; ``reason`` says why, in plain English."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
