"""`memory://`: the store protocol over dicts, for tests and throwaway runs.

It stores the same encoded bytes as the durable backends, so serialization
behaves identically; commits apply at once.
"""

from __future__ import annotations

import asyncio
import bisect
from collections import defaultdict
from collections.abc import Iterable, Sequence

from .._models import FINAL, UNFINISHED
from ._base import (
    ChunkKind,
    ChunkRow,
    CommitListener,
    CommitStats,
    EventRow,
    FailureListener,
    HookRow,
    LoadedRun,
    RunRow,
    StreamState,
    WriteBatch,
)
from ._purge import RUNS_PER_BATCH
from ._purge_filter import PurgeClaim, PurgedBatch, PurgeFilter
from ._schedule_rows import ScheduleRow, apply_schedules

_UPDATE_FIELDS = (
    "status",
    "generation",
    "result",
    "error",
    "started_at",
    "completed_at",
    "wake_at",
)


class MemoryStore:
    """Everything in process memory; gone when the process ends."""

    def __init__(self) -> None:
        self._runs: dict[str, RunRow] = {}
        self._events: dict[str, list[EventRow]] = defaultdict(list)
        self._chunks: dict[tuple[str, str], list[ChunkRow]] = defaultdict(list)
        self._hooks: dict[str, HookRow] = {}
        self._schedules: dict[str, tuple[object, ...]] = {}
        self._listener: CommitListener | None = None
        self._open: WriteBatch | None = None
        self._batches = self._rows = 0

    def commit_stats(self) -> CommitStats:
        """Batches and rows applied; memory takes no measurable time (`busy_seconds` 0)."""
        return CommitStats(self._batches, self._rows, 0.0)

    async def open(self) -> None:
        self._open = WriteBatch(asyncio.get_running_loop().create_future())

    async def close(self) -> None:
        if self._open is not None and len(self._open):
            self.commit()
        self._open = None

    def set_commit_listener(self, listener: CommitListener) -> None:
        self._listener = listener

    def set_failure_listener(self, listener: FailureListener) -> None:
        """Commits to memory do not fail; nothing will be called."""

    def discard_pending(self, run_ids: set[str]) -> dict[str, RunRow]:
        return self.batch().discard(run_ids)

    def batch(self) -> WriteBatch:
        assert self._open is not None, "store is not open"
        return self._open

    def commit(self) -> asyncio.Future[None]:
        batch = self.batch()
        loop = asyncio.get_running_loop()
        self._open = WriteBatch(loop.create_future())
        self._apply(batch)
        self._batches += 1
        self._rows += len(batch)
        if self._listener is not None:
            self._listener(batch)
        batch.committed()
        # Resolve on the next loop turn, like a real backend: a writer awaiting each
        # commit in a tight loop must still let readers run.
        loop.call_soon(_resolve, batch.future)
        return batch.future

    def _apply(self, batch: WriteBatch) -> None:
        for row, events in batch.new_runs:
            if row.id in self._runs:
                batch.conflicts.add(row.id)
                continue
            self._runs[row.id] = row.copy()
            for event in events:  # may hold the parent's `child_started`
                self._add_event(event)
        for event in batch.events:
            self._add_event(event)
        for chunk in batch.chunks:
            self._chunks[(chunk.run_id, chunk.namespace)].append(chunk)
        for run_id, params in batch.run_updates.items():
            run = self._runs[run_id]
            for name, value in zip(_UPDATE_FIELDS, params, strict=False):
                setattr(run, name, value)
        for hook in batch.hooks:
            self._hooks[hook.token] = hook
        for run_id in batch.hook_deletes:
            for token in [t for t, h in self._hooks.items() if h.run_id == run_id]:
                del self._hooks[token]
        apply_schedules(self._schedules, batch.schedule_writes)

    def _add_event(self, event: EventRow) -> None:
        log = self._events[event.run_id]
        if not log or log[-1].idx < event.idx:
            log.append(event)
        else:  # a child's creation batch can carry the parent's entry late
            bisect.insort(log, event, key=_idx)

    async def get_run(self, run_id: str) -> RunRow | None:
        row = self._runs.get(run_id)
        return None if row is None else row.copy()

    async def get_runs(self, run_ids: Sequence[str]) -> dict[str, RunRow]:
        return self._copies(run_ids)

    def get_runs_now(self, run_ids: Sequence[str]) -> dict[str, RunRow]:
        return self._copies(run_ids)

    def _copies(self, run_ids: Sequence[str]) -> dict[str, RunRow]:
        return {i: row.copy() for i in run_ids if (row := self._runs.get(i)) is not None}

    async def load_events(self, run_id: str, after: int = -1) -> list[EventRow]:
        events = self._events.get(run_id, [])
        start = bisect.bisect_right(events, after, key=lambda e: e.idx)
        return events[start:]

    async def load_runs(self, run_ids: Sequence[str]) -> dict[str, LoadedRun]:
        loaded = {}
        for run_id in run_ids:
            row = self._runs.get(run_id)
            if row is not None:
                events = list(self._events.get(run_id, []))
                loaded[run_id] = LoadedRun(row.copy(), events, await self.stream_state(run_id))
        return loaded

    async def steps_done(self, run_ids: Sequence[str]) -> dict[str, int]:
        done: dict[str, int] = {}
        for run_id in run_ids:
            row = self._runs.get(run_id)
            if row is None:
                continue
            events = self._events.get(run_id, ())
            # `_log.STEP_COMPLETED` (`_log` imports the stores), as `_run_summaries` counts.
            n = sum(e.kind == "step_completed" and e.generation == row.generation for e in events)
            if n:
                done[run_id] = n
        return done

    async def list_runs(
        self,
        *,
        statuses: Iterable[str] | None,
        workflow: str | None,
        parent_id: str | None,
        limit: int,
        offset: int,
        after: str | None = None,
    ) -> list[RunRow]:
        wanted = None if statuses is None else set(statuses)
        rows = [
            r
            for r in self._runs.values()
            if (wanted is None or r.status in wanted)
            and (workflow is None or r.workflow == workflow)
            and (parent_id is None or r.parent_id == parent_id)
        ]
        if after is not None:
            mark = self._runs.get(after)
            if mark is None:
                return []
            rows = [r for r in rows if (r.created_at, r.id) < (mark.created_at, mark.id)]
        rows.sort(key=lambda r: (r.created_at, r.id), reverse=True)
        return [r.copy() for r in rows[offset:][:limit]]

    async def count_runs(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        for r in self._runs.values():
            by_status = counts.setdefault(r.workflow, {})
            by_status[r.status] = by_status.get(r.status, 0) + 1
        return counts

    async def unfinished_runs(self) -> list[RunRow]:
        rows = [r for r in self._runs.values() if r.status in UNFINISHED]
        return sorted(rows, key=lambda r: (r.created_at, r.id))

    async def finished_children_of_unfinished_parents(self) -> list[RunRow]:
        return [
            r
            for r in self._runs.values()
            if r.parent_id is not None
            and r.status in FINAL
            and r.parent_id in self._runs
            and self._runs[r.parent_id].status in UNFINISHED
        ]

    async def load_chunks(
        self, run_id: str, namespace: str, start: int, limit: int
    ) -> list[ChunkRow]:
        chunks = self._chunks.get((run_id, namespace), [])
        return chunks[start : start + limit]

    async def stream_state(self, run_id: str) -> StreamState:
        next_index: dict[str, int] = {}
        closed: set[str] = set()
        total = 0
        for (rid, namespace), chunks in self._chunks.items():
            if rid != run_id or not chunks:
                continue
            next_index[namespace] = chunks[-1].idx + 1
            total += sum(len(c.data or b"") for c in chunks)
            if chunks[-1].kind == ChunkKind.CLOSE:
                closed.add(namespace)
        return StreamState(next_index, closed, total)

    async def load_hooks(self) -> list[HookRow]:
        return list(self._hooks.values())

    async def load_schedules(self) -> list[ScheduleRow]:
        return [ScheduleRow.from_params(self._schedules[key]) for key in sorted(self._schedules)]

    async def purge_batch(self, which: PurgeFilter, claim: PurgeClaim) -> PurgedBatch:
        runs = self._runs
        unfinished_parents = {r.parent_id for r in runs.values() if r.status in UNFINISHED}
        doomed = [
            r.id
            for r in runs.values()
            if which.matches(r)
            and r.id not in unfinished_parents
            and (
                r.parent_id is None
                or runs.get(r.parent_id) is None
                or runs[r.parent_id].status not in UNFINISHED
            )
        ][:RUNS_PER_BATCH]
        if not doomed:
            return PurgedBatch(0, 0, [])
        doomed = claim(doomed)
        rows = 0
        for run_id in doomed:
            del runs[run_id]
            rows += 1 + len(self._events.pop(run_id, ()))
            for key in [k for k in self._chunks if k[0] == run_id]:
                rows += len(self._chunks.pop(key))
            for token in [t for t, h in self._hooks.items() if h.run_id == run_id]:
                del self._hooks[token]
        return PurgedBatch(len(doomed), rows or 1, [])  # none: all left alone, look again


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _idx(event: EventRow) -> int:
    return event.idx
