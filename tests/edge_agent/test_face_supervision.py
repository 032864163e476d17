"""A face worker killed with SIGKILL is restarted within its budget, and the member, the status and
/healthz say what is going on meanwhile. Real worker processes on the shared photos, a real roster,
outbox and kiosk page; the only thing the tests do to the worker is what the kernel would do."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from pathlib import Path

import httpx
import pytest
from nacl.signing import SigningKey

from contract.keys import public_key_text
from edge_agent.checkin import CheckinService, Outcome
from edge_agent.display import Display
from edge_agent.face.pipeline import encode_photo
from edge_agent.face.worker import FaceWorker, WorkerDown
from edge_agent.identity import DeviceIdentity
from edge_agent.outbox import Outbox
from edge_agent.roster import Roster
from edge_agent.service import Agent
from edge_agent.settings import AgentSettings
from hardware.camera import show_face
from tests.conftest import free_port, wait_for
from tests.edge_agent.test_checkin import NOW, FixedClock, make_bundle, run

RESTARTING = {"vi": "Hệ thống nhận diện đang khởi động lại — mời đồng chí thử lại sau ít giây",
              "en": "Face recognition is restarting — please try again in a few seconds"}


@pytest.fixture(scope="module")
def obama(faces_dir: Path) -> list[list[float]]:
    return [list(encode_photo(faces_dir / "obama" / "obama.jpg"))]


@pytest.fixture
def stage(tmp_path: Path, faces_dir: Path) -> Path:
    path = tmp_path / "stage.jpg"
    show_face(path, faces_dir / "obama" / "obama2.jpg")
    return path


def kill(worker: FaceWorker) -> int:
    pid = worker.pid
    assert pid is not None and worker.alive
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not worker.alive, timeout=10, what="the killed worker to be gone")
    return pid


def restarted(worker: FaceWorker, old_pid: int) -> bool:
    return worker.alive and worker.pid != old_pid and worker.fault is None


@pytest.fixture
def kiosk(tmp_path: Path, stage: Path, obama):
    central = SigningKey.generate()
    ident = DeviceIdentity(tmp_path / "kiosk")
    roster = Roster(data_dir=tmp_path / "kiosk", device_key=ident.signing_key, central_key=central.verify_key,
                    storage_box=ident.storage_box)
    roster.receive(make_bundle(central, ident.signing_key, templates=obama))
    outbox = Outbox(tmp_path / "o.sqlite3", signing_key=ident.signing_key)
    display = Display()
    workers: list[FaceWorker] = []

    def checkin(**worker_settings) -> tuple[CheckinService, FaceWorker]:
        worker = FaceWorker(camera_source=f"still:{stage}", observe_interval_s=0.1, liveness=False, **worker_settings)
        workers.append(worker)
        worker.start(timeout=90)
        return CheckinService(roster=roster, outbox=outbox, face=worker, display=display, clock=FixedClock(NOW),
                              verdict_hold_s=0.05), worker

    yield dict(checkin=checkin, display=display, outbox=outbox)
    for w in workers:
        w.stop()
    outbox.close()


def test_a_killed_worker_says_restarting_then_checks_in_again(kiosk):
    service, worker = kiosk["checkin"]()  # the default backoff: 1 s
    old = kill(worker)
    r = run(service, "member_card", "04aa")
    assert r.outcome is Outcome.FACE_RESTARTING and r.name == "Nguyễn Văn An"
    assert kiosk["display"].state["text"] == RESTARTING
    assert kiosk["outbox"].depth() == 0  # no record for a tap nobody judged
    assert worker.fault == "face worker restarting (attempt 1)"
    # the member taps again until the worker is back: a few seconds, no agent restart
    accepted = wait_for(lambda: (res := run(service, "member_card", "04aa")).outcome is Outcome.ACCEPTED and res,
                        timeout=60, what="a check-in after the restart", every=0.2)
    assert accepted.seq == 1 and kiosk["outbox"].depth() == 1
    assert worker.alive and worker.pid != old and worker.fault is None
    assert worker.stats()["starts"] == 2


def test_past_the_restart_budget_the_worker_stays_down_and_says_so(kiosk):
    service, worker = kiosk["checkin"](restart_budget=1, restart_backoff_s=0.1)
    first = kill(worker)
    wait_for(lambda: restarted(worker, first), timeout=60, what="the first restart")
    kill(worker)
    wait_for(lambda: not worker.supervised, timeout=30, what="the supervisor to give up")
    assert worker.fault.startswith("face worker down: restart budget exhausted")
    assert not worker.alive and worker.stats()["starts"] == 2
    with pytest.raises(WorkerDown, match="budget exhausted"):
        worker.verify([[0.0] * 128])
    r = run(service, "member_card", "04aa")
    assert r.outcome is Outcome.FACE_DOWN and kiosk["outbox"].depth() == 0
    assert "thư ký hoặc bí thư xác nhận" in kiosk["display"].state["text"]["vi"]  # the way in that is left


def test_healthz_is_503_with_the_reasons_while_check_ins_cannot_happen(tmp_path, stage, obama, broker):
    central = SigningKey.generate()
    port = free_port()
    # a 5 s backoff keeps the worker down long enough to see it from outside on a loaded machine
    settings = AgentSettings(data_dir=tmp_path / "kiosk", mqtt_port=broker.port, central_public_key=public_key_text(central),
                             camera=f"still:{stage}", mock_gpio=True, http_port=port, min_free_bytes=0,
                             face_restart_backoff_s=5.0)
    agent = Agent(settings)
    thread = threading.Thread(target=lambda: asyncio.run(agent.run()), name="agent", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}/healthz"

    def health(status: int, fault: str = "") -> dict | None:
        try:
            response = httpx.get(url, timeout=5)
        except httpx.TransportError:
            return None
        body = response.json()
        if response.status_code == status and (not fault or any(fault in f for f in body.get("faults", []))):
            return body
        return None

    try:
        assert wait_for(lambda: health(503, "no roster"), timeout=120, what="503: no roster")["ok"] is False
        agent.roster.receive(make_bundle(central, agent.identity.signing_key, templates=obama))
        assert wait_for(lambda: health(200), timeout=30, what="200 once the roster is in") == {"ok": True, "faults": []}
        old = kill(agent.face)
        down = wait_for(lambda: health(503, "face worker restarting"), timeout=30, what="503 while the worker restarts")
        assert down["faults"] == ["face worker restarting (attempt 1)"]
        assert "face worker restarting (attempt 1)" in agent.status().faults  # what central is told
        # and the members, before they tap: the idle screen says it in words
        idle = wait_for(lambda: (st := httpx.get(url.replace("healthz", "api/state"), timeout=5).json())["text"]["vi"]
                        .startswith("Hệ thống nhận diện đang khởi động lại") and st, timeout=10, what="the idle screen to say so")
        assert idle["screen"] == "idle" and idle["text"]["en"].startswith("Face recognition is restarting")
        wait_for(lambda: health(200), timeout=60, what="200 after the restart")
        assert restarted(agent.face, old)
    finally:
        agent.request_stop()
        thread.join(60)
