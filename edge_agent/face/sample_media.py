"""Media to show the camera in the demo, the tests and bench/liveness.py: a live person and spoofs.

Why here and not under tests/: the demo (`hall sim tap --face live`), the end-to-end tests and
the bench all need the same live clip and the same spoofs, and they must be made alike everywhere
for the bench's figures to speak for the tests. Nothing in the kiosk imports this module.

- `live_clip_segment(faces_dir, out_dir)`: the close-up of one man singing, cut from the shared
  clip scenes/short_hamilton_clip.mp4 (640x360, 29.97 fps). Its shots, by HOG on every 5th
  frame: 0-0.5 s a wide shot with a 43-52 px face, 0.7-2.8 s the audience (no face found),
  2.84-7.0 s the close-up (a 90-108 px face turning, singing, blinking), then wide shots again.
  The segment is frames CLOSE_UP_FRAMES (4.87-7.0 s) played forward then backward (4.2 s), so
  that a looped stage has no cut where the face would jump (a new track, its evidence lost);
  cached in out_dir.
- `live_member_photo(faces_dir, out_dir)`: one frame of that segment as a JPEG, to enrol him.
- `spoof_video(photo, out, kind)`: a still photo as an attacker would show it: held and moved
  (kind "moved": translated, rotated, zoomed over time), tilted like a printed photo turned in
  the hand ("tilted": a perspective warp swinging +-35 degrees), on a phone ("phone": a dark
  bezel, a slight blur and moire, moved), or just held still ("still").
Every spoof frame is the photo through a homography, which is exactly what a flat picture
can do in front of a camera; edge_agent.face.liveness must refuse them all.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from .verdicts import FaceError

LIVE_CLIP = Path("scenes") / "short_hamilton_clip.mp4"
# [first, end) at 29.97 fps: the close-up (2.84-7.0 s) without its cuts, from 4.87 s: before it, frames
# 106 and 142-144 are over 0.5 from his enrolment frame, and a stage restarted at each tap shows those first
CLOSE_UP_FRAMES = (146, 210)
# 5.87 s: enrolled from this frame, 95 % of the whole close-up's frames (as the kiosk encodes them)
# are within 0.5 of him, the rest within 0.53 (a stage performance at 640x360: blur, singing,
# turning), and all of the segment's but 142-144 (cut off); frame 150 reached only 52 %.
MEMBER_FRAME = 176
SPOOF_KINDS = ("still", "moved", "tilted", "phone")
FOURCC = "mp4v"  # OpenCV writes it without an external encoder; OpenCV and ffmpeg read it


def _write_atomic(out: Path, write) -> Path:
    """Write through a temporary file in out's folder, so a cache never holds half a file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=out.suffix, dir=out.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def _open_live_clip(faces_dir: Path) -> cv2.VideoCapture:
    clip = Path(faces_dir) / LIVE_CLIP
    cap = cv2.VideoCapture(str(clip))
    if not clip.is_file() or not cap.isOpened():
        cap.release()
        raise FaceError(f"{clip}: the shared live clip is missing or unreadable")
    return cap


def live_clip_segment(faces_dir: str | Path, out_dir: str | Path) -> Path:
    """The close-up segment of the shared clip as an mp4 in out_dir (made once, then cached)."""
    out = Path(out_dir) / "live-close-up.mp4"
    if out.is_file() and out.stat().st_size > 0:
        return out

    def write(tmp: Path) -> None:
        cap = _open_live_clip(Path(faces_dir))
        try:
            fps = cap.get(cv2.CAP_PROP_FPS) or 29.97
            cap.set(cv2.CAP_PROP_POS_FRAMES, CLOSE_UP_FRAMES[0])
            frames = []
            for _ in range(CLOSE_UP_FRAMES[1] - CLOSE_UP_FRAMES[0]):
                ok, frame = cap.read()
                if not ok:
                    raise FaceError(f"the live clip ended before frame {CLOSE_UP_FRAMES[1]}")
                frames.append(frame)
            writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*FOURCC), fps, frames[0].shape[1::-1])
            for frame in frames + frames[-2:0:-1]:  # ~45 MB for these 64 frames of 640x360, briefly
                writer.write(frame)
            writer.release()
        finally:
            cap.release()

    return _write_atomic(out, write)


def live_member_photo(faces_dir: str | Path, out_dir: str | Path) -> Path:
    """One frame of the close-up as a JPEG, to enrol the man of the live clip (cached)."""
    out = Path(out_dir) / "live-member.jpg"
    if out.is_file() and out.stat().st_size > 0:
        return out

    def write(tmp: Path) -> None:
        cap = _open_live_clip(Path(faces_dir))
        try:
            cap.set(cv2.CAP_PROP_POS_FRAMES, MEMBER_FRAME)
            ok, frame = cap.read()
        finally:
            cap.release()
        if not ok or not cv2.imwrite(str(tmp), frame, [cv2.IMWRITE_JPEG_QUALITY, 95]):
            raise FaceError(f"cannot save frame {MEMBER_FRAME} of the live clip")

    return _write_atomic(out, write)


def _tilt(w: int, h: int, angle: float, focal: float) -> np.ndarray:
    """The homography of a w x h picture turned by `angle` (rad) about its vertical axis, seen
    by a pinhole of `focal` px: what a hand tilting a printed photo shows the camera."""
    corners = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    moved = []
    for x, y in corners:
        dx, dy = x - w / 2, y - h / 2
        z = focal + dx * math.sin(angle)
        moved.append([w / 2 + dx * math.cos(angle) * focal / z, h / 2 + dy * focal / z])
    return cv2.getPerspectiveTransform(corners, np.float32(moved))


def _phone(photo: np.ndarray) -> np.ndarray:
    """The photo on a phone: slightly soft, with a screen's moire, inside a dark bezel."""
    h, w = photo.shape[:2]
    screen = cv2.GaussianBlur(photo, (3, 3), 0).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    screen *= (1.0 + 0.06 * np.sin(xx * 0.9 + yy * 0.35))[..., None]  # the pixel grid beating with the camera's
    bezel = max(12, w // 12)
    out = np.full((h + 2 * bezel, w + 2 * bezel, 3), 18, np.float32)
    out[bezel:bezel + h, bezel:bezel + w] = screen
    return np.clip(out, 0, 255).astype(np.uint8)


def spoof_frames(photo_bgr: np.ndarray, kind: str, *, seconds: float = 3.0, fps: float = 15.0,
                 size: tuple[int, int] = (640, 480)):
    """The frames of a spoof video (generator): the photo held in front of a 640x480 camera."""
    if kind not in SPOOF_KINDS:
        raise FaceError(f"unknown spoof kind {kind!r}: one of {', '.join(SPOOF_KINDS)}")
    picture = _phone(photo_bgr) if kind == "phone" else cv2.copyMakeBorder(
        photo_bgr, 10, 10, 10, 10, cv2.BORDER_CONSTANT, value=(245, 245, 245))  # a print's white margin
    ph, pw = picture.shape[:2]
    cw, ch = size
    base = 0.8 * min(cw / pw, ch / ph)  # the picture fills most of the view, as held up to a kiosk
    wall = np.full((ch, cw, 3), (170, 180, 185), np.uint8)
    n = max(2, round(seconds * fps))
    for i in range(n):
        t = i / fps
        if kind == "still":
            angle, scale, shift, tilt = 0.0, 1.0, (0.0, 0.0), 0.0
        else:
            # slow, hand-like motion: a few degrees of roll, +-10 % zoom, tens of pixels of shift
            angle = 8.0 * math.sin(2 * math.pi * t / 2.3)
            scale = 1.0 + 0.1 * math.sin(2 * math.pi * t / 1.9)
            shift = (30 * math.sin(2 * math.pi * t / 2.9), 20 * math.sin(2 * math.pi * t / 2.1))
            tilt = math.radians(35) * math.sin(2 * math.pi * t / 2.5) if kind == "tilted" else 0.0
        h_tilt = _tilt(pw, ph, tilt, focal=1.5 * max(pw, ph))
        to_centre = np.array([[1, 0, -pw / 2], [0, 1, -ph / 2], [0, 0, 1]], np.float64)
        rot = cv2.getRotationMatrix2D((0, 0), angle, base * scale)
        place = np.vstack([rot, [0, 0, 1]])
        place[0, 2] += cw / 2 + shift[0]
        place[1, 2] += ch / 2 + shift[1]
        m = place @ to_centre @ h_tilt
        frame = wall.copy()
        cv2.warpPerspective(picture, m, (cw, ch), dst=frame, borderMode=cv2.BORDER_TRANSPARENT)
        yield frame


def spoof_video(photo: str | Path, out: str | Path, kind: str, *, seconds: float = 3.0, fps: float = 15.0) -> Path:
    """Write the spoof video of `photo` (see spoof_frames) to `out` (.mp4)."""
    image = cv2.imread(str(photo), cv2.IMREAD_COLOR)
    if image is None:
        raise FaceError(f"{photo}: not a readable image")

    def write(tmp: Path) -> None:
        writer = None
        for frame in spoof_frames(image, kind, seconds=seconds, fps=fps):
            if writer is None:
                writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*FOURCC), fps, frame.shape[1::-1])
            writer.write(frame)
        writer.release()

    return _write_atomic(Path(out), write)
