"""StoreSource: the read commands' `--db` answers, read straight from a store.

The shapes are the HTTP API's (its serializers are reused). Nothing pushes news
out of a store to another process, so `--wait` and `--follow` ask the store again
every `POLL_SECONDS`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import actorflow as af
from actorflow._json_shapes import error_json, event_json, run_json, schedule_json
from actorflow._store_reader import StoreReader

from ._source import FINAL_EVENT_KINDS, Chunk, RequestFailed

POLL_SECONDS = 0.2
T = TypeVar("T")


class StoreSource:
    """The read commands on the store at `url`, opened read-only."""

    def __init__(self, url: str) -> None:
        try:
            self._reader = StoreReader(url)
            self._reader.__enter__()
        except (af.ActorflowError, ValueError) as exc:
            raise RequestFailed(type(exc).__name__, str(exc)) from None

    def close(self) -> None:
        self._reader.__exit__(None, None, None)

    def _read(self, read: Callable[..., T], *args: Any) -> T:
        try:
            return read(*args)
        except (af.ActorflowError, ValueError) as exc:
            raise RequestFailed(type(exc).__name__, str(exc)) from None

    def workflows(self) -> dict[str, Any]:
        """The workflows that have runs in the store (the code that declares concurrency
        and schedules is not loaded here: `concurrency` is null, `schedules` empty)."""
        counts = self._read(self._reader.count_runs)
        return {
            "workflows": [
                {
                    "name": name,
                    "concurrency": None,
                    "schedules": [],
                    "runs": {status.value: by_status.get(status, 0) for status in af.RunStatus},
                }
                for name, by_status in sorted(counts.items())
            ]
        }

    def list_runs(self, *, workflow: str | None, statuses: list[str], limit: int) -> dict[str, Any]:
        infos = self._read(
            lambda: self._reader.list_runs(status=statuses, workflow=workflow, limit=limit + 1)
        )
        page = infos[:limit]
        more = len(infos) > limit
        return {"runs": [run_json(i) for i in page], "next_cursor": page[-1].id if more else None}

    def run(self, run_id: str) -> dict[str, Any]:
        return run_json(self._read(self._reader.run_info, run_id))

    def result(self, run_id: str, wait: float) -> dict[str, Any]:
        deadline = time.monotonic() + wait
        while True:
            info = self._read(self._reader.run_info, run_id)
            if info.status.is_final:
                return {
                    "status": info.status.value,
                    "result": info.result,
                    "error": error_json(info.error),
                }
            if time.monotonic() >= deadline:
                return {"status": info.status.value}
            time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
            self._reader.refresh()

    def events(self, run_id: str) -> list[dict[str, Any]]:
        return [event_json(e) for e in self._read(self._reader.events, run_id)]

    def follow_events(self, run_id: str) -> Iterator[dict[str, Any]]:
        after = -1
        while True:
            final = self._read(self._reader.run_info, run_id).status.is_final
            for event in self._read(self._reader.events, run_id, after):
                yield event_json(event)
                after = event.index
                if event.kind in FINAL_EVENT_KINDS:
                    return
            if final:
                return
            time.sleep(POLL_SECONDS)
            self._reader.refresh()

    def stream(self, run_id: str, namespace: str, start: int) -> Iterator[Chunk]:
        cursor = self._read(self._reader.stream_start, run_id, namespace, start)
        while True:
            final = self._read(self._reader.run_info, run_id).status.is_final
            chunks, closed = self._read(self._reader.chunks, run_id, namespace, cursor)
            for chunk in chunks:
                yield Chunk(chunk.index, chunk.value)
                cursor = chunk.index + 1
            if closed or final:
                return
            time.sleep(POLL_SECONDS)
            self._reader.refresh()

    def schedules(self) -> dict[str, Any]:
        return {"schedules": [schedule_json(i) for i in self._read(self._reader.list_schedules)]}

    def schedule(self, schedule_id: str) -> dict[str, Any]:
        return schedule_json(self._read(self._reader.schedule, schedule_id))
