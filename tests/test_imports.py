"""`import actorflow` leaves the engine, its stores and its scheduler unimported until a
program uses them (what the command line's client commands start faster for), and the
lazily imported names are the same objects as anywhere else."""

from __future__ import annotations

import subprocess
import sys

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
