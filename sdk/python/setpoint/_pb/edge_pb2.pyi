from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ClientMessage(_message.Message):
    __slots__ = ("hello", "receipt", "heartbeat")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    hello: ClientHello
    receipt: Receipt
    heartbeat: Heartbeat
    def __init__(self, hello: _Optional[_Union[ClientHello, _Mapping]] = ..., receipt: _Optional[_Union[Receipt, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ...) -> None: ...

class ClientHello(_message.Message):
    __slots__ = ("instance_id", "env", "prefixes", "labels", "sdk", "sdk_version", "from_revision", "resolve")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    PREFIXES_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    SDK_FIELD_NUMBER: _ClassVar[int]
    SDK_VERSION_FIELD_NUMBER: _ClassVar[int]
    FROM_REVISION_FIELD_NUMBER: _ClassVar[int]
    RESOLVE_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    env: str
    prefixes: _containers.RepeatedScalarFieldContainer[str]
    labels: _containers.ScalarMap[str, str]
    sdk: str
    sdk_version: str
    from_revision: int
    resolve: bool
    def __init__(self, instance_id: _Optional[str] = ..., env: _Optional[str] = ..., prefixes: _Optional[_Iterable[str]] = ..., labels: _Optional[_Mapping[str, str]] = ..., sdk: _Optional[str] = ..., sdk_version: _Optional[str] = ..., from_revision: _Optional[int] = ..., resolve: _Optional[bool] = ...) -> None: ...

class Receipt(_message.Message):
    __slots__ = ("revision", "failures")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    revision: int
    failures: _containers.RepeatedCompositeFieldContainer[Nack]
    def __init__(self, revision: _Optional[int] = ..., failures: _Optional[_Iterable[_Union[Nack, _Mapping]]] = ...) -> None: ...

class Nack(_message.Message):
    __slots__ = ("path", "error")
    PATH_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    path: str
    error: str
    def __init__(self, path: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("revision", "stale")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    revision: int
    stale: bool
    def __init__(self, revision: _Optional[int] = ..., stale: _Optional[bool] = ...) -> None: ...

class ServerMessage(_message.Message):
    __slots__ = ("started", "update", "heartbeat")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    started: SessionStarted
    update: WatchResponse
    heartbeat: Heartbeat
    def __init__(self, started: _Optional[_Union[SessionStarted, _Mapping]] = ..., update: _Optional[_Union[WatchResponse, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ...) -> None: ...

class SessionStarted(_message.Message):
    __slots__ = ("edge_id", "heartbeat_interval_ms", "revision", "stale")
    EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    edge_id: str
    heartbeat_interval_ms: int
    revision: int
    stale: bool
    def __init__(self, edge_id: _Optional[str] = ..., heartbeat_interval_ms: _Optional[int] = ..., revision: _Optional[int] = ..., stale: _Optional[bool] = ...) -> None: ...

class ResolveRequest(_message.Message):
    __slots__ = ("path", "env", "raw", "explain")
    PATH_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    path: str
    env: str
    raw: bool
    explain: bool
    def __init__(self, path: _Optional[str] = ..., env: _Optional[str] = ..., raw: _Optional[bool] = ..., explain: _Optional[bool] = ...) -> None: ...

class ResolveResponse(_message.Message):
    __slots__ = ("json", "revision", "stale")
    JSON_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    json: str
    revision: int
    stale: bool
    def __init__(self, json: _Optional[str] = ..., revision: _Optional[int] = ..., stale: _Optional[bool] = ...) -> None: ...

class ExportRequest(_message.Message):
    __slots__ = ("prefix", "env", "format", "name")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    env: str
    format: str
    name: str
    def __init__(self, prefix: _Optional[str] = ..., env: _Optional[str] = ..., format: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class ExportResponse(_message.Message):
    __slots__ = ("content_type", "body", "revision", "stale")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    body: bytes
    revision: int
    stale: bool
    def __init__(self, content_type: _Optional[str] = ..., body: _Optional[bytes] = ..., revision: _Optional[int] = ..., stale: _Optional[bool] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("path", "env", "version")
    PATH_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    path: str
    env: str
    version: int
    def __init__(self, path: _Optional[str] = ..., env: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class Entry(_message.Message):
    __slots__ = ("path", "value", "format", "version", "revision", "updated_at")
    PATH_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    path: str
    value: str
    format: str
    version: int
    revision: int
    updated_at: str
    def __init__(self, path: _Optional[str] = ..., value: _Optional[str] = ..., format: _Optional[str] = ..., version: _Optional[int] = ..., revision: _Optional[int] = ..., updated_at: _Optional[str] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("entry", "revision", "stale")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    entry: Entry
    revision: int
    stale: bool
    def __init__(self, entry: _Optional[_Union[Entry, _Mapping]] = ..., revision: _Optional[int] = ..., stale: _Optional[bool] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("prefix", "recursive")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    RECURSIVE_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    recursive: bool
    def __init__(self, prefix: _Optional[str] = ..., recursive: _Optional[bool] = ...) -> None: ...

class ListResponse(_message.Message):
    __slots__ = ("children", "entries", "revision")
    CHILDREN_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    children: _containers.RepeatedScalarFieldContainer[str]
    entries: _containers.RepeatedCompositeFieldContainer[Entry]
    revision: int
    def __init__(self, children: _Optional[_Iterable[str]] = ..., entries: _Optional[_Iterable[_Union[Entry, _Mapping]]] = ..., revision: _Optional[int] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("prefixes", "from_revision", "instance_id", "env", "resolve")
    PREFIXES_FIELD_NUMBER: _ClassVar[int]
    FROM_REVISION_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    RESOLVE_FIELD_NUMBER: _ClassVar[int]
    prefixes: _containers.RepeatedScalarFieldContainer[str]
    from_revision: int
    instance_id: str
    env: str
    resolve: bool
    def __init__(self, prefixes: _Optional[_Iterable[str]] = ..., from_revision: _Optional[int] = ..., instance_id: _Optional[str] = ..., env: _Optional[str] = ..., resolve: _Optional[bool] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("type", "path", "old_value", "new_value", "version", "revision", "format")
    class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        PUT: _ClassVar[Event.Type]
        DELETE: _ClassVar[Event.Type]
    PUT: Event.Type
    DELETE: Event.Type
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    OLD_VALUE_FIELD_NUMBER: _ClassVar[int]
    NEW_VALUE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    type: Event.Type
    path: str
    old_value: str
    new_value: str
    version: int
    revision: int
    format: str
    def __init__(self, type: _Optional[_Union[Event.Type, str]] = ..., path: _Optional[str] = ..., old_value: _Optional[str] = ..., new_value: _Optional[str] = ..., version: _Optional[int] = ..., revision: _Optional[int] = ..., format: _Optional[str] = ...) -> None: ...

class WatchResponse(_message.Message):
    __slots__ = ("revision", "events", "reset", "state")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    RESET_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    revision: int
    events: _containers.RepeatedCompositeFieldContainer[Event]
    reset: bool
    state: _containers.RepeatedCompositeFieldContainer[Entry]
    def __init__(self, revision: _Optional[int] = ..., events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ..., reset: _Optional[bool] = ..., state: _Optional[_Iterable[_Union[Entry, _Mapping]]] = ...) -> None: ...
