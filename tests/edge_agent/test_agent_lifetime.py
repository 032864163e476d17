"""A real `hall agent run` process streaming during a meeting: whatever stops it, its ffmpeg and face
worker go with it (a leftover ffmpeg keeps encoding with no quota and blocks the next push)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import IN_CI, Broker, free_port, wait_for

HALL = "HALL-LIFETIME"


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) from /proc, or None when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text.rpartition(")")[2].split()
    return fields[0], int(fields[1])


def gone(pid: int) -> bool:
    st = proc_stat(pid)
    return st is None or st[0] == "Z"  # a zombie no longer runs; its parent (or init) reaps it


def descendants(root: int) -> dict[int, str]:
    """Every live process below ``root`` (walking ppid links), with its command line."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := proc_stat(int(entry))) and st[0] != "Z":
            parents[int(entry)] = st[1]
    found: dict[int, str] = {}
    frontier = {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier and pid not in found}
        for pid in frontier:
            try:
                found[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                found[pid] = "?"
    return found


@pytest.fixture(scope="module")
def central(tmp_path_factory):
    """Mosquitto and central with a meeting of the kiosk's hall on now (so the kiosk streams)."""
    if not shutil.which("ffmpeg"):
        (pytest.fail if IN_CI else pytest.skip)("ffmpeg is not installed")
    if not shutil.which("mosquitto"):
        os.environ["PATH"] += os.pathsep + "/usr/sbin"
    if not shutil.which("mosquitto"):
        (pytest.fail if IN_CI else pytest.skip)("mosquitto is not installed")
    from central import registry
    from central.service import CentralService
    from central.settings import CentralSettings

    work = tmp_path_factory.mktemp("lifetime")
    broker = Broker(work / "broker")
    broker.start()
    svc = CentralService(CentralSettings(data_dir=work / "central", mqtt_port=broker.port, http_port=free_port(),
                                         staff_token="lifetime-test-token-0123456789abcdef"))
    now = datetime.now(UTC)
    svc.start()
    registry.add_hall(svc.store, HALL, "Lifetime hall")
    registry.add_cell(svc.store, "CELL-LIFETIME", "Lifetime cell")
    registry.add_meeting(svc.store, "MEET-LIFETIME", cell="CELL-LIFETIME", hall=HALL, title="Streaming meeting",
                         starts=now - timedelta(minutes=5), ends=now + timedelta(hours=2))
    svc.broker_port = broker.port
    yield svc
    svc.stop()
    broker.stop()


def start_agent(central, data_dir: Path) -> tuple[subprocess.Popen, int]:
    """`hall agent run` streaming a test pattern; returns it once its ffmpeg is running, with ffmpeg's pid."""
    from central import registry
    from edge_agent.identity import DeviceIdentity

    registry.add_device(central.store, DeviceIdentity(data_dir).public_key, HALL)
    env = {**os.environ,
           "HALL_AGENT_DATA_DIR": str(data_dir), "HALL_AGENT_MQTT_PORT": str(central.broker_port),
           "HALL_AGENT_CENTRAL_PUBLIC_KEY": central.public_key, "HALL_AGENT_CAMERA": f"still:{data_dir / 'stage.jpg'}",
           "HALL_AGENT_MOCK_GPIO": "true", "HALL_AGENT_HTTP_PORT": str(free_port()), "HALL_AGENT_STREAM_SOURCE": "lavfi",
           "HALL_AGENT_STREAM_ENCODER": "libx264"}
    log = open(data_dir / "agent.log", "wb")
    agent = subprocess.Popen([str(Path(sys.executable).with_name("hall")), "agent", "run"], env=env, stdin=subprocess.DEVNULL,
                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()

    def ffmpeg() -> int | None:
        if agent.poll() is not None:
            raise AssertionError(f"the agent exited ({agent.returncode}):\n{(data_dir / 'agent.log').read_text()[-3000:]}")
        return next((pid for pid, cmd in descendants(agent.pid).items() if cmd.startswith("ffmpeg ")), None)

    try:
        pid = wait_for(ffmpeg, timeout=120, what="the agent's ffmpeg (meeting on: streaming)", every=0.2)
    except BaseException:
        kill_all(agent.pid)
        raise
    return agent, pid


def kill_all(root: int, known: dict[int, str] | None = None) -> None:
    """Test cleanup: whatever is still running below ``root`` or among ``known``."""
    for pid in {*descendants(root), *(known or {}), root}:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_gone(tree: dict[int, str], timeout: float, when: str) -> None:
    try:
        wait_for(lambda: all(gone(pid) for pid in tree), timeout=timeout, what="the agent's processes to end")
    except AssertionError:
        raise AssertionError(f"still running {when}: {[f'{p} {c}' for p, c in tree.items() if not gone(p)]}") from None


def test_sigterm_runs_the_clean_shutdown_and_leaves_no_process(central, tmp_path):
    agent, ffmpeg = start_agent(central, tmp_path / "kiosk")
    tree = descendants(agent.pid)
    assert any("multiprocessing" in cmd for cmd in tree.values()), f"no face worker among {tree}"
    try:
        agent.send_signal(signal.SIGTERM)
        code = agent.wait(60)
        log = (tmp_path / "kiosk" / "agent.log").read_text()
        assert code == 0, f"SIGTERM should be a clean stop like Ctrl-C, exit code {code}:\n{log[-3000:]}"
        assert "kiosk stopped" in log, f"close() did not run:\n{log[-3000:]}"
        assert gone(ffmpeg), f"ffmpeg {ffmpeg} still running after the agent stopped"
        # multiprocessing's resource tracker ends when it reads EOF from the exited agent: allow it a moment.
        wait_gone(tree, 10, "after SIGTERM")
    finally:
        kill_all(agent.pid, tree)


def test_a_killed_agent_takes_its_ffmpeg_and_face_worker_with_it(central, tmp_path):
    agent, ffmpeg = start_agent(central, tmp_path / "kiosk")
    tree = descendants(agent.pid)
    try:
        agent.kill()
        agent.wait(10)
        wait_gone(tree, 10, "10 s after the agent was killed")
    finally:
        kill_all(agent.pid, tree)
