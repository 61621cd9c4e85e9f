"""RunLogFilter: log records say which run, workflow, step and attempt logged them."""

from __future__ import annotations

import logging

from ._context import _step, current_workflow

FIELDS = ("run_id", "workflow", "step", "attempt")


class RunLogFilter(logging.Filter):
    """Sets `run_id`, `workflow`, `step` and `attempt` on every record it sees.

    Add it to a handler (`handler.addFilter(af.RunLogFilter())`): records logged
    by a step (also from a sync step's thread) get all four, records logged by
    workflow code get `run_id` and `workflow`, the rest None; values passed as
    `extra=` are kept. `%(run_id)s` in a format, or a JSON or OpenTelemetry log
    handler, then shows them. It never drops a record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        found = record.__dict__
        running = _step.get()
        if running is not None:
            actor, op, attempt = running[0], running[1], running[2]
            values: tuple[object, ...] = (actor.run_id, actor.row.workflow, op.name, attempt)
        else:
            ctx = current_workflow()
            if ctx is None:
                values = (None, None, None, None)
            else:
                info = ctx.info
                values = (info.run_id, info.workflow, None, None)
        for field, value in zip(FIELDS, values, strict=True):
            if found.get(field) is None:
                found[field] = value
        return True
