"""The streamer's cost and how fast it rejoins after the media server returns.

Run: .venv/bin/python bench/stream.py [--seconds 20] [--outages 3] [--source file|lavfi]

What is measured, with real ffmpeg and a real nginx-rtmp on loopback ports
(central's API answering on_publish under uvicorn, as in production):
- cpu: the ffmpeg process's CPU time (utime + stime from /proc/<pid>/stat) over
  wall time while live, at the default profile (640x360, 15 fps, H.264 500 kb/s
  + AAC 64 kb/s) with the encoder chosen here (libx264 veryfast unless a V4L2
  hardware encoder answers). 1.0 = one whole core.
- rejoin: nginx is killed while live, left down for --down seconds, started
  again; the time from nginx listening again until ffmpeg's fifo has reconnected
  (push confirmed) and until the streamer reports 'live' (which waits settle_s
  more to be sure the publish was accepted).

Prints the figures, then ONE JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import uvicorn  # noqa: E402
from nacl.signing import SigningKey  # noqa: E402

from central import registry  # noqa: E402
from central.api import create_app  # noqa: E402
from central.api.routes.media import router as media_router  # noqa: E402
from central.media import MediaServer, media_secret, stream_key  # noqa: E402
from central.store import open_store  # noqa: E402
from contract import public_key_text  # noqa: E402
from edge_agent.streaming import Profile, Streamer, file_loop, lavfi_pattern  # noqa: E402
from hall.processes import free_port  # noqa: E402

CLIP = ROOT.parent / "shared" / "faces" / "scenes" / "short_hamilton_clip.mp4"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14, 15 of stat)


def wait(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise SystemExit(f"timed out after {timeout}s waiting for {what}")


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith(("model name", "Model")):
            return line.partition(":")[2].strip()
    return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="how long to measure CPU while live")
    ap.add_argument("--outages", type=int, default=3, help="media server kills to time the rejoin over")
    ap.add_argument("--down", type=float, default=4.0, help="seconds the media server stays down each time")
    ap.add_argument("--source", choices=("file", "lavfi"), default="file")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="hall-stream-bench-"))
    store = open_store(work / "central")
    secret = media_secret(work / "central")
    api_port = free_port()
    app = create_app(store=store, staff_token="bench-staff-token-0123456789")
    app.include_router(media_router)
    app.state.media_secret = secret
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=api_port, log_level="warning", lifespan="off"))
    threading.Thread(target=server.run, daemon=True).start()
    wait(lambda: server.started, 10, "central's API")
    media = MediaServer(work / "central", on_publish_url=f"http://127.0.0.1:{api_port}/media/on_publish",
                        rtmp_port=free_port(), http_port=free_port())
    media.start()
    device = registry.add_device(store, public_key_text(SigningKey.generate()), "H1")
    profile = Profile()
    source = file_loop(CLIP) if args.source == "file" else lavfi_pattern()
    streamer = Streamer(source=source, ingest_url=media.urls["hall_ingest"] + stream_key(secret, device),
                        recording_dir=work / "rec", quota_bytes=500_000_000, profile=profile)
    result: dict[str, object] = {}
    try:
        streamer.start()
        wait(lambda: streamer.state()["state"] == "live", 20, "live")
        time.sleep(2)  # past start-up (probe, first keyframes)
        pid = streamer.pid
        assert pid
        c0, t0 = cpu_seconds(pid), time.monotonic()
        time.sleep(args.seconds)
        c1, t1 = cpu_seconds(pid), time.monotonic()
        share = (c1 - c0) / (t1 - t0)
        st = streamer.state()
        print(f"host: {cpu_model()}, {os.cpu_count()} cores")
        print(f"profile: {profile.describe()}, encoder {st['encoder']}, source {st['source']}")
        print(f"ffmpeg CPU while live: {share:.3f} of one core ({share / (os.cpu_count() or 1):.1%} of this machine), "
              f"{st['fps']} fps, dropped {st['dropped_frames']}, recorded {st['recording']['bitrate_kbps']} kb/s (mpegts)")

        resumes, lives = [], []
        for n in range(args.outages):
            media.stop(kill=True)
            wait(lambda: streamer.state()["state"] != "live", 10, "the outage to show")
            time.sleep(args.down)
            media.start()
            back = time.monotonic()
            wait(lambda: streamer.state()["push_up_s"] is not None, 30, "the push to reconnect")
            resumes.append(time.monotonic() - streamer.state()["push_up_s"] - back)
            wait(lambda: streamer.state()["state"] == "live", 30, "live again")
            lives.append(time.monotonic() - back)
            print(f"outage {n + 1}: push reconnected {max(0.0, resumes[-1]):.2f} s after the server returned, "
                  f"'live' after {lives[-1]:.2f} s (restarts {streamer.restarts})")
            time.sleep(2)
        rec = streamer.state()["recording"]
        pi_low, pi_high = share * 5, share * 10
        print(f"local recording: {rec['segments']} segments, {rec['bytes']} bytes, nothing deleted: {rec['deleted_segments'] == 0}")
        print(f"Pi 4 estimate (Cortex-A72 5-10x slower at this work): libx264 veryfast at this profile ~{pi_low:.2f}-{pi_high:.2f} "
              f"of one A72 core (of 4); h264_v4l2m2m moves the encode to the VideoCore, leaving ffmpeg mostly scaling + AAC.")
        result = {
            "bench": "stream", "encoder": st["encoder"], "profile": profile.describe(), "source": st["source"],
            "host_cpu": cpu_model(), "cores": os.cpu_count(),
            "cpu_core_share": round(share, 4), "fps": st["fps"], "dropped_frames": st["dropped_frames"],
            "recorded_kbps": st["recording"]["bitrate_kbps"],
            "rejoin_push_s": [round(max(0.0, r), 2) for r in resumes], "rejoin_live_s": [round(x, 2) for x in lives],
            "rejoin_live_max_s": round(max(lives), 2) if lives else None,
            "restarts": streamer.restarts, "pi4_core_share_estimate": [round(pi_low, 2), round(pi_high, 2)],
        }
    finally:
        streamer.stop()
        media.stop()
        server.should_exit = True
        store.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
