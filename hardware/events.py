"""What every card reader hands to the check-in flow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

CardKind = Literal["member_card", "cccd_qr", "cccd_camera"]


@dataclass(frozen=True)
class CardEvent:
    """One tap or scan.

    ``value`` is, for a member card, the UID in upper-case hex without separators
    ("04A1B2C3D4E5F6"); for a QR code, the decoded text line, unparsed (the
    check-in flow parses it so that the reason for a rejection reaches the page).
    ``source`` names the reader, e.g. "pn532:/dev/ttyS0" or "qr:/dev/pts/6".
    """

    kind: CardKind
    value: str
    source: str
