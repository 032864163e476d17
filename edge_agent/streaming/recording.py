"""The local recording: numbered mpegts segments in one directory, kept within a disk quota.

When the quota is reached the oldest segments go first, never the one being
written, and every deletion is counted and reported: a recording is never lost
silently. Segment names start with the run's start time, so names sort in
recording order across ffmpeg restarts.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SUFFIX = ".ts"


@dataclass
class Pruned:
    segments: int = 0
    bytes: int = 0
    last_at: float | None = None
    last_name: str | None = None


class Recording:
    """Segment files under ``directory``; ``prune()`` enforces ``quota_bytes``."""

    def __init__(self, directory: Path, *, quota_bytes: int):
        if quota_bytes <= 0:
            raise ValueError(f"recording quota must be positive, got {quota_bytes}")
        self.directory = Path(directory)
        # Recordings of members' meetings: this user's alone (ffmpeg writes them 0600, see Streamer).
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o700)
        self.quota_bytes = quota_bytes
        self.pruned = Pruned()
        self._lock = threading.Lock()

    def new_pattern(self) -> Path:
        """The segment file pattern of one ffmpeg run (ms resolution: restarts never reuse a name)."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")[:-3]
        return self.directory / f"{stamp}Z-%05d{SUFFIX}"

    def segments(self) -> list[tuple[Path, int]]:
        out = []
        for path in sorted(self.directory.glob(f"*{SUFFIX}")):
            try:
                out.append((path, path.stat().st_size))
            except FileNotFoundError:
                continue
        return out

    def prune(self) -> int:
        """Delete the oldest segments until the directory fits the quota; returns bytes freed."""
        with self._lock:
            segs = self.segments()
            total = sum(size for _, size in segs)
            freed = 0
            # The newest file is the one ffmpeg is writing: never delete it.
            for path, size in segs[:-1]:
                if total <= self.quota_bytes:
                    break
                try:
                    path.unlink()
                except FileNotFoundError:
                    continue
                total -= size
                freed += size
                self.pruned.segments += 1
                self.pruned.bytes += size
                self.pruned.last_at = time.time()
                self.pruned.last_name = path.name
                log.warning("recording quota %d bytes reached: deleted oldest segment %s (%d bytes)", self.quota_bytes, path.name, size)
            return freed

    @staticmethod
    def _bitrate_kbps(segs: list[tuple[Path, int]]) -> float | None:
        """Encoded bitrate (mpegts overhead included) over the last few finished segments, by their close times."""
        done = segs[-7:-1]  # the newest is still being written
        if len(done) < 2:
            return None
        try:
            first, last = done[0][0].stat().st_mtime, done[-1][0].stat().st_mtime
        except FileNotFoundError:
            return None
        if last - first < 1.0:
            return None
        return round(sum(size for _, size in done[1:]) * 8 / 1000 / (last - first), 1)

    def status(self) -> dict[str, Any]:
        segs = self.segments()
        total = sum(size for _, size in segs)
        return {
            "dir": str(self.directory),
            "segments": len(segs),
            "bytes": total,
            "quota_bytes": self.quota_bytes,
            "quota_used": round(total / self.quota_bytes, 3),
            "oldest_kept": segs[0][0].name if segs else None,
            "newest": segs[-1][0].name if segs else None,
            "deleted_segments": self.pruned.segments,
            "deleted_bytes": self.pruned.bytes,
            "last_deleted": self.pruned.last_name,
            "last_deleted_at": self.pruned.last_at,
            "bitrate_kbps": self._bitrate_kbps(segs),
        }
