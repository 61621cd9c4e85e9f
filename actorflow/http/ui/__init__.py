"""The web dashboard served at `/ui` of the HTTP app: static HTML, CSS and JavaScript
modules under `static/`, talking to the app's `/v1` API from the browser. No build step,
and nothing is fetched from anywhere else."""

from __future__ import annotations

from pathlib import Path

from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).with_name("static")


def dashboard() -> StaticFiles:
    """The dashboard's files as an ASGI app, to mount at `/ui` beside `/v1`.

    Raises RuntimeError if the package was installed without its static files.
    """
    return StaticFiles(directory=STATIC_DIR, html=True)
