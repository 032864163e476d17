"""Messages other than records: acks and bundles (central → device), status (device → central).

Acks and bundles are signed by central's Ed25519 key; the device holds central's
public key from provisioning and ignores anything that does not verify. The roster
(names, CCCD numbers, card UIDs) and the face templates inside a bundle are sealed
(libsodium sealed box) to the device's own X25519 key, derived from its Ed25519
signing key, so a retained bundle on the broker reveals no personal or biometric
data to anyone but that device.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from nacl.public import PrivateKey, SealedBox
from nacl.signing import SigningKey, VerifyKey
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_serializer,
)

from .canonical import canonical_bytes
from .errors import ContractError
from .keys import b64d, b64e, sign_object, verify_object

MESSAGE_VERSION = 1
BUNDLE_VERSION = 2  # 2: the roster is sealed to the device (members_sealed), like the templates
TEMPLATE_DIMENSIONS = 128
# A kiosk's status is well under 2 KiB; the limits leave room and refuse the rest unread.
MAX_STATUS_BYTES = 8 * 1024
MAX_FAULTS = 16
SHORT_TEXT = 64  # ids, versions, times
LONG_TEXT = 300  # human-readable details and faults (the kiosk cuts ffmpeg's detail to 300)

ShortText = Annotated[str, StringConstraints(max_length=SHORT_TEXT)]
LongText = Annotated[str, StringConstraints(max_length=LONG_TEXT)]


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Ack(_Msg):
    """Central has stored every record of ``device`` up to ``seq`` with an unbroken chain."""

    v: Literal[1] = MESSAGE_VERSION
    device: str
    seq: int = Field(ge=0)
    hash: str = Field(description="hash of record `seq` (genesis hash when seq is 0)")
    at: str = Field(description="central time of the ack, ISO 8601 UTC")


class StreamState(_Msg):
    state: Literal["live", "reconnecting", "recording-only", "stopped"] = "stopped"
    detail: LongText | None = None
    fps: float | None = None
    bitrate_kbps: float | None = None
    dropped_frames: int | None = None
    restarts: int | None = None
    push_down_s: float | None = None
    recording_bytes: int | None = None
    recording_deleted_segments: int | None = Field(None, description="segments the disk quota forced out")
    recording_deleted_bytes: int | None = None
    oldest_kept: ShortText | None = Field(None, description="oldest local recording segment still on disk")


class ReaderSeen(_Msg):
    """When a reader last delivered an event (a tap, a scan), device time."""

    reader: ShortText
    last_event_at: ShortText | None = None


MAX_READERS = 4
MAX_THROTTLE_WORDS = 8


class Status(_Msg):
    """Retained heartbeat of a device; the last will publishes ``state='offline'``.

    Bounded (text lengths, ``MAX_FAULTS``; ``decode_status`` refuses more than
    ``MAX_STATUS_BYTES`` unread): central stores and serves the last one of every kiosk.
    """

    v: Literal[1] = MESSAGE_VERSION
    device: ShortText
    state: Literal["online", "offline"]
    at: ShortText | None = None
    version: ShortText | None = None
    hall: ShortText | None = None
    uptime_s: float | None = None
    queue_depth: int | None = None
    oldest_unsent_age_s: float | None = None
    last_ack_seq: int | None = None
    last_ack_at: ShortText | None = Field(None, description="when central's last ack arrived (device clock)")
    in_flight: int | None = Field(None, description="records sent and not yet acknowledged")
    bundle_version: int | None = None
    disk_free_bytes: int | None = None
    temperature_c: float | None = None
    clock_synced: bool | None = None
    stream: StreamState | None = None
    faults: list[LongText] = Field(default_factory=list, max_length=MAX_FAULTS)
    # Health (edge_agent/health_probe.py); each None where the kiosk cannot know it (e.g. not on a Pi).
    memory_used_bytes: int | None = Field(None, ge=0)
    memory_total_bytes: int | None = Field(None, ge=0)
    throttled: int | None = Field(None, ge=0, description="the Pi firmware's get_throttled bits")
    throttled_words: list[ShortText] | None = Field(None, max_length=MAX_THROTTLE_WORDS,
                                                    description="those bits in words: under-voltage now, throttled has occurred…")
    boot_count: int | None = Field(None, ge=0)
    last_reboot: ShortText | None = Field(None, description="watchdog | not watchdog, when the watchdog says")
    ip: ShortText | None = Field(None, description="address of the default route's interface")
    camera_fps: float | None = Field(None, ge=0)
    readers: list[ReaderSeen] | None = Field(None, max_length=MAX_READERS)
    software: ShortText | None = Field(None, description="package version and git describe when known")
    attempts_queued: int | None = Field(None, ge=0, description="refused attempts not yet delivered to central")
    attempts_dropped: int | None = Field(None, ge=0, description="refused attempts dropped (oldest first) to stay bounded")


class Member(_Msg):
    id: str
    name: str
    cell: str
    cards: list[str] = Field(default_factory=list, description="member-card UIDs, upper-case hex")
    cccd: str | None = Field(None, description="12-digit CCCD number")


def _drop_none(data: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    for key in keys:
        if data.get(key) is None:
            data.pop(key, None)
    return data


class Meeting(_Msg):
    id: str
    cell: str
    hall: str
    title: str
    starts_at: str
    ends_at: str
    # The officers who may confirm a member whose face check failed (member ids of the meeting's cell).
    secretary: str | None = None
    chair: str | None = None

    @model_serializer(mode="wrap")
    def _omit_unset_officers(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # A meeting without officers dumps exactly as before they existed, so a kiosk that predates
        # them (extra="forbid") still accepts a bundle until officers are named.
        return _drop_none(handler(self), ("secretary", "chair"))


class Bundle(_Msg):
    """What a kiosk needs to work offline: its hall's sealed roster and templates, and its schedule."""

    v: Literal[2] = BUNDLE_VERSION
    device: str
    hall: str
    version: int = Field(ge=1, description="monotonic; a device refuses a bundle older than the one it has")
    issued_at: str
    members_sealed: str = Field(description="sealed box to the device: JSON [Member, ...] (names, CCCD numbers, card UIDs)")
    meetings: list[Meeting]
    templates_sealed: str = Field(description="sealed box to the device: JSON {member id: [[128 floats], ...]}")
    pins_sealed: str | None = Field(None, description="sealed box to the device: JSON {officer member id: argon2 PIN hash}")

    @model_serializer(mode="wrap")
    def _omit_unset_pins(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _drop_none(handler(self), ("pins_sealed",))


def encode_signed(key: SigningKey, msg: _Msg) -> bytes:
    return canonical_bytes(sign_object(key, msg.model_dump(mode="json")))


def decode_signed(key: VerifyKey, payload: bytes, model: type[_Msg]) -> Any:
    """Verify central's signature over ``payload`` and parse it as ``model``."""
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ContractError(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ContractError("message is not a JSON object")
    body = verify_object(key, data)
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise ContractError(f"{model.__name__} does not match the contract: {exc.errors()[0]['msg']}") from exc


def encode_status(status: Status) -> bytes:
    return canonical_bytes(status.model_dump(mode="json", exclude_none=True))


def decode_status(payload: bytes) -> Status:
    if len(payload) > MAX_STATUS_BYTES:
        raise ContractError(f"status is {len(payload)} bytes, limit {MAX_STATUS_BYTES}")
    try:
        return Status.model_validate_json(payload)
    except ValidationError as exc:
        raise ContractError(f"status does not match the contract: {exc.errors()[0]['msg']}") from exc


def _unseal(device_key: SigningKey, sealed: str, what: str) -> bytes:
    """The plaintext of a box sealed to this device; ContractError "<what> not sealed to this device" otherwise."""
    private: PrivateKey = device_key.to_curve25519_private_key()
    try:
        return SealedBox(private).decrypt(b64d(sealed))
    except Exception as exc:  # nacl raises CryptoError subclasses
        raise ContractError(f"{what} not sealed to this device") from exc


def seal_templates(device_signing_public: VerifyKey, templates: dict[str, list[list[float]]]) -> str:
    for member, encodings in templates.items():
        for enc in encodings:
            if len(enc) != TEMPLATE_DIMENSIONS:
                raise ContractError(f"template of {member} has {len(enc)} dimensions")
    box = SealedBox(device_signing_public.to_curve25519_public_key())
    return b64e(box.encrypt(json.dumps(templates).encode()))


def open_templates(device_key: SigningKey, sealed: str) -> dict[str, list[list[float]]]:
    return json.loads(_unseal(device_key, sealed, "templates are"))


_MEMBERS = TypeAdapter(list[Member])
MAX_PIN_HASH = 200  # an argon2id PHC string is about 100 characters
_PINS = TypeAdapter(dict[ShortText, Annotated[str, StringConstraints(max_length=MAX_PIN_HASH)]])


def seal_pins(device_signing_public: VerifyKey, pins: dict[str, str]) -> str:
    """Officers' PIN hashes sealed to one device: a hash of a 4-8 digit PIN falls to a brute force, so only
    the kiosk that checks it may read it."""
    box = SealedBox(device_signing_public.to_curve25519_public_key())
    return b64e(box.encrypt(_PINS.dump_json(pins)))


def open_pins(device_key: SigningKey, sealed: str) -> dict[str, str]:
    plain = _unseal(device_key, sealed, "the officers' PINs are")
    try:
        return _PINS.validate_json(plain)
    except ValidationError as exc:
        raise ContractError(f"sealed PINs do not match the contract: {exc.errors()[0]['msg']}") from exc


def seal_members(device_signing_public: VerifyKey, members: list[Member]) -> str:
    """The roster sealed to one device: a retained bundle must not show who belongs to a cell."""
    box = SealedBox(device_signing_public.to_curve25519_public_key())
    return b64e(box.encrypt(_MEMBERS.dump_json(members)))


def open_members(device_key: SigningKey, sealed: str) -> list[Member]:
    plain = _unseal(device_key, sealed, "the roster is")
    try:
        return _MEMBERS.validate_json(plain)
    except ValidationError as exc:
        raise ContractError(f"sealed roster does not match the contract: {exc.errors()[0]['msg']}") from exc
