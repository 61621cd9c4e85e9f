"""Issue 15, items 9 and 10: a SQLite URL the engine cannot own is refused with a typed
error before anything is written, and the lock follows the file, not its name."""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest

import actorflow as af


@af.workflow(name="hst.echo")
async def hst_echo(x: int) -> int:
    return x


def test_an_in_memory_sqlite_url_is_refused_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(af.StoreFileError, match="use memory://"):
        af.Engine("sqlite:///:memory:")
    assert list(tmp_path.iterdir()) == []


async def test_a_utf16_database_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    """JSON is bound as text and cast to BLOB, which in a UTF-16 database would store
    UTF-16 bytes: such a file is refused before anything is written to it."""
    db = tmp_path / "utf16.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA encoding='UTF-16le'")
        conn.execute("CREATE TABLE runs (id TEXT)")
    conn.close()
    before = _files(tmp_path)
    with pytest.raises(af.StoreFileError, match="is a UTF-16le database; actorflow needs UTF-8"):
        async with af.Engine(f"sqlite:///{db}"):
            pass
    assert _files(tmp_path) == before


@contextmanager
def _read_only(path: Path) -> Iterator[None]:
    """`path` made read-only: by its mode, or for root (who writes through modes) by the
    immutable attribute; skipped, saying so, where neither can make it read-only."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(stat.S_IRUSR | (stat.S_IXUSR if path.is_dir() else 0))
        try:
            yield
        finally:
            path.chmod(mode)
        return
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("running as root where chattr +i fails: nothing is read-only to root")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir()}


async def test_a_read_only_file_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    db = tmp_path / "ro.db"
    async with af.Engine(f"sqlite:///{db}") as engine:
        await (await engine.start(hst_echo, 1, id="kept")).result(timeout=5)
    before = _files(tmp_path)
    refused = pytest.raises(af.StoreFileError, match=f"^{re.escape(str(db))} is read-only")
    with _read_only(db), refused:
        async with af.Engine(f"sqlite:///{db}"):
            pass
    assert _files(tmp_path) == before


async def test_a_read_only_directory_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    directory = tmp_path / "ro"
    directory.mkdir()
    refused = pytest.raises(af.StoreFileError, match=r"the directory of .* is read-only")
    with _read_only(directory), refused:
        async with af.Engine(f"sqlite:///{directory / 'new.db'}"):
            pass
    assert _files(directory) == {}


def _aliases(db: Path) -> list[Path]:
    symlink, hardlink = db.parent / "symlink.db", db.parent / "hardlink.db"
    symlink.symlink_to(db)
    os.link(db, hardlink)
    relative = Path(os.path.relpath(db, Path.cwd()))
    return [symlink, hardlink, relative]


async def test_a_second_engine_in_the_process_is_refused_through_any_name(
    tmp_path: Path,
) -> None:
    db = tmp_path / "locked.db"
    async with af.Engine(f"sqlite:///{db}") as engine:
        run = await engine.start(hst_echo, 7, id="held")
        for alias in _aliases(db):
            with pytest.raises(af.StoreLockedError, match="open in another actorflow engine"):
                async with af.Engine(f"sqlite:///{alias}"):
                    pass
        # A refused open left the holder's connections and lock alone.
        assert await run.result(timeout=5) == 7
        assert await (await engine.start(hst_echo, 8)).result(timeout=5) == 8
    async with af.Engine(f"sqlite:///{tmp_path / 'hardlink.db'}") as engine:
        assert await engine.get_run("held").result(timeout=5) == 7


HOLDER = """
import asyncio, sys
import actorflow as af

async def main() -> None:
    async with af.Engine(sys.argv[1]):
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

asyncio.run(main())
"""


@asynccontextmanager
async def _held_by_another_process(url: str) -> AsyncIterator[None]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HOLDER,
        url,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert await asyncio.wait_for(proc.stdout.readline(), 60) == b"ready\n"
        yield
    finally:
        proc.stdin.write(b"\n")
        await proc.stdin.drain()
        assert await asyncio.wait_for(proc.wait(), 60) == 0


async def test_a_second_process_is_refused_through_any_name(tmp_path: Path) -> None:
    db = tmp_path / "locked.db"
    async with af.Engine(f"sqlite:///{db}"):
        pass
    aliases = _aliases(db)
    async with _held_by_another_process(f"sqlite:///{db}"):
        for alias in aliases:
            with pytest.raises(af.StoreLockedError):
                async with af.Engine(f"sqlite:///{alias}"):
                    pass
    async with af.Engine(f"sqlite:///{aliases[0]}"):  # released when the holder exits
        pass
