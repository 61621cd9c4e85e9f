"""What a batch in doubt learned from the fence, asked after its connection was lost.

When the writer's connection drops mid-commit and the batch turns out to have
committed (`PostgresTransactions._committed`), `commit_batch`'s answer is lost with
the connection: which runs the fence refused, and which hook tokens another run
held. They are asked here, on the new connection, so the engine drops those runs'
actors now rather than at their next commit (which the fence would refuse too).
A run counts as refused when this engine no longer owns it at the epoch it wrote
it at: refused then, or taken since; either way it is not this engine's any more.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncpg

_NOT_OURS = """
SELECT f.id FROM unnest($2::text[], $3::int8[]) AS f(id, epoch)
WHERE NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = f.id AND r.owner = $1 AND r.epoch = f.epoch)
"""
_HELD_BY_OTHERS = """
SELECT h.token, x.run_id FROM unnest($1::text[], $2::text[]) AS h(token, run_id)
JOIN hooks x ON x.token = h.token WHERE x.run_id <> h.run_id
"""


async def learn_refusals(
    conn: asyncpg.Connection,
    fence: tuple[str | None, list[str], list[int]],
    hooks: list[tuple[str, str]],
) -> tuple[set[str], dict[str, str]]:
    """What `commit_batch` would have answered for a committed batch written with `fence`
    (its writer, and the runs it wrote at their epochs) that took `hooks` ((token, run)
    pairs): the runs it refused, and the tokens other runs hold, with their holders."""
    owner, run_ids, epochs = fence
    refused: set[str] = set()
    if owner is not None and run_ids:
        refused.update(row[0] for row in await conn.fetch(_NOT_OURS, owner, run_ids, epochs))
    held: dict[str, str] = {}
    if hooks:
        tokens, holders = [list(column) for column in zip(*hooks, strict=True)]
        held.update(tuple(row) for row in await conn.fetch(_HELD_BY_OTHERS, tokens, holders))
    return refused, held
