"""The JSON shapes of runs, steps, errors, events, workflows and schedules: what the HTTP
API answers, and what the `actorflow` command prints of a store it reads (`--db`), so
both print the same. Outside `actorflow.http`, whose import starts with Starlette's."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import actorflow as af


def iso(at: datetime | None) -> str | None:
    """An aware datetime as ISO-8601 UTC."""
    return None if at is None else at.isoformat()


def error_json(error: af.ErrorInfo | None) -> dict[str, Any] | None:
    if error is None:
        return None
    return {"type": error.type, "message": error.message, "traceback": error.traceback}


def step_json(step: af.StepRecord) -> dict[str, Any]:
    return {
        "seq": step.seq,
        "name": step.name,
        "status": step.status,
        "attempts": step.attempts,
        "result": step.result,
        "error": error_json(step.error),
        "started_at": iso(step.started_at),
        "completed_at": iso(step.completed_at),
    }


def run_json(info: af.RunInfo) -> dict[str, Any]:
    """A run as `GET /v1/runs/{id}` returns it (`steps` and `streams` empty in listings)."""
    return {
        "id": info.id,
        "workflow": info.workflow,
        "status": info.status.value,
        "args": info.args,
        "result": info.result,
        "error": error_json(info.error),
        "metadata": info.metadata,
        "parent_id": info.parent_id,
        "created_at": iso(info.created_at),
        "started_at": iso(info.started_at),
        "completed_at": iso(info.completed_at),
        "steps": [step_json(step) for step in info.steps],
        "steps_done": info.steps_done,
        "streams": list(info.streams),
    }


def event_json(event: af.RunEvent) -> dict[str, Any]:
    return {
        "index": event.index,
        "kind": event.kind,
        "at": iso(event.at),
        "generation": event.generation,
        "seq": event.seq,
        "name": event.name,
        "data": event.data,
    }


def workflow_json(
    workflow: af.WorkflowFunction[Any, Any],
    counts: dict[af.RunStatus, int],
    schemas: dict[str, Any] | None,
) -> dict[str, Any]:
    """A workflow as `GET /v1/workflows` lists it; `schemas` are its `{"args", "result"}`
    JSON Schemas (None when its hints do not resolve)."""
    return {
        "name": workflow.name,
        "concurrency": workflow.concurrency,
        "schedules": list(workflow.schedules),
        "schemas": schemas,
        "runs": {status.value: counts.get(status, 0) for status in af.RunStatus},
    }


def schedule_json(info: af.ScheduleInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "workflow": info.workflow,
        "cron": info.cron,
        "args": info.args,
        "timezone": info.timezone,
        "overlap": info.overlap,
        "catchup": info.catchup,
        "paused": info.paused,
        "declared": info.declared,
        "next_time": iso(info.next_time),
        "recent": [
            {"scheduled_time": iso(t.scheduled_time), "run_id": t.run_id, "outcome": t.outcome}
            for t in info.recent
        ],
        "metadata": info.metadata,
        "created_at": iso(info.created_at),
    }
