"""Enrolment: members with face photos become members with encrypted templates.

Photos are read, encoded (128 numbers per face) and forgotten: only the
encodings are stored, encrypted with the template key. A photo without exactly
one usable face refuses the whole member with the photo's name and the reason,
so nobody is enrolled with fewer templates than the operator thinks.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nacl.secret import SecretBox

from contract.errors import HallError

from . import registry
from .errors import EnrolmentError
from .store import Store

log = logging.getLogger("central.enrolment")

Encoder = Callable[[Path], list[float]]
CSV_REQUIRED = ("id", "name", "cell", "photos")
CSV_COLUMNS = ("id", "name", "cell", "cccd", "cards", "photos")


def default_encoder() -> Encoder:
    """The kiosk's own face pipeline, so enrolment and verification encode faces the same way.

    Imported on first use: it loads OpenCV and, when called, the dlib models.
    """
    from edge_agent.face.pipeline import encode_photo

    return encode_photo


def encode_photos(photos: Sequence[Path], encode: Encoder | None = None) -> list[list[float]]:
    if not photos:
        raise EnrolmentError("at least one face photo is needed")
    encode = encode or default_encoder()
    out = []
    for photo in photos:
        if not Path(photo).is_file():
            raise EnrolmentError(f"{photo}: no such file")
        try:
            out.append([float(x) for x in encode(Path(photo))])
        except (HallError, ValueError, OSError) as exc:
            reason = str(exc)
            raise EnrolmentError(reason if Path(photo).name in reason else f"{Path(photo).name}: {reason}") from exc
    return out


@dataclass
class Enrolled:
    member_id: str
    new: bool
    templates: int


def enrol_member(
    store: Store,
    box: SecretBox,
    *,
    member_id: str,
    name: str,
    cell: str,
    photos: Sequence[Path],
    cccd: str | None = None,
    cards: Sequence[str] = (),
    encode: Encoder | None = None,
) -> Enrolled:
    """Create or update a member and replace their templates with encodings of ``photos``."""
    # Cheap checks before the slow face work, so a typo fails at once.
    registry.check_id("member", member_id)
    registry.check_id("cell", cell)
    registry.check_member_conflicts(store, member_id, cccd=cccd, cards=cards)
    templates = encode_photos(photos, encode)
    new = registry.add_member(store, member_id, name, cell, cccd=cccd, cards=cards, templates=templates, box=box)
    log.info("%s member %s with %d template(s)", "enrolled" if new else "re-enrolled", member_id, len(templates))
    return Enrolled(member_id, new, len(templates))


@dataclass
class RowError:
    line: int
    member_id: str
    reason: str


@dataclass
class ImportReport:
    imported: list[Enrolled] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)


def _split(value: str | None) -> list[str]:
    return [p.strip() for p in (value or "").split(";") if p.strip()]


def _photo_path(photos_dir: Path, name: str) -> Path:
    path = (photos_dir / name).resolve()
    if photos_dir.resolve() not in path.parents:
        raise EnrolmentError(f"photo {name!r} is outside {photos_dir}")
    return path


def import_csv(store: Store, box: SecretBox, csv_path: Path, photos_dir: Path, *, encode: Encoder | None = None) -> ImportReport:
    """Import members from CSV (id,name,cell,cccd,cards,photos; lists ;-separated).

    Each bad row is reported with its line and reason; the good rows are imported.
    """
    report = ImportReport()
    encode = encode or default_encoder()
    seen: dict[str, int] = {}
    try:
        handle = open(csv_path, newline="", encoding="utf-8-sig")  # Excel writes a BOM
    except OSError as exc:
        raise EnrolmentError(f"cannot read {csv_path}: {exc}") from exc
    with handle:
        reader = csv.DictReader(handle)
        header = [h.strip() for h in reader.fieldnames or []]
        missing = [c for c in CSV_REQUIRED if c not in header]
        if missing:
            raise EnrolmentError(f"{csv_path}: missing column(s) {', '.join(missing)}; expected {','.join(CSV_COLUMNS)}")
        unknown = [c for c in header if c not in CSV_COLUMNS]
        if unknown:
            raise EnrolmentError(f"{csv_path}: unknown column(s) {', '.join(unknown)}; expected {','.join(CSV_COLUMNS)}")
        reader.fieldnames = header
        for row in reader:
            line = reader.line_num
            member_id = (row.get("id") or "").strip()
            try:
                if None in row:
                    raise EnrolmentError(f"{len(header) + len(row[None])} fields, the header has {len(header)}")  # type: ignore[index]
                if member_id in seen:
                    raise EnrolmentError(f"id {member_id} already appears on line {seen[member_id]}")
                seen[member_id] = line
                photos = [_photo_path(photos_dir, p) for p in _split(row.get("photos"))]
                report.imported.append(
                    enrol_member(
                        store, box, member_id=member_id, name=(row.get("name") or "").strip(), cell=(row.get("cell") or "").strip(),
                        cccd=(row.get("cccd") or "").strip() or None, cards=_split(row.get("cards")), photos=photos, encode=encode,
                    )
                )
            except (HallError, ValueError) as exc:
                report.errors.append(RowError(line, member_id, str(exc)))
                # The report carries each refusal to the caller; a warning too said it twice on the command line.
                log.debug("%s line %d (%s): %s", csv_path, line, member_id or "no id", exc)
    return report
