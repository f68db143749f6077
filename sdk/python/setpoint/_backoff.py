"""Reconnect delays: full-jitter exponential backoff (100 ms doubling to 10 s), and a fixed 30 s
after the edge refused the token so a bad key never turns into a retry storm.

Randomness is injected so tests can pin it.
"""

from __future__ import annotations

import random
from typing import Callable

BASE = 0.1
CAP = 10.0
UNAUTHORIZED_DELAY = 30.0


class Backoff:
    def __init__(
        self,
        base: float = BASE,
        cap: float = CAP,
        rand: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self._base = base
        self._cap = cap
        self._rand = rand
        self._attempt = 0

    def next_delay(self) -> float:
        """A delay drawn uniformly from [0, min(cap, base * 2^attempt)]; each call grows it."""
        # Capping the exponent keeps 2**attempt from growing without bound on a long outage.
        ceiling = min(self._cap, self._base * (2 ** min(self._attempt, 32)))
        self._attempt += 1
        return self._rand(0.0, ceiling)

    def reset(self) -> None:
        """Called once a session started: the next failure starts again from the base."""
        self._attempt = 0
