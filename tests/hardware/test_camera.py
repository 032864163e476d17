"""Camera sources on real files: the shared photos and clip, and videos written here."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from hardware.camera import Camera, ImageFolderCamera, OpenCvCamera, StillCamera, open_camera, show_face
from hardware.errors import CameraError, HardwareError


def write_video(path: Path, frames: int, fps: float = 20.0) -> None:
    """Frame i is a flat grey of level 20*i, so a frame tells where in the video it was."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (64, 48))
    assert writer.isOpened()
    for i in range(frames):
        writer.write(np.full((48, 64, 3), 20 * i, np.uint8))
    writer.release()


def test_video_file_is_paced_to_its_fps(faces_dir):
    cam = open_camera(str(faces_dir / "scenes" / "short_hamilton_clip.mp4"))
    try:
        assert isinstance(cam, OpenCvCamera) and isinstance(cam, Camera)
        frame = cam.read()
        assert frame is not None and frame.shape == (360, 640, 3) and frame.dtype == np.uint8
        start = cam.frames_read
        time.sleep(0.5)
        # 29.97 fps: ~15 frames in 0.5 s, where decoding flat out would give the whole clip (275).
        assert 8 <= cam.frames_read - start <= 25
    finally:
        cam.release()


def test_short_video_loops(tmp_path):
    clip = tmp_path / "clip.avi"
    write_video(clip, frames=6, fps=20)  # 0.3 s
    cam = OpenCvCamera(str(clip), loop=True)
    try:
        levels = set()
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            frame = cam.read()
            assert frame is not None
            levels.add(round(float(frame.mean()) / 20))
            time.sleep(0.01)
        assert cam.frames_read >= 10  # past the 6 frames of the file: it started over
        assert {0, 5} <= levels
    finally:
        cam.release()


def test_video_without_loop_ends_with_no_frame(tmp_path):
    clip = tmp_path / "clip.avi"
    write_video(clip, frames=4, fps=20)
    cam = OpenCvCamera(str(clip), loop=False)
    try:
        assert cam.read() is not None
        time.sleep(0.5)
        assert cam.read() is None
    finally:
        cam.release()


@pytest.mark.parametrize("source", ["/dev/video9", "7", "rtsp://127.0.0.1:1/none"])
def test_unopenable_sources_raise_camera_error(source):
    with pytest.raises(CameraError, match="camera: (cannot open|no frames from)"):
        open_camera(source)


def test_file_that_is_not_a_video_raises(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 10)
    with pytest.raises(HardwareError, match=f"camera: .*{junk}"):
        open_camera(str(junk))


def test_image_folder_cycles_in_name_order(faces_dir):
    now = [0.0]
    cam = open_camera(f"folder:{faces_dir / 'obama'}", interval=2.0, clock=lambda: now[0])
    assert isinstance(cam, ImageFolderCamera)
    assert [p.name for p in cam.paths] == ["obama-240p.jpg", "obama-480p.jpg", "obama.jpg", "obama2.jpg"]
    shapes = []
    for t in (0.0, 1.9, 2.0, 4.0, 6.0, 8.0):
        now[0] = t
        shapes.append(cam.read().shape)
    expected = [cv2.imread(str(p)).shape for p in cam.paths]
    assert shapes == [expected[0], expected[0], expected[1], expected[2], expected[3], expected[0]]


def test_image_folder_without_images_raises(tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    with pytest.raises(CameraError, match="no frames from folder"):
        ImageFolderCamera(tmp_path)


def test_still_camera_follows_show_face_from_another_process(tmp_path, faces_dir):
    stage = tmp_path / "stage.jpg"
    cam = open_camera(f"still:{stage}")
    assert isinstance(cam, StillCamera)
    assert cam.read() is None  # empty stage

    obama = faces_dir / "obama" / "obama-240p.jpg"
    code = "import sys; from hardware.camera import show_face; show_face(sys.argv[1], sys.argv[2])"
    subprocess.run([sys.executable, "-c", code, str(stage), str(obama)], check=True, timeout=60)
    frame = cam.read()
    assert frame is not None and np.array_equal(frame, cv2.imread(str(obama)))
    assert stage.read_bytes() == obama.read_bytes()  # same format: copied, not re-encoded

    show_face(stage, faces_dir / "biden" / "biden.jpg")
    assert cam.read().shape == cv2.imread(str(faces_dir / "biden" / "biden.jpg")).shape

    show_face(stage, None)
    assert cam.read() is None
    assert [p.name for p in tmp_path.iterdir()] == ["stage.jpg"]  # no temporary files left


def test_show_face_converts_to_the_stage_format(tmp_path, faces_dir):
    stage = tmp_path / "stage.png"
    show_face(stage, faces_dir / "obama" / "obama-240p.jpg")
    assert stage.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert StillCamera(stage).read().shape == cv2.imread(str(faces_dir / "obama" / "obama-240p.jpg")).shape


def test_show_face_refuses_what_is_not_an_image(tmp_path):
    bad = tmp_path / "x.jpg"
    bad.write_text("hello")
    with pytest.raises(CameraError, match="cannot read image"):
        show_face(tmp_path / "stage.jpg", bad)
    assert not (tmp_path / "stage.jpg").exists()


def test_frames_returned_are_safe_to_modify(faces_dir):
    cam = ImageFolderCamera(faces_dir / "biden")
    first = cam.read()
    first[:] = 0
    assert cam.read().any()


def test_a_video_on_the_stage_plays_looped_and_a_photo_replaces_it(tmp_path, faces_dir):
    # The demo's live person is a video: a still can never show liveness.
    from edge_agent.face.sample_media import live_clip_segment

    clip = live_clip_segment(faces_dir, tmp_path)
    stage = tmp_path / "stage.jpg"
    show_face(stage, clip)
    cam = StillCamera(stage)
    try:
        first = cam.read()
        assert first is not None and first.shape == (360, 640, 3)
        deadline = time.monotonic() + 10
        while np.array_equal(cam.read(), first) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not np.array_equal(cam.read(), first), "the video on the stage does not move"
        show_face(stage, faces_dir / "obama" / "obama.jpg")
        assert cam.read().shape == cv2.imread(str(faces_dir / "obama" / "obama.jpg")).shape
    finally:
        cam.release()


def test_show_face_refuses_a_video_it_cannot_read(tmp_path):
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(CameraError, match="cannot read video"):
        show_face(tmp_path / "stage.jpg", bad)
