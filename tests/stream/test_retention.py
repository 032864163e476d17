"""Central keeps the halls' recordings within a quota and a maximum age, oldest first, and says so."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest

from edge_agent.streaming import Profile, Streamer, lavfi_pattern
from tests.central import STAFF_TOKEN
from tests.stream import Central, require_media_tools, wait_until

SMALL = Profile(width=320, height=180, fps=10, video_kbps=200, audio_kbps=32)


@pytest.fixture
def make_central(tmp_path):
    require_media_tools()
    made: list[Central] = []

    def make(**media) -> Central:
        c = Central(tmp_path / f"c{len(made)}", **media)
        made.append(c)
        c.start()
        return c

    yield make
    for c in made:
        c.close()


def push(central: Central, tmp_path: Path, *, until_bytes: int) -> Path:
    """One hall push, kept up until central's recording of it holds ``until_bytes``; returns that recording."""
    before = set(central.media.recordings())
    s = Streamer(source=lavfi_pattern(size="320x180", fps=10), ingest_url=central.ingest(), recording_dir=tmp_path / "kiosk",
                 quota_bytes=50_000_000, profile=SMALL, segment_s=2, recovery_wait_s=1)
    s.start()
    try:
        new = wait_until(lambda: [p for p in central.media.recordings() if p not in before], 20, "the push to be recorded",
                         on_timeout=lambda: (s.state()["state"], central.media.last_errors()))
        assert len(new) == 1
        wait_until(lambda: new[0].exists() and new[0].stat().st_size >= until_bytes, 30, f"{until_bytes} bytes recorded")
    finally:
        s.stop()
    return new[0]


def closed(central: Central, path: Path) -> bool:
    return path.resolve() not in {p.resolve() for p in central.media.open_files()}


def media_status(central: Central) -> dict:
    r = httpx.get(f"http://127.0.0.1:{central.api_port}/api/media", headers={"Authorization": f"Bearer {STAFF_TOKEN}"}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def test_over_the_quota_the_oldest_recording_goes_when_a_push_ends_and_the_status_says_so(make_central, tmp_path):
    size, quota = 100_000, 300_000
    # No periodic pass during the test: only the end of a recording can apply the quota here.
    central = make_central(quota_bytes=quota, retention_interval_s=3600)
    first = push(central, tmp_path, until_bytes=size)
    wait_until(lambda: closed(central, first), 10, "the first recording to be closed")
    second = push(central, tmp_path, until_bytes=size)
    third = push(central, tmp_path, until_bytes=size)
    status = wait_until(lambda: (st := media_status(central)["recordings"])["deleted_files"] >= 1 and st, 15,
                        "the quota to be applied when the third recording ended")
    assert not first.exists(), "the oldest recording should have gone first"
    assert second.exists() and third.exists()
    assert status["deleted_files"] == 1 and status["last_deleted"] == first.name and "quota" in status["last_deleted_reason"]
    assert status["bytes"] <= quota == status["quota_bytes"]
    assert status["oldest_kept"] == second.name and status["files"] == 2


def test_recordings_older_than_the_limit_go_on_the_periodic_pass_but_never_one_being_written(make_central, tmp_path):
    central = make_central(max_age_s=3600, quota_bytes=None, retention_interval_s=0.3)
    old = push(central, tmp_path, until_bytes=30_000)
    wait_until(lambda: closed(central, old), 10, "the first recording to be closed")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))  # as if it had been recorded two hours ago
    status = wait_until(lambda: (st := central.media.retention.status())["deleted_files"] and st, 10, "the periodic pass")
    assert not old.exists() and status["last_deleted"] == old.name and "older than 3600 s" in status["last_deleted_reason"]

    # A recording still being written is never deleted, even over the quota: nginx would go on writing
    # into the unlinked file. Once it is finished, it goes.
    central.media.retention.quota_bytes = 20_000
    s = Streamer(source=lavfi_pattern(size="320x180", fps=10), ingest_url=central.ingest(), recording_dir=tmp_path / "kiosk2",
                 quota_bytes=50_000_000, profile=SMALL, segment_s=2, recovery_wait_s=1)
    s.start()
    try:
        live = wait_until(lambda: central.media.recordings(), 20, "the live recording")[0]
        wait_until(lambda: live.stat().st_size > 60_000, 30, "the live recording to pass the quota")
        passes = central.media.retention.last_enforced_at
        wait_until(lambda: central.media.retention.last_enforced_at > passes + 0.5, 10, "two periodic passes over the quota")
        assert live.exists() and not closed(central, live)
    finally:
        s.stop()
    wait_until(lambda: not live.exists(), 10, "the finished recording over the quota to go")
    assert central.media.retention.status()["deleted_files"] == 2
