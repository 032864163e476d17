"""Evaluating the rules and running each alert's lifecycle: open → acknowledged (by whom) → resolved.

Every ``interval_s`` the engine takes one snapshot of what central stores, runs every enabled rule over
it and reconciles the findings with the alerts:
- a condition must hold for its rule's delay (the offline grace...) before an alert opens; the clock
  lives in ``alert_pending``, so a restart of central does not restart it;
- nothing about a kiosk counts while it has been up for less than ``boot_grace_s``: a kiosk that has just
  booted has no stream yet and an old queue to drain;
- an alert resolves only after its condition has been clear for ``hold_s``, and a condition that returns
  within ``reopen_window_s`` of a resolve reopens the same alert (its ``opened_count`` grows): a flapping
  kiosk is one alert with a count, not a mail every minute;
- while central has no working link to the broker it knows nothing about kiosks, and evaluates nothing.
Notifications go out after the transaction commits, through the notifier's own threads.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from ..clock_placement import iso, parse_time
from ..store import Store
from . import queries
from .notify import Notifier
from .rules import RULES, Context, Finding, effective

log = logging.getLogger("central.alerts")

PRUNE_EVERY = timedelta(hours=1)


class AlertEngine:
    def __init__(self, store: Store, *, notifier: Notifier | None = None, interval_s: float = 15.0,
                 boot_grace_s: float = 300.0, hold_s: float = 120.0, reopen_window_s: float = 1800.0,
                 history_days: float = 365.0, stale_s: float = 60.0,
                 broker: Callable[[], dict[str, Any]] | None = None):
        self.store, self.notifier = store, notifier
        self.interval_s, self.boot_grace_s, self.hold_s = interval_s, boot_grace_s, hold_s
        self.reopen_window_s, self.history_days, self.stale_s = reopen_window_s, history_days, stale_s
        self.broker = broker
        self.evaluations = self.errors = 0
        self.last_evaluation: dict[str, Any] | None = None
        self._pruned_at: datetime | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, store: Store, settings: Any, broker: Callable[[], dict[str, Any]] | None = None) -> AlertEngine:
        from .notify import from_settings as notifier_from

        return cls(store, notifier=notifier_from(settings), interval_s=settings.alert_interval_s,
                   boot_grace_s=settings.alert_boot_grace_s, hold_s=settings.alert_hold_s,
                   reopen_window_s=settings.alert_reopen_window_s, history_days=settings.alert_history_days,
                   stale_s=settings.device_stale_s, broker=broker)

    # --- the thread ---

    def start(self) -> None:
        if self.notifier is not None:
            self.notifier.start()
        self._thread = threading.Thread(target=self._run, name="central-alerts", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self.notifier is not None:
            self.notifier.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.evaluate()
            except Exception:  # a bad row must not end alerting for good; counted and shown by GET /api/alerts
                self.errors += 1
                log.exception("alert evaluation failed")
            self._stop.wait(self.interval_s)

    def status(self) -> dict[str, Any]:
        return {"evaluations": self.evaluations, "errors": self.errors, "last": self.last_evaluation,
                "notifications": self.notifier.counts() if self.notifier is not None else {}}

    # --- one evaluation ---

    def evaluate(self, now: datetime | None = None) -> dict[str, Any]:
        """Run every enabled rule once at ``now`` (injectable for tests); returns what changed."""
        now = now or datetime.now(UTC)
        at = iso(now)
        broker = self.broker() if self.broker is not None else None
        if broker is not None and not broker.get("ok"):
            self.last_evaluation = {"at": at, "skipped": f"no working link to the broker: {broker.get('detail')}"}
            return self.last_evaluation
        config = effective(queries.rule_overrides(self.store))
        ctx = Context(now, queries.devices(self.store, now, broker, self.stale_s), queries.bundle_version(self.store), self.store)
        booting = {d.id for d in ctx.devices
                   if d.state == "online" and d.uptime_now is not None and d.uptime_now < self.boot_grace_s}
        findings: dict[tuple[str, str], Finding] = {}
        for name, rule in RULES.items():
            if not config[name]["enabled"]:
                continue
            for f in rule.check(ctx, config[name]["params"]):
                if rule.per_device and f.device in booting:
                    continue
                findings[(name, f.subject)] = f
        changes = self._reconcile(now, at, findings)
        self.evaluations += 1
        self.last_evaluation = {"at": at, "findings": len(findings), "booting": len(booting),
                                **{k: len(v) for k, v in changes.items()}}
        for kind, ids in changes.items():
            for alert_id in ids:
                self._notify(kind, alert_id)
        if self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY:
            self._pruned_at = now
            with self.store.transaction() as db:
                queries.prune(db.conn, iso(now - timedelta(days=self.history_days)))
        return self.last_evaluation

    def _reconcile(self, now: datetime, at: str, findings: dict[tuple[str, str], Finding]) -> dict[str, list[int]]:
        changes: dict[str, list[int]] = {"opened": [], "reopened": [], "resolved": []}
        reopen_since = iso(now - timedelta(seconds=self.reopen_window_s))
        with self.store.transaction() as db:
            conn = db.conn
            live, waiting = queries.active(self.store), queries.pending(self.store)
            for key, f in findings.items():
                rule, subject = key
                if key in live:
                    queries.still_true(conn, live[key]["id"], f.summary, f.detail, at)
                    continue
                held = waiting.get(key)
                if held is None or held["evidence"] != f.evidence:
                    queries.set_pending(conn, rule, subject, at, f.evidence)
                    since = now
                else:
                    since = parse_time(held["since"]) or now
                if (now - since).total_seconds() < f.delay_s:
                    continue
                queries.drop_pending(conn, rule, subject)
                earlier = queries.last_resolved_since(self.store, rule, subject, reopen_since)
                if earlier is not None:
                    queries.reopen_alert(conn, earlier["id"], f.summary, f.detail, at)
                    changes["reopened"].append(earlier["id"])
                else:
                    changes["opened"].append(queries.open_alert(conn, rule, subject, f.device, f.hall, f.summary, f.detail, at))
            for key in waiting.keys() - findings.keys():
                queries.drop_pending(conn, *key)
            for key, alert in live.items():
                if key in findings:
                    continue
                clear = parse_time(alert["clear_since"] or "")
                if clear is None:
                    queries.clearing(conn, alert["id"], at)
                    clear = now
                if (now - clear).total_seconds() >= self.hold_s:
                    queries.resolve_alert(conn, alert["id"], at)
                    changes["resolved"].append(alert["id"])
        for kind, ids in changes.items():
            for alert_id in ids:
                log.warning("alert %s %s", alert_id, kind)
        return changes

    def _notify(self, kind: str, alert_id: int) -> None:
        if self.notifier is None:
            return
        alert = queries.one(self.store, alert_id)
        if alert is None:
            return
        alert.pop("history", None)
        self.notifier.notify(kind, alert, RULES[alert["rule"]].title if alert["rule"] in RULES else alert["rule"])
