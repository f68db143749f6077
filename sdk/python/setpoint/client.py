"""The synchronous client: `Client` keeps configuration current in a background thread; reads
are local. Watch callbacks run on that thread, one at a time, in revision order."""

from __future__ import annotations

import inspect
import os
from types import TracebackType
from typing import Any, Mapping, Sequence

from ._core import Callback, Core, WatchHandle
from .errors import InvalidArgumentError, NotFoundError
from .types import Event, TLSConfig, Value


def _call_sync(callback: Callback, event: Event) -> None:
    result = callback(event)
    if inspect.isawaitable(result):
        # A coroutine nobody awaits would silently do nothing; say so instead.
        close = getattr(result, "close", None)
        if close is not None:
            close()
        raise TypeError("the sync Client cannot await a callback; use setpoint.aio.Client")


class Client:
    """A Setpoint client: one session with an edge, a local copy of the configuration under
    `prefixes`, and watches on it.

    Usable at once: it connects in the background. `get` never touches the network.

    Args:
        address: the edge, ``host:port`` (``https://host:port`` implies TLS).
        environment: hold the effective values of this environment (overrides merged); paths stay
            base paths (``/myapp/db/host``).
        prefixes: what to hold; ``("/",)`` is everything the token can read.
        cache_path: a file to persist the configuration in after every update; loaded at start
            (served flagged stale) when its env and prefixes match.
        instance_id: this application instance's name in the fleet; default
            ``{hostname}-{pid}-{random}``.
        labels: free-form labels the edge reports (e.g. ``{"zone": "eu-1"}``).
        token: an API key, sent as ``authorization: Bearer <token>``.
        tls: ``True`` for TLS with the system roots, a `TLSConfig`, or None for plaintext (h2c).
        resolve: ask the edge to substitute ``${VAR}`` in pushed values (secrets never are).
    """

    def __init__(
        self,
        address: str,
        *,
        environment: str | None = None,
        prefixes: Sequence[str] = ("/",),
        cache_path: str | os.PathLike[str] | None = None,
        instance_id: str | None = None,
        labels: Mapping[str, str] | None = None,
        token: str | None = None,
        tls: TLSConfig | bool | None = None,
        resolve: bool = False,
    ) -> None:
        self._core = Core(
            address,
            environment=environment,
            prefixes=prefixes,
            cache_path=cache_path,
            instance_id=instance_id,
            labels=labels,
            token=token,
            tls=tls,
            resolve=resolve,
            dispatch=_call_sync,
        )

    @property
    def instance_id(self) -> str:
        return self._core.instance_id

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Blocks until the first sync completed.

        Raises:
            UnauthorizedError: the edge refused the token.
            ReadyTimeoutError: no sync within `timeout` seconds (the client keeps trying).
            ClosedError: the client was closed.
        """
        self._core.wait_ready(timeout)

    def get(self, path: str) -> Value:
        """The value at `path` from the local copy (never a network call).

        Returns a `Value`; the configuration itself is ``.value`` (decoded JSON; a ``str`` for
        text and yaml), with ``.version``, ``.revision`` and ``.format``.

        Raises:
            NotFoundError: synced (or serving the cache file) and no value at `path`.
            NotSyncedError: no sync yet and no cache file.
            UnauthorizedError: the edge refused the token and nothing is cached.
            ClosedError: the client was closed.
        """
        return self._core.get(path)

    def get_value(self, path: str, default: Any = None) -> Any:
        """``get(path).value``, or `default` when there is no value at `path`.

        Still raises NotSyncedError/UnauthorizedError: an unsynced client has no answer, and a
        default would hide that.
        """
        try:
            return self._core.get(path).value
        except NotFoundError:
            return default

    def watch(self, prefix: str, callback: Callback) -> WatchHandle:
        """Calls `callback(event)` for every change at or below `prefix` from now on.

        Callbacks run on the session thread, in revision order, never concurrently. One that
        raises does not stop the client: its message goes to the edge as a NACK for that path.
        `prefix` must lie under one of the client's prefixes (else InvalidArgumentError).
        """
        if inspect.iscoroutinefunction(callback):
            raise InvalidArgumentError(
                "the sync Client cannot await a callback; use setpoint.aio.Client"
            )
        return self._core.watch(prefix, callback)

    def is_stale(self) -> bool:
        """True while not connected (serving the cache file, or the session was lost) or while
        the edge reports it lost its writer."""
        return self._core.is_stale()

    def resolve(
        self, path: str, *, env: str | None = None, raw: bool = False, timeout: float = 10.0
    ) -> Any:
        """Reads a value from the edge with ``${VAR}`` and ``${secret:…}`` substituted (a network
        call, unlike `get`); on a prefix without a value, the subtree as one object.

        `env` defaults to the client's environment. Secrets are never pushed to the client, so
        this is how an application reads one.
        """
        return self._core.resolve(path, env=env, raw=raw, timeout=timeout)

    def close(self) -> None:
        """Ends the session, stops the threads and flushes the cache file. Idempotent."""
        self._core.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
