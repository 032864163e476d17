"""The wire contract: signatures, chain hashes, topics."""

from __future__ import annotations

import hashlib

import pytest
from nacl.signing import SigningKey

from contract import (
    GENESIS_HASH,
    Ack,
    ContractError,
    DeviceTime,
    Kind,
    Proof,
    RecordBody,
    SignatureError,
    Topics,
    decode_signed,
    device_id_from_public_key,
    encode_signed,
    open_templates,
    parse_record,
    seal_templates,
    sign_record,
    verify_record,
)
from edge_agent.outbox import Outbox


def body(key: SigningKey, seq: int = 1, prev: str = GENESIS_HASH, **over) -> RecordBody:
    fields = dict(
        device=device_id_from_public_key(key.verify_key), seq=seq, prev=prev, meeting="M1", member="U1",
        proof=Proof(card_kind="member_card", face_distance=0.3123, face_threshold=0.5),
        time=DeviceTime(wall="2026-11-25T01:00:00.000Z", synced=False, boot_id="b", monotonic=5.0),
    )
    fields.update(over)
    return RecordBody(**fields)


def test_record_round_trip_verifies_and_hash_is_stable():
    key = SigningKey.generate()
    record = sign_record(key, body(key))
    parsed = parse_record(record.to_wire())
    verify_record(key.verify_key, parsed)
    assert parsed.hash == record.hash
    assert parsed.to_wire() == record.to_wire()


def test_tampered_record_fails_verification():
    key = SigningKey.generate()
    wire = sign_record(key, body(key)).to_wire().replace(b'"U1"', b'"U2"')
    with pytest.raises(SignatureError):
        verify_record(key.verify_key, parse_record(wire))


def test_record_from_another_key_is_refused():
    key, other = SigningKey.generate(), SigningKey.generate()
    record = sign_record(key, body(key))
    with pytest.raises(ContractError):
        verify_record(other.verify_key, record)


def test_cannot_sign_for_another_device():
    key, other = SigningKey.generate(), SigningKey.generate()
    with pytest.raises(ContractError):
        sign_record(key, body(other))


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b"not json", "not JSON"),
        (b"[1]", "not a JSON object"),
        (b'{"v": 2}', "unsupported record version"),
        (b'{"v": 1, "device": "x"}', "does not match"),
        (b"{" + b" " * 5000 + b"}", "limit"),
    ],
)
def test_malformed_records_are_refused_with_a_reason(payload, reason):
    with pytest.raises(ContractError, match=reason):
        parse_record(payload)


def test_the_outbox_chains_each_record_to_the_bytes_of_the_one_before(tmp_path):
    """The chain as the kiosk computes it: record 1 names the genesis hash, every later one
    the SHA-256 of the exact bytes the device sent before it (computed here independently)."""
    key = SigningKey.generate()
    outbox = Outbox(tmp_path / "outbox.sqlite3", signing_key=key)
    try:
        for member in ("U1", "U2", "U3"):
            outbox.append(meeting="M1", member=member, proof=Proof(card_kind="member_card", face_distance=0.3, face_threshold=0.5),
                          time_reading=DeviceTime(wall="2026-11-25T01:00:00.000Z", synced=True, boot_id="b", monotonic=5.0))
        sent = [q.payload for q in outbox.after(0, 10)]
        head = outbox.head()
    finally:
        outbox.close()
    records = [parse_record(p) for p in sent]
    assert [r.seq for r in records] == [1, 2, 3]
    assert records[0].prev == "0" * 64 == GENESIS_HASH
    assert records[1].prev == hashlib.sha256(sent[0]).hexdigest()
    assert records[2].prev == hashlib.sha256(sent[1]).hexdigest()
    assert head == (3, hashlib.sha256(sent[2]).hexdigest())
    for r in records:
        verify_record(key.verify_key, r)


def test_signed_ack_and_tamper():
    central = SigningKey.generate()
    wire = encode_signed(central, Ack(device="d1", seq=3, hash="h", at="t"))
    assert decode_signed(central.verify_key, wire, Ack).seq == 3
    with pytest.raises(SignatureError):
        decode_signed(central.verify_key, wire.replace(b'"seq":3', b'"seq":9'), Ack)
    with pytest.raises(SignatureError):
        decode_signed(SigningKey.generate().verify_key, wire, Ack)


def test_templates_open_only_for_their_device():
    device, other = SigningKey.generate(), SigningKey.generate()
    sealed = seal_templates(device.verify_key, {"U1": [[0.5] * 128]})
    assert open_templates(device, sealed)["U1"][0][0] == 0.5
    with pytest.raises(ContractError):
        open_templates(other, sealed)


def test_topics_parse_and_reject():
    t = Topics("hall/v1")
    assert t.attendance("d1") == "hall/v1/d1/attendance"
    assert t.parse("hall/v1/d1/attendance") == ("d1", Kind.ATTENDANCE)
    assert t.parse("hall/v1/d2/ack") == ("d2", Kind.ACK)
    assert t.parse("hall/v1/d3/status") == ("d3", Kind.STATUS)
    assert t.parse("hall/v1/d4/bundle") == ("d4", Kind.BUNDLE)
    for bad in ("other/d1/attendance", "hall/v1/d1/unknown", "hall/v1/d1"):
        with pytest.raises(ContractError):
            t.parse(bad)
    with pytest.raises(ContractError):
        t.attendance("d1/+")
