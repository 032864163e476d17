"""What the kiosk's status says about the machine: memory, power, boots, address, version.

Every source is a path or command given to the constructor (the defaults are a Raspberry Pi's),
and every reading answers None when its source is absent or unreadable: on a PC there is no
``get_throttled``, and the status must never fail for want of one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

log = logging.getLogger("edge_agent.health_probe")

THROTTLED_SYSFS = Path("/sys/devices/platform/soc/soc:firmware/get_throttled")
WATCHDOG_BOOTSTATUS = Path("/sys/class/watchdog/watchdog0/bootstatus")
MEMINFO = Path("/proc/meminfo")
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
BOOT_COUNT_FILE = "boot_count.json"
# Connecting a UDP socket sends nothing; it only makes the kernel pick the source address of the route
# to a TEST-NET-1 address (RFC 5737), i.e. of the default route.
DEFAULT_ROUTE_PROBE = ("192.0.2.1", 9)
WDIOF_CARDRESET = 0x0020  # linux/watchdog.h: the last reboot was caused by the watchdog

# The Pi firmware's get_throttled bits (raspberrypi.com documentation, vcgencmd).
THROTTLE_BITS = {
    0: "under-voltage now",
    1: "arm frequency capped now",
    2: "throttled now",
    3: "soft temperature limit now",
    16: "under-voltage has occurred",
    17: "arm frequency capping has occurred",
    18: "throttled has occurred",
    19: "soft temperature limit has occurred",
}


def decode_throttled(bits: int) -> list[str]:
    return [word for bit, word in THROTTLE_BITS.items() if bits >> bit & 1]


def parse_throttled(text: str) -> int | None:
    """``50005`` (sysfs, hex without 0x) or ``throttled=0x50005`` (vcgencmd) → 0x50005."""
    value = text.strip().rpartition("=")[2].strip()
    try:
        return int(value, 16)
    except ValueError:
        return None


def software_version() -> str:
    """The package version, and ``git describe`` of the source when it is a git checkout."""
    try:
        version = metadata.version("hall-kiosk")
    except metadata.PackageNotFoundError:
        version = "unknown"
    git = shutil.which("git")
    if git:
        try:
            described = subprocess.run([git, "-C", str(Path(__file__).parent), "describe", "--always", "--dirty", "--tags"],
                                       capture_output=True, text=True, timeout=2, check=False).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            described = ""
        if described:
            version = f"{version}+{described}"
    return version[:64]


class HealthProbe:
    def __init__(
        self,
        data_dir: Path,
        *,
        throttled_path: Path = THROTTLED_SYSFS,
        vcgencmd: str | None = "vcgencmd",
        bootstatus_path: Path = WATCHDOG_BOOTSTATUS,
        meminfo_path: Path = MEMINFO,
        boot_id_path: Path = BOOT_ID,
        route_probe: tuple[str, int] = DEFAULT_ROUTE_PROBE,
    ):
        self.data_dir = Path(data_dir)
        self.throttled_path, self.bootstatus_path, self.meminfo_path = throttled_path, bootstatus_path, meminfo_path
        self.vcgencmd = shutil.which(vcgencmd) if vcgencmd else None
        self.route_probe = route_probe
        self.boot_count = self._count_boot(boot_id_path)
        self.last_reboot = self._last_reboot()  # fixed for this boot
        self.software = software_version()
        self._frames: tuple[float, int] | None = None

    # -- once per start -----------------------------------------------------------------

    def _count_boot(self, boot_id_path: Path) -> int | None:
        """Boots seen by this kiosk, counted in the data directory when the kernel's boot id changes."""
        try:
            boot_id = boot_id_path.read_text().strip()
        except OSError:
            return None
        path = self.data_dir / BOOT_COUNT_FILE
        try:
            kept = json.loads(path.read_text())
            count, last = int(kept["count"]), str(kept["boot_id"])
        except (OSError, ValueError, KeyError, TypeError):
            count, last = 0, None
        if boot_id != last:
            count += 1
            tmp = path.with_suffix(".tmp")
            try:
                self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
                tmp.write_text(json.dumps({"boot_id": boot_id, "count": count}))
                os.replace(tmp, path)
            except OSError as exc:
                log.warning("cannot keep the boot count in %s: %s", path, exc)
        return count

    def _last_reboot(self) -> str | None:
        try:
            flags = int(self.bootstatus_path.read_text().strip(), 0)
        except (OSError, ValueError):
            return None
        return "watchdog" if flags & WDIOF_CARDRESET else "not watchdog"

    # -- each status ----------------------------------------------------------------------

    def throttled(self) -> int | None:
        try:
            return parse_throttled(self.throttled_path.read_text())
        except OSError:
            pass
        if self.vcgencmd:
            try:
                out = subprocess.run([self.vcgencmd, "get_throttled"], capture_output=True, text=True, timeout=2, check=False)
            except (OSError, subprocess.SubprocessError):
                return None
            if out.returncode == 0:
                return parse_throttled(out.stdout)
        return None

    def memory(self) -> tuple[int | None, int | None]:
        """(used, total) bytes: total minus what the kernel says is available."""
        try:
            fields = dict(line.split(":", 1) for line in self.meminfo_path.read_text().splitlines() if ":" in line)
            total = int(fields["MemTotal"].split()[0]) * 1024
            available = int(fields["MemAvailable"].split()[0]) * 1024
        except (OSError, KeyError, ValueError, IndexError):
            return None, None
        return max(0, total - available), total

    def ip(self) -> str | None:
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.connect(self.route_probe)
                return s.getsockname()[0]
        except OSError:
            return None  # no default route

    def camera_fps(self, stats: dict[str, Any] | None, now: float | None = None) -> float | None:
        """Frames per second the face worker read since the previous call (its ``frames_read`` counter)."""
        frames = (stats or {}).get("frames_read")
        if not isinstance(frames, int):
            return None
        now = time.monotonic() if now is None else now
        before, self._frames = self._frames, (now, frames)
        if before is None or now <= before[0] or frames < before[1]:  # first look, or a restarted worker
            return None
        return round((frames - before[1]) / (now - before[0]), 1)

    def snapshot(self) -> dict[str, Any]:
        """The Status fields this probe fills."""
        bits = self.throttled()
        used, total = self.memory()
        return {
            "memory_used_bytes": used, "memory_total_bytes": total,
            "throttled": bits, "throttled_words": None if bits is None else decode_throttled(bits),
            "boot_count": self.boot_count, "last_reboot": self.last_reboot, "ip": self.ip(), "software": self.software,
        }
