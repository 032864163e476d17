"""The streamer: one supervised ffmpeg that records locally and pushes to the meeting's ingest.

One process captures, encodes once and writes through ffmpeg's tee muxer to
(1) numbered local segments and (2) a fifo-wrapped network output. The fifo
reconnects by itself (every ``recovery_wait_s``) and drops packets rather than
stall the encoder, so a dead uplink never stops the recording. This class
supervises the process Frigate-style: its own session, the last stderr lines
kept for the status, restart with exponential backoff, at most
``max_restarts`` per ``restart_window_s`` (then 'stopped' with the reason), and
terminate → wait → kill on stop.

The stream key never enters ffmpeg's argv (world-readable through ``ps``): an
RTMP(S) push goes through a loopback :class:`KeyRelay` that swaps a placeholder
for the key. ffmpeg 5.1 has no other way to take an SRT URL, so an SRT push
still carries it there, with a warning in the log.

States (contract.StreamState): ``live`` (pushing, confirmed), ``reconnecting``
(recording; the push is down and being retried), ``recording-only`` (no ingest
URL, or the push has been down longer than ``offline_after_s``), ``stopped``.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import threading
import time
from collections import deque
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from contract import StreamState

from ..errors import AgentError
from .key_relay import KeyRelay, relayable
from .lifetime import die_with_parent
from .recording import Recording
from .sources import SW_ENCODER, Command, Profile, Source, choose_encoder, push_format, redact_url

log = logging.getLogger(__name__)

_LEVEL = re.compile(r"\[(trace|debug|verbose|info|warning|error|fatal|panic)\]")
_PUSH_DOWN = re.compile(r"Recovery attempt #|Recovery failed|Error opening|Error writing|FIFO queue full|queue is full", re.I)
# Matched anywhere in a line: ffmpeg's threads interleave their log output, so a message
# can land mid-line without its "[tcp @ ...]" prefix.
_PUSH_UP = re.compile(r"Recovery successful|Successfully connected to", re.I)


class StreamerError(AgentError, RuntimeError):
    """The streamer was misconfigured or asked to do something impossible."""


class Streamer:
    def __init__(
        self,
        *,
        source: Source,
        ingest_url: str | None,
        recording_dir: Path,
        quota_bytes: int,
        profile: Profile | None = None,
        encoder: str | None = None,
        ffmpeg: str = "ffmpeg",
        segment_s: float = 4.0,
        recovery_wait_s: float = 2.0,
        max_restarts: int = 5,
        restart_window_s: float = 60.0,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 30.0,
        offline_after_s: float = 30.0,
        settle_s: float = 1.5,
        stop_timeout_s: float = 5.0,
        stderr_lines: int = 20,
    ):
        if ingest_url:
            try:
                push_format(ingest_url)
            except ValueError as exc:
                raise StreamerError(str(exc)) from None
        self.source, self.ingest_url = source, ingest_url or None
        self.recording = Recording(recording_dir, quota_bytes=quota_bytes)
        self.profile = profile or Profile()
        self._encoder = encoder
        self.ffmpeg = ffmpeg
        self.segment_s, self.recovery_wait_s = segment_s, recovery_wait_s
        self.max_restarts, self.restart_window_s = max_restarts, restart_window_s
        self.backoff_initial_s, self.backoff_max_s = backoff_initial_s, backoff_max_s
        self.offline_after_s, self.settle_s, self.stop_timeout_s = offline_after_s, settle_s, stop_timeout_s

        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: deque[str] = deque(maxlen=stderr_lines)
        self._restart_times: deque[float] = deque()
        self.restarts = 0
        self._stopped_reason: str | None = "not started"
        self._started_at: float | None = None
        self._last_exit: str | None = None
        self._progress: dict[str, str] = {}
        self._progress_at: float | None = None
        self._push_up_since: float | None = None
        self._push_down_since: float | None = None
        self.push_failures = 0
        self._last_push_error: str | None = None
        self._queue_overflows = 0
        self._planned = False
        self._failure_counted = False
        self._relay: KeyRelay | None = None
        self._relay_url: str | None = None
        self._warned_argv: str | None = None

    # Lifecycle ---------------------------------------------------------------

    @property
    def encoder(self) -> str:
        if self._encoder is None:
            self._encoder = choose_encoder(self.ffmpeg)
        return self._encoder

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def start(self) -> None:
        """Start supervising (returns at once; ffmpeg runs in the background)."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._stopped_reason = None
            self._restart_times.clear()
            _ = self.encoder  # probe once, before the first launch, not inside the loop
            self._thread = threading.Thread(target=self._supervise, name="streamer", daemon=True)
            self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop ffmpeg (terminate → wait → kill) and the supervisor; the recording stays on disk."""
        self._stop.set()
        self._end_process(self.stop_timeout_s if timeout is None else timeout)
        thread = self._thread
        if thread is not None:
            thread.join(timeout=(timeout or self.stop_timeout_s) + 5)
        with self._lock:
            if self._stopped_reason is None:
                self._stopped_reason = "stopped on request"
            relay, self._relay = self._relay, None
        if relay is not None:
            relay.stop()

    def set_ingest(self, url: str | None) -> None:
        """Point the push elsewhere (a new meeting); restarts ffmpeg, keeping the recording."""
        if url:
            try:
                push_format(url)
            except ValueError as exc:
                raise StreamerError(str(exc)) from None
        with self._lock:
            self.ingest_url = url or None
        self._end_process(self.stop_timeout_s, planned=True)

    # Supervision -------------------------------------------------------------

    def _supervise(self) -> None:
        consecutive = 0
        while not self._stop.is_set():
            self.recording.prune()
            began = time.monotonic()
            try:
                proc = self._launch()
                if proc is None:
                    break
            except OSError as exc:
                self._stderr.append(f"cannot run {self.ffmpeg}: {exc}")
                proc = None
            if proc is not None:
                code = self._watch(proc)
                self._last_exit = f"ffmpeg exited with code {code}"
            if self._stop.is_set():
                break
            if self._planned:
                self._planned = False
                continue
            if time.monotonic() - began >= self.restart_window_s:
                consecutive = 0  # it ran well for a whole window: start the backoff afresh
            now = time.monotonic()
            while self._restart_times and now - self._restart_times[0] > self.restart_window_s:
                self._restart_times.popleft()
            if len(self._restart_times) >= self.max_restarts:
                last = self._stderr[-1] if self._stderr else "no output"
                with self._lock:
                    self._stopped_reason = (f"gave up: {len(self._restart_times) + 1} failures within {self.restart_window_s:g}s; "
                                            f"{self._last_exit or 'ffmpeg did not start'}; last error: {last}")
                log.error("streamer %s", self._stopped_reason)
                return
            delay = min(self.backoff_max_s, self.backoff_initial_s * (2 ** consecutive))
            consecutive += 1
            log.warning("streamer: %s; restarting in %.1fs", self._last_exit or "ffmpeg failed to start", delay)
            if self._stop.wait(delay):
                break
            self._restart_times.append(time.monotonic())
            self.restarts += 1

    def _launch(self) -> subprocess.Popen[bytes] | None:
        with self._lock:
            if self._stop.is_set():  # checked under the lock stop() takes to end the process
                return None
            cmd = Command(
                source=self.source, segment_pattern=self.recording.new_pattern(), ingest_url=self._push_url(),
                encoder=self.encoder, profile=self.profile, segment_s=self.segment_s,
                recovery_wait_s=self.recovery_wait_s, ffmpeg=self.ffmpeg,
            )
            # A new session: a signal aimed at the agent's process group (Ctrl-C, systemd) does not
            # reach ffmpeg behind the supervisor's back; stop() ends it deliberately. The parent-death
            # signal ends it when the agent dies without stopping it (SIGKILL, crash): this thread
            # lives until ffmpeg has exited, so it is the right "parent" for the kernel.
            proc = subprocess.Popen(cmd.argv(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    start_new_session=True, preexec_fn=die_with_parent(signal.SIGKILL), umask=0o077)
            self._proc = proc
            self._started_at = time.monotonic()
            self._progress, self._progress_at = {}, None
            self._push_up_since, self._failure_counted = None, False
            self._push_down_since = time.monotonic() if self.ingest_url else None
        log.info("streamer: ffmpeg pid %d, %s, %s → %s", proc.pid, self.encoder, self.profile.describe(),
                 redact_url(self.ingest_url) if self.ingest_url else "recording only")
        return proc

    def _push_url(self) -> str | None:
        # Called under the lock, before each launch: the URL ffmpeg's argv may show.
        url = self.ingest_url
        if not url:
            return None
        if not relayable(url):
            if self._warned_argv != url:
                self._warned_argv = url
                log.warning("streamer: the stream key of %s is in ffmpeg's command line, readable by every local user "
                            "(ffmpeg cannot take this kind of URL another way; only rtmp:// and rtmps:// go through the key relay)",
                            redact_url(url))
            return url
        if self._relay is None:
            relay = KeyRelay(url, on_connected=self._push_is_up)
            relay.start()  # an OSError here is a failed launch: retried with the backoff
            self._relay, self._relay_url = relay, url
        elif self._relay_url != url:
            self._relay.set_target(url)
            self._relay_url = url
        return self._relay.local_url

    def _watch(self, proc: subprocess.Popen[bytes]) -> int:
        readers = [
            threading.Thread(target=self._read_progress, args=(proc.stdout,), daemon=True),
            threading.Thread(target=self._read_stderr, args=(proc.stderr,), daemon=True),
        ]
        for t in readers:
            t.start()
        while True:
            try:
                code = proc.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                self.recording.prune()
                if self._stop.is_set():
                    self._end_process(self.stop_timeout_s)
        for t in readers:
            t.join(timeout=2)
        self.recording.prune()
        return code

    def _end_process(self, timeout: float, *, planned: bool = False) -> None:
        with self._lock:
            proc = self._proc
            if planned:
                self._planned = True
        if proc is None or proc.poll() is not None:
            return
        try:
            proc.terminate()  # ffmpeg closes its outputs cleanly on SIGTERM
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.warning("streamer: ffmpeg pid %d ignored SIGTERM for %.1fs; killing it", proc.pid, timeout)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=5)

    # Output parsing ----------------------------------------------------------

    def _read_progress(self, stream: IO[bytes] | None) -> None:
        if stream is None:
            return
        block: dict[str, str] = {}
        for raw in stream:
            key, _, value = raw.decode("utf-8", "replace").strip().partition("=")
            if not key:
                continue
            block[key] = value.strip()
            if key == "progress":
                with self._lock:
                    self._progress, self._progress_at = block, time.monotonic()
                block = {}

    def _read_stderr(self, stream: IO[bytes] | None) -> None:
        if stream is None:
            return
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self._on_stderr(line)

    def _on_stderr(self, line: str) -> None:
        level_match = _LEVEL.search(line)
        level = level_match.group(1) if level_match else "info"
        now = time.monotonic()
        with self._lock:
            relayed = self._relay is not None and relayable(self.ingest_url or "")
            if _PUSH_UP.search(line) and self.ingest_url:
                # Through the relay, ffmpeg's TCP connect reaches only the relay, which reports its own connect to the server.
                if not (relayed and "Successfully connected" in line):
                    self._push_is_up()
            elif _PUSH_DOWN.search(line) and self.ingest_url:
                if "queue full" in line.lower() or "queue is full" in line.lower():
                    self._queue_overflows += 1
                if not self._failure_counted:  # one failure per outage, however many retries
                    self.push_failures += 1
                    self._failure_counted = True
                if self._push_down_since is None:
                    self._push_down_since = now
                self._push_up_since = None
            if level in ("warning", "error", "fatal", "panic") or not level_match:
                self._stderr.append(self._redact(_LEVEL.sub("", line).replace("  ", " ").strip()))
                if level in ("error", "fatal") and self._push_down_since is not None:
                    self._last_push_error = self._stderr[-1]
                    upstream = self._relay.last_upstream_error if relayed and self._relay else None
                    if upstream:  # ffmpeg saw only the relay hang up: say why
                        self._last_push_error += f" (key relay: {upstream})"

    def _push_is_up(self) -> None:
        with self._lock:
            if self.ingest_url:
                self._push_down_since = None
                self._failure_counted = False
                self._push_up_since = self._push_up_since or time.monotonic()

    def _redact(self, text: str) -> str:
        # ffmpeg prints the full URL in its errors; the stream key must not reach the published status.
        relay = self._relay
        if relay is not None and self.ingest_url and relayable(self.ingest_url):
            text = text.replace(relay.local_url, redact_url(self.ingest_url)).replace(relay.placeholder, "***")
        if self.ingest_url:
            parts = urlsplit(self.ingest_url)
            for secret in (parts.path.rstrip("/").rpartition("/")[2].partition(".")[2], parts.query, parts.password):
                if secret:
                    text = text.replace(secret, "***")
        return text

    # State -------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Everything the kiosk page and the retained status need, as plain JSON-able values."""
        now = time.monotonic()
        with self._lock:
            running = self._thread is not None and self._thread.is_alive() and not self._stop.is_set()
            proc_alive = self._proc is not None and self._proc.poll() is None
            progressing = self._progress_at is not None and now - self._progress_at < 3.0
            down_for = now - self._push_down_since if self._push_down_since is not None else None
            if not running:
                state, detail = "stopped", self._stopped_reason or "stopped"
            elif not proc_alive:
                state, detail = ("reconnecting" if self.ingest_url else "recording-only"), f"restarting ffmpeg ({self._last_exit or 'starting'})"
            elif not self.ingest_url:
                state, detail = "recording-only", "no ingest URL: recording locally"
            elif self._push_up_since is not None and now - self._push_up_since >= self.settle_s and progressing:
                state, detail = "live", f"pushing to {redact_url(self.ingest_url)}"
            elif down_for is not None and down_for >= self.offline_after_s:
                state, detail = "recording-only", f"push down for {down_for:.0f}s, retrying every {self.recovery_wait_s:g}s: {self._last_push_error or 'no answer'}"
            else:
                state, detail = "reconnecting", f"connecting to {redact_url(self.ingest_url)}" + (f": {self._last_push_error}" if self._last_push_error and down_for else "")
            p = self._progress
            rec = self.recording.status()
            if rec["deleted_segments"]:
                detail += (f"; quota {rec['quota_bytes']} B reached: {rec['deleted_segments']} oldest segments "
                           f"({rec['deleted_bytes']} B) deleted, oldest kept {rec['oldest_kept']}")
            return {
                "state": state,
                "detail": detail,
                "pid": self._proc.pid if proc_alive and self._proc else None,
                "encoder": self.encoder,
                "profile": self.profile.describe(),
                "source": self.source.label,
                "ingest": redact_url(self.ingest_url) if self.ingest_url else None,
                "uptime_s": round(now - self._started_at, 1) if proc_alive and self._started_at else None,
                "restarts": self.restarts,
                "last_exit": self._last_exit,
                "restarts_in_window": len(self._restart_times),
                "push_failures": self.push_failures,
                "push_down_s": round(down_for, 1) if down_for is not None else None,
                "push_up_s": round(now - self._push_up_since, 2) if self._push_up_since is not None else None,
                "last_push_error": self._last_push_error,
                "queue_overflows": self._queue_overflows,
                "frames": _int(p.get("frame")),
                "fps": _float(p.get("fps")),
                "dropped_frames": _int(p.get("drop_frames")),
                "duplicated_frames": _int(p.get("dup_frames")),
                "speed": p.get("speed"),
                "out_time_s": round(_int(p.get("out_time_us")) / 1e6, 1) if _int(p.get("out_time_us")) else None,
                "bitrate_kbps": rec["bitrate_kbps"],
                "recording": rec,
                "stderr_tail": list(self._stderr),
                "key_relay": self._relay.state() if self._relay is not None else None,
            }

    def stream_state(self) -> StreamState:
        """The contract's summary for the device's retained status message."""
        s = self.state()
        rec = s.get("recording") or {}
        return StreamState(
            state=s["state"], detail=(s["detail"] or "")[:300] or None, fps=s.get("fps"),
            bitrate_kbps=s.get("bitrate_kbps"), dropped_frames=s.get("dropped_frames"), restarts=s.get("restarts"),
            push_down_s=s.get("push_down_s"), recording_bytes=rec.get("bytes"),
            recording_deleted_segments=rec.get("deleted_segments"), recording_deleted_bytes=rec.get("deleted_bytes"),
            oldest_kept=rec.get("oldest_kept"),
        )


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "", "N/A") else None
    except ValueError:
        return None


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "", "N/A") else None
    except ValueError:
        return None


__all__ = ["Streamer", "StreamerError", "SW_ENCODER"]
