"""A prototype measured by `python -m benchmarks.instructions --otel-pipe`: telemetry made
in another process, from the committed rows the engine hands it.

Spans and metrics are built from committed rows only (`actorflow.otel`), so a
process that gets those rows can build the same ones. This observer does the
engine's half: after each commit it pickles the batch's rows (the run rows as
the store inserted them, the event rows, the run updates) and writes them to a
pipe, whose reader, another process, is where the SDK's work would go (here
it only drains the pipe). Counting the engine's process alone gives what this
costs the event loop, against the in-process instrumentation's cost.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections.abc import Mapping
from typing import IO

from actorflow import _observe
from actorflow._store import EventRow, RunRow, WriteBatch

DRAIN = "import sys\nwhile sys.stdin.buffer.read(1 << 16): pass"


class PipeObserver:
    """An `_observe.Observer` that ships every committed batch's rows to `sink`."""

    def __init__(self, sink: IO[bytes]) -> None:
        self.fd = sink.fileno()

    def run_creating(self, row: RunRow, given: Mapping[str, str] | None) -> None:
        return None

    def committed(self, batch: WriteBatch) -> None:
        created = [event for _, events in batch.new_runs for event in events]
        rows = (batch.run_inserts, created, batch.events, batch.run_updates, batch.conflicts)
        data = pickle.dumps(rows, pickle.HIGHEST_PROTOCOL)
        frame = memoryview(len(data).to_bytes(4, "big") + data)
        while frame:
            frame = frame[os.write(self.fd, frame) :]

    def batch_written(self, rows: int, seconds: float) -> None:
        pass

    def commit_failed(self, batch: WriteBatch) -> None:
        pass

    def run_loaded(self, row: RunRow, events: list[EventRow], restarted: bool) -> None:
        pass

    def run_evicted(self, run_id: str) -> None:
        pass


def install() -> subprocess.Popen[bytes]:
    """Start the reading process and install the observer writing to it (for the life of
    the measured process)."""
    reader = subprocess.Popen([sys.executable, "-c", DRAIN], stdin=subprocess.PIPE)
    assert reader.stdin is not None
    _observe.install(PipeObserver(reader.stdin))
    return reader
