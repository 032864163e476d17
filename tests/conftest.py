"""Shared fixtures: real parts (Mosquitto, SQLite files, the shared face photos)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from hall.processes import free_port, mosquitto_config, wait_port

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI") == "true"


def wait_for(predicate, timeout: float = 20.0, what: str = "condition", every: float = 0.05):
    """Poll ``predicate`` until it returns something truthy (returned), or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def require(what: str, found: bool, hint: str) -> None:
    """Skip when a tool or data set is missing, except under CI, where the README promises a failure."""
    if found:
        return
    if IN_CI:
        pytest.fail(f"{what} is missing under CI: {hint}")
    pytest.skip(f"{what} is missing: {hint}")


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    """The shared face photos (HALL_FACES_DIR, default ../shared/faces): never copied into the repo."""
    path = Path(os.environ.get("HALL_FACES_DIR", ROOT.parent / "shared" / "faces")).resolve()
    require("the shared face photos", (path / "obama" / "obama.jpg").is_file(), f"expected them in {path} (set HALL_FACES_DIR)")
    return path


class Broker:
    """A private Mosquitto on a random loopback port, with its own config and log."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.port = free_port()
        self.conf = mosquitto_config(workdir, self.port)
        self.log = workdir / "mosquitto.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def stop(self, kill: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            (self.proc.kill if kill else self.proc.terminate)()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def broker(tmp_path: Path):
    exe = shutil.which("mosquitto") or (Path("/usr/sbin/mosquitto") if Path("/usr/sbin/mosquitto").exists() else None)
    require("mosquitto", exe is not None, "apt-get install mosquitto (scripts/install.sh does it)")
    if not shutil.which("mosquitto"):
        os.environ["PATH"] += os.pathsep + "/usr/sbin"
    work = tmp_path / "broker"
    work.mkdir()
    b = Broker(work)
    b.start()
    yield b
    b.stop()


# Flags for a root, network-less machine: no sandbox (root), and none of Chromium's background
# connections, which this machine's closed network refuses many at a time.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def chromium():
    """Debian's headless Chromium driven by Playwright (a Browser); missing → skip here, fail under CI."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    require("playwright", sync_playwright is not None, "pip install -e '.[test]' (scripts/install.sh does it)")
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    require("chromium", exe is not None, "apt-get install chromium (scripts/install.sh does it)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
