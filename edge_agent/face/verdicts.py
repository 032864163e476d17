"""Face verification results and errors: light types the kiosk imports without the models.

Importing this module (and `edge_agent.face.worker`) never loads dlib or face_recognition:
the models live only in the worker process, so the kiosk service stays small.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from contract.errors import HallError

DEFAULT_THRESHOLD: float = 0.5
"""Face distance at or under which two faces are the same person.

Measured by bench/face_threshold.py on the shared photos (5 people, 11 photos), with
templates made as enrolment makes them (`encode_photo`, full resolution) and probes made as
the kiosk makes them (`FacePipeline.observe`, HOG on 320 px, "small" landmarks), 18 genuine
and 92 impostor pairs: same person 0.06–0.41, different people 0.75 and up. 0.5 sits 0.09
above the worst genuine pair and 0.25 under the closest impostor (the gap's midpoint is 0.58).
It is stricter than face_recognition's usual 0.6 on purpose: a false reject costs a secretary's
PIN, a false accept is an impersonation, and dlib's model is known to separate East-Asian faces
less well than these five (mostly Western) people show.
"""


class FaceStatus(str, Enum):
    MATCH = "match"
    NO_MATCH = "no_match"
    NO_FACE = "no_face"
    SEVERAL_FACES = "several_faces"
    TOO_FAR = "too_far"
    NO_CAMERA = "no_camera"
    NO_TEMPLATE = "no_template"
    NOT_LIVE = "not_live"  # a face, but no evidence of a live person (a photo or a screen): edge_agent.face.liveness


class FaceError(HallError, ValueError):
    """A photo, frame or template cannot be used for face verification (the reason says why)."""


class WorkerError(HallError, RuntimeError):
    """The face worker process is not running, died, or did not answer in time."""


@dataclass(frozen=True)
class FaceObservation:
    """What one frame shows.

    `status` is None when the frame holds one usable face ("ok": `encoding` and `box` set,
    unless the observation came from `FacePipeline.locate`, which skips the encoding);
    otherwise it is NO_FACE, SEVERAL_FACES or TOO_FAR and `encoding` is None.
    """

    status: FaceStatus | None
    encoding: np.ndarray | None
    box: tuple[int, int, int, int] | None  # top, right, bottom, left in full-frame pixels
    faces: int
    frame_shape: tuple[int, int] = (0, 0)  # height, width of the frame looked at
    elapsed_s: float = 0.0  # time spent on this frame (detection, plus encoding when done)

    @property
    def ok(self) -> bool:
        return self.status is None


@dataclass(frozen=True)
class FaceVerdict:
    status: FaceStatus
    distance: float | None  # best (minimum) distance to the member's templates
    threshold: float
    faces: int
    elapsed_s: float  # time spent producing this verdict
    encoding_age_s: float | None  # age of the encoding used; 0 if computed for this request
    liveness: str | None = None  # the liveness measure behind the verdict (goes into Proof.liveness); None when not checked

    @property
    def matched(self) -> bool:
        return self.status is FaceStatus.MATCH

    def to_dict(self) -> dict:
        return {
            "status": self.status.value,
            "distance": self.distance,
            "threshold": self.threshold,
            "faces": self.faces,
            "elapsed_s": self.elapsed_s,
            "encoding_age_s": self.encoding_age_s,
            "liveness": self.liveness,
        }

    @classmethod
    def from_dict(cls, d: dict) -> FaceVerdict:
        return cls(
            status=FaceStatus(d["status"]),
            distance=d["distance"],
            threshold=d["threshold"],
            faces=d["faces"],
            elapsed_s=d["elapsed_s"],
            encoding_age_s=d["encoding_age_s"],
            liveness=d.get("liveness"),
        )
