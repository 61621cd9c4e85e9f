#!/usr/bin/env bash
# Makes sure this machine can run a PostgreSQL server for the tests: installs Debian's
# `postgresql` when `initdb`/`postgres` are missing, and the `postgres` user the server
# runs as when we are root. The tests start (and always stop) a throwaway cluster
# themselves (tests/pg_cluster.py), so `pytest` alone works the same as CI.
set -euo pipefail

have_server() {
    command -v initdb >/dev/null 2>&1 && command -v postgres >/dev/null 2>&1 && return 0
    if command -v pg_config >/dev/null 2>&1; then
        bindir=$(pg_config --bindir)
        [ -x "$bindir/initdb" ] && [ -x "$bindir/postgres" ] && return 0
    fi
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}

if ! have_server; then
    echo "== installing the PostgreSQL server =="
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
fi
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
fi
