"""WorkflowContext: the per-run state workflow code reaches through its sandbox loop, and
`WorkflowHost`, the run actor as that code sees it.

Compiled with the hot path (`setup.py`): every step call goes through
`WorkflowContext.call_step`, and every run makes one. The functions workflow
code calls (`af.sleep`, `af.wait_for_event`, ...) are in `_context`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ._models import WorkflowInfo
    from ._run import Run
    from ._step_call import StepCall

Decoder = Callable[[Any], Any]
"""Decodes a JSON-native value into a type, raising `ValidationError` if it does not fit."""


class WorkflowHost(Protocol):
    """The run actor, as seen from workflow code. Every method is called from the sandbox."""

    closed: bool

    def workflow_info(self) -> WorkflowInfo: ...
    def call_step(
        self, seq: int, step: StepCall, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> asyncio.Future[Any]: ...
    def sleep(
        self, seq: int, seconds: float | None, until: float | None
    ) -> asyncio.Future[None]: ...
    def cancel_sleep(self, seq: int) -> None: ...
    def wait_event(
        self, seq: int, key: str, timeout: float | None, decode: Decoder | None
    ) -> asyncio.Future[Any]: ...
    def event_decoder(self, event_type: str) -> Decoder | None: ...
    def start_child(
        self, seq: int, workflow: Any, args: tuple[Any, ...], child_id: str | None, metadata: Any
    ) -> asyncio.Future[Run[Any]]: ...
    def await_child(self, seq: int, child_id: str) -> asyncio.Future[Any]: ...
    def create_hook(self, seq: int, token: str | None) -> str: ...
    def write_chunk(
        self, seq: int, namespace: str, kind: int, data: bytes | None
    ) -> asyncio.Future[int]: ...


class WorkflowClosed(BaseException):
    """Raised into workflow code that keeps calling after its run was terminated or evicted."""


class WorkflowContext:
    """The per-run state workflow code reaches through its sandbox loop."""

    __slots__ = ("host", "seq", "unwound")

    def __init__(self, host: WorkflowHost) -> None:
        self.host = host
        self.seq = 0
        self.unwound = False

    @property
    def info(self) -> WorkflowInfo:
        return self.host.workflow_info()

    def next_seq(self) -> int:
        """The position of the next journaled call."""
        if self.host.closed:
            self._unwind()
        seq = self.seq
        self.seq += 1
        return seq

    def call_step(
        self, step: StepCall, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> asyncio.Future[Any]:
        host = self.host
        if host.closed:  # `next_seq()`, inlined: this is every step call's path
            self._unwind()
            host = self.host
        seq = self.seq
        self.seq = seq + 1
        return host.call_step(seq, step, args, kwargs)

    def _unwind(self) -> None:
        """Raise `WorkflowClosed` into workflow code that calls after its run closed, once.

        Code that swallows it (`except BaseException: continue`) and calls again
        is parked from then on, on futures that never resolve: raising again would
        spin in its loop forever, holding the event loop, and `Engine.close()` (or
        the eviction) would never return. The parked tasks are dropped with the
        run's sandbox loop.
        """
        if not self.unwound:
            self.unwound = True
            raise WorkflowClosed
        self.host = ParkedHost(self.host)


class ParkedHost:
    """Stands in for the host of a closed run whose workflow swallowed `WorkflowClosed`:
    every call returns a future that never resolves, and nothing is journaled."""

    closed = False

    def __init__(self, host: WorkflowHost) -> None:
        self.workflow_info = host.workflow_info
        self.event_decoder = host.event_decoder

    @staticmethod
    def _parked() -> asyncio.Future[Any]:
        return asyncio.get_running_loop().create_future()  # the run's sandbox loop

    def call_step(
        self, seq: int, step: StepCall, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> asyncio.Future[Any]:
        return self._parked()

    def sleep(self, seq: int, seconds: float | None, until: float | None) -> asyncio.Future[None]:
        return self._parked()

    def cancel_sleep(self, seq: int) -> None:
        pass

    def wait_event(
        self, seq: int, key: str, timeout: float | None, decode: Decoder | None
    ) -> asyncio.Future[Any]:
        return self._parked()

    def start_child(
        self, seq: int, workflow: Any, args: tuple[Any, ...], child_id: str | None, metadata: Any
    ) -> asyncio.Future[Run[Any]]:
        return self._parked()

    def await_child(self, seq: int, child_id: str) -> asyncio.Future[Any]:
        return self._parked()

    def create_hook(self, seq: int, token: str | None) -> str:
        return token or ""

    def write_chunk(
        self, seq: int, namespace: str, kind: int, data: bytes | None
    ) -> asyncio.Future[int]:
        return self._parked()
