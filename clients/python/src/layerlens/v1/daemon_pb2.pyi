from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ResidentModel(_message.Message):
    __slots__ = ("id", "names", "resident_bytes", "in_flight", "queued", "pinned", "ready", "idle_seconds", "kind")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    RESIDENT_BYTES_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    PINNED_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    IDLE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    id: str
    names: _containers.RepeatedScalarFieldContainer[str]
    resident_bytes: int
    in_flight: int
    queued: int
    pinned: bool
    ready: bool
    idle_seconds: float
    kind: str
    def __init__(self, id: _Optional[str] = ..., names: _Optional[_Iterable[str]] = ..., resident_bytes: _Optional[int] = ..., in_flight: _Optional[int] = ..., queued: _Optional[int] = ..., pinned: _Optional[bool] = ..., ready: _Optional[bool] = ..., idle_seconds: _Optional[float] = ..., kind: _Optional[str] = ...) -> None: ...

class MemoryStatus(_message.Message):
    __slots__ = ("budget_bytes", "used_bytes", "evictions")
    BUDGET_BYTES_FIELD_NUMBER: _ClassVar[int]
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    EVICTIONS_FIELD_NUMBER: _ClassVar[int]
    budget_bytes: int
    used_bytes: int
    evictions: int
    def __init__(self, budget_bytes: _Optional[int] = ..., used_bytes: _Optional[int] = ..., evictions: _Optional[int] = ...) -> None: ...

class QueueStatus(_message.Message):
    __slots__ = ("max_queue", "max_batch_size", "max_batch_delay_ms")
    MAX_QUEUE_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    max_queue: int
    max_batch_size: int
    max_batch_delay_ms: float
    def __init__(self, max_queue: _Optional[int] = ..., max_batch_size: _Optional[int] = ..., max_batch_delay_ms: _Optional[float] = ...) -> None: ...

class CacheStatus(_message.Message):
    __slots__ = ("capacity_bytes", "size_bytes", "entries", "hits", "misses")
    CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    HITS_FIELD_NUMBER: _ClassVar[int]
    MISSES_FIELD_NUMBER: _ClassVar[int]
    capacity_bytes: int
    size_bytes: int
    entries: int
    hits: int
    misses: int
    def __init__(self, capacity_bytes: _Optional[int] = ..., size_bytes: _Optional[int] = ..., entries: _Optional[int] = ..., hits: _Optional[int] = ..., misses: _Optional[int] = ...) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("version", "uptime_seconds", "device", "models", "cache", "resident_bytes", "memory", "queue")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    CACHE_FIELD_NUMBER: _ClassVar[int]
    RESIDENT_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    version: str
    uptime_seconds: float
    device: str
    models: _containers.RepeatedCompositeFieldContainer[ResidentModel]
    cache: CacheStatus
    resident_bytes: int
    memory: MemoryStatus
    queue: QueueStatus
    def __init__(self, version: _Optional[str] = ..., uptime_seconds: _Optional[float] = ..., device: _Optional[str] = ..., models: _Optional[_Iterable[_Union[ResidentModel, _Mapping]]] = ..., cache: _Optional[_Union[CacheStatus, _Mapping]] = ..., resident_bytes: _Optional[int] = ..., memory: _Optional[_Union[MemoryStatus, _Mapping]] = ..., queue: _Optional[_Union[QueueStatus, _Mapping]] = ...) -> None: ...
