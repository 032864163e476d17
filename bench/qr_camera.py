"""Which decoder reads a CCCD's QR held up to the kiosk camera: OpenCV's QRCodeDetector or zxing-cpp.

CCCD-like payloads (hardware.cccd's format, Vietnamese text in UTF-8) are rendered with OpenCV's
QRCodeEncoder and pasted into real 640x480 frames (the photos under HALL_FACES_DIR, default
../shared/faces) at several sizes and tilts, with and without a perspective (card held at an
angle), blur and sensor noise. For each decoder: read rate overall and per size, ms per frame
with a QR and per frame without one (the cost a look pays when nobody shows a QR). Ends with one
JSON line.

    .venv/bin/python bench/qr_camera.py [--frames 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_agent.face.qr import QrDecoder  # noqa: E402
from hardware.cccd import Cccd  # noqa: E402

SIZES = (60, 80, 100, 140, 200)
TILTS = (0, 10, 20, 30)
NAMES = ("Nguyễn Văn An", "Trần Thị Bích Ngọc", "Lê Hoàng Phúc", "Phạm Thị Hồng Nhung")


def payload(i: int) -> str:
    return Cccd(id_number=f"0010{90 + i % 10:02d}{123456 + i:06d}"[:12], old_id_number=f"{123456789 + i:09d}",
                full_name=NAMES[i % len(NAMES)], date_of_birth=dt.date(1990, 1 + i % 12, 1 + i % 28),
                sex="Nam", address=f"Số {i} Phố Huế, Hai Bà Trưng, Hà Nội",
                issue_date=dt.date(2021, 5, 10)).to_qr_text()


def render(text: str) -> np.ndarray:
    img = cv2.QRCodeEncoder.create().encode(text)  # modules at 1 px, with its quiet zone
    return img


def frames(faces_dir: Path, n: int) -> list[np.ndarray]:
    paths = sorted(p for p in faces_dir.rglob("*.jpg") if "scenes" not in p.parts)
    out = []
    for p in paths:
        img = cv2.imread(str(p))
        if img is None:
            continue
        out.append(cv2.resize(img, (640, 480), interpolation=cv2.INTER_AREA))
        if len(out) >= n:
            break
    if not out:
        sys.exit(f"no photos under {faces_dir} (set HALL_FACES_DIR)")
    return out


def paste(frame: np.ndarray, qr: np.ndarray, side: int, tilt: float, perspective: bool, rng) -> np.ndarray:
    h, w = qr.shape
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    half = side / 2
    corners = np.float32([[-half, -half], [half, -half], [half, half], [-half, half]])
    if perspective:  # the card turned away at the top: the far edge shorter
        corners[0, 0] *= 0.75
        corners[1, 0] *= 0.75
        corners[:2, 1] *= 0.9
    a = math.radians(tilt)
    rot = np.float32([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    margin = int(side * 0.75) + 2
    cx, cy = rng.integers(margin, 640 - margin), rng.integers(margin, 480 - margin)
    dst = corners @ rot.T + np.float32([cx, cy])
    m = cv2.getPerspectiveTransform(src, dst)
    warped = cv2.warpPerspective(qr, m, (640, 480), flags=cv2.INTER_LINEAR, borderValue=0)
    mask = cv2.warpPerspective(np.full_like(qr, 255), m, (640, 480), flags=cv2.INTER_NEAREST, borderValue=0)
    out = frame.copy()
    shade = (warped.astype(np.float32) * 0.8 + 30).astype(np.uint8)  # paper under room light, not pure white
    out[mask > 0] = cv2.cvtColor(shade, cv2.COLOR_GRAY2BGR)[mask > 0]
    return out


def degrade(img: np.ndarray, blur: float, noise: float, rng) -> np.ndarray:
    if blur:
        img = cv2.GaussianBlur(img, (0, 0), blur)
    if noise:
        img = np.clip(img.astype(np.float32) + rng.normal(0, noise, img.shape), 0, 255).astype(np.uint8)
    return img


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=3, help="background photos to use")
    ap.add_argument("--faces-dir", default=os.environ.get("HALL_FACES_DIR", str(ROOT.parent / "shared" / "faces")))
    args = ap.parse_args()
    rng = np.random.default_rng(9)
    backgrounds = frames(Path(args.faces_dir), args.frames)
    cases = []
    i = 0
    for bg in backgrounds:
        for side in SIZES:
            for tilt in TILTS:
                for persp in (False, True):
                    for blur, noise in ((0, 0), (1.0, 6)):
                        text = payload(i)
                        img = degrade(paste(bg, render(text), side, tilt, persp, rng), blur, noise, rng)
                        cases.append((text, side, tilt, persp, blur > 0, img))
                        i += 1
    decoders = {"opencv": QrDecoder("opencv"), "zxing": QrDecoder("zxing")}
    report: dict = {"cases": len(cases), "frame": "640x480", "decoders": {}}
    for name, dec in decoders.items():
        per_size: dict[int, list[int]] = {s: [0, 0] for s in SIZES}
        per_tilt: dict[int, list[int]] = {t: [0, 0] for t in TILTS}
        hits, wrong, spent = 0, 0, 0.0
        for text, side, tilt, _persp, _blurred, img in cases:
            t = time.perf_counter()
            got = dec.decode(img)
            spent += time.perf_counter() - t
            ok = text in got
            wrong += any(g != text for g in got)
            hits += ok
            per_size[side][0] += ok
            per_size[side][1] += 1
            per_tilt[tilt][0] += ok
            per_tilt[tilt][1] += 1
        empty = 0.0
        for _ in range(5):
            for bg in backgrounds:
                t = time.perf_counter()
                dec.decode(bg)
                empty += time.perf_counter() - t
        r = {"read_rate": round(hits / len(cases), 3), "wrong_texts": wrong,
             "ms_per_frame_with_qr": round(1000 * spent / len(cases), 2),
             "ms_per_look_without_qr": round(1000 * empty / (5 * len(backgrounds)), 2),
             "read_rate_by_side_px": {s: round(a / b, 2) for s, (a, b) in per_size.items()},
             "read_rate_by_tilt_deg": {t: round(a / b, 2) for t, (a, b) in per_tilt.items()}}
        report["decoders"][name] = r
        print(f"{name:7s} read {r['read_rate']:.1%}  {r['ms_per_frame_with_qr']} ms/frame with QR, "
              f"{r['ms_per_look_without_qr']} ms/look without; by side {r['read_rate_by_side_px']}; "
              f"by tilt {r['read_rate_by_tilt_deg']}; wrong texts {wrong}")
    best = max(report["decoders"], key=lambda k: (report["decoders"][k]["read_rate"],
                                                  -report["decoders"][k]["ms_per_frame_with_qr"]))
    report["chosen"] = best
    print(json.dumps(report, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
