"""StepCall: the call of a step, compiled with the hot path.

`StepFunction` (the public `@af.step` wrapper, interpreted) subclasses it: every
step call from a workflow goes through `__call__`, one per step of every run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mypy_extensions import mypyc_attr

from ._sandbox import running_workflow_loop

if TYPE_CHECKING:
    from ._retry import Retry
    from ._types import TypeCodec


@mypyc_attr(allow_interpreted_subclasses=True)
class StepCall:
    """In a workflow, a call journals the step through the run's `WorkflowContext` and
    returns the awaitable of its result; anywhere else it calls the function."""

    # Declared here, not only in `StepFunction`, so that the compiled actor reads them
    # as fields of a native class rather than by name from an instance dictionary.
    fn: Callable[..., Any]
    name: str
    retry: Retry
    timeout: float | None
    is_async: bool
    # The result decoder, or None (JSON-native), or `UNRESOLVED` until `resolve_decoder`.
    decode_result: Any
    _arg_counts: range  # how many positional arguments alone a call may pass

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        loop = running_workflow_loop()
        if loop is not None:
            workflow: Any = loop.workflow  # `current_workflow()`, inlined
            if workflow is not None:
                if kwargs or len(args) not in self._arg_counts:
                    self._check_call(args, kwargs)
                return workflow.call_step(self, args, kwargs)
        return self.fn(*args, **kwargs)

    def _check_call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Raise `TypeError` if the step cannot take these arguments."""
        raise NotImplementedError

    def resolve_decoder(self) -> Callable[[Any], Any] | None:
        """The decoder of the step's recorded results (see `StepFunction`)."""
        raise NotImplementedError

    def result_codec(self) -> TypeCodec:
        """The codec of the step's return annotation (see `StepFunction`)."""
        raise NotImplementedError
