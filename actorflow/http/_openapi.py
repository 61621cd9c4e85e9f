"""The OpenAPI 3.1 description of the HTTP API, served at `GET /v1/openapi.json`.

Written by hand next to the routes (`_runs.py`, `_workflows.py`): the API's
shapes are the contract in API.md, not derived from code. A test checks that
every route is described and that the fuzzer finds no input answered with 500.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import actorflow as af

from ._workflow_types import START, START_BATCH, add_typed_routes

Schema = dict[str, Any]

_NULLABLE_STR: Schema = {"type": ["string", "null"]}
_NAMES: Schema = {"type": "array", "items": {"type": "string"}}
_TIME: Schema = {"type": "string", "format": "date-time", "description": "ISO-8601, UTC"}
_NULLABLE_TIME: Schema = {"type": ["string", "null"], "format": "date-time"}
_ANY: Schema = {"description": "any JSON value"}
_PROMETHEUS_TEXT: Schema = {"type": "string", "format": "prometheus-text"}
_STATUS: Schema = {"type": "string", "enum": [s.value for s in af.RunStatus]}

_ERROR_TEXT = {
    400: "malformed JSON, or a body or query of the wrong shape",
    401: "a valid bearer token is required",
    403: "the server has no token and the client is not on the loopback interface",
    404: "unknown run, workflow, hook or schedule; for /metrics, metrics are not enabled",
    409: "the run is not in a state that allows this, or the id exists",
    413: "the body is over the engine's max_payload_bytes",
    415: "the body is not JSON",
    422: "a value that cannot be used: wrong number of arguments, an argument that does not "
    "fit the workflow's annotations or an event payload that does not fit its known type "
    "(ValidationError), bad id or name",
    503: "the engine is closing",
}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(properties: dict[str, Schema], required: list[str] | None = None) -> Schema:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
    }


def _json(schema: Schema) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _content(schema: Schema) -> dict[str, Any]:
    text_type = {"event-stream": "text/event-stream", "prometheus-text": "text/plain"}
    found = text_type.get(schema.get("format", ""))
    return _json(schema) if found is None else {found: {"schema": {"type": "string"}}}


def _operation(
    summary: str,
    answers: dict[int, tuple[str, Schema | None]],
    errors: tuple[int, ...],
    parameters: Sequence[Schema] = (),
    body: Schema | None = None,
    body_required: bool = True,
) -> Schema:
    responses: dict[str, Any] = {}
    for status, (text, schema) in answers.items():
        responses[str(status)] = {"description": text}
        if schema is not None:
            responses[str(status)]["content"] = _content(schema)
    if any(p["in"] == "path" for p in parameters):
        errors = (*errors, 422)  # a name the engine refuses (an id with control characters)
    for status in sorted({*errors, 401, 403, 503}):
        responses[str(status)] = {"$ref": f"#/components/responses/{status}"}
    op: Schema = {"summary": summary, "responses": responses}
    if parameters:
        op["parameters"] = list(parameters)
    if body is not None:
        op["requestBody"] = {"required": body_required, "content": _json(body)}
    return op


def _path(name: str, description: str) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "minLength": 1},
    }


def _query(name: str, schema: Schema, description: str) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


_RUN_ID = _path("id", "the run's id")
_LAST_EVENT_ID: Schema = {
    "name": "Last-Event-ID",
    "in": "header",
    "required": False,
    "description": "resume after this index (what an EventSource sends when it reconnects)",
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
}
_EVENT_STREAM: Schema = {"type": "string", "format": "event-stream"}

_SCHEMAS: dict[str, Schema] = {
    "Error": _obj(
        {
            "error": _obj(
                {
                    "type": {"type": "string"},
                    "message": {"type": "string"},
                    "argument": {
                        **_NULLABLE_STR,
                        "description": "ValidationError: the argument (null: not one)",
                    },
                    "path": {"type": "string", "description": "ValidationError: where in it"},
                    "reason": {"type": "string", "description": "ValidationError: what fits"},
                },
                required=["type", "message"],
            )
        }
    ),
    "ErrorInfo": _obj(
        {"type": {"type": "string"}, "message": {"type": "string"}, "traceback": _NULLABLE_STR}
    ),
    "Step": _obj(
        {
            "seq": {"type": "integer"},
            "name": {"type": "string"},
            "status": {"type": "string", "enum": ["running", "retrying", "completed", "failed"]},
            "attempts": {"type": "integer"},
            "result": _ANY,
            "error": {"oneOf": [_ref("ErrorInfo"), {"type": "null"}]},
            "started_at": _NULLABLE_TIME,
            "completed_at": _NULLABLE_TIME,
        }
    ),
    "Run": _obj(
        {
            "id": {"type": "string"},
            "workflow": {"type": "string"},
            "status": _STATUS,
            "args": {"type": "array"},
            "result": _ANY,
            "error": {"oneOf": [_ref("ErrorInfo"), {"type": "null"}]},
            "metadata": _ANY,
            "parent_id": _NULLABLE_STR,
            "created_at": _TIME,
            "started_at": _NULLABLE_TIME,
            "completed_at": _NULLABLE_TIME,
            "steps": {"type": "array", "items": _ref("Step"), "description": "empty in lists"},
            "steps_done": {"type": "integer", "description": "steps of this execution completed"},
            "streams": {**_NAMES, "description": "namespaces; empty in lists"},
        }
    ),
    "RunEvent": _obj(
        {
            "index": {"type": "integer"},
            "kind": {"type": "string"},
            "at": _TIME,
            "generation": {"type": "integer"},
            "seq": {"type": ["integer", "null"]},
            "name": _NULLABLE_STR,
            "data": _ANY,
        }
    ),
    "Workflow": _obj(
        {
            "name": {"type": "string"},
            "concurrency": {"type": ["integer", "null"]},
            "schedules": _NAMES,
            "schemas": {
                "description": "JSON Schemas of the arguments (an array) and the result; "
                "null when the workflow's type hints do not resolve",
                "oneOf": [
                    _obj({"args": {"type": "object"}, "result": {"type": "object"}}),
                    {"type": "null"},
                ],
            },
            "runs": {
                "type": "object",
                "description": "run counts by status",
                "additionalProperties": {"type": "integer"},
            },
        }
    ),
    "Outcome": _obj(
        {
            "status": {"type": "string", "enum": ["completed", "failed", "terminated"]},
            "result": _ANY,
            "error": {"oneOf": [_ref("ErrorInfo"), {"type": "null"}]},
        }
    ),
    "Control": _obj({"id": {"type": "string"}, "status": _STATUS}),
    "Schedule": _obj(
        {
            "id": {"type": "string"},
            "workflow": {"type": "string"},
            "cron": {"type": "string"},
            "args": {"type": "array"},
            "timezone": {"type": "string"},
            "overlap": {"type": "string"},
            "catchup": {"type": "string"},
            "paused": {"type": "boolean"},
            "declared": {"type": "boolean"},
            "next_time": _NULLABLE_TIME,
            "recent": {
                "type": "array",
                "items": _obj(
                    {
                        "scheduled_time": _TIME,
                        "run_id": _NULLABLE_STR,
                        "outcome": {"type": "string", "enum": ["started", "skipped", "buffered"]},
                    }
                ),
            },
            "metadata": _ANY,
            "created_at": _NULLABLE_TIME,
        }
    ),
    "CreateSchedule": _obj(
        {
            "id": {"type": "string", "minLength": 1},
            "workflow": {"type": "string", "minLength": 1},
            "cron": {"type": "string", "description": "5 or 6 fields, @hourly..., @every 30s"},
            "args": {"type": "array"},
            "timezone": {"type": "string", "default": "UTC"},
            "overlap": {
                "type": "string",
                "enum": ["skip", "buffer_one", "buffer_all", "terminate_other", "allow"],
            },
            "catchup": {"type": "string", "enum": ["latest", "all", "skip"]},
            "paused": {"type": "boolean"},
            "metadata": _ANY,
        },
        required=["id", "workflow", "cron"],
    ),
    "StartRun": _obj(
        {
            "args": {"type": "array", "description": "the workflow's positional arguments"},
            "id": {"type": "string", "minLength": 1, "maxLength": 255},
            "metadata": _ANY,
            "if_exists": {"type": "string", "enum": ["return", "error"], "default": "return"},
        },
        required=[],
    ),
    "StartBatch": _obj(
        {
            "runs": {
                "type": "array",
                "items": _obj(
                    {"args": {"type": "array"}, "id": {"type": "string", "minLength": 1}},
                    required=[],
                ),
            }
        },
        required=[],
    ),
}


def _paths() -> dict[str, Any]:
    run = ("the run", _ref("Run"))
    control = ("the run's status after the change", _ref("Control"))
    runs_list = {"type": "array", "items": _ref("Run")}
    paths: dict[str, Any] = {
        "/healthz": {
            "get": _operation(
                "200 when the engine is open and its store answers",
                {200: ("healthy", _obj({"status": {"const": "ok"}}))},
                (),
            )
        },
        "/metrics": {
            "get": _operation(
                "actorflow's OpenTelemetry metrics as Prometheus text (needs the otel extra "
                "and a PrometheusMetricReader on the instrumented meter provider; else 404)",
                {200: ("Prometheus text exposition format 0.0.4", _PROMETHEUS_TEXT)},
                (404,),
            )
        },
        "/v1/openapi.json": {
            "get": _operation("this document", {200: ("OpenAPI 3.1", {"type": "object"})}, ())
        },
        "/v1/workflows": {
            "get": _operation(
                "the registered workflows, with run counts by status",
                {
                    200: (
                        "workflows",
                        _obj({"workflows": {"type": "array", "items": _ref("Workflow")}}),
                    )
                },
                (),
            )
        },
        START: {
            "post": _operation(
                "start a run",
                {
                    201: ("the new run", _ref("Run")),
                    200: ("the existing run with this id", _ref("Run")),
                },
                (400, 404, 409, 413, 415, 422),
                [_path("name", "the workflow's registered name")],
                _ref("StartRun"),
            )
        },
        START_BATCH: {
            "post": _operation(
                "start many runs in one commit: all or none",
                {201: ("the runs, in order", _obj({"runs": runs_list}))},
                (400, 404, 413, 415, 422),
                [_path("name", "the workflow's registered name")],
                _ref("StartBatch"),
            )
        },
        "/v1/runs": {
            "get": _operation(
                "runs, newest first",
                {200: ("a page", _obj({"runs": runs_list, "next_cursor": _NULLABLE_STR}))},
                (400,),
                [
                    _query("workflow", {"type": "string"}, "only this workflow's runs"),
                    _query("status", {"type": "string"}, "statuses, comma-separated"),
                    _query(
                        "limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "page size"
                    ),
                    _query("cursor", {"type": "string"}, "next_cursor of the previous page"),
                ],
            )
        },
        "/v1/runs/{id}": {
            "get": _operation("a run, with its steps", {200: run}, (404,), [_RUN_ID])
        },
        "/v1/runs/{id}/result": {
            "get": _operation(
                "the outcome, waiting for it up to `wait` seconds (pushed, not polled)",
                {
                    200: ("the run is final", _ref("Outcome")),
                    202: ("not final yet", _obj({"status": _STATUS})),
                },
                (400, 404),
                [
                    _RUN_ID,
                    _query("wait", {"type": "number", "minimum": 0, "maximum": 3600}, "seconds"),
                ],
            )
        },
        "/v1/runs/{id}/restart": {
            "post": _operation(
                "run again, from the start or from the first step named `from_step`",
                {200: control},
                (400, 404, 409, 413, 415, 422),
                [_RUN_ID],
                _obj({"from_step": _NULLABLE_STR}, required=[]),
                body_required=False,
            )
        },
        "/v1/runs/{id}/events/{type}": {
            "post": _operation(
                "send an event: the body is its payload",
                {202: ("recorded", _obj({"id": {"type": "string"}, "type": {"type": "string"}}))},
                (400, 404, 413, 415, 422),
                [_RUN_ID, _path("type", "the event type the workflow waits for")],
                _ANY,
                body_required=False,
            )
        },
        "/v1/hooks/{token}": {
            "post": _operation(
                "send a payload to the run holding the hook",
                {202: ("recorded", _obj({"token": {"type": "string"}}))},
                (400, 404, 413, 415, 422),
                [_path("token", "the hook's token")],
                _ANY,
                body_required=False,
            )
        },
        "/v1/runs/{id}/events": {
            "get": _operation(
                "the event log: JSON, or with Accept: text/event-stream recorded then live "
                "events as Server-Sent Events (id: the index) until the run ends",
                {
                    200: (
                        "the events",
                        _obj({"events": {"type": "array", "items": _ref("RunEvent")}}),
                    )
                },
                (400, 404),
                [_RUN_ID, _LAST_EVENT_ID],
            )
        },
        "/v1/runs/{id}/stream": {
            "get": _operation(
                "the run's stream as Server-Sent Events (id: the chunk index; bytes chunks as "
                "`event: bytes` with base64 data) until it closes or the run ends, which a "
                "last message `event: end` (no data) marks: a response that ends without it "
                "was cut short (the server is restarting)",
                {200: ("Server-Sent Events", _EVENT_STREAM)},
                (400, 404),
                [
                    _RUN_ID,
                    _query(
                        "namespace", {"type": "string", "minLength": 1, "maxLength": 200}, "stream"
                    ),
                    _query(
                        "start", {"type": "integer"}, "first index; negative counts from the end"
                    ),
                    _LAST_EVENT_ID,
                ],
            )
        },
    }
    schedule = ("the schedule", _ref("Schedule"))
    schedule_id = _path("id", "the schedule's id")
    paths["/v1/schedules"] = {
        "get": _operation(
            "every schedule, by id",
            {200: ("schedules", _obj({"schedules": {"type": "array", "items": _ref("Schedule")}}))},
            (),
        ),
        "post": _operation(
            "create a schedule, or update the one with this id in place; a bad expression, "
            "zone, policy, workflow or argument is 422",
            {201: ("created", _ref("Schedule")), 200: ("updated", _ref("Schedule"))},
            (400, 413, 415, 422),
            body=_ref("CreateSchedule"),
        ),
    }
    paths["/v1/schedules/{id}"] = {
        "get": _operation("a schedule", {200: schedule}, (404,), [schedule_id]),
        "delete": _operation(
            "delete a schedule (its unfinished runs go on); a declared one is 422",
            {200: ("deleted", _obj({"id": {"type": "string"}}))},
            (404,),
            [schedule_id],
        ),
    }
    for action in ("pause", "resume"):
        paths[f"/v1/schedules/{{id}}/{action}"] = {
            "post": _operation(f"{action} the schedule", {200: schedule}, (404,), [schedule_id])
        }
    paths["/v1/schedules/{id}/trigger"] = {
        "post": _operation(
            "start one run now, outside the cron",
            {201: ("the run", _ref("Run"))},
            (404,),
            [schedule_id],
        )
    }
    listed = paths["/v1/runs/{id}/events"]["get"]["responses"]["200"]["content"]
    listed["text/event-stream"] = {"schema": {"type": "string"}}
    for action in ("pause", "resume", "terminate"):
        paths[f"/v1/runs/{{id}}/{action}"] = {
            "post": _operation(f"{action} the run", {200: control}, (404, 409), [_RUN_ID])
        }
    return paths


def openapi_document(workflows: Iterable[af.WorkflowFunction[Any, Any]] = ()) -> dict[str, Any]:
    """The OpenAPI 3.1 document (paths relative to where the app is mounted), with a
    typed start route for each of `workflows`."""
    paths = _paths()
    schemas = dict(_SCHEMAS)
    add_typed_routes(workflows, paths, schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "actorflow",
            "version": af.__version__,
            "description": "Start, inspect and control durable workflow runs. Errors are "
            '`{"error": {"type", "message"}}`.',
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": {
                str(status): {"description": text, "content": _json(_ref("Error"))}
                for status, text in _ERROR_TEXT.items()
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}, {}],
    }
