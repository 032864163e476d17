"""Device drivers of the kiosk, each with a simulated twin (``*_sim``/``Simulated*``).

Names are re-exported lazily: ``from hardware import parse_cccd`` must not pay
for importing OpenCV or gpiozero.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import CameraError, CccdError, HardwareError, ReaderError
from .events import CardEvent

_LAZY: dict[str, str] = {
    "build_frame": "pn532",
    "Pn532": "pn532",
    "Pn532Reader": "pn532",
    "FrameParser": "pn532",
    "SimulatedPn532": "pn532_sim",
    "open_pty_pair": "serial_ports",
    "open_serial": "serial_ports",
    "QrScanner": "qr_scanner",
    "SimulatedQrScanner": "qr_scanner",
    "Cccd": "cccd",
    "parse_cccd": "cccd",
    "Signals": "signals",
    "Camera": "camera",
    "OpenCvCamera": "camera",
    "ImageFolderCamera": "camera",
    "StillCamera": "camera",
    "show_face": "camera",
    "open_camera": "camera",
}

__all__ = ["CameraError", "CardEvent", "CccdError", "HardwareError", "ReaderError", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hardware' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
