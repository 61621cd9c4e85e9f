"""`actorflow schedules ...`: cron schedules, listed, created and controlled."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click
from rich.text import Text

from ._options import JSON_VALUE, with_client, with_source
from ._output import Output
from ._source import Source, segment
from ._views import schedule_view, schedules_table, started_line

OVERLAPS = ("skip", "buffer_one", "buffer_all", "terminate_other", "allow")
CATCHUPS = ("latest", "all", "skip")

if TYPE_CHECKING:
    from ._client import HttpClient


@click.group("schedules")
def schedules() -> None:
    """Cron schedules that start runs."""


@schedules.command("list")
@with_source
def list_schedules(source: Source, out: Output) -> None:
    """Every schedule: workflow, cron, time zone, paused or not, next tick."""
    out.listing(source.schedules(), "schedules", schedules_table)


@schedules.command("describe")
@click.argument("schedule_id")
@with_source
def describe(source: Source, out: Output, schedule_id: str) -> None:
    """A schedule and its recent ticks."""
    _show(out, source.schedule(schedule_id))


def _show(out: Output, schedule: dict[str, Any]) -> None:
    out.answer(schedule, lambda: schedule_view(schedule))


@schedules.command("create")
@click.argument("schedule_id")
@click.argument("workflow")
@click.argument("cron")
@click.option("--arg", "args", multiple=True, type=JSON_VALUE, help="an argument, as JSON (repeat)")
@click.option("--timezone", default="UTC", show_default=True, help="IANA time zone of CRON")
@click.option("--overlap", type=click.Choice(OVERLAPS), help="a tick while a run is unfinished")
@click.option("--catchup", type=click.Choice(CATCHUPS), help="ticks missed while no engine ran")
@click.option("--paused", is_flag=True, help="create it paused")
@with_client
def create(
    client: HttpClient,
    out: Output,
    schedule_id: str,
    workflow: str,
    cron: str,
    args: tuple[Any, ...],
    timezone: str,
    overlap: str | None,
    catchup: str | None,
    paused: bool,
) -> None:
    """Create (or update in place) the schedule SCHEDULE_ID: WORKFLOW on CRON."""
    body: dict[str, Any] = {
        "id": schedule_id,
        "workflow": workflow,
        "cron": cron,
        "args": list(args),
        "timezone": timezone,
        "paused": paused,
    }
    if overlap is not None:
        body["overlap"] = overlap
    if catchup is not None:
        body["catchup"] = catchup
    _show(out, client.post("/schedules", body))


def _act(client: HttpClient, out: Output, schedule_id: str, action: str) -> None:
    answer = client.post(f"/schedules/{segment(schedule_id)}/{action}")
    out.answer(answer, lambda: Text.assemble("schedule ", (schedule_id, "bold"), f": {action}d"))


def _action_command(action: str, summary: str) -> None:
    @schedules.command(action, help=summary)
    @click.argument("schedule_id")
    @with_client
    def command(client: HttpClient, out: Output, schedule_id: str) -> None:
        _act(client, out, schedule_id, action)


_action_command("pause", "Stop a schedule's ticks until it is resumed.")
_action_command("resume", "Start a paused schedule's ticks again.")


@schedules.command("delete")
@click.argument("schedule_id")
@with_client
def delete(client: HttpClient, out: Output, schedule_id: str) -> None:
    """Delete a schedule (its runs stay)."""
    answer = client.delete(f"/schedules/{segment(schedule_id)}")
    out.answer(answer, lambda: Text.assemble("schedule ", (schedule_id, "bold"), ": deleted"))


@schedules.command("trigger")
@click.argument("schedule_id")
@with_client
def trigger(client: HttpClient, out: Output, schedule_id: str) -> None:
    """Start one run of the schedule now, outside its cron."""
    run = client.post(f"/schedules/{segment(schedule_id)}/trigger")
    out.answer(run, lambda: started_line(run))
