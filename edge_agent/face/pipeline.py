"""The 1:1 face pipeline: find the face on a small frame, encode it on the full one, compare.

Detection (dlib's HOG) costs grow with the pixel count, while the encoding is made from a
150x150 chip whatever the frame size. So faces are found on a copy `detect_width` pixels wide
(upsampled once inside dlib, which finds faces down to ~40 px of that copy), the boxes are
scaled back, and the 128-d encoding is computed on the full-resolution frame at that box.

Rules for choosing the face in front of the kiosk:
- no face -> NO_FACE;
- several faces -> the largest is used only if its area is at least `dominance` (2.0) times
  the next one's, i.e. the person at the kiosk clearly stands in front of someone behind;
  otherwise SEVERAL_FACES (scenes/two_people.jpg: area ratio 1.4 -> SEVERAL_FACES);
- the chosen face shorter than `min_face_fraction` (0.12) of the frame height -> TOO_FAR.
  The shared photos' faces are 0.14–0.55 of their frame heights (obama-240p.jpg: 62 px of
  240 = 0.26), so they all pass; a face under 0.12 of a 480-line camera is under 58 px, where
  the 150x150 chip is mostly interpolation.
  Note: with detect_width=320 and a 4:3 camera, HOG itself only sees faces from ~0.17 of the
  height, so on such cameras a small face mostly reads NO_FACE before TOO_FAR can apply.

face_recognition and dlib load lazily (their import loads ~100 MB of models), so importing
this module is cheap; the worker process pays once.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_agent.face.verdicts import (  # re-exported: the public face API lives here
    DEFAULT_THRESHOLD,
    FaceError,
    FaceObservation,
    FaceStatus,
    FaceVerdict,
    WorkerError,
)

__all__ = [
    "DEFAULT_THRESHOLD", "FaceError", "FaceObservation", "FaceStatus", "FaceVerdict", "WorkerError",
    "FacePipeline", "encode_photo", "naive_encode", "load_image", "ENCODING_MODEL",
]

Box = tuple[int, int, int, int]

# "small" (5 landmarks) vs "large" (68) measured on the shared photos with 320 px detection:
# the encoding costs the same (~60 ms, the ResNet dominates), and "small" separates better
# (genuine max 0.41 vs impostor min 0.78, against 0.43 / 0.76 for "large").
ENCODING_MODEL = "small"
# Jittered templates measured worse against the kiosk's unjittered probes (worst genuine pair
# 0.41 with 1 jitter, 0.44 with 5, 0.43 with 10; impostors unchanged at 0.75), so enrolment
# encodes exactly as the kiosk does.
ENROL_JITTERS = 1
ENROL_MAX_SIDE = 1600  # enrolment detection copy; phone photos (4000 px) would take seconds
ENROL_MIN_FACE_PX = 60  # below this the 150x150 chip is mostly interpolation

_fr: Any = None


def _face_recognition() -> Any:
    global _fr
    if _fr is None:
        import face_recognition  # loads the dlib models

        _fr = face_recognition
    return _fr


def load_models() -> None:
    """Load the models now (the worker calls this before saying it is ready)."""
    _face_recognition()


def _as_bgr(frame: Any) -> np.ndarray:
    if not isinstance(frame, np.ndarray) or frame.size == 0:
        raise FaceError(f"a frame must be a non-empty numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise FaceError(f"a frame must be 8-bit, got {frame.dtype}")
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.ndim == 3 and frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    if frame.ndim == 3 and frame.shape[2] == 3:
        return frame
    raise FaceError(f"a frame must be HxW, HxWx3 or HxWx4, got shape {frame.shape}")


def _rgb(frame_bgr: np.ndarray) -> np.ndarray:
    # dlib wants C-contiguous RGB; cvtColor returns a fresh contiguous array
    return cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)


def rgb_frame(frame: Any) -> np.ndarray:
    """A camera frame as the C-contiguous RGB array dlib takes (FaceError when it is no frame)."""
    return _rgb(_as_bgr(frame))


def _area(box: Box) -> int:
    top, right, bottom, left = box
    return max(0, bottom - top) * max(0, right - left)


def box_iou(a: Box, b: Box) -> float:
    top, right = max(a[0], b[0]), min(a[1], b[1])
    bottom, left = min(a[2], b[2]), max(a[3], b[3])
    inter = _area((top, right, bottom, left)) if bottom > top and right > left else 0
    union = _area(a) + _area(b) - inter
    return inter / union if union else 0.0


def _detect(frame_bgr: np.ndarray, width: int | None, max_pixels: int | None = None) -> list[Box]:
    """HOG boxes in full-frame pixels, largest first, on a copy at most `width` wide and, when
    given, at most `max_pixels` in area (HOG's cost follows the area: a portrait frame scaled to
    320 wide would cost twice a 4:3 one)."""
    h, w = frame_bgr.shape[:2]
    scale = 1.0
    small = frame_bgr
    if width and w > width:
        scale = width / w
    if max_pixels and w * h * scale * scale > max_pixels:
        scale = (max_pixels / (w * h)) ** 0.5
    if scale < 1.0:
        small = cv2.resize(frame_bgr, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    found = _face_recognition().face_locations(_rgb(small), number_of_times_to_upsample=1, model="hog")
    boxes = [
        (max(0, round(top / scale)), min(w, round(right / scale)), min(h, round(bottom / scale)), max(0, round(left / scale)))
        for top, right, bottom, left in found
    ]
    return sorted(boxes, key=_area, reverse=True)


def _validate_templates(templates: Sequence[Sequence[float]]) -> np.ndarray:
    rows = []
    for i, t in enumerate(templates):
        a = np.asarray(t, dtype=np.float64)
        if a.shape != (128,) or not np.all(np.isfinite(a)):
            raise FaceError(f"template {i} is not 128 finite numbers (shape {a.shape})")
        rows.append(a)
    return np.stack(rows) if rows else np.empty((0, 128))


class FacePipeline:
    def __init__(
        self,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        detect_width: int = 320,
        min_face_fraction: float = 0.12,
        dominance: float = 2.0,
    ) -> None:
        if not 0 < threshold < 2:
            raise FaceError(f"threshold must be between 0 and 2, got {threshold}")
        if detect_width < 80:
            raise FaceError(f"detect_width must be at least 80 px, got {detect_width}")
        self.threshold = threshold
        self.detect_width = detect_width
        self.min_face_fraction = min_face_fraction
        self.dominance = dominance

    def locate(self, frame_bgr: np.ndarray) -> FaceObservation:
        """Detection and the face rules only (cheap); an ok observation has encoding=None."""
        start = time.perf_counter()
        frame = _as_bgr(frame_bgr)
        h = frame.shape[0]
        # The pixel budget of a 4:3 copy `detect_width` wide: landscape frames are unaffected.
        boxes = _detect(frame, self.detect_width, self.detect_width * self.detect_width * 3 // 4)
        status: FaceStatus | None = None
        box = boxes[0] if boxes else None
        if not boxes:
            status = FaceStatus.NO_FACE
        elif len(boxes) > 1 and _area(boxes[0]) < self.dominance * _area(boxes[1]):
            status, box = FaceStatus.SEVERAL_FACES, None
        elif (boxes[0][2] - boxes[0][0]) < self.min_face_fraction * h:
            status = FaceStatus.TOO_FAR
        return FaceObservation(status, None, box, len(boxes), frame.shape[:2], time.perf_counter() - start)

    def encode(self, frame_bgr: np.ndarray, located: FaceObservation) -> FaceObservation:
        """Add the full-resolution encoding to an ok observation from `locate` on this frame."""
        if not located.ok or located.box is None:
            return located
        start = time.perf_counter()
        frame = _as_bgr(frame_bgr)
        encs = _face_recognition().face_encodings(_rgb(frame), known_face_locations=[located.box], num_jitters=1, model=ENCODING_MODEL)
        if not encs:
            return FaceObservation(FaceStatus.NO_FACE, None, None, 0, frame.shape[:2], located.elapsed_s)
        return FaceObservation(None, np.asarray(encs[0]), located.box, located.faces, frame.shape[:2], located.elapsed_s + time.perf_counter() - start)

    def observe(self, frame_bgr: np.ndarray) -> FaceObservation:
        return self.encode(frame_bgr, self.locate(frame_bgr))

    def verify(self, observation: FaceObservation, templates: Sequence[Sequence[float]], *, encoding_age_s: float = 0.0) -> FaceVerdict:
        """Compare an observation with the member's templates (elapsed_s includes the observation's)."""
        start = time.perf_counter()
        known = _validate_templates(templates)

        def verdict(status: FaceStatus, distance: float | None = None, age: float | None = None) -> FaceVerdict:
            return FaceVerdict(status, distance, self.threshold, observation.faces, observation.elapsed_s + time.perf_counter() - start, age)

        if not observation.ok:
            return verdict(observation.status)  # type: ignore[arg-type]
        if observation.encoding is None:
            raise FaceError("the observation has no encoding (use observe, or encode after locate)")
        if len(known) == 0:
            return verdict(FaceStatus.NO_TEMPLATE)
        distance = float(np.min(np.linalg.norm(known - observation.encoding, axis=1)))
        status = FaceStatus.MATCH if distance <= self.threshold else FaceStatus.NO_MATCH
        return verdict(status, distance, encoding_age_s)


def load_image(path: str | Path) -> np.ndarray:
    """A BGR image from a file, or FaceError saying why not."""
    p = Path(path)
    if not p.is_file():
        raise FaceError(f"{p}: no such file")
    image = cv2.imread(str(p), cv2.IMREAD_COLOR)  # applies the EXIF orientation
    if image is None:
        raise FaceError(f"{p}: not a readable image")
    return image


def encode_photo(path: str | Path, *, num_jitters: int = ENROL_JITTERS, role: str = "an enrolment photo") -> list[float]:
    """The enrolment template of a photo holding exactly one usable face; ``role`` names the photo in errors."""
    image = load_image(path)
    h, w = image.shape[:2]
    width = None if max(h, w) <= ENROL_MAX_SIDE else round(w * ENROL_MAX_SIDE / max(h, w))
    boxes = _detect(image, width)
    if not boxes:
        raise FaceError(f"{path}: no face found")
    if len(boxes) > 1:
        raise FaceError(f"{path}: {len(boxes)} faces found; {role} must show one person")
    top, _, bottom, _ = boxes[0]
    if bottom - top < ENROL_MIN_FACE_PX:
        raise FaceError(f"{path}: the face is {bottom - top} px tall; {role} needs one at least {ENROL_MIN_FACE_PX} px tall")
    encs = _face_recognition().face_encodings(_rgb(image), known_face_locations=boxes, num_jitters=num_jitters, model=ENCODING_MODEL)
    if not encs:
        raise FaceError(f"{path}: no face found")
    return [float(x) for x in encs[0]]


def naive_encode(frame_bgr: np.ndarray) -> list[np.ndarray]:
    """face_recognition's textbook way, for the benchmark: HOG and encodings on the full frame."""
    fr = _face_recognition()
    rgb = _rgb(_as_bgr(frame_bgr))
    return fr.face_encodings(rgb, fr.face_locations(rgb))
