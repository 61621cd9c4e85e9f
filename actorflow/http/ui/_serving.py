"""An engine and its HTTP app (dashboard included) served by a real uvicorn server on a
free loopback port, from a thread with its own event loop: what the browser tests and
the screenshot script drive."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import socket
import threading
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar

import uvicorn
from starlette.types import ASGIApp

import actorflow as af
from actorflow.http import asgi_app

T = TypeVar("T")

START_TIMEOUT = 30.0


class ServedEngine:
    """`with ServedEngine("sqlite:///x.db") as served:` opens the engine and serves it at
    `served.base_url` until the block ends (`app(engine)` if given, else
    `asgi_app(engine, token)`). `served.call(fn)` runs `fn(engine)` on the server's loop.
    Raises whatever opening the engine or binding the port raised."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        app: Callable[[af.Engine], ASGIApp] | None = None,
        **engine_options: Any,
    ) -> None:
        self.url = url
        self.token = token
        self.app = app or (lambda engine: asgi_app(engine, token))
        self.engine_options = engine_options
        self.base_url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._engine: af.Engine | None = None
        self._server: uvicorn.Server | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="actorflow-ui-server", daemon=True)

    def __enter__(self) -> ServedEngine:
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise TimeoutError(f"the server did not start within {START_TIMEOUT} s")
        if self._failure is not None:
            self._thread.join()
            raise self._failure
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.should_exit = True
        self._thread.join(START_TIMEOUT)
        if self._thread.is_alive():
            raise TimeoutError("the server thread did not stop")
        if self._failure is not None and exc is None:
            raise self._failure

    def call(self, fn: Callable[[af.Engine], Awaitable[T]], timeout: float = 30.0) -> T:
        """Runs `fn(engine)` on the server's loop and returns its result (or raises)."""
        assert self._loop is not None and self._engine is not None, "not serving"
        engine = self._engine

        async def run() -> T:
            return await fn(engine)

        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(run(), self._loop)
        return future.result(timeout)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # handed to the thread that waits in __enter__/__exit__
            self._failure = exc
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        port = listener.getsockname()[1]
        try:
            async with af.Engine(self.url, **self.engine_options) as engine:
                config = uvicorn.Config(
                    self.app(engine),
                    lifespan="off",
                    log_level="warning",
                    timeout_graceful_shutdown=1,
                )
                self._server = uvicorn.Server(config)
                self._engine = engine
                self._loop = asyncio.get_running_loop()
                self.base_url = f"http://127.0.0.1:{port}"
                # Connections made before uvicorn accepts wait in the listener's backlog.
                self._ready.set()
                await self._server.serve(sockets=[listener])
        finally:
            listener.close()


async def until_status(run: af.Run[Any], status: str, timeout: float = 30.0) -> None:
    """Waits until the run has `status`, checking after each event it records (no
    polling). Raises TimeoutError, or RuntimeError if the run ends in another status."""
    async with asyncio.timeout(timeout), contextlib.aclosing(run.events()) as events:
        async for _ in events:
            if (await run.status()).value == status:
                return
    raise RuntimeError(f"run {run.id} ended {(await run.status()).value}, not {status}")
