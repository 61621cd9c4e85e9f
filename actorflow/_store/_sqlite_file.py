"""The SQLite database file: checked before anything is written to it or next to it,
and locked so that one engine at a time owns it.

The lock is an advisory `flock` on the database file itself, so it follows the file,
not the name it was opened by: a symlink, a hard link or a relative path to the same
file meets the same lock (`StoreLockedError`), and the OS drops it if the process
dies. SQLite's own locks are `fcntl` byte-range locks, which `flock` does not touch on
local file systems. Closing any descriptor of a file drops every `fcntl` lock the
process holds on it, so this process never opens the lock descriptor of a file one of
its engines holds (`_held` answers first), and closes one only when no engine of the
process has a connection to that file.
"""

from __future__ import annotations

import os
import sqlite3

from .._errors import StoreFileError, StoreLockedError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

# A database with these tables is actorflow's (of this schema version or another).
_OWN_TABLES = {"meta", "runs", "events"}

# The files this process's engines hold: (st_dev, st_ino) -> the path they were opened by.
_held: dict[tuple[int, int], str] = {}


def check_path(path: str) -> None:
    """Refuse SQLite names that are not a file actorflow can own (nothing is written)."""
    if path == ":memory:" or path.startswith("file:"):
        raise StoreFileError(
            f"sqlite:///{path} is not supported: the engine opens several connections, "
            "and each would see a database of its own; use memory:// for a store that "
            "lives only in this process, or a file path"
        )


def prepare_file(path: str) -> None:
    """Make the file's directory; refuse a file that cannot be written, is not a SQLite
    database, or is another application's, before anything (WAL mode, actorflow's
    tables) is written into it or next to it."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise StoreFileError(f"cannot create the directory of {path}: {exc}") from exc
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise StoreFileError(f"{path} is read-only: actorflow writes to its database")
    if not os.access(directory, os.W_OK):
        raise StoreFileError(
            f"the directory of {path} is read-only: SQLite needs to create {path}-wal and "
            f"{path}-shm next to the database"
        )
    try:
        conn = sqlite3.connect(path)
        try:
            found = conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            tables = {name for (name,) in found}
            (encoding,) = conn.execute("PRAGMA encoding").fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise StoreFileError(f"{path} cannot be an actorflow database: {exc}") from exc
    if encoding != "UTF-8":
        # The writer binds JSON as text and casts it to BLOB: in a UTF-16 database that
        # cast would store UTF-16 bytes.
        raise StoreFileError(f"{path} is a {encoding} database; actorflow needs UTF-8")
    if tables and not tables >= _OWN_TABLES:
        raise StoreFileError(
            f"{path} holds another application's tables ({', '.join(sorted(tables))}); "
            "actorflow needs a SQLite file of its own"
        )


def lock(path: str) -> int | None:
    """Take the lock on the file at `path` (which exists); its descriptor, for `unlock`.

    Raises `StoreLockedError` if an engine of this or another process holds it.
    """
    if fcntl is None:  # pragma: no cover - Windows: no advisory lock
        return None
    stat = os.stat(path)
    identity = (stat.st_dev, stat.st_ino)
    if identity in _held:
        raise _locked(path, _held[identity])
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)  # no engine of this process has a connection to the file
        raise _locked(path, None) from None
    _held[identity] = path
    return fd


def unlock(fd: int | None) -> None:
    """Release a lock taken by `lock`, once the store's connections are closed."""
    if fd is None:
        return
    stat = os.fstat(fd)
    _held.pop((stat.st_dev, stat.st_ino), None)
    os.close(fd)


def _locked(path: str, holder: str | None) -> StoreLockedError:
    by = "" if holder is None or holder == path else f" (as {holder})"
    return StoreLockedError(
        f"{path} is open in another actorflow engine{by}; one engine owns a SQLite "
        "database at a time"
    )
