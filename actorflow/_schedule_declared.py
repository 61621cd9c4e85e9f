"""Declared schedules (`@af.workflow(schedules=...)`) brought in line with the code.

A pure function of the stored rows and what the workflows declare, run when an
engine opens: the schedules the code declares exist with the declared settings,
and those it no longer declares are gone.
"""

from __future__ import annotations

from collections.abc import Iterable

from ._store import ScheduleRow


def reconcile_declared(
    rows: dict[str, ScheduleRow], declared: Iterable[tuple[str, str]], now: float
) -> tuple[list[str], set[str]]:
    """Bring the declared schedules in `rows` in line with `declared` ((workflow, cron)
    pairs): add the new ones, delete the ones no workflow declares any more, and give a
    runtime schedule that has a declared one's id the declared settings (it keeps its
    ticks and `paused`). Returns the ids it deleted, and those it added or changed."""
    wanted = {f"{workflow}:{cron}": (workflow, cron) for workflow, cron in declared}
    gone = [r.id for r in rows.values() if r.declared and r.id not in wanted]
    for schedule_id in gone:
        del rows[schedule_id]
    changed: set[str] = set()
    for schedule_id, (workflow, cron) in wanted.items():
        spec = ScheduleRow(
            schedule_id, workflow, cron, b"[]", "UTC", "skip", "latest",
            False, True, None, now, now,
        )  # fmt: skip
        row = rows.setdefault(schedule_id, spec)
        if row is spec or not row.declared:
            changed.add(schedule_id)
        if not row.declared:
            if (row.cron, row.timezone) != (cron, "UTC"):
                row.watermark = now  # no catch-up under the settings it had
            row.workflow, row.cron, row.args, row.timezone = workflow, cron, b"[]", "UTC"
            row.overlap, row.catchup, row.metadata = "skip", "latest", None
            row.declared = True
    return gone, changed
