"""Running the `actorflow` console script and `actorflow serve` in subprocesses, as users do."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = str(Path(sys.executable).with_name("actorflow"))


def cli(
    *args: str, url: str | None = None, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `actorflow ARGS` to completion (with `env` added to the environment): its
    status, stdout and stderr."""
    env = {**os.environ, "ACTORFLOW_URL": url or "http://127.0.0.1:9", "NO_COLOR": "1",
           **(env or {})}  # fmt: skip
    return subprocess.run(
        [SCRIPT, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT
    )


def cli_many(
    *commands: list[str], url: str | None = None, timeout: float = 60
) -> list[subprocess.CompletedProcess[str]]:
    """Run independent commands at the same time (each is mostly interpreter start-up):
    the result of each, in order."""
    procs = [cli_process(*command, url=url) for command in commands]
    results = []
    for command, proc in zip(commands, procs, strict=True):
        out, err = proc.communicate(timeout=timeout)
        results.append(subprocess.CompletedProcess([SCRIPT, *command], proc.returncode, out, err))
    return results


def cli_process(*args: str, url: str | None = None) -> subprocess.Popen[str]:
    """`actorflow ARGS` running in the background, its stdout a pipe read line by line."""
    env = {**os.environ, "ACTORFLOW_URL": url or "http://127.0.0.1:9", "NO_COLOR": "1"}
    return subprocess.Popen(
        [SCRIPT, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        cwd=ROOT,
    )  # fmt: skip


def ok(result: subprocess.CompletedProcess[str]) -> str:
    """The stdout of a command that must have succeeded."""
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result.stdout


def doc(result: subprocess.CompletedProcess[str]) -> Any:
    """The one JSON document a `--json` command printed."""
    return orjson.loads(ok(result))


def lines(text: str) -> list[Any]:
    """The JSON documents printed one per line."""
    return [orjson.loads(line) for line in text.splitlines()]


def one_error_line(result: subprocess.CompletedProcess[str], kind: str) -> str:
    """Status 1 and a single `error: KIND: ...` line on stderr; returns the message."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    error_lines = result.stderr.splitlines()
    assert len(error_lines) == 1, result.stderr
    prefix = f"error: {kind}: "
    assert error_lines[0].startswith(prefix), error_lines[0]
    return error_lines[0][len(prefix) :]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(check: Any, timeout: float = 30, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


@contextmanager
def serving(
    db: str,
    token: str | None = None,
    port: int | None = None,
    options: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> Iterator[str]:
    """`actorflow serve tests.cli_workflows --db DB [OPTIONS]` on `port` (default: a free
    loopback port), with `env` added to the environment: its URL, once it answers;
    stopped with SIGTERM after, and it must exit cleanly."""
    port = free_port() if port is None else port
    auth = [] if token is None else ["--token", token]
    proc = subprocess.Popen(
        [SCRIPT, "serve", "tests.cli_workflows", "--db", db, "--port", str(port),
         "--log-level", "warning", *auth, *options],
        cwd=ROOT, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, "actorflow serve exited"
        try:
            return httpx.get(url + "/healthz").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(up)
        yield url
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        errors = proc.stderr.read()
        proc.stderr.close()
    assert "Traceback" not in errors, errors


def file_hashes(directory: Path) -> dict[str, str]:
    """Every file in `directory` by name, with the SHA-256 of its bytes."""
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.iterdir())
        if path.is_file()
    }
