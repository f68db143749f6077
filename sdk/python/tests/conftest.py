from __future__ import annotations

import threading
from typing import Iterator

import pytest

from harness import Server


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server().start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Every test must close its clients: a session thread left behind fails the test."""
    yield

    def leaked() -> list[str]:
        return [t.name for t in threading.enumerate() if t.name.startswith("setpoint-")]

    import time

    deadline = time.monotonic() + 5
    while leaked() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert leaked() == [], "threads left running after the test"
