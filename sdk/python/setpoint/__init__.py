"""Setpoint's Python SDK: configuration held locally and kept current over one gRPC session.

    import setpoint

    with setpoint.Client("127.0.0.1:8000", environment="prod", prefixes=["/myapp"]) as client:
        client.wait_ready(timeout=5)
        host = client.get("/myapp/database/host").value
        client.watch("/myapp", lambda ev: print(ev.path, ev.old_value, "->", ev.value))

`setpoint.aio.Client` is the asyncio flavour of the same client.
"""

from ._core import SDK_VERSION as __version__
from ._core import WatchHandle
from .client import Client
from .errors import (
    ClosedError,
    InvalidArgumentError,
    NotFoundError,
    NotSyncedError,
    ReadyTimeoutError,
    SetpointError,
    UnauthorizedError,
)
from .types import Event, TLSConfig, Value

from . import aio  # noqa: E402  (so `setpoint.aio.Client` works after `import setpoint`)

__all__ = [
    "Client",
    "ClosedError",
    "Event",
    "InvalidArgumentError",
    "NotFoundError",
    "NotSyncedError",
    "ReadyTimeoutError",
    "SetpointError",
    "TLSConfig",
    "UnauthorizedError",
    "Value",
    "WatchHandle",
    "aio",
    "__version__",
]
