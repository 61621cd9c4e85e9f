"""The HTTP API (`pip install 'actorflow[http]'`): start, inspect and control runs over HTTP.

    from actorflow.http import asgi_app
    app = asgi_app(engine, token=None)     # a Starlette ASGI app
    fastapi_app.mount("/actorflow", app)   # or serve it: `actorflow serve MODULE`

Routes, status codes and JSON shapes are described at `GET /v1/openapi.json`.
"""

from ._access import is_loopback
from ._app import asgi_app
from ._server import serve

__all__ = ["asgi_app", "is_loopback", "serve"]
