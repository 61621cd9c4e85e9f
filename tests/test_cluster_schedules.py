"""Many engines on one PostgreSQL database: schedules made, changed and deleted at run time
on one engine are fired, paused and dropped by every engine, each tick running once."""

from __future__ import annotations

import pytest

import actorflow as af
from tests.conftest import eventually
from tests.databases import PostgresDatabase

pytestmark = pytest.mark.postgres


@af.workflow(name="tests.cluster.scheduled")
async def scheduled(tag: str) -> str:
    return tag


def _ticks(db: PostgresDatabase) -> list[str]:
    rows = db.query("SELECT id FROM runs WHERE workflow = ? ORDER BY id", (scheduled.name,))
    return [row[0] for row in rows]


async def test_every_engine_learns_schedules_made_at_run_time(pg_url: str) -> None:
    db = PostgresDatabase(pg_url)
    async with af.Engine(pg_url, workflows=[scheduled], lease_timeout=60) as other:
        # Opened before the schedule exists; its sweep (every 120 s) is not what tells it.
        async with (
            af.Engine(pg_url, workflows=[scheduled], lease_timeout=60) as maker,
            af.Engine(pg_url, workflows=[scheduled], execute=False) as client,
        ):
            await maker.create_schedule("every-second", scheduled, "* * * * * *", args=("a",))
            await eventually(lambda: "every-second" in other.schedules.rows, timeout=10)
            await eventually(lambda: "every-second" in client.schedules.rows, timeout=10)
        # The maker is gone: the engine opened before the schedule fires its ticks.
        fired_before = len(_ticks(db))
        await eventually(lambda: len(_ticks(db)) >= fired_before + 2, timeout=15)
        async with af.Engine(pg_url, workflows=[scheduled], execute=False) as client:
            await client.get_schedule("every-second").pause()
            await eventually(lambda: other.schedules.rows["every-second"].paused, timeout=10)
            assert other.schedules.rows["every-second"].next_time is None
            await client.get_schedule("every-second").resume()
            await eventually(lambda: not other.schedules.rows["every-second"].paused, timeout=10)
            await client.create_schedule("every-second", scheduled, "* * * * * *", args=("b",))
            await eventually(
                lambda: b'"b"' in other.schedules.rows["every-second"].args, timeout=10
            )
            await eventually(
                lambda: (
                    db.query(
                        "SELECT count(*) FROM runs WHERE workflow = ? AND args = ?",
                        (scheduled.name, b'["b"]'),
                    )[0][0]
                    >= 1
                ),
                timeout=15,
            )
            await client.get_schedule("every-second").delete()
            await eventually(lambda: "every-second" not in other.schedules.rows, timeout=10)
    ticks = _ticks(db)
    assert len(ticks) == len(set(ticks)) >= 3  # one run per tick (its id names the tick)
    kinds = db.query(
        "SELECT kind, count(*) FROM events WHERE run_id = ANY(?) GROUP BY kind", (ticks,)
    )
    assert dict(kinds)["run_created"] == len(ticks)
