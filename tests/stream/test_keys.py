"""Stream keys and the publish callback's gatekeeping, without a media server."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from central import registry
from central.api import create_app
from central.api.routes.media import router as media_router
from central.media import check_stream_key, media_secret, relay_key, stream_key
from central.store import open_store
from edge_agent.streaming import Streamer, StreamerError, lavfi_pattern, redact_url
from tests.central import STAFF_TOKEN, Device

SECRET = b"k" * 32


def test_stream_key_is_bound_to_device_and_secret():
    key = stream_key(SECRET, "dabc")
    assert key.startswith("dabc.") and len(key) > 40
    assert check_stream_key(SECRET, key) == "dabc"
    assert check_stream_key(b"x" * 32, key) is None, "another central's secret"
    assert check_stream_key(SECRET, key.replace("dabc.", "dabd.")) is None, "another device's id with this key"
    assert check_stream_key(SECRET, key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    for bad in ("", "dabc", ".", "dabc.", "/etc.x"):
        assert check_stream_key(SECRET, bad) is None


def test_media_secret_is_a_private_file_made_once(tmp_path):
    first = media_secret(tmp_path)
    assert media_secret(tmp_path) == first and len(first) == 32
    assert (tmp_path / "media.key").stat().st_mode & 0o077 == 0


def test_publish_callback_refuses_non_loopback_callers_and_keeps_refusals(tmp_path):
    store = open_store(tmp_path)
    device = Device()
    registry.add_device(store, device.public_key, "H1")
    app = create_app(store=store, staff_token=STAFF_TOKEN)
    app.include_router(media_router)
    app.state.media_secret = SECRET
    body = {"call": "publish", "app": "hall", "addr": "10.0.0.9", "name": stream_key(SECRET, device.id)}
    # TestClient's peer is "testclient", not a loopback address: as if nginx were bypassed from the network.
    assert TestClient(app).post("/media/on_publish", data=body).status_code == 403
    local = TestClient(app, client=("127.0.0.1", 50000))
    assert local.post("/media/on_publish", data=body, headers={"X-Forwarded-For": "203.0.113.5"}).status_code == 403
    ok = local.post("/media/on_publish", data=body, follow_redirects=False)
    assert ok.status_code == 302 and ok.headers["location"] == device.id
    bad = local.post("/media/on_publish", data={**body, "name": device.id + ".forged"}, follow_redirects=False)
    assert bad.status_code == 403
    assert local.post("/media/on_publish", data={**body, "app": "other"}, follow_redirects=False).status_code == 403
    reasons = [r["reason"] for r in store.rows("SELECT reason FROM rejections WHERE topic = 'media/on_publish' ORDER BY id")]
    assert reasons[0].endswith("wrong stream key") and "unknown application" in reasons[1]
    kept = store.rows("SELECT payload FROM rejections")
    assert all("forged" not in r["payload"] and stream_key(SECRET, device.id) not in r["payload"] for r in kept)
    store.close()


def test_ingest_urls_are_shown_without_their_key(tmp_path):
    assert redact_url("rtmp://h:1935/hall/dabc.SECRETKEY") == "rtmp://h:1935/hall/dabc.***"
    assert "pass" not in redact_url("srt://h:9000?streamid=x&passphrase=pass")
    with pytest.raises(StreamerError, match="rtmp://"):
        Streamer(source=lavfi_pattern(), ingest_url="http://h/hall/x", recording_dir=tmp_path, quota_bytes=10**6)


def test_srt_ingest_is_pushed_as_mpegts_and_rtmp_as_flv(tmp_path):
    from edge_agent.streaming import Command

    def tee(url: str) -> str:
        return Command(source=lavfi_pattern(), segment_pattern=tmp_path / "x-%05d.ts", ingest_url=url).argv()[-1]

    assert "fifo_format=mpegts" in tee("srt://h:9000?streamid=publish:dabc.key")
    assert "fifo_format=flv" in tee("rtmp://h/hall/dabc.key")
    assert "|" not in Command(source=lavfi_pattern(), segment_pattern=tmp_path / "x-%05d.ts", ingest_url=None).argv()[-1]


def test_only_the_main_room_publishes_into_main_and_only_centrals_relay_into_main_hls(tmp_path):
    store = open_store(tmp_path)
    kiosk, main_room = Device(), Device()
    registry.add_device(store, kiosk.public_key, "H1")
    registry.add_device(store, main_room.public_key, "MAIN")
    app = create_app(store=store, staff_token=STAFF_TOKEN)
    app.include_router(media_router)
    app.state.media_secret = SECRET
    local = TestClient(app, client=("127.0.0.1", 50000))

    def publish(app_name: str, name: str, tcurl: str = "rtmp://127.0.0.1/x") -> int:
        body = {"call": "publish", "app": app_name, "addr": "127.0.0.1", "name": name, "tcurl": tcurl}
        return local.post("/media/on_publish", data=body, follow_redirects=False).status_code

    assert publish("main", stream_key(SECRET, main_room.id)) == 302
    assert publish("main", stream_key(SECRET, kiosk.id)) == 403, "a hall kiosk's key must not publish into the main room"
    assert publish("hall", stream_key(SECRET, kiosk.id)) == 302
    # main_hls: no key at all, or a device's own key, is refused; the relay's key in its tcUrl is accepted.
    assert publish("main_hls", main_room.id) == 403
    assert publish("main_hls", stream_key(SECRET, main_room.id)) == 403
    assert publish("main_hls", main_room.id, f"rtmp://127.0.0.1:1935/main_hls?relay={relay_key(b'x' * 32)}") == 403
    assert publish("main_hls", main_room.id, f"rtmp://127.0.0.1:1935/main_hls?relay={relay_key(SECRET)}") == 200
    reasons = [r["reason"] for r in store.rows("SELECT reason FROM rejections WHERE topic = 'media/on_publish' ORDER BY id")]
    assert "only the main room" in reasons[0] and all("main_hls takes only" in r for r in reasons[1:]), reasons
    assert all(relay_key(b"x" * 32) not in r["payload"] for r in store.rows("SELECT payload FROM rejections"))
    store.close()
