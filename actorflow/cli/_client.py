"""HttpClient: the commands' requests to a running server (`actorflow serve`, or any
app serving `actorflow.http.asgi_app`), with httpx, and Server-Sent Events with
httpx-sse."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import httpx
from httpx_sse import SSEError, connect_sse

from ._source import FINAL_EVENT_KINDS, Chunk, RequestFailed, segment

MAX_WAIT = 3600.0  # the server's longest result wait per request
_TIMEOUT = 30.0


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
        """httpx's errors as `RequestFailed`, naming the server for connection errors."""
        try:
            yield
        except httpx.ConnectError as exc:
            raise RequestFailed("ConnectError", f"cannot reach {self.url}: {exc}") from None
        except httpx.TimeoutException as exc:
            raise RequestFailed(type(exc).__name__, f"{self.url} did not answer: {exc}") from None
        except (httpx.HTTPError, SSEError) as exc:
            raise RequestFailed(type(exc).__name__, f"{self.url}: {exc}") from None

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
        for sse in self._sse(f"/runs/{segment(run_id)}/events"):
            event: dict[str, Any] = json.loads(sse.data)
            yield event
            if event["kind"] in FINAL_EVENT_KINDS:
                return
        raise RequestFailed(
            "StreamEnded", f"{self.url} ended the event stream before the run ended"
        )

    def stream(self, run_id: str, namespace: str, start: int) -> Iterator[Chunk]:
        path = f"/runs/{segment(run_id)}/stream?namespace={quote(namespace)}&start={start}"
        for sse in self._sse(path):
            value = base64.b64decode(sse.data) if sse.event == "bytes" else json.loads(sse.data)
            yield Chunk(int(sse.id), value)

    def _sse(self, path: str) -> Iterator[Any]:
        with (
            self._failures(),
            connect_sse(
                self._http, "GET", path, timeout=httpx.Timeout(_TIMEOUT, read=None)
            ) as source,
        ):
            if source.response.is_error:
                source.response.read()
                _check(source.response)
            yield from source.iter_sse()

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
