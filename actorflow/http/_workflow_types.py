"""Each workflow's types in the HTTP API: the JSON Schemas of its arguments and result
(`af.workflow_schemas`) as `GET /v1/workflows` lists them, and its start routes in the
OpenAPI document, typed by them.

The typed routes are concrete paths (`/v1/workflows/order/runs`) next to the templated
one (OpenAPI matches concrete paths first). The types they use are component schemas
named after the workflow (`order.Order`), so two workflows' types of one name never
clash, and none clashes with the API's own (`Run`, `Error`, ...).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

import actorflow as af

Schema = dict[str, Any]

START = "/v1/workflows/{name}/runs"
START_BATCH = "/v1/workflows/{name}/runs/batch"
_COMPONENTS = "#/components/schemas/"


class SchemaCache:
    """Each workflow's `{"args", "result"}` schemas, made once (the dashboard lists the
    workflows every few seconds); None for a workflow whose hints do not resolve."""

    def __init__(self) -> None:
        self._made: dict[af.WorkflowFunction[Any, Any], Schema | None] = {}

    def of(self, workflow: af.WorkflowFunction[Any, Any]) -> Schema | None:
        if workflow not in self._made:
            try:
                schemas = af.workflow_schemas(workflow)
            except TypeError:  # its runs fail with that error; the listing goes on
                self._made[workflow] = None
            else:
                self._made[workflow] = {"args": schemas.args, "result": schemas.result}
        return self._made[workflow]


def add_typed_routes(
    workflows: Iterable[af.WorkflowFunction[Any, Any]],
    paths: dict[str, Any],
    components: dict[str, Schema],
) -> None:
    """Add to `paths` each workflow's start and batch routes: copies of the templated
    ones whose arguments and results have the workflow's schemas, the types they use
    added to `components`. A workflow whose hints do not resolve has only the
    templated routes."""
    prefixes: set[str] = set()
    for workflow in workflows:
        prefix = _unique(re.sub(r"[^A-Za-z0-9_-]", "_", workflow.name), prefixes)
        template = f"{_COMPONENTS}{prefix}.{{name}}"
        try:
            schemas = af.workflow_schemas(workflow, ref_template=template)
        except TypeError:
            continue
        components.update({f"{prefix}.{name}": s for name, s in schemas.defs.items()})
        args = {**schemas.args, "description": f"the arguments of {workflow.name!r}"}
        run: Schema = {
            "allOf": [
                {"$ref": f"{_COMPONENTS}Run"},
                {"properties": {"result": {"anyOf": [schemas.result, {"type": "null"}]}}},
            ]
        }
        required = ["args"] if schemas.args.get("minItems") else []

        start = _concrete(paths[START]["post"], workflow.name)
        body = copy.deepcopy(components["StartRun"])
        body["properties"]["args"], body["required"] = args, required
        _set_body(start, body)
        _set_answer(start, "200", run)
        _set_answer(start, "201", run)

        batch = _concrete(paths[START_BATCH]["post"], workflow.name)
        body = copy.deepcopy(components["StartBatch"])
        entry = body["properties"]["runs"]["items"]
        entry["properties"]["args"], entry["required"] = args, required
        _set_body(batch, body)
        runs = {"type": "array", "items": run}
        _set_answer(batch, "201", {**_answer(batch, "201"), "properties": {"runs": runs}})

        at = f"/v1/workflows/{quote(workflow.name, safe='')}/runs"
        paths[at] = {"post": start}
        paths[f"{at}/batch"] = {"post": batch}


def _concrete(operation: Schema, name: str) -> Schema:
    """A copy of a templated operation, for the workflow `name` (no path parameter)."""
    typed = copy.deepcopy(operation)
    typed["summary"] = f"{operation['summary']}: {name}"
    typed.pop("parameters", None)
    return typed


def _set_body(operation: Schema, schema: Schema) -> None:
    operation["requestBody"]["content"]["application/json"]["schema"] = schema


def _answer(operation: Schema, status: str) -> Schema:
    schema: Schema = operation["responses"][status]["content"]["application/json"]["schema"]
    return schema


def _set_answer(operation: Schema, status: str, schema: Schema) -> None:
    operation["responses"][status]["content"]["application/json"]["schema"] = schema


def _unique(prefix: str, taken: set[str]) -> str:
    """`prefix`, or `prefix_2`, `prefix_3`... if taken (names that differ only in
    characters a component name cannot hold); added to `taken`."""
    found, n = prefix, 1
    while found in taken:
        n += 1
        found = f"{prefix}_{n}"
    taken.add(found)
    return found
