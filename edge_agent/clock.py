"""Time with its evidence: a Pi has no RTC and may boot with a wrong clock.

Each record carries whether the clock was NTP-synchronised, the boot id and the
monotonic offset, so central can place records made before the clock was set.
The clock is injected so tests can jump it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from contract import DeviceTime

# systemd-timesyncd creates this file once it has synchronised the clock.
TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class SystemClock:
    def __init__(self, *, sync_flag: Path = TIMESYNC_FLAG, boot_id_file: Path = BOOT_ID):
        self._sync_flag = sync_flag
        try:
            self._boot_id = boot_id_file.read_text().strip()
        except OSError:
            self._boot_id = "unknown"

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def synced(self) -> bool:
        return self._sync_flag.exists()

    def reading(self) -> DeviceTime:
        return DeviceTime(wall=iso(self.now()), synced=self.synced(), boot_id=self._boot_id, monotonic=round(self.monotonic(), 3))
