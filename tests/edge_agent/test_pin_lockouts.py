"""Wrong secretary PINs at the kiosk: each lockout in a row lasts twice the one before, so a stolen officer
card with a lot of time is still far from guessing a 4-digit PIN; a right PIN starts afresh; the count
survives a restart."""

from __future__ import annotations

from edge_agent.override import PinLockouts


class Wall:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


def lock(lockouts: PinLockouts, officer: str) -> float:
    """Type wrong PINs until the officer is locked; the lockout's length in seconds."""
    for _ in range(lockouts.attempts):
        left, until = lockouts.wrong(officer)
    assert left == 0 and until is not None
    return until - lockouts.now()


def test_each_lockout_in_a_row_doubles_until_a_right_pin(tmp_path):
    wall = Wall()
    lockouts = PinLockouts(tmp_path / "l.json", attempts=5, lockout_s=300, now=wall)
    lengths = []
    for _ in range(4):
        lengths.append(lock(lockouts, "S"))
        assert lockouts.locked_until("S") is not None
        wall.t += lengths[-1] + 1
        assert lockouts.locked_until("S") is None
    assert lengths == [300, 600, 1200, 2400]
    # a restart keeps the count of lockouts
    again = PinLockouts(tmp_path / "l.json", attempts=5, lockout_s=300, now=wall)
    assert lock(again, "S") == 4800
    wall.t += 4801
    again.right("S")
    assert lock(again, "S") == 300
    assert lock(again, "CH") == 300  # per officer


def test_the_longest_lockout_is_capped_at_a_day(tmp_path):
    wall = Wall()
    lockouts = PinLockouts(tmp_path / "l.json", attempts=5, lockout_s=300, now=wall)
    for _ in range(12):
        length = lock(lockouts, "S")
        wall.t += length + 1
    assert length == 86400
