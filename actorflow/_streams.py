"""Streams: durable, indexed output of a run, readable live by any number of readers.

Every chunk is committed through the group-commit writer with an index that
never changes, then published to live readers. A chunk written by a step
attempt that later fails stays where it is, tagged with its step `seq` and
`attempt`, so indexes never shift under a reader (`Run.stream(with_info=True)`
shows the tags). Writes from the workflow body are journaled like steps:
replay does not write them again.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any

from ._asyncio_helpers import shielded
from ._errors import StreamClosedError, StreamLimitError
from ._ids import check_name
from ._serde import encode, loads
from ._store import ChunkKind, ChunkRow, StreamState

if TYPE_CHECKING:
    from ._context import StepOwner
    from ._workflow_context import WorkflowContext


def check_namespace(namespace: str) -> str:
    """Validate a stream namespace name (`InvalidNameError`)."""
    return check_name(namespace, "stream namespace")


def encode_chunk(value: Any) -> tuple[int, bytes]:
    """(kind, data) for a chunk: bytes stay bytes, anything else becomes JSON."""
    if isinstance(value, bytes | bytearray | memoryview):
        return ChunkKind.BYTES, bytes(value)
    return ChunkKind.JSON, encode(value, "stream chunk")


def decode_chunk(row: ChunkRow) -> Any:
    assert row.data is not None
    return bytes(row.data) if row.kind == ChunkKind.BYTES else loads(row.data)


class StreamLedger:
    """A run's stream bookkeeping, owned by its actor: next index and closed flag per
    namespace, and the bytes written so far (for `max_stream_bytes`)."""

    __slots__ = ("closed", "next_index", "total_bytes")

    def __init__(self, state: StreamState | None = None) -> None:
        self.next_index: dict[str, int] = {} if state is None else dict(state.next_index)
        self.closed: set[str] = set() if state is None else set(state.closed)
        self.total_bytes = 0 if state is None else state.total_bytes

    def claim(self, run_id: str, namespace: str, kind: int, size: int, limit: int) -> int:
        """The index for a new chunk; raises if the namespace is closed or the run is full."""
        if namespace in self.closed:
            raise StreamClosedError(f"stream {namespace!r} of run {run_id!r} is closed")
        if self.total_bytes + size > limit:
            raise StreamLimitError(
                f"run {run_id!r} would exceed max_stream_bytes={limit} "
                f"({self.total_bytes} bytes written)"
            )
        index = self.next_index.get(namespace, 0)
        self.next_index[namespace] = index + 1
        self.total_bytes += size
        if kind == ChunkKind.CLOSE:
            self.closed.add(namespace)
        return index


class StreamWriter(abc.ABC):
    """Writes chunks to one namespace of the current run's stream."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    @abc.abstractmethod
    async def write(self, chunk: Any) -> int:
        """Commit `chunk` (bytes, or any JSON-serializable value) and return its index."""

    @abc.abstractmethod
    async def close(self) -> None:
        """End the namespace: readers stop after the last chunk; later writes fail."""


class StepStreamWriter(StreamWriter):
    """A writer used from step code: chunks reach readers while the step still runs."""

    def __init__(self, actor: StepOwner, namespace: str, seq: int, attempt: int) -> None:
        super().__init__(namespace)
        self._actor = actor
        self._seq = seq
        self._attempt = attempt

    async def write(self, chunk: Any) -> int:
        kind, data = encode_chunk(chunk)
        index = self._actor.add_chunk(self.namespace, self._seq, self._attempt, kind, data)
        await shielded(self._actor.store.commit())
        return index

    async def close(self) -> None:
        self._actor.add_chunk(self.namespace, self._seq, self._attempt, ChunkKind.CLOSE, None)
        await shielded(self._actor.store.commit())


class BodyStreamWriter(StreamWriter):
    """A writer used from the workflow body: each write is a journaled call."""

    def __init__(self, ctx: WorkflowContext, namespace: str) -> None:
        super().__init__(namespace)
        self._ctx = ctx

    async def write(self, chunk: Any) -> int:
        kind, data = encode_chunk(chunk)
        return await self._ctx.host.write_chunk(self._ctx.next_seq(), self.namespace, kind, data)

    async def close(self) -> None:
        await self._ctx.host.write_chunk(
            self._ctx.next_seq(), self.namespace, ChunkKind.CLOSE, None
        )
