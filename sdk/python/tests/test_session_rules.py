"""Pure rules of the session engine: when a stream counts as synced, and address parsing."""

from __future__ import annotations

import pytest

from setpoint import InvalidArgumentError, TLSConfig
from setpoint._core import _SessionProgress, _target
from setpoint._pb import edge_pb2


def batch(revision: int) -> edge_pb2.WatchResponse:
    return edge_pb2.WatchResponse(revision=revision)


def test_fresh_session_is_synced_by_its_first_update() -> None:
    p = _SessionProgress(None)
    p.started(10)
    assert not p.synced
    p.applied(edge_pb2.WatchResponse(revision=10, reset=True))
    assert p.synced


def test_resume_with_nothing_missed_is_synced_at_start() -> None:
    p = _SessionProgress(10)
    p.started(10)
    assert p.synced


def test_resume_waits_for_the_replay() -> None:
    p = _SessionProgress(10)
    p.started(14)
    assert not p.synced
    p.applied(batch(12))
    assert not p.synced  # more of the replay may follow
    p.applied(batch(14))
    assert p.synced


def test_resume_whose_replay_was_filtered_is_synced_by_a_heartbeat() -> None:
    p = _SessionProgress(10)
    p.started(14)
    p.heartbeat()
    assert p.synced


def test_resume_answered_with_a_reset_is_synced() -> None:
    p = _SessionProgress(3)
    p.started(40)
    p.applied(edge_pb2.WatchResponse(revision=40, reset=True))
    assert p.synced


@pytest.mark.parametrize(
    "address, tls, want_target, want_tls",
    [
        ("127.0.0.1:8000", None, "127.0.0.1:8000", None),
        ("http://edge:8000/", None, "edge:8000", None),
        ("https://edge:443", None, "edge:443", TLSConfig()),
        ("edge:443", True, "edge:443", TLSConfig()),
        ("edge:443", TLSConfig(server_name="x"), "edge:443", TLSConfig(server_name="x")),
    ],
)
def test_target(
    address: str, tls: TLSConfig | bool | None, want_target: str, want_tls: TLSConfig | None
) -> None:
    assert _target(address, tls) == (want_target, want_tls)


@pytest.mark.parametrize(
    "address, tls",
    [("https://edge:443", False), ("http://edge:80", True), ("", None), ("edge:1/x", None)],
)
def test_bad_target(address: str, tls: bool | None) -> None:
    with pytest.raises(InvalidArgumentError):
        _target(address, tls)
