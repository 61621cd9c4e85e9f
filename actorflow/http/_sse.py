"""Server-Sent Events on Starlette's `StreamingResponse`.

Starlette's response, not sse-starlette: with the ASGI servers in use (uvicorn
announces ASGI spec 2.3) it already listens for the client's disconnect and
cancels the body at once, which is what releases a reader's subscription.
sse-starlette adds a process-wide patch of uvicorn's signal handler and a
watcher task polling for shutdown every 0.5 s; actorflow ends its streams on
shutdown itself (closing the engine ends every reader), so that machinery would
only add an unowned task. What is left to write is the framing (`id:`,
`event:`, `data:`) and heartbeats, below.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from starlette.responses import StreamingResponse

import actorflow as af

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
PING = b": ping\n\n"
# A stream's natural end (the namespace closed, or the run ended). It has no data, so
# EventSource does not dispatch it; a client that follows across server restarts
# tells by it a finished stream from a response cut short by a restart.
END = b"event: end\n\n"


def message(index: int, data: bytes, event: str | None = None) -> bytes:
    """One SSE message; `data` must hold no newline (compact JSON or base64 does not)."""
    kind = b"" if event is None else b"event: " + event.encode() + b"\n"
    return b"id: %d\n%sdata: %s\n\n" % (index, kind, data)


def sse_response(messages: AsyncGenerator[bytes, None], heartbeat: float) -> StreamingResponse:
    """Stream `messages`, with a comment line after each `heartbeat` seconds of silence
    so that proxies keep the connection open."""
    return StreamingResponse(
        _with_heartbeats(messages, heartbeat), media_type="text/event-stream", headers=HEADERS
    )


async def _with_heartbeats(
    messages: AsyncGenerator[bytes, None], heartbeat: float
) -> AsyncGenerator[bytes, None]:
    # The next message is awaited in a task of its own: a timeout on the reader itself
    # would cancel it, and with it the subscription. The task is this generator's: it
    # is cancelled and awaited when the response ends or the client goes away.
    pending: asyncio.Task[bytes] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(messages))
            done, _ = await asyncio.wait((pending,), timeout=heartbeat)
            if not done:
                yield PING
                continue
            finished, pending = pending, None
            try:
                item = finished.result()
            except StopAsyncIteration:
                return
            except af.EngineClosedError:
                return  # the server is shutting down: the client resumes with Last-Event-ID
            yield item
    finally:
        if pending is not None:
            pending.cancel()
            # Its outcome no longer matters: no one is there to receive it.
            await asyncio.gather(pending, return_exceptions=True)
        await messages.aclose()
