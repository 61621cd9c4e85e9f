"""http: the HTTP API served by `actorflow serve` (uvicorn, a subprocess) against the
same work done in-process, in one run, so the HTTP overhead is a ratio.

- starts: `POST /v1/workflows/{name}/runs` from `clients` concurrent connections
  (httpx, one connection each) vs `engine.start()` from as many tasks;
- latency: one caller, POST start -> `GET /v1/runs/{id}/result?wait=30` (the server
  answers when the run finishes: pushed, not polled) vs `start()` -> `result()`;
- SSE: one run writes `chunks` chunks to `readers` readers of `GET .../stream`
  (Server-Sent Events) vs as many `run.stream()` readers.

The server and this client share the machine's cores: on a small machine the
client's own work (httpx: a few ms of CPU per request, reported) is part of what
the HTTP numbers pay.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx

import actorflow as af

from .common import Context, Metric, log, summarize
from .shapes import three_steps

DESCRIPTION = "HTTP API (actorflow serve) vs in-process: starts/s, start->result, SSE"
DEFAULTS = {"starts": 5000, "clients": 100, "samples": 500, "chunks": 2000, "readers": 100}
QUICK = {"starts": 200, "clients": 20, "samples": 20, "chunks": 50, "readers": 10}
TABLE = [
    Metric("http_starts_per_s", "HTTP: runs started", "/s"),
    Metric("http_client_cpu_ms_per_start", "HTTP: client CPU per start", "ms"),
    Metric("inproc_starts_per_s", "in-process: runs started", "/s"),
    Metric("starts_ratio", "starts, in-process / HTTP", "x"),
    Metric("http_latency_p50_ms", "HTTP: start -> result?wait= p50", "ms"),
    Metric("http_latency_p99_ms", "HTTP: start -> result?wait= p99", "ms"),
    Metric("inproc_latency_p50_ms", "in-process: start -> result p50", "ms"),
    Metric("inproc_latency_p99_ms", "in-process: start -> result p99", "ms"),
    Metric("latency_p50_ratio", "latency p50, HTTP / in-process", "x"),
    Metric("http_sse_chunks_per_s", "HTTP: SSE chunks (each to all readers)", "/s"),
    Metric("inproc_stream_chunks_per_s", "in-process: stream chunks (each to all)", "/s"),
    Metric("sse_ratio", "chunks/s, in-process / HTTP", "x"),
]
ROOT = Path(__file__).resolve().parent.parent


@af.step(name="bench.http.burst")
async def burst(n: int) -> int:
    writer = af.get_writable()
    for i in range(n):
        await writer.write({"i": i, "token": "lorem"})
    await writer.close()
    return n


@af.workflow(name="bench.http.talker")
async def talker(n: int) -> int:
    """Writes a "ready" chunk, waits for "go" (every reader is live), then `n` chunks."""
    await af.get_writable().write({"ready": True})
    await af.wait_for_event("go")
    return await burst(n)


async def run(cfg: dict[str, Any], ctx: Context) -> None:
    log("  HTTP: actorflow serve in a subprocess")
    await _over_http(cfg, ctx)
    ctx.checkpoint()
    log("  in-process: the same work on an engine in this process")
    async with ctx.engine(workflows=[three_steps, talker]) as engine:
        await _in_process(engine, cfg, ctx)
    m = ctx.metrics
    m["starts_ratio"] = m["inproc_starts_per_s"] / m["http_starts_per_s"]
    m["latency_p50_ratio"] = m["http_latency_p50_ms"] / m["inproc_latency_p50_ms"]
    m["latency_p99_ratio"] = m["http_latency_p99_ms"] / m["inproc_latency_p99_ms"]
    m["sse_ratio"] = m["inproc_stream_chunks_per_s"] / m["http_sse_chunks_per_s"]


async def _rate(total: int, workers: int, one: Callable[[int, int], Awaitable[None]]) -> float:
    """Calls of `one(worker, i)` per second for i in range(total), by `workers` concurrent
    callers (numbered from 0)."""
    counter = iter(range(total))

    async def worker(w: int) -> None:
        for i in counter:
            await one(w, i)

    begin = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(workers)))
    return total / (time.perf_counter() - begin)


async def _latencies(samples: int, one: Callable[[int], Awaitable[None]]) -> dict[str, float]:
    times = []
    for i in range(samples):
        t0 = time.perf_counter()
        await one(i)
        times.append(time.perf_counter() - t0)
    return summarize(times, scale=1000.0)


async def _fan_out(
    readers: int,
    read: Callable[[Callable[[], None]], Coroutine[Any, Any, int]],
    go: Callable[[], Awaitable[None]],
    n: int,
) -> float:
    """Chunks per second (each delivered to every reader) from "go" until the last reader
    has the last one; `read(ready)` reads one stream, calling `ready()` once it is live."""
    live = 0
    all_live = asyncio.Event()

    def ready() -> None:
        nonlocal live
        live += 1
        if live == readers:
            all_live.set()

    tasks = [asyncio.create_task(read(ready)) for _ in range(readers)]
    try:
        await asyncio.wait_for(all_live.wait(), 120)
        begin = time.perf_counter()
        await go()
        counts = await asyncio.gather(*tasks)
        seconds = time.perf_counter() - begin
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert all(c == n for c in counts), f"readers got {sorted(set(counts))} of {n} chunks"
    return n / seconds


async def _over_http(cfg: dict[str, Any], ctx: Context) -> None:
    port = _free_port()
    db = f"sqlite:///{ctx.db_path('http')}"
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "actorflow", "serve", "benchmarks.http", "--db", db,
        "--port", str(port), "--log-level", "warning",
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    # One client per connection: httpx's pool, shared by 100 concurrent requests, costs
    # the client about 3 times the CPU per request (measured: 7.8 against 2.5 ms).
    clients = [httpx.AsyncClient(base_url=url, timeout=120) for _ in range(cfg["clients"])]
    try:
        http = clients[0]
        await _until_up(http, server)
        start_url = f"/v1/workflows/{three_steps.name}/runs"

        async def start(worker: int, i: int) -> None:
            (await clients[worker].post(start_url, json={"args": [i]})).raise_for_status()

        await _rate(min(200, cfg["starts"]), cfg["clients"], start)  # warm-up
        cpu = time.process_time()
        ctx.metrics["http_starts_per_s"] = await _rate(cfg["starts"], cfg["clients"], start)
        ctx.metrics["http_client_cpu_ms_per_start"] = (
            1000 * (time.process_time() - cpu) / cfg["starts"]
        )

        async def start_and_wait(i: int) -> None:
            run_id = (await http.post(start_url, json={"args": [i]})).json()["id"]
            done = await http.get(f"/v1/runs/{run_id}/result", params={"wait": 30})
            assert done.status_code == 200, done.text

        stats = await _latencies(cfg["samples"], start_and_wait)
        ctx.metrics.update(http_latency_p50_ms=stats["p50"], http_latency_p99_ms=stats["p99"])
        ctx.metrics["http_sse_chunks_per_s"] = await _sse(http, url, cfg)
    finally:
        await asyncio.gather(*(client.aclose() for client in clients))
        server.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(server.wait(), 60)
        if code != 0:
            ctx.note(f"actorflow serve exited with {code}")


async def _sse(http: httpx.AsyncClient, url: str, cfg: dict[str, Any]) -> float:
    n = cfg["chunks"]
    run_id = (await http.post(f"/v1/workflows/{talker.name}/runs", json={"args": [n]})).json()["id"]

    async def read(ready: Callable[[], None]) -> int:
        got = 0
        reader = httpx.AsyncClient(base_url=url, timeout=120)
        async with reader, reader.stream("GET", f"/v1/runs/{run_id}/stream") as response:
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                if got == 0 and '"ready"' in line:
                    ready()
                else:
                    got += 1
        return got

    async def go() -> None:
        (await http.post(f"/v1/runs/{run_id}/events/go", json=None)).raise_for_status()

    return await _fan_out(cfg["readers"], read, go, n)


async def _in_process(engine: af.Engine, cfg: dict[str, Any], ctx: Context) -> None:
    async def start(worker: int, i: int) -> None:
        await engine.start(three_steps, i)

    await _rate(min(200, cfg["starts"]), cfg["clients"], start)
    ctx.metrics["inproc_starts_per_s"] = await _rate(cfg["starts"], cfg["clients"], start)

    async def start_and_wait(i: int) -> None:
        await (await engine.start(three_steps, i)).result(timeout=30)

    stats = await _latencies(cfg["samples"], start_and_wait)
    ctx.metrics.update(inproc_latency_p50_ms=stats["p50"], inproc_latency_p99_ms=stats["p99"])
    n = cfg["chunks"]
    run_ = await engine.start(talker, n)

    async def read(ready: Callable[[], None]) -> int:
        got = -1
        async for _ in run_.stream():
            if got == -1:
                ready()
            got += 1
        return got

    async def go() -> None:
        await run_.send_event("go")

    ctx.metrics["inproc_stream_chunks_per_s"] = await _fan_out(cfg["readers"], read, go, n)


async def _until_up(http: httpx.AsyncClient, server: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + 60
    while True:
        if server.returncode is not None:
            raise RuntimeError(f"actorflow serve exited with {server.returncode}")
        try:
            if (await http.get("/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("actorflow serve did not answer /healthz within 60 s")
        await asyncio.sleep(0.05)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
