"""Many engines on one PostgreSQL database: leases, claims, fencing and the inbox.

`ClusterNode` (`_node.py`) is one engine's membership; the engine's directory of
actors implements `ClusterHost` for it. See the README, "Scaling out". Only
`_node`, `_lease` and `_claims` need asyncpg (the `postgres` extra): import them
where a PostgreSQL store is opened.
"""
