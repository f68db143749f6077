"""The asyncio client against a real `setpoint dev`: readiness, async and sync callbacks on the
client's loop, NACKs from a failing coroutine, and close."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

import setpoint
import setpoint.aio
from harness import Server, free_port


async def wait_for(predicate: Any, timeout: float = 10.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def test_async_client_end_to_end(server: Server, tmp_path: Path) -> None:
    server.put("/svc/a", 1)

    async def main() -> None:
        loop_thread = threading.get_ident()
        async_events: list[setpoint.Event] = []
        sync_events: list[setpoint.Event] = []
        threads: set[int] = set()
        order: list[str] = []

        async def on_change(ev: setpoint.Event) -> None:
            threads.add(threading.get_ident())
            order.append(f"start {ev.path}")
            await asyncio.sleep(0.05)  # the next event waits for this one
            order.append(f"end {ev.path}")
            async_events.append(ev)
            if ev.path == "/svc/bad":
                raise ValueError("async failure")

        def on_change_sync(ev: setpoint.Event) -> None:
            threads.add(threading.get_ident())
            sync_events.append(ev)

        async with setpoint.aio.Client(
            server.address, prefixes=["/svc"], instance_id="py-aio", cache_path=tmp_path / "c.json"
        ) as client:
            await client.wait_ready(10)
            assert client.get("/svc/a").value == 1
            assert client.is_stale() is False
            client.watch("/svc", on_change)
            client.watch("/svc", on_change_sync)

            server.put("/svc/bad", "x")
            server.put("/svc/a", 2)
            await wait_for(lambda: len(async_events) == 2 and len(sync_events) == 2, what="events")
            assert [(e.path, e.value) for e in async_events] == [("/svc/bad", "x"), ("/svc/a", 2)]
            assert [(e.path, e.old_value) for e in sync_events] == [("/svc/bad", None), ("/svc/a", 1)]
            assert order == ["start /svc/bad", "end /svc/bad", "start /svc/a", "end /svc/a"]
            assert threads == {loop_thread}  # every callback ran on the client's loop

            info: dict[str, Any] = {}

            def nacked() -> bool:
                info.update(server.client_info("py-aio") or {})
                return bool(info.get("last_error"))

            await wait_for(nacked, what="the NACK")
            assert info["last_error"]["error"] == "async failure"
            assert await client.resolve("/svc/a") == 2
        with pytest.raises(setpoint.ClosedError):
            client.get("/svc/a")

    asyncio.run(main())


def test_async_wait_ready_errors(server: Server) -> None:
    async def main() -> None:
        async with setpoint.aio.Client(f"127.0.0.1:{free_port()}") as c:
            with pytest.raises(setpoint.ReadyTimeoutError):
                await c.wait_ready(0.3)
            with pytest.raises(setpoint.NotSyncedError):
                c.get("/x")
        async with setpoint.aio.Client(server.address, token="spk_wrong") as c:
            with pytest.raises(setpoint.UnauthorizedError):
                await c.wait_ready(10)

    asyncio.run(main())


def test_async_client_needs_a_running_loop() -> None:
    with pytest.raises(RuntimeError):
        setpoint.aio.Client("127.0.0.1:1")
