"""How long central keeps the halls' recordings: a disk quota and a maximum age, oldest first.

nginx-rtmp records every hall push (~250 MB an hour per hall at the kiosk's
bitrate) and never deletes anything; without a cap a few meetings fill central's
disk, and a full disk stops attendance ingest. ``enforce()`` deletes recordings
older than ``max_age_s``, then the oldest until the total fits ``quota_bytes``.
A file nginx still holds open is never deleted (nginx would keep writing into
the unlinked file: the space would not come back and the recording would be
lost); long pushes are cut into chunks (``record_interval``) so their finished
parts can go. Every deletion is logged and counted, and ``status()`` says what
is kept and what went.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class Deleted:
    files: int = 0
    bytes: int = 0
    last_name: str | None = None
    last_reason: str | None = None
    last_at: float | None = None


class RecordingRetention:
    """Recordings (``*.flv``) under ``directory`` kept within ``quota_bytes`` and ``max_age_s`` (None: no limit)."""

    def __init__(self, directory: Path, *, quota_bytes: int | None, max_age_s: float | None,
                 open_files: Callable[[], set[Path]] = lambda: set(), pattern: str = "*.flv"):
        if quota_bytes is not None and quota_bytes <= 0:
            raise ValueError(f"recording quota must be positive, got {quota_bytes}")
        if max_age_s is not None and max_age_s <= 0:
            raise ValueError(f"recording max age must be positive, got {max_age_s}")
        self.directory = Path(directory)
        self.quota_bytes, self.max_age_s = quota_bytes, max_age_s
        self.open_files, self.pattern = open_files, pattern
        self.deleted = Deleted()
        self.last_enforced_at: float | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _files(self) -> list[tuple[Path, int, float]]:
        """(path, size, mtime), oldest first."""
        out = []
        for path in self.directory.glob(self.pattern):
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            out.append((path, st.st_size, st.st_mtime))
        out.sort(key=lambda f: (f[2], f[0].name))
        return out

    def enforce(self, now: float | None = None) -> int:
        """Delete what the age limit and the quota no longer allow; returns the number of files deleted."""
        with self._lock:
            now = time.time() if now is None else now
            files = self._files()
            busy = {p.resolve() for p in self.open_files()}
            total = sum(size for _, size, _ in files)
            count = 0
            for path, size, mtime in files:
                too_old = self.max_age_s is not None and now - mtime > self.max_age_s
                over = self.quota_bytes is not None and total > self.quota_bytes
                if not (too_old or over):
                    continue
                if path.resolve() in busy:
                    continue  # still being written; its finished chunks go instead
                reason = f"older than {self.max_age_s:g} s" if too_old else f"over the quota of {self.quota_bytes} bytes"
                try:
                    path.unlink()
                except FileNotFoundError:
                    continue
                total -= size
                count += 1
                d = self.deleted
                d.files, d.bytes, d.last_name, d.last_reason, d.last_at = d.files + 1, d.bytes + size, path.name, reason, now
                log.warning("media retention: deleted recording %s (%d bytes): %s", path.name, size, reason)
            self.last_enforced_at = now
            return count

    def status(self) -> dict[str, Any]:
        files = self._files()
        oldest = files[0] if files else None
        return {
            "dir": str(self.directory),
            "files": len(files),
            "bytes": sum(size for _, size, _ in files),
            "quota_bytes": self.quota_bytes,
            "max_age_s": self.max_age_s,
            "oldest_kept": oldest[0].name if oldest else None,
            "oldest_kept_at": oldest[2] if oldest else None,
            "deleted_files": self.deleted.files,
            "deleted_bytes": self.deleted.bytes,
            "last_deleted": self.deleted.last_name,
            "last_deleted_reason": self.deleted.last_reason,
            "last_deleted_at": self.deleted.last_at,
            "last_enforced_at": self.last_enforced_at,
        }

    # Periodic enforcement ------------------------------------------------------

    def start(self, interval_s: float) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(interval_s,), name="media-retention", daemon=True)
        self._thread.start()

    def _run(self, interval_s: float) -> None:
        while True:
            try:
                self.enforce()
            except OSError as exc:  # a transient disk error must not end the enforcement
                log.error("media retention: %s", exc)
            if self._stop.wait(interval_s):
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
