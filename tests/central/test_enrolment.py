"""Enrolment with real photos and the real face pipeline; templates encrypted at rest."""

from __future__ import annotations

import json

import pytest
from nacl.exceptions import CryptoError
from nacl.secret import SecretBox

from central import keys, registry
from central.enrolment import enrol_member, import_csv
from central.errors import EnrolmentError
from central.store import open_store
from tests.central import settings_for


@pytest.fixture
def env(tmp_path):
    settings = settings_for(tmp_path)
    store = open_store(settings.data_dir)
    yield store, keys.template_box(settings.data_dir), settings
    store.close()


def test_enrol_obama_stores_an_encrypted_template_and_no_photo(env, faces_dir):
    store, box, settings = env
    result = enrol_member(store, box, member_id="obama", name="Barack Obama", cell="C1", cccd="001061004444",
                          cards=["04 A1 B2 C3"], photos=[faces_dir / "obama" / "obama.jpg"])
    assert (result.new, result.templates) == (True, 1)
    [template] = registry.member_templates(store, box, ["obama"])["obama"]
    assert len(template) == 128 and all(isinstance(x, float) for x in template)
    raw = store.scalar("SELECT encoding_sealed FROM templates")
    with pytest.raises(ValueError):
        json.loads(raw)  # not readable without the key
    with pytest.raises(CryptoError):
        SecretBox(b"\x01" * 32).decrypt(raw)
    assert (settings.data_dir / keys.TEMPLATE_KEY_FILE).stat().st_mode & 0o777 == 0o600
    assert registry.member_cards(store, ["obama"]) == {"obama": ["04A1B2C3"]}
    # no photo bytes anywhere in the database: only the 128 numbers, encrypted
    photo_head = (faces_dir / "obama" / "obama.jpg").read_bytes()[:64]
    assert photo_head not in store.path.read_bytes()


def test_photo_without_a_single_face_refuses_the_member(env, faces_dir):
    store, box, _ = env
    with pytest.raises(EnrolmentError, match="2 faces"):
        enrol_member(store, box, member_id="pair", name="Two People", cell="C1", photos=[faces_dir / "scenes" / "two_people.jpg"])
    with pytest.raises(EnrolmentError, match="no such file"):
        enrol_member(store, box, member_id="ghost", name="Ghost", cell="C1", photos=[faces_dir / "nobody.jpg"])
    assert store.scalar("SELECT COUNT(*) FROM members") == 0


def test_csv_import_keeps_good_rows_and_reports_each_bad_one(env, faces_dir, tmp_path):
    store, box, _ = env
    csv_file = tmp_path / "members.csv"
    csv_file.write_text(
        "\ufeffid,name,cell,cccd,cards,photos\n"
        "alex,Alex Lacamoire,C1,001099000001,04AABBCC;04DDEEFF,alex_lacamoire/img1.jpg\n"
        "bad-cccd,Bad Number,C1,123,,obama/obama.jpg\n"
        "pair,Two People,C1,,,scenes/two_people.jpg\n"
        "missing,No Photo File,C1,,,obama/none.jpg\n"
        "alex,Alex Again,C1,,,alex_lacamoire/img1.jpg\n"
        "thief,Card Thief,C1,,04AABBCC,alex_lacamoire/img1.jpg\n"
        "escape,Path Escape,C1,,,../../etc/passwd\n"
        "nophoto,No Photos,C1,,,\n",
        encoding="utf-8",
    )
    report = import_csv(store, box, csv_file, faces_dir)
    assert [e.member_id for e in report.imported] == ["alex"]
    errors = {e.member_id: (e.line, e.reason) for e in report.errors}
    assert errors["bad-cccd"] == (3, "bad CCCD number '123': expected 12 digits")
    assert "2 faces" in errors["pair"][1]
    assert "no such file" in errors["missing"][1]
    assert errors["alex"][1] == "id alex already appears on line 2"
    assert "already belongs to member alex" in errors["thief"][1]
    assert "outside" in errors["escape"][1]
    assert "at least one face photo" in errors["nophoto"][1]
    assert [r["id"] for r in store.rows("SELECT id FROM members")] == ["alex"]
    assert registry.member_cards(store, ["alex"]) == {"alex": ["04AABBCC", "04DDEEFF"]}


def test_csv_with_wrong_columns_is_refused_whole(env, faces_dir, tmp_path):
    store, box, _ = env
    csv_file = tmp_path / "members.csv"
    csv_file.write_text("id,fullname,cell\nx,y,z\n")
    with pytest.raises(EnrolmentError, match="missing column"):
        import_csv(store, box, csv_file, faces_dir)
