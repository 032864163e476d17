"""LEDs and buzzer on gpiozero's MockFactory: what a person at the kiosk sees and hears."""

from __future__ import annotations

import time

import pytest
from gpiozero.pins.mock import MockFactory

from hardware.signals import Signals


@pytest.fixture
def signals():
    s = Signals(pin_factory=MockFactory())
    yield s
    s.close()


def on_periods(pin) -> list[float]:
    """Durations of each completed 'on' period, from the pin's state history."""
    return [st.timestamp for prev, st in zip(pin.states, pin.states[1:]) if prev.state and not st.state]


def rises(pin) -> int:
    return sum(1 for st in pin.states[1:] if st.state)


def test_default_pins_are_17_27_22(signals):
    assert [d.pin.info.name for d in (signals.green, signals.red, signals.buzzer)] == ["GPIO17", "GPIO27", "GPIO22"]


def test_accepted_is_green_for_1_5_s_and_one_beep(signals):
    t = time.monotonic()
    signals.accepted()
    assert time.monotonic() - t < 0.1  # never blocks the check-in
    assert signals.green.is_lit and not signals.red.is_lit and signals.buzzer.is_active
    time.sleep(1.7)
    assert not signals.green.is_lit and not signals.buzzer.is_active
    (green_on,) = on_periods(signals.green.pin)
    assert 1.4 <= green_on <= 1.65
    beeps = on_periods(signals.buzzer.pin)
    assert len(beeps) == 1 and beeps[0] < 0.2
    assert rises(signals.red.pin) == 0


def test_rejected_is_red_for_2_s_and_two_beeps(signals):
    signals.rejected()
    assert signals.red.is_lit and not signals.green.is_lit
    time.sleep(2.2)
    assert not signals.red.is_lit
    (red_on,) = on_periods(signals.red.pin)
    assert 1.9 <= red_on <= 2.15
    assert len(on_periods(signals.buzzer.pin)) == 2
    assert rises(signals.green.pin) == 0


def test_busy_blinks_until_the_verdict_replaces_it(signals):
    signals.busy()
    time.sleep(0.8)
    assert rises(signals.green.pin) >= 2
    signals.rejected()  # the verdict stops the blinking at once
    assert not signals.green.is_lit
    n = len(signals.green.pin.states)
    time.sleep(0.5)
    assert len(signals.green.pin.states) == n
    assert signals.red.is_lit


def test_idle_turns_everything_off(signals):
    signals.accepted()
    signals.idle()
    assert not (signals.green.is_lit or signals.red.is_lit or signals.buzzer.is_active)
    time.sleep(0.2)
    assert not signals.buzzer.is_active


def test_pins_by_name_and_close_releases_them():
    factory = MockFactory()
    s = Signals(green_pin="GPIO5", red_pin="BOARD31", buzzer_pin=13, pin_factory=factory)
    assert s.red.pin.info.name == "GPIO6"
    s.close()
    again = Signals(green_pin="GPIO5", red_pin="GPIO6", buzzer_pin=13, pin_factory=factory)
    again.close()
