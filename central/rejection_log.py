"""Rejected messages and alarms, each kept with its reason — in bounded space.

Anyone who can reach the broker or ``POST /enrol`` can make central reject
something, so the ``rejections`` table must not grow without limit. Each row
keeps at most ``MAX_KEPT_PAYLOAD`` bytes of what arrived (every valid message is
smaller), and the table is pruned to the limits (``rejections_max_rows``,
``rejections_max_age_days``) every ``prune_every`` insertions rather than
counted on each one. Plain rejections go first, oldest first; alarms (forks,
records that do not count, internal errors) are what a person must see, so they
are kept past the age limit and give way only when alarms alone exceed the row
cap. What was dropped is counted in ``meta`` (``rejections_dropped``,
``alarms_dropped``) and shown by ``GET /api/rejections/summary``.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .store import Store, utc_now

log = logging.getLogger("central.rejections")

MAX_KEPT_PAYLOAD = 8 * 1024  # records are at most 4 KiB and a status 8 KiB: more is not evidence of anything


@dataclass(frozen=True)
class Limits:
    max_rows: int = 10_000
    max_age_s: float = 30 * 86400.0
    prune_every: int = 100

    @classmethod
    def from_settings(cls, settings: Any) -> Limits:
        return cls(max_rows=settings.rejections_max_rows, max_age_s=settings.rejections_max_age_days * 86400.0)


def limits_of(store: Store) -> Limits:
    return getattr(store, "rejection_limits", None) or Limits()


def _kept(payload: bytes) -> tuple[str, str]:
    kept = payload[:MAX_KEPT_PAYLOAD]
    try:
        return kept.decode("utf-8"), "text"
    except UnicodeDecodeError:  # also when the cut split a character: the bytes are kept exactly
        return base64.b64encode(kept).decode("ascii"), "base64"


def add(store: Store, topic: str, device: str | None, reason: str, payload: bytes, *, alarm: bool = False) -> None:
    if len(payload) > MAX_KEPT_PAYLOAD:
        reason += f" (payload of {len(payload)} bytes truncated to {MAX_KEPT_PAYLOAD})"
    text, encoding = _kept(payload)
    with store.transaction() as db:
        db.execute(
            "INSERT INTO rejections (received_at, topic, device, reason, alarm, payload, payload_encoding) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [utc_now(), topic, device, reason, int(alarm), text, encoding],
        )
        store.rejections_added = getattr(store, "rejections_added", 0) + 1
        if store.rejections_added >= limits_of(store).prune_every:
            prune(store)
    (log.error if alarm else log.warning)("rejected message on %s: %s", topic, reason)


def seen_last(store: Store, topic: str, reason: str, payload: bytes) -> bool:
    """Is the newest rejection on ``topic`` this very one? (a kiosk resending what central cannot handle)"""
    row = store.row("SELECT reason, payload FROM rejections WHERE topic = ? ORDER BY id DESC LIMIT 1", [topic])
    return row is not None and row["reason"] == reason and row["payload"] == _kept(payload)[0]


def prune(store: Store, now: datetime | None = None) -> dict[str, int]:
    """Drop what the limits do not allow; returns {"rejections": n, "alarms": m} dropped this time."""
    limits = limits_of(store)
    now = now or datetime.now(UTC)
    cutoff = (now - timedelta(seconds=limits.max_age_s)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    with store.transaction() as db:
        store.rejections_added = 0
        plain = db.execute("DELETE FROM rejections WHERE alarm = 0 AND received_at < ?", [cutoff]).rowcount
        excess = store.scalar("SELECT COUNT(*) FROM rejections") - limits.max_rows
        alarms = 0
        if excess > 0:
            plain += db.execute(
                "DELETE FROM rejections WHERE id IN (SELECT id FROM rejections WHERE alarm = 0 ORDER BY id LIMIT ?)", [excess]
            ).rowcount
            excess = store.scalar("SELECT COUNT(*) FROM rejections") - limits.max_rows
        if excess > 0:
            alarms = db.execute(
                "DELETE FROM rejections WHERE id IN (SELECT id FROM rejections WHERE alarm = 1 ORDER BY id LIMIT ?)", [excess]
            ).rowcount
        for key, n in (("rejections_dropped", plain), ("alarms_dropped", alarms)):
            if n:
                db.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                           "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + excluded.value", [key, n])
    if plain or alarms:
        log.warning("dropped %d old rejection(s) and %d alarm(s) to stay within the limits", plain, alarms)
    return {"rejections": plain, "alarms": alarms}


def recent(store: Store, *, limit: int, device: str | None = None, alarms_only: bool = False) -> list[dict[str, Any]]:
    where, params = [], []
    if device is not None:
        where.append("device = ?")
        params.append(device)
    if alarms_only:
        where.append("alarm = 1")
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    return store.rows(f"SELECT * FROM rejections {clause} ORDER BY id DESC LIMIT ?", [*params, limit])


def summary(store: Store) -> dict[str, Any]:
    limits = limits_of(store)
    meta = {r["key"]: int(r["value"]) for r in store.rows(
        "SELECT key, value FROM meta WHERE key IN ('rejections_dropped', 'alarms_dropped')")}
    counts = store.row("SELECT COUNT(*) AS kept, COALESCE(SUM(alarm), 0) AS alarms FROM rejections") or {}
    return {
        "kept": counts.get("kept", 0),
        "alarms": counts.get("alarms", 0),
        "dropped": meta.get("rejections_dropped", 0),
        "alarms_dropped": meta.get("alarms_dropped", 0),
        "max_rows": limits.max_rows,
        "max_age_days": limits.max_age_s / 86400.0,
    }
