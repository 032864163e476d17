"""The kiosk's self-test: every part the agent needs, checked the way the agent uses it.

Each check says in plain words what it found and, when it fails, what to do
about it. Devices come from AgentSettings, so the simulated twins (a PN532 on a
pseudo-terminal, a ``still:`` camera stage, gpiozero's MockFactory) are checked
by the very same code as the real parts. A check that crashes fails alone; the
others still run.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from contract import Topics
from edge_agent.clock import SystemClock
from edge_agent.identity import SIGNING_KEY_FILE
from edge_agent.settings import AgentSettings

from .enrol import TlsPaths, tls_paths

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"  # a warning is worth reading but does not stop the kiosk


@dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        mark = {OK: "[ ok ]", WARN: "[warn]", FAIL: "[FAIL]", SKIP: "[skip]"}[self.status]
        text = f"{mark} {self.name}: {self.detail}"
        return f"{text} — {self.fix}" if self.fix else text


@dataclass
class Report:
    device: str | None
    hall: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.status != FAIL for c in self.checks)

    def check(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "device": self.device, "hall": self.hall, "checks": [asdict(c) for c in self.checks]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2)

    def text(self) -> str:
        head = f"Self-test of kiosk {self.device or '(not enrolled)'}{' in hall ' + self.hall if self.hall else ''}"
        failed = sum(c.status == FAIL for c in self.checks)
        warned = sum(c.status == WARN for c in self.checks)
        tail = "all checks passed" if self.ok else f"{failed} check(s) failed: fix them and run `hall provision selftest` again"
        if warned:
            tail += f", {warned} warning{'s' if warned > 1 else ''}"
        return "\n".join([head, *("  " + c.line() for c in self.checks), tail])


def _camera_label(source: str) -> str:
    return f"/dev/video{source}" if source.isdigit() else source


def check_camera(settings: AgentSettings, timeout: float = 3.0) -> Check:
    from hardware.camera import open_camera
    from hardware.errors import CameraError

    source = settings.camera
    label = _camera_label(source)
    if source.startswith("still:"):
        fix = f"the camera stage {source[6:]} is empty or unreadable: put a face photo there (hardware.camera.show_face)"
    elif source.startswith("folder:"):
        fix = f"put image files into {source[7:]}"
    elif "://" in source:
        fix = "check the camera's address, its power and the network to it"
    else:
        fix = ("check the ribbon cable (both ends seated, contacts the right way round), that the camera is "
               "enabled, and that no other program holds it")
    try:
        cam = open_camera(source)
    except CameraError as exc:
        return Check("camera", FAIL, str(exc).removeprefix("camera: "), fix)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            frame = cam.read()
            if frame is not None:
                return Check("camera", OK, f"{frame.shape[1]}x{frame.shape[0]} frames from {label}")
            time.sleep(0.05)
    finally:
        cam.release()
    return Check("camera", FAIL, f"no frames from {label}", fix)


def check_card_reader(settings: AgentSettings) -> Check:
    from hardware.errors import ReaderError
    from hardware.pn532 import Pn532
    from hardware.serial_ports import open_serial

    path = settings.card_reader
    if not path and not settings.qr_scanner:
        return Check("card reader", FAIL, "no card reader and no QR scanner configured: this kiosk cannot read any card",
                     "connect the PN532 and set HALL_AGENT_CARD_READER (e.g. /dev/ttyAMA0), or the QR scanner and "
                     "HALL_AGENT_QR_SCANNER (ls /dev/serial/by-id/), in agent.env")
    if not path:
        return Check("card reader", SKIP, "no card reader configured (HALL_AGENT_CARD_READER is empty); the QR scanner reads cards")
    try:
        port = open_serial(path)
    except ReaderError as exc:
        return Check("card reader", FAIL, f"cannot open {path} ({exc.__cause__ or exc})",
                     "check the reader's cable and HALL_AGENT_CARD_READER; on a Pi's own UART enable the serial port "
                     "(raspi-config → Interface Options → Serial: no login shell, hardware port on)")
    try:
        chip = Pn532(port=port)
        chip.wake()
        ic, ver, rev, _ = chip.firmware_version()
        return Check("card reader", OK, f"PN5{ic:02X} firmware {ver}.{rev} answers on {path}")
    except (ReaderError, OSError) as exc:
        return Check("card reader", FAIL, f"the reader on {path} does not answer ({exc})",
                     "check TX/RX are crossed, the module has 3.3-5 V, and its mode switches are set to HSU (UART)")
    finally:
        port.close()


def check_qr_scanner(settings: AgentSettings) -> Check:
    from hardware.errors import ReaderError
    from hardware.serial_ports import open_serial

    path = settings.qr_scanner
    if not path:
        return Check("qr scanner", SKIP, "no QR scanner configured (HALL_AGENT_QR_SCANNER is empty)")
    try:
        open_serial(path).close()
    except ReaderError as exc:
        return Check("qr scanner", FAIL, f"cannot open {path} ({exc.__cause__ or exc})",
                     "check the scanner's USB cable and HALL_AGENT_QR_SCANNER (ls /dev/serial/by-id/)")
    return Check("qr scanner", OK, f"port {path} opens (scan a code on the kiosk to test the scanner itself)")


def check_signals(settings: AgentSettings) -> Check:
    from hardware.signals import Signals

    factory = None
    if settings.mock_gpio:
        from gpiozero.pins.mock import MockFactory

        factory = MockFactory()
    pins = f"{settings.green_pin}/{settings.red_pin}/{settings.buzzer_pin}"
    try:
        with Signals(green_pin=settings.green_pin, red_pin=settings.red_pin, buzzer_pin=settings.buzzer_pin,
                     pin_factory=factory) as sig:
            wrong = []
            for name, dev in (("green LED", sig.green), ("red LED", sig.red), ("buzzer", sig.buzzer)):
                dev.on()
                lit = dev.is_active
                time.sleep(0.15)  # long enough for the technician to see and hear it
                dev.off()
                if not lit or dev.is_active:
                    wrong.append(name)
    except Exception as exc:  # gpiozero raises many kinds for a pin it cannot have
        return Check("lights and buzzer", FAIL, f"cannot drive GPIO {pins}: {exc}",
                     "check HALL_AGENT_GREEN_PIN/RED_PIN/BUZZER_PIN and that no other program (a second agent?) holds the pins")
    if wrong:
        return Check("lights and buzzer", FAIL, f"{', '.join(wrong)} did not follow on/off",
                     "check the wiring to GPIO " + pins)
    mode = " (simulated pins)" if factory else " — watch: green, red and the buzzer should each have flashed once"
    return Check("lights and buzzer", OK, f"toggled GPIO {pins}{mode}")


def check_broker(settings: AgentSettings, device_id: str | None, tls: TlsPaths, timeout: float = 5.0) -> Check:
    import paho.mqtt.client as mqtt

    where = f"{settings.mqtt_host}:{settings.mqtt_port}"
    if not tls.exist():
        return Check("broker", FAIL, f"no TLS certificate files ({tls.cert}, {tls.key}, {tls.ca})",
                     "enrol this kiosk first: hall provision enroll --central URL --token T")
    connected, subscribed = threading.Event(), threading.Event()
    result: dict[str, Any] = {}

    def on_connect(client: mqtt.Client, userdata: object, flags: object, reason: Any, properties: object = None) -> None:
        result["reason"] = reason
        connected.set()
        if not reason.is_failure and device_id:
            client.subscribe(Topics(settings.topic_prefix).device_subscriptions(device_id))

    def on_subscribe(client: mqtt.Client, userdata: object, mid: int, codes: list[Any], properties: object = None) -> None:
        result["granted"] = codes
        subscribed.set()

    # Clean session, and gone at once: the broker gives us the device id as client id, so this
    # briefly replaces a running agent's connection; the agent reconnects by itself.
    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                         client_id=f"selftest-{device_id or 'unknown'}", clean_session=True)
    client.on_connect, client.on_subscribe = on_connect, on_subscribe
    try:
        client.tls_set(ca_certs=str(tls.ca), certfile=str(tls.cert), keyfile=str(tls.key))
        client.connect(settings.mqtt_host, settings.mqtt_port, keepalive=10)
    except ssl.SSLError as exc:
        return Check("broker", FAIL, f"the TLS handshake with {where} failed ({exc.reason or exc})",
                     "this kiosk's certificate was refused (revoked, or from another central's CA): ask staff, then re-enrol with --force")
    except (OSError, ValueError) as exc:
        return Check("broker", FAIL, f"cannot reach {where} ({exc})",
                     "check the network cable or Wi-Fi, HALL_AGENT_MQTT_HOST/PORT, and that the firewall lets TLS port "
                     f"{settings.mqtt_port} through")
    client.loop_start()
    try:
        deadline = time.monotonic() + timeout
        if connected.wait(timeout) and device_id and not result["reason"].is_failure:
            subscribed.wait(max(0.0, deadline - time.monotonic()))
    finally:
        client.disconnect()
        client.loop_stop()
    reason = result.get("reason")
    if reason is None:
        return Check("broker", FAIL, f"{where} accepted TLS but did not answer MQTT within {timeout:.0f} s",
                     "the certificate may have been revoked: ask staff, or check the broker's log")
    if reason.is_failure:
        return Check("broker", FAIL, f"{where} refused the connection: {reason}",
                     "ask staff whether this kiosk is registered and not revoked")
    granted = result.get("granted")
    if device_id and (granted is None or any(c.is_failure for c in granted)):
        return Check("broker", FAIL, f"connected to {where}, but the broker does not let this kiosk read its own topics",
                     "ask staff to run `hall central broker-config` (the broker's ACL does not list this kiosk yet)")
    return Check("broker", OK, f"connected to {where} over TLS as {device_id}; its topics are open to it")


def check_clock(clock: SystemClock) -> Check:
    if clock.synced():
        return Check("clock", OK, "synchronised by NTP")
    return Check("clock", WARN, "not synchronised (check-ins still work, but their times are marked unsure)",
                 "check the network reaches an NTP server (timedatectl status; systemctl status systemd-timesyncd)")


def check_disk(settings: AgentSettings) -> Check:
    data = Path(settings.data_dir)
    try:
        free = shutil.disk_usage(data).free
    except OSError as exc:
        return Check("disk", FAIL, f"cannot see {data}: {exc}", "check the data partition is mounted")
    need = settings.min_free_bytes * 2
    text = f"{free / 2**20:.0f} MiB free in {data}"
    if free < need:
        return Check("disk", FAIL, f"{text}, want at least {need / 2**20:.0f} MiB",
                     "free space on the data partition (old recordings, logs) or use a larger card")
    return Check("disk", OK, text)


def check_outbox(settings: AgentSettings) -> Check:
    from nacl.signing import SigningKey

    from edge_agent.outbox import Outbox

    data = Path(settings.data_dir)
    key_file = data / SIGNING_KEY_FILE
    if not key_file.is_file():
        return Check("outbox", FAIL, f"no device key in {data}", "enrol this kiosk first: hall provision enroll")
    probe = data / ".selftest-probe"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"probe")
            os.fsync(fd)
        finally:
            os.close(fd)
        probe.unlink()
        outbox = Outbox(data / "outbox.sqlite3", signing_key=SigningKey(key_file.read_bytes()))
        try:
            depth = outbox.depth()
        finally:
            outbox.close()
    except Exception as exc:  # sqlite and the filesystem fail in many ways
        return Check("outbox", FAIL, f"cannot write in {data}: {exc}",
                     "check the data partition is mounted read-write and owned by the kiosk's user")
    return Check("outbox", OK, f"writable, {depth} record(s) waiting for central")


def run_selftest(
    settings: AgentSettings,
    *,
    clock: SystemClock | None = None,
    tls: TlsPaths | None = None,
    camera_timeout: float = 3.0,
    broker_timeout: float = 5.0,
) -> Report:
    data = Path(settings.data_dir)
    device_id = None
    if (data / SIGNING_KEY_FILE).is_file():
        from edge_agent.identity import DeviceIdentity

        device_id = DeviceIdentity(data).device_id
    report = Report(device_id, settings.hall)
    with quiet_hardware_libraries():
        _run_checks(report, settings, device_id, clock=clock, tls=tls, camera_timeout=camera_timeout,
                    broker_timeout=broker_timeout)
    return report


@contextmanager
def quiet_hardware_libraries() -> Iterator[None]:
    """Silence what OpenCV and gpiozero print on their own while the checks run.

    OpenCV writes "[ WARN:0@…] global cap_v4l.cpp …" straight to stderr when a camera does not
    open, gpiozero warns once per pin library it cannot load: the checklist says the same in plain
    words, and the noise buried it. Only for the self-test: the agent's own log keeps them.
    """
    import cv2

    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        with warnings.catch_warnings():
            from gpiozero.exc import PinFactoryFallback, PinWarning

            warnings.simplefilter("ignore", PinFactoryFallback)
            warnings.simplefilter("ignore", PinWarning)
            yield
    finally:
        cv2.utils.logging.setLogLevel(level)


def _run_checks(report: Report, settings: AgentSettings, device_id: str | None, *, clock: SystemClock | None,
                tls: TlsPaths | None, camera_timeout: float, broker_timeout: float) -> None:
    steps: list[tuple[str, Callable[[], Check]]] = [
        ("camera", lambda: check_camera(settings, camera_timeout)),
        ("card reader", lambda: check_card_reader(settings)),
        ("qr scanner", lambda: check_qr_scanner(settings)),
        ("lights and buzzer", lambda: check_signals(settings)),
        ("broker", lambda: check_broker(settings, device_id, tls or tls_paths(settings), broker_timeout)),
        ("clock", lambda: check_clock(clock or SystemClock())),
        ("disk", lambda: check_disk(settings)),
        ("outbox", lambda: check_outbox(settings)),
    ]
    for name, step in steps:
        try:
            report.checks.append(step())
        except Exception as exc:  # one broken check must not hide the others
            report.checks.append(Check(name, FAIL, f"the check itself failed: {type(exc).__name__}: {exc}",
                                       "report this with the output of `hall provision selftest --json`"))
