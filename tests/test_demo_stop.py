"""`hall demo` stops everything it started: broker, central and its nginx, the kiosk, its face worker and
its ffmpeg, and says "stopped" only then (a leftover ffmpeg kept encoding with no quota, and blocked
the next demo's push as "already publishing")."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import IN_CI
from tests.edge_agent.test_agent_lifetime import descendants, gone


class Lines:
    """The demo's stdout, read by a thread (select() on a buffered pipe misses lines already buffered)."""

    def __init__(self, proc: subprocess.Popen):
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(proc.stdout,), daemon=True).start()

    def _pump(self, stream) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def until(self, marker: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
            if marker in line:
                return True
        return False

    @property
    def text(self) -> str:
        return "".join(self.seen)


def test_sigterm_to_the_demo_stops_every_process_it_started_then_says_stopped(faces_dir, tmp_path):
    missing = [t for t in ("ffmpeg", "nginx") if not shutil.which(t)] + ([] if shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists() else ["mosquitto"])
    if missing:
        (pytest.fail if IN_CI else pytest.skip)(f"the demo needs {missing}")
    env = {**os.environ, "PATH": os.environ["PATH"] + os.pathsep + "/usr/sbin", "HALL_FACES_DIR": str(faces_dir),
           "PYTHONUNBUFFERED": "1"}
    demo = subprocess.Popen(
        [str(Path(sys.executable).with_name("hall")), "demo", "--data-dir", str(tmp_path / "demo"), "--central-port", "0",
         "--kiosk-port", "0", "--mqtt-port", "0", "--control-port", "0", "--rtmp-port", "0", "--hls-port", "0"],
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    out = Lines(demo)
    tree: dict[int, str] = {}
    try:
        assert out.until("Simulate (in another terminal", 180), f"the demo did not come up:\n{out.text[-3000:]}"
        # The banner says how to point `hall central` commands at the demo's data (not the default var/central).
        assert f"HALL_CENTRAL_DATA_DIR={tmp_path / 'demo' / 'central'} .venv/bin/hall central" in out.text, out.text
        # The kiosk streams the clip while the demo meeting is on: wait for its ffmpeg and central's nginx.
        deadline = time.monotonic() + 60
        while not (any(c.startswith("ffmpeg ") for c in tree.values()) and any(c.startswith("nginx") for c in tree.values())):
            assert time.monotonic() < deadline, f"no ffmpeg and nginx under the demo: {tree}"
            assert demo.poll() is None, out.text
            time.sleep(0.2)
            tree = descendants(demo.pid)
        demo.send_signal(signal.SIGTERM)
        said_stopped = out.until("hall demo: stopped", 90)
        left = [f"{pid} {cmd}" for pid, cmd in tree.items() if not gone(pid)]
        assert not left, f"still running when the demo {'said it had stopped' if said_stopped else 'ended'}: {left}"
        assert said_stopped, f"the demo never said 'stopped':\n{out.text[-3000:]}"
        assert demo.wait(30) == 0, out.text[-3000:]
    finally:
        for pid in [*tree, *descendants(demo.pid), demo.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        demo.wait(10)

