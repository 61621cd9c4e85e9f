"""The OpenAPI 3.1 description of the HTTP API, served at `GET /v1/openapi.json`."""

from __future__ import annotations

from typing import Any


def openapi_document() -> dict[str, Any]:
    return {"openapi": "3.1.0", "info": {"title": "actorflow", "version": "1"}, "paths": {}}
