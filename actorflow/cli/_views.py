"""What people read: runs, steps, events, workflows and schedules as rich tables, from
the HTTP API's JSON shapes."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

STATUS_STYLES = {
    "queued": "dim",
    "running": "blue",
    "pausing": "yellow",
    "paused": "yellow",
    "waiting": "cyan",
    "completed": "green",
    "failed": "bold red",
    "terminated": "magenta",
    "retrying": "yellow",
}


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLES.get(status, ""))


def compact(value: Any, limit: int = 80) -> str:
    """A JSON value on one line, cut to `limit` characters."""
    text = orjson.dumps(value).decode()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _time(iso: str | None) -> datetime | None:
    return None if iso is None else datetime.fromisoformat(iso)


def span(seconds: float) -> str:
    """A duration for people: `12ms`, `3.4s`, `5m 02s`, `2h 05m`, `3d 04h`."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"


def age(iso: str | None) -> str:
    at = _time(iso)
    return "" if at is None else span(max(0.0, (datetime.now(UTC) - at).total_seconds())) + " ago"


def duration(started: str | None, completed: str | None) -> str:
    """How long it took, or has taken so far (`…` marks one still going)."""
    start = _time(started)
    if start is None:
        return ""
    end = _time(completed)
    if end is None:
        return span(max(0.0, (datetime.now(UTC) - start).total_seconds())) + "…"
    return span((end - start).total_seconds())


def _table(*columns: str) -> Table:
    """A table with a header and no borders; its last column wraps, the others do not."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for i, column in enumerate(columns):
        table.add_column(column, no_wrap=i < len(columns) - 1)
    return table


def runs_table(runs: Iterable[dict[str, Any]]) -> Table:
    table = _table("ID", "WORKFLOW", "STATUS", "AGE", "DURATION", "STEPS DONE")
    for run in runs:
        table.add_row(
            run["id"],
            run["workflow"],
            status_text(run["status"]),
            age(run["created_at"]),
            duration(run["started_at"], run["completed_at"]),
            str(run["steps_done"]),
        )
    return table


def started_line(run: dict[str, Any]) -> Text:
    return Text.assemble(
        "started ", (run["id"], "bold"), f" ({run['workflow']}) ", status_text(run["status"])
    )


def steps_table(steps: Iterable[dict[str, Any]]) -> Table:
    table = _table("SEQ", "STEP", "STATUS", "ATTEMPTS", "DURATION")
    for step in steps:
        table.add_row(
            str(step["seq"]),
            step["name"],
            status_text(step["status"]),
            str(step["attempts"]),
            duration(step["started_at"], step["completed_at"]),
        )
    return table


def event_line(event: dict[str, Any]) -> str:
    """One event on one line: index, time, kind, seq and name, data."""
    at = (_time(event["at"]) or datetime.now(UTC)).strftime("%H:%M:%S.%f")[:-3]
    seq = "" if event["seq"] is None else f"#{event['seq']}"
    where = " ".join(filter(None, (seq, event["name"])))
    data = "" if event["data"] is None else compact(event["data"], 100)
    return f"{event['index']:>4}  {at}  {event['kind']:<16} {where:<24} {data}".rstrip()


def events_table(events: Iterable[dict[str, Any]]) -> Table:
    table = _table("#", "AT", "KIND", "SEQ", "NAME", "DATA")
    for event in events:
        table.add_row(
            str(event["index"]),
            (_time(event["at"]) or datetime.now(UTC)).strftime("%H:%M:%S.%f")[:-3],
            event["kind"],
            "" if event["seq"] is None else str(event["seq"]),
            event["name"] or "",
            "" if event["data"] is None else compact(event["data"], 100),
        )
    return table


def _fields(rows: Iterable[tuple[str, RenderableType | str | None]]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    for name, value in rows:
        if value is not None and value != "":
            grid.add_row(name, value)
    return grid


def run_view(run: dict[str, Any], events: list[dict[str, Any]]) -> Group:
    """A run: its fields, args, result or error (with traceback), steps, children and the
    schedule tick that started it (both read from its `events`)."""
    times = [
        ("created", run["created_at"]),
        ("started", run["started_at"]),
        ("completed", run["completed_at"]),
    ]
    rows: list[tuple[str, RenderableType | str | None]] = [
        ("run", run["id"]),
        ("workflow", run["workflow"]),
        ("status", status_text(run["status"])),
        *((name, f"{at} ({age(at)})" if at else None) for name, at in times),
        ("duration", duration(run["started_at"], run["completed_at"])),
        ("parent", run["parent_id"]),
    ]
    tick = schedule_tick(events)
    if tick is not None:
        rows.append(("schedule", tick))
    if run["metadata"] is not None:
        rows.append(("metadata", compact(run["metadata"], 200)))
    rows.append(("args", compact(run["args"], 200)))
    if run["status"] == "completed":
        rows.append(("result", compact(run["result"], 400)))
    parts: list[RenderableType] = [_fields(rows)]
    if run["error"] is not None:
        parts.append(error_view(run["error"]))
    if run["steps"]:
        parts += [Text("\nsteps", style="bold"), steps_table(run["steps"])]
    children = children_of(events)
    if children:
        table = _table("CHILD RUN", "WORKFLOW", "OUTCOME")
        for child_id, workflow, outcome in children:
            table.add_row(child_id, workflow, status_text(outcome))
        parts += [Text("\nchildren", style="bold"), table]
    return Group(*parts)


def error_view(error: dict[str, Any]) -> Group:
    head = Text.assemble(("error  ", "bold"), (f"{error['type']}: ", "bold red"), error["message"])
    if not error.get("traceback"):
        return Group(head)
    return Group(head, Text(error["traceback"].rstrip(), style="red"))


def schedule_tick(events: list[dict[str, Any]]) -> str | None:
    """`schedule-id (cron) at time` for a run a schedule started: its creation carries
    the tick."""
    if not events or events[0]["kind"] != "run_created" or not isinstance(events[0]["data"], dict):
        return None
    tick = events[0]["data"].get("schedule")
    if not isinstance(tick, dict):
        return None
    at = datetime.fromtimestamp(tick["time"], UTC).isoformat()
    return f"{tick['id']} ({tick['cron']}) tick {at}"


def children_of(events: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(run id, workflow, outcome so far) of each child run the log started."""
    children: dict[int, list[str]] = {}
    for event in events:
        data = event["data"]
        if event["kind"] == "child_started" and isinstance(data, dict) and "run_id" in data:
            children[event["seq"]] = [data["run_id"], event["name"] or "", "started"]
        elif event["kind"] == "child_finished" and event["seq"] in children:
            children[event["seq"]][2] = data.get("status", "finished")
    return [(c[0], c[1], c[2]) for c in children.values()]


def workflows_table(workflows: Iterable[dict[str, Any]]) -> Table:
    table = _table("WORKFLOW", "CONCURRENCY", "SCHEDULES", "RUNS")
    for wf in workflows:
        counts = Text()
        for status, n in wf["runs"].items():
            if n:
                counts.append(f"{status} ", style=STATUS_STYLES.get(status, ""))
                counts.append(f"{n}  ")
        table.add_row(
            wf["name"],
            "" if wf["concurrency"] is None else str(wf["concurrency"]),
            ", ".join(wf["schedules"]),
            counts,
        )
    return table


def schedules_table(schedules: Iterable[dict[str, Any]]) -> Table:
    table = _table("ID", "WORKFLOW", "CRON", "TIMEZONE", "STATE", "NEXT")
    for s in schedules:
        table.add_row(
            s["id"],
            s["workflow"],
            s["cron"],
            s.get("timezone", ""),
            Text("paused", style="yellow") if s.get("paused") else Text("active", style="green"),
            s.get("next_time") or "",
        )
    return table


def schedule_view(schedule: dict[str, Any]) -> Group:
    rows: list[tuple[str, RenderableType | str | None]] = [
        (name, compact(value, 200) if not isinstance(value, str) else value)
        for name, value in schedule.items()
        if name != "recent"
    ]
    parts: list[RenderableType] = [_fields(rows)]
    recent = schedule.get("recent") or []
    if recent:
        table = _table("TICK", "RUN", "OUTCOME")
        for tick in recent:
            if isinstance(tick, dict):
                at, run_id, outcome = (
                    tick.get("scheduled_time"),
                    tick.get("run_id"),
                    tick.get("outcome"),
                )
            else:
                at, run_id, outcome = tick
            table.add_row(str(at), run_id or "", str(outcome))
        parts += [Text("\nrecent ticks", style="bold"), table]
    return Group(*parts)
