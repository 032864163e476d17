"""Remote commands (contract/commands.py): signed by central, answered by the kiosk's key, bounded both ways."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from nacl.signing import SigningKey

from contract import Kind, Topics, device_id_from_public_key
from contract.commands import (
    MAX_COMMAND_BYTES,
    MAX_LINE,
    MAX_REPLY_BYTES,
    MAX_RESULT_BYTES,
    CheckItem,
    Command,
    CommandReply,
    CommandResult,
    encode_command,
    fit_lines,
    new_command,
    parse_command,
    parse_reply,
    sign_reply,
    verify_reply,
)
from contract.errors import ContractError
from contract.topics import PUBLISHER, QOS, RETAIN

CENTRAL = SigningKey.generate()
DEVICE_KEY = SigningKey.generate()
DEVICE = device_id_from_public_key(DEVICE_KEY.verify_key)


def test_command_topics_central_to_device_and_replies_back_qos1_not_retained():
    t = Topics()
    assert t.command("d1") == "hall/v1/d1/command" and t.parse("hall/v1/d1/command_reply") == ("d1", Kind.COMMAND_REPLY)
    assert (QOS[Kind.COMMAND], RETAIN[Kind.COMMAND], PUBLISHER[Kind.COMMAND]) == (1, False, "central")
    assert (QOS[Kind.COMMAND_REPLY], RETAIN[Kind.COMMAND_REPLY], PUBLISHER[Kind.COMMAND_REPLY]) == (1, False, "device")
    assert ("hall/v1/d1/command", 1) in t.device_subscriptions("d1")
    assert ("hall/v1/+/command_reply", 1) in t.central_subscriptions()


def test_a_signed_command_round_trips_and_a_forged_or_changed_one_is_refused():
    cmd = new_command(DEVICE, "logs", lines=20)
    wire = encode_command(CENTRAL, cmd)
    assert parse_command(CENTRAL.verify_key, wire) == cmd and b"null" not in wire
    with pytest.raises(ContractError, match="signature"):
        parse_command(SigningKey.generate().verify_key, wire)  # signed by someone else
    with pytest.raises(ContractError, match="signature"):
        parse_command(CENTRAL.verify_key, wire.replace(b'"lines":20', b'"lines":500'))
    with pytest.raises(ContractError, match="no signature"):
        parse_command(CENTRAL.verify_key, json.dumps(cmd.model_dump(mode="json")).encode())


def test_arguments_are_bounded_and_fit_the_kind():
    with pytest.raises(ContractError, match="lines"):
        new_command(DEVICE, "logs", lines=501)
    with pytest.raises(ContractError, match="needs args.lines"):
        new_command(DEVICE, "logs")
    with pytest.raises(ContractError, match="from_seq"):
        new_command(DEVICE, "resend", from_seq=-1)
    with pytest.raises(ContractError, match="no arguments"):
        new_command(DEVICE, "selftest", lines=3)
    with pytest.raises(ContractError):
        new_command(DEVICE, "reboot")
    with pytest.raises(ContractError, match="expires_at"):
        new_command(DEVICE, "selftest", lifetime_s=2 * 3600)
    assert new_command(DEVICE, "resend", from_seq=0).args.from_seq == 0


def test_expiry_and_size_are_checked_before_parsing():
    now = datetime(2030, 1, 1, tzinfo=UTC)
    cmd = new_command(DEVICE, "selftest", now=now, lifetime_s=60)
    assert not cmd.expired(now + timedelta(seconds=59)) and cmd.expired(now + timedelta(seconds=60))
    with pytest.raises(ContractError, match=f"limit {MAX_COMMAND_BYTES}"):
        parse_command(CENTRAL.verify_key, b"{" + b" " * MAX_COMMAND_BYTES + b"}")
    with pytest.raises(ContractError, match=f"limit {MAX_REPLY_BYTES}"):
        parse_reply(b"{" + b" " * MAX_REPLY_BYTES + b"}")


def test_a_reply_is_signed_by_the_device_and_its_result_bounded():
    cmd = new_command(DEVICE, "selftest")
    reply = CommandReply(id=cmd.id, device=DEVICE, kind="selftest", ok=True, at="2030-01-01T00:00:00Z",
                         result=CommandResult(checks=[CheckItem(name="broker", status="ok", detail="connected")]))
    wire = sign_reply(DEVICE_KEY, reply)
    parsed, signed = parse_reply(wire)
    verify_reply(DEVICE_KEY.verify_key, parsed, signed)
    assert parsed == reply
    with pytest.raises(ContractError, match="signature"):
        parsed2, signed2 = parse_reply(wire.replace(b'"connected"', b'"all fine"'))
        verify_reply(DEVICE_KEY.verify_key, parsed2, signed2)
    with pytest.raises(ContractError, match="does not match the key"):
        verify_reply(SigningKey.generate().verify_key, parsed, signed)
    with pytest.raises(ContractError, match="claims device"):
        sign_reply(SigningKey.generate(), reply)
    with pytest.raises(ValueError):
        CommandResult(lines=["x" * (MAX_LINE + 1)])
    with pytest.raises(ValueError, match="limit"):
        CommandResult(lines=["x" * MAX_LINE] * 300)  # 90 KB: over the 64 KiB result


def test_fit_lines_keeps_the_newest_lines_that_fit():
    lines = [f"{i:04d} " + "é" * 400 for i in range(500)]
    kept = fit_lines(lines)
    assert kept[-1].startswith("0499") and all(len(x) == MAX_LINE for x in kept)
    assert len(CommandResult(lines=kept).model_dump_json()) <= MAX_RESULT_BYTES
    assert fit_lines(["a", "b"]) == ["a", "b"]


def test_a_command_for_the_wire_has_a_uuid_id():
    with pytest.raises(ValueError):
        Command(id="not-a-uuid", device=DEVICE, kind="selftest", issued_at="2030-01-01T00:00:00Z",
                expires_at="2030-01-01T00:01:00Z")
