"""Messages the engine, timers, steps and other runs put in a run actor's mailbox.

(`StepFinished` lives with the step runner that sends it.)
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

ControlAction = Literal["pause", "resume", "terminate", "restart"]


# A message taken from the inbox of a shared database carries its row (id, run id): the
# actor that handles it deletes the row in the same commit (see `_cluster/_inbox.py`).
InboxRef = tuple[int, str]


class Wake:
    """A timer of the run may be due."""

    __slots__ = ("inbox",)

    def __init__(self) -> None:
        # Never from the inbox; there so that reading it raises (and clears) no
        # AttributeError for every wake-up (about 2,000 instructions).
        self.inbox: InboxRef | None = None


class SlotGranted:
    """The concurrency limiter granted the run a slot it queued for."""

    __slots__ = ("inbox",)

    def __init__(self) -> None:
        self.inbox: InboxRef | None = None  # as `Wake`'s


class Deliver:
    """An event (or hook payload, `key` = `hook:<token>`) for the run; `data` is its JSON."""

    __slots__ = ("data", "inbox", "key", "reply")

    def __init__(
        self,
        key: str,
        data: bytes,
        reply: asyncio.Future[Any] | None,
        inbox: InboxRef | None = None,
    ) -> None:
        self.key = key
        self.data = data
        self.reply = reply
        self.inbox = inbox


class ChildDone:
    """A child run reached a final status."""

    __slots__ = ("child_id", "error", "inbox", "result", "status")

    def __init__(
        self,
        child_id: str,
        status: str,
        result: bytes | None,
        error: bytes | None,
        inbox: InboxRef | None = None,
    ) -> None:
        self.child_id = child_id
        self.status = status
        self.result = result
        self.error = error
        self.inbox = inbox


class Control:
    """pause / resume / terminate / restart, answered through `reply` once committed."""

    __slots__ = ("action", "from_step", "inbox", "reply")

    def __init__(
        self,
        action: ControlAction,
        reply: asyncio.Future[Any] | None,
        from_step: str | None = None,
        inbox: InboxRef | None = None,
    ) -> None:
        self.action = action
        self.reply = reply
        self.from_step = from_step
        self.inbox = inbox


WAKE = Wake()
SLOT_GRANTED = SlotGranted()


def reply_to(
    reply: asyncio.Future[Any] | None, value: Any = None, error: BaseException | None = None
) -> None:
    """Answer a caller waiting on `reply` (if any, and if it is still waiting)."""
    if reply is None or reply.done():
        return
    if error is not None:
        reply.set_exception(error)
    else:
        reply.set_result(value)
