"""`hall sim` and the demo's simulated hardware rig: clear answers for bad input, an empty scene for --face none."""

from __future__ import annotations

import json

import httpx
import pytest
from click.testing import CliRunner

from edge_agent.face.pipeline import FaceError, encode_photo
from hall.cli import main
from hall.sim_rig import SimRig
from hardware.camera import StillCamera


@pytest.fixture
def rig(tmp_path):
    r = SimRig(stage_path=tmp_path / "camera-stage.jpg")
    r.start()
    url = r.serve_control(0)
    yield r, url
    r.stop()


def sim(*args: str):
    return CliRunner().invoke(main, ["sim", *args])


def test_a_missing_photo_is_reported_as_missing_before_anything_is_sent(tmp_path):
    missing = tmp_path / "missing.jpg"
    result = sim("tap", "--card", "04A1B2C3D4E5F6", "--face", str(missing), "--control", "http://127.0.0.1:9")
    assert result.exit_code == 2
    assert f"no photo at {missing}" in result.stderr and "cannot reach" not in result.stderr


def test_the_rig_answers_a_photo_it_cannot_show_with_a_clear_error(rig, tmp_path):
    _, url = rig
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("hello")
    result = sim("tap", "--card", "04A1B2C3D4E5F6", "--face", str(not_an_image), "--control", url)
    assert result.exit_code == 2
    assert "cannot read image" in result.stderr and "cannot reach" not in result.stderr, result.stderr
    # straight to the control endpoint, as another client might: still an answer, never a dropped connection
    reply = httpx.post(url + "/tap", json={"card": "04A1B2C3D4E5F6", "face": str(tmp_path / "gone.jpg")}, timeout=10)
    assert reply.status_code == 400 and "no photo at" in reply.json()["error"]
    assert httpx.post(url + "/tap", content=b"{not json", timeout=10).status_code == 400
    assert httpx.post(url + "/tap", content=b"x" * 100_000, timeout=10).status_code == 413


def test_face_none_shows_an_empty_scene_a_frame_with_no_face(rig):
    r, url = rig
    result = sim("tap", "--card", "04A1B2C3D4E5F6", "--face", "none", "--control", url)
    assert result.exit_code == 0, result.output
    frame = StillCamera(r.stage_path).read()
    assert frame is not None, "an empty scene is a working camera looking at nobody"
    with pytest.raises(FaceError, match="no face found"):
        encode_photo(r.stage_path)
    assert json.loads(result.stdout)["face"] == "none"


def test_face_off_simulates_a_camera_that_gives_no_frames(rig):
    r, url = rig
    assert sim("tap", "--card", "04A1B2C3D4E5F6", "--face", "off", "--control", url).exit_code == 0
    assert StillCamera(r.stage_path).read() is None


def test_help_describes_none_and_off():
    shown = " ".join(CliRunner().invoke(main, ["sim", "tap", "--help"]).output.split())
    assert "'none' for an empty scene" in shown and "'off' for a camera that gives no frames" in shown
    assert "'live' for the shared clip's live man" in shown


def test_face_live_plays_the_live_man_on_the_stage(rig, faces_dir, tmp_path, monkeypatch):
    # With liveness on, only a moving live face checks in: the stage plays the shared clip's close-up.
    import time

    import numpy as np

    r, url = rig
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HALL_FACES_DIR", str(faces_dir))
    result = sim("tap", "--card", "04A1B2C3D4E5F6", "--face", "live", "--control", url)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["face"].endswith("live-close-up.mp4")
    camera = StillCamera(r.stage_path)
    try:
        first = camera.read()
        assert first is not None
        deadline = time.monotonic() + 10
        while np.array_equal(camera.read(), first) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not np.array_equal(camera.read(), first), "the stage shows a still, not the live clip"
    finally:
        camera.release()
