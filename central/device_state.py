"""What central may say about a kiosk's state: its last report, unless central cannot know.

A kiosk's "online" is a retained message it published some time ago; the
"offline" comes from the broker (the last will). Both reach central only through
the broker, so while central's own link to the broker is down or unresponsive,
every kiosk's state is ``unknown``; so is an "online" whose last status is older
than ``device_stale_s`` (kiosks report every 15 s).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .clock_placement import parse_time

DEFAULT_STALE_S = 60.0


def shown(device: dict[str, Any], broker: dict[str, Any] | None, stale_s: float = DEFAULT_STALE_S,
          now: datetime | None = None) -> dict[str, Any]:
    """{"state": online|offline|unknown|revoked, "online": bool, "state_reason": str|None, "reported_state": ...}.

    ``device``: a row with ``state`` (last reported, may be None), ``last_seen`` and ``revoked_at``;
    ``broker``: ``BrokerLink.state()``, or None when no collector runs in this process.
    """
    reported = device.get("state")
    out = {"reported_state": reported, "state_reason": None}
    if device.get("revoked_at"):
        return {**out, "state": "revoked", "online": False}
    if broker is not None and not broker.get("ok"):
        return {**out, "state": "unknown", "online": False,
                "state_reason": f"central has no working link to the broker since {broker.get('since')}: {broker.get('detail')}"}
    if reported is None:
        return {**out, "state": "offline", "online": False, "state_reason": "never reported"}
    if reported == "online":
        seen = parse_time(device.get("last_seen") or "")
        age = None if seen is None else ((now or datetime.now(UTC)) - seen).total_seconds()
        if age is None or age > stale_s:
            return {**out, "state": "unknown", "online": False,
                    "state_reason": f"no status for {age:.0f} s" if age is not None else "no readable status time"}
    return {**out, "state": reported, "online": reported == "online"}
