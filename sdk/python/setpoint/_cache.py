"""The cache file: the client's state written to disk after every applied update, so a restarted
application serves its last known configuration at once, even with no edge reachable.

The format is shared by all four SDKs (sdk/README.md):
`{"format": 1, "env": …, "prefixes": […], "revision": N, "entries": {path: {"value", "format",
"version", "revision"}}}`. Writes are atomic (temp file in the same directory, fsync, rename) so a
crash leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from typing import Any, Sequence

from ._state import Held, State

log = logging.getLogger("setpoint")

FORMAT = 1


def encode(state: State, env: str | None, prefixes: Sequence[str]) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "env": env,
        "prefixes": list(prefixes),
        "revision": state.revision if state.revision is not None else 0,
        "entries": {
            path: {
                "value": held.value,
                "format": held.format,
                "version": held.version,
                "revision": held.revision,
            }
            for path, held in sorted(state.entries.items())
        },
    }


def save(path: str, doc: dict[str, Any]) -> None:
    """Writes an `encode`d document to the cache file atomically; raises OSError when the disk
    refuses."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".setpoint-cache-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    # The rename is durable only once the directory entry is; not every platform allows
    # opening a directory, and the data file is already safe, so a failure here is ignored.
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def decode(doc: Any, env: str | None, prefixes: Sequence[str]) -> State | None:
    """The state a cache document holds, or None when it is for another env/prefixes or malformed.

    The file is read from disk the user controls, so every field is checked rather than trusted.
    """
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        return None
    if doc.get("env") != env or doc.get("prefixes") != list(prefixes):
        return None
    revision = _as_int(doc.get("revision"))
    entries = doc.get("entries")
    if revision is None or not isinstance(entries, dict):
        return None
    held: dict[str, Held] = {}
    for path, e in entries.items():
        if not isinstance(path, str) or not isinstance(e, dict):
            return None
        fmt, version, rev = e.get("format"), _as_int(e.get("version")), _as_int(e.get("revision"))
        if "value" not in e or not isinstance(fmt, str) or version is None or rev is None:
            return None
        held[path] = Held(e["value"], fmt, version, rev)
    return State.loaded(held, revision)


def load(path: str, env: str | None, prefixes: Sequence[str]) -> State | None:
    """Reads the cache file; None when absent, unreadable, malformed or for another scope."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        log.warning("ignoring cache file %s: %s", path, e)
        return None
    state = decode(doc, env, prefixes)
    if state is None:
        log.warning("ignoring cache file %s: another env/prefixes or malformed", path)
    return state


def _as_int(v: Any) -> int | None:
    # bool is an int subclass, but `true` is no revision.
    return v if isinstance(v, int) and not isinstance(v, bool) else None
