"""The check-in flow's outcomes a member meets, on a real roster bundle, outbox and display.

The face verdict is injected here (a verifier that answers as told) because these
cases are about the flow; real faces are tested in test_face_* and end to end.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from nacl.signing import SigningKey

from contract import Bundle, Meeting, Member, encode_signed, seal_members, seal_templates
from edge_agent.checkin import CheckinService, Outcome
from edge_agent.display import Display
from edge_agent.identity import DeviceIdentity
from edge_agent.outbox import Outbox
from edge_agent.roster import Roster
from hardware.events import CardEvent

NOW = datetime(2026, 11, 25, 19, 0, tzinfo=UTC)
QR_AN = "027061012345||Nguyễn Văn An|04081961|Nam|Thôn Đông, An Bình|15062021"


@dataclass
class Verdict:
    status: str
    distance: float | None = 0.3
    threshold: float = 0.5


class ToldVerifier:
    def __init__(self):
        self.status = "match"
        self.calls = 0

    def verify(self, templates, timeout=5.0):
        self.calls += 1
        return Verdict(self.status, 0.31 if self.status == "match" else 0.8)


class FixedClock:
    def __init__(self, now):
        self._now = now

    def now(self):
        return self._now

    def synced(self):
        return False

    def reading(self):
        from contract import DeviceTime

        return DeviceTime(wall=self._now.isoformat().replace("+00:00", "Z"), synced=False, boot_id="b", monotonic=3.0)


def make_bundle(central: SigningKey, device: SigningKey, *, version=1, meeting_start=NOW - timedelta(minutes=5), templates=None):
    members = [
        Member(id="A", name="Nguyễn Văn An", cell="C1", cards=["04AA"], cccd="027061012345"),
        Member(id="B", name="Trần Thị Bình", cell="C2", cards=["04BB"]),
        Member(id="N", name="No Template", cell="C1", cards=["04CC"]),
    ]
    meetings = [Meeting(id="MT", cell="C1", hall="H", title="Sinh hoạt chi bộ", starts_at=meeting_start.isoformat(),
                        ends_at=(meeting_start + timedelta(hours=2)).isoformat())]
    sealed = seal_templates(device.verify_key, {"A": templates or [[0.0] * 128]})
    from contract import device_id_from_public_key

    b = Bundle(device=device_id_from_public_key(device.verify_key), hall="H", version=version, issued_at=NOW.isoformat(),
               members_sealed=seal_members(device.verify_key, members), meetings=meetings, templates_sealed=sealed)
    return encode_signed(central, b)


@pytest.fixture
def kiosk(tmp_path):
    central = SigningKey.generate()
    ident = DeviceIdentity(tmp_path)
    roster = Roster(data_dir=tmp_path, device_key=ident.signing_key, central_key=central.verify_key, storage_box=ident.storage_box)
    outbox = Outbox(tmp_path / "o.sqlite3", signing_key=ident.signing_key)
    face = ToldVerifier()
    display = Display()
    service = CheckinService(roster=roster, outbox=outbox, face=face, display=display, clock=FixedClock(NOW), verdict_hold_s=0.05)
    return dict(central=central, ident=ident, roster=roster, outbox=outbox, face=face, display=display, service=service, tmp=tmp_path)


def run(service, kind, value):
    # a loop of its own in a thread: independent of any loop another fixture keeps running
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, service.handle(CardEvent(kind=kind, value=value, source="test"))).result()


def test_without_a_roster_the_kiosk_says_so(kiosk):
    assert run(kiosk["service"], "member_card", "04AA").outcome is Outcome.NO_ROSTER


def test_outcomes_a_member_meets(kiosk):
    k = kiosk
    k["roster"].receive(make_bundle(k["central"], k["ident"].signing_key))
    svc = k["service"]
    assert run(svc, "member_card", "04ff").outcome is Outcome.UNKNOWN_CARD
    assert run(svc, "member_card", "04bb").outcome is Outcome.OTHER_CELL
    assert run(svc, "member_card", "04cc").outcome is Outcome.NO_TEMPLATE
    k["face"].status = "no_match"
    r = run(svc, "member_card", "04aa")
    assert r.outcome is Outcome.FACE_MISMATCH and k["outbox"].depth() == 0
    k["face"].status = "several_faces"
    assert run(svc, "member_card", "04aa").outcome is Outcome.SEVERAL_FACES
    k["face"].status = "match"
    r = run(svc, "member_card", "04aa")
    assert r.outcome is Outcome.ACCEPTED and r.seq == 1 and r.name == "Nguyễn Văn An"
    assert k["display"].state["text"]["vi"] == "Đã điểm danh"
    calls = k["face"].calls
    r = run(svc, "cccd_qr", QR_AN)  # same member by ID card: already checked in, no face check, no record
    assert r.outcome is Outcome.ALREADY and k["face"].calls == calls and k["outbox"].depth() == 1
    assert "Đã điểm danh trước đó" in k["display"].state["text"]["vi"]


class BrokenVerifier:
    """A face part with a bug: not a face verdict, not a worker fault."""

    def verify(self, templates, timeout=5.0):
        return {}["status"]


def test_an_internal_error_is_a_system_error_with_its_traceback_logged(kiosk, caplog):
    k = kiosk
    k["roster"].receive(make_bundle(k["central"], k["ident"].signing_key))
    k["service"].face = BrokenVerifier()
    with caplog.at_level("ERROR", logger="edge_agent.checkin"):
        r = run(k["service"], "member_card", "04aa")
    assert r.outcome is Outcome.SYSTEM_ERROR and k["outbox"].depth() == 0
    assert k["display"].state["text"] == {"vi": "Lỗi hệ thống — mời đồng chí báo thư ký",
                                          "en": "System error — please tell the secretary"}
    assert k["display"].state["tone"] == "bad"
    logged = [rec for rec in caplog.records if rec.exc_info]
    assert logged and "Traceback" in caplog.text and "KeyError" in caplog.text and "in verify" in caplog.text
    k["service"].face = k["face"]  # the next tap is judged normally
    assert run(k["service"], "member_card", "04aa").outcome is Outcome.ACCEPTED


def test_malformed_qr_is_refused_with_its_reason(kiosk):
    k = kiosk
    k["roster"].receive(make_bundle(k["central"], k["ident"].signing_key))
    r = run(k["service"], "cccd_qr", "027061012345|Nguyễn Văn An|04081961")
    assert r.outcome is Outcome.BAD_QR and "field" in r.detail
    assert k["display"].state["tone"] == "bad"


def test_no_meeting_now(kiosk):
    k = kiosk
    k["roster"].receive(make_bundle(k["central"], k["ident"].signing_key, meeting_start=NOW + timedelta(hours=5)))
    assert run(k["service"], "member_card", "04aa").outcome is Outcome.NO_MEETING


def test_roster_survives_restart_and_refuses_rollback_and_forgery(kiosk):
    from edge_agent.errors import BundleRejected

    k = kiosk
    k["roster"].receive(make_bundle(k["central"], k["ident"].signing_key, version=5))
    again = Roster(data_dir=k["tmp"], device_key=k["ident"].signing_key, central_key=k["central"].verify_key,
                   storage_box=k["ident"].storage_box)
    assert again.version == 5 and again.by_card("04aa").name == "Nguyễn Văn An"
    assert b"Nguy" not in (k["tmp"] / "bundle.sealed").read_bytes()  # encrypted at rest
    with pytest.raises(BundleRejected, match="rollback"):
        again.receive(make_bundle(k["central"], k["ident"].signing_key, version=4))
    with pytest.raises(BundleRejected):
        again.receive(make_bundle(SigningKey.generate(), k["ident"].signing_key, version=9))
    assert again.version == 5
