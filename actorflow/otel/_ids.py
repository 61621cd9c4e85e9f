"""Span ids derived from what a run stores, so every process agrees on them.

A run's span (`run <workflow>`, one per generation) is ended by whichever
process sees the run's final entry committed, which after a crash is not the
one that started it; its steps are parented to it meanwhile. Its ids are
therefore derived from the run itself (id, creation time, generation) rather
than drawn at random, and `PresetIds` lets the SDK's tracer use them.
"""

from __future__ import annotations

import hashlib
from typing import Protocol


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


# The texts hashed are the reprs of the parts joined by "|" (as every version has hashed).
def run_trace_id(run_id: str, created_at: float) -> int:
    """The trace id of a run that joins no caller's trace."""
    return int.from_bytes(_digest(f"'trace'|{run_id!r}|{created_at!r}")) or 1


def run_span_id(run_id: str, created_at: float, generation: int) -> int:
    """The span id of the run's span for `generation`."""
    return int.from_bytes(_digest(f"'span'|{run_id!r}|{created_at!r}|{generation!r}")[:8]) or 1


class IdGenerator(Protocol):
    """The SDK's `IdGenerator` (not imported: the extra needs only the API)."""

    def generate_span_id(self) -> int: ...

    def generate_trace_id(self) -> int: ...


class PresetIds:
    """An SDK tracer's id generator that hands out the preset ids once (for the next
    span started), else those of the generator it wraps."""

    def __init__(self, inner: IdGenerator) -> None:
        self.inner = inner
        self.span_id: int | None = None
        self.trace_id: int | None = None

    def generate_span_id(self) -> int:
        preset, self.span_id = self.span_id, None
        return self.inner.generate_span_id() if preset is None else preset

    def generate_trace_id(self) -> int:
        preset, self.trace_id = self.trace_id, None
        return self.inner.generate_trace_id() if preset is None else preset

    def is_trace_id_random(self) -> bool:
        return False
