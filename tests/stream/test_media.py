"""Hall → central through real ffmpeg and a real nginx-rtmp, with central's API deciding who may push."""

from __future__ import annotations

import os
import time
import urllib.request
from pathlib import Path

import pytest

from central import registry
from edge_agent.streaming import Profile, Streamer, file_loop, lavfi_pattern
from tests.central import Device
from tests.conftest import IN_CI, ROOT
from tests.stream import CLIP, codecs, probe, segment_times, wait_until

SMALL = Profile(width=320, height=180, fps=10, video_kbps=200, audio_kbps=32)


def _hall_streamer(central, tmp_path, **kw) -> Streamer:
    kw.setdefault("ingest_url", central.ingest("hall"))
    return Streamer(source=lavfi_pattern(size="320x180", fps=10), recording_dir=tmp_path / "rec", quota_bytes=50_000_000,
                    profile=SMALL, segment_s=2, recovery_wait_s=1, **kw)


def test_hall_push_is_recorded_and_the_main_room_is_served_as_hls(central, tmp_path):
    main_room = Device()
    registry.add_device(central.store, main_room.public_key, "MAIN")
    main = Streamer(source=file_loop(CLIP), ingest_url=central.ingest("main", main_room.id), recording_dir=tmp_path / "main",
                    quota_bytes=50_000_000, segment_s=2)
    hall = _hall_streamer(central, tmp_path)
    main.start()
    hall.start()
    try:
        wait_until(lambda: hall.state()["state"] == "live" and main.state()["state"] == "live", 30, "both pushes live", on_timeout=lambda: (hall.state(), main.state(), central.media.last_errors(), central.rejections()))
        # The playlist is named by device id (on_publish renames the stream), so no key is served.
        url = central.media.main_hls_url(main_room.id)
        wait_until(lambda: _ok(url), 20, f"{url} to be served")
        playlist = urllib.request.urlopen(url, timeout=5).read().decode()
        assert ".ts" in playlist and "." + central.ingest("main", main_room.id).rpartition(".")[2] not in playlist
        assert codecs(probe(url)) == {"h264", "aac"}
        st = hall.state()
        assert st["fps"] and st["fps"] > 5 and st["dropped_frames"] == 0 and central.device.id in st["ingest"]
        assert st["ingest"].endswith(".***")
    finally:
        hall.stop()
        main.stop()
    central.media.stop()  # closes the recordings
    files = central.media.recordings()
    assert [f.name.startswith(central.device.id + "-") for f in files] == [True], files
    # Recordings of members' meetings are central's alone, as the kiosk's own are the kiosk's.
    for d in (central.media.root, central.media.recordings_dir, tmp_path / "rec"):
        assert d.stat().st_mode & 0o777 == 0o700, d
    for f in [*files, *(tmp_path / "rec").glob("*.ts")]:
        assert f.stat().st_mode & 0o777 == 0o600, f
    info = probe(files[0])
    assert codecs(info) == {"h264", "aac"} and float(info["format"]["duration"]) > 1.5


def test_media_server_outage_keeps_the_recording_whole_and_the_push_returns_by_itself(central, tmp_path):
    s = _hall_streamer(central, tmp_path)
    s.start()
    try:
        wait_until(lambda: s.state()["state"] == "live", 15, "live")
        central.media.stop(kill=True)
        st = wait_until(lambda: (x := s.state())["state"] in ("reconnecting", "recording-only") and x, 8, "the outage to show")
        assert st["push_failures"] >= 1 and st["last_push_error"]
        assert central.ingest().rpartition(".")[2] not in str(st), "stream key leaked into the status"
        during = len(list((tmp_path / "rec").glob("*.ts")))
        wait_until(lambda: len(list((tmp_path / "rec").glob("*.ts"))) >= during + 2, 10, "recording to go on during the outage")
        assert s.state()["state"] == "reconnecting"
        central.media.start()
        back = time.monotonic()
        wait_until(lambda: s.state()["state"] == "live", 15, "the push to resume by itself")
        assert time.monotonic() - back < 6
        assert s.restarts == 0, "ffmpeg should not have needed a restart"
        time.sleep(2.5)
    finally:
        s.stop()
    central.media.stop()
    times = segment_times(tmp_path / "rec")
    for (_, s0, d0), (name, s1, _) in zip(times, times[1:]):
        assert abs(s1 - (s0 + d0)) < 0.3, f"gap in the local recording before {name}"
    assert times[-1][1] + times[-1][2] - times[0][1] > 8
    assert len(central.media.recordings()) == 2, "one recording before the outage, one after"


def test_wrong_or_revoked_keys_are_refused_and_kept(central, tmp_path):
    forged = _hall_streamer(central, tmp_path / "a", ingest_url=central.ingest("hall", key=central.device.id + ".forgedkey"))
    forged.start()
    try:
        wait_until(lambda: central.rejections(), 10, "the refusal to be kept")
        time.sleep(3)  # several retries by ffmpeg's fifo
        st = forged.state()
        assert st["state"] == "reconnecting" and st["push_failures"] >= 2, "each refused attempt after a connect is an outage"
        assert st["recording"]["segments"] >= 1, "the local recording goes on while refused"
    finally:
        forged.stop()
    rows = central.rejections()
    assert len(rows) == 1, "retries within a minute are counted, not kept one by one"
    assert rows[0]["device"] == central.device.id and rows[0]["reason"].endswith("wrong stream key")
    assert "forgedkey" not in rows[0]["payload"]

    registry.revoke_device(central.store, central.device.id)
    revoked = _hall_streamer(central, tmp_path / "b")
    revoked.start()
    try:
        wait_until(lambda: len(central.rejections()) == 2, 10, "the revoked device's refusal")
        assert revoked.state()["state"] != "live"
    finally:
        revoked.stop()
    assert "revoked" in central.rejections()[1]["reason"]
    assert central.media.recordings() == [], "nothing refused was recorded"


def _ok(url: str) -> bool:
    try:
        return urllib.request.urlopen(url, timeout=2).status == 200
    except OSError:
        return False


def test_kiosk_page_plays_the_main_room_natively_in_chromium(central, tmp_path):
    chromium = Path(os.environ.get("HALL_CHROMIUM", "/usr/bin/chromium"))
    if not chromium.exists():
        (pytest.fail if IN_CI else pytest.skip)(f"chromium not found at {chromium} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    main_room = Device()
    registry.add_device(central.store, main_room.public_key, "MAIN")
    main = Streamer(source=file_loop(CLIP), ingest_url=central.ingest("main", main_room.id), recording_dir=tmp_path / "main",
                    quota_bytes=50_000_000, segment_s=2)
    main.start()
    try:
        url = central.media.main_hls_url(main_room.id)
        wait_until(lambda: _ok(url), 25, f"{url} to be served")
        page_url = (ROOT / "edge_agent" / "static" / "main_room.html").as_uri() + "?src=" + url
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(chromium),
                                        args=["--no-sandbox", "--disable-gpu", "--autoplay-policy=no-user-gesture-required"])
            try:
                page = browser.new_page()
                page.goto(page_url)
                # The page retries by itself until the video plays; what counts is that time advances.
                page.wait_for_function("() => document.getElementById('video').currentTime > 1.5", timeout=20_000)
                assert page.evaluate("() => document.getElementById('status').dataset.state") == "playing"
                assert page.evaluate("() => document.getElementById('video').videoWidth") == 640
            finally:
                browser.close()
    finally:
        main.stop()


def test_nothing_but_centrals_relay_may_publish_into_main_hls(central, tmp_path):
    # A local process pushing straight into the internal HLS application, with or without a device's key.
    for name in ("intruder", central.ingest().rpartition("/")[2]):
        before = len(central.rejections())
        s = _hall_streamer(central, tmp_path / name[:8], ingest_url=central.ingest("main_hls", key=name))
        s.start()
        try:
            wait_until(lambda before=before: len(central.rejections()) > before, 15, "the refusal to be kept",
                       on_timeout=lambda s=s: (s.state()["state"], central.rejections()))
            assert "main_hls takes only" in central.rejections()[-1]["reason"]
            assert s.state()["state"] != "live"
        finally:
            s.stop()
    assert not list(central.media.hls_dir.glob("*.m3u8")), "an intruder's stream was served as HLS"
