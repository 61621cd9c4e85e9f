"""Who may call the API: with a token, `/v1` requests carrying it as a bearer token;
without one, only clients on the loopback interface."""

from __future__ import annotations

import hmac
import ipaddress

from starlette.types import ASGIApp, Receive, Scope, Send

from ._problems import error_response


def is_loopback(host: str | None) -> bool:
    """Whether `host` (a client address) is on the loopback interface."""
    if host is None:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LoopbackOnly:
    """ASGI middleware answering 403 to every client that is not on this machine."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            client = scope.get("client")
            if not is_loopback(client[0] if client else None):
                response = error_response(
                    403,
                    "Forbidden",
                    "this server has no token: it answers loopback clients only",
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class BearerToken:
    """ASGI middleware answering 401 unless the request carries `Authorization: Bearer
    <token>`, compared in constant time."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = b""
            for name, value in scope["headers"]:
                if name == b"authorization":
                    given = value
            if not hmac.compare_digest(given, self.expected):
                response = error_response(401, "Unauthorized", "a valid bearer token is required")
                response.headers["WWW-Authenticate"] = "Bearer"
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
