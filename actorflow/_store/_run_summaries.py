"""What run listings show beside a run's row: how many steps of its current execution
completed (`steps_done`) and the namespaces of its streams. The SQL of each, for SQLite
(`?` placeholders, `{marks}` for the ids) and PostgreSQL, shared by the stores and the
read-only readers, so that the command line reading a store counts as the server does.
"""

from __future__ import annotations

# A step is completed once per execution (a restart copies the steps it keeps into the
# new one): its `step_completed` entries (`_log.STEP_COMPLETED`, which imports the
# stores) of the run's generation count them, as `_log.fold_steps` does.
_STEPS_DONE = (
    "SELECT r.id, count(*) FROM runs r JOIN events e ON e.run_id = r.id"
    " AND e.generation = r.generation AND e.kind = 'step_completed'"
    " WHERE r.id {ids} GROUP BY r.id"
)
SQLITE_STEPS_DONE = _STEPS_DONE.replace("{ids}", "IN ({marks})")
POSTGRES_STEPS_DONE = _STEPS_DONE.replace("{ids}", "= ANY($1::text[])")

SQLITE_STREAM_NAMES = "SELECT DISTINCT namespace FROM chunks WHERE run_id=? ORDER BY namespace"
POSTGRES_STREAM_NAMES = (
    'SELECT DISTINCT namespace COLLATE "C" FROM chunks WHERE run_id = $1 ORDER BY 1'
)
