"""Following a run as it goes: a live view of its steps on a terminal, one line per
event in a pipe, one JSON document per event with `--json`."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, ConsoleOptions, Group, RenderableType
from rich.live import Live
from rich.text import Text

from ._output import Output
from ._source import Source
from ._views import duration, event_line, status_text, steps_table

_RECENT = 8  # events shown under the steps
_REFRESH_SECONDS = 0.1  # at most this often the run is read again while events arrive


class RunProgress:
    """The live view's state. The display thread renders it while the main thread
    replaces its fields (whole values, never mutated in place)."""

    def __init__(self, run: dict[str, Any]) -> None:
        self.run = run
        self.recent: tuple[dict[str, Any], ...] = ()

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Any:
        run = self.run
        head = Text.assemble(
            (run["id"], "bold"), "  ", run["workflow"], "  ", status_text(run["status"]), "  ",
            duration(run["started_at"], run["completed_at"]),
        )  # fmt: skip
        parts: list[RenderableType] = [head]
        if run["steps"]:
            parts.append(steps_table(run["steps"]))
        parts += [
            Text(event_line(e), "dim", no_wrap=True, overflow="ellipsis") for e in self.recent
        ]
        yield Group(*parts)


def follow(source: Source, out: Output, run_id: str) -> dict[str, Any]:
    """Show the run's events until it ends; returns the run as it ended."""
    if out.json:
        for event in source.follow_events(run_id):
            out.line(event)
        return source.run(run_id)
    if not out.terminal:
        for event in source.follow_events(run_id):
            out.console.print(event_line(event), markup=False, soft_wrap=True)
        return source.run(run_id)
    progress = RunProgress(source.run(run_id))
    with Live(progress, console=out.console, refresh_per_second=8):
        read_at = time.monotonic()
        for event in source.follow_events(run_id):
            progress.recent = (*progress.recent[-(_RECENT - 1) :], event)
            if time.monotonic() - read_at >= _REFRESH_SECONDS:
                progress.run = source.run(run_id)
                read_at = time.monotonic()
        progress.run = source.run(run_id)
    return progress.run
