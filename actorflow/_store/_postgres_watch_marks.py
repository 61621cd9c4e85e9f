"""Schema version 5 of the PostgreSQL store: a run's row says whether a reader follows it.

An engine whose readers follow a run owned elsewhere writes a `watches` row, then
reads the run; the owner's commits that touch a watched run notify it. A commit's
statement sees `watches` as they were when it began, so a watch committed while
that commit was under way was missed by it, and the reader's read (made before the
commit's end) missed the commit too: the reader waited for ever (a client's
`result()` of a run that had finished).

Now a watch also marks its run's row (`runs.watched`), under the row's lock. A commit
holds the rows of the runs it writes `FOR SHARE`, from its fence to its end; that lock
and the mark's update exclude each other, and a locking read returns a row's newest
version. So either the mark committed first and the commit reads it (and notifies), or
the mark waited for the commit to end and the reader, which reads after the mark, sees
what the commit wrote.

`unwatch` clears the mark when the last watch of a run goes, with the row locked
first, so that its count of watches sees every watch committed before: a watch
waiting on that lock marks the row again after it. Watches left by engines that died
are dropped the same way once they are found gone (`_cluster/_watches.forget_gone`), so
their marks go too (a stale mark would cost every commit to its run a notification
nobody hears).
"""

from __future__ import annotations

from ._postgres_cluster_schema import WATCH_CHANNEL

V5 = """
ALTER TABLE runs ADD COLUMN watched BOOLEAN NOT NULL DEFAULT false;

CREATE FUNCTION unwatch(r TEXT, e TEXT) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM runs WHERE id = r FOR NO KEY UPDATE;
    DELETE FROM watches WHERE run_id = r AND engine = e;
    UPDATE runs SET watched = false
    WHERE id = r AND watched AND NOT EXISTS (SELECT 1 FROM watches WHERE run_id = r);
END
$$;
"""

# $1: the run, $2: the engine. One run per statement: a statement holding one row lock
# while it waits for another could deadlock with a commit.
WATCH = """
WITH marked AS (UPDATE runs SET watched = true WHERE id = $1)
INSERT INTO watches (run_id, engine) VALUES ($1, $2) ON CONFLICT DO NOTHING
"""
UNWATCH = "SELECT unwatch($1, $2)"


def marked_runs_notice(marked_ids: str) -> str:
    """A query of one (channel, payload) row naming the runs `marked_ids` (a query of the
    ids of marked runs, each locked by the transaction) for their watchers; no row when
    there are none. A payload holds at most 8000 bytes: '*' asks every watcher to look."""
    return (
        f"SELECT '{WATCH_CHANNEL}', CASE WHEN length(w) > 7900 THEN '*' ELSE w END"
        f" FROM (SELECT string_agg(id, ' ') AS w FROM ({marked_ids}) AS m(id)) s"
        " WHERE w IS NOT NULL"
    )
