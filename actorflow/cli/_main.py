"""The `actorflow` command group: every subcommand is registered here."""

from __future__ import annotations

import click

from ._demo import demo_command
from ._runs import runs
from ._schedules import schedules
from ._serve import serve_command
from ._workflows import hooks, workflows


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="actorflow")
def main() -> None:
    """actorflow: durable workflows for Python asyncio."""


main.add_command(serve_command, "serve")
main.add_command(demo_command, "demo")
main.add_command(workflows)
main.add_command(runs)
main.add_command(hooks)
main.add_command(schedules)
