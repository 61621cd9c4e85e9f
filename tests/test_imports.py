"""`import actorflow` leaves the engine, its stores and its scheduler unimported until a
program uses them (what the command line's client commands start faster for), and the
lazily imported names are the same objects as anywhere else. The command line imports
only what a command uses: reading a store, nothing of HTTP."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import actorflow as af
from tests import cli_workflows as flows

LAZY = ["actorflow._engine", "actorflow._directory", "actorflow._actor", "actorflow._schedules"]


def _imported_after(code: str) -> set[str]:
    program = f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


def test_the_engine_is_imported_on_first_use() -> None:
    assert not _imported_after("import actorflow, actorflow.cli") & set(LAZY)
    assert set(LAZY) <= _imported_after("import actorflow\nactorflow.Engine")


def test_lazy_names_are_the_public_ones() -> None:
    import actorflow as af
    from actorflow._engine import Engine
    from actorflow._schedule_api import Schedule
    from actorflow._store import CommitStats

    assert (af.Engine, af.Schedule, af.CommitStats) == (Engine, Schedule, CommitStats)
    assert Engine.__module__ == "actorflow" and repr(Engine) == "<class 'actorflow.Engine'>"
    assert {"Engine", "Schedule", "CommitStats"} <= set(dir(af)) & set(af.__all__)


# What serves HTTP (and what only a client of it needs): no read of a store imports them.
SERVER = {"starlette", "uvicorn", "actorflow.http"}
CLIENT = {"httpx", "httpx_sse", "anyio"}


def _imported_by_command(*args: str) -> tuple[int, set[str]]:
    """Run `actorflow ARGS` in a new interpreter: its exit status, and the top-level
    packages (and `actorflow.http`) imported by the end of it."""
    program = (
        "import sys\nfrom actorflow.cli import main\n"
        f"try:\n    main({list(args)!r})\n"
        "except SystemExit as exit:\n    status = exit.code\n"
        "print('MODULES', ' '.join(sorted(sys.modules)), 'STATUS', status)\n"
    )
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    modules, _, status = out.stdout.rpartition("MODULES ")[2].rpartition(" STATUS ")
    names = set(modules.split())
    return int(status or 0), {n.split(".")[0] for n in names} | (names & {"actorflow.http"})


def test_a_command_reading_a_store_imports_no_http(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"

    async def populate() -> str:
        async with af.Engine(url) as engine:
            run = await engine.start(flows.cli_summed, 1, 2)
            await run.result(timeout=30)
            return run.id

    run_id = asyncio.run(populate())
    for command in (
        ["runs", "list"],
        ["runs", "describe", run_id],
        ["runs", "events", run_id, "--json"],
        ["runs", "result", run_id],
        ["workflows", "list"],
        ["schedules", "list"],
    ):
        status, imported = _imported_by_command(*command, "--db", url)
        assert status == 0, command
        assert not imported & (SERVER | CLIENT), (command, imported & (SERVER | CLIENT))


def test_a_command_asking_a_server_imports_its_client_only() -> None:
    status, imported = _imported_by_command("runs", "list", "--url", "http://127.0.0.1:9")
    assert status != 0  # nothing listens there
    assert imported >= CLIENT
    assert not imported & SERVER, imported & SERVER
