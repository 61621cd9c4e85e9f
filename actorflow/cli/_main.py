"""The `actorflow` command group: every subcommand is registered here, by the module
that defines it, and imported only when it is used.

A command pays only for its own imports: `actorflow serve` does not import the
demo (whose workflows would register in the served engine), and the commands
that read a store file do not import the HTTP client.
"""

from __future__ import annotations

import importlib

import click

# name -> "module:attribute" of each subcommand, relative to this package.
COMMANDS = {
    "serve": "._serve:serve_command",
    "demo": "._demo:demo_command",
    "workflows": "._workflows:workflows",
    "runs": "._runs:runs",
    "hooks": "._workflows:hooks",
    "schedules": "._schedules:schedules",
}


class LazyGroup(click.Group):
    """A group whose subcommands (`COMMANDS`) are imported when they are looked up."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attribute = target.split(":")
        command = getattr(importlib.import_module(module, __package__), attribute)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="actorflow")
def main() -> None:
    """actorflow: durable workflows for Python asyncio."""
