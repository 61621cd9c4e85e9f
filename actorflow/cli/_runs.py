"""`actorflow runs ...`: list, inspect, start and control runs."""

from __future__ import annotations

import base64
import sys
from typing import TYPE_CHECKING, Any

import click
import orjson
from rich.text import Text

import actorflow as af

from ._options import JSON_VALUE, with_client, with_source
from ._output import Output
from ._source import FINAL_STATUSES, Source, segment
from ._views import error_view, events_table, run_view, runs_table, started_line, status_text

FAILED_RUN_STATUS = 3  # the exit status of `runs result` for a failed or terminated run

if TYPE_CHECKING:
    from ._client import HttpClient


@click.group("runs")
def runs() -> None:
    """List, inspect, start and control runs."""


@runs.command("list")
@click.option("--workflow", help="only runs of this workflow")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice([s.value for s in af.RunStatus]),
    help="only runs in this status (repeat for several)",
)
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 1000))
@with_source
def list_runs(
    source: Source, out: Output, workflow: str | None, statuses: tuple[str, ...], limit: int
) -> None:
    """Runs, newest first."""
    page = source.list_runs(workflow=workflow, statuses=list(statuses), limit=limit)
    out.listing(page, "runs", runs_table)


@runs.command("describe")
@click.argument("run_id")
@with_source
def describe(source: Source, out: Output, run_id: str) -> None:
    """A run: status, args, result or error, steps (attempts, durations), children."""
    run = source.run(run_id)
    out.answer(run, lambda: run_view(run, source.events(run_id)))


@runs.command("start")
@click.argument("workflow")
@click.argument("args", nargs=-1, type=JSON_VALUE)
@click.option("--id", "run_id", help="the run's id (starting it again returns the same run)")
@click.option("--wait", is_flag=True, help="wait for the run to end and print its result")
@click.option("--follow", "follow_run", is_flag=True, help="show its progress until it ends")
@with_client
def start(
    client: HttpClient,
    out: Output,
    workflow: str,
    args: tuple[Any, ...],
    run_id: str | None,
    wait: bool,
    follow_run: bool,
) -> None:
    """Start a run of WORKFLOW with ARGS, each written as JSON (`2`, '{"a": 1}', '"text"').

    With --wait, prints the result as `runs result` does, and exits 3 if the run failed
    or was terminated. With --follow and --json, prints the run, then one line per
    event, then the result document."""
    body: dict[str, Any] = {"args": list(args)}
    if run_id is not None:
        body["id"] = run_id
    run = client.post(f"/workflows/{segment(workflow)}/runs", body)
    if follow_run:
        if out.json:
            out.line(run)
        else:
            out.show(Text.assemble("started ", (run["id"], "bold")))
        _follow(client, out, run["id"])
    elif not wait:
        out.answer(run, lambda: started_line(run))
        return
    _print_result(out, run["id"], client.result(run["id"], float("inf")), lines=follow_run)


@runs.command("result")
@click.argument("run_id")
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    metavar="SECONDS",
    help="wait up to this long for the run to end",
)
@with_source
def result(source: Source, out: Output, run_id: str, wait: float) -> None:
    """The run's result once it has ended (exit status 3 if it failed or was terminated)."""
    _print_result(out, run_id, source.result(run_id, wait))


def _print_result(out: Output, run_id: str, answer: dict[str, Any], lines: bool = False) -> None:
    if out.json:
        (out.line if lines else out.document)(answer)
    elif answer["status"] == "completed":
        sys.stdout.write(orjson.dumps(answer["result"], option=orjson.OPT_INDENT_2).decode())
        sys.stdout.write("\n")
    elif answer["status"] == "failed":
        out.show(Text.assemble("run ", (run_id, "bold"), " ", status_text("failed")))
        out.show(error_view(answer["error"]))
    elif answer["status"] == "terminated":
        out.show(Text.assemble("run ", (run_id, "bold"), " ", status_text("terminated")))
    else:
        out.show(Text.assemble("run ", (run_id, "bold"), " is ", status_text(answer["status"]),
                               ": no result yet"))  # fmt: skip
    if answer["status"] in FINAL_STATUSES - {"completed"}:
        raise click.exceptions.Exit(FAILED_RUN_STATUS)


def _control(client: HttpClient, out: Output, run_id: str, action: str, body: Any = None) -> None:
    answer = client.post(f"/runs/{segment(run_id)}/{action}", body)
    out.answer(
        answer,
        lambda: Text.assemble("run ", (answer["id"], "bold"), " ", status_text(answer["status"])),
    )


def _control_command(action: str, summary: str) -> None:
    @runs.command(action, help=summary)
    @click.argument("run_id")
    @with_client
    def command(client: HttpClient, out: Output, run_id: str) -> None:
        _control(client, out, run_id, action)


_control_command("pause", "Pause a run at its next step boundary.")
_control_command("resume", "Resume a paused run.")
_control_command("terminate", "End a run now; it is `terminated`.")


@runs.command("restart")
@click.argument("run_id")
@click.option("--from-step", help="re-run from the first step of this name (earlier results kept)")
@with_client
def restart(client: HttpClient, out: Output, run_id: str, from_step: str | None) -> None:
    """Run a run again, from the start or from a step."""
    _control(client, out, run_id, "restart", {"from_step": from_step})


@runs.command("send-event")
@click.argument("run_id")
@click.argument("type")
@click.argument("payload", required=False, type=JSON_VALUE)
@with_client
def send_event(client: HttpClient, out: Output, run_id: str, type: str, payload: Any) -> None:
    """Send the event TYPE with PAYLOAD (JSON; null if left out) to a run."""
    answer = client.post(f"/runs/{segment(run_id)}/events/{segment(type)}", payload)
    out.answer(answer, lambda: Text.assemble("sent ", (type, "bold"), " to run ", (run_id, "bold")))


@runs.command("events")
@click.argument("run_id")
@click.option(
    "--follow", "follow_run", is_flag=True, help="then show new events until the run ends"
)
@with_source
def events(source: Source, out: Output, run_id: str, follow_run: bool) -> None:
    """A run's event log (with --json, one event per line)."""
    if follow_run:
        _follow(source, out, run_id)
        return
    recorded = source.events(run_id)
    if out.json:
        for event in recorded:
            out.line(event)
    else:
        out.show(events_table(recorded))


@runs.command("stream")
@click.argument("run_id")
@click.option("--namespace", default="default", show_default=True)
@click.option(
    "--start", default=0, show_default=True, help="first chunk index; negative counts from the end"
)
@with_source
def stream(source: Source, out: Output, run_id: str, namespace: str, start: int) -> None:
    """A run's stream, recorded then live, until it closes or the run ends. Text chunks
    are printed as they are, bytes as bytes, other values as JSON lines; with --json,
    one `{"index", "data"}` per line (bytes as base64, with `"encoding": "base64"`)."""
    ends_with_newline = True
    for chunk in source.stream(run_id, namespace, start):
        if out.json:
            if isinstance(chunk.value, bytes):
                data = base64.b64encode(chunk.value).decode()
                out.line({"index": chunk.index, "data": data, "encoding": "base64"})
            else:
                out.line({"index": chunk.index, "data": chunk.value})
            continue
        if isinstance(chunk.value, bytes):
            sys.stdout.flush()
            sys.stdout.buffer.write(chunk.value)
            sys.stdout.buffer.flush()
            ends_with_newline = chunk.value.endswith(b"\n")
            continue
        text = (
            chunk.value
            if isinstance(chunk.value, str)
            else orjson.dumps(chunk.value).decode() + "\n"
        )
        sys.stdout.write(text)
        sys.stdout.flush()
        ends_with_newline = text.endswith("\n")
    if not out.json and not ends_with_newline:
        sys.stdout.write("\n")


def _follow(source: Source, out: Output, run_id: str) -> None:
    from ._live import follow  # rich's live display: imported only to follow a run

    follow(source, out, run_id)
