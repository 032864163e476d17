"""The simulated hardware of one demo kiosk, and a loopback control endpoint for `hall sim`.

The kiosk process opens the pseudo-terminals' slave ends exactly as it would open
/dev/ttyS0 on a Pi; the simulated PN532 and QR scanner sit on the master ends.
The camera is a StillCamera on a stage file that `show_face` replaces.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from hardware.camera import show_face
from hardware.pn532_sim import SimulatedPn532
from hardware.qr_scanner import SimulatedQrScanner
from hardware.serial_ports import open_pty_pair

log = logging.getLogger("hall.sim")

FACE_SETTLE_S = 0.6  # a member steps up to the camera before tapping; the camera sees them first


class SimRig:
    def __init__(self, *, stage_path: Path, default_faces: dict[str, Path] | None = None):
        self.stage_path = Path(stage_path)
        self.default_faces = default_faces or {}
        card_fd, self.card_port = open_pty_pair()
        qr_fd, self.qr_port = open_pty_pair()
        self.pn532 = SimulatedPn532(fd=card_fd)
        self.qr = SimulatedQrScanner(fd=qr_fd)
        self._server: ThreadingHTTPServer | None = None
        show_face(self.stage_path, None)

    def start(self) -> None:
        self.pn532.start()

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
        self.pn532.stop()

    def _stage(self, key: str, face: str | None) -> str | None:
        photo = face or self.default_faces.get(key)
        if face == "none":
            photo = None
        show_face(self.stage_path, photo)
        time.sleep(FACE_SETTLE_S)
        return str(photo) if photo else None

    def tap(self, card: str, face: str | None = None) -> dict:
        # The previous card leaves the field first; the settle time below is long enough for
        # the reader to see it gone, so a second tap of the same card is a new tap.
        self.pn532.remove_card()
        shown = self._stage(card.upper(), face)
        self.pn532.present_card(card.upper())
        return {"tapped": card.upper(), "face": shown}

    def scan(self, text: str, face: str | None = None) -> dict:
        number = text.split("|", 1)[0]
        shown = self._stage(number, face)
        self.qr.scan(text)
        return {"scanned": text, "face": shown}

    def garbage(self, raw: bytes, target: str = "card") -> dict:
        (self.pn532 if target == "card" else self.qr).inject(raw)
        return {"injected": len(raw), "into": target}

    # -- control endpoint (loopback only: it drives a demo, nothing else) ----------

    def serve_control(self, port: int) -> str:
        rig = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                try:
                    if self.path == "/tap":
                        result = rig.tap(body["card"], body.get("face"))
                    elif self.path == "/scan":
                        result = rig.scan(body["text"], body.get("face"))
                    elif self.path == "/garbage":
                        result = rig.garbage(bytes.fromhex(body.get("hex", "00ff13ab")), body.get("target", "card"))
                    else:
                        self.send_error(404)
                        return
                    code, payload = 200, result
                except (KeyError, ValueError) as exc:
                    code, payload = 400, {"error": str(exc)}
                data = json.dumps(payload, ensure_ascii=False).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, fmt, *args):
                log.debug(fmt, *args)

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self._server.serve_forever, name="sim-control", daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"
