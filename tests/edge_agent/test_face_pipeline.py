"""The 1:1 pipeline on the shared photos, with the real face_recognition models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from contract.errors import HallError
from edge_agent.face.pipeline import (
    DEFAULT_THRESHOLD,
    FaceError,
    FacePipeline,
    FaceStatus,
    box_iou,
    encode_photo,
    load_image,
    naive_encode,
)


@pytest.fixture(scope="module")
def pipe() -> FacePipeline:
    return FacePipeline()


@pytest.fixture(scope="module")
def obama_template(faces_dir: Path) -> list[float]:
    return encode_photo(faces_dir / "obama" / "obama.jpg")


def test_same_person_matches(pipe, faces_dir, obama_template):
    obs = pipe.observe(load_image(faces_dir / "obama" / "obama2.jpg"))
    verdict = pipe.verify(obs, [obama_template])
    assert verdict.status is FaceStatus.MATCH
    assert verdict.distance < DEFAULT_THRESHOLD
    assert verdict.faces == 1 and verdict.encoding_age_s == 0.0 and verdict.elapsed_s > 0


def test_other_person_does_not_match(pipe, faces_dir, obama_template):
    verdict = pipe.verify(pipe.observe(load_image(faces_dir / "biden" / "biden.jpg")), [obama_template])
    assert verdict.status is FaceStatus.NO_MATCH
    assert verdict.distance > DEFAULT_THRESHOLD + 0.1


def test_best_of_several_templates_counts(pipe, faces_dir, obama_template):
    biden = encode_photo(faces_dir / "biden" / "biden2.jpg")
    verdict = pipe.verify(pipe.observe(load_image(faces_dir / "obama" / "obama2.jpg")), [biden, obama_template])
    assert verdict.status is FaceStatus.MATCH


def test_two_similar_faces_are_several_faces(pipe, faces_dir, obama_template):
    # the two faces' areas differ 1.4x, under the 2x dominance rule: nobody clearly stands in front
    obs = pipe.observe(load_image(faces_dir / "scenes" / "two_people.jpg"))
    assert obs.status is FaceStatus.SEVERAL_FACES and obs.faces == 2 and obs.encoding is None
    verdict = pipe.verify(obs, [obama_template])
    assert verdict.status is FaceStatus.SEVERAL_FACES and verdict.distance is None


def test_a_dominant_face_is_used_despite_others(faces_dir):
    lenient = FacePipeline(dominance=1.2)
    obs = lenient.observe(load_image(faces_dir / "scenes" / "two_people.jpg"))
    assert obs.ok and obs.faces == 2 and obs.encoding.shape == (128,)
    top, right, bottom, left = obs.box
    assert left > 400  # the larger face is the one on the right of the frame


def test_blank_frame_is_no_face(pipe, obama_template):
    obs = pipe.observe(np.full((480, 640, 3), 127, np.uint8))
    assert obs.status is FaceStatus.NO_FACE and obs.faces == 0
    assert pipe.verify(obs, [obama_template]).status is FaceStatus.NO_FACE


def _head(faces_dir: Path, height: int) -> np.ndarray:
    """obama.jpg cropped around the face, scaled so the face is about `height` px tall."""
    image = load_image(faces_dir / "obama" / "obama.jpg")
    top, right, bottom, left = 230, 650, 520, 370  # around the detected box, with margin
    crop = image[top - 80:bottom + 80, left - 80:right + 80]
    scale = height / (bottom - top)
    return cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def _canvas(head: np.ndarray, width: int, height: int) -> np.ndarray:
    canvas = np.full((height, width, 3), 200, np.uint8)
    canvas[100:100 + head.shape[0], 100:100 + head.shape[1]] = head
    return canvas


def test_small_face_in_a_tall_frame_is_too_far(pipe, faces_dir, obama_template):
    head = _head(faces_dir, 200)
    far = pipe.observe(_canvas(head, 640, 2400))
    assert far.status is FaceStatus.TOO_FAR and far.encoding is None
    assert pipe.verify(far, [obama_template]).status is FaceStatus.TOO_FAR
    near = pipe.observe(_canvas(head, 640, 800))  # same face pixels, a fraction the rule accepts
    assert pipe.verify(near, [obama_template]).status is FaceStatus.MATCH


def test_low_resolution_photo_still_verifies(pipe, faces_dir, obama_template):
    verdict = pipe.verify(pipe.observe(load_image(faces_dir / "obama" / "obama-240p.jpg")), [obama_template])
    assert verdict.status is FaceStatus.MATCH


def test_small_detection_finds_the_same_face_as_full_resolution(pipe, faces_dir):
    frame = load_image(faces_dir / "obama" / "obama2.jpg")
    obs = pipe.observe(frame)
    naive = naive_encode(frame)
    assert len(naive) == 1
    assert np.linalg.norm(obs.encoding - naive[0]) < 0.1


def test_no_templates_is_no_template(pipe, faces_dir):
    obs = pipe.observe(load_image(faces_dir / "obama" / "obama2.jpg"))
    assert pipe.verify(obs, []).status is FaceStatus.NO_TEMPLATE


def test_malformed_template_is_refused(pipe, faces_dir, obama_template):
    obs = pipe.observe(load_image(faces_dir / "obama" / "obama2.jpg"))
    with pytest.raises(FaceError, match="template 1"):
        pipe.verify(obs, [obama_template, [0.1] * 64])
    with pytest.raises(FaceError, match="8-bit"):
        pipe.observe(np.zeros((10, 10, 3), np.float32))


def test_grey_frames_are_accepted(pipe, faces_dir, obama_template):
    grey = cv2.cvtColor(load_image(faces_dir / "obama" / "obama2.jpg"), cv2.COLOR_BGR2GRAY)
    assert pipe.verify(pipe.observe(grey), [obama_template]).status is FaceStatus.MATCH


def test_enrolment_refuses_photos_without_exactly_one_face(faces_dir, tmp_path):
    blank = tmp_path / "blank.jpg"
    cv2.imwrite(str(blank), np.full((300, 300, 3), 90, np.uint8))
    with pytest.raises(FaceError, match="no face found"):
        encode_photo(blank)
    with pytest.raises(FaceError, match="2 faces found"):
        encode_photo(faces_dir / "scenes" / "two_people.jpg")
    with pytest.raises(FaceError, match="no such file"):
        encode_photo(tmp_path / "missing.jpg")
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(FaceError, match="not a readable image"):
        encode_photo(tmp_path / "notes.jpg")


def test_enrolment_template_is_128_floats(obama_template):
    assert len(obama_template) == 128 and all(isinstance(x, float) for x in obama_template)


def test_face_error_is_a_hall_error_and_a_value_error():
    assert issubclass(FaceError, HallError) and issubclass(FaceError, ValueError)


def test_box_iou():
    assert box_iou((0, 10, 10, 0), (0, 10, 10, 0)) == 1.0
    assert box_iou((0, 10, 10, 0), (20, 30, 30, 20)) == 0.0
    assert box_iou((0, 10, 10, 0), (0, 15, 10, 5)) == pytest.approx(1 / 3)


def test_the_kiosk_side_imports_no_face_models():
    code = ("import sys, edge_agent.face, edge_agent.face.worker, edge_agent.face.verdicts;"
            "bad = [m for m in ('dlib', 'face_recognition', 'cv2') if m in sys.modules];"
            "print(bad); sys.exit(1 if bad else 0)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
