"""The Python SDK's conformance driver: speaks the line protocol of tests/conformance/README.md on
stdin/stdout so the shared scenarios can drive `setpoint.Client`.

One JSON command per stdin line, exactly one answer line per command (same `seq`); watch
callbacks print asynchronous `{"event": "change", …}` lines. Stdout carries only protocol lines,
logs go to stderr. Exits when stdin closes.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from typing import Any, Callable

import setpoint

_out_lock = threading.Lock()


def emit(obj: dict[str, Any]) -> None:
    line = json.dumps(obj, separators=(",", ":"))
    with _out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def error_kind(e: BaseException) -> str:
    if isinstance(e, setpoint.NotFoundError):
        return "not_found"
    if isinstance(e, setpoint.NotSyncedError):
        return "not_synced"
    if isinstance(e, setpoint.UnauthorizedError):
        return "unauthorized"
    if isinstance(e, TimeoutError):
        return "timeout"
    if isinstance(e, setpoint.ClosedError):
        return "closed"
    if isinstance(e, (setpoint.InvalidArgumentError, ValueError, KeyError, TypeError)):
        return "invalid"
    return "other"


class Driver:
    def __init__(self) -> None:
        self.client: setpoint.Client | None = None
        self.watches: dict[str, setpoint.WatchHandle] = {}

    def need_client(self) -> setpoint.Client:
        if self.client is None:
            raise setpoint.InvalidArgumentError("no client: send open first")
        return self.client

    def handle(self, cmd: dict[str, Any]) -> dict[str, Any]:
        name = cmd.get("cmd")
        handler: Callable[[dict[str, Any]], dict[str, Any]] | None = getattr(
            self, f"cmd_{name}", None
        ) if isinstance(name, str) else None
        if handler is None:
            raise setpoint.InvalidArgumentError(f"unknown cmd {name!r}")
        return handler(cmd)

    def cmd_open(self, cmd: dict[str, Any]) -> dict[str, Any]:
        if self.client is not None:
            raise setpoint.InvalidArgumentError("a client is already open")
        self.client = setpoint.Client(
            cmd["address"],
            environment=cmd.get("env"),
            prefixes=cmd.get("prefixes") or ["/"],
            cache_path=cmd.get("cache_path"),
            instance_id=cmd.get("instance_id"),
            labels=cmd.get("labels") or {},
            token=cmd.get("token"),
        )
        return {}

    def cmd_wait_ready(self, cmd: dict[str, Any]) -> dict[str, Any]:
        self.need_client().wait_ready(float(cmd.get("timeout_ms", 5000)) / 1000.0)
        return {}

    def cmd_get(self, cmd: dict[str, Any]) -> dict[str, Any]:
        v = self.need_client().get(cmd["path"])
        return {"value": v.value, "version": v.version}

    def cmd_watch(self, cmd: dict[str, Any]) -> dict[str, Any]:
        watch_id = str(cmd["watch_id"])
        fail_paths = set(cmd.get("fail_paths") or [])

        def callback(ev: setpoint.Event) -> None:
            emit(
                {
                    "event": "change",
                    "watch_id": watch_id,
                    "path": ev.path,
                    "value": ev.value,
                    "old_value": ev.old_value,
                    "version": ev.version,
                    "revision": ev.revision,
                    "deleted": ev.deleted,
                    "at_ms": time.time() * 1000.0,
                }
            )
            if ev.path in fail_paths:
                raise RuntimeError(f"injected failure at {ev.path}")

        if watch_id in self.watches:
            raise setpoint.InvalidArgumentError(f"watch {watch_id} exists")
        self.watches[watch_id] = self.need_client().watch(cmd["prefix"], callback)
        return {}

    def cmd_unwatch(self, cmd: dict[str, Any]) -> dict[str, Any]:
        handle = self.watches.pop(str(cmd["watch_id"]), None)
        if handle is None:
            raise setpoint.InvalidArgumentError(f"no watch {cmd['watch_id']}")
        handle.stop()
        return {}

    def cmd_is_stale(self, cmd: dict[str, Any]) -> dict[str, Any]:
        return {"stale": self.need_client().is_stale()}

    def cmd_close(self, cmd: dict[str, Any]) -> dict[str, Any]:
        self.need_client().close()
        return {}


def main() -> int:
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    driver = Driver()
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        seq: Any = None
        try:
            cmd = json.loads(line)
            if not isinstance(cmd, dict):
                raise setpoint.InvalidArgumentError("a command is a JSON object")
            seq = cmd.get("seq")
            result = driver.handle(cmd)
            emit({"seq": seq, "ok": True, **result})
        except Exception as e:
            kind = "invalid" if isinstance(e, json.JSONDecodeError) else error_kind(e)
            emit({"seq": seq, "ok": False, "error": {"kind": kind, "message": str(e)}})
    if driver.client is not None:
        driver.client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
