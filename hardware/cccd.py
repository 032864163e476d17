"""Parser for the QR code printed on Vietnamese chip ID cards (CCCD / Căn cước).

Payload: seven ``|``-separated fields

    ID number (12 digits) | old ID number (9 digits or empty) | full name |
    date of birth (ddmmyyyy) | sex | address | issue date (ddmmyyyy)

The parse is strict, because a misread QR must not check in the wrong person:

* The 12-digit number is structured (Circular 07/2016/TT-BCA, Annex I): three
  digits of province of birth registration (one of the 63 codes below), one digit
  for century and sex (0/1 = male/female born 1900-1999, 2/3 = 2000-2099, 4/5 ...),
  two digits of the year of birth, six serial digits. The ID must agree with the
  printed date of birth and sex.
* Sex: "Nam" or "Nữ", case-insensitively; "Nu" without the diacritic is also
  accepted, since scanners in ASCII mode or keyboard-wedge mode drop diacritics.
  It is returned canonical ("Nam"/"Nữ").
* Text is normalised to Unicode NFC (the same name may arrive composed or
  decomposed); surrounding whitespace and a trailing CR/LF are stripped; any other
  control character is rejected.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass

from .errors import CccdError

FIELD_COUNT = 7
PROVINCE_CODES: frozenset[str] = frozenset(
    "001 002 004 006 008 010 011 012 014 015 017 019 020 022 024 025 026 027 030 031 033 034 "
    "035 036 037 038 040 042 044 045 046 048 049 051 052 054 056 058 060 062 064 066 067 068 "
    "070 072 074 075 077 079 080 082 083 084 086 087 089 091 092 093 094 095 096".split()
)
_DIGITS = re.compile(r"[0-9]+")
_NAME_PUNCT = set(" '-.")


@dataclass(frozen=True)
class Cccd:
    id_number: str
    old_id_number: str | None
    full_name: str
    date_of_birth: dt.date
    sex: str
    address: str
    issue_date: dt.date

    def to_json(self) -> dict:
        return {
            "id_number": self.id_number,
            "old_id_number": self.old_id_number,
            "full_name": self.full_name,
            "date_of_birth": self.date_of_birth.isoformat(),
            "sex": self.sex,
            "address": self.address,
            "issue_date": self.issue_date.isoformat(),
        }

    def to_qr_text(self) -> str:
        """The payload as the card's QR carries it (for simulators and tests)."""
        return "|".join(
            [
                self.id_number,
                self.old_id_number or "",
                self.full_name,
                self.date_of_birth.strftime("%d%m%Y"),
                self.sex,
                self.address,
                self.issue_date.strftime("%d%m%Y"),
            ]
        )


def parse_cccd(text: str, *, today: dt.date | None = None) -> Cccd:
    """Parse a CCCD QR payload; raise CccdError with a specific reason otherwise."""
    today = today or dt.date.today()
    if not isinstance(text, str):
        raise CccdError(f"expected text, got {type(text).__name__}")
    text = unicodedata.normalize("NFC", text.strip())
    if not text:
        raise CccdError("empty QR payload")
    for pos, ch in enumerate(text):
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn"):
            raise CccdError(f"contains control character U+{ord(ch):04X} at position {pos}")
    fields = [f.strip() for f in text.split("|")]
    if len(fields) != FIELD_COUNT:
        raise CccdError(f"expected {FIELD_COUNT} fields separated by '|', got {len(fields)}")
    id_number, old_id, name, dob_s, sex_s, address, issue_s = fields

    _check_digits(id_number, 12, "ID number")
    if id_number[:3] not in PROVINCE_CODES:
        raise CccdError(f"ID number starts with {id_number[:3]}, which is not a province code")
    if old_id:
        _check_digits(old_id, 9, "old ID number")
    if not name:
        raise CccdError("full name is empty")
    for ch in name:
        if not (ch.isalpha() or unicodedata.category(ch).startswith("M") or ch in _NAME_PUNCT):
            raise CccdError(f"full name contains {ch!r}, which is not a letter")
    dob = _date(dob_s, "date of birth", today)
    sex = _sex(sex_s)
    if not address:
        raise CccdError("address is empty")
    issued = _date(issue_s, "issue date", today)
    if issued < dob:
        raise CccdError(f"issue date {issue_s} is before the date of birth {dob_s}")
    _check_id_matches(id_number, dob, sex)
    return Cccd(id_number, old_id or None, name, dob, sex, address, issued)


def _check_digits(value: str, length: int, what: str) -> None:
    if not _DIGITS.fullmatch(value):
        raise CccdError(f"{what} must be {length} digits, got non-digit characters")
    if len(value) != length:
        raise CccdError(f"{what} must be {length} digits, got {len(value)}")


def _date(value: str, what: str, today: dt.date) -> dt.date:
    if not (_DIGITS.fullmatch(value) and len(value) == 8):
        raise CccdError(f"{what} must be ddmmyyyy (8 digits), got {value!r}")
    try:
        day = dt.date(int(value[4:]), int(value[2:4]), int(value[:2]))
    except ValueError:
        raise CccdError(f"{what} {value} is not a real date") from None
    if day.year < 1900:
        raise CccdError(f"{what} {value} is before 1900")
    if day > today:
        raise CccdError(f"{what} {value} is in the future")
    return day


def _sex(value: str) -> str:
    folded = value.casefold()
    if folded == "nam":
        return "Nam"
    if folded in ("nữ", "nu"):
        return "Nữ"
    raise CccdError(f"sex must be 'Nam' or 'Nữ', got {value!r}")


def _check_id_matches(id_number: str, dob: dt.date, sex: str) -> None:
    code = int(id_number[3])
    century = 1900 + 100 * (code // 2)
    female = code % 2 == 1
    encoded_year = century + int(id_number[4:6])
    if encoded_year != dob.year:
        raise CccdError(f"ID number encodes birth year {encoded_year}, but the date of birth is in {dob.year}")
    if female != (sex == "Nữ"):
        raise CccdError(f"ID number encodes sex {'Nữ' if female else 'Nam'}, but the card says {sex}")
