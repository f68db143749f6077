"""What the client holds, and how an update changes it: the pure part of the session.

`State` applies the edge's updates (a batch of events, or a reset carrying the whole state under
the prefixes) to an in-memory map and returns the `Event`s the watches must see. It does no I/O,
takes no locks and knows nothing of gRPC streams, so every rule (decoding, diffing a reset
against what was held, ignoring replays) is unit-tested without a server.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from ._pb import edge_pb2
from .types import Event

log = logging.getLogger("setpoint")

DELETE = edge_pb2.Event.DELETE


@dataclass(frozen=True)
class Held:
    """One entry the client holds: the decoded value and where it came from."""

    value: Any
    format: str
    version: int
    revision: int


def decode_value(text: str, fmt: str, path: str) -> Any:
    """Decodes a wire value: JSON text for every format (a JSON string for text and yaml).

    The edge controls these bytes; a value that is not JSON is kept as its raw text rather than
    failing the update, since dropping it would desynchronise the client from the edge.
    """
    try:
        return json.loads(text)
    except ValueError:
        log.warning("value at %s (format %s) is not JSON text; keeping it raw", path, fmt)
        return text


def normalize_prefix(prefix: str) -> str:
    """`/a/b/` → `/a/b`; `/` stays; a prefix must start with `/`."""
    if not prefix.startswith("/"):
        raise ValueError(f"prefix {prefix!r} must start with '/'")
    if prefix == "/":
        return prefix
    stripped = prefix.rstrip("/")
    return stripped or "/"


def is_under(path: str, prefix: str) -> bool:
    """True when `path` is `prefix` itself or lies below it (segment-wise: /ab is not under /a)."""
    if prefix == "/":
        return True
    return path == prefix or path.startswith(prefix + "/")


class State:
    """The entries under the client's prefixes at `revision`.

    `primed` is false until the client holds some state (a first reset applied or a cache file
    loaded); a reset that arrives while not primed is the initial state and yields no events.
    """

    def __init__(self) -> None:
        self.entries: dict[str, Held] = {}
        self.revision: int | None = None
        self.primed = False

    @classmethod
    def loaded(cls, entries: dict[str, Held], revision: int) -> "State":
        state = cls()
        state.entries = dict(entries)
        state.revision = revision
        state.primed = True
        return state

    def apply(self, update: edge_pb2.WatchResponse) -> list[Event]:
        if update.reset:
            return self.apply_reset(update.revision, update.state)
        return self.apply_batch(update.revision, update.events)

    def apply_batch(self, revision: int, events: Sequence[edge_pb2.Event]) -> list[Event]:
        """Applies one commit's events in order and returns them decoded.

        An update at or below the revision already held is a replay (e.g. after a resume that
        overlapped) and changes nothing.
        """
        if self.revision is not None and revision <= self.revision:
            return []
        out: list[Event] = []
        for ev in events:
            before = self.entries.get(ev.path)
            ev_revision = ev.revision or revision
            if ev.type == DELETE:
                old = (
                    decode_value(ev.old_value, ev.format, ev.path)
                    if ev.HasField("old_value")
                    else (before.value if before else None)
                )
                self.entries.pop(ev.path, None)
                fmt = ev.format or (before.format if before else "json")
                out.append(Event(ev.path, None, old, ev.version, ev_revision, True, fmt))
                continue
            new = (
                decode_value(ev.new_value, ev.format, ev.path)
                if ev.HasField("new_value")
                else None
            )
            old = decode_value(ev.old_value, ev.format, ev.path) if ev.HasField("old_value") else None
            fmt = ev.format or "json"
            self.entries[ev.path] = Held(new, fmt, ev.version, ev_revision)
            out.append(Event(ev.path, new, old, ev.version, ev_revision, False, fmt))
        self.revision = revision
        self.primed = True
        return out

    def apply_reset(self, revision: int, state: Iterable[edge_pb2.Entry]) -> list[Event]:
        """Replaces everything held with `state` and returns the changes that reveals.

        Changes are what differs from what was held (value, version or format), sorted by
        revision then path so callbacks still run in revision order. A delete a reset reveals
        carries the reset's revision and version 0: the tombstone's version is not on the wire.
        """
        fresh: dict[str, Held] = {}
        for entry in state:
            fresh[entry.path] = Held(
                decode_value(entry.value, entry.format, entry.path),
                entry.format or "json",
                entry.version,
                entry.revision or revision,
            )
        out: list[Event] = []
        if self.primed:
            for path, old in self.entries.items():
                if path not in fresh:
                    out.append(Event(path, None, old.value, 0, revision, True, old.format))
            for path, new in fresh.items():
                old_held = self.entries.get(path)
                # The revision alone differing is no change the application can see.
                if old_held is not None and (old_held.value, old_held.version, old_held.format) == (
                    new.value,
                    new.version,
                    new.format,
                ):
                    continue
                out.append(
                    Event(
                        path,
                        new.value,
                        old_held.value if old_held else None,
                        new.version,
                        new.revision,
                        False,
                        new.format,
                    )
                )
            out.sort(key=lambda e: (e.revision, e.path))
        self.entries = fresh
        self.revision = revision
        self.primed = True
        return out
