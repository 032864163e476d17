"""Assembles the kiosk service from its settings and runs it.

Hardware is injected: the caller may pass ready-made devices (tests, the demo);
otherwise they are opened from the settings.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn

from contract import Status, Topics, verify_key_from_text
from contract.commands import CheckItem
from contract.errors import HallError
from contract.messages import ReaderSeen

from .attempts import AttemptQueue
from .checkin import CheckinService
from .clock import SystemClock, iso
from .commands import CommandHandler, LogRing
from .display import Display
from .errors import AgentError, BundleRejected
from .health_probe import HealthProbe
from .identity import DeviceIdentity
from .kiosk_page import HallScreen, create_app
from .outbox import Outbox
from .override import OverrideDesk
from .roster import Roster
from .sd_notify import notify
from .settings import AgentSettings
from .uplink import Uplink

log = logging.getLogger("edge_agent.service")
# Which reader delivered a card event of each kind (the status says when each was last heard from).
READER_OF_KIND = {"member_card": "card_reader", "cccd_qr": "qr_scanner", "cccd_camera": "camera_qr"}

VERSION = "0.1.0"
THERMAL = Path("/sys/class/thermal/thermal_zone0/temp")


class NotEnrolled(AgentError, RuntimeError):
    pass


def make_streamer(s: AgentSettings) -> Any:
    from .streaming import Streamer, file_loop, lavfi_pattern, v4l2_alsa

    spec = s.stream_source
    if spec.startswith("file:"):
        source = file_loop(spec[5:])
    elif spec == "lavfi":
        source = lavfi_pattern()
    elif spec.startswith("v4l2:"):
        video, _, audio = spec[5:].partition("+alsa:")
        source = v4l2_alsa(video=video, audio=audio or "default")
    else:
        raise AgentError(f"stream source {spec!r}: use v4l2:/dev/videoN+alsa:DEV, file:PATH or lavfi")
    return Streamer(
        source=source, ingest_url=s.stream_ingest_url.get_secret_value() or None,
        recording_dir=s.stream_dir or Path(s.data_dir) / "recordings",
        quota_bytes=int(s.stream_quota_mb * 1024 * 1024),
        encoder=None if s.stream_encoder == "auto" else s.stream_encoder,
    )


def read_temperature() -> float | None:
    try:
        return int(THERMAL.read_text()) / 1000.0
    except (OSError, ValueError):
        return None


class Agent:
    def __init__(self, settings: AgentSettings, *, face: Any = None, signals: Any = None, clock: Any = None,
                 card_port: Any = None, qr_port: Any = None):
        if not settings.central_public_key:
            raise NotEnrolled("no central public key configured: enrol this kiosk (hall provision enroll) "
                              "or set HALL_AGENT_CENTRAL_PUBLIC_KEY")
        self.settings = settings
        self.started = time.monotonic()
        self.identity = DeviceIdentity(settings.data_dir)
        self.central_key = verify_key_from_text(settings.central_public_key)
        self.clock = clock or SystemClock()
        self.display = Display()
        self.outbox = Outbox(Path(settings.data_dir) / "outbox.sqlite3", signing_key=self.identity.signing_key,
                             min_free_bytes=settings.min_free_bytes,
                             max_pages=int(settings.outbox_max_mb * 1024 * 1024 / 4096))
        self.roster = Roster(data_dir=settings.data_dir, device_key=self.identity.signing_key,
                             central_key=self.central_key, storage_box=self.identity.storage_box)
        self.attempts = AttemptQueue(Path(settings.data_dir) / "attempts.sqlite3", signing_key=self.identity.signing_key)
        self.health = HealthProbe(Path(settings.data_dir))
        self.reader_seen: dict[str, str] = {}  # reader -> device time of its last event
        self.face = face
        self.signals = signals
        self._card_port, self._qr_port = card_port, qr_port
        self.readers: list[Any] = []
        self.streamer: Any = None
        self._streaming = False
        self.faults: list[str] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.checkin: CheckinService | None = None
        self._server: uvicorn.Server | None = None
        self._stop_requested = False
        self._uplink_started = False
        self._closed = False
        self.log_ring = LogRing().install()  # what a "logs" command from central reads
        self.commands = CommandHandler(
            device_id=self.identity.device_id, central_key=self.central_key, signing_key=self.identity.signing_key,
            send_reply=lambda payload: self.uplink.send_reply(payload), selftest=self.remote_selftest,
            resend=lambda from_seq: self.uplink.resend_from(from_seq), logs=self.log_ring)
        self.uplink = Uplink(
            outbox=self.outbox, device_id=self.identity.device_id, central_key=self.central_key,
            host=settings.mqtt_host, port=settings.mqtt_port, topics=Topics(settings.topic_prefix),
            status=self.status, on_bundle=self._on_bundle, keepalive=settings.mqtt_keepalive,
            window=settings.send_window, attempts=self.attempts, on_command=self.commands.receive,
            tls=(str(settings.mqtt_tls_ca), str(settings.mqtt_tls_cert), str(settings.mqtt_tls_key))
            if settings.mqtt_tls_ca and settings.mqtt_tls_cert and settings.mqtt_tls_key else None,
        )

    # -- wiring ---------------------------------------------------------------------

    def _on_bundle(self, payload: bytes) -> None:
        try:
            self.roster.receive(payload)
        except BundleRejected as exc:
            log.error("%s", exc)
            self.faults.append(str(exc))
            del self.faults[:-5]
        # The status sent on connect said "no roster from central yet" (the bundle comes after it); without
        # this, staff would see that fault on a working kiosk until the next periodic status.
        self.uplink.publish_status()

    def _open_hardware(self) -> None:
        s = self.settings
        if self.signals is None:
            from hardware.signals import Signals

            factory = None
            if s.mock_gpio:
                from gpiozero.pins.mock import MockFactory

                factory = MockFactory()
            self.signals = Signals(green_pin=s.green_pin, red_pin=s.red_pin, buzzer_pin=s.buzzer_pin, pin_factory=factory)
        if self.face is None:
            from .face.worker import FaceWorker

            kwargs: dict[str, Any] = {"camera_source": s.camera, "fresh_window_s": s.face_fresh_window_s,
                                      "restart_backoff_s": s.face_restart_backoff_s,
                                      "restart_backoff_max_s": s.face_restart_backoff_max_s,
                                      "restart_budget": s.face_restart_budget, "restart_window_s": s.face_restart_window_s,
                                      "liveness": s.liveness, "wait_s": s.face_wait_s}
            if s.face_threshold is not None:
                kwargs["threshold"] = s.face_threshold
            if self.qr_camera:
                kwargs["on_qr"] = self._qr_at_camera
            kwargs["on_presence"] = self._face_presence
            self.face = FaceWorker(**kwargs)
            self.face.start()
        from hardware.pn532 import Pn532Reader
        from hardware.qr_scanner import QrScanner
        from hardware.serial_ports import open_serial

        card_port = self._card_port or (open_serial(s.card_reader) if s.card_reader else None)
        if card_port is not None:
            self.readers.append(Pn532Reader(port=card_port, on_card=self._from_thread))
        qr_port = self._qr_port or (open_serial(s.qr_scanner) if s.qr_scanner else None)
        if qr_port is not None:
            self.readers.append(QrScanner(port=qr_port, on_scan=self._from_thread))
        for reader in self.readers:
            reader.start()
        if s.stream_source:
            self.streamer = make_streamer(s)

    def _stream_for_meetings(self) -> None:
        """Stream (and record) while a meeting of this hall is on; stop between meetings."""
        if self.streamer is None:
            return
        on = bool(self.roster.meetings_now(self.clock.now(), self.settings.meeting_early_s))
        # Our intent, not the streamer's state: a streamer that gave up after too many restarts
        # says "stopped" with its reason, and must not be restarted hot from here.
        if on and not self._streaming:
            log.info("meeting on: starting the stream")
            self.streamer.start()
        elif not on and self._streaming:
            log.info("no meeting now: stopping the stream (recording kept)")
            self.streamer.stop()
        self._streaming = on

    @property
    def qr_camera(self) -> bool:
        """Whether the camera reads CCCD QR codes: as set, else when there is no serial QR scanner."""
        if self.settings.qr_camera is not None:
            return self.settings.qr_camera
        return not (self.settings.qr_scanner or self._qr_port)

    def _qr_at_camera(self, text: str) -> None:
        from hardware.events import CardEvent

        self._from_thread(CardEvent(kind="cccd_camera", value=text, source=f"camera:{self.settings.camera}"))

    def _face_presence(self, seen: bool) -> None:
        """From the face worker's reader thread: the display lives on the event loop."""
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.display.set_face_seen, seen)

    def _from_thread(self, event: Any) -> None:
        assert self.loop and self.checkin
        self.reader_seen[READER_OF_KIND.get(event.kind, event.kind)] = iso(self.clock.now())
        self.loop.call_soon_threadsafe(self.checkin.submit, event)

    def _note_attempt(self, result: Any, event: Any) -> None:
        """From the check-in flow, on the event loop: queue a refusal for central without waiting for anything."""
        try:
            self.attempts.note(result, event, self.clock.reading())
        except Exception:  # a statistic lost must never cost a check-in its screen
            log.exception("could not note a refused attempt")

    # -- status -----------------------------------------------------------------------

    def current_faults(self) -> list[str]:
        return list(self.faults) + self.blocking_faults()

    def blocking_faults(self) -> list[str]:
        """The faults that stop check-ins: /healthz answers 503 with them."""
        faults = []
        if self.roster.bundle is None:
            faults.append("no roster from central yet")
        if self.face is not None:
            fault = getattr(self.face, "fault", None)
            if fault is None and hasattr(self.face, "alive") and not self.face.alive:
                fault = "face worker not running"
            if fault:
                faults.append(fault)
        free = shutil.disk_usage(self.settings.data_dir).free
        if free < self.settings.min_free_bytes:
            faults.append(f"disk full: {free // 1024} KiB free")
        elif self.outbox.full:
            faults.append("outbox full: check-ins refused until central acknowledges queued records")
        return faults

    def status(self) -> Status:
        return Status(
            device=self.identity.device_id, state="online", at=iso(self.clock.now()), version=VERSION,
            hall=self.roster.bundle.hall if self.roster.bundle else (self.settings.hall or None),
            uptime_s=round(time.monotonic() - self.started, 1), queue_depth=self.outbox.depth(),
            oldest_unsent_age_s=self.outbox.oldest_unsent_age(), last_ack_seq=self.outbox.acked_seq(),
            last_ack_at=None if self.uplink.last_ack_at is None else iso(datetime.fromtimestamp(self.uplink.last_ack_at, UTC)),
            in_flight=self.uplink.in_flight,
            bundle_version=self.roster.version, disk_free_bytes=shutil.disk_usage(self.settings.data_dir).free,
            temperature_c=read_temperature(), clock_synced=self.clock.synced(), faults=self.current_faults(),
            stream=self.streamer.stream_state() if self.streamer else None,
            **self.health.snapshot(), camera_fps=self._camera_fps(), readers=self._readers(),
            attempts_queued=self.attempts.depth(), attempts_dropped=self.attempts.dropped(),
        )

    def _camera_fps(self) -> float | None:
        stats = getattr(self.face, "stats", None)
        if stats is None or not getattr(self.face, "alive", False):
            return None
        try:
            return self.health.camera_fps(stats(timeout=0.5))
        except Exception:  # the worker is restarting or busy: no figure this time
            return None

    def _readers(self) -> list[ReaderSeen]:
        names = [READER_OF_KIND["member_card"]] if self.settings.card_reader or self._card_port else []
        if self.settings.qr_scanner or self._qr_port:
            names.append(READER_OF_KIND["cccd_qr"])
        if self.qr_camera:
            names.append(READER_OF_KIND["cccd_camera"])
        names += [n for n in self.reader_seen if n not in names]
        return [ReaderSeen(reader=n, last_event_at=self.reader_seen.get(n)) for n in names[:4]]

    def remote_selftest(self) -> list[CheckItem]:
        """The checklist a "selftest" command from central gets: read from the running agent, nothing opened or
        changed (provisioning's self-test opens the serial ports and camera the agent holds, so it cannot run here)."""
        def item(name: str, status: str, detail: str) -> CheckItem:
            return CheckItem(name=name, status=status, detail=detail[:300])

        s = self.settings
        checks = [item("broker", "ok" if self.uplink.connected else "fail",
                       f"{'connected to' if self.uplink.connected else 'not connected to'} {s.mqtt_host}:{s.mqtt_port}")]
        synced = self.clock.synced()
        checks.append(item("clock", "ok" if synced else "warn", f"{iso(self.clock.now())}, {'synchronised' if synced else 'not synchronised'}"))
        free = shutil.disk_usage(s.data_dir).free
        checks.append(item("disk", "fail" if free < s.min_free_bytes else "warn" if free < 2 * s.min_free_bytes else "ok",
                           f"{free // (1024 * 1024)} MiB free (needs {s.min_free_bytes // (1024 * 1024)} MiB)"))
        bundle = self.roster.bundle
        checks.append(item("roster", "ok" if bundle else "fail",
                           f"version {bundle.version} for hall {bundle.hall}" if bundle else "no roster from central yet"))
        if self.face is None:
            checks.append(item("face worker", "skip", "no face worker"))
        else:
            fault = getattr(self.face, "fault", None) or (None if getattr(self.face, "alive", True) else "face worker not running")
            checks.append(item("face worker", "fail" if fault else "ok", fault or "running"))
            fps = self._camera_fps()
            checks.append(item("camera", "ok" if fps else "warn", f"{fps:.1f} frames/s" if fps else "no frame rate measured"))
        for reader in self._readers():
            checks.append(item(reader.reader, "ok" if reader.last_event_at else "warn",
                               f"last event {reader.last_event_at}" if reader.last_event_at else "no event since the agent started"))
        age = self.outbox.oldest_unsent_age()
        checks.append(item("outbox", "warn" if age is not None and age > 300 else "ok",
                           f"{self.outbox.depth()} record(s) waiting" + (f", oldest {age:.0f} s" if age is not None else "")))
        if self.streamer is not None:
            stream = self.streamer.stream_state()
            checks.append(item("stream", "ok" if stream.state == "live" or not self._streaming else "warn",
                               stream.state + (f": {stream.detail}" if stream.detail else "")))
        blocking = self.blocking_faults()
        checks.append(item("check-ins", "fail" if blocking else "ok", "; ".join(blocking) or "accepted"))
        return checks

    async def _health_loop(self) -> None:
        notify("READY=1")
        while True:
            blocking = self.blocking_faults()
            faults = list(self.faults) + blocking
            face_fault = getattr(self.face, "fault", None) or ""
            self.display.set_face_state("down" if "face worker down" in face_fault
                                        else "restarting" if "restarting" in face_fault else None)
            await asyncio.to_thread(self._stream_for_meetings)
            stream = self.streamer.stream_state() if self.streamer else None
            age = self.outbox.oldest_unsent_age()
            self.display.set_health(online=self.uplink.connected, queue_depth=self.outbox.depth(),
                                    oldest_unsent_s=None if age is None else round(age), faults=faults,
                                    blocking=blocking,
                                    stream=None if stream is None else stream.model_dump(exclude_none=True),
                                    device=self.identity.device_id)
            # Pinged from the event loop itself: if the loop hangs, systemd restarts us.
            notify("WATCHDOG=1\nSTATUS=" + ("; ".join(faults) or "ok"))
            await asyncio.sleep(1.0)

    # -- run ----------------------------------------------------------------------------

    async def run(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.checkin = CheckinService(
            roster=self.roster, outbox=self.outbox, face=None, display=self.display, clock=self.clock,
            meeting_early_s=self.settings.meeting_early_s, verdict_hold_s=self.settings.verdict_seconds,
            time_zone=self.settings.time_zone,
            override=OverrideDesk(self.settings.data_dir, attempts=self.settings.override_pin_attempts,
                                  lockout_s=self.settings.override_lockout_s),
        )
        self.checkin.on_result = self._note_attempt
        tasks: list[asyncio.Task[Any]] = []
        try:
            await asyncio.to_thread(self._open_hardware)
            self.checkin.face, self.checkin.signals = self.face, self.signals
            self.commands.start()
            self.uplink.start()
            self._uplink_started = True
            config = uvicorn.Config(create_app(self.display, main_room_hls_url=self.settings.main_room_hls_url, hall=HallScreen(
                self.roster, clock=self.clock, hall_name=self.settings.hall_name, time_zone=self.settings.time_zone,
                early_s=self.settings.meeting_early_s, verdict_s=self.settings.verdict_seconds), checkin=self.checkin), host=self.settings.http_host, port=self.settings.http_port,
                                    log_level="warning", lifespan="off")
            server = self._server = uvicorn.Server(config)
            # A stop asked while the hardware was opening: serve() then shuts down as soon as it is up.
            server.should_exit = self._stop_requested
            log.info("kiosk %s page on http://%s:%d/", self.identity.device_id, self.settings.http_host, self.settings.http_port)
            tasks = [asyncio.create_task(self.checkin.run()), asyncio.create_task(self._health_loop())]
            await server.serve()
        finally:
            for t in tasks:
                t.cancel()
            self.close()

    def request_stop(self) -> None:
        """Ask the agent to stop (from any thread or a signal handler); run() returns once it has.

        Asked before the page server exists (while the hardware opens), run() stops as soon as
        it reaches it, through the same close().
        """
        self._stop_requested = True
        if self._server is not None:
            self._server.should_exit = True

    def close(self) -> None:
        """Stop everything the agent started; safe to call twice and after a failed start."""
        if self._closed:
            return
        self._closed = True
        for reader in self.readers:
            try:
                reader.stop()
            except HallError:
                pass
        if self._uplink_started:
            self.uplink.stop()
        self.commands.stop()
        self.log_ring.remove()
        if self.streamer is not None:
            self.streamer.stop()
        if self.face is not None and hasattr(self.face, "stop"):
            self.face.stop()
        if self.signals is not None and hasattr(self.signals, "close"):
            self.signals.close()
        self.outbox.close()
        self.attempts.close()
        log.info("kiosk stopped: readers, uplink, stream and face worker stopped, outbox closed")
