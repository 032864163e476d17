"""The simulated hardware of one demo kiosk, and a loopback control endpoint for `hall sim`.

The kiosk process opens the pseudo-terminals' slave ends exactly as it would open
/dev/ttyS0 on a Pi; the simulated PN532 and QR scanner sit on the master ends.
The camera is a StillCamera on a stage file that `show_face` replaces; with nobody in
front of it, it shows an empty scene (a frame with no face), as a real camera would.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np

from contract.errors import HallError
from hardware.camera import show_face
from hardware.pn532_sim import SimulatedPn532
from hardware.qr_scanner import SimulatedQrScanner
from hardware.serial_ports import open_pty_pair

log = logging.getLogger("hall.sim")

FACE_SETTLE_S = 0.6  # a member steps up to the camera before tapping; the camera sees them first
MAX_CONTROL_BODY = 16 * 1024  # a tap, a scan or a little garbage; anything bigger is not from `hall sim`
EMPTY_SCENE = "none"  # --face none: the camera works and sees nobody
CAMERA_OFF = "off"  # --face off: the camera gives no frames (unplugged, broken)


class SimError(HallError, ValueError):
    """A request the rig cannot carry out; the control endpoint answers it with the reason."""


def write_empty_scene(path: Path) -> Path:
    """A frame of an empty hall: a wall and a floor, no face."""
    frame = np.full((480, 640, 3), (205, 215, 220), np.uint8)
    frame[330:] = (120, 135, 150)
    if not cv2.imwrite(str(path), frame):
        raise SimError(f"cannot write the empty scene {path}")
    return path


class _Refused(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


class SimRig:
    def __init__(self, *, stage_path: Path, default_faces: dict[str, Path] | None = None):
        self.stage_path = Path(stage_path)
        self.default_faces = default_faces or {}
        card_fd, self.card_port = open_pty_pair()
        qr_fd, self.qr_port = open_pty_pair()
        self.pn532 = SimulatedPn532(fd=card_fd)
        self.qr = SimulatedQrScanner(fd=qr_fd)
        self._server: ThreadingHTTPServer | None = None
        self.empty_scene = write_empty_scene(self.stage_path.with_name("empty-scene.jpg"))
        show_face(self.stage_path, self.empty_scene)

    def start(self) -> None:
        self.pn532.start()

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
        self.pn532.stop()

    def _stage(self, key: str, face: str | None) -> str | None:
        if face == CAMERA_OFF:
            photo: Path | None = None
        elif face == EMPTY_SCENE:
            photo = self.empty_scene
        else:
            photo = Path(face) if face else self.default_faces.get(key, self.empty_scene)
            if not photo.is_file():
                raise SimError(f"no photo at {photo}")
        show_face(self.stage_path, photo)  # CameraError (a HallError) if it is not an image
        time.sleep(FACE_SETTLE_S)
        if face in (CAMERA_OFF, EMPTY_SCENE):
            return face
        return EMPTY_SCENE if photo == self.empty_scene else str(photo)

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
            def do_POST(self):
                # Every request gets an answer with the reason (`hall sim` prints it), never a traceback.
                try:
                    code, payload = 200, self._handle()
                except _Refused as exc:
                    code, payload = exc.code, {"error": str(exc)}
                except KeyError as exc:
                    code, payload = 400, {"error": f"missing field {exc}"}
                except (HallError, ValueError, OSError) as exc:
                    code, payload = 400, {"error": str(exc)}
                except Exception as exc:
                    log.exception("sim control %s failed", self.path)
                    code, payload = 500, {"error": f"the simulated hardware failed: {exc}"}
                data = json.dumps(payload, ensure_ascii=False).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if code == 413:
                    self.send_header("Connection", "close")  # the body was left unread
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> dict:
                if self.path not in ("/tap", "/scan", "/garbage"):
                    raise _Refused(404, f"no such control {self.path}: /tap, /scan or /garbage")
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    raise _Refused(400, "bad Content-Length") from None
                if length < 0 or length > MAX_CONTROL_BODY:
                    raise _Refused(413, f"request body over {MAX_CONTROL_BODY} bytes")
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                    raise _Refused(400, f"request body is not JSON: {exc}") from None
                if not isinstance(body, dict):
                    raise _Refused(400, "request body is not a JSON object")
                if self.path == "/tap":
                    return rig.tap(str(body["card"]), body.get("face"))
                if self.path == "/scan":
                    return rig.scan(str(body["text"]), body.get("face"))
                return rig.garbage(bytes.fromhex(body.get("hex", "00ff13ab")), body.get("target", "card"))

            def log_message(self, fmt, *args):
                log.debug(fmt, *args)

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self._server.serve_forever, name="sim-control", daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"
