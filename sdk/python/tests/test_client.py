"""The sync client against a real `setpoint dev`: sync, watches, batches, environments, failing
callbacks, the cache file, reconnects, close, and tokens."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

import setpoint
from harness import Server, free_port, wait_until


class Recorder:
    """A watch callback that records events (thread-safe) and can fail on chosen paths."""

    def __init__(self, fail_paths: tuple[str, ...] = ()) -> None:
        self.events: list[setpoint.Event] = []
        self._lock = threading.Lock()
        self._fail = fail_paths

    def __call__(self, ev: setpoint.Event) -> None:
        with self._lock:
            self.events.append(ev)
        if ev.path in self._fail:
            raise RuntimeError(f"injected failure at {ev.path}")

    def snapshot(self) -> list[setpoint.Event]:
        with self._lock:
            return list(self.events)

    def wait_for(self, n: int, timeout: float = 10.0) -> list[setpoint.Event]:
        return wait_until(
            lambda: self.snapshot() if len(self.snapshot()) >= n else None,
            timeout,
            f"{n} events (have {self.snapshot()})",
        )


@pytest.fixture
def client_factory() -> Iterator[Any]:
    made: list[setpoint.Client] = []

    def make(address: str, **kw: Any) -> setpoint.Client:
        c = setpoint.Client(address, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def test_get_after_wait_ready(server: Server, client_factory: Any) -> None:
    server.put("/myapp/database/host", "db.internal")
    server.put("/myapp/database/pool", {"min": 1, "max": 5})
    server.put("/myapp/notes", "free text", format="text")
    server.put("/other/x", 1)
    c = client_factory(server.address, prefixes=["/myapp"])
    c.wait_ready(10)

    v = c.get("/myapp/database/host")
    assert (v.value, v.version, v.format) == ("db.internal", 1, "json")
    assert c.get("/myapp/database/pool").value == {"min": 1, "max": 5}
    assert c.get("/myapp/notes").value == "free text"
    assert c.get_value("/myapp/absent", "dflt") == "dflt"
    with pytest.raises(setpoint.NotFoundError):
        c.get("/myapp/absent")
    # Outside the client's prefixes nothing is held.
    with pytest.raises(setpoint.NotFoundError):
        c.get("/other/x")
    assert c.is_stale() is False


def test_before_any_sync_get_is_not_synced(client_factory: Any) -> None:
    c = client_factory(f"127.0.0.1:{free_port()}")  # nothing listens there
    with pytest.raises(setpoint.NotSyncedError):
        c.get("/a")
    # The timeout says why: the last connection error.
    with pytest.raises(setpoint.ReadyTimeoutError, match="UNAVAILABLE"):
        c.wait_ready(1.5)
    assert c.is_stale() is True


def test_watch_receives_only_changes(server: Server, client_factory: Any) -> None:
    server.put("/myapp/a", 1)
    server.put("/myapp/b", "x")
    c = client_factory(server.address)
    c.wait_ready(10)
    rec = Recorder()
    c.watch("/myapp", rec)
    other = Recorder()
    c.watch("/elsewhere", other)

    r1 = server.put("/myapp/a", 2)
    server.put("/unwatched/z", 1)
    r2 = server.put("/myapp/c", {"new": True})
    server.delete("/myapp/b")
    events = rec.wait_for(3)

    assert events[0] == setpoint.Event("/myapp/a", 2, 1, 2, r1["revision"], False, "json")
    assert events[1] == setpoint.Event("/myapp/c", {"new": True}, None, 1, r2["revision"], False, "json")
    assert (events[2].path, events[2].deleted, events[2].value, events[2].old_value) == (
        "/myapp/b",
        True,
        None,
        "x",
    )
    assert events[2].version == 2  # the tombstone version
    # A later change proves nothing else was queued in between (no initial state, no /unwatched).
    server.put("/myapp/a", 3)
    events = rec.wait_for(4)
    assert [e.path for e in events] == ["/myapp/a", "/myapp/c", "/myapp/b", "/myapp/a"]
    assert other.snapshot() == []
    with pytest.raises(setpoint.NotFoundError):
        c.get("/myapp/b")


def test_watch_prefix_must_lie_under_client_prefixes(server: Server, client_factory: Any) -> None:
    c = client_factory(server.address, prefixes=["/myapp"])
    with pytest.raises(setpoint.InvalidArgumentError):
        c.watch("/other", lambda ev: None)
    with pytest.raises(setpoint.InvalidArgumentError):
        c.watch("/myappx", lambda ev: None)
    c.watch("/myapp/db", lambda ev: None).stop()


def test_batch_arrives_as_one_ordered_delivery(server: Server, client_factory: Any) -> None:
    server.put("/app/gone", "bye")
    c = client_factory(server.address)
    c.wait_ready(10)
    seen_during_first: list[Any] = []
    rec = Recorder()

    def cb(ev: setpoint.Event) -> None:
        if not rec.snapshot():
            # The whole batch is applied before its first callback runs.
            seen_during_first.append(c.get("/app/three").value)
        rec(ev)

    c.watch("/app", cb)
    result = server.batch(
        [
            {"op": "put", "path": "/app/one", "value": 1},
            {"op": "put", "path": "/app/two", "value": 2},
            {"op": "delete", "path": "/app/gone"},
            {"op": "put", "path": "/app/three", "value": 3},
        ]
    )
    events = rec.wait_for(4)
    assert [(e.path, e.value, e.deleted) for e in events] == [
        ("/app/one", 1, False),
        ("/app/two", 2, False),
        ("/app/gone", None, True),
        ("/app/three", 3, False),
    ]
    assert {e.revision for e in events} == {result["revision"]}
    assert seen_during_first == [3]


def test_environment_effective_values(server: Server, client_factory: Any) -> None:
    server.put("/myapp/db", {"host": "localhost", "pool": {"min": 1, "max": 5}})
    server.put("/myapp/flag", "base")
    server.put("/env/prod/myapp/db", {"host": "prod-db", "pool": {"max": 50}})
    c = client_factory(server.address, environment="prod", prefixes=["/myapp"])
    c.wait_ready(10)
    assert c.get("/myapp/db").value == {"host": "prod-db", "pool": {"min": 1, "max": 50}}
    assert c.get("/myapp/flag").value == "base"
    with pytest.raises(setpoint.NotFoundError):
        c.get("/env/prod/myapp/db")

    rec = Recorder()
    c.watch("/myapp", rec)
    server.put("/env/prod/myapp/flag", "prod-flag")
    events = rec.wait_for(1)
    assert (events[0].path, events[0].value, events[0].old_value) == (
        "/myapp/flag",
        "prod-flag",
        "base",
    )
    # A base change hidden by the override changes no effective value: no event; the next
    # visible change proves it was not merely late.
    server.put("/myapp/flag", "base-2")
    server.put("/myapp/db", {"host": "localhost", "pool": {"min": 2, "max": 5}})
    events = rec.wait_for(2)
    assert len(events) == 2
    assert (events[1].path, events[1].value) == (
        "/myapp/db",
        {"host": "prod-db", "pool": {"min": 2, "max": 50}},
    )
    assert c.get("/myapp/flag").value == "prod-flag"


def test_failing_callback_is_nacked_and_the_client_goes_on(
    server: Server, client_factory: Any
) -> None:
    c = client_factory(server.address, instance_id="py-nack", labels={"zone": "eu-1"})
    c.wait_ready(10)
    rec = Recorder(fail_paths=("/a/bad",))
    c.watch("/a", rec)
    bad = server.put("/a/bad", 1)
    server.put("/a/good", 2)
    events = rec.wait_for(2)
    assert [e.path for e in events] == ["/a/bad", "/a/good"]
    assert c.get("/a/good").value == 2

    def nacked() -> dict[str, Any] | None:
        info = server.client_info("py-nack")
        return info if info and info.get("last_error") else None

    info = wait_until(nacked, 10, "the NACK in /api/clients")
    assert info["last_error"]["path"] == "/a/bad"
    assert info["last_error"]["error"] == "injected failure at /a/bad"
    assert info["last_error"]["revision"] == bad["revision"]
    assert info["labels"] == {"zone": "eu-1"}
    assert info["sdk"] == f"python/{setpoint.__version__}"
    assert info["status"] == "connected"


def test_cache_file_is_served_stale_without_a_server(
    server: Server, client_factory: Any, tmp_path: Path
) -> None:
    cache = tmp_path / "cache.json"
    server.put("/myapp/host", "h1")
    c = client_factory(server.address, prefixes=["/myapp"], cache_path=cache)
    c.wait_ready(10)
    r = server.put("/myapp/host", "h2")
    # The file is written right after the update is applied in memory: wait for it too.
    doc = wait_until(
        lambda: (d := json.loads(cache.read_text()))["revision"] >= r["revision"] and d,
        10,
        "the cache file to hold h2",
    )
    assert doc["entries"]["/myapp/host"] == {
        "value": "h2",
        "format": "json",
        "version": 2,
        "revision": r["revision"],
    }
    c.close()
    server.stop()

    offline = client_factory(server.address, prefixes=["/myapp"], cache_path=cache)
    v = offline.get("/myapp/host")
    assert (v.value, v.version) == ("h2", 2)
    assert offline.is_stale() is True
    with pytest.raises(setpoint.NotFoundError):
        offline.get("/myapp/absent")
    with pytest.raises(setpoint.ReadyTimeoutError):
        offline.wait_ready(0.3)
    # Another scope does not load this file.
    other = client_factory(server.address, prefixes=["/"], cache_path=cache)
    with pytest.raises(setpoint.NotSyncedError):
        other.get("/myapp/host")


def test_resume_from_cache_reveals_changes_made_while_away(
    server: Server, client_factory: Any, tmp_path: Path
) -> None:
    cache = tmp_path / "cache.json"
    server.put("/myapp/a", 1)
    server.put("/myapp/b", 1)
    c = client_factory(server.address, prefixes=["/myapp"], cache_path=cache)
    c.wait_ready(10)
    c.close()
    server.put("/myapp/a", 2)
    server.delete("/myapp/b")

    c2 = client_factory(server.address, prefixes=["/myapp"], cache_path=cache)
    rec = Recorder()
    c2.watch("/myapp", rec)
    c2.wait_ready(10)
    assert c2.get("/myapp/a").value == 2
    with pytest.raises(setpoint.NotFoundError):
        c2.get("/myapp/b")
    events = rec.wait_for(2)
    assert [(e.path, e.value, e.old_value, e.deleted) for e in events] == [
        ("/myapp/a", 2, 1, False),
        ("/myapp/b", None, 1, True),
    ]
    assert c2.is_stale() is False


def test_reconnects_after_the_edge_restarts(server: Server, client_factory: Any) -> None:
    c = client_factory(server.address)
    c.wait_ready(10)
    rec = Recorder()
    c.watch("/r", rec)
    server.stop()
    wait_until(c.is_stale, 10, "stale after the server stopped")
    assert c.get_value("/r/x") is None  # still serving what it held

    server.start()
    wait_until(lambda: not c.is_stale(), 20, "reconnected")
    server.put("/r/x", "after")
    events = rec.wait_for(1)
    assert (events[0].path, events[0].value) == ("/r/x", "after")


def test_close_releases_everything(server: Server, tmp_path: Path) -> None:
    cache = tmp_path / "cache.json"
    before = {t.ident for t in threading.enumerate()}
    c = setpoint.Client(server.address, instance_id="py-close", cache_path=cache)
    c.wait_ready(10)
    rec = Recorder()
    c.watch("/", rec)
    try:
        wait_until(
            lambda: (server.client_info("py-close") or {}).get("status") == "connected",
            10,
            "the session in /api/clients",
        )
    finally:
        c.close()
    c.close()  # idempotent

    assert [t.name for t in threading.enumerate() if t.name.startswith("setpoint-")] == []
    assert {t.ident for t in threading.enumerate() if t.name.startswith("setpoint-")} <= before
    wait_until(
        lambda: (server.client_info("py-close") or {}).get("status") != "connected",
        10,
        "the edge to see the session end",
    )
    with pytest.raises(setpoint.ClosedError):
        c.get("/x")
    with pytest.raises(setpoint.ClosedError):
        c.wait_ready(1)
    with pytest.raises(setpoint.ClosedError):
        c.watch("/", rec)
    assert json.loads(cache.read_text())["format"] == 1
    server.put("/after/close", 1)
    # No callback after close: a later write on another client shows the edge has moved on.
    with setpoint.Client(server.address) as probe:
        probe.wait_ready(10)
        assert probe.get("/after/close").value == 1
    assert rec.snapshot() == []


def test_context_manager_closes(server: Server) -> None:
    with setpoint.Client(server.address) as c:
        c.wait_ready(10)
    with pytest.raises(setpoint.ClosedError):
        c.get("/x")


def test_bad_token_is_unauthorized(server: Server, client_factory: Any) -> None:
    c = client_factory(server.address, token="spk_not_a_real_key")
    started = time.monotonic()
    with pytest.raises(setpoint.UnauthorizedError, match="UNAUTHENTICATED"):
        c.wait_ready(10)
    # The refusal ends the wait, not the timeout.
    assert time.monotonic() - started < 5
    with pytest.raises(setpoint.UnauthorizedError):
        c.get("/anything")
    assert c.is_stale() is True


def test_valid_token_is_accepted(server: Server, client_factory: Any) -> None:
    server.put("/k/v", "ok")
    c = client_factory(server.address, token=server.admin_key)
    c.wait_ready(10)
    assert c.get("/k/v").value == "ok"


def test_resolve_substitutes_variables(server: Server, client_factory: Any) -> None:
    server.put_environment("prod-eu", parent="prod", variables={"REGION": "eu"})
    server.put("/svc/host", "db-${REGION}.internal")
    c = client_factory(server.address, environment="prod-eu")
    assert c.resolve("/svc/host") == "db-eu.internal"
    assert c.resolve("/svc/host", raw=True) == "db-${REGION}.internal"
    assert c.resolve("/svc") == {"host": "db-eu.internal"}
    with pytest.raises(setpoint.NotFoundError):
        c.resolve("/svc/absent")


def test_bad_arguments(client_factory: Any) -> None:
    with pytest.raises(setpoint.InvalidArgumentError):
        setpoint.Client("127.0.0.1:1", prefixes="/")
    with pytest.raises(setpoint.InvalidArgumentError):
        setpoint.Client("127.0.0.1:1", prefixes=["relative"])
    with pytest.raises(setpoint.InvalidArgumentError):
        setpoint.Client("127.0.0.1:1", prefixes=[])
    with pytest.raises(setpoint.InvalidArgumentError):
        setpoint.Client("http://127.0.0.1:1/path")
    c = client_factory("127.0.0.1:1")

    async def coro(ev: setpoint.Event) -> None:
        return None

    with pytest.raises(setpoint.InvalidArgumentError):
        c.watch("/", coro)
    assert os.path.basename(c.instance_id).count("-") >= 2


def test_heartbeats_keep_an_idle_session_open(server: Server, client_factory: Any) -> None:
    # The edge closes a session silent for three heartbeat intervals (15 s in setpoint dev);
    # an idle client outlives that only by sending its heartbeats. Time has to pass here, so
    # this sleeps rather than waiting for a condition.
    c = client_factory(server.address, instance_id="py-idle")
    c.wait_ready(10)
    info = wait_until(lambda: server.client_info("py-idle"), 10, "the session in /api/clients")
    connected_at = info["connected_at"]
    time.sleep(16.5)
    after = server.client_info("py-idle")
    assert after is not None
    assert (after["status"], after["connected_at"]) == ("connected", connected_at)
    assert c.is_stale() is False
    server.put("/idle/after", 1)
    wait_until(lambda: c.get_value("/idle/after") == 1, 10, "a change after the idle period")


def test_a_silent_edge_is_given_up_and_reconnected(server: Server, client_factory: Any) -> None:
    # SIGSTOP freezes the edge with its connections open: only the heartbeat deadline (three
    # 5 s intervals) can tell the client it is gone.
    c = client_factory(server.address)
    c.wait_ready(10)
    assert server.proc is not None
    server.proc.send_signal(signal.SIGSTOP)
    try:
        wait_until(c.is_stale, 30, "the client to give up on the frozen edge")
    finally:
        server.proc.send_signal(signal.SIGCONT)
    wait_until(lambda: not c.is_stale(), 30, "a new session after the edge resumed")
    server.put("/thawed/x", 1)
    wait_until(lambda: c.get_value("/thawed/x") == 1, 10, "a change on the new session")
