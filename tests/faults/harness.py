"""Real processes for the fault suite: Mosquitto, `hall central run`, and the kiosk driver.

Every part can be killed (SIGKILL) and started again on the same port and files.
`check_central` asserts the product's promise on central's own database.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from contract import GENESIS_HASH, parse_record, sha256_hex, verify_key_from_text, verify_record
from edge_agent.identity import DeviceIdentity
from hall.processes import Child, free_port, mosquitto_binary, mosquitto_config, wait_port
from tests.conftest import wait_for

from .kiosk_driver import card_of

ROOT = Path(__file__).resolve().parents[2]
HALL = str(Path(sys.executable).with_name("hall"))


# the fault cases involve restarts: longer waits, polled less often
wait_for = functools.partial(wait_for, timeout=60.0, every=0.1)

LOG_TAIL_LINES = 40


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(deque(f, maxlen=lines)) or "(empty)"
    except OSError as exc:
        return f"(not readable: {exc.strerror})"


class DriverDied(AssertionError):
    """The kiosk driver exited although no test stopped it."""


class Driver:
    """The kiosk driver process; its stdout JSON lines are collected as they come."""

    def __init__(self, harness: Harness, extra: list[str]):
        self.events: list[dict] = []
        self.stopped = False  # set when a test kills or stops it on purpose
        # "--central-key=KEY", not "--central-key KEY": the key is base64url, so one time in 64 it
        # starts with "-" and argparse would take it for an option (the driver exited at once).
        argv = [sys.executable, "-m", "tests.faults.kiosk_driver", "--data-dir", str(harness.kiosk_dir),
                "--mqtt-port", str(harness.kiosk_mqtt_port), f"--central-key={harness.central_key}",
                "--members", str(harness.members), *extra]
        self.log = open(harness.work / "driver.log", "ab")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.log, cwd=ROOT, start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                self.events.append(json.loads(line))
            except ValueError:
                pass

    @property
    def died(self) -> bool:
        """Exited although nobody stopped it (a crash or a usage error, not a test's SIGKILL)."""
        return not self.stopped and self.proc.poll() is not None

    def event(self, key: str) -> dict | None:
        return next((e for e in self.events if key in e), None)

    def kill(self) -> None:
        self.stopped = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.log.close()

    def stop(self) -> None:
        self.stopped = True
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


class Harness:
    def __init__(self, work: Path, members: int = 1000, central_seed: bytes | None = None):
        self.work, self.members = work, members
        self.mqtt_port, self.http_port = free_port(), free_port()
        self.kiosk_mqtt_port = self.mqtt_port
        self.central_dir, self.kiosk_dir = work / "central", work / "kiosk"
        self.token = secrets.token_urlsafe(24)
        self.broker: Child | None = None
        self.central: Child | None = None
        self.driver: Driver | None = None
        self.identity = DeviceIdentity(self.kiosk_dir)
        self.device = self.identity.device_id
        self._seed(central_seed)

    def _seed(self, central_seed: bytes | None) -> None:
        from central import keys, registry
        from central.settings import CentralSettings
        from central.store import open_store

        if central_seed is not None:  # a chosen central key (central makes one on first use otherwise)
            self.central_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.central_dir / keys.SIGNING_KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, central_seed)
            finally:
                os.close(fd)

        box = keys.template_box(self.central_dir)
        store = open_store(self.central_dir)
        now = datetime.now(UTC)
        try:
            with store.transaction():
                registry.add_hall(store, "H-FAULT")
                registry.add_cell(store, "C-FAULT")
                for i in range(self.members):
                    registry.add_member(store, f"F{i:05d}", f"Member {i}", "C-FAULT", cards=[card_of(i)],
                                        templates=[[0.0] * 128], box=box)
                registry.add_meeting(store, "MT-FAULT", cell="C-FAULT", hall="H-FAULT", title="fault suite",
                                     starts=now - timedelta(hours=3), ends=now + timedelta(days=3))
                registry.add_device(store, self.identity.public_key, "H-FAULT")
        finally:
            store.close()
        self.central_key = keys.central_public_key(CentralSettings(data_dir=self.central_dir))

    # -- processes ------------------------------------------------------------------

    def start_broker(self) -> None:
        conf = mosquitto_config(self.work / "broker", self.mqtt_port)
        self.broker = Child("mosquitto", [mosquitto_binary(), "-c", str(conf)], log_path=self.work / "broker" / "out.log")
        wait_port(self.mqtt_port, proc=self.broker)

    def start_central(self) -> None:
        env = {"HALL_CENTRAL_DATA_DIR": str(self.central_dir), "HALL_CENTRAL_MQTT_PORT": str(self.mqtt_port),
               "HALL_CENTRAL_HTTP_PORT": str(self.http_port), "HALL_CENTRAL_STAFF_TOKEN": self.token}
        self.central = Child("central", [HALL, "central", "run"], log_path=self.work / "central.log", env=env)
        wait_port(self.http_port, proc=self.central)

    def start_driver(self, *extra: str) -> Driver:
        self.driver = Driver(self, list(extra))
        return self.driver

    @staticmethod
    def kill(child: Child | None) -> None:
        if child is not None and child.alive:
            os.killpg(child.popen.pid, signal.SIGKILL)
            child.popen.wait(10)

    def stop_all(self) -> None:
        if self.driver:
            self.driver.stop()
        for child in (self.central, self.broker):
            if child is not None:
                child.stop()

    # -- observation ----------------------------------------------------------------

    def collector_counts(self) -> dict:
        """Central's collector counters (duplicates, rejected, forks, ...) from its staff API."""
        reply = httpx.get(f"http://127.0.0.1:{self.http_port}/api/collector",
                          headers={"Authorization": f"Bearer {self.token}"}, timeout=10)
        reply.raise_for_status()
        return reply.json()

    def central_db(self) -> sqlite3.Connection:
        conn = sqlite3.connect(f"file:{self.central_dir / 'central.db'}?mode=ro", uri=True, timeout=10)
        conn.row_factory = sqlite3.Row
        return conn

    def stored(self) -> int:
        try:
            with self.central_db() as c:
                return c.execute("SELECT COUNT(*) FROM records WHERE device = ?", [self.device]).fetchone()[0]
        except sqlite3.Error:
            return 0

    def outbox_depth(self) -> int:
        path = self.kiosk_dir / "outbox.sqlite3"
        if not path.exists():
            return -1  # the kiosk has not made its outbox yet
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as c:
            return c.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]

    def progressing(self) -> bool:
        if self.driver is not None and self.driver.died:
            raise DriverDied(f"the kiosk driver exited with {self.driver.proc.returncode} "
                             f"(its log is below); it said {self.driver.events[-3:]}")
        return True

    def wait_complete(self, timeout: float = 120.0) -> None:
        started = time.monotonic()
        try:
            wait_for(lambda: self.progressing() and self.stored() >= self.members and self.outbox_depth() == 0,
                     timeout=timeout, what="completion")
        except DriverDied:
            raise
        except AssertionError:
            depth = self.outbox_depth()
            outbox = "absent (the kiosk never opened it)" if depth < 0 else f"holds {depth}"
            raise AssertionError(f"after {time.monotonic() - started:.0f}s central holds {self.stored()} of {self.members} "
                                 f"records and the outbox {outbox}; driver said {self.driver.events[-3:] if self.driver else None}") from None

    def log_tails(self) -> list[tuple[str, str]]:
        """(title, last lines) of every log of this case: what a failure report shows."""
        logs = [("kiosk driver", self.work / "driver.log"), ("central", self.work / "central.log"),
                ("broker output", self.work / "broker" / "out.log"), ("broker log", self.work / "broker" / "mosquitto.log")]
        return [(f"{name}: last {LOG_TAIL_LINES} lines of {path}", tail(path)) for name, path in logs]

    def check_central(self) -> None:
        """Every sequence 1..N exactly once, chain intact, signatures valid, one attendance row each."""
        key = verify_key_from_text(self.identity.public_key)
        with self.central_db() as c:
            rows = c.execute("SELECT seq, hash, prev, body FROM records WHERE device = ? ORDER BY seq", [self.device]).fetchall()
            attendance = c.execute("SELECT COUNT(*) FROM attendance WHERE meeting = 'MT-FAULT'").fetchone()[0]
            forks = c.execute("SELECT COUNT(*) FROM rejections WHERE alarm = 1").fetchone()[0]
        assert [r["seq"] for r in rows] == list(range(1, self.members + 1))
        prev = GENESIS_HASH
        members = set()
        for r in rows:
            record = parse_record(r["body"].encode())
            verify_record(key, record)
            assert record.prev == prev == r["prev"], f"chain broken at {r['seq']}"
            assert sha256_hex(record.to_wire()) == r["hash"]
            prev = r["hash"]
            members.add(record.member)
        assert len(members) == self.members, "a member has two records"
        assert attendance == self.members
        assert forks == 0
        assert self.outbox_depth() == 0
