"""A real `setpoint dev` for the tests: started on a free loopback port with its own data dir,
driven over REST, stopped by its PID. No mocks: the SDK talks to the real edge.

The binary comes from $SETPOINT_BIN (default <repo root>/target/debug/setpoint); a missing
binary fails the test loudly rather than skipping it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, TypeVar

import pytest

ROOT = Path(__file__).resolve().parents[3]
T = TypeVar("T")


def setpoint_bin() -> str:
    path = os.environ.get("SETPOINT_BIN") or str(ROOT / "target" / "debug" / "setpoint")
    if not os.access(path, os.X_OK):
        pytest.fail(
            f"setpoint binary not found at {path}: build it (cargo build -p setpoint) or set "
            "SETPOINT_BIN",
            pytrace=False,
        )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    predicate: Callable[[], T | None], timeout: float = 10.0, what: str = "condition"
) -> T:
    """Polls `predicate` until it returns something truthy, and returns that; fails the test
    with `what` when `timeout` passes. Exceptions count as "not yet"."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = predicate()
            if result:
                return result
        except Exception as e:  # e.g. connection refused while a server starts
            last_error = e
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what}"
                + (f" (last error: {last_error!r})" if last_error else "")
            )
        time.sleep(0.02)


class HttpError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status


class Server:
    """One `setpoint dev` process."""

    def __init__(self, data_dir: str | None = None, port: int | None = None) -> None:
        self.port = port or free_port()
        self._own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="setpoint-py-")
        self.address = f"127.0.0.1:{self.port}"
        self.base = f"http://{self.address}"
        self.log_path = os.path.join(self.data_dir, f"server-{self.port}.log")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "Server":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [setpoint_bin(), "dev", "--listen", self.address, "--data-dir", self.data_dir],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"setpoint dev exited: {self.tail_log()}")
            # The writer's /readyz, and the embedded edge's: until the edge holds the writer's
            # snapshot it starts sessions with an empty stale reset at revision 0.
            for probe in ("/readyz", "/edge/readyz"):
                with urllib.request.urlopen(f"{self.base}{probe}", timeout=1) as r:
                    if r.status != 200:
                        return False
            return True

        try:
            wait_until(ready, 30, f"setpoint dev on {self.address} to be ready")
        except AssertionError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """SIGTERM by PID, then SIGKILL if it lingers."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def tail_log(self, n: int = 40) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return "(no log)"

    @property
    def admin_key(self) -> str:
        return Path(self.data_dir, "admin.key").read_text().strip()

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.base}{path}", data=data, method=method)
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                text = r.read().decode()
        except urllib.error.HTTPError as e:
            raise HttpError(e.code, e.read().decode()) from None
        return json.loads(text) if text else None

    def put(self, path: str, value: Any, **extra: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.request("PUT", f"/api/config{path}", {"value": value, **extra})
        self.wait_edge(result)
        return result

    def delete(self, path: str) -> Any:
        result = self.request("DELETE", f"/api/config{path}")
        self.wait_edge(result)
        return result

    def batch(self, changes: list[dict[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = self.request("POST", "/api/batch", {"changes": changes})
        self.wait_edge(result)
        return result

    def wait_edge(self, answer: Any) -> None:
        """Wait until the dev edge holds the revision a write answered (a commit reaches the edge
        a moment after the writer answers), so a session started afterwards sees the write in
        its initial state rather than as an event."""
        if not isinstance(answer, dict) or "revision" not in answer or answer.get("dry_run"):
            return
        revision = int(answer["revision"])

        def holds() -> bool:
            with urllib.request.urlopen(f"{self.base}/edge/healthz", timeout=2) as r:
                return int(json.loads(r.read())["revision"]) >= revision

        wait_until(holds, 10, f"the edge to hold revision {revision}")

    def put_environment(self, name: str, **body: Any) -> Any:
        return self.request("PUT", f"/api/environments/{name}", body)

    def clients(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request("GET", "/api/clients")
        return result

    def client_info(self, instance_id: str) -> dict[str, Any] | None:
        for c in self.clients():
            if c.get("id") == instance_id:
                return c
        return None
