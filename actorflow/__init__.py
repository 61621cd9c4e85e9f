"""actorflow: durable workflows for Python asyncio.

Each run is an in-process actor; every step result, sleep, event and stream
chunk is committed to an event log (embedded SQLite by default), so runs
survive crashes and restarts and continue where they stopped.

    import actorflow as af

    @af.step
    async def charge(order_id: str) -> dict: ...

    @af.workflow
    async def process_order(order_id: str) -> dict:
        return await charge(order_id)

    async with af.Engine("sqlite:///actorflow.db") as engine:
        run = await engine.start(process_order, "o-1")
        print(await run.result())
"""

from ._context import (
    Hook,
    create_hook,
    get_writable,
    sleep,
    sleep_until,
    start,
    step_info,
    wait_for_event,
    workflow_info,
)
from ._definitions import StepFunction, WorkflowFunction, step, workflow
from ._engine import Engine
from ._errors import (
    ActorflowError,
    DeadlineExceededError,
    EngineClosedError,
    EventTimeoutError,
    FatalError,
    HookConflictError,
    HookNotFoundError,
    InvalidStateError,
    NonDeterminismError,
    RetryableError,
    RunAlreadyExistsError,
    RunFailedError,
    RunNotFoundError,
    RunTerminatedError,
    SerializationError,
    StepFailedError,
    StepTimeoutError,
    StoreWriteError,
    StreamClosedError,
    StreamLimitError,
    WorkflowNotRegisteredError,
    WorkflowSandboxError,
)
from ._models import (
    ErrorInfo,
    RunEvent,
    RunInfo,
    RunStatus,
    StepInfo,
    StepRecord,
    StreamChunk,
    WorkflowInfo,
)
from ._retry import Retry
from ._run import Run
from ._runner import run, tune_gc
from ._store import CommitStats, StoreLockedError
from ._streams import StreamWriter

__version__ = "0.1.0"

__all__ = [
    "ActorflowError",
    "CommitStats",
    "DeadlineExceededError",
    "Engine",
    "EngineClosedError",
    "ErrorInfo",
    "EventTimeoutError",
    "FatalError",
    "Hook",
    "HookConflictError",
    "HookNotFoundError",
    "InvalidStateError",
    "NonDeterminismError",
    "Retry",
    "RetryableError",
    "Run",
    "RunAlreadyExistsError",
    "RunEvent",
    "RunFailedError",
    "RunInfo",
    "RunNotFoundError",
    "RunStatus",
    "RunTerminatedError",
    "SerializationError",
    "StepFailedError",
    "StepFunction",
    "StepInfo",
    "StepRecord",
    "StepTimeoutError",
    "StoreLockedError",
    "StoreWriteError",
    "StreamChunk",
    "StreamClosedError",
    "StreamLimitError",
    "StreamWriter",
    "WorkflowFunction",
    "WorkflowInfo",
    "WorkflowNotRegisteredError",
    "WorkflowSandboxError",
    "create_hook",
    "get_writable",
    "run",
    "sleep",
    "sleep_until",
    "start",
    "step",
    "step_info",
    "tune_gc",
    "wait_for_event",
    "workflow",
    "workflow_info",
]
