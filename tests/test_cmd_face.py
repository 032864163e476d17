"""`hall face compare` through click's CliRunner, on the shared photos."""

from __future__ import annotations

import json

import cv2
import numpy as np
from click.testing import CliRunner

from hall.cli import main


def run(*args: str):
    return CliRunner().invoke(main, ["face", "compare", *args])


def test_same_person_exits_0_with_the_distance(faces_dir):
    result = run(str(faces_dir / "obama" / "obama.jpg"), str(faces_dir / "obama" / "obama2.jpg"))
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["match"] is True and 0 < out["distance"] <= out["threshold"]


def test_other_person_exits_1(faces_dir):
    result = run(str(faces_dir / "obama" / "obama.jpg"), str(faces_dir / "biden" / "biden.jpg"))
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    assert out["match"] is False and out["distance"] > out["threshold"]


def test_threshold_option_decides(faces_dir):
    args = (str(faces_dir / "obama" / "obama.jpg"), str(faces_dir / "obama" / "obama2.jpg"))
    strict = run(*args, "--threshold", "0.05")
    assert strict.exit_code == 1 and json.loads(strict.stdout)["threshold"] == 0.05
    assert run(*args, "--threshold", "-1").exit_code == 2


def test_bad_input_exits_2_with_the_reason(faces_dir, tmp_path):
    obama = str(faces_dir / "obama" / "obama.jpg")
    missing = run(obama, str(tmp_path / "nobody.jpg"))
    assert missing.exit_code == 2 and "no such file" in missing.stderr and missing.stdout == ""
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.zeros((200, 200, 3), np.uint8))
    no_face = run(str(blank), obama)
    assert no_face.exit_code == 2 and "no face found" in no_face.stderr
    (tmp_path / "text.jpg").write_text("hello")
    assert run(obama, str(tmp_path / "text.jpg")).exit_code == 2
    group = run(obama, str(faces_dir / "scenes" / "two_people.jpg"))
    assert group.exit_code == 2 and "2 faces found" in group.stderr
    assert "the probe photo must show one person" in group.stderr and "enrolment" not in group.stderr, group.stderr
    enrolled_group = run(str(faces_dir / "scenes" / "two_people.jpg"), obama)
    assert "the enrolled photo must show one person" in enrolled_group.stderr, enrolled_group.stderr


def test_help_lists_compare():
    result = CliRunner().invoke(main, ["face", "--help"])
    assert result.exit_code == 0 and "compare" in result.output


def liveness(*args: str):
    return CliRunner().invoke(main, ["face", "liveness", *args])


def test_liveness_of_the_live_clip_exits_0(faces_dir, tmp_path):
    from edge_agent.face.sample_media import live_clip_segment

    result = liveness(str(live_clip_segment(faces_dir, tmp_path)))
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["live"] is True and out["motion"] >= out["thresholds"]["motion_live"] and out["faces_seen"] > 5


def test_liveness_of_a_folder_of_one_still_exits_1(faces_dir, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    photo = cv2.imread(str(faces_dir / "obama" / "obama2.jpg"))
    for i in range(8):  # 1.6 s of the same photo
        cv2.imwrite(str(folder / f"{i:03d}.jpg"), photo)
    result = liveness(str(folder))
    assert result.exit_code == 1, result.output
    out = json.loads(result.stdout)
    assert out["live"] is False and out["faces_seen"] == 8 and out["motion"] < out["thresholds"]["motion_live"]


def test_liveness_of_bad_input_exits_2_with_the_reason(tmp_path):
    missing = liveness(str(tmp_path / "nothing.mp4"))
    assert missing.exit_code == 2 and "no such file" in missing.stderr
    garbage = tmp_path / "clip.mp4"
    garbage.write_bytes(b"not a video")
    unreadable = liveness(str(garbage))
    assert unreadable.exit_code == 2 and "not a readable video" in unreadable.stderr
    (tmp_path / "empty").mkdir()
    empty = liveness(str(tmp_path / "empty"))
    assert empty.exit_code == 2 and "no images" in empty.stderr
