"""Telling staff when an alert opens or resolves: e-mail (SMTP) and a signed webhook, both optional.

Each channel has its own worker thread and bounded queue, so a dead mail server neither blocks the rule
evaluation (``submit`` never waits) nor delays the webhook. A send that fails is retried with exponential
backoff; one that still fails, or finds the queue full, is logged and counted (``counts``), never raised.

The webhook body is JSON carrying ``sent_at`` and a ``nonce``; ``X-Hall-Signature: sha256=<hex>`` is
HMAC-SHA256 of the exact body bytes with the shared secret. A receiver checks the signature, refuses a
``sent_at`` older than a few minutes and a nonce it has seen, so a captured request cannot be replayed.
A retry is signed again with a fresh ``sent_at`` and the same nonce.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import smtplib
import ssl
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from email.header import Header
from email.mime.text import MIMEText
from typing import Any

import httpx

from ..clock_placement import iso
from ..errors import SettingsError

log = logging.getLogger("central.alerts.notify")

SIGNATURE_HEADER = "X-Hall-Signature"
MIN_SECRET_CHARS = 16
HEADLINE = {"opened": ("CẢNH BÁO", "ALERT"), "reopened": ("CẢNH BÁO LẠI", "ALERT AGAIN"), "resolved": ("ĐÃ HẾT", "RESOLVED")}


def signature(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def subject_line(note: dict[str, Any]) -> str:
    """Vietnamese first: '[CẢNH BÁO] <title vi> · <where> / [ALERT] <title en>'."""
    vi, en = HEADLINE[note["event"]]
    title_vi, _, title_en = note["title"].partition(" / ")
    alert = note["alert"]
    where = alert.get("hall_name") or alert.get("hall") or ""
    if alert.get("device_name"):  # "<hall> — <position>": it names the hall too
        where = alert["device_name"]
    elif alert.get("device"):
        where = f"{where} · {alert['device']}"
    return f"[{vi}] {title_vi} · {where} / [{en}] {title_en or title_vi}"


class EmailChannel:
    name = "email"

    def __init__(self, host: str, port: int, sender: str, recipients: list[str], *, starttls: bool = False,
                 username: str = "", password: str = "", timeout_s: float = 10.0):
        self.host, self.port, self.sender, self.recipients = host, port, sender, recipients
        self.starttls, self.username, self.password, self.timeout_s = starttls, username, password, timeout_s

    def send(self, note: dict[str, Any]) -> None:
        alert = note["alert"]
        # MIMEText with an email.header.Header subject, not EmailMessage: the latter's folding puts the space
        # between encoded words ("H-FAULT — máy 1" arrived as "H-FAULT— máy 1"); Header keeps spaces inside them.
        msg = MIMEText(
            f"{alert['summary']}\n\n"
            f"Quy tắc / rule: {alert['rule']}\nTrạng thái / state: {alert['state']}\n"
            f"Mở lúc / opened at: {alert['opened_at']} (lần / times opened: {alert['opened_count']})\n"
            f"Hết lúc / resolved at: {alert.get('resolved_at') or '-'}\nMã / id: {alert['id']}\n", "plain", "utf-8")
        msg["Subject"] = Header(subject_line(note), "utf-8")
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.recipients)
        msg["Message-ID"] = f"<{note['nonce']}@hall-central>"
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.username:
                smtp.login(self.username, self.password)
            smtp.send_message(msg)


class WebhookChannel:
    name = "webhook"

    def __init__(self, url: str, secret: bytes, *, timeout_s: float = 10.0):
        self.url, self.secret, self.timeout_s = url, secret, timeout_s

    def send(self, note: dict[str, Any]) -> None:
        body = json.dumps({**note, "sent_at": iso(datetime.now(UTC))}, ensure_ascii=False, sort_keys=True,
                          default=str).encode()
        response = httpx.post(self.url, content=body, timeout=self.timeout_s, headers={
            "Content-Type": "application/json", SIGNATURE_HEADER: signature(self.secret, body)})
        if response.status_code >= 300:
            raise RuntimeError(f"webhook answered {response.status_code}")


class ChannelWorker:
    """One channel's queue and thread: sends in order, retries with backoff, counts what happened."""

    def __init__(self, channel: Any, *, queue_size: int = 200, retries: int = 5, backoff_s: float = 2.0,
                 backoff_max_s: float = 300.0):
        self.channel = channel
        self.queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=queue_size)
        self.retries, self.backoff_s, self.backoff_max_s = retries, backoff_s, backoff_max_s
        self.counts: Counter[str] = Counter()
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"alerts-{channel.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def submit(self, note: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(note)
        except queue.Full:
            self.counts["dropped"] += 1
            log.error("%s: queue full (%d), dropped the notification of alert %s", self.channel.name,
                      self.queue.maxsize, note["alert"]["id"])

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                note = self.queue.get(timeout=0.5)
            except queue.Empty:
                continue
            self._deliver(note)

    def _deliver(self, note: dict[str, Any]) -> None:
        delay = self.backoff_s
        for attempt in range(1, self.retries + 2):
            try:
                self.channel.send(note)
                self.counts["sent"] += 1
                return
            except Exception as exc:  # any failure of a remote server: counted and retried, never raised
                self.last_error = f"{type(exc).__name__}: {exc}"
                if attempt > self.retries:
                    break
                self.counts["retried"] += 1
                log.warning("%s: sending alert %s failed (%s); retry %d in %.0f s", self.channel.name,
                            note["alert"]["id"], self.last_error, attempt, delay)
                if self._stop.wait(delay):
                    break
                delay = min(delay * 2, self.backoff_max_s)
        self.counts["failed"] += 1
        log.error("%s: gave up on the notification of alert %s: %s", self.channel.name, note["alert"]["id"], self.last_error)


class Notifier:
    """The configured channels; ``notify`` hands an alert's change to each without waiting."""

    def __init__(self, channels: list[Any], **worker: Any):
        self.workers = [ChannelWorker(c, **worker) for c in channels]

    def start(self) -> None:
        for w in self.workers:
            w.start()

    def stop(self) -> None:
        for w in self.workers:
            w.stop()

    def notify(self, event: str, alert: dict[str, Any], title: str) -> None:
        note = {"v": 1, "event": event, "nonce": uuid.uuid4().hex, "title": title, "alert": alert}
        for w in self.workers:
            w.submit(note)

    def counts(self) -> dict[str, Any]:
        return {w.channel.name: {**{k: 0 for k in ("sent", "retried", "failed", "dropped")}, **w.counts,
                                 "queued": w.queue.qsize(), "last_error": w.last_error} for w in self.workers}


def from_settings(settings: Any, **worker: Any) -> Notifier:
    channels: list[Any] = []
    if settings.alert_smtp_host:
        recipients = [a.strip() for a in settings.alert_smtp_to.split(",") if a.strip()]
        if not recipients:
            raise SettingsError("HALL_CENTRAL_ALERT_SMTP_HOST is set but HALL_CENTRAL_ALERT_SMTP_TO names nobody")
        channels.append(EmailChannel(settings.alert_smtp_host, settings.alert_smtp_port, settings.alert_smtp_from, recipients,
                                     starttls=settings.alert_smtp_starttls, username=settings.alert_smtp_user,
                                     password=settings.alert_smtp_password.get_secret_value()))
    if settings.alert_webhook_url:
        if len(settings.alert_webhook_secret.get_secret_value()) < MIN_SECRET_CHARS:
            raise SettingsError(f"HALL_CENTRAL_ALERT_WEBHOOK_URL is set: HALL_CENTRAL_ALERT_WEBHOOK_SECRET needs at least "
                                f"{MIN_SECRET_CHARS} characters (the receiver checks each body's HMAC with it)")
        channels.append(WebhookChannel(settings.alert_webhook_url, settings.alert_webhook_secret.get_secret_value().encode()))
    return Notifier(channels, queue_size=settings.alert_notify_queue, retries=settings.alert_notify_retries, **worker)


Notify = Callable[[str, dict[str, Any], str], None]
