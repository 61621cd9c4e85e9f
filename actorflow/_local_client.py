"""LocalRunClient: the `RunClient` of an engine in this process.

A run in memory answers from its actor; any other from the store, through the
`RunLoader`, which groups the reads of one loop turn. `result()` registers its
waiter before it looks, so a run that finishes meanwhile cannot be missed (see
`ResultWaiters`). `events()` and `stream()` subscribe to the engine's hubs
before they read the store, so nothing committed in between is missed; indexes
make the overlap harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from ._cluster._restart import restart_entries
from ._errors import (
    HookNotFoundError,
    InvalidStateError,
    RunAlreadyExistsError,
    RunNotFoundError,
    SerializationError,
    StoreWriteError,
)
from ._ids import HOOK_PREFIX, check_event_type, check_name
from ._log import FINAL_KINDS, fold_steps, to_run_event, to_run_info
from ._messages import Control, ControlAction, Deliver
from ._models import STATUS_OF, RunEvent, RunInfo, RunStatus, StreamChunk, to_datetime
from ._serde import encode, loads
from ._store import ChunkKind, ChunkRow, RunRow
from ._streams import check_namespace, decode_chunk

if TYPE_CHECKING:
    from ._directory import RunDirectory
    from ._types import TypeCodec

_PAGE = 512


class LocalRunClient:
    """Answers run handles from the engine whose live runs are `runs`; every call first
    runs `check_open` (which raises `EngineClosedError`)."""

    def __init__(self, runs: RunDirectory, check_open: Callable[[], None]) -> None:
        self._runs = runs
        self._check_open = check_open

    @contextlib.asynccontextmanager
    async def _watching(self, run_id: str) -> AsyncIterator[None]:
        """On a database shared by many engines, while following a run: whenever another
        engine owns it (now, or after it moves), its commits notify this one (see
        `RunWatches` and `ClusterHost.changed`)."""
        cluster = self._runs.cluster
        if cluster is None or (
            not cluster.owns(run_id) and STATUS_OF[(await self.stored_run(run_id)).status].is_final
        ):
            yield  # one engine; or a finished run: nothing more will happen to it
            return
        await cluster.watches.watch(run_id)
        try:
            yield
        finally:
            await cluster.watches.unwatch(run_id)

    def result(self, run_id: str, timeout: float | None) -> Awaitable[Any]:
        """The run's result once it is final; raises for failed or terminated runs."""
        self._check_open()
        if self._runs.cluster is not None:
            return self._watched_result(run_id, timeout)
        return self._runs.result_of(run_id, timeout)  # a coroutine level fewer per call

    async def _watched_result(self, run_id: str, timeout: float | None) -> Any:
        async with self._watching(run_id):
            return await self._runs.result_of(run_id, timeout)

    async def status(self, run_id: str) -> RunStatus:
        self._check_open()
        actor = self._runs.actors.get(run_id)
        if actor is not None and actor.loaded:
            return actor.status
        return STATUS_OF[(await self.stored_run(run_id)).status]

    async def stored_run(self, run_id: str) -> RunRow:
        """The run's committed row; raises `RunNotFoundError` if there is none."""
        row = await self._runs.loader.row(run_id)
        if row is None:
            raise RunNotFoundError(f"no run with id {run_id!r}")
        return row

    async def current_row(self, run_id: str) -> RunRow:
        """The run's row as its live actor holds it, else the committed one; raises
        `RunNotFoundError` if there is none."""
        actor = self._runs.actors.get(run_id)
        if actor is not None and actor.loaded:
            return actor.row
        return await self.stored_run(run_id)

    async def check_unfinished(self, run_id: str) -> RunRow:
        """The row of a run owned elsewhere, before a message is routed to it; raises
        `RunNotFoundError` or `InvalidStateError` (final), as its owner would."""
        row = await self.stored_run(run_id)
        if STATUS_OF[row.status].is_final:
            raise InvalidStateError(f"run {run_id!r} is {row.status}")
        return row

    async def check_workflow_of(self, run_ids: Iterable[str], workflow: str) -> None:
        """Raise `RunAlreadyExistsError` if one of `run_ids` (runs that existed before a
        start asked for them) is a run of another workflow than `workflow`."""
        for run_id in run_ids:
            row = await self.current_row(run_id)
            if row.workflow != workflow:
                raise RunAlreadyExistsError(
                    f"run {run_id!r} exists and is a run of workflow {row.workflow!r}; "
                    f"it cannot be started as a run of {workflow!r}"
                )

    async def info(self, run_id: str) -> RunInfo:
        self._check_open()
        row = await self.stored_run(run_id)
        actor = self._runs.actors.get(run_id)
        if actor is not None and actor.loaded:
            row.status = actor.status.value
        store = self._runs.store
        events = await store.load_events(run_id)
        streams = (await store.stream_state(run_id)).next_index
        return to_run_info(row, fold_steps(events, row.generation), streams=sorted(streams))

    async def events(
        self, run_id: str, after: int = -1, follow: bool = True
    ) -> AsyncGenerator[RunEvent, None]:
        async with (
            self._watching(run_id),
            contextlib.aclosing(self._events(run_id, after, follow)) as events,
        ):
            async for event in events:
                yield event

    async def _events(
        self, run_id: str, after: int, follow: bool
    ) -> AsyncGenerator[RunEvent, None]:
        store = self._runs.store
        with self._runs.event_hub.subscribe(run_id) as sub:
            await self.stored_run(run_id)
            cursor = after
            # Resuming past the final event of a finished run: nothing will be published.
            # Asked before the read, so a run that ends in between is seen live.
            ended = after >= 0 and (await self.status(run_id)).is_final
            catch_up = True
            while True:
                if catch_up:
                    catch_up = False
                    rows = await store.load_events(run_id, after=cursor)
                    for i, row in enumerate(rows):
                        yield to_run_event(row)
                        cursor = row.idx
                        if row.kind in FINAL_KINDS and i == len(rows) - 1:
                            return
                    if ended or not follow:
                        return
                rows, catch_up = await sub.follow(cursor + 1)
                for row in rows:
                    yield to_run_event(row)
                    cursor = row.idx
                    if row.kind in FINAL_KINDS:
                        return

    async def stream(
        self, run_id: str, namespace: str, start: int, with_info: bool
    ) -> AsyncGenerator[Any, None]:
        check_namespace(namespace)
        if not isinstance(start, int) or isinstance(start, bool):
            raise TypeError(f"start must be an int, got {type(start).__name__}")
        async with (
            self._watching(run_id),
            contextlib.aclosing(self._stream(run_id, namespace, start, with_info)) as chunks,
        ):
            async for chunk in chunks:
                yield chunk

    async def _stream(
        self, run_id: str, namespace: str, start: int, with_info: bool
    ) -> AsyncGenerator[Any, None]:
        store = self._runs.store
        with self._runs.chunk_hub.subscribe((run_id, namespace)) as sub:
            await self.stored_run(run_id)
            cursor = start
            if start < 0:
                state = await store.stream_state(run_id)
                cursor = max(0, state.next_index.get(namespace, 0) + start)
                if namespace in state.closed:
                    cursor = max(0, cursor - 1)
            catch_up = True
            while True:
                if catch_up:
                    catch_up = False
                    final = sub.ended or (await self.status(run_id)).is_final
                    while True:
                        rows = await store.load_chunks(run_id, namespace, cursor, _PAGE)
                        for chunk in rows:
                            if chunk.kind == ChunkKind.CLOSE:
                                return
                            yield _present(chunk, with_info)
                            cursor = chunk.idx + 1
                        if len(rows) < _PAGE:
                            break
                    if final:
                        return
                chunks, catch_up = await sub.follow(cursor)
                for chunk in chunks:
                    if chunk.kind == ChunkKind.CLOSE:
                        return
                    yield _present(chunk, with_info)
                    cursor += 1
                if sub.ended:
                    catch_up = True

    async def control(
        self, run_id: str, action: ControlAction, from_step: str | None = None
    ) -> None:
        """Send a pause/resume/terminate/restart to the run and wait until it is committed."""
        self._check_open()
        cluster = self._runs.cluster
        taken = False  # a finished run this engine took from the database to restart
        if cluster is not None and not cluster.owns(run_id):
            row = await self.stored_run(run_id)
            # A finished run has no owner to ask: this engine answers as its actor would,
            # and restarts it (an executing engine takes it; a client records the restart
            # and leaves it to the executing engines). One restarted meanwhile is unfinished:
            # the message goes to its owner.
            if STATUS_OF[row.status].is_final:
                if action == "resume":
                    return
                if action != "restart":
                    raise InvalidStateError(f"cannot {action} run {run_id!r}: it is {row.status}")
                if cluster.execute:
                    taken = await cluster.take_finished(run_id) is not None
                else:
                    log = await self._runs.store.load_events(run_id)
                    entries = restart_entries(run_id, log, row.generation, from_step)
                    if await cluster.restart_finished(run_id, row.generation, entries):
                        return
        purging = self._runs.purging
        with purging.restarting(run_id) if action == "restart" else contextlib.nullcontext():
            reply: asyncio.Future[None] = self._runs.loop.create_future()
            self._runs.deliver(run_id, Control(action, reply, from_step))
            try:
                await reply
            except StoreWriteError:
                if taken:
                    # The fence refused the restart: a purge on another engine began
                    # deleting the run after this engine took it (its log is no longer
                    # whole). Say so, rather than that another engine owns the run.
                    assert cluster is not None
                    await cluster.check_not_purged(run_id)
                raise

    async def resume_hook(self, token: str, payload: Any = None) -> None:
        """Send `payload` to the run holding hook `token` (on this engine or another);
        raises `HookNotFoundError` if none does."""
        self._check_open()
        check_name(token, "hook token")
        data = encode(payload, "hook payload", self._runs.max_payload_bytes)
        run_id = self._runs.hooks.get(token)
        cluster = self._runs.cluster
        if cluster is not None and (run_id is None or not cluster.owns(run_id)):
            # Held on another engine: only the database knows by which run now.
            run_id = await cluster.hook_owner(token)
        if run_id is None:
            raise HookNotFoundError(f"no unfinished run holds hook {token!r}")
        if cluster is not None and not cluster.owns(run_id):
            await self.check_unfinished(run_id)
        reply: asyncio.Future[None] = self._runs.loop.create_future()
        self._runs.deliver(run_id, Deliver(HOOK_PREFIX + token, data, reply))
        await reply

    async def send_event(self, run_id: str, type: str, payload: Any = None) -> None:
        self._check_open()
        key = check_event_type(type)
        limit = self._runs.max_payload_bytes
        try:
            data = encode(payload, "event payload", limit)
        except SerializationError:
            # A dict keyed by UUIDs (say) is stored with string keys when the run's
            # workflow declares the event's type, which reads them back; only a payload
            # orjson refused costs the look-up.
            codec = await self._declared_event_codec(run_id, key)
            if codec is None:
                raise
            data = encode(payload, "event payload", limit, codec)
        cluster = self._runs.cluster
        if cluster is not None and not cluster.owns(run_id):
            # Its owner takes it from the inbox once committed: the type its workflow
            # declares is checked here (the wait it is in is the owner's to know).
            row = await self.check_unfinished(run_id)
            wf = self._runs.workflow(row.workflow)
            decode = None if wf is None else wf.event_decoder(key)
            if decode is not None:
                decode(loads(data))
        reply: asyncio.Future[None] = self._runs.loop.create_future()
        self._runs.deliver(run_id, Deliver(key, data, reply))
        await reply

    async def _declared_event_codec(self, run_id: str, key: str) -> TypeCodec | None:
        """The codec of the type the run's workflow declares for event `key` (None if
        it declares none, or there is no such run: the payload's error stands)."""
        try:
            row = await self.current_row(run_id)
        except RunNotFoundError:
            return None
        wf = self._runs.workflow(row.workflow)
        return None if wf is None else wf.event_codec(key)


def _present(row: ChunkRow, with_info: bool) -> Any:
    value = decode_chunk(row)
    if not with_info:
        return value
    at = to_datetime(row.at)
    assert at is not None
    return StreamChunk(index=row.idx, value=value, seq=row.seq, attempt=row.attempt, at=at)
