"""The inbox: messages for runs that live on another engine, as rows of the `inbox` table.

A sender appends a row to its own open batch (`WriteBatch.inbox`), so it is
written in the sender's transaction; the owner turns each row into the message
it stands for, marked with the row's id (`inbox=`), and the actor that takes the
message deletes the row in the transaction that journals it
(`WriteBatch.inbox_taken`). A row is taken once: by the owner whose commit
deletes it; a commit refused by the fence deletes nothing, and the next owner
takes it. Rows are read in id order, so one sender's messages arrive in order.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, NamedTuple

from .._messages import ChildDone, Control, ControlAction, Deliver

EVENT = "event"
CONTROL = "control"
CHILD_DONE = "child_done"

# The messages for runs this engine owns, oldest first, with the run's status (a row
# for a finished run is deleted unread).
READ_OWNED = """
SELECT i.id, i.run_id, i.kind, i.key, i.data, r.status FROM inbox i JOIN runs r ON r.id = i.run_id
WHERE r.owner = $1 ORDER BY i.id LIMIT $2
"""
DELETE = "DELETE FROM inbox WHERE id = ANY($1::bigint[])"


class InboxRow(NamedTuple):
    """A message as the sender writes it; `uid` makes writing it again harmless."""

    run_id: str
    kind: str
    key: str | None
    data: bytes | None
    at: float
    uid: str


def event_row(run_id: str, key: str, data: bytes) -> InboxRow:
    """An event (or a hook payload: `key` is `hook:<token>`) for run `run_id`."""
    return InboxRow(run_id, EVENT, key, data, time.time(), uuid.uuid4().hex)


def control_row(run_id: str, action: ControlAction, from_step: str | None) -> InboxRow:
    data = None if from_step is None else from_step.encode()
    return InboxRow(run_id, CONTROL, action, data, time.time(), uuid.uuid4().hex)


def as_message(
    kind: str,
    key: str | None,
    data: bytes | None,
    taken: tuple[int, str],
    child: tuple[str, bytes | None, bytes | None] | None,
) -> Any:
    """The mailbox message an inbox row stands for (`child`: the status, result and error
    of a finished child, read by the owner); None for a child not found final."""
    if kind == EVENT:
        assert key is not None and data is not None
        return Deliver(key, data, None, inbox=taken)
    if kind == CONTROL:
        action: ControlAction = key  # type: ignore[assignment]
        return Control(action, None, None if data is None else data.decode(), inbox=taken)
    if kind == CHILD_DONE and key is not None and child is not None:
        status, result, error = child
        return ChildDone(key, status, result, error, inbox=taken)
    return None
