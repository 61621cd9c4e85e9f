"""`@af.workflow` and `@af.step`: what they wrap, and the registry of workflows."""

from __future__ import annotations

import enum
import functools
import inspect
import sys
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Protocol, TypeVar, overload

from ._cron import CronExpression
from ._durations import Duration, to_seconds
from ._errors import ScheduleError, ValidationError, WorkflowNotRegisteredError
from ._ids import check_event_type
from ._retry import Retry
from ._step_call import StepCall
from ._types import (
    DEFS_TEMPLATE,
    Signature,
    TypeCodec,
    WorkflowSchemas,
    codec_for,
    value_decoder,
)

P = ParamSpec("P")
R = TypeVar("R")

_registry: dict[str, WorkflowFunction[Any, Any]] = {}


class Unresolved(enum.Enum):
    """What a step's `decode_result` is until its hints are resolved."""

    UNRESOLVED = enum.auto()


UNRESOLVED = Unresolved.UNRESOLVED


class StepFunction(StepCall, Generic[P, R]):
    """A function whose calls are journaled when made from a workflow.

    Inside a workflow a call schedules the step at once and returns an
    awaitable of its (JSON round-tripped) result. Anywhere else it is a plain
    call: an async step returns its coroutine, a sync step its value.
    """

    fn: Callable[P, Awaitable[R]] | Callable[P, R]

    def __init__(
        self,
        fn: Callable[P, Awaitable[R]] | Callable[P, R],
        *,
        name: str,
        retry: Retry,
        timeout: float | None,
    ) -> None:
        self.fn = fn
        self.name = name
        self.retry = retry
        self.timeout = timeout
        self.is_async = inspect.iscoroutinefunction(fn)
        self._arity = _positional_arity(fn)
        self._arg_counts = _arg_counts(self._arity)
        # Whether arguments bind depends only on how many are positional and on the
        # keywords' names: each such shape that bound once needs no `bind` again.
        self._signature = inspect.signature(fn)
        self._bound_shapes: set[tuple[Any, ...]] = set()
        self.decode_result: Callable[[Any], Any] | Unresolved | None = UNRESOLVED
        functools.update_wrapper(self, fn)

    if TYPE_CHECKING:  # the call itself is `StepCall.__call__`, compiled

        def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Awaitable[R]: ...

    def _check_call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Raise `TypeError` at the call, as a plain call would, if the step cannot take
        these arguments: a programming error that no retry can mend."""
        if not kwargs:
            raise TypeError(f"step {self.name!r} {_misfit(self._arity, len(args))}")
        shape = (len(args), *kwargs)
        if shape in self._bound_shapes:
            return
        try:
            self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"step {self.name!r}: {exc}") from None
        self._bound_shapes.add(shape)

    def resolve_decoder(self) -> Callable[[Any], Any] | None:
        """The decoder of this step's recorded results, from their JSON (None when its
        return annotation is JSON-native), from its hints, resolved on first use (types
        named in annotations may be defined after the function); kept in `decode_result`."""
        if self.decode_result is UNRESOLVED:
            self.decode_result = self._typed.result_decoder(from_json=True)
        return self.decode_result

    def result_codec(self) -> TypeCodec:
        """The codec of the step's return annotation (what its results are encoded by
        when orjson refuses them; see `encode`)."""
        return self._typed.result

    @functools.cached_property
    def _typed(self) -> Signature:
        """The step's typed parameters and result, from its hints on first use."""
        return Signature(self.fn, f"step {self.name!r}")

    def __repr__(self) -> str:
        return f"<step {self.name!r}>"


class WorkflowFunction(Generic[P, R]):
    """A registered workflow. Calling it directly runs it as a plain coroutine."""

    def __init__(
        self,
        fn: Callable[P, Coroutine[Any, Any, R]],
        *,
        name: str,
        concurrency: int | None,
        deadline: float | None,
        schedules: tuple[str, ...] = (),
        retention: float | None = None,
        events: Mapping[str, Any] | None = None,
    ) -> None:
        self.fn = fn
        self.name = name
        self.concurrency = concurrency
        self.deadline = deadline
        self.schedules = schedules
        self.retention = retention
        self.events = dict(events or {})
        self._event_decoders: dict[str, Callable[[Any], Any]] = {}
        self._arity = _positional_arity(fn)
        self._arg_counts = _arg_counts(self._arity)
        functools.update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:
        return self.fn(*args, **kwargs)

    def run_coroutine(self, args: list[Any]) -> Coroutine[Any, Any, R]:
        """The coroutine of a run with these stored (JSON) arguments, decoded into their
        annotated types: one that no longer fits (or hints that no longer resolve)
        fails the run."""
        fn: Callable[..., Coroutine[Any, Any, R]] = self.fn  # called with positional args
        try:
            signature = self.signature
            return fn(*(args if signature.args_native else signature.decode_args(args)))
        except (TypeError, ValidationError) as exc:
            return _raising(exc)

    @functools.cached_property
    def signature(self) -> Signature:
        """The typed parameters and result, resolved from the hints on first use (types
        named in annotations may be defined after the decorated function)."""
        return Signature(self.fn, f"workflow {self.name!r}")

    def with_text_keys(self, args: list[Any]) -> list[Any]:
        """`args` with the keys of the dicts their annotations type as strings (see
        `encode`, which asks only when orjson refuses them)."""
        return self.signature.with_text_keys(args)

    @functools.cached_property
    def decode_result(self) -> Callable[[Any], Any] | None:
        """The decoder of this workflow's stored results (None when JSON-native)."""
        return self.signature.result_decoder()

    def event_decoder(self, event_type: str) -> Callable[[Any], Any] | None:
        """The decoder of `event_type`'s payloads into the type declared for it with
        `@af.workflow(events=)` (None: undeclared), made on first use (types named in
        hints may be defined after the workflow)."""
        decode = self._event_decoders.get(event_type)
        if decode is None:
            codec = self.event_codec(event_type)
            if codec is not None:
                what = f"the {event_type!r} event of workflow {self.name!r}"
                decode = self._event_decoders[event_type] = value_decoder(codec, what)
        return decode

    def event_codec(self, event_type: str) -> TypeCodec | None:
        """The codec of the type declared for `event_type`'s payloads (None: undeclared)."""
        return codec_for(self.events[event_type]) if event_type in self.events else None

    def check_args(self, args: Sequence[Any], where: str = "") -> None:
        """Raise unless a run can be started with positional `args`, so that a bad call
        fails where it is made rather than in the run, once stored: `TypeError` for
        the wrong number, `ValidationError` for a value that does not fit its
        annotation (naming the argument and the path inside it)."""
        if len(args) not in self._arg_counts:
            by_position = ", and a run gets its arguments by position" if self._arity[2] else ""
            raise TypeError(
                f"{where}workflow {self.name!r} {_misfit(self._arity, len(args))}{by_position}"
            )
        self.signature.check_args(args, where)

    def __repr__(self) -> str:
        return f"<workflow {self.name!r}>"


class StepDecorator(Protocol):
    """What `@af.step(...)` with options returns: it keeps the step's result type."""

    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]], /) -> StepFunction[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> StepFunction[P, R]: ...


@overload
def step(fn: Callable[P, Awaitable[R]], /) -> StepFunction[P, R]: ...
@overload
def step(fn: Callable[P, R], /) -> StepFunction[P, R]: ...
@overload
def step(
    *,
    name: str | None = None,
    retry: Retry | None = None,
    timeout: Duration | None = None,
) -> StepDecorator: ...


def step(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    retry: Retry | None = None,
    timeout: Duration | None = None,
) -> Any:
    """Declare a step: `@af.step` or `@af.step(name=, retry=af.Retry(...), timeout=30)`.

    Async and sync functions are accepted; sync steps run in a thread of the loop's
    default executor. A timeout (or terminate) stops waiting for a sync step, but
    Python cannot stop its thread: the function runs to its end while the retry
    runs, and what it returns then is dropped.
    """
    if retry is not None and not isinstance(retry, Retry):
        raise TypeError(f"retry must be an af.Retry, got {type(retry).__name__}")
    seconds = None if timeout is None else to_seconds(timeout, "step timeout")

    def wrap(f: Callable[..., Any]) -> StepFunction[..., Any]:
        if not callable(f):
            raise TypeError(f"@af.step needs a function, got {f!r}")
        return StepFunction(f, name=name or f.__qualname__, retry=retry or Retry(), timeout=seconds)

    return wrap if fn is None else wrap(fn)


@overload
def workflow(fn: Callable[P, Coroutine[Any, Any, R]], /) -> WorkflowFunction[P, R]: ...
@overload
def workflow(
    *,
    name: str | None = None,
    concurrency: int | None = None,
    deadline: Duration | None = None,
    schedules: Sequence[str] = (),
    retention: Duration | None = None,
    events: Mapping[str, Any] | None = None,
) -> Callable[[Callable[P, Coroutine[Any, Any, R]]], WorkflowFunction[P, R]]: ...


def workflow(
    fn: Callable[..., Coroutine[Any, Any, Any]] | None = None,
    /,
    *,
    name: str | None = None,
    concurrency: int | None = None,
    deadline: Duration | None = None,
    schedules: Sequence[str] = (),
    retention: Duration | None = None,
    events: Mapping[str, Any] | None = None,
) -> Any:
    """Declare and register a workflow: `@af.workflow` or `@af.workflow(name=, concurrency=, ...)`.

    `concurrency` caps how many runs of it are `running` at once (the rest are
    `queued`, first in first out); `deadline` fails a run that has not finished
    that long after it was created; `schedules` are cron expressions whose ticks
    start it with no arguments (in UTC, ids `"{name}:{cron}"`; a bad one raises
    `ScheduleError` here); `retention` deletes its runs that long after they
    finished (overriding the engine's `retention=`; None: the engine's); `events`
    maps event types to their payloads' types: `send_event` refuses a payload that
    does not fit (`ValidationError`) before anything is stored, and
    `af.wait_for_event(event_type)` decodes it into that type.
    Raises `ValueError`/`TypeError` for a bad option.
    """
    if isinstance(schedules, str) or not all(isinstance(c, str) for c in schedules):
        raise ScheduleError(f"schedules must be a list of cron expressions, got {schedules!r}")
    for cron in schedules:
        CronExpression(cron)
    if concurrency is not None and (not isinstance(concurrency, int) or concurrency < 1):
        raise ValueError(f"concurrency must be a positive int, got {concurrency!r}")
    seconds = None if deadline is None else to_seconds(deadline, "workflow deadline")
    keep = None if retention is None else to_seconds(retention, "workflow retention")
    if events is not None and not isinstance(events, Mapping):
        raise TypeError(f"events must map event types to types, got {events!r}")
    for event_type in events or ():
        check_event_type(event_type)

    def wrap(f: Callable[..., Coroutine[Any, Any, Any]]) -> WorkflowFunction[..., Any]:
        if not inspect.iscoroutinefunction(f):
            raise TypeError(f"@af.workflow needs an async def function, got {f!r}")
        wf = WorkflowFunction(
            f,
            name=name or f.__qualname__,
            concurrency=concurrency,
            deadline=seconds,
            schedules=tuple(dict.fromkeys(schedules)),
            retention=keep,
            events=events,
        )
        _register(wf)
        return wf

    return wrap if fn is None else wrap(fn)


async def _raising(exc: BaseException) -> Any:
    """A coroutine that raises `exc`: the run fails with it, as if the workflow raised it."""
    raise exc


def _positional_arity(fn: Callable[..., Any]) -> tuple[int, int | None, str | None]:
    """The least and most positional arguments `fn` takes (most: None if unbounded),
    and the name of a keyword-only parameter it requires, if any."""
    least, most, unbounded = 0, 0, False
    keyword_only = None
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            most += 1
            if param.default is param.empty:
                least = most
        elif param.kind is param.VAR_POSITIONAL:
            unbounded = True
        elif param.kind is param.KEYWORD_ONLY and param.default is param.empty:
            keyword_only = keyword_only or param.name
    return least, None if unbounded else most, keyword_only


def _arg_counts(arity: tuple[int, int | None, str | None]) -> range:
    """The numbers of positional arguments alone that a call can pass: one containment
    test per call."""
    least, most, keyword_only = arity
    return range(0) if keyword_only else range(least, sys.maxsize if most is None else most + 1)


def _misfit(arity: tuple[int, int | None, str | None], n: int) -> str:
    """Why `n` positional arguments alone do not fit a function of `arity`."""
    least, most, keyword_only = arity
    if keyword_only is not None:
        return f"has a required keyword-only parameter {keyword_only!r}"
    takes = (
        f"at least {least}"
        if most is None
        else str(least)
        if least == most
        else f"{least} to {most}"
    )
    noun = "argument" if takes == "1" else "arguments"
    return f"takes {takes} positional {noun}, got {n}"


def _register(wf: WorkflowFunction[Any, Any]) -> None:
    existing = _registry.get(wf.name)
    if existing is not None and _origin(existing) != _origin(wf):
        raise ValueError(
            f"workflow name {wf.name!r} is already used by {_origin(existing)}; "
            "pass @af.workflow(name=...) to tell them apart"
        )
    _registry[wf.name] = wf


def _origin(wf: WorkflowFunction[Any, Any]) -> str:
    return f"{wf.fn.__module__}.{wf.fn.__qualname__}"


def workflow_registry() -> dict[str, WorkflowFunction[Any, Any]]:
    """The registry itself, not a copy: what is decorated later is in it too."""
    return _registry


def workflow_schemas(
    workflow: WorkflowFunction[Any, Any] | str, *, ref_template: str = DEFS_TEMPLATE
) -> WorkflowSchemas:
    """The JSON Schemas of a workflow's arguments and result, from its type hints.

    `workflow` is the decorated function or the name it is registered under in
    this process. The types the schemas use are referred to by `ref_template`
    (`{name}` is the type's name): by default `"#/$defs/{name}"`, under each
    schema's `$defs`; with another (`"#/components/schemas/{name}"`, say) they
    are only in `WorkflowSchemas.defs`, to be placed there. Raises
    `WorkflowNotRegisteredError` for an unknown name and `TypeError` if its hints
    do not resolve.
    """
    wf = _registry.get(workflow) if isinstance(workflow, str) else workflow
    if not isinstance(wf, WorkflowFunction):
        raise WorkflowNotRegisteredError(f"no workflow named {workflow!r} is registered")
    return wf.signature.schemas(ref_template)


def registered_workflows() -> dict[str, WorkflowFunction[Any, Any]]:
    """A copy of every workflow decorated in this process, by name."""
    return dict(_registry)
