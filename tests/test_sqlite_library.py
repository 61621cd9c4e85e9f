"""SQLite's memory statistics are off once actorflow is imported first in a process, and
left on (with nothing else changed) when sqlite3 was imported before it, or when other
threads run (configuring SQLite is not thread-safe): each case in a fresh interpreter,
running a workflow on a SQLite file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

_PROGRAM = """
import ctypes, sys
{first}
import actorflow as af
from actorflow._store._sqlite_library import skip_memory_statistics

@af.step
async def double(x: int) -> int:
    return 2 * x

@af.workflow
async def twice(x: int) -> int:
    return await double(await double(x))

async def main() -> int:
    async with af.Engine(sys.argv[1], workflows=[twice]) as engine:
        run = await engine.start(twice, 3)
        return await run.result()

result = af.run(main())
sqlite = ctypes.CDLL(sys.modules["_sqlite3"].__file__)
sqlite.sqlite3_memory_highwater.restype = ctypes.c_int64
print(result, sqlite.sqlite3_memory_highwater(0), skip_memory_statistics())
"""


def _run(tmp_path: Path, first: str) -> list[str]:
    program = _PROGRAM.format(first=first)
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    out = subprocess.run(
        [sys.executable, "-c", program, url], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


@pytest.mark.skipif(sys.platform != "linux", reason="actorflow configures SQLite on Linux only")
def test_sqlite_counts_no_allocations_when_actorflow_comes_first(tmp_path: Path) -> None:
    result, most, again = _run(tmp_path, "")
    assert result == "12"
    assert most == "0"  # SQLite allocated (connections, page caches) without counting
    assert again == "False"  # too late to ask a second time: SQLite is initialized


def test_sqlite_counts_as_before_when_sqlite3_came_first(tmp_path: Path) -> None:
    result, most, _ = _run(tmp_path, "import sqlite3")
    assert result == "12"
    assert int(most) > 100_000


def test_sqlite_counts_as_before_when_other_threads_run(tmp_path: Path) -> None:
    # A thread that could be initializing SQLite as actorflow is imported: no configuring.
    other = "import threading; threading.Thread(target=threading.Event().wait, daemon=True).start()"
    result, most, _ = _run(tmp_path, other)
    assert result == "12"
    assert int(most) > 100_000
