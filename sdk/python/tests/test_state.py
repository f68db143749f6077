"""The pure update logic: batches, resets diffed against what was held, decoding, prefixes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from setpoint import Event
from setpoint._pb import edge_pb2
from setpoint._state import Held, State, decode_value, is_under, normalize_prefix


def entry(path: str, value: Any, version: int, revision: int, fmt: str = "json") -> edge_pb2.Entry:
    return edge_pb2.Entry(
        path=path, value=json.dumps(value), format=fmt, version=version, revision=revision
    )


def put(path: str, new: Any, version: int, revision: int, old: Any = None) -> edge_pb2.Event:
    ev = edge_pb2.Event(
        type=edge_pb2.Event.PUT,
        path=path,
        new_value=json.dumps(new),
        version=version,
        revision=revision,
        format="json",
    )
    if old is not None:
        ev.old_value = json.dumps(old)
    return ev


def delete(path: str, version: int, revision: int, old: Any) -> edge_pb2.Event:
    return edge_pb2.Event(
        type=edge_pb2.Event.DELETE,
        path=path,
        old_value=json.dumps(old),
        version=version,
        revision=revision,
        format="json",
    )


def primed(entries: dict[str, tuple[Any, int, int]], revision: int) -> State:
    return State.loaded(
        {p: Held(v, "json", ver, rev) for p, (v, ver, rev) in entries.items()}, revision
    )


@pytest.mark.parametrize(
    "text, fmt, want",
    [
        ('{"a": [1, 2]}', "json", {"a": [1, 2]}),
        ("5", "json", 5),
        ('"plain text"', "text", "plain text"),
        ('"a: 1\\nb: 2\\n"', "yaml", "a: 1\nb: 2\n"),
        ("null", "json", None),
        ("not json", "json", "not json"),  # kept raw rather than failing the update
    ],
)
def test_decode_value(text: str, fmt: str, want: Any) -> None:
    assert decode_value(text, fmt, "/p") == want


@pytest.mark.parametrize(
    "path, prefix, want",
    [
        ("/a/b", "/", True),
        ("/a", "/a", True),
        ("/a/b", "/a", True),
        ("/ab", "/a", False),
        ("/b/a", "/a", False),
    ],
)
def test_is_under(path: str, prefix: str, want: bool) -> None:
    assert is_under(path, prefix) is want


def test_normalize_prefix() -> None:
    assert normalize_prefix("/a/b/") == "/a/b"
    assert normalize_prefix("/") == "/"
    assert normalize_prefix("//") == "/"
    with pytest.raises(ValueError):
        normalize_prefix("a/b")


def test_first_reset_is_initial_state_without_events() -> None:
    s = State()
    events = s.apply_reset(10, [entry("/a/x", 1, 1, 5), entry("/a/y", "t", 2, 9, "text")])
    assert events == []
    assert s.primed and s.revision == 10
    assert s.entries["/a/y"] == Held("t", "text", 2, 9)


def test_batch_applies_in_order_and_reports_old_and_new() -> None:
    s = primed({"/a/x": (1, 1, 5)}, 10)
    events = s.apply_batch(
        11, [put("/a/x", 2, 2, 11, old=1), put("/a/new", {"k": True}, 1, 11), delete("/a/x", 3, 11, 2)]
    )
    assert events == [
        Event("/a/x", 2, 1, 2, 11, False, "json"),
        Event("/a/new", {"k": True}, None, 1, 11, False, "json"),
        Event("/a/x", None, 2, 3, 11, True, "json"),
    ]
    assert set(s.entries) == {"/a/new"}
    assert s.revision == 11


def test_batch_at_or_below_held_revision_is_a_replay() -> None:
    s = primed({"/a/x": (1, 1, 5)}, 10)
    assert s.apply_batch(10, [put("/a/x", 99, 9, 10, old=1)]) == []
    assert s.entries["/a/x"].value == 1


def test_delete_without_old_value_on_wire_uses_held_value() -> None:
    s = primed({"/a/x": ("held", 4, 5)}, 10)
    ev = edge_pb2.Event(type=edge_pb2.Event.DELETE, path="/a/x", version=5, revision=11)
    assert s.apply_batch(11, [ev]) == [Event("/a/x", None, "held", 5, 11, True, "json")]


def test_reset_after_state_reveals_changes_sorted_by_revision() -> None:
    s = primed({"/a/same": (1, 1, 3), "/a/changed": (1, 1, 4), "/a/gone": ("g", 2, 5)}, 10)
    events = s.apply_reset(
        20,
        [
            entry("/a/same", 1, 1, 3),
            entry("/a/changed", 2, 2, 15),
            entry("/a/added", "new", 1, 12),
        ],
    )
    assert events == [
        Event("/a/added", "new", None, 1, 12, False, "json"),
        Event("/a/changed", 2, 1, 2, 15, False, "json"),
        Event("/a/gone", None, "g", 0, 20, True, "json"),
    ]
    assert set(s.entries) == {"/a/same", "/a/changed", "/a/added"}
    assert s.revision == 20


def test_reset_with_only_revision_moved_is_no_change() -> None:
    s = primed({"/a/x": (1, 1, 3)}, 10)
    assert s.apply_reset(20, [entry("/a/x", 1, 1, 7)]) == []
    assert s.entries["/a/x"].revision == 7


def test_apply_dispatches_on_reset_flag() -> None:
    s = primed({"/a/x": (1, 1, 3)}, 10)
    reset = edge_pb2.WatchResponse(revision=12, reset=True, state=[entry("/a/x", 2, 2, 12)])
    assert s.apply(reset) == [Event("/a/x", 2, 1, 2, 12, False, "json")]
    batch = edge_pb2.WatchResponse(revision=13, events=[put("/a/x", 3, 3, 13, old=2)])
    assert s.apply(batch) == [Event("/a/x", 3, 2, 3, 13, False, "json")]
