"""A throwaway PostgreSQL server for the tests (and the benchmarks): a cluster in a
temporary directory, on a free loopback port, gone when its owner stops it.

The server binaries come from the machine (`.ci/run` installs Debian's `postgresql`
when they are missing). As root the server runs as the `postgres` user, which
PostgreSQL requires. The postmaster is started directly (not through `pg_ctl`, which
detaches it) and asks the kernel to kill it when the process that started it dies,
so a test run that is itself killed leaves no server behind.

Run `python -m tests.pg_cluster [NAME=VALUE ...]` to get a server for a benchmark by
hand, with the server's default settings but those given: it prints the URL and stops
the server on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

_PR_SET_PDEATHSIG = 1
# Settings for tests: nothing is fsynced (a crash of the machine is not what they test;
# a crash of the engine, or a restart of the server, loses nothing committed).
TEST_SETTINGS = {"fsync": "off", "full_page_writes": "off", "max_connections": "300"}


class ClusterError(RuntimeError):
    """The server binaries are missing, or the server would not start."""


def find_bindir() -> Path:
    """The directory of `initdb` and `postgres`: PATH, `pg_config --bindir`, then the
    newest /usr/lib/postgresql/*/bin. Raises ClusterError when there is none."""
    candidates: list[Path] = []
    if found := shutil.which("initdb"):
        candidates.append(Path(found).resolve().parent)
    if pg_config := shutil.which("pg_config"):
        with contextlib.suppress(subprocess.CalledProcessError, OSError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, check=True)
            candidates.append(Path(out.stdout.decode().strip()))
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    versions.sort(key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0)
    candidates.extend(Path(p) for p in reversed(versions))
    for bindir in candidates:
        if (bindir / "initdb").exists() and (bindir / "postgres").exists():
            return bindir
    raise ClusterError(
        "PostgreSQL server binaries (initdb, postgres) not found: install them "
        "(`apt-get install -y postgresql`, as .ci/run does), point ACTORFLOW_TEST_PG at a "
        "server (postgresql://...), or set ACTORFLOW_TEST_PG=0 to leave PostgreSQL out"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_user() -> pwd.struct_passwd | None:
    """Who runs the server: `postgres` when we are root (it refuses root), else us."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise ClusterError(
            "running as root and there is no `postgres` user to run the server as "
            "(`useradd --system postgres`, or install Debian's postgresql, which creates it)"
        ) from None


def _as_user(user: pwd.struct_passwd | None, die_with_parent: bool) -> Callable[[], None]:
    def preexec() -> None:
        os.setsid()
        if user is not None:
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
        if die_with_parent:
            # After setuid: a change of credentials clears the parent-death signal.
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGQUIT)

    return preexec


class Cluster:
    """A PostgreSQL cluster in its own temporary directory."""

    def __init__(self, settings: dict[str, str] | None = None) -> None:
        self.bindir = find_bindir()
        self.settings = dict(TEST_SETTINGS if settings is None else settings)
        self.user = _server_user()
        self.dir = Path(tempfile.mkdtemp(prefix="actorflow-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self._server: subprocess.Popen[bytes] | None = None
        if self.user is not None:
            os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--no-locale", "--no-sync")  # fmt: skip

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [str(self.bindir / tool), *args],
            capture_output=True,
            preexec_fn=_as_user(self.user, die_with_parent=False),
        )
        if done.returncode != 0:
            raise ClusterError(f"{tool} failed: {done.stderr.decode(errors='replace')}")

    def start(self, timeout: float = 30.0) -> str:
        """Start the server (again, after `stop`); returns its URL once it takes connections."""
        options: list[str] = []
        for name, value in {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.dir),
            **self.settings,
        }.items():
            options += ["-c", f"{name}={value}"]
        log = open(self.dir / "server.log", "ab")  # noqa: SIM115 - the server's, closed below
        try:
            self._server = subprocess.Popen(
                [str(self.bindir / "postgres"), "-D", str(self.data), *options],
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_as_user(self.user, die_with_parent=True),
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while not self._accepts_connections():
            if self._server.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise ClusterError(f"the server did not start:\n{self.log_tail()}")
            time.sleep(0.05)
        return self.url

    def _accepts_connections(self) -> bool:
        done = subprocess.run(
            [str(self.bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)],
            capture_output=True,
        )
        return done.returncode == 0

    def log_tail(self, lines: int = 30) -> str:
        path = self.dir / "server.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: `fast` (clients disconnected, clean shutdown) or `immediate`
        (a crash: the next start recovers from the WAL)."""
        server, self._server = self._server, None
        if server is None or server.poll() is not None:
            return
        server.send_signal(signal.SIGINT if mode == "fast" else signal.SIGQUIT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()

    def destroy(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def main() -> None:
    settings = dict(arg.split("=", 1) for arg in sys.argv[1:])
    cluster = Cluster(settings={"max_connections": "300", **settings})
    try:
        print(cluster.start(), flush=True)
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        cluster.destroy()


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    main()
