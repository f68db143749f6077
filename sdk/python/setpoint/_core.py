"""The session engine shared by the sync and asyncio clients.

It owns one background thread that keeps one `Edge/Session` stream open: it sends the hello,
applies updates to the `State`, writes the cache file, runs the watch callbacks (through a
dispatcher the front-end supplies, so asyncio callbacks run on their event loop), sends the
receipt, and reconnects with backoff when the stream ends. A second thread per stream sends
heartbeats and cuts a stream whose edge went silent. Application threads only read state under
the lock; only the session thread changes it.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

import grpc

from . import _cache
from ._backoff import UNAUTHORIZED_DELAY, Backoff
from ._pb import edge_pb2, edge_pb2_grpc
from ._state import State, is_under, normalize_prefix
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

log = logging.getLogger("setpoint")

SDK_NAME = "python"
SDK_VERSION = "0.1.0"

# Used until the edge names its interval in SessionStarted.
DEFAULT_HEARTBEAT = 5.0
# Bounds the wait for the session thread in close(): a callback that never returns must not hang
# the application's shutdown forever.
CLOSE_JOIN_TIMEOUT = 10.0

Callback = Callable[[Event], Any]
Dispatch = Callable[[Callback, Event], None]

_AUTH_CODES = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)


@dataclass
class _Watch:
    prefix: str
    callback: Callback
    active: bool = True


class WatchHandle:
    """Returned by `watch`; `stop()` (or `close()`, or leaving a `with` block) ends the watch.

    After `stop()` returns, the callback is not called again, except for a call already running
    on another thread.
    """

    def __init__(self, core: "Core", watch: _Watch) -> None:
        self._core = core
        self._watch = watch

    @property
    def prefix(self) -> str:
        return self._watch.prefix

    def stop(self) -> None:
        self._core._unwatch(self._watch)

    close = stop

    def __enter__(self) -> "WatchHandle":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def default_instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def _target(address: str, tls: TLSConfig | bool | None) -> tuple[str, TLSConfig | None]:
    """Splits an optional scheme off the address: https:// implies TLS, http:// forbids it."""
    if address.startswith("https://"):
        address = address[len("https://") :]
        if tls is None or tls is True:
            tls = TLSConfig()
        elif tls is False:
            raise InvalidArgumentError("https:// address with tls=False")
    elif address.startswith("http://"):
        address = address[len("http://") :]
        if tls:
            raise InvalidArgumentError("http:// address with TLS options")
    address = address.rstrip("/")
    if not address or "/" in address:
        raise InvalidArgumentError(f"address must be host:port, got {address!r}")
    if tls is True:
        tls = TLSConfig()
    return address, (tls if isinstance(tls, TLSConfig) else None)


class Core:
    def __init__(
        self,
        address: str,
        *,
        environment: str | None,
        prefixes: Sequence[str],
        cache_path: str | os.PathLike[str] | None,
        instance_id: str | None,
        labels: Mapping[str, str] | None,
        token: str | None,
        tls: TLSConfig | bool | None,
        resolve: bool,
        dispatch: Dispatch,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        if isinstance(prefixes, str):
            raise InvalidArgumentError("prefixes must be a sequence of strings, not one string")
        if not prefixes:
            raise InvalidArgumentError("at least one prefix is needed ('/' for everything)")
        try:
            self.prefixes = [normalize_prefix(p) for p in prefixes]
        except ValueError as e:
            raise InvalidArgumentError(str(e)) from None
        self.target, self._tls = _target(address, tls)
        self.environment = environment or None
        self.instance_id = instance_id or default_instance_id()
        self._labels = dict(labels or {})
        self._token = token
        self._resolve_values = resolve
        self._cache_path = os.fspath(cache_path) if cache_path is not None else None
        self._dispatch = dispatch
        self._on_change = on_change

        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._state = State()
        if self._cache_path is not None:
            loaded = _cache.load(self._cache_path, self.environment, self.prefixes)
            if loaded is not None:
                self._state = loaded
        self._watches: list[_Watch] = []
        self._ready = False
        # Connected = a session started and completed its sync; false while serving the cache
        # file or after losing a session.
        self._connected = False
        self._edge_stale = False
        self._auth_error: UnauthorizedError | None = None
        # Why the last session attempt failed, for the message of a wait_ready timeout.
        self._last_error: str | None = None
        self._closed = False
        self._closing = threading.Event()
        self._call: Any = None
        self._outbox: queue.Queue[edge_pb2.ClientMessage | None] | None = None
        self._last_heard = time.monotonic()
        self._in_callbacks = False
        self._resolve_channel: grpc.Channel | None = None

        self._thread = threading.Thread(target=self._run, name="setpoint-session", daemon=True)
        self._thread.start()

    # ---- application-facing reads -------------------------------------------------------

    def get(self, path: str) -> Value:
        with self._lock:
            if self._closed:
                raise ClosedError("client is closed")
            held = self._state.entries.get(path)
            if held is not None:
                return Value(path, held.value, held.version, held.revision, held.format)
            if self._state.primed:
                raise NotFoundError(path)
            if self._auth_error is not None:
                raise UnauthorizedError(str(self._auth_error))
            raise NotSyncedError("no sync completed yet and no cache file loaded")

    def is_stale(self) -> bool:
        with self._lock:
            return not self._connected or self._edge_stale

    def check_ready(self) -> bool:
        """True once synced; raises the error that prevents it (closed, unauthorized)."""
        with self._lock:
            return self._check_ready_locked()

    def _check_ready_locked(self) -> bool:
        if self._closed:
            raise ClosedError("client is closed")
        if self._ready:
            return True
        if self._auth_error is not None:
            raise UnauthorizedError(str(self._auth_error))
        return False

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._check_ready_locked():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ReadyTimeoutError(self._timeout_message(timeout))
                self._cond.wait(remaining)

    def timeout_message(self, timeout: float) -> str:
        with self._lock:
            return self._timeout_message(timeout)

    def _timeout_message(self, timeout: float) -> str:
        msg = f"not synced within {timeout:g}s (edge {self.target}"
        if self._last_error:
            msg += f"; last error: {self._last_error}"
        return msg + ")"

    def watch(self, prefix: str, callback: Callback) -> WatchHandle:
        try:
            prefix = normalize_prefix(prefix)
        except ValueError as e:
            raise InvalidArgumentError(str(e)) from None
        if not any(is_under(prefix, p) for p in self.prefixes):
            raise InvalidArgumentError(
                f"watch prefix {prefix} lies under none of the client's prefixes {self.prefixes}"
            )
        w = _Watch(prefix, callback)
        with self._lock:
            if self._closed:
                raise ClosedError("client is closed")
            self._watches.append(w)
        return WatchHandle(self, w)

    def _unwatch(self, w: _Watch) -> None:
        with self._lock:
            w.active = False
            if w in self._watches:
                self._watches.remove(w)

    # ---- Resolve: secrets and substituted values, on demand ------------------------------

    def resolve(
        self, path: str, *, env: str | None = None, raw: bool = False, timeout: float = 10.0
    ) -> Any:
        with self._lock:
            if self._closed:
                raise ClosedError("client is closed")
            if self._resolve_channel is None:
                self._resolve_channel = self._channel()
            channel = self._resolve_channel
        stub = _stub(channel)
        req = edge_pb2.ResolveRequest(path=path, raw=raw)
        env = env if env is not None else self.environment
        if env:
            req.env = env
        try:
            resp = stub.Resolve(req, metadata=self._metadata(), timeout=timeout)
        except grpc.RpcError as e:
            code, details = _status(e)
            if code in _AUTH_CODES:
                raise UnauthorizedError(details) from None
            if code == grpc.StatusCode.NOT_FOUND:
                raise NotFoundError(path) from None
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                raise InvalidArgumentError(details) from None
            raise SetpointError(f"resolve {path}: {code.name if code else '?'}: {details}") from None
        try:
            doc = json.loads(resp.json)
        except ValueError:
            raise SetpointError(f"resolve {path}: the edge answered invalid JSON") from None
        # A path with a value answers the entry document (value plus metadata); a prefix without
        # one answers the bare subtree object, which has no such envelope.
        if (
            isinstance(doc, dict)
            and doc.get("path") == path
            and "value" in doc
            and isinstance(doc.get("resolved"), bool)
        ):
            return doc["value"]
        return doc

    # ---- shutdown -----------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            # Set under the lock: the session thread stores its call under it and checks this
            # flag afterwards, so either we see its call here or it sees the flag.
            self._closing.set()
            call, outbox = self._call, self._outbox
            resolve_channel, self._resolve_channel = self._resolve_channel, None
            self._cond.notify_all()
        if call is not None:
            call.cancel()
        if outbox is not None:
            outbox.put(None)
        if threading.current_thread() is not self._thread:
            self._thread.join(CLOSE_JOIN_TIMEOUT)
            if self._thread.is_alive():
                log.warning("session thread still busy (a callback?) after close")
        if resolve_channel is not None:
            resolve_channel.close()
        self._save_cache()
        self._changed()

    # ---- the session thread -------------------------------------------------------------

    def _run(self) -> None:
        backoff = Backoff()
        while not self._closing.is_set():
            try:
                delay = self._session(backoff)
            except Exception:  # a bug here must not end reconnection for the app's lifetime
                log.exception("session failed unexpectedly")
                delay = backoff.next_delay()
            if delay is None:
                delay = backoff.next_delay()
            if self._closing.wait(delay):
                break

    def _session(self, backoff: Backoff) -> float | None:
        """Runs one stream until it ends; returns the delay before the next attempt (None:
        the normal backoff)."""
        channel = self._channel()
        outbox: queue.Queue[edge_pb2.ClientMessage | None] = queue.Queue()
        hello = edge_pb2.ClientHello(
            instance_id=self.instance_id,
            prefixes=self.prefixes,
            labels=self._labels,
            sdk=SDK_NAME,
            sdk_version=SDK_VERSION,
            resolve=self._resolve_values,
        )
        if self.environment:
            hello.env = self.environment
        resume_from = self._state.revision if self._state.primed else None
        if resume_from is not None:
            hello.from_revision = resume_from
        outbox.put(edge_pb2.ClientMessage(hello=hello))

        def requests() -> Iterator[edge_pb2.ClientMessage]:
            while True:
                msg = outbox.get()
                if msg is None:
                    return
                yield msg

        stub = _stub(channel)
        call = stub.Session(requests(), metadata=self._metadata())
        with self._lock:
            self._call, self._outbox = call, outbox
        if self._closing.is_set():
            call.cancel()
        beat_stop = threading.Event()
        beat: threading.Thread | None = None
        session = _SessionProgress(resume_from)
        try:
            for msg in call:
                self._last_heard = time.monotonic()
                kind = msg.WhichOneof("kind")
                if kind == "started" and beat is None:
                    backoff.reset()
                    beat = self._on_started(msg.started, session, call, outbox, beat_stop)
                elif kind == "update":
                    self._apply(msg.update, outbox)
                    session.applied(msg.update)
                elif kind == "heartbeat":
                    with self._lock:
                        self._edge_stale = msg.heartbeat.stale
                    session.heartbeat()
                if session.synced:
                    self._mark_synced()
            log.warning("edge %s ended the session; reconnecting", self.target)
            return None
        except grpc.RpcError as e:
            return None if self._closing.is_set() else self._on_rpc_error(e)
        finally:
            beat_stop.set()
            outbox.put(None)
            call.cancel()
            if beat is not None:
                beat.join()
            with self._lock:
                self._call, self._outbox = None, None
                was_connected, self._connected = self._connected, False
            channel.close()
            if was_connected:
                self._changed()

    def _on_started(
        self,
        started: edge_pb2.SessionStarted,
        session: "_SessionProgress",
        call: Any,
        outbox: queue.Queue[edge_pb2.ClientMessage | None],
        beat_stop: threading.Event,
    ) -> threading.Thread:
        """Records the edge's answer to the hello and starts this stream's heartbeats."""
        interval = (started.heartbeat_interval_ms / 1000.0) or DEFAULT_HEARTBEAT
        session.started(started.revision)
        with self._lock:
            self._auth_error = None
            self._last_error = None
            self._edge_stale = started.stale
        log.info("session started on edge %s", started.edge_id)
        beat = threading.Thread(
            target=self._heartbeats,
            args=(call, outbox, interval, beat_stop),
            name="setpoint-heartbeat",
            daemon=True,
        )
        beat.start()
        return beat

    def _on_rpc_error(self, e: grpc.RpcError) -> float | None:
        """Records why the stream failed; returns the delay before the next attempt."""
        code, details = _status(e)
        error = f"{code.name if code else '?'}: {details}"
        if code in _AUTH_CODES:
            log.error("edge %s refused the token: %s", self.target, details)
            with self._lock:
                self._auth_error = UnauthorizedError(error)
                self._last_error = error
                self._cond.notify_all()
            self._changed()
            return UNAUTHORIZED_DELAY
        with self._lock:
            self._last_error = error
        log.warning("session with %s lost (%s); reconnecting", self.target, error)
        return None

    def _apply(
        self, update: edge_pb2.WatchResponse, outbox: queue.Queue[edge_pb2.ClientMessage | None]
    ) -> None:
        with self._lock:
            events = self._state.apply(update)
            watches = list(self._watches)
        self._save_cache()
        failures: list[edge_pb2.Nack] = []
        self._in_callbacks = True
        try:
            for ev in events:
                for w in watches:
                    if not w.active or not is_under(ev.path, w.prefix):
                        continue
                    if self._closing.is_set():
                        return
                    try:
                        self._dispatch(w.callback, ev)
                    except Exception as e:  # the app's bug must not end the session
                        log.warning("watch callback for %s failed: %r", ev.path, e)
                        failures.append(edge_pb2.Nack(path=ev.path, error=str(e) or repr(e)))
        finally:
            self._in_callbacks = False
            # Time spent in callbacks is not the edge's silence.
            self._last_heard = time.monotonic()
        outbox.put(
            edge_pb2.ClientMessage(
                receipt=edge_pb2.Receipt(revision=update.revision, failures=failures)
            )
        )

    def _mark_synced(self) -> None:
        with self._lock:
            if self._ready and self._connected:
                return
            self._ready = True
            self._connected = True
            self._cond.notify_all()
        self._changed()

    def _heartbeats(
        self,
        call: Any,
        outbox: queue.Queue[edge_pb2.ClientMessage | None],
        interval: float,
        stop: threading.Event,
    ) -> None:
        while not stop.wait(interval):
            revision = self._state.revision or 0
            outbox.put(edge_pb2.ClientMessage(heartbeat=edge_pb2.Heartbeat(revision=revision)))
            silent = time.monotonic() - self._last_heard
            if not self._in_callbacks and silent > 3 * interval:
                log.warning("edge %s silent for %.1fs; reconnecting", self.target, silent)
                call.cancel()
                return

    # ---- helpers --------------------------------------------------------------------------

    def _save_cache(self) -> None:
        if self._cache_path is None or not self._state.primed:
            return
        # Encoded under the lock (a consistent copy), written outside it: readers need not wait
        # for an fsync.
        with self._lock:
            doc = _cache.encode(self._state, self.environment, self.prefixes)
        try:
            _cache.save(self._cache_path, doc)
        except OSError as e:
            log.warning("cannot write cache file %s: %s", self._cache_path, e)

    def _changed(self) -> None:
        if self._on_change is not None:
            try:
                self._on_change()
            except Exception:
                log.exception("state listener failed")

    def _metadata(self) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self._token}")] if self._token else []

    def _channel(self) -> grpc.Channel:
        if self._tls is None:
            return grpc.insecure_channel(self.target)
        creds = grpc.ssl_channel_credentials(
            root_certificates=self._tls.ca_cert,
            private_key=self._tls.client_key,
            certificate_chain=self._tls.client_cert,
        )
        options = []
        if self._tls.server_name:
            options.append(("grpc.ssl_target_name_override", self._tls.server_name))
        return grpc.secure_channel(self.target, creds, options=options)


class _SessionProgress:
    """When one stream counts as synced: at once with a reset or an update applied; on a resume,
    once the edge's replay is through (an update at or past the revision it started at, or a
    heartbeat, which the edge sends after the replay) or when nothing was missed."""

    def __init__(self, resume_from: int | None) -> None:
        self._resume_from = resume_from
        self._target: int | None = None
        self.synced = False

    def started(self, revision: int) -> None:
        self._target = revision
        if self._resume_from is not None and revision <= self._resume_from:
            self.synced = True

    def applied(self, update: edge_pb2.WatchResponse) -> None:
        if update.reset or self._resume_from is None:
            self.synced = True
        elif self._target is not None and update.revision >= self._target:
            self.synced = True

    def heartbeat(self) -> None:
        if self._target is not None:
            self.synced = True


def _stub(channel: grpc.Channel) -> Any:
    # The generated stub is untyped (grpcio ships no type information).
    return edge_pb2_grpc.EdgeStub(channel)  # type: ignore[no-untyped-call]


def _status(e: grpc.RpcError) -> tuple[grpc.StatusCode | None, str]:
    code = e.code() if hasattr(e, "code") else None
    details = e.details() if hasattr(e, "details") else str(e)
    return code, details or ""
