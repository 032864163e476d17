"""Liveness over the test media: does the live man pass, is every photo refused?

Run: .venv/bin/python bench/liveness.py [--out var/bench-liveness]
Needs the shared face photos (HALL_FACES_DIR, default ../shared/faces).

Media, each judged as the kiosk's worker judges (edge_agent.face.liveness.evaluate: one look
every 0.2 s, the face tracked, the best 3 s window):
- live: the demo's live segment (edge_agent.face.sample_media.live_clip_segment), whole, and as
  separate trials the sliding 1.5 s windows (every 0.5 s) of the shared clip's whole close-up
  (frames 88-210, 2.94-7.0 s): a member who stands in front of the camera for 1.5 s;
- spoof: every shared still (11 photos) as a still, and as generated videos of it moved
  (shift, roll, zoom), tilted (perspective swing) and shown on a phone (3 s each).
Prints per medium its verdict and evidence, the live-acceptance and spoof-refusal rates with
their counts, the landmark cost per look, and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402

from edge_agent.face import liveness  # noqa: E402
from edge_agent.face.sample_media import LIVE_CLIP, live_clip_segment, spoof_video  # noqa: E402
from hall import demo_data  # noqa: E402

WINDOW_S, STEP_S = 1.5, 0.5
WHOLE_CLOSE_UP = (88, 210)  # frames of the shared clip: the close-up between its cuts
SPOOFS = ("moved", "tilted", "phone")


def video_frames(path: Path) -> tuple[list, float]:
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames, fps


def judge(name: str, kind: str, frames, fps: float, rows: list[dict]) -> None:
    t0 = time.perf_counter()
    result = liveness.evaluate(frames, fps=fps)
    result.pop("thresholds")
    rows.append({"medium": name, "kind": kind, **result, "seconds": round(time.perf_counter() - t0, 2)})
    r = rows[-1]
    print(f"  {kind:6s} {name:42s} live={str(r['live']):5s} motion={r['motion']:.4f} blinks={r['blinks']} "
          f"frames={r['frames']:2d} faces_seen={r['faces_seen']:2d}/{r['looks']:2d} tracks={r['tracks']}")


def rate(rows: list[dict], want_live: bool) -> dict:
    judged = [r for r in rows if r["faces_seen"]]
    right = sum(1 for r in judged if r["live"] is want_live)
    return {"rate": round(right / len(judged), 3) if judged else None, "right": right, "of": len(judged),
            "without_a_face": len(rows) - len(judged)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "bench-liveness", help="where the media are written")
    args = parser.parse_args()
    faces = demo_data.faces_dir()
    if not (faces / "obama" / "obama.jpg").exists():
        sys.exit(f"bench: face photos not found in {faces} (set HALL_FACES_DIR)")
    args.out.mkdir(parents=True, exist_ok=True)

    live_rows: list[dict] = []
    print("live (the shared clip's close-up):")
    clip = live_clip_segment(faces, args.out)
    frames, fps = video_frames(clip)
    judge(clip.name, "live", frames, fps, live_rows)
    forward = video_frames(faces / LIVE_CLIP)[0][WHOLE_CLOSE_UP[0]:WHOLE_CLOSE_UP[1]]
    size, step = round(WINDOW_S * fps), round(STEP_S * fps)
    for start in range(0, len(forward) - size + 1, step):
        at = (WHOLE_CLOSE_UP[0] + start) / fps
        judge(f"{LIVE_CLIP.name}[{at:.1f}-{at + size / fps:.1f} s]", "live", forward[start:start + size], fps, live_rows)

    spoof_rows: list[dict] = []
    print("spoofs (the shared stills):")
    stills = sorted(p for p in faces.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg") and p.parent.name != "scenes")
    for photo in stills:
        name = f"{photo.parent.name}/{photo.name}"
        image = cv2.imread(str(photo))
        judge(name, "still", [image] * 15, 5.0, spoof_rows)  # 3 s of the same photo
        for kind in SPOOFS:
            video = spoof_video(photo, args.out / f"{photo.parent.name}-{photo.stem}-{kind}.mp4", kind)
            vframes, vfps = video_frames(video)
            judge(name, kind, vframes, vfps, spoof_rows)

    costs = [r["cost_ms_per_look"] for r in live_rows + spoof_rows if r["cost_ms_per_look"] is not None]
    result = {
        "live_acceptance": rate(live_rows, True),
        "spoof_refusal": rate(spoof_rows, False),
        "spoof_refusal_by_kind": {k: rate([r for r in spoof_rows if r["kind"] == k], False) for k in ("still", *SPOOFS)},
        "live_motion_min": min(r["motion"] for r in live_rows if r["faces_seen"]),
        "spoof_motion_max": max(r["motion"] for r in spoof_rows if r["faces_seen"]),
        "liveness_ms_per_look_median": sorted(costs)[len(costs) // 2] if costs else None,
        "thresholds": liveness.evaluate([], fps=5.0)["thresholds"],
    }
    la, sr = result["live_acceptance"], result["spoof_refusal"]
    print(f"live acceptance: {la['right']}/{la['of']} ({la['rate']}); spoof refusal: {sr['right']}/{sr['of']} ({sr['rate']}), "
          f"{sr['without_a_face']} spoofs showed no usable face at all")
    print(f"motion: live min {result['live_motion_min']:.4f}, spoof max {result['spoof_motion_max']:.4f}, "
          f"threshold {liveness.MOTION_LIVE}; liveness cost {result['liveness_ms_per_look_median']} ms per look (median)")
    print(json.dumps(result))
    sys.exit(0 if sr["right"] == sr["of"] else 1)


if __name__ == "__main__":
    main()
