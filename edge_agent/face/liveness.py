"""Evidence that the face in front of the camera is a live person, not a photo or a screen.

The worker looks at the camera every 0.2 s and tracks the face; for the tracked face it fits
dlib's 68-point landmarks on the box it already found (face_recognition loads that model at
import anyway, pose_predictor_68_point, 99.7 MB on disk) and feeds them to a `LivenessTrack`:

- Non-planar motion. A printed photo or a phone screen is a plane: however a hand shifts,
  turns, zooms or tilts it, the landmarks of two frames are related by a homography (8 DoF)
  up to the landmark fit's jitter. A real head turning, a mouth singing or speaking, eyes
  closing are not. For each new frame, the plain least-squares homography to every earlier
  frame of the window is fitted on the 68 points, and its RMS residual is divided by the
  inter-ocular distance; `motion` is the MOTION_QUANTILE of those residuals over the window.
- Blinks. The eye aspect ratio (Soukupova & Cech 2016, EAR = (|p2-p6| + |p3-p5|) / 2|p1-p4|)
  is computed on eye points first mapped by the homography that best fits the rest of the face
  onto the track's first frame, so a photo tilted towards or away from the camera (which
  flattens its eyes as well as everything else) does not blink. A blink: the mean EAR of both
  eyes at or under BLINK_CLOSED times the track's open-eye EAR (its median), then back over
  BLINK_OPEN times it.

A track is live when, within the last `window_s` (3 s), it showed a blink, or a motion at or
over MOTION_LIVE over at least MIN_FRAMES looks spanning MIN_SPAN_S. Thresholds measured by bench/liveness.py (see
docs/DESIGN.md "Liveness" for the figures).

The measure is carried in FaceVerdict.liveness / Proof.liveness as a short string:
"v=1;live=1;blinks=1;motion=0.0421;frames=12" (v the format's version; live 1/0; blinks seen
in the window; motion as above; frames the looks of the track in the window), at most 80 chars.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

# bench/liveness.py over the live close-up (every 1.5 s window) and 3 spoofs x 11 photos: the median
# residual of a window is 0.088-0.119 for the live man, 0.016-0.063 for the spoofs (the highest a
# small, soft phone-screen face); 0.075 sits between, nearer the live side's floor.
MOTION_LIVE = 0.075
MOTION_QUANTILE = 0.5  # the median pair: one bad landmark fit must not make a photo live
MIN_FRAMES = 4  # looks of the track in the window before motion alone may say live
MIN_SPAN_S = 0.6  # ... spanning at least this long
MIN_PAIR_S = 0.15  # residuals between looks at least this far apart: the worker looks every 0.2 s, and
# every 0.05 s while a tap waits (for blinks); a head moves little in 0.05 s, which would dilute the median
# A closed eye's EAR is about a third of an open one's; the spoofs' landmark jitter alone took the
# (rectified) EAR down to 0.68 of its median, so a blink must go under 0.6 of it and come back.
BLINK_CLOSED = 0.6
BLINK_OPEN = 0.85
WINDOW_S = 3.0
MAX_FRAMES = 30  # looks kept per track (3 s at 0.1 s; while a tap waits they come every ~0.05 s)
MAX_PAIRS = 8  # a look's residuals against at most this many earlier looks: ~50 us each here
FORMAT_VERSION = 1

LEFT_EYE, RIGHT_EYE = slice(36, 42), slice(42, 48)
_NOT_EYES = np.r_[0:36, 48:68]


def landmarks(rgb: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The 68 landmarks (x, y) of the face in `box` (top, right, bottom, left) of an RGB frame."""
    import dlib
    import face_recognition.api as fr_api

    top, right, bottom, left = box
    shape = fr_api.pose_predictor_68_point(rgb, dlib.rectangle(int(left), int(top), int(right), int(bottom)))
    return np.array([(p.x, p.y) for p in shape.parts()], np.float64)


def inter_ocular(points: np.ndarray) -> float:
    return float(np.linalg.norm(points[LEFT_EYE].mean(0) - points[RIGHT_EYE].mean(0)))


def eye_aspect_ratio(eye: np.ndarray) -> float:
    p1, p2, p3, p4, p5, p6 = eye
    return float((np.linalg.norm(p2 - p6) + np.linalg.norm(p3 - p5)) / (2.0 * max(np.linalg.norm(p1 - p4), 1e-6)))


def planar_residual(a: np.ndarray, b: np.ndarray) -> float:
    """RMS distance between b and a mapped by the best homography a -> b, over b's inter-ocular distance."""
    h, _ = cv2.findHomography(a, b, 0)
    if h is None:
        return 0.0
    mapped = cv2.perspectiveTransform(a.reshape(-1, 1, 2), h).reshape(-1, 2)
    return float(np.sqrt(np.mean(np.sum((mapped - b) ** 2, axis=1))) / max(inter_ocular(b), 1e-6))


def rectified_ear(points: np.ndarray, reference: np.ndarray) -> float:
    """Mean EAR of both eyes after mapping the face (without its eyes) onto the reference frame's."""
    h, _ = cv2.findHomography(points[_NOT_EYES], reference[_NOT_EYES], 0)
    if h is not None:
        points = cv2.perspectiveTransform(points.reshape(-1, 1, 2), h).reshape(-1, 2)
    return (eye_aspect_ratio(points[LEFT_EYE]) + eye_aspect_ratio(points[RIGHT_EYE])) / 2.0


@dataclass(frozen=True)
class Evidence:
    live: bool
    blinks: int
    motion: float
    frames: int

    def measure(self) -> str:
        """The short string for FaceVerdict.liveness / Proof.liveness (module docstring)."""
        return f"v={FORMAT_VERSION};live={int(self.live)};blinks={self.blinks};motion={self.motion:.4f};frames={self.frames}"

    def to_dict(self) -> dict:
        return {"live": self.live, "blinks": self.blinks, "motion": round(self.motion, 4), "frames": self.frames}


@dataclass
class _Frame:
    t: float
    points: np.ndarray
    ear: float
    residuals: list[tuple[float, float]]  # (time of an earlier frame of the window, residual to it)


class LivenessTrack:
    """The evidence of one tracked face. `add` each look's landmarks; `evidence` over the window."""

    def __init__(self, window_s: float = WINDOW_S) -> None:
        self.window_s = window_s
        self.frames: deque[_Frame] = deque(maxlen=MAX_FRAMES)
        self.reference: np.ndarray | None = None
        self.blink_times: list[float] = []
        self._ears: deque[float] = deque(maxlen=50)
        self._closed_since: float | None = None
        self.live_at: float | None = None  # when the track was last seen live (evidence() sets it)

    def add(self, points: np.ndarray, t: float | None = None) -> None:
        t = time.time() if t is None else t
        if self.reference is None:
            self.reference = points
        while self.frames and t - self.frames[0].t > self.window_s:
            self.frames.popleft()
        ear = rectified_ear(points, self.reference)
        earlier = [f for f in self.frames if t - f.t >= MIN_PAIR_S]
        earlier = earlier[::-(-len(earlier) // MAX_PAIRS)] if earlier else earlier  # spread over the window
        residuals = [(f.t, planar_residual(f.points, points)) for f in earlier]
        self.frames.append(_Frame(t, points, ear, residuals))
        self._ears.append(ear)
        open_ear = float(np.median(self._ears))
        if len(self._ears) >= 3 and ear <= BLINK_CLOSED * open_ear:
            if self._closed_since is None:
                self._closed_since = t
        elif self._closed_since is not None and ear >= BLINK_OPEN * open_ear:
            self.blink_times.append(t)
            self._closed_since = None
        self.blink_times = [b for b in self.blink_times if t - b <= self.window_s]

    def evidence(self, now: float | None = None) -> Evidence:
        now = time.time() if now is None else now
        frames = [f for f in self.frames if now - f.t <= self.window_s]
        oldest = frames[0].t if frames else now
        residuals = [r for f in frames for t, r in f.residuals if t >= oldest]
        motion = float(np.quantile(residuals, MOTION_QUANTILE)) if residuals else 0.0
        blinks = sum(1 for b in self.blink_times if now - b <= self.window_s)
        span = frames[-1].t - frames[0].t if frames else 0.0
        live = blinks > 0 or (len(frames) >= MIN_FRAMES and span >= MIN_SPAN_S and motion >= MOTION_LIVE)
        if live:
            self.live_at = now
        return Evidence(live, blinks, motion, len(frames))


def evaluate(frames: Any, *, fps: float, look_interval_s: float = 0.2, detect_width: int = 320) -> dict:
    """Liveness of a video or an image sequence as the worker would see it: one look every
    `look_interval_s` of the media's time, the largest usable face tracked as the worker does.
    `frames` yields BGR frames at `fps`. Returns the evidence over the whole media's best window."""
    from edge_agent.face.pipeline import FacePipeline, box_iou

    pipe = FacePipeline(detect_width=detect_width)
    track: LivenessTrack | None = None
    previous = None
    best: Evidence | None = None
    looks = faces = tracks = 0
    cost = 0.0
    step = max(1, round(fps * look_interval_s))
    for i, frame in enumerate(frames):
        if i % step:
            continue
        t = i / fps
        looks += 1
        obs = pipe.locate(frame)
        if not obs.ok:
            previous = None
            continue
        faces += 1
        if previous is None or previous.frame_shape != obs.frame_shape or box_iou(previous.box, obs.box) < 0.3:
            track, tracks = LivenessTrack(), tracks + 1
        previous = obs
        start = time.perf_counter()
        track.add(landmarks(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), obs.box), t)
        ev = track.evidence(t)
        cost += time.perf_counter() - start
        if best is None or (ev.live, ev.blinks, ev.motion) > (best.live, best.blinks, best.motion):
            best = ev
    best = best or Evidence(False, 0, 0.0, 0)
    return {**best.to_dict(), "looks": looks, "faces_seen": faces, "tracks": tracks,
            "cost_ms_per_look": round(1000 * cost / faces, 3) if faces else None,
            "thresholds": {"motion_live": MOTION_LIVE, "motion_quantile": MOTION_QUANTILE, "min_frames": MIN_FRAMES,
                           "min_span_s": MIN_SPAN_S,
                           "blink_closed": BLINK_CLOSED, "blink_open": BLINK_OPEN, "window_s": WINDOW_S}}


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def open_media(path: str | Path, look_interval_s: float = 0.2) -> tuple[list[Any] | Any, float]:
    """(frames, fps) of a video file, or of a folder's images in name order (one look each), for
    `evaluate`. FaceError with the reason when there is nothing to look at."""
    from edge_agent.face.verdicts import FaceError

    p = Path(path)
    if p.is_dir():
        frames = []
        for image in sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES):
            frame = cv2.imread(str(image), cv2.IMREAD_COLOR)
            if frame is None:
                raise FaceError(f"{image}: not a readable image")
            frames.append(frame)
        if not frames:
            raise FaceError(f"{p}: no images in the folder")
        return frames, 1.0 / look_interval_s
    if not p.is_file():
        raise FaceError(f"{p}: no such file or folder")
    cap = cv2.VideoCapture(str(p))
    ok, first = cap.read() if cap.isOpened() else (False, None)
    if not ok:
        cap.release()
        raise FaceError(f"{p}: not a readable video (no frames)")
    fps = cap.get(cv2.CAP_PROP_FPS)
    fps = fps if 1.0 <= fps <= 240.0 else 25.0

    def frames():
        try:
            yield first
            while True:
                ok, frame = cap.read()
                if not ok:
                    return
                yield frame
        finally:
            cap.release()

    return frames(), fps
