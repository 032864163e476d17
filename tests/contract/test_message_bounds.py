"""Bounds the contract puts on what a device sends: status size and fields, the monotonic clock reading."""

from __future__ import annotations

import json

import pytest
from nacl.signing import SigningKey

from contract import (
    GENESIS_HASH,
    ContractError,
    decode_status,
    device_id_from_public_key,
    encode_status,
    parse_record,
)
from contract.keys import sign_object
from contract.messages import MAX_FAULTS, MAX_STATUS_BYTES, Status, StreamState


def _status(**fields) -> bytes:
    return json.dumps({"v": 1, "device": "d1", "state": "online", **fields}).encode()


def test_a_status_like_the_kiosks_passes_and_round_trips():
    full = Status(device="d" + "0" * 32, state="online", at="2030-01-01T00:00:00.000Z", version="0.1.0", hall="HALL-AN-BINH",
                  uptime_s=12.5, queue_depth=3, oldest_unsent_age_s=1.0, last_ack_seq=9, last_ack_at="2030-01-01T00:00:00.000Z",
                  in_flight=2, bundle_version=4, disk_free_bytes=10**10, temperature_c=51.2, clock_synced=True,
                  faults=["no roster from central yet", "outbox full: check-ins refused until central acknowledges queued records"],
                  stream=StreamState(state="reconnecting", detail="x" * 300, oldest_kept="2030-01-01T00:00:00Z"))
    assert decode_status(encode_status(full)) == full


@pytest.mark.parametrize("payload, why", [
    (_status(faults=["f"]) + b" " * MAX_STATUS_BYTES, f"limit {MAX_STATUS_BYTES}"),  # 1 MB was stored and served before
    (_status(faults=["f"] * (MAX_FAULTS + 1)), "faults"),
    (_status(faults=["x" * 301]), "300"),
    (_status(version="v" * 65), "64"),
    (_status(hall="h" * 65), "64"),
    (_status(stream={"state": "live", "detail": "d" * 301}), "300"),
])
def test_an_oversize_status_or_field_is_refused_with_a_reason(payload, why):
    with pytest.raises(ContractError) as refused:
        decode_status(payload)
    assert why in str(refused.value) or "at most" in str(refused.value)


@pytest.mark.parametrize("monotonic", [1e18, 1e9 + 1, "Infinity", "NaN", -1])
def test_a_signed_record_with_an_impossible_monotonic_reading_is_refused(monotonic):
    key = SigningKey.generate()
    body = {"v": 1, "device": device_id_from_public_key(key.verify_key), "seq": 1, "prev": GENESIS_HASH, "meeting": "mt1",
            "member": "m1", "proof": {"card_kind": "member_card", "face_distance": 0.3, "face_threshold": 0.5,
                                      "liveness": None, "override": None},
            "time": {"wall": "2030-01-01T00:00:00.000Z", "synced": True, "boot_id": "b1", "monotonic": 1.0}}
    signed = sign_object(key, body)
    text = json.dumps(signed).replace('"monotonic": 1.0', f'"monotonic": {monotonic}')
    with pytest.raises(ContractError, match="time.monotonic"):
        parse_record(text.encode())
