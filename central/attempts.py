"""Refused check-in attempts at central: storing them once, and the outcome mix staff read.

The collector's ingest calls ``store`` inside its batch transaction after the signature
verified; routes call ``outcome_mix``. The mix puts accepted check-ins (stored records) beside
the refusals, so a day's share of face mismatches or unknown cards is visible per kiosk and per hall.

Days are the halls' local days (Asia/Ho_Chi_Minh, UTC+7 without daylight saving). An attempt is
dated by the kiosk's clock when that clock was synced and not ahead of central, else by its receipt;
a record by where central placed it (central/clock_placement.py).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

from contract.attempts import SignedAttempt

from .clock_placement import iso, parse_time
from .store import Store

HALL_DAY_SHIFT = "+7 hours"  # Asia/Ho_Chi_Minh: UTC+7 all year
_HALL_OFFSET = timedelta(hours=7)
MAX_AGE_DAYS = 400  # a year of outcome mixes and a margin; older attempts are pruned
PRUNE_EVERY = 1000  # insertions between prunes
MAX_DAYS = 366  # what a query may ask for

_inserted = 0


def store(conn: sqlite3.Connection, attempt: SignedAttempt, wire: bytes, received: datetime) -> str | None:
    """Keep ``attempt`` once; None when stored or an identical repeat, else why it is refused.

    ``conn`` is in the caller's transaction.
    """
    global _inserted
    digest = attempt.hash
    t = attempt.time
    wall = parse_time(t.wall)
    at = iso(wall) if t.synced and wall is not None and wall <= received else iso(received)
    cur = conn.execute(
        "INSERT OR IGNORE INTO attempts (device, seq, hash, outcome, card_kind, card_ref, member, meeting, face_distance, "
        "liveness, device_wall, synced, at, received_at, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [attempt.device, attempt.seq, digest, attempt.outcome, attempt.card_kind, attempt.card_ref, attempt.member,
         attempt.meeting, attempt.face_distance, attempt.liveness, t.wall, int(t.synced), at, iso(received), wire.decode()],
    )
    if cur.rowcount == 0:
        stored = conn.execute("SELECT hash FROM attempts WHERE device = ? AND seq = ?", [attempt.device, attempt.seq]).fetchone()
        if stored and stored[0] != digest:
            return f"attempt {attempt.seq} differs from the stored one (stored {stored[0]}, received {digest})"
        return None
    _inserted += 1
    if _inserted % PRUNE_EVERY == 0:
        prune(conn, received)
    return None


def prune(conn: sqlite3.Connection, now: datetime | None = None) -> int:
    cutoff = iso((now or datetime.now(UTC)) - timedelta(days=MAX_AGE_DAYS))
    return conn.execute("DELETE FROM attempts WHERE at < ?", [cutoff]).rowcount


def _since(days: int, now: datetime | None) -> str:
    """The UTC instant the hall's local day ``days - 1`` days before today began."""
    local_today = ((now or datetime.now(UTC)) + _HALL_OFFSET).date()
    first = datetime.combine(local_today - timedelta(days=days - 1), datetime.min.time(), UTC) - _HALL_OFFSET
    return iso(first)


def outcome_mix(st: Store, *, days: int, device: str | None = None, hall: str | None = None,
                now: datetime | None = None) -> dict[str, Any]:
    """{"days": [{"day": "YYYY-MM-DD", "outcomes": {outcome: count}}, ...], "totals": {outcome: count}}.

    Accepted check-ins are counted from records: ``accepted``, or ``override_accepted`` when a secretary
    confirmed the member. Exactly one of ``device``/``hall`` selects the kiosks.
    """
    if (device is None) == (hall is None):
        raise ValueError("give a device or a hall")
    since = _since(days, now)
    if device is not None:
        scope, param = "device = ?", device
    else:
        scope, param = "device IN (SELECT id FROM devices WHERE hall = ?)", hall
    rows = st.rows(
        f"SELECT date(at, '{HALL_DAY_SHIFT}') AS day, outcome, COUNT(*) AS n FROM attempts "
        f"WHERE {scope} AND at >= ? GROUP BY day, outcome "
        "UNION ALL "
        f"SELECT date(placed_at, '{HALL_DAY_SHIFT}') AS day, "
        "CASE WHEN json_extract(body, '$.proof.override') IS NULL THEN 'accepted' ELSE 'override_accepted' END AS outcome, "
        f"COUNT(*) AS n FROM records WHERE {scope} AND placed_at >= ? GROUP BY day, outcome",
        [param, since, param, since],
    )
    by_day: dict[str, dict[str, int]] = {}
    totals: dict[str, int] = {}
    for r in rows:
        by_day.setdefault(r["day"], {})[r["outcome"]] = by_day.get(r["day"], {}).get(r["outcome"], 0) + r["n"]
        totals[r["outcome"]] = totals.get(r["outcome"], 0) + r["n"]
    return {"since": since, "days": [{"day": d, "outcomes": by_day[d]} for d in sorted(by_day)], "totals": totals}


def recent(st: Store, device: str, *, limit: int = 50) -> list[dict[str, Any]]:
    """A kiosk's latest refused attempts, newest first."""
    return st.rows(
        "SELECT seq, outcome, card_kind, card_ref, member, meeting, face_distance, liveness, device_wall, synced, at, "
        "received_at FROM attempts WHERE device = ? ORDER BY seq DESC LIMIT ?", [device, limit])
