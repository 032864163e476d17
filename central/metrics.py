"""/metrics: central's fleet and its own health in Prometheus text (prometheus-client), read at scrape time.

A custom collector reads the database when Prometheus scrapes, so nothing is kept in step in memory and
every figure is what the API would say at that moment. Counters that central prunes (rejections) are
counted as kept plus dropped, so they never go back.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from . import fleet
from .clock_placement import iso, parse_time
from .store import Store


class FleetCollector(Collector):
    def __init__(self, store: Store, view: fleet.View, collector: Any = None):
        self.store, self.view, self.collector = store, view, collector

    def collect(self) -> Iterator[Metric]:
        st, now = self.store, self.view.at()
        totals = fleet.totals(st, self.view)
        devices = GaugeMetricFamily("hall_devices", "Kiosks by state (as the device list shows them)", labels=["state"])
        for state, n in totals["by_state"].items():
            devices.add_metric([state], n)
        yield devices
        yield GaugeMetricFamily("hall_devices_critical", "Kiosks offline in a hall with a meeting now or within 30 min",
                                value=totals["critical"])
        versions = GaugeMetricFamily("hall_devices_by_version", "Kiosks (not revoked) by software version", labels=["version"])
        for version, n in totals["by_version"].items():
            versions.add_metric([version], n)
        yield versions
        # Each kiosk's chain head is its count of records stored in order (seq starts at 1, no gaps).
        yield CounterMetricFamily("hall_records_ingested", "Attendance records stored in chain order",
                                  value=st.scalar("SELECT IFNULL(SUM(seq), 0) FROM chain"))
        newest = st.row("SELECT device_wall, received_at FROM records ORDER BY rowid DESC LIMIT 1")
        wall = parse_time(newest["device_wall"]) if newest else None
        if wall is not None:
            yield GaugeMetricFamily("hall_ingest_lag_seconds", "Now minus the device time of the newest stored record",
                                    value=(now - wall).total_seconds())
            received = parse_time(newest["received_at"])
            if received is not None:
                yield GaugeMetricFamily("hall_ingest_delay_seconds",
                                        "How late the newest stored record reached central (receipt minus device time)",
                                        value=(received - wall).total_seconds())
        meta = {r["key"]: int(r["value"]) for r in st.rows(
            "SELECT key, value FROM meta WHERE key IN ('rejections_dropped', 'alarms_dropped')")}
        kept = st.row("SELECT COUNT(*) AS n, IFNULL(SUM(alarm), 0) AS alarms FROM rejections") or {"n": 0, "alarms": 0}
        rejections = CounterMetricFamily("hall_rejections", "Messages central refused (kept with their reason, or pruned)",
                                         labels=["kind"])
        rejections.add_metric(["rejection"], kept["n"] - kept["alarms"] + meta.get("rejections_dropped", 0))
        rejections.add_metric(["alarm"], kept["alarms"] + meta.get("alarms_dropped", 0))
        yield rejections
        yield GaugeMetricFamily("hall_alarms_open", "Alarms kept (forks, gaps, records not counted)", value=kept["alarms"])
        if st.scalar("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alerts'"):
            alerts = GaugeMetricFamily("hall_alerts", "Alerts not yet resolved, by state and rule", labels=["state", "rule"])
            for r in st.rows("SELECT state, rule, COUNT(*) AS n FROM alerts WHERE state <> 'resolved' GROUP BY state, rule"):
                alerts.add_metric([r["state"], r["rule"]], r["n"])
            yield alerts
        outcomes = GaugeMetricFamily("hall_attempts_24h", "Refused check-in attempts in the last 24 h by outcome",
                                     labels=["outcome"])
        for r in st.rows("SELECT outcome, COUNT(*) AS n FROM attempts WHERE at >= ? GROUP BY outcome",
                         [iso(now - timedelta(hours=24))]):
            outcomes.add_metric([r["outcome"]], r["n"])
        yield outcomes
        yield from self._collector_health()

    def _collector_health(self) -> Iterator[Metric]:
        if self.collector is None:
            return
        stats = self.collector.stats()
        broker = stats.get("broker") or {}
        yield GaugeMetricFamily("hall_broker_link_up", "Central's link to the broker works (1) or not (0)",
                                value=1 if broker.get("ok") else 0)
        yield GaugeMetricFamily("hall_collector_queued", "Messages received and not yet stored", value=stats.get("queued", 0))
        handled = CounterMetricFamily("hall_collector_messages", "Messages the collector handled since it started, by result",
                                      labels=["result"])
        for key, value in stats.items():
            if isinstance(value, int) and not isinstance(value, bool) and key != "queued":
                handled.add_metric([key], value)
        yield handled


def exposition(store: Store, view: fleet.View, collector: Any = None) -> tuple[bytes, str]:
    """The text a scrape receives, and its content type. ``process_*``: central's own memory, CPU and files."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(store, view, collector))
    ProcessCollector(registry=registry)
    return generate_latest(registry), CONTENT_TYPE_LATEST


__all__ = ["FleetCollector", "exposition"]
