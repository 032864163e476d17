"""The face worker: a separate process that owns the camera and the face models.

Why a process: the models take ~100 MB and a second to load, and an encoding holds the CPU
(~60 ms here, ~1 s on a Pi) inside dlib without releasing the GIL, so in the kiosk's own
process they would stall the page and the readers. Frames never cross the process boundary;
only templates go in and verdicts come out, over one Pipe with request ids.

Pre-encoding: the worker looks at the camera every `observe_interval_s` (detection on a small
copy, cheap) and encodes the face in front whenever it is a new face or its encoding is older
than half of `fresh_window_s`. A tap then costs a fresh frame and a detection, not an encoding.

When may a cached encoding answer a request? All of:
- the frame read for the request shows one usable face (else its status is the verdict);
- that face belongs to the same *track* as the cached encoding: every look links a face to the
  previous look's face when the frame size is unchanged and the boxes overlap (IoU >= 0.3);
  a frame without a usable face, a changed frame size (another still photo on the simulated
  stage) or a jump in position starts a new track. A real person cannot be swapped for another
  between two looks 0.2 s apart without the boxes jumping or the face disappearing;
- the cached frame was captured at most `fresh_window_s` before the request, after the previous
  request (one encoding answers one tap: the member after is never judged by an encoding made
  before the tap of the member before), and not before the request's `not_before`
  (time.time()), when the caller gives one. The simulated stage can swap two photos of the
  same size with the face in the same place in one instant, which tracking cannot see; the sim
  (or anything that knows when the person changed) passes `not_before` for that case.
Otherwise the face of the fresh frame is encoded now (encoding_age_s == 0).

Supervision: `start()` spawns (multiprocessing "spawn": no fork of a threaded parent) and
waits until the models are loaded and the camera opened; `stop()` terminates, joins with a
timeout, then kills. The child exits by itself when the parent's end of the pipe closes.
A worker that dies on its own (a crash in dlib, the OOM killer, `kill -9`) is restarted by a
supervisor thread, Frigate-style: after `restart_backoff_s` (1 s), doubling with every restart
in the last `restart_window_s` up to `restart_backoff_max_s` (30 s); at most `restart_budget`
restarts per window, after which it stays down (a crash loop would otherwise hold a core of
the Pi forever) until start() is called again, i.e. until the agent restarts. Meanwhile
`verify` raises WorkerRestarting or WorkerDown at once, and `fault` says which, for the status.
Like any "spawn" child, it re-imports the parent's main module: a script that starts a worker
needs the `if __name__ == "__main__":` guard (console scripts such as `hall` have it).

QR at the camera (`on_qr` given): a hall without a serial QR scanner shows the CCCD's QR to
the camera. The worker decodes it from the frames it reads anyway (edge_agent.face.qr,
zxing-cpp), on every look while no face is tracked and on every other look while one is, so a
look costs ~0.4 ms more (bench/qr_camera.py); each new text (debounced: a QR held for several
looks fires once) goes to the parent over a second, one-way pipe and to `on_qr` from a reader
thread. Taps and verdicts never wait for it.

Presence (`on_presence` given): the idle screen asks the member to look at the camera while no
face is seen. The worker sends ("presence", bool) over the same one-way pipe when a usable face
(one face, near enough) appears (at once) or is gone (after PRESENCE_GONE_LOOKS looks), only on
change; the parent calls `on_presence` from its reader thread.

Measured here (x86_64, 2 cores): ready in 0.9 s (models 0.7 s), RSS 184 MB idle and ~200 MB
running; a tap answered from the pre-encoding takes ~16 ms, one that must encode ~77 ms.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from edge_agent.face.verdicts import DEFAULT_THRESHOLD, FaceError, FaceStatus, FaceVerdict, WorkerError

log = logging.getLogger(__name__)

DEFAULT_OPENER = "hardware.camera:open_camera"
TRACK_IOU = 0.3
READ_RETRIES = 3  # a live camera may miss a frame; an empty stage answers None at once
DEFAULT_WAIT_S = 3.0  # HALL_AGENT_FACE_WAIT_S: a member looks up from the reader within it
WAIT_LOOK_S = 0.05  # while a tap waits, look as often as this: a blink lasts 0.1-0.4 s
WATCH_INTERVAL_S = 0.2  # how often the supervisor looks at the process (a verify notices a death at once)
# Presence: a face counts as there from the first look that shows it (the idle screen's "look at
# the camera" must go at once), and as gone after this many looks without one (0.6 s at 0.2 s a
# look): a detection missed on one frame, a blink of HOG, must not make the prompt flicker.
PRESENCE_GONE_LOOKS = 3


class WorkerRestarting(WorkerError):
    """The face worker died and is being restarted: ask again in a few seconds."""


class WorkerDown(WorkerError):
    """The face worker died more often than its restart budget allows and stays down."""


# ---------------------------------------------------------------- the parent side


class FaceWorker:
    def __init__(
        self,
        *,
        camera_source: str,
        threshold: float = DEFAULT_THRESHOLD,
        fresh_window_s: float = 1.0,
        observe_interval_s: float = 0.2,
        detect_width: int = 320,
        opener: str = DEFAULT_OPENER,
        restart_backoff_s: float = 1.0,
        restart_backoff_max_s: float = 30.0,
        restart_budget: int = 5,
        restart_window_s: float = 600.0,
        start_timeout_s: float = 60.0,
        on_qr: Callable[[str], None] | None = None,
        qr_gone_s: float = 2.0,
        on_presence: Callable[[bool], None] | None = None,
        presence_gone_looks: int = PRESENCE_GONE_LOOKS,
        liveness: bool = True,
        wait_s: float = DEFAULT_WAIT_S,
    ) -> None:
        """`opener` is "module:function" taking the source string and returning a camera with
        .read() -> BGR ndarray | None and .release(); it is imported inside the worker.
        `on_qr(text)`, when given, is called (from a thread of this process) with every new QR
        text the camera sees; a text fires again only after `qr_gone_s` out of view.
        `on_presence(seen)`, when given, is called (from a thread of this process) when a usable
        face comes into view (True) or leaves it (False, after `presence_gone_looks` looks without
        one), only on change; the first call says what the camera sees after (re)start.
        `liveness`: refuse (NOT_LIVE) a face without evidence of a live person (edge_agent.face.liveness).
        `wait_s`: how long verify keeps looking for a usable (and, with liveness, live) face."""
        self.config = {
            "camera_source": camera_source,
            "threshold": threshold,
            "fresh_window_s": fresh_window_s,
            "observe_interval_s": observe_interval_s,
            "detect_width": detect_width,
            "opener": opener,
            "qr_camera": on_qr is not None,
            "qr_gone_s": qr_gone_s,
            "presence": on_presence is not None,
            "presence_gone_looks": presence_gone_looks,
            "liveness": liveness,
        }
        self.wait_s = wait_s
        self.on_qr = on_qr
        self.on_presence = on_presence
        self._presence: bool | None = None  # last value handed to on_presence
        self.restart_backoff_s, self.restart_backoff_max_s = restart_backoff_s, restart_backoff_max_s
        self.restart_budget, self.restart_window_s = restart_budget, restart_window_s
        self.start_timeout_s = start_timeout_s
        self._ctx = multiprocessing.get_context("spawn")
        self._proc: Any = None
        self._conn: Any = None
        self._lock = threading.Lock()  # the pipe: one request at a time
        self._spawn_lock = threading.Lock()  # one spawn at a time; not held by verify, which must not wait for it
        self._next_id = 0
        self._starts = 0
        self._last_error = ""
        self._ready_info: dict = {}
        # supervision: "stopped" (never started, or stop()), "running", "restarting", "down"
        self._state = "stopped"
        self._fault: str | None = None
        self._restarts: list[float] = []  # monotonic times of the restarts in the current window
        self._wake = threading.Event()  # stop() or a verify that met a dead worker
        self._stopping = threading.Event()  # stop(): a restart waiting for the models gives up
        self._supervisor: threading.Thread | None = None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def fault(self) -> str | None:
        """Why the worker cannot verify now (None when it can), in words for the status."""
        if self._state == "running" and not self.alive:  # died; the supervisor is about to act
            return self._fault_after_death()
        if self._state == "stopped":
            return "face worker not running"
        return self._fault

    def _fault_after_death(self) -> str:
        restarts = len(self._live_restarts())
        if restarts >= self.restart_budget:
            return "face worker down: restart budget exhausted"
        return f"face worker restarting (attempt {restarts + 1})"

    @property
    def supervised(self) -> bool:
        """True while the supervisor thread watches the worker (it ends when the budget is spent)."""
        return self._supervisor is not None and self._supervisor.is_alive()

    def start(self, timeout: float | None = None) -> None:
        """Spawn the worker and wait until it is ready, then supervise it. Resets the restart budget."""
        self._stopping.clear()
        self._spawn(self.start_timeout_s if timeout is None else timeout)
        self._restarts.clear()
        self._fault = None
        self._state = "running"
        if not self.supervised:
            self._wake.clear()
            self._supervisor = threading.Thread(target=self._supervise, name="hall-face-supervisor", daemon=True)
            self._supervisor.start()

    def verify(self, templates: list[list[float]], timeout: float = 5.0, *, not_before: float | None = None,
               wait_s: float | None = None) -> FaceVerdict:
        """Verdict on the face looking at the camera against a member's templates (blocking,
        thread-safe). The worker keeps looking for up to `wait_s` (default: the constructor's) for a
        usable and, with liveness, live face; `timeout` is on top of that wait."""
        try:
            clean = [[float(x) for x in t] for t in templates]
        except (TypeError, ValueError) as e:
            raise FaceError(f"templates must be lists of numbers: {e}") from None
        wait = self.wait_s if wait_s is None else max(0.0, float(wait_s))
        reply = self._ask("verify", clean, not_before, wait, timeout=timeout + wait)
        return FaceVerdict.from_dict(reply)

    def stats(self, timeout: float = 2.0) -> dict:
        """Counters from the worker (frames read, looks, encodings, cache hits, rss) and its state."""
        own = {"alive": self.alive, "pid": self.pid, "starts": self._starts, "last_error": self._last_error,
               "state": self._state, "fault": self.fault, "restarts_in_window": len(self._live_restarts()),
               "exitcode": None if self._proc is None or self.alive else self._proc.exitcode, **self._ready_info}
        if not self.alive:
            return own
        try:
            # Statistics never queue behind a tap (which may hold the pipe for the whole face wait).
            theirs = self._ask("stats", timeout=timeout, queue_s=timeout)
        except WorkerError as e:
            return {**own, "stats_error": str(e)}
        return {**own, **theirs, "last_error": theirs.get("last_error") or self._last_error}

    def stop(self, timeout: float = 5.0) -> None:
        self._state = "stopped"  # first: the supervisor must not restart what we stop
        self._stopping.set()
        self._wake.set()
        supervisor = self._supervisor
        if supervisor is not None and supervisor is not threading.current_thread():
            supervisor.join(timeout + self.start_timeout_s)
        self._supervisor = None
        with self._spawn_lock, self._lock:
            self._stop_locked(timeout)

    # -- internals

    def _spawn(self, timeout: float) -> None:
        with self._spawn_lock:
            with self._lock:
                if self.alive:
                    return
                self._reap()
            parent_conn, child_conn = self._ctx.Pipe(duplex=True)
            wants_events = self.on_qr is not None or self.on_presence is not None
            events_in, events_out = self._ctx.Pipe(duplex=False) if wants_events else (None, None)
            proc = self._ctx.Process(target=_child_main, args=(child_conn, self.config, events_out),
                                     name="hall-face-worker", daemon=True)
            proc.start()
            child_conn.close()  # so the child's exit shows here as EOF
            if events_in is not None:
                events_out.close()
                threading.Thread(target=self._read_events, args=(events_in,), name="hall-face-events", daemon=True).start()
            self._starts += 1
            failure = self._wait_ready(proc, parent_conn, timeout)
            if failure is None:
                with self._lock:
                    self._proc, self._conn = proc, parent_conn
                return
            self._last_error = failure
            if proc.is_alive():
                proc.kill()
            proc.join(5)
            parent_conn.close()
            raise WorkerError(f"face worker could not start: {failure}")

    def _wait_ready(self, proc: Any, conn: Any, timeout: float) -> str | None:
        """None once the worker says it is ready, else why it is not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._stopping.is_set():
            if conn.poll(0.1):
                try:
                    kind, info = conn.recv()
                except (EOFError, OSError):
                    break
                if kind == "ready":
                    self._ready_info = info
                    log.info("face worker %s ready: %s", proc.pid, info)
                    return None
                return str(info)
            if not proc.is_alive():
                break
        if self._stopping.is_set():
            return "stopped while starting"
        if proc.is_alive():
            return f"not ready after {timeout} s"
        proc.join(1)
        return f"exited with code {proc.exitcode} while starting (see its stderr)"

    def _read_events(self, conn: Any) -> None:
        """Hand the worker's QR texts and presence changes to on_qr / on_presence until that
        worker's pipe closes (it died or stopped)."""
        try:
            while True:
                kind, value = conn.recv()
                try:
                    if kind == "qr" and self.on_qr is not None:
                        self.on_qr(value)
                    elif kind == "presence" and self.on_presence is not None and value is not self._presence:
                        # a restarted worker says what it sees again; the receiver hears changes only
                        self._presence = value
                        self.on_presence(value)
                except Exception:  # the receiver's bug must not stop the next event
                    log.exception("on_%s failed", kind)
        except (EOFError, OSError):
            pass
        finally:
            conn.close()

    def _live_restarts(self) -> list[float]:
        now = time.monotonic()
        return [t for t in self._restarts if now - t < self.restart_window_s]

    def _supervise(self) -> None:
        while self._state != "stopped":
            self._wake.wait(WATCH_INTERVAL_S)
            self._wake.clear()
            if self._state == "running" and not self.alive:
                code = None if self._proc is None else self._proc.exitcode
                self._last_error = f"the face worker died (exit code {code})"
                log.error("%s", self._last_error)
                if not self._restart():
                    return

    def _restart(self) -> bool:
        """Restart after a death, within the budget; False when the worker stays down."""
        while self._state != "stopped":
            self._restarts = self._live_restarts()
            if len(self._restarts) >= self.restart_budget:
                self._state = "down"
                self._fault = (f"face worker down: restart budget exhausted ({len(self._restarts)} restarts in "
                               f"{self.restart_window_s:.0f} s; last error: {self._last_error})")
                log.error("%s; it stays down until the agent restarts", self._fault)
                with self._lock:
                    self._reap()
                return False
            delay = min(self.restart_backoff_max_s, self.restart_backoff_s * 2 ** len(self._restarts))
            self._restarts.append(time.monotonic())
            self._fault = f"face worker restarting (attempt {len(self._restarts)})"
            self._state = "restarting"
            log.warning("%s in %.1f s", self._fault, delay)
            if self._wake.wait(delay) and self._state == "stopped":
                return False
            try:
                self._spawn(self.start_timeout_s)
            except WorkerError as e:
                log.error("%s", e)
                continue
            if self._state == "stopped":  # stop() came while it was starting
                return False
            self._state, self._fault = "running", None
            log.info("face worker restarted (pid %s)", self.pid)
            return True
        return False

    def _unavailable(self, what: str) -> WorkerError:
        """The error for a request that finds no worker to answer it."""
        if self._state == "running":
            self._wake.set()  # a death seen here is the supervisor's news too
            fault = self._fault_after_death()
            return (WorkerDown if "down" in fault else WorkerRestarting)(fault)
        if self._state == "down":
            return WorkerDown(self._fault or "face worker down")
        if self._state == "restarting":
            return WorkerRestarting(self._fault or "face worker restarting")
        return WorkerError(self._death_reason(what))

    def _ask(self, kind: str, *args: Any, timeout: float, queue_s: float | None = None) -> dict:
        """One request over the pipe. ``queue_s``: give up if another request (a tap waiting up to
        wait_s for a live face) holds the pipe longer than this; None waits for it (a tap must be answered)."""
        if self._state in ("restarting", "down"):
            raise self._unavailable("the face worker is not running")
        if not self._lock.acquire(timeout=-1 if queue_s is None else queue_s):
            raise WorkerError(f"the face worker is busy with another request ({kind} not sent)")
        try:
            return self._ask_locked(kind, *args, timeout=timeout)
        finally:
            self._lock.release()

    def _ask_locked(self, kind: str, *args: Any, timeout: float) -> dict:
        if not self.alive:
            raise self._unavailable("the face worker is not running")
        self._next_id += 1
        rid = self._next_id
        try:
            self._conn.send((kind, rid, *args))
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                if not self._conn.poll(left):
                    break
                answer, answer_id, payload = self._conn.recv()
                if answer_id != rid:
                    continue  # the late answer to a request that already timed out
                if answer == "error":
                    raise FaceError(payload)
                return payload
        except (EOFError, OSError, BrokenPipeError):
            if self._proc is not None:
                self._proc.join(1)
            raise self._unavailable("the face worker died") from None
        raise WorkerError(f"the face worker did not answer {kind} within {timeout} s")

    def _death_reason(self, what: str) -> str:
        code = None if self._proc is None else self._proc.exitcode
        reason = what if code is None else f"{what} (exit code {code})"
        self._last_error = reason
        return reason + "; call start() to restart it"

    def _reap(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._proc is not None:
            self._proc.join(0.1)
        self._proc = self._conn = None

    def _stop_locked(self, timeout: float = 5.0) -> None:
        proc = self._proc
        if proc is not None and proc.is_alive():
            proc.terminate()
            proc.join(timeout)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout)
        self._reap()

    def __enter__(self) -> FaceWorker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------- the worker process


@dataclass
class _Look:
    observation: Any  # FaceObservation
    captured_at: float  # time.time() when the frame was read
    track: int
    frame: Any = None


class _Presence:
    """Debounces "a usable face is in view": True at once, False after `gone_looks` looks without."""

    def __init__(self, gone_looks: int) -> None:
        self.gone_looks = max(1, gone_looks)
        self.state: bool | None = None
        self.misses = 0

    def see(self, seen: bool) -> bool | None:
        """The new state when it changes (the first look always decides one), else None."""
        self.misses = 0 if seen else self.misses + 1
        new = True if seen else (False if self.state is None or self.misses >= self.gone_looks else self.state)
        if new is self.state:
            return None
        self.state = new
        return new


def _rss_kb() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class _Worker:
    def __init__(self, config: dict, events: Any = None) -> None:
        # the camera first: a wrong source fails in milliseconds, not after loading the models
        module, _, attr = config["opener"].partition(":")
        self.camera = getattr(importlib.import_module(module), attr)(config["camera_source"])
        try:
            from edge_agent.face.liveness import Evidence, LivenessTrack
            from edge_agent.face.pipeline import FacePipeline, box_iou, load_models

            t = time.monotonic()
            load_models()
            self.pipeline = FacePipeline(threshold=config["threshold"], detect_width=config["detect_width"])
        except BaseException:
            self.close()
            raise
        self.model_load_s = round(time.monotonic() - t, 3)
        self.box_iou = box_iou
        self.new_live_track = LivenessTrack
        self.no_evidence = Evidence(False, 0, 0.0, 0)
        self.config = config
        self.fresh_window_s = config["fresh_window_s"]
        self.latest: _Look | None = None
        self.cached: _Look | None = None
        self.tracks = 0
        self.previous_request_at = 0.0
        self.liveness = bool(config.get("liveness"))
        self.live_track: LivenessTrack | None = None  # the evidence of the current track (liveness on)
        self.live_track_id = -1
        self.counters = dict(frames_read=0, frames_missing=0, looks=0, encodings=0, verifies=0,
                             cache_hits=0, fresh_encodings=0, errors=0, waits=0, liveness_looks=0, liveness_ms=0.0)
        self.last_error = ""
        self.events = events
        self.presence = _Presence(config.get("presence_gone_looks", PRESENCE_GONE_LOOKS)) \
            if config.get("presence") and events is not None else None
        self.qr = self.qr_debounce = None
        if config.get("qr_camera") and events is not None:
            from edge_agent.face.qr import QrDebounce, QrDecoder

            self.qr, self.qr_debounce = QrDecoder(), QrDebounce(config.get("qr_gone_s", 2.0))
            self.counters.update(qr_decodes=0, qr_seen=0)

    def close(self) -> None:
        try:
            self.camera.release()
        except Exception:  # closing on the way out; nothing left to tell
            pass

    def _read(self, retries: int = 1) -> Any:
        # a live camera re-opens itself (hardware.camera.OpenCvCamera); here we only wait a bit
        for attempt in range(retries):
            frame = self.camera.read()
            if frame is not None:
                self.counters["frames_read"] += 1
                return frame
            self.counters["frames_missing"] += 1
            if attempt + 1 < retries:
                time.sleep(0.05)
        return None

    def look(self, retries: int = 1) -> _Look | None:
        """Read a frame, find the face and link it to the previous look's track."""
        frame = self._read(retries)
        captured_at = time.time()
        if frame is None:
            self.latest = None
            self.tell_presence(False)
            return None
        obs = self.pipeline.locate(frame)
        self.counters["looks"] += 1
        prev = self.latest
        same = (obs.ok and prev is not None and prev.observation.ok
                and prev.observation.frame_shape == obs.frame_shape
                and self.box_iou(prev.observation.box, obs.box) >= TRACK_IOU)
        if obs.ok and not same:
            self.tracks += 1
        self.latest = _Look(obs, captured_at, self.tracks if obs.ok else -1, frame)
        if self.liveness and obs.ok:
            self.gather_liveness(self.latest)
        self.tell_presence(obs.ok)
        return self.latest

    def tell_presence(self, seen: bool) -> None:
        if self.presence is not None and (change := self.presence.see(seen)) is not None:
            self.events.send(("presence", change))

    def gather_liveness(self, look: _Look) -> None:
        from edge_agent.face.liveness import landmarks
        from edge_agent.face.pipeline import rgb_frame

        if look.track != self.live_track_id:
            self.live_track, self.live_track_id = self.new_live_track(), look.track
        start = time.perf_counter()
        self.live_track.add(landmarks(rgb_frame(look.frame), look.observation.box), look.captured_at)
        self.counters["liveness_looks"] += 1
        self.counters["liveness_ms"] += 1000 * (time.perf_counter() - start)

    def evidence(self, track: int) -> Any:
        """The liveness evidence of `track`: None when liveness is off, none at all for a track that
        is not the current one (its evidence went with it)."""
        if not self.liveness:
            return None
        if track != self.live_track_id or self.live_track is None:
            return self.no_evidence
        return self.live_track.evidence()

    def encode(self, look: _Look) -> _Look:
        encoded = _Look(self.pipeline.encode(look.frame, look.observation), look.captured_at, look.track)
        self.counters["encodings"] += 1
        if encoded.observation.ok:
            self.cached = encoded
        return encoded

    def tick(self) -> None:
        tracking = self.latest is not None and self.latest.observation.ok
        look = self.look()
        if look is not None and self.qr is not None and (not tracking or self.counters["looks"] % 2 == 0):
            self.read_qr(look.frame)
        if look is None or not look.observation.ok:
            return
        c = self.cached
        if c is not None and c.track == look.track and time.time() - c.captured_at < self.fresh_window_s / 2:
            return
        self.encode(look)

    def read_qr(self, frame: Any) -> None:
        """Send every new QR text in the frame to the parent (first: the member waits for it)."""
        self.counters["qr_decodes"] += 1
        for text in self.qr_debounce.see(self.qr.decode(frame)):
            self.counters["qr_seen"] += 1
            self.events.send(("qr", text))

    def verify(self, templates: list[list[float]], not_before: float | None, wait_s: float = 0.0) -> dict:
        start = time.perf_counter()
        self.counters["verifies"] += 1
        pipe = self.pipeline
        if not templates:
            return FaceVerdict(FaceStatus.NO_TEMPLATE, None, pipe.threshold, 0, time.perf_counter() - start, None).to_dict()
        now = time.time()
        deadline = time.monotonic() + wait_s
        c, previous = self.cached, self.previous_request_at
        self.previous_request_at = now

        def cache_usable(track: int | None) -> bool:
            """The pre-encoding may answer: its track (the same as the frame's, when the frame shows
            one), seen at most fresh_window_s ago, after the previous tap and not_before."""
            return (c is not None and (track is None or c.track == track)
                    and time.time() - c.captured_at <= self.fresh_window_s and c.captured_at > previous
                    and (not_before is None or c.captured_at >= not_before))

        def live(track: int) -> bool:
            ev = self.evidence(track)
            return ev is None or ev.live  # None: liveness is off

        look = self.look(READ_RETRIES)
        used: _Look | None = None
        while True:
            if look is None:
                return FaceVerdict(FaceStatus.NO_CAMERA, None, pipe.threshold, 0, time.perf_counter() - start, None).to_dict()
            if look.observation.ok and (live(look.track) or time.monotonic() >= deadline):
                break
            if not look.observation.ok and cache_usable(None) and live(c.track):
                # the member looked at the camera just before tapping and now looks at the reader
                used = c
                break
            if time.monotonic() >= deadline:
                break
            self.counters["waits"] += 1
            time.sleep(WAIT_LOOK_S)
            look = self.look(READ_RETRIES)
        if used is None and look.observation.ok:
            if cache_usable(look.track):
                used = c
            else:
                used = self.encode(look)
                self.counters["fresh_encodings"] += 1
        if used is None:  # no usable face came within the wait: its status is the verdict
            verdict = pipe.verify(look.observation, templates)
            return replace(verdict, elapsed_s=time.perf_counter() - start).to_dict()
        if used is c:
            self.counters["cache_hits"] += 1
            verdict = pipe.verify(c.observation, templates, encoding_age_s=max(time.time() - c.captured_at, 1e-6))
        else:
            verdict = pipe.verify(used.observation, templates)
        evidence = self.evidence(used.track)
        if evidence is not None:
            # a photo of anyone is refused as a photo; the distance stays in the verdict for the record
            status = verdict.status if evidence.live or not used.observation.ok else FaceStatus.NOT_LIVE
            verdict = replace(verdict, status=status, liveness=evidence.measure())
        return replace(verdict, elapsed_s=time.perf_counter() - start).to_dict()

    def stats(self) -> dict:
        return {**self.counters, "tracks": self.tracks, "last_error": self.last_error, "pid": os.getpid(),
                "rss_kb": _rss_kb(), "camera_source": self.config["camera_source"], "model_load_s": self.model_load_s,
                "cached_age_s": None if self.cached is None else round(time.time() - self.cached.captured_at, 3)}

    def handle(self, message: tuple) -> tuple:
        kind, rid, *args = message
        try:
            if kind == "verify":
                return ("verdict", rid, self.verify(*args))
            if kind == "stats":
                return ("stats", rid, self.stats())
            return ("error", rid, f"unknown request {kind!r}")
        except Exception as e:  # one bad request must not end the worker
            self.counters["errors"] += 1
            self.last_error = f"{kind}: {e}"
            return ("error", rid, str(e))


def _child_main(conn: Any, config: dict, events: Any = None) -> None:
    # The parent stops the worker explicitly; Ctrl-C in a terminal reaches the whole process
    # group, and the worker must not die before the parent has finished with it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # run the finally: release the camera
    logging.basicConfig(level=logging.INFO, format="face-worker %(levelname)s %(message)s")
    try:
        worker = _Worker(config, events)
    except Exception as e:  # reported to start(), which raises it
        conn.send(("failed", f"{type(e).__name__}: {e}"))
        return
    try:
        conn.send(("ready", {"pid": os.getpid(), "model_load_s": worker.model_load_s, "rss_kb": _rss_kb()}))
        interval = config["observe_interval_s"]
        next_look = time.monotonic()
        while True:
            if conn.poll(max(0.0, next_look - time.monotonic())):
                conn.send(worker.handle(conn.recv()))
                continue
            next_look = time.monotonic() + interval
            try:
                worker.tick()
            except Exception as e:  # a bad frame must not end the worker
                worker.counters["errors"] += 1
                worker.last_error = f"look: {e}"
                log.warning("look failed: %s", e)
    except (EOFError, OSError, BrokenPipeError):
        pass  # the parent went away
    finally:
        worker.close()
