"""The streamer's supervision and local recording, with real ffmpeg (no media server needed)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from edge_agent.streaming import SW_ENCODER, Profile, Source, Streamer, choose_encoder, lavfi_pattern
from tests.stream import probe, require_media_tools, segment_times, wait_until

SMALL = Profile(width=320, height=180, fps=10, video_kbps=200, audio_kbps=32)


@pytest.fixture(autouse=True)
def _tools():
    require_media_tools(nginx=False)


def test_without_hardware_encoder_libx264_is_chosen():
    # Debian's ffmpeg lists h264_v4l2m2m even on x86; only a trial encode tells whether it works.
    if any(Path(f"/dev/video{n}").exists() for n in (10, 11, 12)):
        pytest.skip("a V4L2 mem2mem device exists here")
    assert choose_encoder() == SW_ENCODER


def test_killed_ffmpeg_is_restarted_with_backoff_and_the_recording_continues(tmp_path):
    s = Streamer(source=lavfi_pattern(size="320x180", fps=10), ingest_url=None, recording_dir=tmp_path, quota_bytes=50_000_000,
                 profile=SMALL, segment_s=1, backoff_initial_s=0.5)
    s.start()
    try:
        first = wait_until(lambda: s.pid, 10, "ffmpeg to start")
        wait_until(lambda: s.state()["frames"], 10, "first frames")
        assert s.state()["state"] == "recording-only"
        before = len(list(tmp_path.glob("*.ts")))
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: s.state()["pid"] is None, 5, "the kill to be noticed")
        t_killed = time.monotonic()
        second = wait_until(lambda: s.pid if s.pid not in (None, first) else None, 10, "a new ffmpeg")
        assert time.monotonic() - t_killed >= 0.4, "restarted without backoff"
        st = s.state()
        assert st["restarts"] == 1 and st["last_exit"] == "ffmpeg exited with code -9"
        wait_until(lambda: len(list(tmp_path.glob("*.ts"))) >= before + 2, 10, "new segments after the restart")
        assert second != first
    finally:
        s.stop()
    assert s.state()["state"] == "stopped" and s.pid is None


def test_a_source_that_fails_at_once_does_not_loop_hot(tmp_path):
    broken = Source(("-f", "lavfi", "-i", "no_such_filter_here"), ("0:v:0",), "broken")
    s = Streamer(source=broken, ingest_url=None, recording_dir=tmp_path, quota_bytes=10**6,
                 backoff_initial_s=0.1, max_restarts=3, restart_window_s=30)
    began = time.monotonic()
    s.start()
    wait_until(lambda: s.state()["state"] == "stopped", 15, "the supervisor to give up")
    elapsed = time.monotonic() - began
    st = s.state()
    assert st["restarts"] == 3, st
    assert elapsed >= 0.1 + 0.2 + 0.4, "backoff not applied"
    assert "gave up" in st["detail"] and "no_such_filter_here" in st["detail"], st["detail"]
    assert any("no_such_filter_here" in line for line in st["stderr_tail"])
    time.sleep(0.5)
    assert s.state()["restarts"] == 3, "still restarting after giving up"
    s.stop()


def test_quota_deletes_oldest_segments_first_and_says_so(tmp_path):
    quota = 150_000
    s = Streamer(source=lavfi_pattern(size="320x180", fps=10), ingest_url=None, recording_dir=tmp_path, quota_bytes=quota,
                 profile=SMALL, segment_s=1)
    s.start()
    try:
        first_names = wait_until(lambda: sorted(p.name for p in tmp_path.glob("*.ts"))[:1], 10, "a first segment")
        st = wait_until(lambda: (x := s.state())["recording"]["deleted_segments"] >= 2 and x, 30, "quota deletions")
    finally:
        s.stop()
    rec = st["recording"]
    names = sorted(p.name for p in tmp_path.glob("*.ts"))
    assert first_names[0] not in names, "the oldest segment should have gone first"
    assert rec["oldest_kept"] > first_names[0] and rec["deleted_bytes"] > 0
    assert "deleted" in st["detail"] and "oldest kept" in st["detail"]
    sizes = [p.stat().st_size for p in tmp_path.glob("*.ts")]
    assert sum(sizes) <= quota + max(sizes), "more than one segment over the quota"
    # What is kept is still a continuous, playable recording.
    times = segment_times(tmp_path)
    for (_, s0, d0), (name, s1, _) in zip(times, times[1:]):
        assert abs(s1 - (s0 + d0)) < 0.3, f"gap before {name}"
    assert "h264" in {x["codec_name"] for x in probe(tmp_path / names[-2])["streams"]}
