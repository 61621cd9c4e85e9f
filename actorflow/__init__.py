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

import importlib
from typing import TYPE_CHECKING, Any

# First: it decides whether the compiled build or the sources of the hot path run.
from ._build import COMPILED as _COMPILED  # noqa: F401
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
from ._definitions import StepFunction, WorkflowFunction, step, workflow, workflow_schemas
from ._errors import (
    ActorflowError,
    CallContextError,
    DeadlineExceededError,
    EngineClosedError,
    EventTimeoutError,
    FatalError,
    HookConflictError,
    HookNotFoundError,
    InvalidNameError,
    InvalidStateError,
    NonDeterminismError,
    RetryableError,
    RunAlreadyExistsError,
    RunFailedError,
    RunNotFoundError,
    RunTerminatedError,
    ScheduleError,
    ScheduleNotFoundError,
    SerializationError,
    StepFailedError,
    StepTimeoutError,
    StoreFileError,
    StoreLockedError,
    StoreSchemaError,
    StoreWriteError,
    StreamClosedError,
    StreamLimitError,
    ValidationError,
    WorkflowNotRegisteredError,
    WorkflowSandboxError,
)
from ._log_records import RunLogFilter
from ._models import (
    ErrorInfo,
    RunEvent,
    RunInfo,
    RunStatus,
    ScheduleTick,
    StepInfo,
    StepRecord,
    StreamChunk,
    WorkflowInfo,
)
from ._retry import Retry
from ._run import Run
from ._runner import run, tune_gc
from ._schedule_types import RecentTick, ScheduleInfo
from ._streams import StreamWriter
from ._types import WorkflowSchemas

__version__ = "0.1.0"

if TYPE_CHECKING:
    from ._engine import Engine
    from ._schedule_api import Schedule
    from ._store import CommitStats

# Imported on first use: the engine, its stores and its scheduler are most of the import
# time, and what does not run an engine (the command line's commands) never needs them.
_LAZY = {"Engine": "_engine", "Schedule": "_schedule_api", "CommitStats": "_store"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    value.__module__ = __name__
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "ActorflowError",
    "CallContextError",
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
    "InvalidNameError",
    "InvalidStateError",
    "NonDeterminismError",
    "RecentTick",
    "Retry",
    "RetryableError",
    "Run",
    "RunAlreadyExistsError",
    "RunEvent",
    "RunFailedError",
    "RunInfo",
    "RunLogFilter",
    "RunNotFoundError",
    "RunStatus",
    "RunTerminatedError",
    "Schedule",
    "ScheduleError",
    "ScheduleInfo",
    "ScheduleNotFoundError",
    "ScheduleTick",
    "SerializationError",
    "StepFailedError",
    "StepFunction",
    "StepInfo",
    "StepRecord",
    "StepTimeoutError",
    "StoreFileError",
    "StoreLockedError",
    "StoreSchemaError",
    "StoreWriteError",
    "StreamChunk",
    "StreamClosedError",
    "StreamLimitError",
    "StreamWriter",
    "ValidationError",
    "WorkflowFunction",
    "WorkflowInfo",
    "WorkflowNotRegisteredError",
    "WorkflowSandboxError",
    "WorkflowSchemas",
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
    "workflow_schemas",
]

# Public names are `actorflow.X` wherever they are defined (reprs, tracebacks, docs).
for _name in __all__:
    _obj = globals().get(_name)  # None: imported on first use (`__getattr__`)
    if isinstance(_obj, type) or (callable(_obj) and hasattr(_obj, "__module__")):
        _obj.__module__ = __name__
del _name, _obj
