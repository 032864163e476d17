"""The refused-attempt message (contract/attempts.py): signed like a record, bounded, and in step with the kiosk."""

from __future__ import annotations

from typing import get_args

import pytest
from nacl.signing import SigningKey

from contract import AttemptBody, DeviceTime, Kind, Topics, device_id_from_public_key, parse_attempt, sign_attempt, verify_attempt
from contract.attempts import MAX_ATTEMPT_BYTES, RefusedOutcome
from contract.errors import ContractError
from contract.topics import PUBLISHER, QOS, RETAIN
from edge_agent.checkin import Outcome

KEY = SigningKey.generate()
DEVICE = device_id_from_public_key(KEY.verify_key)
NOW = DeviceTime(wall="2030-01-01T01:05:00Z", synced=True, boot_id="b1", monotonic=12.5)


def test_every_kiosk_outcome_that_checks_nobody_in_can_be_sent_and_no_other():
    checked_in = {Outcome.ACCEPTED, Outcome.ALREADY, Outcome.OVERRIDE_ACCEPTED, Outcome.OVERRIDE_PIN}
    assert set(get_args(RefusedOutcome)) == {o.value for o in Outcome} - {o.value for o in checked_in}


def test_attempt_topic_is_the_devices_own_qos1_and_not_retained():
    assert Topics().attempt("d1") == "hall/v1/d1/attempt" and Topics().parse("hall/v1/d1/attempt") == ("d1", Kind.ATTEMPT)
    assert (QOS[Kind.ATTEMPT], RETAIN[Kind.ATTEMPT], PUBLISHER[Kind.ATTEMPT]) == (1, False, "device")
    assert ("hall/v1/+/attempt", 1) in Topics().central_subscriptions()
    assert all(not t.endswith("/attempt") for t, _ in Topics().device_subscriptions("d1"))


def test_a_signed_attempt_round_trips_and_a_changed_one_does_not_verify():
    signed = sign_attempt(KEY, AttemptBody(device=DEVICE, seq=7, outcome="face_mismatch", card_kind="member_card",
                                           member="m1", meeting="mt1", face_distance=0.71, time=NOW))
    parsed = parse_attempt(signed.to_wire())
    verify_attempt(KEY.verify_key, parsed)
    assert parsed == signed and b"null" not in signed.to_wire()  # unset fields are left out
    changed = parse_attempt(signed.to_wire().replace(b'"m1"', b'"m2"'))
    with pytest.raises(ContractError, match="signature"):
        verify_attempt(KEY.verify_key, changed)
    with pytest.raises(ContractError, match="does not match the key"):
        verify_attempt(SigningKey.generate().verify_key, parsed)


def test_an_attempt_carries_no_names_or_card_numbers_and_is_bounded():
    with pytest.raises(ValueError):
        AttemptBody(device=DEVICE, seq=1, outcome="unknown_card", time=NOW, name="Barack Obama")
    with pytest.raises(ValueError):
        AttemptBody(device=DEVICE, seq=1, outcome="unknown_card", time=NOW, card_ref="04FFFFFFFFFF01")  # a raw UID
    with pytest.raises(ValueError):
        AttemptBody(device=DEVICE, seq=1, outcome="accepted", time=NOW)  # not a refusal
    with pytest.raises(ContractError, match=f"limit {MAX_ATTEMPT_BYTES}"):
        parse_attempt(b"{" + b" " * MAX_ATTEMPT_BYTES + b"}")
    with pytest.raises(ContractError, match="version"):
        parse_attempt(b'{"v": 2}')
