"""The face worker process with a real StillCamera stage and the real models."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_agent.face.pipeline import encode_photo, load_image
from edge_agent.face.verdicts import FaceError, FaceStatus, WorkerError
from edge_agent.face.worker import FaceWorker, WorkerRestarting
from hardware.camera import show_face


@pytest.fixture(scope="module")
def templates(faces_dir: Path) -> dict[str, list[list[float]]]:
    return {"obama": [encode_photo(faces_dir / "obama" / "obama.jpg")],
            "biden": [encode_photo(faces_dir / "biden" / "biden2.jpg")]}


@pytest.fixture(scope="module")
def stage(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("stage") / "stage.jpg"


@pytest.fixture(scope="module")
def worker(stage: Path):
    w = FaceWorker(camera_source=f"still:{stage}", observe_interval_s=0.1, fresh_window_s=1.0, liveness=False)
    w.start(timeout=60)
    yield w
    w.stop()
    assert not w.alive


def wait_pre_encoded(worker: FaceWorker, since: int, timeout: float = 10.0) -> None:
    """Until the worker's own loop has encoded a face at least once more than `since`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.stats()["encodings"] > since:
            return
        time.sleep(0.05)
    raise AssertionError("the worker never encoded the face on the stage")


def test_member_in_front_matches_from_the_pre_encoding(worker, stage, faces_dir, templates):
    before = worker.stats()["encodings"]
    show_face(stage, faces_dir / "obama" / "obama2.jpg")
    wait_pre_encoded(worker, before)
    hits = worker.stats()["cache_hits"]
    verdict = worker.verify(templates["obama"])
    assert verdict.status is FaceStatus.MATCH
    assert 0 < verdict.encoding_age_s <= 1.0  # the tap used the encoding made before it
    assert worker.stats()["cache_hits"] == hits + 1
    again = worker.verify(templates["obama"])  # one encoding answers one tap
    assert again.status is FaceStatus.MATCH and again.encoding_age_s == 0.0


def test_next_member_is_not_judged_by_the_previous_face(worker, stage, faces_dir, templates):
    show_face(stage, faces_dir / "obama" / "obama2.jpg")
    wait_pre_encoded(worker, worker.stats()["encodings"])
    show_face(stage, faces_dir / "biden" / "biden.jpg")
    verdict = worker.verify(templates["obama"])  # at once: the obama encoding is still "fresh"
    assert verdict.status is FaceStatus.NO_MATCH
    assert worker.verify(templates["biden"]).status is FaceStatus.MATCH


def _same_framing(faces_dir: Path, person: str, photo: str, tmp: Path) -> Path:
    """The person's face pasted at a fixed place and size on a fixed canvas."""
    image = load_image(faces_dir / person / photo)
    from edge_agent.face.pipeline import FacePipeline

    top, right, bottom, left = FacePipeline().locate(image).box
    m = (bottom - top) // 2
    head = image[max(0, top - m):bottom + m, max(0, left - m):right + m]
    canvas = np.full((720, 960, 3), 180, np.uint8)
    canvas[100:500, 300:700] = cv2.resize(head, (400, 400), interpolation=cv2.INTER_AREA)
    path = tmp / f"{person}.jpg"
    cv2.imwrite(str(path), canvas)
    return path


def test_not_before_refuses_an_encoding_older_than_the_change(worker, stage, faces_dir, templates, tmp_path):
    # Two stills framed alike can swap in one instant, which no tracking can see:
    # whoever knows when the person changed passes not_before.
    obama, biden = (_same_framing(faces_dir, p, f, tmp_path) for p, f in (("obama", "obama2.jpg"), ("biden", "biden.jpg")))
    show_face(stage, obama)
    wait_pre_encoded(worker, worker.stats()["encodings"])
    changed = time.time()
    show_face(stage, biden)
    verdict = worker.verify(templates["obama"], not_before=changed)
    assert verdict.status is FaceStatus.NO_MATCH and verdict.encoding_age_s == 0.0


def test_empty_stage_is_no_camera(worker, stage, templates):
    show_face(stage, None)
    assert worker.verify(templates["obama"]).status is FaceStatus.NO_CAMERA


def test_several_faces_and_no_templates(worker, stage, faces_dir, templates):
    show_face(stage, faces_dir / "scenes" / "two_people.jpg")
    assert worker.verify(templates["obama"]).status is FaceStatus.SEVERAL_FACES
    assert worker.verify([]).status is FaceStatus.NO_TEMPLATE


def test_bad_templates_are_refused_and_the_worker_lives_on(worker, stage, faces_dir, templates):
    show_face(stage, faces_dir / "obama" / "obama2.jpg")
    with pytest.raises(FaceError, match="128"):
        worker.verify([[0.5] * 12])
    with pytest.raises(FaceError, match="numbers"):
        worker.verify([["x"] * 128])
    assert worker.verify(templates["obama"]).status is FaceStatus.MATCH


def test_concurrent_taps_each_get_their_verdict(worker, stage, faces_dir, templates):
    show_face(stage, faces_dir / "obama" / "obama2.jpg")
    results: dict[str, FaceStatus] = {}

    def tap(who: str) -> None:
        results[who] = worker.verify(templates[who]).status

    threads = [threading.Thread(target=tap, args=(who,)) for who in ("obama", "biden") * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == {"obama": FaceStatus.MATCH, "biden": FaceStatus.NO_MATCH}


def test_stats_report_the_process(worker):
    stats = worker.stats()
    assert stats["alive"] and stats["pid"] == worker.pid != os.getpid()
    assert stats["frames_read"] > 0 and stats["looks"] > 0 and stats["rss_kb"] > 0


def test_a_killed_worker_is_reported_and_restarts_by_itself(worker, stage, faces_dir, templates):
    # (tests/edge_agent/test_face_supervision.py covers the budget and what the member and /healthz see)
    old = worker.pid
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while worker.alive and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(WorkerRestarting, match=r"face worker restarting \(attempt 1\)"):
        worker.verify(templates["obama"])
    assert worker.stats()["alive"] is False and worker.fault == "face worker restarting (attempt 1)"
    show_face(stage, faces_dir / "obama" / "obama2.jpg")
    deadline = time.monotonic() + 60
    while not worker.alive and time.monotonic() < deadline:  # restarted by its supervisor, not by us
        time.sleep(0.05)
    assert worker.pid != old and worker.verify(templates["obama"]).status is FaceStatus.MATCH
    assert worker.fault is None


def test_a_camera_that_cannot_open_fails_start_with_the_reason(tmp_path):
    w = FaceWorker(camera_source=str(tmp_path / "missing.mp4"))
    with pytest.raises(WorkerError, match="cannot open"):
        w.start(timeout=60)
    assert not w.alive


def test_presence_tells_the_parent_when_a_face_appears_and_leaves(tmp_path, faces_dir):
    # The idle screen asks "Mời đồng chí nhìn vào camera" while the camera sees nobody.
    stage = tmp_path / "stage.jpg"
    scene = np.full((480, 640, 3), (205, 215, 220), np.uint8)  # an empty hall: no face
    cv2.imwrite(str(tmp_path / "empty.jpg"), scene)
    show_face(stage, tmp_path / "empty.jpg")
    seen: list[bool] = []
    changed = threading.Condition()

    def on_presence(value: bool) -> None:
        with changed:
            seen.append(value)
            changed.notify_all()

    def wait_for(expected: list[bool]) -> None:
        with changed:
            assert changed.wait_for(lambda: seen == expected, timeout=30), seen

    w = FaceWorker(camera_source=f"still:{stage}", observe_interval_s=0.1, on_presence=on_presence)
    w.start(timeout=60)
    try:
        wait_for([False])
        show_face(stage, faces_dir / "obama" / "obama2.jpg")
        wait_for([False, True])
        show_face(stage, tmp_path / "empty.jpg")
        wait_for([False, True, False])
        looks = w.stats()["looks"]
        while w.stats()["looks"] < looks + 5:  # several more looks at the empty hall: no repeat
            time.sleep(0.05)
        assert seen == [False, True, False]
    finally:
        w.stop()
