"""Server-Sent Events of the HTTP API: recorded then live entries, `id:` on every
message, `Last-Event-ID` resumes, heartbeats, and disconnects that release readers."""

from __future__ import annotations

import asyncio
import base64

import actorflow as af
from actorflow.http import asgi_app
from tests import http_workflows as wf
from tests._asgi import Message, SSEClient
from tests.conftest import eventually, wait_for_status


def ids(messages: list[Message]) -> list[int]:
    return [m["id"] for m in messages if "id" in m]


async def test_events_recorded_then_live_until_the_run_ends(engine: af.Engine) -> None:
    app = asgi_app(engine)
    run = await engine.start(wf.http_approve, "o")
    await wait_for_status(run, af.RunStatus.WAITING)
    client = SSEClient(f"/v1/runs/{run.id}/events")
    reading = asyncio.create_task(client.call(app))
    await eventually(
        lambda: any(m.get("data", {}).get("kind") == "wait_started" for m in client.messages)
    )
    await run.send_event("approval", "yes")
    await asyncio.wait_for(reading, 5)
    assert client.status == 200
    events = [m["data"] for m in client.messages]
    assert ids(client.messages) == [e["index"] for e in events] == list(range(len(events)))
    assert events[-1]["kind"] == "run_completed"
    resumed = await SSEClient(f"/v1/runs/{run.id}/events", [("Last-Event-ID", "2")]).call(app)
    assert ids(resumed.messages) == list(range(3, len(events)))
    at_end = await SSEClient(
        f"/v1/runs/{run.id}/events", [("Last-Event-ID", str(len(events) - 1))]
    ).call(app)
    assert at_end.status == 200 and at_end.messages == []


async def test_stream_json_and_bytes_chunks_with_resume(engine: af.Engine) -> None:
    app = asgi_app(engine)
    run = await engine.start(wf.http_chatter, 4)
    client = SSEClient(f"/v1/runs/{run.id}/stream")
    reading = asyncio.create_task(client.call(app))
    await eventually(lambda: len(ids(client.messages)) == 4)
    await run.send_event("done")
    await asyncio.wait_for(reading, 5)
    *messages, end = client.messages
    assert end == {"event": "end"}  # the stream's end: it closed
    assert ids(messages) == [0, 1, 2, 3]
    assert [m["data"] for m in messages if "event" not in m] == [{"i": 0}, {"i": 1}, {"i": 3}]
    [raw] = [m for m in messages if m.get("event") == "bytes"]
    assert raw["id"] == 2 and base64.b64decode(raw["data"]) == b"raw-2"
    resumed = await SSEClient(f"/v1/runs/{run.id}/stream", [("Last-Event-ID", "1")]).call(app)
    assert ids(resumed.messages) == [2, 3] and resumed.messages[-1] == {"event": "end"}
    last = await SSEClient(f"/v1/runs/{run.id}/stream?start=-1").call(app)
    assert ids(last.messages) == [3]
    other = await SSEClient(f"/v1/runs/{run.id}/stream?namespace=other").call(app)
    assert other.status == 200 and other.messages == [{"event": "end"}]  # the run has ended


async def test_heartbeat_comments_while_nothing_happens(engine: af.Engine) -> None:
    app = asgi_app(engine, heartbeat=0.02)
    run = await engine.start(wf.http_approve, "h")
    client = SSEClient(
        f"/v1/runs/{run.id}/events",
        stop=lambda ms: sum(m.get("comment") == "ping" for m in ms) >= 2,
    )
    await asyncio.wait_for(client.call(app), 5)
    assert ids(client.messages)[0] == 0
    assert engine.live_readers() == 0


async def test_a_thousand_clients_connect_and_drop(engine: af.Engine) -> None:
    """Every reader is subscribed while connected, and its subscription is gone as soon
    as its request returns after the client disconnected."""
    app = asgi_app(engine)
    run = await engine.start(wf.http_chatter, 1)
    clients = [
        SSEClient(f"/v1/runs/{run.id}/{'events' if i % 2 else 'stream'}") for i in range(1000)
    ]
    calls = [asyncio.create_task(c.call(app)) for c in clients]
    await eventually(lambda: all(ids(c.messages) for c in clients), timeout=60)
    assert engine.live_readers() == 1000
    for client in clients:
        client.disconnected.set()
    await asyncio.wait_for(asyncio.gather(*calls), 30)
    assert engine.live_readers() == 0
    assert await run.status() == af.RunStatus.WAITING


async def test_unknown_run_and_bad_last_event_id(engine: af.Engine) -> None:
    app = asgi_app(engine)
    missing = await SSEClient("/v1/runs/nope/events").call(app)
    assert missing.status == 404
    run = await engine.start(wf.http_add, 1, 2)
    bad = await SSEClient(f"/v1/runs/{run.id}/events", [("Last-Event-ID", "x")]).call(app)
    assert bad.status == 400


async def test_a_result_wait_ends_when_the_client_leaves(engine: af.Engine) -> None:
    run = await engine.start(wf.http_approve, "gone")
    client = SSEClient(f"/v1/runs/{run.id}/result?wait=3600")
    client.disconnected.set()
    await asyncio.wait_for(client.call(asgi_app(engine)), 30)
    assert client.status == 499
    assert await run.status() != af.RunStatus.COMPLETED
