"""`kill -9` of the face worker during `hall demo`: the next tap is told the face check is restarting,
/healthz answers 503 with the reason meanwhile, and a tap a few seconds later checks the member in.

The whole demo as a user runs it (its own broker, central, kiosk agent and face worker, the simulated reader
driven by `hall sim tap`), with liveness on: the member who checks in is the shared clip's live man."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from hall import demo_data
from tests.conftest import IN_CI, wait_for
from tests.edge_agent.test_agent_lifetime import descendants
from tests.test_demo_stop import Lines

HALL = str(Path(sys.executable).with_name("hall"))


def test_a_face_worker_killed_during_the_demo_says_restarting_then_checks_in_again(faces_dir, tmp_path):
    if not (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()):
        (pytest.fail if IN_CI else pytest.skip)("the demo needs mosquitto")
    # A 4 s backoff (default 1 s) keeps the worker down long enough for a tap from a CLI to land in the gap
    # on a loaded machine; the restart itself is the real supervisor's.
    env = {**os.environ, "PATH": os.environ["PATH"] + os.pathsep + "/usr/sbin", "HALL_FACES_DIR": str(faces_dir),
           "PYTHONUNBUFFERED": "1", "HALL_AGENT_FACE_RESTART_BACKOFF_S": "4"}
    demo = subprocess.Popen(
        [HALL, "demo", "--no-stream", "--data-dir", str(tmp_path / "demo"), "--central-port", "0", "--kiosk-port", "0",
         "--mqtt-port", "0", "--control-port", "0"],
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    out = Lines(demo)
    try:
        assert out.until("Simulate (in another terminal", 180), f"the demo did not come up:\n{out.text[-3000:]}"
        kiosk = re.search(r"Kiosk page\s+(http://127\.0\.0\.1:\d+/)", out.text).group(1)
        control = json.loads((tmp_path / "demo" / "sim.json").read_text())["control"]

        def health() -> tuple[int, dict]:
            reply = httpx.get(kiosk + "healthz", timeout=5)
            return reply.status_code, reply.json()

        def tap(card: str, *face: str) -> None:
            subprocess.run([HALL, "sim", "tap", "--card", card, *face, "--control", control], cwd=tmp_path, env=env,
                           check=True, timeout=120, capture_output=True)

        def verdict_after(since: float) -> dict:
            """The first verdict the kiosk shows after ``since`` (its recent list is newest first)."""
            def newest() -> dict | None:
                recent = httpx.get(kiosk + "api/state", timeout=5).json()["recent"]
                return recent[0] if recent and recent[0]["at"] > since else None
            return wait_for(newest, timeout=60, what="the kiosk's verdict")

        wait_for(lambda: health()[0] == 200, timeout=60, what="a healthy kiosk")
        workers = [pid for pid, cmd in descendants(demo.pid).items() if "spawn_main" in cmd]
        assert len(workers) == 1, descendants(demo.pid)

        since = time.time()
        os.kill(workers[0], signal.SIGKILL)
        code, body = wait_for(lambda: (h := health())[0] == 503 and h, timeout=10, what="/healthz to say 503")
        assert any("face worker restarting" in fault for fault in body["faults"]), body
        tap(demo_data.MEMBERS[0].card, "--face", "none")  # the face does not matter: no worker to look
        shown = verdict_after(since)
        assert (shown["screen"], shown["tone"]) == ("face_restarting", "busy"), shown  # a wait, not a red refusal
        assert shown["text"]["vi"].startswith("Hệ thống nhận diện đang khởi động lại"), shown

        wait_for(lambda: health()[0] == 200, timeout=90, what="/healthz back to 200 once the worker is restarted")
        now = [pid for pid, cmd in descendants(demo.pid).items() if "spawn_main" in cmd]
        assert len(now) == 1 and now != workers, (workers, now)
        since = time.time()
        tap(demo_data.LIVE_MEMBER.card, "--face", "live")
        shown = verdict_after(since)
        assert (shown["screen"], shown.get("name")) == ("accepted", demo_data.LIVE_MEMBER.name), shown
    finally:
        demo.send_signal(signal.SIGTERM)
        stopped = out.until("hall demo: stopped", 90)
        if not stopped:
            for pid in [*descendants(demo.pid), demo.pid]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        demo.wait(30)
