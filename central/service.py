"""Central as one process: the collector and the API (uvicorn) side by side.

``CentralService(settings).start()`` runs both in background threads and
returns once the HTTP port is listening; ``stop()`` ends them. The `hall
central run` command and the demo both use it.
"""

from __future__ import annotations

import logging
import threading

import uvicorn

from . import attendance_sheet, keys, rejection_log
from .alerts.engine import AlertEngine
from .api import create_app
from .api.routes.fleet_pages import close_feed
from .collector import Collector
from .server_thread import ServerThread
from .settings import CentralSettings
from .store import Store, open_store

log = logging.getLogger("central.service")


class CentralService:
    def __init__(self, settings: CentralSettings):
        self.settings = settings
        self.store: Store | None = None
        self.collector: Collector | None = None
        self._http: ServerThread | None = None
        self.media = None
        self.enrol_listener = None
        self.alerts: AlertEngine | None = None
        self.auto_close: AutoClose | None = None

    @property
    def url(self) -> str:
        return f"http://{self.settings.http_host}:{self.settings.http_port}/"

    @property
    def public_key(self) -> str:
        return keys.central_public_key(self.settings)

    def start(self, *, timeout: float = 15.0) -> None:
        # Refuse a placeholder before opening anything; with the token switched off only accounts log in.
        token = self.settings.checked_staff_token() if self.settings.staff_token_enabled else None
        self.store = open_store(self.settings.data_dir)
        self.store.rejection_limits = rejection_log.Limits.from_settings(self.settings)
        rejection_log.prune(self.store)  # limits may have been lowered since the last run
        if token is None and not self.store.scalar("SELECT 1 FROM users WHERE role = 'admin' AND disabled_at IS NULL"):
            log.warning("the staff token is switched off and no admin account exists: "
                        "make one with `hall central user add --username NAME --role admin`")
        # Built before anything runs, so a webhook without a usable secret stops the start here.
        self.alerts = AlertEngine.from_settings(self.store, self.settings, broker=lambda: self.collector.link.state())
        key, box = keys.signing_key(self.settings.data_dir), keys.template_box(self.settings.data_dir)
        self.collector = Collector(self.settings, self.store, key=key, box=box)
        self.collector.start()
        app = create_app(store=self.store, staff_token=token, collector=self.collector,
                         session_ttl_s=self.settings.session_hours * 3600, public_origins=self.settings.allowed_origins())
        app.state.alert_engine = self.alerts
        app.state.attendance_rules = attendance_sheet.Rules.from_settings(self.settings)
        self.alerts.start()
        config = uvicorn.Config(app, host=self.settings.http_host, port=self.settings.http_port, log_level="warning", lifespan="off")
        self._enable_enrolment(app)
        if self.settings.media_enabled:
            from .api.routes.media import router as media_router
            from .media import media_secret

            app.state.media_secret = media_secret(self.settings.data_dir)
            app.include_router(media_router)
        self.auto_close = AutoClose(self.store, app.state.attendance_rules)
        self.auto_close.start()
        self._http = ServerThread(config, name="central-http")
        self._http.start("the API", timeout)
        if self.settings.enrol_port:
            from .enrol_service import EnrolListener

            self.enrol_listener = EnrolListener(app, app.state.enrolment.pki, self.settings.enrol_host,
                                                self.settings.enrol_port)
            self.enrol_listener.start()
        if self.settings.media_enabled:
            from .media import MediaServer

            # nginx asks the API (loopback) before accepting each push: start it once the API listens.
            self.media = MediaServer(self.settings.data_dir,
                                     on_publish_url=f"http://127.0.0.1:{self.settings.http_port}/media/on_publish",
                                     rtmp_port=self.settings.media_rtmp_port, http_port=self.settings.media_http_port,
                                     host=self.settings.media_host,
                                     quota_bytes=int(self.settings.media_quota_mb * 1024 * 1024) or None,
                                     max_age_s=self.settings.media_max_age_days * 86400 or None,
                                     retention_interval_s=self.settings.media_retention_interval_s,
                                     main_hall=self.settings.media_main_hall)
            app.state.media_server = self.media
            self.media.start()
            log.info("media server: %s", self.media.urls)
        log.info("central running: %s", self.url)

    def _enable_enrolment(self, app) -> None:
        """POST /enrol: kiosks trade a one-time token and a CSR for their certificate and config."""
        from .api.routes.enrol import router as enrol_router
        from .enrol_service import enrolment_config

        app.state.enrolment = enrolment_config(self.settings)
        app.include_router(enrol_router)

    def stop(self) -> None:
        if self.enrol_listener is not None:
            self.enrol_listener.stop()
            self.enrol_listener = None
        if self.media is not None:
            self.media.stop()
            self.media = None
        if self._http is not None:
            close_feed(self._http.server.config.app)  # open fleet streams would hold the server's shutdown
            self._http.stop()
        if self.alerts is not None:
            self.alerts.stop()
            self.alerts = None
        if self.auto_close is not None:
            self.auto_close.stop()
            self.auto_close = None
        if self.collector is not None:
            self.collector.stop()
        if self.store is not None:
            self.store.close()
        self._http = self.collector = self.store = None

    def __enter__(self) -> CentralService:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class AutoClose:
    """Closes meetings nobody closed ``auto_close_after_h`` after their end (attendance_sheet.close_due), every minute."""

    INTERVAL_S = 60.0

    def __init__(self, store: Store, rules: attendance_sheet.Rules, interval_s: float = INTERVAL_S):
        self.store, self.rules, self.interval_s = store, rules, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="central-auto-close", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def run_once(self) -> list[str]:
        closed: list[str] = []
        while not self._stop.is_set():  # a backlog (first start after an upgrade) in bounded steps
            batch = attendance_sheet.close_due(self.store, after_h=self.rules.auto_close_after_h,
                                               late_after_min=self.rules.late_after_min)
            closed += batch
            if len(batch) < attendance_sheet.CLOSE_DUE_BATCH:
                break
        if closed:
            log.info("closed %d meeting(s) nobody closed within %g h of their end: %s", len(closed),
                     self.rules.auto_close_after_h, ", ".join(closed[:20]) + (" …" if len(closed) > 20 else ""))
        return closed

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # the next round tries again; the service keeps running
                log.exception("closing overdue meetings failed")
            self._stop.wait(self.interval_s)


def central_public_key(settings: CentralSettings) -> str:
    return keys.central_public_key(settings)
