"""Calling an ASGI app directly, as a server would, for responses that stream:
httpx's ASGITransport buffers a whole response, so it cannot read a live
Server-Sent Events stream or disconnect in the middle of one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import orjson

Message = dict[str, Any]


class SSEClient:
    """One GET request; collects the body, and disconnects once `stop(messages)` says so."""

    def __init__(
        self,
        path: str,
        headers: Sequence[tuple[str, str]] = (),
        stop: Callable[[list[Message]], bool] | None = None,
    ) -> None:
        self.path, _, query = path.partition("?")
        self.query = query.encode()
        self.headers = [(k.lower().encode(), v.encode()) for k, v in headers]
        self.headers.append((b"accept", b"text/event-stream"))
        self.stop = stop
        self.status: int | None = None
        self.body = b""
        self.disconnected = asyncio.Event()
        self._requested = False

    @property
    def messages(self) -> list[Message]:
        """The SSE messages received: `id`, `event`, `data` (JSON-decoded unless `event`
        is set), or `comment` for heartbeat lines."""
        out: list[Message] = []
        for block in self.body.decode().split("\n\n"):
            if not block:
                continue
            fields: Message = {}
            for line in block.split("\n"):
                if line.startswith(":"):
                    fields["comment"] = line[1:].strip()
                    continue
                name, _, value = line.partition(": ")
                fields[name] = value
            if "data" in fields and "event" not in fields:
                fields["data"] = orjson.loads(fields["data"])
            if "id" in fields:
                fields["id"] = int(fields["id"])
            out.append(fields)
        return out

    async def call(self, app: Any) -> SSEClient:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": self.path,
            "raw_path": self.path.encode(),
            "query_string": self.query,
            "root_path": "",
            "headers": self.headers,
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        await app(scope, self._receive, self._send)
        return self

    async def _receive(self) -> Message:
        if not self._requested:
            self._requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.disconnected.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")
            if self.stop is not None and self.stop(self.messages):
                self.disconnected.set()
