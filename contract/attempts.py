"""A refused check-in attempt: what a kiosk tells central about a tap that did not check anyone in.

Staff read the mix of outcomes per hall (a jump in face mismatches or unknown cards is worth
a look), so each refusal travels as its own small message, signed by the device key like a
record but outside the record chain: attempts have their own per-device ``seq`` (central
keeps each (device, seq) once) and never count as attendance.

What it may carry is deliberately little: the outcome, the member id when the card was known,
the meeting, what the face check measured, the device's time. Never a name, photo, template,
CCCD number or the UID of an unknown card: at most ``card_ref``, a keyed hash the kiosk
computes with a secret of its own, so central sees that one unknown card keeps coming back
to one kiosk without learning which card it is.

Wire form: the canonical JSON (RFC 8785) of a ``SignedAttempt``; ``sig`` covers every other field.
"""

from __future__ import annotations

from typing import Literal

from nacl.signing import SigningKey, VerifyKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .canonical import canonical_bytes, sha256_hex
from .errors import ContractError
from .keys import device_id_from_public_key, sign_object, verify_object
from .records import CardKind, DeviceTime
from .wire import first_error, json_object

ATTEMPT_VERSION = 1
# An attempt is about 400 bytes; anything much larger is refused before it is parsed.
MAX_ATTEMPT_BYTES = 2048

# Every kiosk outcome that checks nobody in (edge_agent.checkin.Outcome); a test keeps the two in step.
RefusedOutcome = Literal[
    "face_mismatch", "no_face", "several_faces", "too_far", "no_camera", "face_error", "face_restarting",
    "face_down", "system_error", "no_template", "not_live", "unknown_card", "other_cell", "no_meeting", "bad_qr",
    "no_roster", "disk_full", "override_not_officer", "override_no_pin", "override_wrong_pin", "override_locked",
]


class AttemptBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = ATTEMPT_VERSION
    device: str = Field(min_length=1, max_length=64)
    seq: int = Field(ge=1, le=2**53 - 1, description="the device's own attempt counter, separate from records")
    outcome: RefusedOutcome
    card_kind: CardKind | None = None
    card_ref: str | None = Field(None, pattern=r"^[0-9a-f]{16}$",
                                 description="keyed hash of an unknown card or QR, so repeats show; never the card itself")
    member: str | None = Field(None, min_length=1, max_length=64, description="member id, when the card was known")
    meeting: str | None = Field(None, min_length=1, max_length=64)
    face_distance: float | None = Field(None, ge=0, le=100, allow_inf_nan=False)
    face_threshold: float | None = Field(None, ge=0, le=100, allow_inf_nan=False)
    liveness: str | None = Field(None, max_length=120, description="the face worker's liveness measure, as in records")
    time: DeviceTime


class SignedAttempt(AttemptBody):
    sig: str = Field(min_length=80, max_length=90)

    def to_wire(self) -> bytes:
        return canonical_bytes(self.model_dump(mode="json", exclude_none=True))

    @property
    def hash(self) -> str:
        return sha256_hex(self.to_wire())


def sign_attempt(key: SigningKey, body: AttemptBody) -> SignedAttempt:
    expected = device_id_from_public_key(key.verify_key)
    if body.device != expected:
        raise ContractError(f"attempt claims device {body.device}, key is {expected}")
    # Unset fields are left out of what is signed: an attempt says only what was measured.
    return SignedAttempt.model_validate(sign_object(key, body.model_dump(mode="json", exclude_none=True)))


def parse_attempt(payload: bytes) -> SignedAttempt:
    """Shape only, size first; ``verify_attempt`` checks the signature."""
    data = json_object(payload, limit=MAX_ATTEMPT_BYTES, what="attempt", version=ATTEMPT_VERSION)
    try:
        return SignedAttempt.model_validate(data)
    except ValidationError as exc:
        raise ContractError(f"attempt does not match the contract: {first_error(exc, 'attempt')}") from exc


def verify_attempt(key: VerifyKey, attempt: SignedAttempt) -> None:
    """Raise SignatureError (a ContractError) unless ``key`` signed ``attempt`` and it names that key's device."""
    if device_id_from_public_key(key) != attempt.device:
        raise ContractError("attempt's device id does not match the key")
    verify_object(key, attempt.model_dump(mode="json", exclude_none=True))
