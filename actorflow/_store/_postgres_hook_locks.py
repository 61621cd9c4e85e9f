"""Schema version 3 of the PostgreSQL store: hook tokens are locked before they are checked.

Version 2's `commit_batch` checks that no other run holds a token the batch takes,
then inserts it. Two engines taking one token at once both passed the check (neither
saw the other's uncommitted row), and the later insert moved the token to its run:
both `create_hook` calls succeeded. Now `commit_batch` first takes a transaction-level
advisory lock per token (in token order, so two batches cannot deadlock on them), and
only then runs version 2's function, renamed `commit_batch_unlocked`, whose
statements each see what committed before they start (PL/pgSQL in READ COMMITTED):
the second taker waits for the first one's commit and then finds its row, and its
run is refused like any run taking a held token (`HookConflictError`). The lock is
released with the commit, after its rows are visible.

The lock keys are a hash of the schema and the token in the one-`bigint` key space,
apart from the engines' lease locks (two `int` keys): two tokens sharing a hash only
make one commit wait for the other. Batches that take tokens go through `commit_batch`
(`Parts.needs_function`), never through the one-statement path, whose single snapshot
is taken before any lock it could take.
"""

from __future__ import annotations

import re

from ._postgres_cluster_schema import V2

_PARAMETERS = re.search(r"CREATE FUNCTION commit_batch\((.*?)\) LANGUAGE", V2, re.S)
assert _PARAMETERS is not None
PARAMETERS = _PARAMETERS.group(1).strip()
# The names of the arguments, in order (the OUT parameters are the answer).
ARGUMENTS = [
    p.split()[0] for p in re.split(r",\s*", PARAMETERS.replace("\n", " ")) if p[:4] != "OUT "
]

V3 = f"""
ALTER FUNCTION commit_batch RENAME TO commit_batch_unlocked;

CREATE FUNCTION commit_batch({PARAMETERS}) LANGUAGE plpgsql AS $$
BEGIN
    IF cardinality(h_token) > 0 THEN
        PERFORM pg_advisory_xact_lock(hashtextextended(current_schema() || ' ' || t, 0))
        FROM (SELECT DISTINCT t FROM unnest(h_token) AS t ORDER BY t) AS tokens;
    END IF;
    SELECT * INTO taken, refused, hook_tokens, hook_holders
    FROM commit_batch_unlocked({", ".join(ARGUMENTS)});
END
$$;
"""
