"""Camera sources giving BGR numpy frames (OpenCV convention).

``open_camera(source)`` picks the kind from the source string:

    "0", "/dev/video0", "rtsp://...", "clip.mp4"  -> OpenCvCamera (a video file loops, paced to its fps)
    "folder:/path/to/photos"                      -> ImageFolderCamera (each image ``interval`` s, sorted)
    "still:/path/stage.jpg"                       -> StillCamera (re-read when the file is replaced)

The simulator puts a face in front of a StillCamera from another process with
``show_face(stage, photo)``; the file is replaced atomically, so a reader never
sees half an image. The stage may also hold a video (``show_face(stage, clip.mp4)``):
the StillCamera then plays it, looped at its own pace, until the stage is replaced;
a live person (edge_agent.face.liveness) cannot be a still.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from .errors import CameraError

log = logging.getLogger("hardware.camera")

VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


@runtime_checkable
class Camera(Protocol):
    def read(self) -> np.ndarray | None:
        """The latest frame (do not modify it in place), or None if none right now."""

    def release(self) -> None: ...


def _is_video_file(source: str) -> bool:
    return "://" not in source and not source.startswith("/dev/") and Path(source).is_file()


class OpenCvCamera:
    """cv2.VideoCapture read on a background thread that keeps only the newest
    frame, so a slow consumer never sees a stale buffered one. A video file is
    paced to its own fps and starts again at its end when ``loop`` is set."""

    def __init__(self, source: str | int, *, loop: bool = True, reopen_delay: float = 1.0):
        self.source = str(source)
        self.loop = loop
        self.reopen_delay = reopen_delay
        self.is_file = _is_video_file(self.source)
        self.frames_read = 0
        self._lock = threading.Lock()
        self._latest: np.ndarray | None = None
        self._stopping = threading.Event()
        self._cap = self._open()
        ok, frame = self._cap.read()
        if not ok or frame is None:
            self._cap.release()
            raise CameraError(f"camera: no frames from {self.source}")
        fps = self._cap.get(cv2.CAP_PROP_FPS) if self.is_file else 0.0
        self.fps = fps if 1.0 <= fps <= 240.0 else 25.0
        self._publish(frame)
        self._thread = threading.Thread(target=self._run, name=f"camera:{self.source}", daemon=True)
        self._thread.start()

    def _open(self) -> cv2.VideoCapture:
        target: str | int = int(self.source) if self.source.isdigit() else self.source
        cap = cv2.VideoCapture(target)
        if not cap.isOpened():
            cap.release()
            raise CameraError(f"camera: cannot open {self.source}")
        return cap

    def _publish(self, frame: np.ndarray | None) -> None:
        with self._lock:
            self._latest = frame
            if frame is not None:
                self.frames_read += 1

    def _run(self) -> None:
        period = 1.0 / self.fps
        next_at = time.monotonic() + period
        while not self._stopping.is_set():
            ok, frame = self._cap.read()
            if not ok or frame is None:
                if self.is_file and self.loop and self._rewind():
                    continue
                if self.is_file:
                    log.info("camera %s: end of file", self.source)
                    self._publish(None)
                    return
                self._publish(None)
                log.warning("camera %s: no frame; re-opening in %.1f s", self.source, self.reopen_delay)
                if self._stopping.wait(self.reopen_delay):
                    return
                self._reopen_live()
                continue
            if self.is_file:
                # A file decodes far faster than real time: show each frame at its moment.
                delay = next_at - time.monotonic()
                if delay > 0 and self._stopping.wait(delay):
                    return
                next_at = max(next_at + period, time.monotonic() - period)
            self._publish(frame)

    def _rewind(self) -> bool:
        if self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0):
            return True
        self._cap.release()
        try:
            self._cap = self._open()
        except CameraError as e:
            log.warning("%s", e)
            return False
        return True

    def _reopen_live(self) -> None:
        self._cap.release()
        try:
            self._cap = self._open()
        except CameraError as e:
            log.warning("%s", e)
            self._cap = cv2.VideoCapture()  # reads fail until the next attempt

    def read(self) -> np.ndarray | None:
        with self._lock:
            return self._latest

    def release(self) -> None:
        self._stopping.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5.0)
        self._cap.release()


def _imread(path: Path) -> np.ndarray | None:
    # imdecode (not imread) so that non-ASCII paths work and the file is read in one go.
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError:
        return None
    if data.size == 0:
        return None
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


class ImageFolderCamera:
    """Cycles through the images of a folder in name order, ``interval`` seconds each."""

    def __init__(self, folder: str | Path, *, interval: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise CameraError(f"camera: no folder {self.folder}")
        self.interval = interval
        self._clock = clock
        self._frames: list[np.ndarray] = []
        self.paths: list[Path] = []
        for path in sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            frame = _imread(path)
            if frame is None:
                log.warning("camera folder:%s: skipping unreadable %s", self.folder, path.name)
                continue
            self.paths.append(path)
            self._frames.append(frame)
        if not self._frames:
            raise CameraError(f"camera: no frames from folder {self.folder} (no readable images)")
        self._t0 = clock()

    def read(self) -> np.ndarray | None:
        i = int((self._clock() - self._t0) / self.interval) % len(self._frames)
        return self._frames[i].copy()

    def release(self) -> None:
        self._frames.clear()


class StillCamera:
    """Shows the image at ``path``, re-decoded whenever the file is replaced.
    A missing or empty file means an empty stage: read() returns None."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise CameraError(f"camera: no directory for the stage {self.path}")
        self._key: tuple | None = None
        self._frame: np.ndarray | None = None
        self._video: OpenCvCamera | None = None

    def read(self) -> np.ndarray | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._key, self._frame = None, None
            self._stop_video()
            return None
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if key != self._key:
            self._key = key
            self._stop_video()
            self._frame = _imread(self.path) if st.st_size else None
            if st.st_size and self._frame is None:
                self._video = self._open_video()
        if self._video is not None:
            return self._video.read()
        return None if self._frame is None else self._frame.copy()

    def _open_video(self) -> OpenCvCamera | None:
        """Not an image: a video on the stage? (The open file plays on when the stage is replaced.)"""
        try:
            return OpenCvCamera(str(self.path), loop=True)
        except CameraError:
            log.warning("camera still:%s: cannot decode the stage as an image or a video", self.path)
            return None

    def _stop_video(self) -> None:
        if self._video is not None:
            self._video.release()
            self._video = None

    def release(self) -> None:
        self._frame = None
        self._stop_video()


def _same_format(a: Path, b: Path) -> bool:
    alias = {".jpeg": ".jpg", ".tiff": ".tif"}
    return alias.get(a.suffix.lower(), a.suffix.lower()) == alias.get(b.suffix.lower(), b.suffix.lower())


def show_face(stage_path: str | Path, photo: str | Path | None) -> None:
    """Atomically put ``photo`` on the stage (or clear it for None/""), for a
    StillCamera in any process. The photo is copied byte for byte when it already
    has the stage's format, re-encoded otherwise; a video (VIDEO_SUFFIXES) is
    copied byte for byte and played by the StillCamera."""
    stage = Path(stage_path)
    if not stage.parent.is_dir():
        raise CameraError(f"camera: no directory for the stage {stage}")
    data = b""
    if photo and Path(photo).suffix.lower() in VIDEO_SUFFIXES:
        src = Path(photo)
        cap = cv2.VideoCapture(str(src))
        ok = cap.isOpened() and cap.read()[0]
        cap.release()
        if not ok:
            raise CameraError(f"camera: cannot read video {src}")
        data = src.read_bytes()
    elif photo:
        src = Path(photo)
        frame = _imread(src)
        if frame is None:
            raise CameraError(f"camera: cannot read image {src}")
        if _same_format(src, stage):
            data = src.read_bytes()
        else:
            ok, buf = cv2.imencode(stage.suffix or ".jpg", frame)
            if not ok:
                raise CameraError(f"camera: cannot encode {src} as {stage.suffix or '.jpg'}")
            data = buf.tobytes()
    fd, tmp = tempfile.mkstemp(prefix=f".{stage.name}.", suffix=".tmp", dir=stage.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide the stage from a kiosk running as another user
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, stage)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def open_camera(source: str, **kw) -> Camera:
    if source.startswith("folder:"):
        return ImageFolderCamera(source[len("folder:") :], **kw)
    if source.startswith("still:"):
        return StillCamera(source[len("still:") :], **kw)
    return OpenCvCamera(source, **kw)
