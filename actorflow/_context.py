"""What workflow and step code calls: `sleep`, `wait_for_event`, `start`, `create_hook`,
`get_writable`, `step_info`, `workflow_info`.

Each journaled call takes the next `seq` of the run and hands the operation to
the run's actor (the `WorkflowHost`), which records it, replays it from the log,
or acts on it, and returns a future of the workflow's private loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator
from contextvars import ContextVar
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar, overload

from ._durations import Duration, to_seconds, to_timestamp
from ._errors import CallContextError, EngineClosedError
from ._ids import HOOK_PREFIX as HOOK_PREFIX  # where the hook payloads' readers import it
from ._ids import check_event_type, check_name, check_new_run_id, step_id
from ._models import StepInfo, WorkflowInfo
from ._sandbox import running_workflow_loop
from ._types import codec_for, value_decoder
from ._workflow_context import Decoder, WorkflowContext

if TYPE_CHECKING:
    from ._actor import StepOp
    from ._definitions import WorkflowFunction
    from ._run import Run
    from ._store import RunRow, Store
    from ._streams import StreamWriter

T = TypeVar("T")


class RunStarter(Protocol):
    """What `af.start()` outside workflow code calls: the engine's `start`."""

    async def start(
        self,
        workflow: Any,
        *args: Any,
        id: str | None = None,
        if_exists: Literal["return", "error"] = "return",
        metadata: Any = None,
        deadline: Duration | None = None,
    ) -> Run[Any]: ...


class _StepHost(Protocol):
    @property
    def engine(self) -> RunStarter: ...


class StepOwner(Protocol):
    """The run actor, as step code reaches it (`current_step()`, `get_writable()`)."""

    @property
    def run_id(self) -> str: ...
    @property
    def row(self) -> RunRow: ...
    @property
    def store(self) -> Store: ...
    @property
    def host(self) -> _StepHost: ...
    def add_chunk(
        self, namespace: str, seq: int | None, attempt: int, kind: int, data: bytes | None
    ) -> int: ...


class StepContext:
    """The per-attempt state step code reaches (see `current_step`)."""

    __slots__ = ("_info", "actor", "attempt", "engine", "generation", "name", "seq", "writers")

    def __init__(
        self, engine: RunStarter, actor: StepOwner, name: str, seq: int, attempt: int
    ) -> None:
        self.engine = engine
        self.actor = actor
        self.name = name
        self.seq = seq
        self.attempt = attempt
        self.generation = actor.row.generation
        self.writers: dict[str, StreamWriter] | None = None
        self._info: StepInfo | None = None

    @property
    def info(self) -> StepInfo:
        """Built on first use: most steps never ask."""
        if self._info is None:
            run_id, seq = self.actor.run_id, self.seq
            step = step_id(run_id, self.generation, seq)
            self._info = StepInfo(run_id, step, self.name, seq, self.attempt)
        return self._info


# What a step attempt runs: [actor, step call, attempt, its `StepContext` once made]. A list
# in the attempt's context, not an attribute of the step call: the context refers to the
# actor, and the actor to its step calls, so that would be a reference cycle.
_step: ContextVar[list[Any] | None] = ContextVar("actorflow_step", default=None)
_engine: ContextVar[RunStarter | None] = ContextVar("actorflow_engine", default=None)


def current_workflow() -> WorkflowContext | None:
    """The workflow context of the running code, or None outside workflow code.

    Workflow code runs only inside its run's sandbox loop (`WorkflowLoop`), so the
    running loop says which run it is: no context variable to set per run.
    """
    loop = running_workflow_loop()
    if loop is None:
        return None
    workflow: WorkflowContext | None = loop.workflow
    return workflow


def current_step() -> StepContext | None:
    """The step context of the running code, or None outside step code.

    Made when step code first asks, and kept for the rest of the attempt (tasks
    the step starts share it): most steps never ask, and building one for every
    attempt cost ~2.5k instructions.
    """
    running = _step.get()
    if running is None:
        return None
    ctx: StepContext | None = running[3]
    if ctx is None:
        actor: StepOwner = running[0]
        op: StepOp = running[1]
        ctx = running[3] = StepContext(actor.host.engine, actor, op.name, op.seq, running[2])
    return ctx


def _require_workflow(call: str) -> WorkflowContext:
    ctx = current_workflow()
    if ctx is None:
        raise CallContextError(f"{call} can only be called inside an @af.workflow function")
    return ctx


def workflow_info() -> WorkflowInfo:
    """The current run's id, workflow name, start time and schedule (inside a workflow).

    Raises `CallContextError` outside a workflow."""
    return _require_workflow("af.workflow_info()").info


def step_info() -> StepInfo:
    """The current step's run id, stable step id, name, seq and attempt (inside a step).

    Raises `CallContextError` outside a step."""
    ctx = current_step()
    if ctx is None:
        raise CallContextError("af.step_info() can only be called inside an @af.step function")
    return ctx.info


async def sleep(duration: Duration) -> None:
    """Durably sleep: the run waits (holding no slot) and survives restarts meanwhile.

    Raises `CallContextError` outside a workflow, `ValueError` for a bad duration."""
    ctx = _require_workflow("af.sleep()")
    seconds = to_seconds(duration, "sleep duration")
    await ctx.host.sleep(ctx.next_seq(), seconds, None)


async def sleep_until(when: datetime) -> None:
    """Durably sleep until a timezone-aware datetime (at once if it has passed).

    Raises `CallContextError` outside a workflow, `ValueError` for a naive datetime."""
    ctx = _require_workflow("af.sleep_until()")
    await ctx.host.sleep(ctx.next_seq(), None, to_timestamp(when, "sleep_until()"))


@overload
async def wait_for_event(event_type: str, /, timeout: Duration | None = None) -> Any: ...
@overload
async def wait_for_event(
    event_type: str, /, timeout: Duration | None = None, *, type: type[T]
) -> T: ...


async def wait_for_event(
    event_type: str, /, timeout: Duration | None = None, *, type: Any = None
) -> Any:
    """Wait for the next event of `event_type` sent to this run and return its payload.

    Events sent before the wait are buffered and delivered in order. With
    `timeout`, raises `af.EventTimeoutError` (catchable) when it expires. With
    `type=` (or a type declared with `@af.workflow(events=)`), the payload is
    decoded into that type (a dataclass, TypedDict, pydantic model, ...), live
    and on replay alike; while the run waits here, `send_event` refuses a payload
    that does not fit with `af.ValidationError`, before storing it. One that
    arrived before the wait and does not fit raises `af.ValidationError` here.
    """
    ctx = _require_workflow("af.wait_for_event()")
    key = check_event_type(event_type)
    seconds = None if timeout is None else to_seconds(timeout, "wait_for_event timeout")
    if type is None:
        decode = ctx.host.event_decoder(key)
    else:
        decode = value_decoder(codec_for(type), f"the {key!r} event")
    payload = await ctx.host.wait_event(ctx.next_seq(), key, seconds, decode)
    return payload if decode is None else decode(payload)


async def start(
    workflow: WorkflowFunction[Any, T] | str,
    *args: Any,
    id: str | None = None,
    if_exists: Literal["return", "error"] = "return",
    metadata: Any = None,
) -> Run[T]:
    """Start a run of `workflow`.

    Inside a workflow this starts a journaled child run (replay returns the same
    child); `await child.result()` then suspends the parent until it finishes,
    and returns the child's result decoded into its return annotation.
    Elsewhere it calls `start` on the innermost engine opened with `async with`.
    Raises what `Engine.start` raises (`af.ValidationError` for arguments that do not
    fit the workflow's annotations, before anything is stored), and
    `EngineClosedError` where no engine is open.
    """
    if id is not None:
        check_new_run_id(id)
    ctx = current_workflow()
    if ctx is not None:
        return await ctx.host.start_child(ctx.next_seq(), workflow, args, id, metadata)
    return await current_engine().start(
        workflow, *args, id=id, if_exists=if_exists, metadata=metadata
    )


def current_engine() -> RunStarter:
    """The engine of the running step, or the innermost engine opened with `async with`.

    Raises `EngineClosedError` if there is none."""
    running = _step.get()
    if running is not None:
        actor: StepOwner = running[0]
        return actor.host.engine
    engine = _engine.get()
    if engine is None:
        raise EngineClosedError("no engine is open here; use `async with af.Engine(...)`")
    return engine


class Hook(Generic[T]):
    """Receives payloads sent with `engine.resume_hook(token, payload)`; inside workflows only.

    `await hook` returns the next payload; `async for payload in hook` loops
    over them. Payloads that arrive while nobody waits are buffered.
    """

    def __init__(self, ctx: WorkflowContext, token: str, decode: Decoder | None = None) -> None:
        self._ctx = ctx
        self._decode = decode
        self.token = token

    async def wait(self, timeout: Duration | None = None) -> T:
        """The next payload (decoded into the hook's `type=`); raises
        `af.EventTimeoutError` after `timeout`, `af.ValidationError` for a payload that
        does not fit its type."""
        seconds = None if timeout is None else to_seconds(timeout, "hook timeout")
        key = HOOK_PREFIX + self.token
        decode = self._decode
        payload = await self._ctx.host.wait_event(self._ctx.next_seq(), key, seconds, decode)
        return payload if decode is None else decode(payload)  # type: ignore[no-any-return]

    def __await__(self) -> Generator[Any, None, T]:
        return self.wait().__await__()

    async def __aiter__(self) -> AsyncIterator[T]:
        while True:
            yield await self.wait()

    def __repr__(self) -> str:
        return f"<Hook {self.token!r}>"


@overload
def create_hook(token: str | None = None) -> Hook[Any]: ...
@overload
def create_hook(token: str | None = None, *, type: type[T]) -> Hook[T]: ...


def create_hook(token: str | None = None, *, type: Any = None) -> Hook[Any]:
    """Create a hook in the current workflow; without `token` a random one is made.

    With `type=`, payloads are decoded into that type, and while the run waits on
    the hook, `resume_hook` refuses one that does not fit with `af.ValidationError`,
    before storing it. Raises `af.HookConflictError` if another unfinished run
    holds `token`.
    """
    ctx = _require_workflow("af.create_hook()")
    if token is not None:
        check_name(token, "hook token")
    decode = None if type is None else value_decoder(codec_for(type), "the hook payload")
    return Hook(ctx, ctx.host.create_hook(ctx.next_seq(), token), decode)


def get_writable(namespace: str = "default") -> StreamWriter:
    """A writer for this run's stream `namespace`, inside a step or a workflow.

    From a step, chunks are committed and reach readers while the step runs.
    From the workflow body, each write is journaled like a step. Raises
    `CallContextError` elsewhere, `ValueError` for a bad namespace.
    """
    from ._streams import BodyStreamWriter, StepStreamWriter, check_namespace

    check_namespace(namespace)
    step_ctx = current_step()
    if step_ctx is not None:
        if step_ctx.writers is None:
            step_ctx.writers = {}
        writer = step_ctx.writers.get(namespace)
        if writer is None:
            writer = StepStreamWriter(step_ctx.actor, namespace, step_ctx.seq, step_ctx.attempt)
            step_ctx.writers[namespace] = writer
        return writer
    ctx = current_workflow()
    if ctx is not None:
        return BodyStreamWriter(ctx, namespace)
    raise CallContextError("af.get_writable() can only be called inside a step or a workflow")
