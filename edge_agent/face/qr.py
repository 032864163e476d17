"""QR codes at the camera: a hall without a serial QR scanner shows the CCCD's QR to the camera.

The face worker decodes the frames it already reads (it owns the camera) and sends each new QR
text to the parent, which hands it to the check-in flow as a CardEvent of kind "cccd_camera";
the flow parses it exactly as a serial scanner's scan.

Decoder: zxing-cpp. bench/qr_camera.py measured it against OpenCV's QRCodeDetector on CCCD
payloads pasted into real 640x480 frames (60-200 px, 0-30 degrees, perspective, blur, noise):
see docs/DESIGN.md for the figures. OpenCV stays the fallback when zxing-cpp is missing.

Debounce: a member holds the card up for a second or more, i.e. several looks. A text fires
once and not again until it has been out of view for `gone_s` (2 s), so a held QR is one
check-in attempt and a garbage QR one invalid-QR verdict.
"""

from __future__ import annotations

import time
from typing import Any

MAX_TEXT = 1024  # a CCCD payload is ~150 bytes; anything longer is not one and is not passed on
MAX_REMEMBERED = 16


class QrDecoder:
    """Decode every QR code in a BGR or grey frame; `backend` is "zxing" or "opencv"."""

    def __init__(self, backend: str = "auto") -> None:
        if backend == "auto":
            try:
                import zxingcpp  # imported to see whether it is there

                backend = "zxing"
            except ImportError:
                backend = "opencv"
        self.backend = backend
        if backend == "zxing":
            import zxingcpp

            self._zx = zxingcpp
        elif backend == "opencv":
            import cv2

            self._cv = cv2.QRCodeDetector()
        else:
            raise ValueError(f"unknown QR backend {backend!r}")

    def decode(self, frame: Any) -> list[str]:
        import cv2

        grey = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        if self.backend == "zxing":
            found = self._zx.read_barcodes(grey, formats=self._zx.BarcodeFormat.QRCode)
            texts = [r.text for r in found if r.valid]
        else:
            try:
                ok, texts, _, _ = self._cv.detectAndDecodeMulti(grey)
            except cv2.error:
                return []
            texts = list(texts) if ok else []
        return [t for t in texts if t and len(t) <= MAX_TEXT]


class QrDebounce:
    """Which QR texts are new: seen now and not seen during the last `gone_s` seconds."""

    def __init__(self, gone_s: float = 2.0, clock: Any = time.monotonic) -> None:
        self.gone_s, self.clock = gone_s, clock
        self._last_seen: dict[str, float] = {}

    def see(self, texts: list[str]) -> list[str]:
        now = self.clock()
        self._last_seen = {t: at for t, at in self._last_seen.items() if now - at < self.gone_s}
        new = [t for t in dict.fromkeys(texts) if t not in self._last_seen]
        for t in texts:
            self._last_seen[t] = now
        if len(self._last_seen) > MAX_REMEMBERED:  # a flood of codes: keep the most recent
            keep = sorted(self._last_seen.items(), key=lambda kv: kv[1])[-MAX_REMEMBERED:]
            self._last_seen = dict(keep)
        return new
