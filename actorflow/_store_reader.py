"""StoreReader: runs, events, streams and schedules read straight from a store URL, never
written.

What the command line's `--db` reads use: the same public records (`RunInfo`,
`RunEvent`, `StreamChunk`, `ScheduleInfo`) an engine returns, from a SQLite file
that an engine may own at the same moment (see `SQLiteReader` for how it stays
read-only), or from a PostgreSQL store engines are using (`PostgresReader`).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Protocol
from urllib.parse import urlsplit

from ._errors import RunNotFoundError, ScheduleNotFoundError, StoreReadError
from ._log import fold_steps, to_run_event, to_run_info
from ._models import (
    STATUS_OF,
    RunEvent,
    RunInfo,
    RunStatus,
    StreamChunk,
    status_texts,
    to_datetime,
)
from ._schedule_types import ScheduleInfo, to_info
from ._store import ChunkKind, ChunkRow, EventRow, RunRow, ScheduleRow, SQLiteStore, open_store
from ._store._sqlite_reader import SQLiteReader
from ._streams import decode_chunk

__all__ = ["StoreReader"]


class RowReader(Protocol):
    """The rows a store's read-only reader gives (`SQLiteReader`, `PostgresReader`)."""

    def open(self) -> None: ...
    def close(self) -> None: ...
    def refresh(self) -> None: ...
    def get_run(self, run_id: str) -> RunRow | None: ...
    def list_runs(
        self, *, statuses: Sequence[str] | None, workflow: str | None, limit: int
    ) -> list[RunRow]: ...
    def count_runs(self) -> dict[str, dict[str, int]]: ...
    def load_events(self, run_id: str, after: int = -1) -> list[EventRow]: ...
    def load_chunks(self, run_id: str, namespace: str, start: int) -> list[ChunkRow]: ...
    def stream_end(self, run_id: str, namespace: str) -> tuple[int, bool]: ...
    def steps_done(self, run_ids: Sequence[str]) -> dict[str, int]: ...
    def stream_names(self, run_id: str) -> list[str]: ...
    def schedule_rows(self, schedule_id: str | None = None) -> list[ScheduleRow]: ...


def _reader(url: str) -> RowReader:
    store = open_store(url)  # parses the URL (and finds asyncpg for PostgreSQL); opens nothing
    if isinstance(store, SQLiteStore):
        return SQLiteReader(store.path)
    if urlsplit(url).scheme in ("postgresql", "postgres"):
        from ._store._postgres_reader import PostgresReader

        return PostgresReader(url)
    raise StoreReadError(f"only SQLite and PostgreSQL stores can be read directly, not {url!r}")


class StoreReader:
    """A read-only view of the store at `url` (`sqlite:///path`, `postgresql://...`).

    Raises `StoreReadError` for a URL of another kind, a file that is missing or not
    an actorflow store, or a server that cannot be reached or holds no store (when
    entered); `ValueError` for a malformed URL.
    """

    def __init__(self, url: str) -> None:
        self._db = _reader(url)

    def __enter__(self) -> StoreReader:
        self._db.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._db.close()

    def refresh(self) -> None:
        """Make the next reads see what was committed since the last ones."""
        self._db.refresh()

    def run_info(self, run_id: str) -> RunInfo:
        """The run with its steps; raises `RunNotFoundError`."""
        row = self._db.get_run(run_id)
        if row is None:
            raise RunNotFoundError(f"no run with id {run_id!r}")
        steps = fold_steps(self._db.load_events(run_id), row.generation)
        return to_run_info(row, steps, streams=self._db.stream_names(run_id))

    def list_runs(
        self, *, status: Sequence[str] = (), workflow: str | None = None, limit: int = 100
    ) -> list[RunInfo]:
        """Runs matching the filters, newest first, without their steps. Raises
        `ValueError` for an unknown status."""
        rows = self._db.list_runs(statuses=status_texts(status), workflow=workflow, limit=limit)
        done = self._db.steps_done([row.id for row in rows])
        return [to_run_info(row, (), done.get(row.id, 0)) for row in rows]

    def count_runs(self) -> dict[str, dict[RunStatus, int]]:
        """How many runs each workflow has, by status."""
        return {
            workflow: {STATUS_OF[status]: n for status, n in by_status.items()}
            for workflow, by_status in self._db.count_runs().items()
        }

    def events(self, run_id: str, after: int = -1) -> list[RunEvent]:
        """The run's committed events after index `after`; raises `RunNotFoundError`."""
        rows = self._db.load_events(run_id, after)
        if not rows and self._db.get_run(run_id) is None:
            raise RunNotFoundError(f"no run with id {run_id!r}")
        return [to_run_event(row) for row in rows]

    def stream_start(self, run_id: str, namespace: str, start: int) -> int:
        """The first chunk index to read: `start`, or counted from the end if negative
        (as `Run.stream` counts it)."""
        if start >= 0:
            return start
        end, closed = self._db.stream_end(run_id, namespace)
        return max(0, end - 1 + start if closed else end + start)

    def chunks(self, run_id: str, namespace: str, start: int) -> tuple[list[StreamChunk], bool]:
        """The committed chunks from index `start`, and whether the stream is closed."""
        chunks: list[StreamChunk] = []
        for row in self._db.load_chunks(run_id, namespace, start):
            if row.kind == ChunkKind.CLOSE:
                return chunks, True
            at = to_datetime(row.at)
            assert at is not None
            chunks.append(StreamChunk(row.idx, decode_chunk(row), row.seq, row.attempt, at))
        return chunks, False

    def list_schedules(self) -> list[ScheduleInfo]:
        """Every schedule, by id (as `engine.list_schedules()` answers)."""
        return [to_info(row) for row in self._db.schedule_rows()]

    def schedule(self, schedule_id: str) -> ScheduleInfo:
        """One schedule; raises `ScheduleNotFoundError`."""
        found = self._db.schedule_rows(schedule_id)
        if not found:
            raise ScheduleNotFoundError(f"no schedule with id {schedule_id!r}")
        return to_info(found[0])
