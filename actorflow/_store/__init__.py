"""Storage backends behind one protocol, chosen by URL."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from ._sqlite_library import skip_memory_statistics

skip_memory_statistics()  # before `_base` imports sqlite3, which initializes SQLite

from ._base import (  # noqa: E402
    ChunkKind,
    ChunkRow,
    CommitStats,
    EventRow,
    HookRow,
    LoadedRun,
    RunRow,
    StreamState,
    WriteBatch,
)
from ._memory import MemoryStore  # noqa: E402
from ._protocol import SharedStore, Store  # noqa: E402
from ._purge_filter import PurgeClaim, PurgedBatch, PurgeFilter  # noqa: E402
from ._schedule_rows import ScheduleRow  # noqa: E402
from ._sqlite import SQLiteStore  # noqa: E402

__all__ = [
    "ChunkKind",
    "ChunkRow",
    "CommitStats",
    "EventRow",
    "HookRow",
    "LoadedRun",
    "MemoryStore",
    "PurgeClaim",
    "PurgeFilter",
    "PurgedBatch",
    "RunRow",
    "SQLiteStore",
    "ScheduleRow",
    "SharedStore",
    "Store",
    "StreamState",
    "WriteBatch",
    "open_store",
]


def open_store(url: str) -> Store:
    """The backend for `url`: `memory://`, `sqlite:///relative.db` / `sqlite:////abs/path.db`,
    or `postgresql://user:password@host:port/database` (also `postgres://`).

    SQLite URLs accept `?synchronous=normal|full`; PostgreSQL URLs `?schema=name` (default
    `actorflow`) and asyncpg's own parameters. Raises ValueError for a URL it cannot use.
    """
    if not isinstance(url, str):
        raise TypeError(f"store URL must be a str, got {type(url).__name__}")
    parts = urlsplit(url)
    if parts.scheme == "memory":
        return MemoryStore()
    if parts.scheme == "sqlite":
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if not path:
            raise ValueError(
                f"sqlite URL needs a file path, e.g. sqlite:///actorflow.db; got {url!r}"
            )
        options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(options) - {"synchronous"}
        if unknown:
            raise ValueError(f"unknown sqlite URL option(s): {', '.join(sorted(unknown))}")
        return SQLiteStore(path, synchronous=options.get("synchronous", "normal"))
    if parts.scheme in ("postgresql", "postgres"):
        try:
            from ._postgres import PostgresStore
        except ModuleNotFoundError as exc:
            raise ModuleNotFoundError(
                f"the PostgreSQL store needs asyncpg ({exc}): pip install 'actorflow[postgres]'"
            ) from exc
        return PostgresStore(url)
    raise ValueError(
        f"unsupported store URL {url!r}; use memory://, sqlite:///path.db or postgresql://..."
    )
