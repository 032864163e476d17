"""Helpers of the streaming tests: real ffmpeg, real nginx-rtmp, central's API under uvicorn.

Fixtures live here (the test modules import them) because the suite's
conftest is shared; everything listens on free loopback ports.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from central import registry
from central.api import create_app
from central.api.routes.media import router as media_router
from central.media import RTMP_MODULE, MediaServer, media_secret, stream_key
from central.store import Store, open_store
from tests.central import STAFF_TOKEN, Device
from tests.conftest import IN_CI, free_port, wait_port

CLIP = Path(__file__).resolve().parents[3] / "shared" / "faces" / "scenes" / "short_hamilton_clip.mp4"


def require_media_tools(*, nginx: bool = True) -> None:
    missing = [t for t in ("ffmpeg", "ffprobe", *(("nginx",) if nginx else ())) if shutil.which(t) is None]
    if nginx and not RTMP_MODULE.is_file():
        missing.append(str(RTMP_MODULE))
    if missing:
        message = f"streaming tests need {', '.join(missing)}: apt-get install ffmpeg nginx libnginx-mod-rtmp"
        if IN_CI:
            pytest.fail(message + " (missing under CI)")
        pytest.skip(message)


def wait_until(check: Callable[[], Any], timeout: float, what: str, every: float = 0.1,
               on_timeout: Callable[[], Any] | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = f"; {on_timeout()!r}" if on_timeout else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{extra}")
        time.sleep(every)


def probe(target: str | Path, timeout: float = 20) -> dict[str, Any]:
    """ffprobe's JSON (format + streams) of a file or URL; raises if ffprobe cannot read it."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(target)],
        capture_output=True, text=True, timeout=timeout,
    )
    if out.returncode != 0:
        raise AssertionError(f"ffprobe could not read {target}: {out.stderr.strip()}")
    return json.loads(out.stdout)


def codecs(info: dict[str, Any]) -> set[str]:
    return {s["codec_name"] for s in info["streams"]}


class Central:
    """central's API (with the media router) on a free port, and its nginx media server."""

    def __init__(self, workdir: Path, **media: Any):
        self.store: Store = open_store(workdir / "central")
        self.secret = media_secret(workdir / "central")
        self.api_port = free_port()
        app = create_app(store=self.store, staff_token=STAFF_TOKEN, collector=None)
        app.include_router(media_router)
        app.state.media_secret = self.secret
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.api_port, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.media = MediaServer(
            workdir / "central", on_publish_url=f"http://127.0.0.1:{self.api_port}/media/on_publish",
            rtmp_port=free_port(), http_port=free_port(), **media,
        )
        app.state.media_server = self.media
        self.app = app
        self.device = Device()
        registry.add_device(self.store, self.device.public_key, "H1")

    def start(self) -> None:
        self.thread.start()
        wait_port(self.api_port)
        self.media.start()

    def ingest(self, app: str = "hall", device: str | None = None, key: str | None = None) -> str:
        name = key or stream_key(self.secret, device or self.device.id)
        return f"rtmp://127.0.0.1:{self.media.rtmp_port}/{app}/{name}"

    def rejections(self) -> list[dict[str, Any]]:
        return self.store.rows("SELECT * FROM rejections WHERE topic = 'media/on_publish' ORDER BY id")

    def close(self) -> None:
        self.media.stop()
        self.server.should_exit = True
        self.thread.join(timeout=5)
        self.store.close()


@pytest.fixture
def central(tmp_path: Path) -> Iterator[Central]:
    require_media_tools()
    c = Central(tmp_path)
    c.start()
    yield c
    c.close()


def segment_times(directory: Path) -> list[tuple[str, float, float]]:
    """(name, start, duration) of every finished segment, in recording order."""
    out = []
    for path in sorted(directory.glob("*.ts")):
        info = probe(path)["format"]
        if "start_time" in info and "duration" in info:
            out.append((path.name, float(info["start_time"]), float(info["duration"])))
    return out
