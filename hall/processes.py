"""Child processes the demo (and tests) start: Mosquitto, central, the kiosk.

Supervised the Frigate way: own session (so a Ctrl-C in the terminal reaches us,
not them, and we stop them in order), output to a log file whose tail is shown
when a child dies, terminate → wait → kill.
"""

from __future__ import annotations

import os
import pwd
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


def wait_port(port: int, timeout: float = 20.0, proc: Child | None = None) -> None:
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
        # A private broker keeps the user that starts it. Started as root, Mosquitto would otherwise drop to
        # the mosquitto user, which cannot write (or even enter) the demo's or a test's directory: no log,
        # and `persistence` without a mosquitto.db. (The fleet's broker does drop: central.broker_config.)
        f"user {pwd.getpwuid(os.geteuid()).pw_name}\n"
        f"persistence true\npersistence_location {workdir}/\n"
        f"log_dest file {workdir}/mosquitto.log\n"
        # Central's persistent session queues what arrives while it is busy or restarting; the
        # default (1000) drops the rest. Nothing is lost (devices resend), but drains stall.
        "max_queued_messages 100000\n"
    )
    return conf


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, process group) of a process from /proc, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()  # the command name may hold spaces and parentheses
    return fields[0], int(fields[1]), int(fields[2])


def running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (a zombie no longer runs; whoever owns it reaps it)."""
    st = _stat(pid)
    return st is not None and st[0] != "Z"


def process_tree(pid: int) -> set[int]:
    """``pid``, every live process below it and every member of its process group."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) is not None and st[0] != "Z":
            table[int(entry)] = st
    found = {pid} | {p for p, (_, _, pgrp) in table.items() if pgrp == pid}
    frontier = set(found)
    while frontier:
        frontier = {p for p, (_, ppid, _) in table.items() if ppid in frontier and p not in found}
        found |= frontier
    return found


def describe(pid: int) -> str:
    try:
        return f"{pid} " + Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()[:120]
    except OSError:
        return str(pid)


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

    def stop(self, timeout: float = 10.0) -> list[str]:
        """Stop the child and everything it started; returns what is still running (empty: all gone).

        SIGTERM goes to the child's whole process group (its own session), so helpers it started
        in that group stop with it; processes it started in sessions of their own (the kiosk's
        ffmpeg, central's nginx) are its to stop, and they are waited for too. Whatever is left
        after ``timeout`` gets SIGKILL.
        """
        tree = process_tree(self.popen.pid) if self.alive else set()
        try:
            if tree:
                self._signal(tree, signal.SIGTERM)
                if not self._wait_gone(tree, timeout):
                    self._signal(tree, signal.SIGKILL)
                    self._wait_gone(tree, 5.0)
            self.popen.poll()
            return [describe(pid) for pid in sorted(tree) if running(pid)]
        finally:
            self._log.close()

    def _signal(self, tree: set[int], sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass
        if sig == signal.SIGKILL:  # the terminating signal is the child's to pass on; a kill is ours to deliver
            for pid in tree:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass

    def _wait_gone(self, tree: set[int], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            self.popen.poll()  # reap our own child, so it does not linger as a zombie
            if not any(running(pid) for pid in tree):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
