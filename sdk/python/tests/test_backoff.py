"""Reconnect backoff: full jitter under a ceiling that doubles from 100 ms to 10 s."""

from __future__ import annotations

from setpoint._backoff import Backoff


def test_ceiling_doubles_to_the_cap_and_resets() -> None:
    ceilings: list[float] = []

    def record(lo: float, hi: float) -> float:
        assert lo == 0.0
        ceilings.append(hi)
        return hi / 2

    b = Backoff(rand=record)
    delays = [b.next_delay() for _ in range(10)]
    assert ceilings == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0, 10.0]
    assert delays == [c / 2 for c in ceilings]
    b.reset()
    b.next_delay()
    assert ceilings[-1] == 0.1


def test_long_outage_stays_capped() -> None:
    b = Backoff(rand=lambda lo, hi: hi)
    for _ in range(1000):
        assert b.next_delay() <= 10.0


def test_default_jitter_is_within_bounds() -> None:
    b = Backoff()
    for i in range(50):
        d = b.next_delay()
        assert 0.0 <= d <= min(10.0, 0.1 * 2**i)
