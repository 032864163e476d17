"""HSU frame codec: known bytes, round trips, and recovery from a noisy line."""

from __future__ import annotations

import pytest

from hardware.pn532 import (
    ACK_FRAME,
    ERROR_FRAME,
    NACK_FRAME,
    TFI_PN532,
    Ack,
    ErrorFrame,
    Frame,
    FrameParser,
    Nack,
    Rejected,
    build_frame,
)

FIRMWARE_RESPONSE = build_frame(bytes([0x03, 0x32, 0x01, 0x06, 0x07]), tfi=TFI_PN532)


def test_get_firmware_version_frame_has_the_datasheet_bytes():
    assert build_frame(b"\x02") == bytes.fromhex("0000FF02FED4022A00")


def test_sam_configuration_frame_has_the_datasheet_bytes():
    # SAMConfiguration normal mode, timeout 0x14, IRQ on, as seen in libnfc/Adafruit traces.
    assert build_frame(bytes([0x14, 0x01, 0x14, 0x01])) == bytes.fromhex("0000FF05FBD41401140102 00")


@pytest.mark.parametrize("payload", [b"\x02", bytes([0x4A, 1, 0]), bytes(range(200)), bytes(253)])
def test_normal_frames_round_trip(payload):
    assert FrameParser().feed(build_frame(payload)) == [Frame(0xD4, payload)]


def test_extended_frame_round_trips():
    payload = bytes(range(256)) + b"\x01\x02"
    raw = build_frame(payload)
    assert raw[3:5] == b"\xff\xff"
    assert FrameParser().feed(raw) == [Frame(0xD4, payload)]


def test_ack_nack_and_error_frames_are_recognised():
    assert FrameParser().feed(ACK_FRAME + NACK_FRAME + ERROR_FRAME) == [Ack(), Nack(), ErrorFrame()]


def test_frames_split_into_single_bytes_are_reassembled():
    parser = FrameParser()
    out = []
    for b in ACK_FRAME + FIRMWARE_RESPONSE:
        out += parser.feed(bytes([b]))
    assert out == [Ack(), Frame(0xD5, bytes([0x03, 0x32, 0x01, 0x06, 0x07]))]
    assert not parser.has_partial


def test_garbage_before_a_frame_is_rejected_and_the_frame_still_parsed():
    out = FrameParser().feed(b"\x13\x37hello" + FIRMWARE_RESPONSE)
    assert isinstance(out[0], Rejected) and out[0].reason == "garbage before a start code"
    assert b"hello" in out[0].raw
    assert out[1] == Frame(0xD5, bytes([0x03, 0x32, 0x01, 0x06, 0x07]))


def test_zero_bytes_between_frames_are_not_noise():
    assert FrameParser().feed(b"\x00" * 10 + ACK_FRAME + b"\x00" * 5) == [Ack()]


def test_bad_length_checksum_is_rejected_then_resynchronised():
    bad = bytearray(FIRMWARE_RESPONSE)
    bad[4] ^= 0x01  # LCS
    out = FrameParser().feed(bytes(bad) + ACK_FRAME)
    assert [type(i) for i in out] == [Rejected, Ack]
    assert out[0].reason.startswith("bad length checksum")


def test_bad_data_checksum_is_rejected_then_resynchronised():
    bad = bytearray(FIRMWARE_RESPONSE)
    bad[-2] ^= 0xFF  # DCS
    out = FrameParser().feed(bytes(bad) + FIRMWARE_RESPONSE)
    assert [type(i) for i in out] == [Rejected, Frame]
    assert out[0].reason.startswith("bad data checksum")


def test_truncated_frame_waits_then_is_rejected_on_expiry():
    parser = FrameParser()
    assert parser.feed(FIRMWARE_RESPONSE[:7]) == []
    assert parser.has_partial
    out = parser.expire()
    assert len(out) == 1 and out[0].reason.startswith("truncated frame")
    assert not parser.has_partial
    assert parser.feed(ACK_FRAME) == [Ack()]


def test_frame_hidden_inside_a_truncated_one_is_recovered():
    # A cut-off frame declaring 5 bytes swallows the start of the next frame;
    # the data checksum fails and the parser must find the real frame inside.
    out = FrameParser().feed(FIRMWARE_RESPONSE[:8] + ACK_FRAME + FIRMWARE_RESPONSE)
    assert [type(i) for i in out][-2:] == [Ack, Frame]
    assert isinstance(out[0], Rejected)


def test_long_declared_length_that_never_completes_is_recovered_on_expiry():
    noise = bytes.fromhex("0000FF F0 10 D5")  # claims 240 bytes
    parser = FrameParser()
    assert parser.feed(noise + ACK_FRAME) == []
    out = parser.expire()
    assert isinstance(out[0], Rejected) and Ack() in out


def test_unknown_frame_identifier_is_rejected():
    body = bytes([0xAA, 0x01])
    raw = bytes([0, 0, 0xFF, 2, 0xFE]) + body + bytes([(-sum(body)) & 0xFF, 0])
    out = FrameParser().feed(raw)
    assert len(out) == 1 and out[0].reason == "unknown frame identifier AA"


def test_wakeup_bytes_are_idle_on_the_chip_side_only():
    wake = b"\x55\x55" + b"\x00" * 14
    assert FrameParser(idle=b"\x00\x55").feed(wake + build_frame(b"\x02")) == [Frame(0xD4, b"\x02")]
    assert isinstance(FrameParser().feed(wake + build_frame(b"\x02"))[0], Rejected)
