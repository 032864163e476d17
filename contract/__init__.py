"""The wire contract between kiosks and central. Both sides import only this."""

from .canonical import GENESIS_HASH, canonical_bytes, sha256_hex
from .errors import ContractError, HallError, SignatureError
from .keys import (
    device_id_from_public_key,
    public_key_text,
    sign_object,
    verify_key_from_text,
    verify_object,
)
from .messages import (
    Ack,
    Bundle,
    Meeting,
    Member,
    Status,
    StreamState,
    decode_signed,
    decode_status,
    encode_signed,
    encode_status,
    open_members,
    open_templates,
    seal_members,
    seal_templates,
)
from .records import (
    DeviceTime,
    Proof,
    RecordBody,
    SignedRecord,
    parse_record,
    record_hash,
    sign_record,
    verify_record,
)
from .topics import DEFAULT_PREFIX, QOS, RETAIN, Kind, Topics

__all__ = [name for name in dir() if not name.startswith("_")]
