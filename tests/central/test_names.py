"""Names staff read instead of ids: a kiosk named at enrolment after its hall and position (and renamed,
audited), halls placed in a commune and province of the 2025 list, and the fleet list showing and filtering
by them. Through the real CLI, the real enrolment redemption and the fleet API on a real store."""

from __future__ import annotations

import json
import sqlite3

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from central import accounts, audit, regions, registry
from central.api import create_app
from central.enrol_tokens import redeem
from central.pki import CentralPki
from central.store import open_store
from edge_agent.identity import DeviceIdentity
from hall.cli import main
from provisioning.enrol import build_csr, make_tls_key, proof_of_possession
from tests.central import Device

HALL_NAME = "Nhà văn hoá thôn Đông"


@pytest.fixture
def hall(tmp_path):
    runner = CliRunner()
    env = {"HALL_CENTRAL_DATA_DIR": str(tmp_path / "central")}

    def invoke(*args: str):
        return runner.invoke(main, ["central", *args], env=env, catch_exceptions=False)

    invoke.data_dir = tmp_path / "central"
    return invoke


def _enrol(data_dir, token: str, kiosk_dir) -> str:
    ident = DeviceIdentity(kiosk_dir)
    csr = build_csr(make_tls_key(), ident.device_id)
    with open_store(data_dir) as store:
        done = redeem(store, CentralPki.for_data_dir(data_dir), token=token, public_key=ident.public_key, csr_pem=csr,
                      proof=proof_of_possession(ident, csr))
    return done.device


def test_a_kiosk_enrolled_with_a_tokens_position_is_named_after_its_hall_and_can_be_renamed(hall, tmp_path):
    made = hall("hall", "H-DONG", "--name", HALL_NAME, "--province", "bac ninh", "--commune", "gia binh")
    assert made.exit_code == 0, made.output
    assert "Xã Gia Bình, Bắc Ninh" in made.output  # the official spelling, though typed without diacritics
    issued = hall("token", "create", "--hall", "H-DONG", "--position", "cửa chính")
    assert issued.exit_code == 0, issued.output
    token = issued.stdout.strip()
    assert "cửa chính" in hall("token", "list").output

    device = _enrol(hall.data_dir, token, tmp_path / "kiosk")
    listed = hall("device", "list").output
    assert f"{HALL_NAME} — cửa chính" in listed and device in listed

    renamed = hall("device", "rename", device, f"{HALL_NAME} — cửa phụ")
    assert renamed.exit_code == 0, renamed.output
    assert f"{HALL_NAME} — cửa phụ" in hall("device", "list").output
    with open_store(hall.data_dir) as store:
        entry = audit.entries(store, limit=5, action="device.rename")[0]
    assert json.loads(entry["detail"]) == {"device": device, "from": f"{HALL_NAME} — cửa chính", "to": f"{HALL_NAME} — cửa phụ"}
    assert entry["actor"].startswith("cli:")

    for bad in ("", "a\nb", "x" * 121):
        refused = hall("device", "rename", device, bad)
        assert refused.exit_code == 1 and "bad device name" in refused.output
    assert hall("device", "rename", "no-such-device", "Tên").exit_code == 1


def test_a_kiosk_without_a_position_gets_its_halls_name_and_a_number(hall, tmp_path):
    hall("hall", "H1", "--name", "Hall one")
    first = _enrol(hall.data_dir, hall("token", "create", "--hall", "H1").stdout.strip(), tmp_path / "k1")
    second = hall("device", "add", "--public-key", Device().public_key, "--hall", "H1").output.strip()
    with open_store(hall.data_dir) as store:
        assert registry.get_device(store, first)["name"] == "Hall one — máy 1"
        assert registry.get_device(store, second)["name"] == "Hall one — máy 2"


def test_halls_province_and_commune_are_checked_against_the_2025_list(hall):
    assert len(regions.provinces()) == 34
    # Bắc Giang merged into Bắc Ninh in 2025: the old province is refused with the list to choose from.
    old = hall("hall", "H1", "--name", "Hall", "--province", "Bắc Giang")
    assert old.exit_code == 1 and "no province 'Bắc Giang'" in old.output and "Bắc Ninh" in old.output
    wrong = hall("hall", "H1", "--name", "Hall", "--province", "Bắc Ninh", "--commune", "Bến Thành")
    assert wrong.exit_code == 1 and "no commune or ward 'Bến Thành' in Bắc Ninh" in wrong.output
    alone = hall("hall", "H1", "--name", "Hall", "--commune", "Gia Bình")
    assert alone.exit_code == 1 and "needs its province" in alone.output
    # Two communes of Thái Nguyên differ only in diacritics: with them it is one, without them it is refused.
    assert hall("hall", "H2", "--name", "Hall", "--province", "Thái Nguyên", "--commune", "Văn Lăng").exit_code == 0
    ambiguous = hall("hall", "H3", "--name", "Hall", "--province", "Thai Nguyen", "--commune", "van lang")
    assert ambiguous.exit_code == 1 and "ambiguous" in ambiguous.output
    assert hall("hall", "H4", "--name", "Hall", "--province", "TP Hồ Chí Minh", "--commune", "phường Bến Thành").exit_code == 0
    # Renaming a hall leaves its place as it was.
    assert hall("hall", "H4", "--name", "Chợ Bến Thành").exit_code == 0
    with open_store(hall.data_dir) as store:
        h = registry.get_hall(store, "H4")
        assert (h["name"], h["commune"], h["province"]) == ("Chợ Bến Thành", "Phường Bến Thành", "Thành phố Hồ Chí Minh")
        assert store.scalar("SELECT COUNT(*) FROM halls WHERE id IN ('H1', 'H3')") == 0  # nothing half-made


def test_the_fleet_list_shows_names_and_places_and_filters_by_province_and_commune(tmp_path):
    store = open_store(tmp_path / "central")
    try:
        registry.add_hall(store, "H-BN", HALL_NAME, province="Bắc Ninh", commune="Xã Gia Bình")
        registry.add_hall(store, "H-BN2", "Nhà văn hoá khu 2", province="Bắc Ninh", commune="Phường Thuận Thành")
        registry.add_hall(store, "H-HN", "Hội trường phường", province="Hà Nội", commune="Phường Ba Đình")
        gia_binh = registry.add_device(store, Device().public_key, "H-BN", position="cửa chính")
        thuan_thanh = registry.add_device(store, Device().public_key, "H-BN2")
        ba_dinh = registry.add_device(store, Device().public_key, "H-HN", position="hội trường")
        accounts.add_user(store, "viewer", "viewer", "viewer-pass-Ao1")
        token = accounts.issue_token(store, "viewer", "test")[1]
        client = TestClient(create_app(store=store, staff_token=None), headers={"Authorization": f"Bearer {token}"})

        def ids(**params) -> set[str]:
            response = client.get("/api/fleet/devices", params=params)
            assert response.status_code == 200, response.text
            return {item["id"] for item in response.json()["items"]}

        items = {i["id"]: i for i in client.get("/api/fleet/devices").json()["items"]}
        assert (items[gia_binh]["name"], items[gia_binh]["hall_name"], items[gia_binh]["commune"], items[gia_binh]["province"]) \
            == (f"{HALL_NAME} — cửa chính", HALL_NAME, "Xã Gia Bình", "Bắc Ninh")
        assert items[thuan_thanh]["name"] == "Nhà văn hoá khu 2 — máy 1"
        assert items[ba_dinh]["province"] == "Thành phố Hà Nội"

        assert ids(province="bắc ninh") == {gia_binh, thuan_thanh}
        assert ids(province="Tỉnh Bắc Ninh", commune="thuan thanh") == {thuan_thanh}
        assert ids(commune="Ba Đình") == {ba_dinh}  # a commune without its province: every commune of that name
        assert ids(q="hội trường") == {ba_dinh}  # text search finds a device by its name
        assert [i["id"] for i in client.get("/api/fleet/devices", params={"sort": "place"}).json()["items"]] \
            == [thuan_thanh, gia_binh, ba_dinh]  # Bắc Ninh (Phường …, Xã …), then Thành phố Hà Nội
        registry.add_hall(store, "H-NOWHERE", "Hall without a place")
        nowhere = registry.add_device(store, Device().public_key, "H-NOWHERE")
        assert [i["id"] for i in client.get("/api/fleet/devices", params={"sort": "place", "order": "desc"}).json()["items"]] \
            == [ba_dinh, gia_binh, thuan_thanh, nowhere]
        for bad in ({"province": "Bắc Giang"}, {"province": "Bắc Ninh", "commune": "Ba Đình"}, {"commune": "Atlantis"}):
            response = client.get("/api/fleet/devices", params=bad)
            assert response.status_code == 400 and "no " in response.json()["detail"], response.text
    finally:
        store.close()


def test_kiosks_registered_before_names_existed_are_named_by_the_migration(tmp_path):
    store = open_store(tmp_path / "central")
    registry.add_hall(store, "H1", "Hall one")
    first = registry.add_device(store, Device().public_key, "H1")
    second = registry.add_device(store, Device().public_key, "H1")
    path = store.path
    store.close()
    # Back to the database as migration 10 left it: no names, no places.
    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm011_names_and_regions'")
    conn.execute("DROP INDEX halls_region")
    for table, column in (("devices", "name"), ("halls", "commune"), ("halls", "commune_code"), ("halls", "province"),
                          ("halls", "province_code"), ("enrol_tokens", "position")):
        conn.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    conn.execute("UPDATE devices SET registered_at = '2025-01-01T00:00:00Z' WHERE id = ?", [second])
    conn.commit()
    conn.close()
    store = open_store(tmp_path / "central")
    try:
        assert registry.get_device(store, second)["name"] == "Hall one — máy 1"  # registered first
        assert registry.get_device(store, first)["name"] == "Hall one — máy 2"
    finally:
        store.close()


def test_the_demos_hall_and_kiosk_have_names_and_a_place(tmp_path, faces_dir):
    from central import keys
    from hall import demo_data
    from tests.central import settings_for

    settings = settings_for(tmp_path)
    kiosk = Device()
    with open_store(settings.data_dir) as store:
        demo_data.seed_central(store, keys.template_box(settings.data_dir), faces_dir, [kiosk.public_key],
                               media_dir=tmp_path / "media")
        h = registry.get_hall(store, demo_data.HALL)
        assert (h["name"], h["commune"], h["province"]) == (demo_data.HALL_NAME, "Phường Thuận Thành", "Bắc Ninh")
        assert registry.get_device(store, kiosk.id)["name"] == f"{demo_data.HALL_NAME} — cửa chính"
