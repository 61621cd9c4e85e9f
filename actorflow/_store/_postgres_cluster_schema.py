"""Schema version 2 of the PostgreSQL store: many engines on one database.

- `engines`: one row per engine process (a fresh id each time, never reused), with
  its heartbeat in the database's clock. Its lease is the heartbeat plus its
  `lease_timeout`: one row written per engine per heartbeat, however many runs it owns.
  An engine also holds a session advisory lock (`lock_key`) on its lease's
  connection: when its process dies, the server drops the lock with the connection,
  and the other engines expire its lease at once (`_cluster/_claims.py`).
- `runs.owner`, `runs.epoch`: the engine that owns an unfinished run (NULL: queued
  for any engine with room), and a counter raised at every change of owner.
- `inbox`: messages for runs owned elsewhere (events, control, hook payloads, a
  child's outcome), written in the sender's transaction, deleted in the transaction
  of the owner that journals them: each is taken exactly once.
- `watches`: runs an engine has readers for (`result()`, `events()`, `stream()`)
  that live elsewhere; a commit touching one notifies.

`commit_batch` gains the fence: it locks the rows of the runs the batch writes
(`FOR SHARE`, so a takeover's `UPDATE` waits for the commit or the commit sees
the takeover) and refuses the rows of every run whose owner or epoch is no
longer the writer's, or all of them when the writer's lease has lapsed. The rest
of the batch commits. It returns the taken ids and the refused ones, and the hook
tokens the batch would take from another run, with their holders (hook tokens are
unique across engines; the runs taking them write nothing in this batch).

Wake-ups (`NOTIFY`) are sent once per batch per channel, and only by batches that
hold what they announce: every notifying commit takes a server-wide lock.
"""

from __future__ import annotations

from .._models import FINAL, UNFINISHED

# Channels every engine listens on.
CLAIM_CHANNEL = "actorflow_claim"  # runs to claim: queued ones, or released at close
INBOX_CHANNEL = "actorflow_inbox"  # messages in the inbox
WATCH_CHANNEL = "actorflow_watch"  # a watched run changed (payload: its ids)


def _sql_list(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{value}'" for value in values)


_FINAL = _sql_list(FINAL)
_UNFINISHED = _sql_list(UNFINISHED)

V2 = f"""
CREATE TABLE engines (
    id TEXT PRIMARY KEY,
    lock_key INTEGER NOT NULL,
    execute BOOLEAN NOT NULL,
    lease_timeout DOUBLE PRECISION NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
ALTER TABLE runs ADD COLUMN owner TEXT;
ALTER TABLE runs ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0;
CREATE INDEX runs_by_owner ON runs (owner, status);
CREATE INDEX runs_unowned ON runs (created_at) WHERE owner IS NULL;
CREATE TABLE inbox (
    id BIGSERIAL PRIMARY KEY,
    run_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT,
    data BYTEA,
    at DOUBLE PRECISION NOT NULL,
    uid TEXT UNIQUE
);
CREATE INDEX inbox_by_run ON inbox (run_id, id);
CREATE TABLE watches (
    run_id TEXT NOT NULL,
    engine TEXT NOT NULL,
    PRIMARY KEY (run_id, engine)
);

DROP FUNCTION commit_batch(
    TEXT[], TEXT[], TEXT[], INTEGER[], BYTEA[], BYTEA[], BYTEA[], BYTEA[], TEXT[], FLOAT8[],
    FLOAT8[], FLOAT8[], FLOAT8[], FLOAT8[],
    TEXT[], TEXT[], INTEGER[], INTEGER[], TEXT[], INTEGER[], TEXT[], BYTEA[], FLOAT8[],
    TEXT[], TEXT[], INTEGER[], INTEGER[], INTEGER[], INTEGER[], BYTEA[], FLOAT8[],
    TEXT[], INTEGER[], BYTEA[], BYTEA[], FLOAT8[], FLOAT8[], FLOAT8[], TEXT[],
    TEXT[], TEXT[], INTEGER[], TEXT[], TEXT[],
    TEXT[], TEXT[], TEXT[], BYTEA[], TEXT[], TEXT[], TEXT[], INTEGER[], INTEGER[], BYTEA[],
    FLOAT8[], FLOAT8[], FLOAT8[], BYTEA[]);

-- As version 1's, fenced (see the module docstring), with two more kinds of rows:
-- messages put in the inbox and messages taken from it. New runs are owned by the
-- writer (f_owner), but those marked in r_queued, left for any engine with room.
CREATE FUNCTION commit_batch(
    r_id TEXT[], r_workflow TEXT[], r_status TEXT[], r_generation INTEGER[], r_args BYTEA[],
    r_result BYTEA[], r_error BYTEA[], r_metadata BYTEA[], r_parent_id TEXT[],
    r_created_at FLOAT8[], r_started_at FLOAT8[], r_completed_at FLOAT8[], r_wake_at FLOAT8[],
    r_deadline_at FLOAT8[],
    e_creation TEXT[], e_run_id TEXT[], e_idx INTEGER[], e_generation INTEGER[], e_kind TEXT[],
    e_seq INTEGER[], e_name TEXT[], e_data BYTEA[], e_at FLOAT8[],
    c_run_id TEXT[], c_namespace TEXT[], c_idx INTEGER[], c_seq INTEGER[], c_attempt INTEGER[],
    c_kind INTEGER[], c_data BYTEA[], c_at FLOAT8[],
    u_status TEXT[], u_generation INTEGER[], u_result BYTEA[], u_error BYTEA[],
    u_started_at FLOAT8[], u_completed_at FLOAT8[], u_wake_at FLOAT8[], u_id TEXT[],
    h_token TEXT[], h_run_id TEXT[], h_seq INTEGER[],
    d_run_id TEXT[],
    sd_id TEXT[],
    s_id TEXT[], s_workflow TEXT[], s_cron TEXT[], s_args BYTEA[], s_timezone TEXT[],
    s_overlap TEXT[], s_catchup TEXT[], s_paused INTEGER[], s_declared INTEGER[],
    s_metadata BYTEA[], s_created_at FLOAT8[], s_watermark FLOAT8[], s_next_time FLOAT8[],
    s_state BYTEA[],
    f_owner TEXT, f_id TEXT[], f_epoch BIGINT[], r_queued BOOLEAN[],
    i_run_id TEXT[], i_kind TEXT[], i_key TEXT[], i_data BYTEA[], i_at FLOAT8[], i_uid TEXT[],
    t_id BIGINT[], t_run_id TEXT[],
    OUT taken TEXT[], OUT refused TEXT[], OUT hook_tokens TEXT[], OUT hook_holders TEXT[]
) LANGUAGE plpgsql AS $$
DECLARE
    skipped TEXT[] := '{{}}';
    rejected TEXT[] := '{{}}';
    touched TEXT[];
    watched TEXT;
    alive BOOLEAN := false;
BEGIN
    taken := '{{}}';
    refused := '{{}}';
    IF cardinality(f_id) > 0 THEN
        PERFORM 1 FROM runs WHERE id = ANY(f_id) ORDER BY id FOR SHARE;
    END IF;
    IF f_owner IS NOT NULL AND (cardinality(f_id) > 0 OR cardinality(r_id) > 0) THEN
        alive := EXISTS (SELECT 1 FROM engines WHERE id = f_owner
            AND heartbeat_at + lease_timeout * interval '1 second' > now());
    END IF;
    IF cardinality(f_id) > 0 THEN
        IF NOT alive THEN
            refused := f_id;
        ELSE
            refused := ARRAY(
                SELECT f.id FROM unnest(f_id, f_epoch) AS f(id, epoch)
                WHERE NOT EXISTS (SELECT 1 FROM runs r
                    WHERE r.id = f.id AND r.owner = f_owner AND r.epoch = f.epoch));
        END IF;
        IF cardinality(refused) > 0 THEN
            -- A creation whose events include a refused run's (a child started by it)
            -- goes with it.
            skipped := ARRAY(SELECT DISTINCT e.creation FROM unnest(e_creation, e_run_id)
                AS e(creation, run_id) WHERE e.creation IS NOT NULL AND e.run_id = ANY(refused));
            refused := refused || skipped;
        END IF;
    END IF;
    hook_tokens := '{{}}';
    hook_holders := '{{}}';
    IF cardinality(h_token) > 0 THEN
        -- Hook tokens are unique across engines: a run taking one another run holds
        -- writes nothing here (its engine learns the holder and rehydrates it).
        SELECT coalesce(array_agg(h.token), '{{}}'), coalesce(array_agg(x.run_id), '{{}}')
        INTO hook_tokens, hook_holders
        FROM unnest(h_token, h_run_id) AS h(token, run_id) JOIN hooks x ON x.token = h.token
        WHERE x.run_id <> h.run_id;
        IF cardinality(hook_tokens) > 0 THEN
            rejected := ARRAY(SELECT DISTINCT h.run_id FROM unnest(h_token, h_run_id)
                AS h(token, run_id) WHERE h.token = ANY(hook_tokens));
            refused := refused || rejected;
        END IF;
    END IF;
    IF cardinality(r_id) > 0 THEN
        WITH inserted AS (
            INSERT INTO runs (id, workflow, status, generation, args, result, error, metadata,
                parent_id, created_at, started_at, completed_at, wake_at, deadline_at, owner,
                epoch)
            SELECT r.id, r.workflow, r.status, r.generation, r.args, r.result, r.error,
                r.metadata, r.parent_id, r.created_at, r.started_at, r.completed_at,
                r.wake_at, r.deadline_at,
                -- A writer whose lease lapsed leaves its new runs to the live engines.
                CASE WHEN r.queued OR NOT alive THEN NULL ELSE f_owner END,
                CASE WHEN r.queued OR NOT alive THEN 0 ELSE 1 END
            FROM unnest(r_id, r_workflow, r_status, r_generation, r_args, r_result,
                r_error, r_metadata, r_parent_id, r_created_at, r_started_at, r_completed_at,
                r_wake_at, r_deadline_at, r_queued) AS r(id, workflow, status, generation,
                args, result, error, metadata, parent_id, created_at, started_at,
                completed_at, wake_at, deadline_at, queued)
            WHERE cardinality(skipped) = 0 OR NOT r.id = ANY(skipped)
            ON CONFLICT (id) DO NOTHING
            RETURNING id
        )
        SELECT ARRAY(SELECT unnest(r_id) EXCEPT SELECT id FROM inserted
            EXCEPT SELECT unnest(skipped)) INTO taken;
        IF NOT alive OR EXISTS (SELECT 1 FROM unnest(r_queued) AS q WHERE q) THEN
            PERFORM pg_notify('{CLAIM_CHANNEL}', '');
        END IF;
    END IF;
    IF cardinality(e_run_id) > 0 THEN
        INSERT INTO events
        SELECT e.run_id, e.idx, e.generation, e.kind, e.seq, e.name, e.data, e.at
        FROM unnest(e_creation, e_run_id, e_idx, e_generation, e_kind, e_seq, e_name, e_data,
            e_at) AS e(creation, run_id, idx, generation, kind, seq, name, data, at)
        WHERE (cardinality(taken) = 0 OR e.creation IS NULL OR NOT e.creation = ANY(taken))
            AND (cardinality(refused) = 0 OR NOT (e.run_id = ANY(refused)
                OR coalesce(e.creation = ANY(refused), false)));
    END IF;
    IF cardinality(c_run_id) > 0 THEN
        INSERT INTO chunks
        SELECT * FROM unnest(c_run_id, c_namespace, c_idx, c_seq, c_attempt, c_kind, c_data,
            c_at) AS c(run_id, namespace, idx, seq, attempt, kind, data, at)
        WHERE cardinality(refused) = 0 OR NOT c.run_id = ANY(refused);
    END IF;
    IF cardinality(u_id) > 0 THEN
        UPDATE runs SET status = u.status, generation = u.generation, result = u.result,
            error = u.error, started_at = u.started_at, completed_at = u.completed_at,
            wake_at = u.wake_at
        FROM unnest(u_status, u_generation, u_result, u_error, u_started_at, u_completed_at,
            u_wake_at, u_id) AS u(status, generation, result, error, started_at, completed_at,
            wake_at, id)
        WHERE runs.id = u.id AND (cardinality(refused) = 0 OR NOT u.id = ANY(refused));
        -- A finished child whose parent lives elsewhere: its outcome goes to the parent's
        -- inbox, in this transaction.
        INSERT INTO inbox (run_id, kind, key, data, at)
        SELECT c.parent_id, 'child_done', c.id, NULL, extract(epoch FROM now())
        FROM runs c JOIN runs p ON p.id = c.parent_id
        WHERE c.id = ANY(u_id) AND c.status IN ({_FINAL})
            AND p.status IN ({_UNFINISHED}) AND p.owner IS DISTINCT FROM f_owner
            AND (cardinality(refused) = 0 OR NOT c.id = ANY(refused));
        IF FOUND THEN
            PERFORM pg_notify('{INBOX_CHANNEL}', '');
        END IF;
    END IF;
    IF cardinality(h_token) > 0 THEN
        INSERT INTO hooks SELECT * FROM unnest(h_token, h_run_id, h_seq) AS h(token, run_id, seq)
        WHERE cardinality(refused) = 0 OR NOT h.run_id = ANY(refused)
        ON CONFLICT (token) DO UPDATE SET run_id = EXCLUDED.run_id, seq = EXCLUDED.seq;
    END IF;
    IF cardinality(d_run_id) > 0 THEN
        DELETE FROM hooks WHERE run_id = ANY(d_run_id)
            AND (cardinality(refused) = 0 OR NOT run_id = ANY(refused));
    END IF;
    IF cardinality(sd_id) > 0 THEN
        DELETE FROM schedules WHERE id = ANY(sd_id);
    END IF;
    IF cardinality(s_id) > 0 THEN
        INSERT INTO schedules
        SELECT * FROM unnest(s_id, s_workflow, s_cron, s_args, s_timezone, s_overlap,
            s_catchup, s_paused, s_declared, s_metadata, s_created_at, s_watermark,
            s_next_time, s_state)
        ON CONFLICT (id) DO UPDATE SET workflow = EXCLUDED.workflow, cron = EXCLUDED.cron,
            args = EXCLUDED.args, timezone = EXCLUDED.timezone, overlap = EXCLUDED.overlap,
            catchup = EXCLUDED.catchup, paused = EXCLUDED.paused, declared = EXCLUDED.declared,
            metadata = EXCLUDED.metadata, created_at = EXCLUDED.created_at,
            watermark = EXCLUDED.watermark, next_time = EXCLUDED.next_time,
            state = EXCLUDED.state;
    END IF;
    IF cardinality(i_run_id) > 0 THEN
        -- Keyed by the sender's uid: a batch written again after a lost connection
        -- does not send its messages twice.
        INSERT INTO inbox (run_id, kind, key, data, at, uid)
        SELECT * FROM unnest(i_run_id, i_kind, i_key, i_data, i_at, i_uid)
        ON CONFLICT (uid) DO NOTHING;
        PERFORM pg_notify('{INBOX_CHANNEL}', '');
    END IF;
    IF cardinality(t_id) > 0 THEN
        DELETE FROM inbox WHERE id IN (SELECT t.id FROM unnest(t_id, t_run_id) AS t(id, run_id)
            WHERE cardinality(refused) = 0 OR NOT t.run_id = ANY(refused));
    END IF;
    IF EXISTS (SELECT 1 FROM watches LIMIT 1) THEN
        touched := ARRAY(SELECT unnest(e_run_id) UNION SELECT unnest(c_run_id)
            UNION SELECT unnest(u_id));
        SELECT string_agg(DISTINCT w.run_id, ' ') INTO watched FROM watches w
        WHERE w.run_id = ANY(touched);
        IF watched IS NOT NULL THEN
            -- A payload holds at most 8000 bytes: '*' asks every watcher to look.
            PERFORM pg_notify('{WATCH_CHANNEL}',
                CASE WHEN length(watched) > 7900 THEN '*' ELSE watched END);
        END IF;
    END IF;
    IF cardinality(rejected) > 0 THEN
        refused := ARRAY(SELECT unnest(refused) EXCEPT SELECT unnest(rejected));
    END IF;
END
$$;
"""
