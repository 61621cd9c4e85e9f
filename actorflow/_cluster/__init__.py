"""Many engines on one PostgreSQL database: leases, claims, fencing and the inbox.

`ClusterNode` (`_node.py`) is one engine's membership; the engine's directory of
actors implements `ClusterHost` for it. See the README, "Scaling out". Only
`_node`, `_lease` and `_claims` need asyncpg (the `postgres` extra): import them
where a PostgreSQL store is opened.
"""

from __future__ import annotations

import math


def check_cluster_options(
    shared: bool, execute: bool, lease_timeout: float, max_runs: int | None
) -> None:
    """Raise `ValueError` for options an engine cannot take (`shared`: its store is one
    many engines share)."""
    if not shared and (not execute or max_runs is not None):
        raise ValueError(
            "execute=False and max_runs need a store shared by many engines (postgresql://...)"
        )
    if not (lease_timeout > 0 and math.isfinite(lease_timeout)):
        raise ValueError(f"lease_timeout must be > 0 seconds, got {lease_timeout!r}")
    if max_runs is not None and (not isinstance(max_runs, int) or max_runs < 1):
        raise ValueError(f"max_runs must be a positive int or None, got {max_runs!r}")
