"""The demo cell: members enrolled from the shared face photos, a meeting happening now.

Used by `hall demo` and by the end-to-end tests, so both run the same data.
The photos are read from the faces folder (HALL_FACES_DIR); nothing is copied.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HALL = "HALL-AN-BINH"
HALL_NAME = "Nhà văn hoá thôn Đông, xã An Bình"
CELL = "CELL-THON-DONG"
OTHER_CELL = "CELL-THON-TAY"
ADDRESS = "Thôn Đông, xã An Bình, huyện Thuận Thành, Bắc Ninh"
# The address above is the card's, written before the 2025 reform; central files the hall under the new list's
# ward and province (central/regions.py), so the fleet's filters and names have a real place.
HALL_COMMUNE, HALL_PROVINCE = "Phường Thuận Thành", "Bắc Ninh"
DEVICE_POSITIONS = ("cửa chính", "cửa phụ")  # the demo's kiosks: "<hall's name> — cửa chính", ...


@dataclass(frozen=True)
class DemoMember:
    id: str
    name: str
    cell: str
    card: str
    cccd: str
    birth: str  # ddmmyyyy
    sex: str
    enrol: str  # photo enrolled at central, relative to the faces folder
    probe: str  # a different photo of the same person, shown to the kiosk camera

    def qr(self) -> str:
        """The CCCD QR payload this member's ID card would carry."""
        return f"{self.cccd}||{self.name}|{self.birth}|{self.sex}|{ADDRESS}|15062021"


MEMBERS = [
    DemoMember("M001", "Barack Obama", CELL, "04A1B2C3D4E5F6", "027061012345", "04081961", "Nam", "obama/obama.jpg", "obama/obama2.jpg"),
    DemoMember("M002", "Joe Biden", CELL, "04B2C3D4E5F607", "027042067890", "20111942", "Nam", "biden/biden.jpg", "biden/biden2.jpg"),
    DemoMember("M003", "Kit Harington", CELL, "04C3D4E5F60718", "027086011111", "26121986", "Nam", "kit_harington/john1.jpeg", "kit_harington/john2.jpeg"),
    DemoMember("M004", "Rose Leslie", CELL, "04D4E5F6071829", "027187022222", "09021987", "Nữ", "rose_leslie/img1.jpg", "rose_leslie/img2.jpg"),
    DemoMember("M005", "Alex Lacamoire", OTHER_CELL, "04E5F60718293A", "027075033333", "19101975", "Nam", "alex_lacamoire/img1.jpg", "alex_lacamoire/img1.jpg"),
]
UNKNOWN_CARD = "04FFFFFFFFFF01"
# The man of the shared clip's close-up, enrolled from one of its frames (edge_agent.face.sample_media):
# with liveness on, the only member who checks in by face, when the stage plays the clip (`--face live`).
LIVE_MEMBER = DemoMember("M006", "Trần Văn Sống", CELL, "04F60718293A4B", "027090044444", "01011990", "Nam",
                         "scenes/short_hamilton_clip.mp4", "scenes/short_hamilton_clip.mp4")
# The demo meeting's officers, who may confirm a member whose face check fails (the secretary override).
SECRETARY, CHAIR = MEMBERS[3], MEMBERS[2]  # Rose Leslie, Kit Harington
DEMO_PIN = "246810"  # both officers' PIN in the demo (printed by `hall demo`); never a real one


def faces_dir() -> Path:
    return Path(os.environ.get("HALL_FACES_DIR", ROOT.parent / "shared" / "faces")).resolve()


def meeting_now(now: datetime | None = None) -> dict:
    now = now or datetime.now(UTC)
    return {
        "meeting_id": "MEET-" + now.strftime("%Y%m%d"),
        "cell": CELL,
        "hall": HALL,
        "title": "Sinh hoạt chi bộ thường kỳ tháng " + str(now.month),
        "starts": now - timedelta(minutes=10),
        "ends": now + timedelta(hours=3),
    }


def seed_central(store, box, faces: Path, device_public_keys: list[str], *, now: datetime | None = None,
                 media_dir: Path | None = None) -> str:
    """Load the demo hall, cells, members (with face templates) and today's meeting with its secretary
    and chair (PIN ``DEMO_PIN``); register kiosks.

    Returns the meeting id.
    """
    from central import registry
    from central.enrolment import enrol_member

    registry.add_hall(store, HALL, HALL_NAME, commune=HALL_COMMUNE, province=HALL_PROVINCE)
    registry.add_cell(store, CELL, "Chi bộ thôn Đông")
    registry.add_cell(store, OTHER_CELL, "Chi bộ thôn Tây")
    for m in MEMBERS:
        enrol_member(store, box, member_id=m.id, name=m.name, cell=m.cell, photos=[faces / m.enrol], cccd=m.cccd, cards=[m.card])
    _enrol_live_member(store, box, faces, media_dir)
    meeting = meeting_now(now)
    registry.add_meeting(store, meeting["meeting_id"], cell=meeting["cell"], hall=meeting["hall"],
                         title=meeting["title"], starts=meeting["starts"], ends=meeting["ends"])
    from central import officers

    officers.set_officers(store, meeting["meeting_id"], secretary=SECRETARY.id, chair=CHAIR.id)
    for officer in (SECRETARY, CHAIR):
        officers.set_pin(store, officer.id, DEMO_PIN)
    # The hall also hosts the other cell (tomorrow), so its members are on this kiosk's roster
    # and a tap today is told "another cell" rather than "unknown card".
    registry.add_meeting(store, "MEET-TAY-" + meeting["starts"].strftime("%Y%m%d"), cell=OTHER_CELL, hall=HALL,
                         title="Sinh hoạt chi bộ thôn Tây", starts=meeting["starts"] + timedelta(days=1),
                         ends=meeting["ends"] + timedelta(days=1))
    for i, key in enumerate(device_public_keys):
        registry.add_device(store, key, HALL, position=DEVICE_POSITIONS[i] if i < len(DEVICE_POSITIONS) else None)
    from hall.demo_history import seed_history

    seed_history(store, cell=CELL, hall=HALL, now=now)  # past months, so the attendance pages have a year to show
    return meeting["meeting_id"]


def _enrol_live_member(store, box, faces: Path, media_dir: Path | None) -> None:
    import tempfile

    from central.enrolment import enrol_member
    from edge_agent.face.sample_media import live_member_photo

    m = LIVE_MEMBER
    with tempfile.TemporaryDirectory() as scratch:  # the frame is only needed while enrolling
        photo = live_member_photo(faces, media_dir or scratch)
        enrol_member(store, box, member_id=m.id, name=m.name, cell=m.cell, photos=[photo], cccd=m.cccd, cards=[m.card])


def default_faces(faces: Path) -> dict[str, Path]:
    """What the simulated camera shows when a card is tapped or a QR scanned without --face."""
    out: dict[str, Path] = {}
    for m in MEMBERS:
        out[m.card] = faces / m.probe
        out[m.cccd] = faces / m.probe
    return out
