"""The attendance record: what a device signs, chains and sends.

Wire form: the UTF-8 canonical JSON (RFC 8785) of a ``SignedRecord``. The
signature covers every other field; the record's hash (``record_hash``) covers
the signed form, and the next record of the same device carries it as ``prev``,
so a deleted, reordered or altered record breaks the chain visibly.
"""

from __future__ import annotations

from typing import Any, Literal

from nacl.signing import SigningKey, VerifyKey
from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, ValidationError, model_serializer

from .canonical import GENESIS_HASH, canonical_bytes, sha256_hex
from .errors import ContractError
from .keys import device_id_from_public_key, sign_object, verify_object
from .wire import first_error, json_object

RECORD_VERSION = 1
MAX_RECORD_BYTES = 4096  # a record is a few hundred bytes; anything huge is refused unread
MAX_MONOTONIC_S = 1e9  # seconds since boot: about 31 years

CardKind = Literal["member_card", "cccd_qr", "cccd_camera"]
# The face check a secretary's override stood in for (checkin.Outcome values).
OverrideReason = Literal["face_mismatch", "no_template", "not_live", "no_face", "no_camera", "face_down"]
# Fields added after records were first signed: left out of the dump while unset, so a record from a
# kiosk that predates them has the same canonical bytes (and signature) as before.
_OMITTED_WHEN_NONE = ("override_reason",)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Proof(_Strict):
    """How the member's identity was proven at the kiosk."""

    card_kind: CardKind
    face_distance: float | None = Field(None, ge=0, description="distance to the enrolled template; None if overridden")
    face_threshold: float | None = Field(None, ge=0, description="threshold in force when the decision was made")
    liveness: str | None = Field(None, description="liveness check result; None when not performed")
    override: str | None = Field(None, description="who overrode a failed face check (secretary id), if anyone")
    override_reason: OverrideReason | None = Field(None, description="which face check failed before the override")

    @model_serializer(mode="wrap")
    def _omit_unset_newer_fields(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        for key in _OMITTED_WHEN_NONE:
            if data.get(key) is None:
                data.pop(key, None)
        return data


class DeviceTime(_Strict):
    """The device's clock reading with the evidence central needs to place it."""

    wall: str = Field(description="device wall clock, ISO 8601 UTC")
    synced: bool = Field(description="was the clock NTP-synchronised when the record was made")
    boot_id: str = Field(description="kernel boot id; monotonic is only comparable within one boot")
    # No running system has been up for 31 years; a bigger (or non-finite) reading is refused before
    # central does arithmetic with it. A kiosk builds its records through this model too, so it can
    # never sign a record central would refuse for this.
    monotonic: float = Field(ge=0, le=MAX_MONOTONIC_S, allow_inf_nan=False, description="seconds since boot (CLOCK_MONOTONIC)")


class RecordBody(_Strict):
    v: Literal[1] = RECORD_VERSION
    device: str = Field(min_length=1, max_length=64)
    seq: int = Field(ge=1)
    prev: str = Field(pattern=r"^[0-9a-f]{64}$")
    meeting: str = Field(min_length=1, max_length=64)
    member: str = Field(min_length=1, max_length=64)
    proof: Proof
    time: DeviceTime


class SignedRecord(RecordBody):
    sig: str = Field(min_length=80, max_length=90)

    @property
    def body(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"sig"})

    def to_wire(self) -> bytes:
        return canonical_bytes(self.model_dump(mode="json"))

    @property
    def hash(self) -> str:
        return record_hash(self)


def record_hash(record: SignedRecord) -> str:
    return sha256_hex(record.to_wire())


def sign_record(key: SigningKey, body: RecordBody) -> SignedRecord:
    expected = device_id_from_public_key(key.verify_key)
    if body.device != expected:
        raise ContractError(f"record claims device {body.device}, key is {expected}")
    signed = sign_object(key, body.model_dump(mode="json"))
    return SignedRecord.model_validate(signed)


def parse_record(payload: bytes) -> SignedRecord:
    """Parse wire bytes into a record (shape only; the signature is checked by ``verify_record``)."""
    data = json_object(payload, limit=MAX_RECORD_BYTES, what="record", version=RECORD_VERSION)
    try:
        return SignedRecord.model_validate(data)
    except ValidationError as exc:
        raise ContractError(f"record does not match the contract: {first_error(exc, 'record')}") from exc


def verify_record(key: VerifyKey, record: SignedRecord) -> None:
    """Raise SignatureError unless ``record`` was signed by ``key`` and names that key's device."""
    if device_id_from_public_key(key) != record.device:
        raise ContractError("record's device id does not match the key")
    verify_object(key, record.model_dump(mode="json"))


__all__ = [
    "GENESIS_HASH",
    "CardKind",
    "OverrideReason",
    "DeviceTime",
    "Proof",
    "RecordBody",
    "SignedRecord",
    "parse_record",
    "record_hash",
    "sign_record",
    "verify_record",
]
