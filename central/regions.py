"""Vietnam's provinces and communes since the 2025 reform (34 provinces, 3,321 communes and wards), for halls.

The list comes from the ``vietnam-provinces`` package (its data follows the General Statistics Office's
list of new units, in force from 1 July 2025); ``DATA_VERSION`` says which edition is installed. Staff type
names as they say them: "Bắc Ninh", "tỉnh Bắc Ninh", "bac ninh", "TP Hồ Chí Minh", "xã Gia Bình", so a name
is matched without its diacritics, case or the kind of unit in front ("Tỉnh", "Thành phố", "Xã", "Phường",
"Đặc khu"), and the hall stores the official spelling and the official code.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from dataclasses import dataclass

import vietnam_provinces

from .errors import RegistryError

DATA_VERSION = vietnam_provinces.__data_version__
_UNITS = ("thành phố", "tp.", "tp", "tỉnh", "xã", "phường", "đặc khu", "thị trấn")


@dataclass(frozen=True)
class Place:
    name: str  # official spelling, unit included for communes ("Xã Gia Bình") and cities ("Thành phố Hà Nội")
    code: int


def bare(text: str) -> str:
    """Lower case, single spaces, without the unit's kind in front; diacritics kept."""
    text = re.sub(r"\s+", " ", unicodedata.normalize("NFC", (text or "").strip().lower()))
    for unit in _UNITS:
        if text.startswith(unit + " "):
            return text[len(unit) + 1:].strip()
    return text


def folded(text: str) -> str:
    """``bare`` without diacritics (đ -> d): what someone typing without Vietnamese input still gets right."""
    text = unicodedata.normalize("NFD", bare(text).replace("đ", "d"))
    return "".join(c for c in text if unicodedata.category(c) != "Mn")


@functools.cache
def _divisions() -> dict[str, tuple[Place, dict[str, list[Place]]]]:
    """Folded province name -> (province, folded commune name -> communes of that name)."""
    out: dict[str, tuple[Place, dict[str, list[Place]]]] = {}
    for p in json.loads(vietnam_provinces.NESTED_DIVISIONS_JSON_PATH.read_text(encoding="utf-8")):
        communes: dict[str, list[Place]] = {}
        for w in p["wards"]:
            communes.setdefault(folded(w["name"]), []).append(Place(w["name"], int(w["code"])))
        out[folded(p["name"])] = (Place(p["name"], int(p["code"])), communes)
    return out


def provinces() -> list[Place]:
    return sorted((p for p, _ in _divisions().values()), key=lambda p: p.code)


def province(name: str) -> Place:
    """The province called ``name``; RegistryError naming the list otherwise."""
    found = _divisions().get(folded(name))
    if found is None:
        raise RegistryError(f"no province {name!r} among the {len(_divisions())} provinces and cities since the 2025 "
                            f"reform (list {DATA_VERSION}): {', '.join(p.name for p in provinces())}")
    return found[0]


def commune(province_name: str, name: str) -> Place:
    """The commune or ward called ``name`` in that province; RegistryError otherwise.

    Ten provinces have two communes whose names differ only in diacritics ("Xã Văn Lăng", "Xã Văn Lang"):
    there the diacritics decide, and without them the name is refused as ambiguous.
    """
    prov, communes = _divisions()[folded(province(province_name).name)]
    matches = communes.get(folded(name), [])
    if len(matches) > 1:
        exact = [c for c in matches if bare(c.name) == bare(name)]
        if len(exact) != 1:
            raise RegistryError(f"{name!r} in {prov.name} is ambiguous: say which, {' or '.join(c.name for c in matches)}")
        matches = exact
    if not matches:
        near = sorted(c.name for key, cs in communes.items() for c in cs if folded(name)[:3] and key.startswith(folded(name)[:3]))
        hint = f" (similar: {', '.join(near[:8])})" if near else ""
        raise RegistryError(f"no commune or ward {name!r} in {prov.name} (list {DATA_VERSION}){hint}")
    return matches[0]


def commune_codes(name: str, province_name: str | None = None) -> tuple[int, ...]:
    """Codes of the communes called ``name`` (in that province, else in any): for filters, where a commune
    named without its province means all of that name. RegistryError if there is none."""
    if province_name is not None:
        return (commune(province_name, name).code,)
    codes = tuple(c.code for _, communes in _divisions().values() for c in communes.get(folded(name), [])
                  if bare(c.name) == bare(name) or folded(c.name) == folded(name))
    if not codes:
        raise RegistryError(f"no commune or ward {name!r} in any province (list {DATA_VERSION})")
    return codes
