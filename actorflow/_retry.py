"""Step retry policy."""

from __future__ import annotations

from typing import Literal

import attrs

Backoff = Literal["constant", "linear", "exponential"]


def _non_negative(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if value < 0:
        raise ValueError(f"Retry.{attribute.name} must be >= 0, got {value!r}")


@attrs.frozen
class Retry:
    """How a failing step is retried.

    `limit` counts retries after the first attempt (so `limit=3` allows four
    attempts). The n-th retry waits `delay` (constant), `delay * n` (linear) or
    `delay * 2**(n-1)` (exponential), capped at `max_delay`.
    """

    limit: int = attrs.field(default=3, validator=attrs.validators.ge(0))
    delay: float = attrs.field(default=1.0, converter=float, validator=_non_negative)
    backoff: Backoff = attrs.field(
        default="exponential",
        validator=attrs.validators.in_(("constant", "linear", "exponential")),
    )
    max_delay: float = attrs.field(default=60.0, converter=float, validator=_non_negative)

    def delay_before(self, retry: int) -> float:
        """Seconds to wait before the `retry`-th retry (1-based)."""
        if self.backoff == "constant":
            delay = self.delay
        elif self.backoff == "linear":
            delay = self.delay * retry
        else:
            delay = self.delay * 2.0 ** (retry - 1)
        return min(delay, self.max_delay)


NO_RETRY = Retry(limit=0)
