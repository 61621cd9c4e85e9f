"""The run actor: the one owner of a live run, the only code that changes its state and log.

`RunActor` is one class in layers, each a module that adds behaviour only on
top of the one below it; the state is declared once, in the bottom layer:

    _state.py       RunState: every attribute, and the journal (append, input, effect)
    _status.py      StatusKeeper: status, concurrency slot and timer, after every turn
    _steps.py       StepScheduler: step attempts, from journaled start to outcome
    _operations.py  Operations: the `WorkflowHost` workflow code calls, and `apply()`
    _driver.py      WorkflowDriver: open, replay, finish, teardown
    _turns.py       RunActor: the mailbox and the turn loop (commit, then effects)
    _control.py     pause / resume / terminate / restart, over a `RunActor`

A lower layer never calls a higher one, except for three calls declared once
in `RunState`. What the actor asks of its engine is `RunHost` (`_host.py`);
no module here imports the engine. `_ops.py` holds the records of pending
calls, `_children.py` the run's child runs, `_mailbox.py` the inbox.
"""

from ._host import RunHost
from ._ops import StepOp
from ._turns import RunActor

__all__ = ["RunActor", "RunHost", "StepOp"]
