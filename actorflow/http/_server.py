"""`serve(engine)`: the HTTP API on uvicorn until SIGINT/SIGTERM, closing the engine first."""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
from collections.abc import Iterator

import uvicorn

import actorflow as af

from ._app import asgi_app


class _EngineServer(uvicorn.Server):
    """uvicorn's server, closing the engine as the first step of its shutdown."""

    def __init__(self, config: uvicorn.Config, engine: af.Engine) -> None:
        super().__init__(config)
        self.engine = engine

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # First: open event streams and result waits end (the engine tells its readers
        # it closed), requests arriving meanwhile get 503, and every run stops at a
        # committed point. Then uvicorn closes the listener and drains.
        await self.engine.close()
        await super().shutdown(sockets)


async def serve(
    engine: af.Engine,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    log_level: str = "info",
) -> None:
    """Serve `asgi_app(engine, token)` with uvicorn until SIGINT or SIGTERM, then close
    the engine (its unfinished runs continue when an engine opens the store again)
    and drain the connections. Raises `SystemExit` if the address cannot be bound."""
    config = uvicorn.Config(
        asgi_app(engine, token),
        host=host,
        port=port,
        lifespan="off",
        log_level=log_level,
        # Once the engine is closed, what still holds a connection is a slow client.
        timeout_graceful_shutdown=10,
    )
    with _signals_end_serving():
        await _EngineServer(config, engine).serve()


@contextlib.contextmanager
def _signals_end_serving() -> Iterator[None]:
    """uvicorn turns SIGINT/SIGTERM into a graceful shutdown, then raises the signal
    again for the handlers it found. Found ignored, the signal has done its work once
    the engine is closed: `serve` returns instead of the process dying by SIGTERM or
    with a KeyboardInterrupt traceback."""
    if threading.current_thread() is not threading.main_thread():
        yield  # uvicorn handles no signals there either
        return
    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in handled}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
