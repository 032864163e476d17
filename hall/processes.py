"""Child processes the demo (and tests) start: Mosquitto, central, the kiosk.

Supervised the Frigate way: own session (so a Ctrl-C in the terminal reaches us,
not them, and we stop them in order), output to a log file whose tail is shown
when a child dies, terminate → wait → kill.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections import deque
from pathlib import Path


def free_port(preferred: int | None = None) -> int:
    for candidate in ([preferred] if preferred else []) + [0]:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return s.getsockname()[1]
    raise OSError("no free port")


def wait_port(port: int, timeout: float = 20.0, proc: "Child | None" = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive:
            raise RuntimeError(f"{proc.name} exited ({proc.popen.returncode}) before listening on {port}:\n{proc.tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout:.0f}s")


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if not found:
        raise FileNotFoundError("mosquitto is not installed: run scripts/install.sh (apt-get install mosquitto)")
    return found


def mosquitto_config(workdir: Path, port: int) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        f"persistence true\npersistence_location {workdir}/\n"
        f"log_dest file {workdir}/mosquitto.log\n"
        # Central's persistent session queues what arrives while it is busy or restarting; the
        # default (1000) drops the rest. Nothing is lost (devices resend), but drains stall.
        "max_queued_messages 100000\n"
    )
    return conf


class Child:
    def __init__(self, name: str, argv: list[str], *, log_path: Path, env: dict[str, str] | None = None):
        self.name, self.argv, self.log_path = name, argv, log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")
        self.popen = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      env={**os.environ, **(env or {})}, start_new_session=True)

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 15) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(deque(f, maxlen=lines))
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.alive:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._log.close()
