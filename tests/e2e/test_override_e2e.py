"""The secretary's override on real parts: a member's face fails at the kiosk, the demo meeting's secretary
taps their card and types the PIN set at central; central stores the record with the override and shows
who confirmed it and why. Mosquitto, central, the kiosk agent with its face worker (on a still camera,
liveness off: the failure here is a wrong face) and the simulated card reader, Chromium for both pages.
"""

from __future__ import annotations

import asyncio
import secrets
import threading

import httpx
import pytest

from hall import demo_data
from tests.conftest import free_port, wait_for, wait_port

OBAMA, BIDEN = demo_data.MEMBERS[0], demo_data.MEMBERS[1]

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def hall(tmp_path_factory, module_broker, faces_dir):
    from central import accounts
    from central import keys as central_keys
    from central.service import CentralService
    from central.settings import CentralSettings
    from central.store import open_store
    from edge_agent.identity import DeviceIdentity
    from edge_agent.service import Agent
    from edge_agent.settings import AgentSettings
    from hall.sim_rig import SimRig

    work = tmp_path_factory.mktemp("override")
    token = secrets.token_urlsafe(24)
    csettings = CentralSettings(data_dir=work / "central", mqtt_port=module_broker.port, http_port=free_port(), staff_token=token)
    kiosk_id = DeviceIdentity(work / "kiosk")
    with open_store(csettings.data_dir) as store:
        meeting = demo_data.seed_central(store, central_keys.template_box(csettings.data_dir), faces_dir, [kiosk_id.public_key])
    central = CentralService(csettings)
    central.start()
    rig = SimRig(stage_path=work / "stage.jpg", default_faces=demo_data.default_faces(faces_dir))
    rig.start()
    port = free_port()
    agent = Agent(AgentSettings(data_dir=work / "kiosk", mqtt_port=module_broker.port, central_public_key=central.public_key,
                                card_reader=rig.card_port, camera=f"still:{rig.stage_path}", qr_camera=False, liveness=False,
                                http_port=port, verdict_seconds=60.0, mock_gpio=True))
    thread = threading.Thread(target=lambda: asyncio.run(agent.run()), name="agent", daemon=True)
    thread.start()
    try:
        wait_port(port, timeout=90)
        wait_for(lambda: agent.roster.bundle is not None, timeout=30, what="the roster bundle from central")
        api = lambda path: httpx.get(central.url.rstrip("/") + path, headers={"Authorization": f"Bearer {token}"}, timeout=5).json()  # noqa: E731
        yield dict(agent=agent, rig=rig, central=central, meeting=meeting, kiosk_url=f"http://127.0.0.1:{port}/", api=api,
                   faces=faces_dir, login=lambda: f"{central.url.rstrip('/')}/login/once/{accounts.issue_login_link(central.store)}")
    finally:
        agent.request_stop()
        thread.join(30)
        rig.stop()
        central.stop()


def test_secretary_confirms_a_failed_face_check_and_central_shows_the_override(hall, browser):
    secretary = demo_data.SECRETARY
    page = browser.new_page(viewport={"width": 800, "height": 480})
    try:
        page.goto(hall["kiosk_url"])
        page.wait_for_selector("#screen[data-screen='idle']")
        hall["rig"].tap(OBAMA.card, face=str(hall["faces"] / BIDEN.probe))  # Obama's card, Biden's face
        page.wait_for_selector("#override-btn", state="visible", timeout=20_000)
        failed = page.get_attribute("#screen", "data-screen")
        assert failed in ("face_mismatch", "no_face")
        page.click("#override-btn")
        page.wait_for_selector("#screen[data-screen='override_officer']")
        hall["rig"].tap(secretary.card)
        page.wait_for_selector("#screen[data-screen='override_pin']", timeout=15_000)
        assert secretary.name in page.inner_text("#vi")
        for digit in demo_data.DEMO_PIN:
            page.click(f"#pinpad [data-digit='{digit}']")
        page.click("#pin-ok")
        page.wait_for_selector("#screen[data-screen='override_accepted']", timeout=15_000)
        assert page.inner_text("#vi") == "Đã điểm danh (thư ký xác nhận)" and page.inner_text("#name") == OBAMA.name
    finally:
        page.close()

    def stored():
        data = hall["api"](f"/api/meetings/{hall['meeting']}/attendance")
        return next((p for p in data["present"] if p["member_id"] == OBAMA.id), None), data

    row, data = wait_for(lambda: stored()[0] and stored(), timeout=20, what="the override record at central")
    assert (row["override"], row["override_by"], row["override_reason"]) == (secretary.id, secretary.name, failed)
    assert data["overrides"] == 1

    staff = browser.new_page()
    try:
        staff.goto(hall["login"]())  # lands on the fleet overview
        staff.goto(hall["central"].url.rstrip("/") + "/")  # the attendance page
        cell = staff.wait_for_selector(f"tr.present-member[data-member-id='{OBAMA.id}'] .override", timeout=15_000)
        assert secretary.name in cell.inner_text()
        assert staff.inner_text(f"#meeting-{hall['meeting']} .override-count") == "1"
    finally:
        staff.close()
