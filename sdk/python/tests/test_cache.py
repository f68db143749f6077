"""The cache file: round trip, scope checks, and refusal of malformed files."""

from __future__ import annotations

import json
import os
from pathlib import Path

from setpoint import _cache
from setpoint._state import Held, State


def sample() -> State:
    return State.loaded(
        {
            "/myapp/db/host": Held("db.internal", "json", 3, 810),
            "/myapp/db/pool": Held({"min": 1, "max": [5, None]}, "json", 1, 700),
            "/myapp/notes": Held("free text", "text", 2, 805),
        },
        812,
    )


def test_round_trip_in_the_shared_format(tmp_path: Path) -> None:
    path = str(tmp_path / "cache.json")
    _cache.save(path, _cache.encode(sample(), "prod", ["/myapp"]))
    with open(path) as f:
        doc = json.load(f)
    assert doc == {
        "format": 1,
        "env": "prod",
        "prefixes": ["/myapp"],
        "revision": 812,
        "entries": {
            "/myapp/db/host": {"value": "db.internal", "format": "json", "version": 3, "revision": 810},
            "/myapp/db/pool": {
                "value": {"min": 1, "max": [5, None]},
                "format": "json",
                "version": 1,
                "revision": 700,
            },
            "/myapp/notes": {"value": "free text", "format": "text", "version": 2, "revision": 805},
        },
    }
    loaded = _cache.load(path, "prod", ["/myapp"])
    assert loaded is not None
    assert loaded.entries == sample().entries
    assert loaded.revision == 812 and loaded.primed


def test_save_leaves_no_temp_files_and_replaces(tmp_path: Path) -> None:
    path = str(tmp_path / "cache.json")
    _cache.save(path, _cache.encode(sample(), None, ["/"]))
    _cache.save(path, _cache.encode(State.loaded({}, 900), None, ["/"]))
    assert os.listdir(tmp_path) == ["cache.json"]
    loaded = _cache.load(path, None, ["/"])
    assert loaded is not None and loaded.revision == 900 and loaded.entries == {}


def test_other_scope_is_not_loaded(tmp_path: Path) -> None:
    path = str(tmp_path / "cache.json")
    _cache.save(path, _cache.encode(sample(), "prod", ["/myapp"]))
    assert _cache.load(path, "staging", ["/myapp"]) is None
    assert _cache.load(path, None, ["/myapp"]) is None
    assert _cache.load(path, "prod", ["/"]) is None


def test_missing_or_malformed_files_are_ignored(tmp_path: Path) -> None:
    assert _cache.load(str(tmp_path / "absent.json"), None, ["/"]) is None
    bad = tmp_path / "bad.json"
    for text in [
        "{not json",
        "[]",
        '{"format": 2, "env": null, "prefixes": ["/"], "revision": 1, "entries": {}}',
        '{"format": 1, "env": null, "prefixes": ["/"], "revision": "1", "entries": {}}',
        '{"format": 1, "env": null, "prefixes": ["/"], "revision": 1, "entries": {"/a": {"format": "json", "version": 1, "revision": 1}}}',
        '{"format": 1, "env": null, "prefixes": ["/"], "revision": 1, "entries": {"/a": {"value": 1, "format": "json", "version": true, "revision": 1}}}',
    ]:
        bad.write_text(text)
        assert _cache.load(str(bad), None, ["/"]) is None, text
