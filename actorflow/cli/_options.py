"""The options every client command shares (`--url`, `--token`, `--db`, `--json`), JSON
arguments, and the guard that turns any failure into one `error:` line."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click
import orjson

from actorflow import ActorflowError
from actorflow._store_reader import StoreReader

from ._output import Output
from ._source import DEFAULT_URL, RequestFailed, Source

F = TypeVar("F", bound=Callable[..., Any])


if TYPE_CHECKING:
    _ParamType = click.ParamType[Any]  # generic in the click that type-checks this
else:
    _ParamType = click.ParamType  # not generic in click 8.1 and 8.2


class JsonValue(_ParamType):
    """An argument written as JSON: `2`, `'{"a": 1}'`, `'"text"'`."""

    name = "JSON"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            quoted = orjson.dumps(value).decode()
            self.fail(f"{value!r} is not JSON; write text as a JSON string: '{quoted}'", param, ctx)


JSON_VALUE = JsonValue()

_url = click.option(
    "--url",
    envvar="ACTORFLOW_URL",
    default=DEFAULT_URL,
    show_default=True,
    help="the server (or ACTORFLOW_URL)",
)
_token = click.option(
    "--token",
    "auth_token",
    envvar="ACTORFLOW_TOKEN",
    help="bearer token of the server (or ACTORFLOW_TOKEN)",
)
_json = click.option(
    "--json", "as_json", is_flag=True, help="print JSON (the HTTP API's shapes) instead of tables"
)


def _store_url(ctx: click.Context, param: click.Parameter, url: str | None) -> str | None:
    """A URL `StoreReader` can read (checked before anything is opened)."""
    if url is not None:
        try:
            StoreReader(url)
        except (ActorflowError, ValueError, TypeError) as exc:
            raise click.BadParameter(str(exc), ctx, param) from None
    return url


_db = click.option(
    "--db",
    metavar="URL",
    callback=_store_url,
    help=(
        "read this store (sqlite:///path.db, postgresql://...) directly, read-only,"
        " instead of asking a server"
    ),
)


def _guarded(f: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a command: whatever fails ends it with one `error:` line and status 1, never
    a traceback (click's own exceptions carry their statuses through)."""
    try:
        return f(*args, **kwargs)
    except (click.ClickException, click.exceptions.Exit, click.Abort):
        raise
    except KeyboardInterrupt:
        raise click.exceptions.Exit(130) from None
    except Exception as exc:
        raise RequestFailed(type(exc).__name__, str(exc)) from None


def with_client(f: F) -> F:
    """A command that talks to a server: called as `f(client, out, **arguments)`."""

    @functools.wraps(f)
    def command(url: str, auth_token: str | None, as_json: bool, **kwargs: Any) -> Any:
        from ._client import HttpClient  # httpx: only the commands that ask a server

        client = HttpClient(url, auth_token)
        try:
            return _guarded(f, client, Output(as_json), **kwargs)
        finally:
            client.close()

    return _url(_token(_json(command)))  # type: ignore[return-value]


def with_source(f: F) -> F:
    """A read command: a server, or with `--db` a store; `f(source, out, **arguments)`."""

    @functools.wraps(f)
    def command(
        url: str, auth_token: str | None, as_json: bool, db: str | None, **kwargs: Any
    ) -> Any:
        source: Source
        if db:
            # Imported here: it loads the HTTP package's serializers (and starlette), which
            # the commands that ask a server never need.
            from ._store_source import StoreSource

            source = _guarded(StoreSource, db)
        else:
            from ._client import HttpClient

            source = HttpClient(url, auth_token)
        try:
            return _guarded(f, source, Output(as_json), **kwargs)
        finally:
            source.close()

    return _url(_token(_db(_json(command))))  # type: ignore[return-value]
