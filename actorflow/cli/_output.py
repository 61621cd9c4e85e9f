"""Output: JSON for scripts (`--json`), rich renderables for people; colours only on a
terminal (and never with NO_COLOR)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import orjson
from rich.console import Console, RenderableType

# Tables are not folded to 80 columns when the output goes to a file or a pipe.
_PIPE_WIDTH = 200


class Output:
    """Where a command prints: `json` says which form it prints in."""

    def __init__(self, as_json: bool) -> None:
        self.json = as_json
        terminal = sys.stdout.isatty()
        self.console = Console(highlight=False, width=None if terminal else _PIPE_WIDTH)

    @property
    def terminal(self) -> bool:
        return self.console.is_terminal

    def document(self, value: Any) -> None:
        """One JSON document."""
        sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")

    def line(self, value: Any) -> None:
        """One JSON document on a line of its own (streaming output), flushed at once."""
        sys.stdout.write(orjson.dumps(value).decode() + "\n")
        sys.stdout.flush()

    def show(self, *renderables: RenderableType) -> None:
        self.console.print(*renderables)

    def answer(self, value: Any, human: Callable[[], RenderableType]) -> None:
        """`value` as one JSON document with `--json`, else what `human()` renders."""
        if self.json:
            self.document(value)
        else:
            self.show(human())

    def listing(
        self, document: dict[str, Any], key: str, table: Callable[[list[Any]], RenderableType]
    ) -> None:
        """A list answer: `document` as JSON with `--json`, else a table of its `key` list,
        or `no <key>` when that list is empty."""
        if self.json:
            self.document(document)
        elif document[key]:
            self.show(table(document[key]))
        else:
            self.show(f"no {key}")
