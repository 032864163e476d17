"""CCCD QR payload parser: the good case and each rejection reason."""

from __future__ import annotations

import datetime as dt
import unicodedata

import pytest

from hardware.cccd import Cccd, parse_cccd
from hardware.errors import CccdError

SAMPLE = "001099012345|123456789|Nguyễn Văn An|15081999|Nam|Số 1 Tràng Tiền, Hoàn Kiếm, Hà Nội|20042021"
TODAY = dt.date(2025, 6, 1)


def fields(**changes: str) -> str:
    names = ["id", "old", "name", "dob", "sex", "address", "issued"]
    values = dict(zip(names, SAMPLE.split("|")))
    values.update(changes)
    return "|".join(values[n] for n in names)


def test_sample_parses():
    c = parse_cccd(SAMPLE, today=TODAY)
    assert c == Cccd(
        id_number="001099012345",
        old_id_number="123456789",
        full_name="Nguyễn Văn An",
        date_of_birth=dt.date(1999, 8, 15),
        sex="Nam",
        address="Số 1 Tràng Tiền, Hoàn Kiếm, Hà Nội",
        issue_date=dt.date(2021, 4, 20),
    )
    assert c.to_json()["date_of_birth"] == "1999-08-15"
    assert c.to_json()["issue_date"] == "2021-04-20"
    assert parse_cccd(c.to_qr_text(), today=TODAY) == c


def test_trailing_crlf_and_surrounding_whitespace_are_tolerated():
    assert parse_cccd("  " + SAMPLE + "\r\n", today=TODAY).id_number == "001099012345"


def test_empty_old_id_is_none():
    assert parse_cccd(fields(old=""), today=TODAY).old_id_number is None


def test_decomposed_unicode_is_normalised():
    c = parse_cccd(unicodedata.normalize("NFD", SAMPLE), today=TODAY)
    assert c.full_name == "Nguyễn Văn An"


@pytest.mark.parametrize("written", ["Nữ", "nữ", "NỮ", "Nu", "NU"])
def test_female_spellings_are_accepted_and_canonical(written):
    # 001 3 05 ...: female born in 2005
    c = parse_cccd(fields(id="001305012345", dob="01012005", sex=written), today=TODAY)
    assert c.sex == "Nữ"


def test_name_with_apostrophe_and_hyphen_is_a_name():
    assert parse_cccd(fields(name="H'Hen Niê-Ka"), today=TODAY).full_name == "H'Hen Niê-Ka"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty QR payload"),
        ("001099012345|123456789|Nguyễn Văn An|15081999|Nam", "expected 7 fields separated by '|', got 5"),
        (SAMPLE + "|extra", "expected 7 fields separated by '|', got 8"),
        (fields(id="00109901234"), "ID number must be 12 digits, got 11"),
        (fields(id="00109901234X"), "ID number must be 12 digits, got non-digit characters"),
        (fields(id="００１099012345"), "ID number must be 12 digits, got non-digit characters"),
        (fields(id="097099012345"), "ID number starts with 097, which is not a province code"),
        (fields(id="003099012345"), "ID number starts with 003, which is not a province code"),
        (fields(old="12345678"), "old ID number must be 9 digits, got 8"),
        (fields(old="12345678a"), "old ID number must be 9 digits, got non-digit characters"),
        (fields(name=""), "full name is empty"),
        (fields(name="Nguyễn Văn 4n"), "full name contains '4', which is not a letter"),
        (fields(dob="31022000"), "date of birth 31022000 is not a real date"),
        (fields(dob="1581999"), "date of birth must be ddmmyyyy (8 digits), got '1581999'"),
        (fields(dob="15/08/99"), "date of birth must be ddmmyyyy (8 digits), got '15/08/99'"),
        (fields(dob="01011899"), "date of birth 01011899 is before 1900"),
        (fields(dob="01012030"), "date of birth 01012030 is in the future"),
        (fields(issued="01012030"), "issue date 01012030 is in the future"),
        (fields(issued="29022021"), "issue date 29022021 is not a real date"),
        (fields(issued="01011990"), "issue date 01011990 is before the date of birth 15081999"),
        (fields(sex="Male"), "sex must be 'Nam' or 'Nữ', got 'Male'"),
        (fields(sex=""), "sex must be 'Nam' or 'Nữ', got ''"),
        (fields(address=""), "address is empty"),
        (fields(name="Nguyễn\tVăn An"), "contains control character U+0009 at position 29"),
        (SAMPLE.replace("|Nam|", "|Nam\x00|"), "contains control character U+0000 at position 49"),
        (fields(dob="15081998"), "ID number encodes birth year 1999, but the date of birth is in 1998"),
        (fields(sex="Nữ"), "ID number encodes sex Nam, but the card says Nữ"),
    ],
)
def test_rejections_say_why(text, reason):
    with pytest.raises(CccdError) as info:
        parse_cccd(text, today=TODAY)
    assert info.value.reason == reason
    assert str(info.value) == reason
    assert isinstance(info.value, ValueError)


def test_future_is_relative_to_today_by_default():
    tomorrow = dt.date.today() + dt.timedelta(days=1)
    with pytest.raises(CccdError, match="issue date .* is in the future"):
        parse_cccd(fields(issued=tomorrow.strftime("%d%m%Y")))
