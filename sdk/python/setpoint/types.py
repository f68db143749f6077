"""The values the SDK hands to applications: `Value` (what `get` returns), `Event` (what a watch
callback receives) and `TLSConfig` (how to reach an edge over TLS). Plain data, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Value:
    """One configuration value as the client holds it.

    `value` is the decoded JSON (a `str` for `text` and `yaml` formats); `version` counts the
    path's changes from 1; `revision` is the store commit that wrote it.
    """

    path: str
    value: Any
    version: int
    revision: int
    format: str


@dataclass(frozen=True)
class Event:
    """One change under a watched prefix.

    For a delete, `deleted` is true and `value` is None; for a path that did not exist before,
    `old_value` is None.
    """

    path: str
    value: Any
    old_value: Any
    version: int
    revision: int
    deleted: bool
    format: str


@dataclass(frozen=True)
class TLSConfig:
    """TLS to the edge. PEM bytes, or None for the system roots / no client certificate.

    `server_name` overrides the name checked against the edge's certificate (useful when dialing
    an address the certificate does not name, such as 127.0.0.1).
    """

    ca_cert: bytes | None = None
    client_cert: bytes | None = None
    client_key: bytes | None = None
    server_name: str | None = None
