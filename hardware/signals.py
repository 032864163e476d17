"""Kiosk feedback: a green and a red LED and a buzzer on GPIO (gpiozero).

Every call returns at once; gpiozero runs the blink/beep sequences on its own
background threads, so a check-in never waits for a light. A new signal replaces
the one in progress (setting an LED cancels its running blink).
Tests pass ``pin_factory=MockFactory()`` and read the pins' state history.
"""

from __future__ import annotations

import logging

from gpiozero import LED, Buzzer

log = logging.getLogger("hardware.signals")


class Signals:
    def __init__(
        self,
        *,
        green_pin: int | str = 17,
        red_pin: int | str = 27,
        buzzer_pin: int | str = 22,
        pin_factory=None,
        buzzer_active_high: bool = True,
        accept_seconds: float = 1.5,
        reject_seconds: float = 2.0,
        beep_seconds: float = 0.1,
        busy_period: float = 0.5,
    ):
        self.accept_seconds = accept_seconds
        self.reject_seconds = reject_seconds
        self.beep_seconds = beep_seconds
        self.busy_period = busy_period
        self.green = LED(green_pin, pin_factory=pin_factory)
        try:
            self.red = LED(red_pin, pin_factory=pin_factory)
            self.buzzer = Buzzer(buzzer_pin, active_high=buzzer_active_high, pin_factory=pin_factory)
        except BaseException:
            self.green.close()
            if hasattr(self, "red"):
                self.red.close()
            raise

    def accepted(self) -> None:
        """Green for ~1.5 s, one short beep."""
        self.red.off()
        self.green.blink(on_time=self.accept_seconds, off_time=0, n=1, background=True)
        self.buzzer.beep(on_time=self.beep_seconds, off_time=self.beep_seconds, n=1, background=True)

    def rejected(self) -> None:
        """Red for ~2 s, two short beeps."""
        self.green.off()
        self.red.blink(on_time=self.reject_seconds, off_time=0, n=1, background=True)
        self.buzzer.beep(on_time=self.beep_seconds, off_time=self.beep_seconds, n=2, background=True)

    def busy(self) -> None:
        """Green blinking until the next signal (while the face is being verified)."""
        self.red.off()
        self.buzzer.off()
        half = self.busy_period / 2
        self.green.blink(on_time=half, off_time=half, n=None, background=True)

    def idle(self) -> None:
        self.green.off()
        self.red.off()
        self.buzzer.off()

    def close(self) -> None:
        for dev in (self.green, self.red, self.buzzer):
            try:
                dev.close()
            except Exception:  # closing must release the rest
                log.exception("closing %r failed", dev)

    def __enter__(self) -> Signals:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
