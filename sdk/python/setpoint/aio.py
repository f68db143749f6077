"""The asyncio client: the same session engine as `setpoint.Client` (a background thread), with
waiting and closing as coroutines and watch callbacks run on the event loop that created the
client. A callback may be a plain function or a coroutine function; callbacks still run one at a
time in revision order, and the receipt waits for them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import os
import threading
from types import TracebackType
from typing import Any, Awaitable, Callable, Mapping, Sequence

from ._core import Core, WatchHandle
from .errors import ClosedError, NotFoundError, ReadyTimeoutError, SetpointError
from .types import Event, TLSConfig, Value

__all__ = ["Client", "WatchHandle"]

AsyncCallback = Callable[[Event], "Awaitable[Any] | Any"]

# How often a dispatch waiting for the loop checks whether the client is closing.
_POLL = 0.2


class Client:
    """The asyncio Setpoint client. Create it inside a running event loop (its callbacks run
    there); the arguments are those of `setpoint.Client`."""

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
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        self._stopping = threading.Event()
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
            dispatch=self._dispatch,
            on_change=self._notify,
        )

    @property
    def instance_id(self) -> str:
        return self._core.instance_id

    async def wait_ready(self, timeout: float = 10.0) -> None:
        """Returns once the first sync completed; raises as `setpoint.Client.wait_ready`."""
        deadline = self._loop.time() + timeout
        while True:
            self._changed.clear()
            if self._core.check_ready():
                return
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                raise ReadyTimeoutError(self._core.timeout_message(timeout))
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    def get(self, path: str) -> Value:
        """From the local copy, no network, so not a coroutine; see `setpoint.Client.get`."""
        return self._core.get(path)

    def get_value(self, path: str, default: Any = None) -> Any:
        try:
            return self._core.get(path).value
        except NotFoundError:
            return default

    def watch(self, prefix: str, callback: AsyncCallback) -> WatchHandle:
        """As `setpoint.Client.watch`; `callback` may be async and runs on this client's loop."""
        return self._core.watch(prefix, callback)

    def is_stale(self) -> bool:
        return self._core.is_stale()

    async def resolve(
        self, path: str, *, env: str | None = None, raw: bool = False, timeout: float = 10.0
    ) -> Any:
        """As `setpoint.Client.resolve`, without blocking the loop."""
        return await asyncio.to_thread(self._core.resolve, path, env=env, raw=raw, timeout=timeout)

    async def close(self) -> None:
        """Ends the session and waits for the background thread; flushes the cache file."""
        self._stopping.set()
        await asyncio.to_thread(self._core.close)

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # Runs on the session thread: hands the callback to the loop and waits for its outcome, so
    # the receipt reports it and the next event waits for it (revision order).
    def _dispatch(self, callback: AsyncCallback, event: Event) -> None:
        async def run() -> None:
            result = callback(event)
            if inspect.isawaitable(result):
                await result

        try:
            fut = asyncio.run_coroutine_threadsafe(run(), self._loop)
        except RuntimeError:
            raise SetpointError("the client's event loop is closed") from None
        while True:
            done, _ = concurrent.futures.wait([fut], timeout=_POLL)
            if done:
                fut.result()  # re-raises the callback's exception for the NACK
                return
            if self._stopping.is_set() or self._loop.is_closed():
                fut.cancel()
                raise ClosedError("client closed while a callback ran")

    def _notify(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self._changed.set)
        except RuntimeError:
            pass  # the loop is gone; nobody waits on it any more
