"""The SDK's error vocabulary: one class per outcome a caller may want to handle differently.

Every error derives from `SetpointError`, so `except SetpointError` catches all of them; the
subclasses that also mean a builtin concept (a timeout, a bad argument) derive from that builtin
too, so generic handlers keep working.
"""

from __future__ import annotations


class SetpointError(Exception):
    """Base class of every error the SDK raises."""


class NotFoundError(SetpointError):
    """The client is synced (or serves its cache file) and holds no value at the path."""

    def __init__(self, path: str) -> None:
        super().__init__(f"no value at {path}")
        self.path = path


class NotSyncedError(SetpointError):
    """No first sync has completed yet and no cache file was loaded, so nothing can be served."""


class UnauthorizedError(SetpointError):
    """The edge refused the token (UNAUTHENTICATED or PERMISSION_DENIED)."""


class ClosedError(SetpointError):
    """The client was closed."""


class ReadyTimeoutError(SetpointError, TimeoutError):
    """`wait_ready` ran out of time before the first sync."""


class InvalidArgumentError(SetpointError, ValueError):
    """An argument is malformed, e.g. a watch prefix outside the client's prefixes."""
