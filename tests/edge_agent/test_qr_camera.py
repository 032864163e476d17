"""A CCCD's QR shown to the camera (no serial QR scanner) is a check-in like a scanned one, with
card_kind "cccd_camera"; a QR held for several looks fires once; a QR that is not a CCCD gives the
invalid-QR verdict once. Real agent, face worker and still-camera stage with a QR pasted onto a
member's photo; nothing simulated but the camera's picture."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import cv2
import pytest
from nacl.signing import SigningKey

from contract.keys import public_key_text
from edge_agent.checkin import Outcome
from edge_agent.face.pipeline import encode_photo
from edge_agent.face.qr import QrDebounce, QrDecoder
from edge_agent.service import Agent
from edge_agent.settings import AgentSettings
from hardware.camera import show_face
from tests.conftest import free_port, wait_for
from tests.edge_agent.test_checkin import NOW, QR_AN, FixedClock, make_bundle

LOOKS_HELD = 6  # looks the QR stays in view after it fired


def photo_with_qr(photo: Path, text: str, out: Path) -> Path:
    """The member's photo with a QR (about 200 px, quiet zone kept) held up below the face."""
    frame = cv2.imread(str(photo))
    qr = cv2.resize(cv2.QRCodeEncoder.create().encode(text), (220, 220), interpolation=cv2.INTER_NEAREST)
    h = frame.shape[0]
    frame[h - 240:h - 20, 20:240] = cv2.cvtColor(qr, cv2.COLOR_GRAY2BGR)
    cv2.imwrite(str(out), frame)
    return out


def card_kinds(payloads: list[bytes]) -> list[str]:
    def find(node):
        if isinstance(node, dict):
            if "card_kind" in node:
                yield node["card_kind"]
            for v in node.values():
                yield from find(v)
        elif isinstance(node, list):
            for v in node:
                yield from find(v)

    return [k for p in payloads for k in find(json.loads(p))]


@pytest.fixture
def agent(tmp_path: Path, faces_dir: Path, broker):
    """A kiosk with a camera and no serial QR scanner, the member's photo on its stage."""
    stage = tmp_path / "stage.jpg"
    show_face(stage, faces_dir / "obama" / "obama2.jpg")
    central = SigningKey.generate()
    settings = AgentSettings(data_dir=tmp_path / "kiosk", mqtt_port=broker.port, central_public_key=public_key_text(central),
                             camera=f"still:{stage}", mock_gpio=True, http_port=free_port(), min_free_bytes=0, verdict_seconds=0.1,
                             liveness=False)  # the face is a still photo: this test is about the QR, not liveness
    a = Agent(settings, clock=FixedClock(NOW))
    a.roster.receive(make_bundle(central, a.identity.signing_key,
                                 templates=[list(encode_photo(faces_dir / "obama" / "obama.jpg"))]))
    thread = threading.Thread(target=lambda: asyncio.run(a.run()), name="agent", daemon=True)
    thread.start()
    wait_for(lambda: a.face is not None and a.face.alive, timeout=120, what="the face worker")
    a.stage = stage
    try:
        yield a
    finally:
        a.request_stop()
        thread.join(60)


def hold_for_looks(agent: Agent, looks: int) -> None:
    start = agent.face.stats()["qr_decodes"]
    wait_for(lambda: agent.face.stats()["qr_decodes"] >= start + looks, timeout=60, what=f"{looks} more QR looks")


def test_cccd_qr_shown_to_the_camera_checks_the_member_in_once(agent, tmp_path, faces_dir):
    show_face(agent.stage, photo_with_qr(faces_dir / "obama" / "obama2.jpg", QR_AN, tmp_path / "with-qr.jpg"))
    first = wait_for(lambda: agent.checkin.results, timeout=60, what="a check-in from the camera's QR")[0]
    assert first.outcome is Outcome.ACCEPTED and first.member == "A"  # matched by CCCD number, face checked
    assert card_kinds([q.payload for q in agent.outbox.after(0, 10)]) == ["cccd_camera"]
    hold_for_looks(agent, LOOKS_HELD)
    assert len(agent.checkin.results) == 1, [r.outcome for r in agent.checkin.results]


def test_a_qr_that_is_not_a_cccd_is_refused_once(agent, tmp_path, faces_dir):
    show_face(agent.stage, photo_with_qr(faces_dir / "obama" / "obama2.jpg", "https://example.com/not-a-card", tmp_path / "bad.jpg"))
    first = wait_for(lambda: agent.checkin.results, timeout=60, what="a verdict on the camera's QR")[0]
    assert first.outcome is Outcome.BAD_QR
    hold_for_looks(agent, LOOKS_HELD)
    assert [r.outcome for r in agent.checkin.results] == [Outcome.BAD_QR]
    assert agent.outbox.depth() == 0


def test_a_qr_fires_again_only_after_leaving_the_view():
    now = [0.0]
    seen = QrDebounce(gone_s=2.0, clock=lambda: now[0])
    assert seen.see(["X"]) == ["X"]
    for _ in range(20):  # held for 4 s of looks
        now[0] += 0.2
        assert seen.see(["X"]) == []
    now[0] += 1.0  # away for a second: a missed read, not a new showing
    assert seen.see(["X"]) == []
    now[0] += 2.5  # gone for longer than gone_s: shown again
    assert seen.see(["X", "Y"]) == ["X", "Y"]


def test_the_decoder_reads_the_cccd_payload_from_the_photo(tmp_path, faces_dir):
    frame = cv2.imread(str(photo_with_qr(faces_dir / "obama" / "obama2.jpg", QR_AN, tmp_path / "q.jpg")))
    assert QrDecoder().decode(frame) == [QR_AN]
