"""The SQLite library under Python's sqlite3: its memory statistics, turned off.

SQLite counts every allocation it makes, behind a process-wide mutex, unless
the process configures it not to before SQLite initializes
(`SQLITE_CONFIG_MEMSTATUS`; SQLite's recommended build options turn the
counting off). Python's sqlite3 cannot ask for that, and initializes SQLite
when it is imported, so the store package does it through ctypes before
anything of actorflow imports sqlite3: a lock and an unlock per `malloc` and
`free`, about 100 of each per 3-step workflow, cost 9,000 instructions of the
622,400 such a workflow took (1.4 %, `python -m benchmarks.instructions`).

What the counting serves, sqlite3 does not use: `sqlite3_memory_used()`,
`sqlite3_memory_highwater()`, the soft and hard heap limits and the memory
counters of `sqlite3_status64()`, which stop counting for every user of this
SQLite in the process. When sqlite3 was imported first, or SQLite is linked
where ctypes cannot reach it, nothing changes; nor when the process already runs
other threads, since `sqlite3_config` must not run while another thread may be
using (or initializing) SQLite. Linux only: elsewhere a variadic
C function may not take its arguments the way ctypes passes them.
"""

from __future__ import annotations

import ctypes
import importlib.util
import sys
import threading

_SQLITE_CONFIG_MEMSTATUS = 9
_SQLITE_OK = 0


def skip_memory_statistics() -> bool:
    """Ask SQLite not to count its allocations. True if it will not; False if it does
    (sqlite3 imported already, another platform, or SQLite out of reach)."""
    if "_sqlite3" in sys.modules or sys.platform != "linux":
        return False
    if threading.active_count() > 1:  # one of them could be importing sqlite3 right now
        return False
    spec = importlib.util.find_spec("_sqlite3")  # found, not imported
    if spec is None or spec.origin is None:
        return False
    try:
        # The extension's own handle: symbols resolve in the SQLite it links against
        # (which its import will initialize), never in another copy of SQLite.
        config = ctypes.CDLL(spec.origin).sqlite3_config
    except (OSError, AttributeError):  # built into the interpreter, or symbols hidden
        return False
    config.restype = ctypes.c_int
    return bool(config(_SQLITE_CONFIG_MEMSTATUS, ctypes.c_int(0)) == _SQLITE_OK)
