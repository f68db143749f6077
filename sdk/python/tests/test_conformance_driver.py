"""The conformance driver speaks the line protocol (tests/conformance/README.md) against a real
server: answers by seq, error kinds, and callback lines printed before a failing callback fails."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from harness import Server, free_port, wait_until

DRIVER = Path(__file__).with_name("conformance_driver.py")


class DriverProc:
    def __init__(self) -> None:
        # The venv's interpreter, with the installed package (the orchestrator does the same).
        self.proc = subprocess.Popen(
            [sys.executable, str(DRIVER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.answers: dict[int, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.lines: "queue.Queue[dict[str, Any]]" = queue.Queue()
        self._seq = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))  # any non-JSON line on stdout fails here

    def _drain(self) -> None:
        while True:
            try:
                msg = self.lines.get_nowait()
            except queue.Empty:
                return
            if "seq" in msg:
                self.answers[msg["seq"]] = msg
            else:
                self.events.append(msg)

    def send(self, cmd: str, **args: Any) -> dict[str, Any]:
        self._seq += 1
        seq = self._seq
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"seq": seq, "cmd": cmd, **args}) + "\n")
        self.proc.stdin.flush()

        def answered() -> dict[str, Any] | None:
            self._drain()
            return self.answers.get(seq)

        return wait_until(answered, 15, f"answer to {cmd}")

    def wait_events(self, n: int) -> list[dict[str, Any]]:
        def enough() -> list[dict[str, Any]] | None:
            self._drain()
            return self.events if len(self.events) >= n else None

        return wait_until(enough, 10, f"{n} callback lines")

    def finish(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        return self.proc.wait(15)


@pytest.fixture
def driver() -> Iterator[DriverProc]:
    d = DriverProc()
    try:
        yield d
    finally:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()


def test_driver_protocol(server: Server, driver: DriverProc) -> None:
    server.put("/a/x", 1)
    assert driver.send("get", path="/a/x")["error"]["kind"] == "invalid"  # nothing open yet
    assert driver.send(
        "open",
        address=server.address,
        env=None,
        prefixes=["/a"],
        cache_path=None,
        instance_id="py-driver",
        token=None,
        labels={"zone": "eu-1"},
    ) == {"seq": 2, "ok": True}
    assert driver.send("wait_ready", timeout_ms=10000)["ok"] is True
    assert driver.send("get", path="/a/x") == {"seq": 4, "ok": True, "value": 1, "version": 1}
    assert driver.send("get", path="/a/none")["error"]["kind"] == "not_found"
    assert driver.send("is_stale") == {"seq": 6, "ok": True, "stale": False}
    assert driver.send("watch", watch_id="w1", prefix="/a", fail_paths=["/a/bad"])["ok"] is True
    assert driver.send("watch", watch_id="w2", prefix="/b", fail_paths=[])["error"]["kind"] == "invalid"

    bad = server.put("/a/bad", {"k": 1})
    server.put("/a/x", 2)
    events = driver.wait_events(2)
    assert [{k: v for k, v in e.items() if k != "at_ms"} for e in events] == [
        {
            "event": "change",
            "watch_id": "w1",
            "path": "/a/bad",
            "value": {"k": 1},
            "old_value": None,
            "version": 1,
            "revision": bad["revision"],
            "deleted": False,
        },
        {
            "event": "change",
            "watch_id": "w1",
            "path": "/a/x",
            "value": 2,
            "old_value": 1,
            "version": 2,
            "revision": bad["revision"] + 1,
            "deleted": False,
        },
    ]
    assert all(isinstance(e["at_ms"], float) for e in events)
    info: dict[str, Any] = wait_until(
        lambda: (server.client_info("py-driver") or {}).get("last_error"), 10, "the NACK"
    )
    assert info["error"] == "injected failure at /a/bad"

    assert driver.send("unwatch", watch_id="w1")["ok"] is True
    server.put("/a/x", 3)
    wait_until(lambda: driver.send("get", path="/a/x").get("value") == 3, 10, "x = 3")
    assert len(driver.events) == 2  # unwatched: no further callback lines

    assert driver.send("close")["ok"] is True
    assert driver.send("get", path="/a/x")["error"]["kind"] == "closed"
    assert driver.send("bogus")["error"]["kind"] == "invalid"
    assert driver.finish() == 0


def test_driver_timeout_and_unauthorized(server: Server) -> None:
    d = DriverProc()
    try:
        d.send("open", address=f"127.0.0.1:{free_port()}", env=None, prefixes=["/"], cache_path=None,
               instance_id="py-t", token=None, labels={})
        assert d.send("wait_ready", timeout_ms=200)["error"]["kind"] == "timeout"
        assert d.send("get", path="/x")["error"]["kind"] == "not_synced"
        assert d.finish() == 0
    finally:
        d.proc.kill()
    d = DriverProc()
    try:
        d.send("open", address=server.address, env=None, prefixes=["/"], cache_path=None,
               instance_id="py-u", token="spk_wrong", labels={})
        assert d.send("wait_ready", timeout_ms=10000)["error"]["kind"] == "unauthorized"
        assert d.send("get", path="/x")["error"]["kind"] == "unauthorized"
        assert d.finish() == 0
    finally:
        d.proc.kill()
