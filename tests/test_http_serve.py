"""`actorflow serve` as users run it: a subprocess serving over TCP on a loopback port."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

import actorflow as af
from tests import http_workflows  # noqa: F401  (the served workflows, for the reopen)
from tests.conftest import eventually

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, str]]:
    """`actorflow serve tests.http_workflows` on a fresh SQLite file: (process, url, db)."""
    port = free_port()
    db = f"sqlite:///{tmp_path / 'served.db'}"
    command = [sys.executable, "-m", "actorflow", "serve", "tests.http_workflows"]
    proc = subprocess.Popen(
        [*command, "--db", db, "--port", str(port), "--log-level", "warning"],
        cwd=ROOT,
        stderr=subprocess.PIPE,
    )
    try:
        yield proc, f"http://127.0.0.1:{port}", db
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()


async def until_up(http: httpx.AsyncClient, proc: subprocess.Popen[bytes]) -> None:
    async def up() -> bool:
        assert proc.poll() is None, "actorflow serve exited"
        try:
            return (await http.get("/healthz")).status_code == 200
        except httpx.TransportError:
            return False

    await eventually(up, timeout=30, interval=0.05)


async def sse_ids(response: httpx.Response) -> AsyncIterator[int]:
    async for line in response.aiter_lines():
        if line.startswith("id: "):
            yield int(line[4:])


async def test_serve_start_stream_resume_sigterm_and_reopen(
    served: tuple[subprocess.Popen[bytes], str, str],
) -> None:
    proc, url, db = served
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        await until_up(http, proc)
        start = "/v1/workflows/{}/runs"
        chatter = await http.post(start.format("http_chatter"), json={"args": [3], "id": "c1"})
        assert chatter.status_code == 201
        async with http.stream("GET", "/v1/runs/c1/stream") as response:
            first = [i async for i in _take(sse_ids(response), 2)]
        assert first == [0, 1]
        resumed = http.stream("GET", "/v1/runs/c1/stream", headers={"Last-Event-ID": "1"})
        async with resumed as response:
            assert [i async for i in _take(sse_ids(response), 1)] == [2]
        sleepers = [
            (await http.post(start.format("http_sleeper"), json={"args": [0.5]})).json()["id"]
            for _ in range(10)
        ]
        approvals = [
            (await http.post(start.format("http_approve"), json={"args": [f"o{i}"]})).json()["id"]
            for i in range(5)
        ]
        # A reader still connected when the server is told to stop: its stream ends.
        async with http.stream(
            "GET", "/v1/runs/c1/events", headers={"Accept": "text/event-stream"}
        ) as live:
            reader = asyncio.create_task(_count_lines(live))
            await asyncio.sleep(0)  # let the reader start before the signal
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(reader, 30)
    assert await asyncio.to_thread(proc.wait, 30) == 0
    assert proc.stderr is not None
    assert b"Traceback" not in proc.stderr.read()
    # The store's lock is released, and every run continues where it stopped.
    async with af.Engine(db) as engine:
        for run_id in sleepers:
            assert await engine.get_run(run_id).result(timeout=30) == "slept"
        for i, run_id in enumerate(approvals):
            await engine.get_run(run_id).send_event("approval", i)
            assert (await engine.get_run(run_id).result(timeout=30))["decision"] == i
        await engine.get_run("c1").send_event("done")
        assert await engine.get_run("c1").result(timeout=30) == 3
        assert [c async for c in engine.get_run("c1").stream()][2] == b"raw-2"


async def _take(ids: AsyncIterator[int], n: int) -> AsyncIterator[int]:
    async for i in ids:
        yield i
        n -= 1
        if n == 0:
            return


async def _count_lines(response: httpx.Response) -> int:
    return len([line async for line in response.aiter_lines()])


def test_serve_refuses_a_public_address_without_a_token() -> None:
    env = {k: v for k, v in os.environ.items() if k != "ACTORFLOW_TOKEN"}
    done = subprocess.run(
        [sys.executable, "-m", "actorflow", "serve", "tests.http_workflows", "--host", "0.0.0.0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 2
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "without a token" in lines[0]


def test_serve_needs_an_importable_module(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "actorflow", "serve", "no_such_module_here"],
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 2 and b"no_such_module_here" in done.stderr
