"""HttpClient: the commands' requests to a running server (`actorflow serve`, or any
app serving `actorflow.http.asgi_app`), with httpx, and Server-Sent Events with
httpx-sse."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import httpx
from httpx_sse import ServerSentEvent, SSEError, connect_sse

from ._source import FINAL_EVENT_KINDS, Chunk, RequestFailed, segment

MAX_WAIT = 3600.0  # the server's longest result wait per request
_TIMEOUT = 30.0
# Following a run across a server restart: reconnect after 0.1 s, doubling up to 2 s,
# and give up once no connection has worked for this long.
RECONNECT_FIRST = 0.1
RECONNECT_MAX = 2.0
RECONNECT_GIVE_UP = 60.0


class HttpClient:
    """Requests to the HTTP API at `url` (its `/v1` routes), with `token` as bearer token.
    Every failure raises `RequestFailed` with the server's error type and message."""

    def __init__(self, url: str, token: str | None) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url + "/v1", headers=headers, timeout=_TIMEOUT)

    def close(self) -> None:
        self._http.close()

    @contextmanager
    def _failures(self) -> Iterator[None]:
        """httpx's errors as `RequestFailed`."""
        try:
            yield
        except (httpx.HTTPError, SSEError) as exc:
            raise self._failure(exc) from None

    def _failure(self, exc: httpx.HTTPError | SSEError) -> RequestFailed:
        """An httpx error as `RequestFailed`, naming the server for connection errors."""
        if isinstance(exc, httpx.ConnectError):
            return RequestFailed("ConnectError", f"cannot reach {self.url}: {exc}")
        if isinstance(exc, httpx.TimeoutException):
            return RequestFailed(type(exc).__name__, f"{self.url} did not answer: {exc}")
        return RequestFailed(type(exc).__name__, f"{self.url}: {exc}")

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        timeout: float = _TIMEOUT,
    ) -> tuple[int, Any]:
        with self._failures():
            response = self._http.request(
                method,
                path,
                params=params,
                content=None if body is None else json.dumps(body[0]),
                headers={"Content-Type": "application/json"} if body is not None else None,
                timeout=timeout,
            )
        _check(response)
        return response.status_code, response.json()

    def get(self, path: str, **params: Any) -> Any:
        return self._request("GET", path, params={k: v for k, v in params.items() if v})[1]

    def post(self, path: str, body: Any = None) -> Any:
        """POST `body` (a JSON value; `None` sends `null`)."""
        return self._request("POST", path, body=(body,))[1]

    def delete(self, path: str) -> Any:
        return self._request("DELETE", path)[1]

    # The read side (Source).

    def workflows(self) -> dict[str, Any]:
        return dict(self.get("/workflows"))

    def list_runs(self, *, workflow: str | None, statuses: list[str], limit: int) -> dict[str, Any]:
        status = ",".join(statuses)
        return dict(self.get("/runs", workflow=workflow, status=status, limit=limit))

    def run(self, run_id: str) -> dict[str, Any]:
        return dict(self.get(f"/runs/{segment(run_id)}"))

    def result(self, run_id: str, wait: float) -> dict[str, Any]:
        """Asks again every `MAX_WAIT` seconds for a longer wait (the server answers 202
        with the status when its wait ends first)."""
        remaining = wait
        while True:
            step = min(remaining, MAX_WAIT)
            status, answer = self._request(
                "GET",
                f"/runs/{segment(run_id)}/result",
                params={"wait": f"{step:g}"},
                timeout=step + _TIMEOUT,
            )
            remaining -= step
            if status == 200 or remaining <= 0:
                return dict(answer)

    def events(self, run_id: str) -> list[dict[str, Any]]:
        return list(self.get(f"/runs/{segment(run_id)}/events")["events"])

    def follow_events(self, run_id: str) -> Iterator[dict[str, Any]]:
        """The run's events until its final one, across dropped connections and server
        restarts (see `_sse`)."""
        for sse in self._sse(
            f"/runs/{segment(run_id)}/events",
            lambda sse: json.loads(sse.data)["kind"] in FINAL_EVENT_KINDS,
        ):
            yield json.loads(sse.data)

    def stream(self, run_id: str, namespace: str, start: int) -> Iterator[Chunk]:
        """The chunks until the stream ends (it closed, or the run ended: the server's
        last message is `event: end`), across dropped connections and server restarts
        (see `_sse`)."""
        path = f"/runs/{segment(run_id)}/stream?namespace={quote(namespace)}&start={start}"
        for sse in self._sse(path, lambda sse: sse.event == "end"):
            if sse.event == "end":
                return
            value = base64.b64decode(sse.data) if sse.event == "bytes" else json.loads(sse.data)
            yield Chunk(int(sse.id), value)

    def _sse(self, path: str, last: Callable[[ServerSentEvent], bool]) -> Iterator[ServerSentEvent]:
        """The messages of an SSE response until `last(message)` is true. When the
        connection drops, or the server ends the response before `last` (it is
        restarting) or answers 503 (it is closing), connect again with backoff,
        sending the id of the last message received as `Last-Event-ID`: the server
        goes on right after it, so no message is shown twice or missed. Raises
        `RequestFailed` once reconnecting has failed for `RECONNECT_GIVE_UP`
        seconds, or at once for an error answer other than 503."""
        last_id: str | None = None
        connected = False  # a server that is not there at all fails at once
        delay = RECONNECT_FIRST
        failing_since: float | None = None
        while True:
            headers = {} if last_id is None else {"Last-Event-ID": last_id}
            try:
                with connect_sse(
                    self._http, "GET", path, headers=headers,
                    timeout=httpx.Timeout(_TIMEOUT, read=None),
                ) as source:  # fmt: skip
                    response = source.response
                    problem = f"{self.url} is closing (503)"
                    if response.status_code != 503:
                        if response.is_error:
                            response.read()
                            _check(response)
                        connected, delay, failing_since = True, RECONNECT_FIRST, None
                        for sse in source.iter_sse():
                            last_id = sse.id or last_id
                            yield sse
                            if last(sse):
                                return
                        problem = f"{self.url} ended the event stream before its end"
            except (httpx.TransportError, SSEError) as exc:
                if not connected:
                    raise self._failure(exc) from None
                problem = f"{self.url}: {type(exc).__name__}: {exc}"
            now = time.monotonic()
            failing_since = now if failing_since is None else failing_since
            if now - failing_since >= RECONNECT_GIVE_UP:
                raise RequestFailed("ConnectionLost", f"{problem} (gave up reconnecting)")
            time.sleep(delay)
            delay = min(2 * delay, RECONNECT_MAX)

    def schedules(self) -> dict[str, Any]:
        return dict(self.get("/schedules"))

    def schedule(self, schedule_id: str) -> dict[str, Any]:
        return dict(self.get(f"/schedules/{segment(schedule_id)}"))


def _check(response: httpx.Response) -> None:
    """Raise `RequestFailed` for an error answer, with the type and message of its body."""
    if response.status_code < 400:
        return
    try:
        error = response.json()["error"]
        kind, message = str(error["type"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        kind = "HTTPError"
        message = f"{response.status_code} {response.reason_phrase}: {response.text[:200]}"
    raise RequestFailed(kind, message)
