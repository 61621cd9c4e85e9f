"""Run control: what pause, resume, terminate and restart do to a run's actor.

Each arrives as a `Control` message; the caller's `reply` is answered once
the change is committed (or at once, with an error, if it does not apply).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .. import _log as L
from .. import _observe
from .._errors import InvalidStateError, WorkflowNotRegisteredError
from .._messages import Control, reply_to
from .._models import RunStatus
from .._streams import StreamLedger

if TYPE_CHECKING:
    from ._turns import RunActor


async def handle_control(actor: RunActor, message: Control) -> None:
    action, reply = message.action, message.reply
    if action == "restart":
        await _restart(actor, message)
        return
    if actor.workflow is None and not actor.finished and action != "terminate":
        reply_to(reply, error=_not_registered(actor))
        return
    if actor.finished:
        if action == "resume":
            reply_to(reply)
        else:
            reply_to(
                reply,
                error=InvalidStateError(
                    f"cannot {action} run {actor.run_id!r}: it is {actor.status.value}"
                ),
            )
        return
    if action == "terminate":
        actor.finish(RunStatus.TERMINATED, L.RUN_TERMINATED, None)
        actor.reply_later(reply)
    elif action == "pause":
        if actor.paused:
            reply_to(reply)
            return
        actor.paused = True
        actor.append(L.RUN_PAUSED, None, None, None)
        actor.reply_later(reply)
    elif action == "resume":
        if not actor.paused:
            reply_to(reply)
            return
        actor.paused = False
        actor.append(L.RUN_RESUMED, None, None, None)
        actor.launch_held()
        actor.fire_due(time.time())
        actor.after_workflow_ran()  # the outcome it held while paused, if it returned
        actor.reply_later(reply)


async def _restart(actor: RunActor, message: Control) -> None:
    """Start a new generation that keeps the log before `from_step` (or nothing)."""
    reply, from_step = message.reply, message.from_step
    workflow = actor.host.workflow(actor.row.workflow)
    if workflow is None:
        reply_to(reply, error=_not_registered(actor))
        return
    await actor.flush()
    store = actor.store
    events = await store.load_events(actor.run_id)
    current = [e for e in events if e.generation == actor.row.generation]
    record = L.restart_record(current, actor.row.generation, from_step)
    if record is None:
        reply_to(
            reply,
            error=InvalidStateError(
                f"run {actor.run_id!r} has no step named {from_step!r} to restart from"
            ),
        )
        return
    cut, restarted, kept = record
    if not actor.finished:
        actor.teardown(keep_timer=False)
        actor.terminate_children(lambda seq: seq >= cut)
    actor.streams = StreamLedger(await store.stream_state(actor.run_id))
    row = actor.row
    row.generation += 1
    row.status, row.result, row.error = RunStatus.RUNNING.value, None, None
    row.started_at, row.completed_at, row.wake_at = time.time(), None, None
    actor.status = RunStatus.RUNNING
    actor.finished = actor.notified = actor.paused = False
    actor.workflow = workflow
    actor.append(L.RUN_RESTARTED, None, from_step, restarted)
    observer = _observe.current
    if observer is not None:
        observer.run_loaded(row, events, True)
    copies = [actor.append(e.kind, e.seq, e.name, e.data, at=e.at) for e in kept]
    # A restart taken from the inbox of a shared database: its row goes in the commit
    # that records the restart, so a crash in between neither loses nor repeats it.
    actor.took(message)
    store.batch().update_run(row)
    actor.reply_later(reply)
    await actor.flush()
    actor.reset_operations()
    await actor.begin(copies)


def _not_registered(actor: RunActor) -> WorkflowNotRegisteredError:
    return WorkflowNotRegisteredError(
        f"workflow {actor.row.workflow!r} is not registered in this engine"
    )
