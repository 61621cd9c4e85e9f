"""`actorflow workflows list` and `actorflow hooks resume`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click
from rich.text import Text

from ._options import JSON_VALUE, with_client, with_source
from ._output import Output
from ._source import Source, segment
from ._views import workflows_table

if TYPE_CHECKING:
    from ._client import HttpClient


@click.group("workflows")
def workflows() -> None:
    """The workflows a server runs (or, with --db, that have runs in a store)."""


@workflows.command("list")
@with_source
def list_workflows(source: Source, out: Output) -> None:
    """Each workflow: concurrency, schedules, and its runs by status."""
    out.listing(source.workflows(), "workflows", workflows_table)


@click.group("hooks")
def hooks() -> None:
    """Hooks: what runs wait on by token (`af.create_hook`)."""


@hooks.command("resume")
@click.argument("hook_token", metavar="TOKEN")
@click.argument("payload", required=False, type=JSON_VALUE)
@with_client
def resume_hook(client: HttpClient, out: Output, hook_token: str, payload: Any) -> None:
    """Deliver PAYLOAD (JSON; null if left out) to the run waiting on the hook TOKEN."""
    answer = client.post(f"/hooks/{segment(hook_token)}", payload)
    out.answer(answer, lambda: Text.assemble("resumed hook ", (hook_token, "bold")))
