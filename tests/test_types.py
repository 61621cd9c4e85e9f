"""Typed values: arguments checked where they enter, values decoded into their annotated types
(live, and after SIGKILL + reopen: the same objects), JSON Schemas, and old runs."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sys
import uuid
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

import actorflow as af
from actorflow._definitions import WorkflowFunction
from actorflow._types import to_json_native

from . import typed_program as tp
from .conftest import wait_for_status

TIMEOUT = 30.0
PROGRAM = str(Path(tp.__file__).resolve())


async def _finish(engine: af.Engine, run: af.Run[tp.Report]) -> tp.Report:
    await run.send_event("approval", tp.APPROVAL)
    return await run.result(timeout=TIMEOUT)


def _check_report(report: tp.Report) -> None:
    assert isinstance(report, tp.Report)
    assert report.mismatches == []
    assert tp.same(report.order, tp.ORDER)
    assert tp.same(report.at, tp.AT)
    assert report.color is tp.Color.BLUE
    assert tp.same(report.approval, tp.APPROVAL)


async def test_every_supported_type_through_arguments_steps_an_event_and_the_result(
    store_url: str,
) -> None:
    async with af.Engine(store_url, workflows=[tp.everything]) as engine:
        run = await engine.start(tp.everything, tp.ORDER, tp.AT, tp.Color.BLUE)
        _check_report(await _finish(engine, run))
        # What was stored is JSON (no pickle): readable without actorflow's types.
        info = await run.info()
        assert info.args[0]["lines"][0] == {"sku": "lamp", "qty": 2, "price": "19.95"}
        assert info.args[2] == "blue"
        assert info.result["order"]["id"] == str(uuid.UUID(int=42))
        # A handle made from the id alone returns the JSON; with the workflow, the type.
        assert isinstance(await engine.get_run(run.id).result(), dict)
        again = await engine.get_run(run.id, workflow=tp.everything).result()
        _check_report(again)


async def test_typed_values_are_the_same_objects_after_sigkill_and_reopen(tmp_path: Path) -> None:
    db = tmp_path / "typed.db"
    stderr = tmp_path / "stderr.txt"
    with stderr.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            PROGRAM,
            str(db),
            "typed-1",
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
        )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(60):
            while not lines or lines[-1] != "held":
                raw = await proc.stdout.readline()
                assert raw, f"the program exited: {lines} {stderr.read_text()}"
                lines.append(raw.decode().strip())
        proc.kill()
        await proc.wait()
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    # Live, in the killed process, every value was what the workflow expected.
    assert "checked -" in lines, lines
    # Reopened here: the log is replayed (the steps do not run again), and the workflow
    # compares the decoded values once more.
    async with af.Engine(f"sqlite:///{db}", workflows=[tp.everything]) as engine:
        run = engine.get_run("typed-1", workflow=tp.everything)
        _check_report(await _finish(engine, run))
        # Only the step that was running when the process died ran again.
        again = [s.name for s in (await run.info()).steps if s.attempts > 1]
        assert again == ["typed.hold"]


def _round_trip(name: str, annotation: Any, value: Any) -> WorkflowFunction[..., Any]:
    """A workflow of one type: its argument, a step's result and an event payload are
    checked against `value` in the run (live and on replay); it returns the step's."""

    async def echo(v: Any) -> Any:
        return v

    echo.__annotations__ = {"v": annotation, "return": annotation}
    step = af.step(name=f"typed.rt.{name}.echo")(echo)

    async def body(v: Any) -> Any:
        got = await step(v)
        event = await af.wait_for_event("value", type=annotation)
        wrong = [what for what, x in (("arg", v), ("step", got), ("event", event))
                 if not tp.same(x, value)]  # fmt: skip
        if wrong:
            raise af.FatalError(f"not the same {annotation!r}: {wrong}")
        return got

    body.__annotations__ = {"v": annotation, "return": annotation}
    return WorkflowFunction(body, name=f"typed.rt.{name}", concurrency=None, deadline=None)


@pytest.mark.parametrize(("name", "annotation", "value"), tp.CASES, ids=[c[0] for c in tp.CASES])
async def test_each_type_as_argument_step_result_event_and_result_across_a_reopen(
    sqlite_url: str, name: str, annotation: Any, value: Any
) -> None:
    """One run live to the end; another live up to the wait, then replayed from the store by
    a new engine (arguments and the step's result decoded from their JSON) to the end."""
    wf = _round_trip(name, annotation, value)
    async with af.Engine(sqlite_url, workflows=[wf]) as engine:
        live, run = await engine.start(wf, value), await engine.start(wf, value)
        await live.send_event("value", value)
        assert tp.same(await live.result(timeout=TIMEOUT), value)
        await wait_for_status(run, af.RunStatus.WAITING, timeout=TIMEOUT)
    async with af.Engine(sqlite_url, workflows=[wf]) as engine:
        run = engine.get_run(run.id, workflow=wf)
        await run.send_event("value", value)
        assert tp.same(await run.result(timeout=TIMEOUT), value)
        assert [s.attempts for s in (await run.info()).steps] == [1]  # replayed, not rerun


@af.workflow(name="typed.child")
async def typed_child(line: tp.Line, when: datetime) -> tp.Line:
    return dataclasses.replace(line, qty=line.qty + 1)


@af.workflow(name="typed.parent")
async def typed_parent(bad: bool) -> dict[str, Any]:
    arg: Any = {"sku": "a", "qty": "two", "price": "1"} if bad else tp.Line("a", 1, Decimal(1))
    try:
        child = await af.start(typed_child, arg, tp.AT)
    except af.ValidationError as exc:
        return {"refused": str(exc), "argument": exc.argument, "path": exc.path}
    line = await child.result()
    return {"child": [type(line).__name__, line.qty]}


async def test_a_child_start_checks_arguments_and_its_result_is_decoded(
    engine: af.Engine,
) -> None:
    ok = await engine.start(typed_parent, False)
    assert await ok.result(timeout=TIMEOUT) == {"child": ["Line", 2]}
    bad = await engine.start(typed_parent, True)
    refused = await bad.result(timeout=TIMEOUT)
    assert refused["argument"] == "line"
    assert refused["path"] == ".qty"
    assert refused["refused"] == (
        "child run: workflow 'typed.child': argument 'line' does not fit its annotation Line "
        "at .qty: Expected `int`, got `str`"
    )
    # Nothing was stored for the refused child.
    assert {r.id for r in await engine.list_runs(workflow=typed_child)} == {f"{ok.id}~0"}


@af.workflow(name="typed.sum")
async def summed(a: int, b: int) -> int:
    return a + b


@pytest.mark.parametrize(
    ("args", "argument", "path", "reason"),
    [
        (("a", "b"), "a", "", "Expected `int`, got `str`"),
        ((1, 2.5), "b", "", "Expected `int`, got `float`"),
    ],
)
async def test_start_refuses_arguments_that_do_not_fit_and_stores_nothing(
    engine: af.Engine, args: tuple[Any, ...], argument: str, path: str, reason: str
) -> None:
    with pytest.raises(af.ValidationError) as caught:
        await engine.start(summed, *args, id="never")
    assert isinstance(caught.value, ValueError)
    assert (caught.value.argument, caught.value.path, caught.value.reason) == (
        argument,
        path,
        reason,
    )
    assert await engine.list_runs() == []


async def test_start_and_start_many_name_the_path_inside_an_argument(engine: af.Engine) -> None:
    bad = dataclasses.replace(tp.ORDER, lines=[tp.Line("x", "many", Decimal(1))])  # type: ignore[arg-type]
    message = r"argument 'order' does not fit its annotation Order at \.lines\[0\]\.qty"
    with pytest.raises(af.ValidationError, match=message):
        await engine.start(tp.everything, bad, tp.AT, tp.Color.BLUE)
    as_json = orjson.loads(orjson.dumps(tp.ORDER, default=to_json_native))
    as_json["address"] = {"street": 1}
    with pytest.raises(af.ValidationError) as caught:
        await engine.start_many(
            tp.everything, [(tp.ORDER, tp.AT, "blue"), (as_json, tp.AT, tp.Color.BLUE)]
        )
    assert str(caught.value).startswith("inputs[1]: workflow 'typed.everything'")
    assert (caught.value.argument, caught.value.path) == ("order", ".address.street")
    with pytest.raises(af.ValidationError, match=r"argument 'color'.*Invalid enum value 'green'"):
        await engine.start(tp.everything, tp.ORDER, tp.AT, "green")
    assert await engine.list_runs() == []


async def test_arguments_in_json_form_are_accepted_and_decoded(engine: af.Engine) -> None:
    as_json = orjson.loads(orjson.dumps(tp.ORDER, default=to_json_native))
    run = await engine.start(tp.everything, as_json, tp.AT.isoformat(), "blue")
    _check_report(await _finish(engine, run))


def test_json_schemas_of_a_few_signatures() -> None:
    schemas = af.workflow_schemas(summed)
    assert schemas.args == {
        "type": "array",
        "prefixItems": [
            {"type": "integer", "title": "a"},
            {"type": "integer", "title": "b"},
        ],
        "minItems": 2,
        "maxItems": 2,
        "items": False,
    }
    assert schemas.result == {"type": "integer"}
    typed = af.workflow_schemas("typed.child")
    assert typed.args["prefixItems"] == [
        {"$ref": "#/$defs/Line", "title": "line"},
        {"type": "string", "title": "when"},  # msgspec: naive or aware, so no "date-time"
    ]
    assert typed.args["$defs"]["Line"]["properties"]["price"] == {
        "type": "string",
        "format": "decimal",
    }
    assert typed.result["$ref"] == "#/$defs/Line"
    everything = af.workflow_schemas(tp.everything)
    defs = everything.result["$defs"]
    assert defs["Color"] == {"title": "Color", "enum": ["blue", "red"]}
    assert defs["Address"]["required"] == ["street", "city"]
    assert defs["Order"]["properties"]["tags"]["uniqueItems"] is True
    unannotated = af.workflow_schemas(_unannotated)
    assert unannotated.args["prefixItems"] == [{"title": "x", "default": None}]
    assert unannotated.args["minItems"] == 0
    assert unannotated.result == {}
    with pytest.raises(af.WorkflowNotRegisteredError):
        af.workflow_schemas("typed.nope")
    # Refs placed elsewhere (an OpenAPI document's components): the types only in `defs`.
    placed = af.workflow_schemas(typed_child, ref_template="#/components/schemas/c.{name}")
    assert placed.args["prefixItems"][0] == {
        "$ref": "#/components/schemas/c.Line",
        "title": "line",
    }
    assert "$defs" not in placed.args and "$defs" not in placed.result
    assert placed.defs == typed.defs == typed.args["$defs"]


@af.workflow(name="typed.pydantic")
async def typed_quote(quote: tp.Quote, extra: list[tp.Quote] | None = None) -> tp.Quote:
    return quote.model_copy(update={"total": quote.total * 2})


async def test_pydantic_models_as_arguments_and_results_with_schemas(engine: af.Engine) -> None:
    quote = tp.Quote(total=Decimal("1.5"), valid_until=tp.AT)
    run = await engine.start(typed_quote, quote)
    doubled = await run.result(timeout=TIMEOUT)
    assert isinstance(doubled, tp.Quote)
    assert doubled == tp.Quote(total=Decimal("3.0"), valid_until=tp.AT)
    with pytest.raises(af.ValidationError) as caught:
        await engine.start(typed_quote, {"total": "lots", "valid_until": "2026-12-02T00:00:00Z"})
    assert caught.value.argument == "quote"
    assert "decimal" in caught.value.reason
    schemas = af.workflow_schemas(typed_quote)
    assert schemas.args["prefixItems"] == [
        {"$ref": "#/$defs/Quote", "title": "quote"},
        {"anyOf": [{"type": "array", "items": {"$ref": "#/$defs/Quote"}}, {"type": "null"}],
         "title": "extra", "default": None},
    ]  # fmt: skip
    placed = af.workflow_schemas(typed_quote, ref_template="#/components/schemas/p.{name}")
    assert placed.result == {"$ref": "#/components/schemas/p.Quote"}
    assert set(placed.defs["Quote"]["properties"]) == {"total", "valid_until"}
    assert schemas.args["minItems"] == 1
    assert schemas.args["maxItems"] == 2
    assert set(schemas.args["$defs"]["Quote"]["properties"]) == {"total", "valid_until"}
    assert schemas.result["$ref"] == "#/$defs/Quote"


@af.workflow(name="typed.unannotated")
async def _unannotated(x=None, *rest):  # type: ignore[no-untyped-def]
    return x


async def test_unannotated_and_any_accept_any_json_value(engine: af.Engine) -> None:
    run = await engine.start(_unannotated, {"a": [1, "b"]}, 2, "three")
    assert await run.result(timeout=TIMEOUT) == {"a": [1, "b"]}


async def test_a_nan_inside_a_set_or_an_attrs_class_is_refused_naming_its_place(
    engine: af.Engine,
) -> None:
    """Sets and attrs classes are stored now: hardening's refusal of what JSON cannot hold
    (orjson would write NaN and infinity as null) looks inside them too."""
    with pytest.raises(af.SerializationError, match=r"^args\[0\]\[0\] cannot .*: nan is not"):
        await engine.start(_unannotated, {float("nan")})
    address = tp.Address("1 Main St", float("inf"))  # type: ignore[arg-type]
    with pytest.raises(af.SerializationError, match=r"^args\[0\]\.city cannot .*: inf is not"):
        await engine.start(_unannotated, address)
    assert await engine.list_runs() == []


# -- dicts whose keys are not strings --------------------------------------------------------


@dataclasses.dataclass
class _Stock:
    by_day: dict[date, int]
    by_color: dict[tp.Color, int]


@af.step(name="typed.keys.count")
async def _count_keys(tally: dict[uuid.UUID, int], stock: _Stock) -> dict[int, str]:
    return {len(tally): "tally", sum(stock.by_day.values()): "stock"}


@af.workflow(name="typed.keys")
async def _keyed(tally: dict[uuid.UUID, int], stock: _Stock) -> tuple[dict[int, str], _Stock]:
    counted = await _count_keys(tally, stock)
    await af.wait_for_event("go")
    return counted, stock


@af.workflow(name="typed.keys.any")
async def _any_keys(tally: dict[Any, int]) -> None:
    return None


async def test_dicts_keyed_by_uuids_ints_dates_and_enums_round_trip_across_a_reopen(
    sqlite_url: str,
) -> None:
    """JSON keys are strings: a dict whose keys the annotation types (UUIDs, ints, dates,
    enums, in arguments, a step's result and the run's) is stored with string keys and
    comes back with its own, live and when a new engine replays the run from the store."""
    tally = {uuid.UUID(int=1): 3, uuid.UUID(int=2): 4}
    stock = _Stock({date(2026, 12, 1): 5, date(2026, 12, 2): 6}, {tp.Color.RED: 1})
    expected = ({2: "tally", 11: "stock"}, stock)
    async with af.Engine(sqlite_url, workflows=[_keyed]) as engine:
        live, held = (
            await engine.start(_keyed, tally, stock),
            await engine.start(_keyed, tally, stock),
        )
        (many,) = await engine.start_many(_keyed, [(tally, stock)])
        for run in (live, many):
            await run.send_event("go")
            assert tp.same(await run.result(timeout=TIMEOUT), expected)
        await wait_for_status(held, af.RunStatus.WAITING, timeout=TIMEOUT)
        info = await live.info()
        assert info.args[0] == {str(uuid.UUID(int=1)): 3, str(uuid.UUID(int=2)): 4}
        assert info.result == [{"2": "tally", "11": "stock"}, {
            "by_day": {"2026-12-01": 5, "2026-12-02": 6}, "by_color": {"red": 1}}]  # fmt: skip
    async with af.Engine(sqlite_url, workflows=[_keyed]) as engine:
        held = engine.get_run(held.id, workflow=_keyed)
        await held.send_event("go")
        assert tp.same(await held.result(timeout=TIMEOUT), expected)
        assert [s.attempts for s in (await held.info()).steps] == [1]  # replayed, not rerun


async def test_keys_no_annotation_types_are_refused_as_before(engine: af.Engine) -> None:
    """Without a key type to read them back as (`dict`, `dict[Any, ...]`, an event's
    payload), keys that are not strings would come back as strings: refused."""
    with pytest.raises(af.SerializationError, match=r"^args\[0\]\[1\] cannot .*: dict keys must"):
        await engine.start(_unannotated, {1: "one"})
    with pytest.raises(af.SerializationError, match=r"^args\[0\]\[UUID\(.*: dict keys must"):
        await engine.start(_any_keys, {uuid.UUID(int=1): 1})
    run = await engine.start(_unannotated, None)
    with pytest.raises(af.SerializationError, match=r"^event payload\[UUID\(.*: dict keys must"):
        await run.send_event("go", {uuid.UUID(int=1): 1})
    assert [r.id for r in await engine.list_runs()] == [run.id]


@af.workflow(name="typed.keys.event", events={"tally": dict[uuid.UUID, int]})
async def _tally_event() -> list[Any]:
    tally = await af.wait_for_event("tally")
    return [all(isinstance(key, uuid.UUID) for key in tally), sum(tally.values())]


async def test_an_event_declared_as_a_dict_keyed_by_uuids_is_sent_as_it_is(
    sqlite_url: str,
) -> None:
    """A payload type the workflow declares for an event names its keys' type: a dict
    keyed by UUIDs is sent (stored with string keys) and the wait gets UUID keys back,
    for a run in memory and one a new engine reads from the store. Other event types of
    the same run, and runs that do not exist, refuse such a payload as before."""
    tally = {uuid.UUID(int=1): 3, uuid.UUID(int=2): 4}
    async with af.Engine(sqlite_url, workflows=[_tally_event]) as engine:
        live = await engine.start(_tally_event)
        await live.send_event("tally", tally)
        assert await live.result(timeout=TIMEOUT) == [True, 7]
        held = await engine.start(_tally_event)
        await wait_for_status(held, af.RunStatus.WAITING, timeout=TIMEOUT)
    async with af.Engine(sqlite_url, workflows=[_tally_event]) as engine:
        held = engine.get_run(held.id)
        with pytest.raises(af.SerializationError, match=r"^event payload\[UUID\(.*: dict keys"):
            await held.send_event("other", tally)
        with pytest.raises(af.SerializationError, match=r"^event payload\[UUID\(.*: dict keys"):
            await engine.get_run("no-such-run").send_event("tally", tally)
        await held.send_event("tally", tally)
        assert await held.result(timeout=TIMEOUT) == [True, 7]
        events = [e async for e in held.events(follow=False) if e.kind == "event_received"]
        assert [e.data for e in events] == [{str(key): n for key, n in tally.items()}]


@pytest.mark.postgres
async def test_a_client_engine_sends_a_declared_dict_keyed_by_uuids(pg_url: str) -> None:
    """Sent from an engine that does not own the run, the payload is checked against the
    declared type and routed with its keys as strings; the owner's wait gets UUIDs."""
    tally = {uuid.UUID(int=1): 3, uuid.UUID(int=2): 4}
    async with (
        af.Engine(pg_url, workflows=[_tally_event]) as owner,
        af.Engine(pg_url, workflows=[_tally_event], execute=False) as sender,
    ):
        run = await owner.start(_tally_event)
        await wait_for_status(run, af.RunStatus.WAITING, timeout=TIMEOUT)
        await sender.get_run(run.id).send_event("tally", tally)
        assert await run.result(timeout=TIMEOUT) == [True, 7]


# -- runs recorded before the annotations changed -----------------------------------------


def _versioned(step: af.StepFunction[..., Any]) -> WorkflowFunction[..., Any]:
    """Version N of one workflow: the same name and calls, with `step` as its step."""

    async def body(n: int) -> Any:
        got = await step(n)
        await af.wait_for_event("go")
        return [type(got).__name__, got if isinstance(got, dict) else got.qty]

    return WorkflowFunction(body, name="typed.version", concurrency=None, deadline=None)


@af.step(name="typed.version.quote")
async def _quote_v1(n: int) -> dict[str, Any]:
    return {"sku": "lamp", "qty": n, "price": "19.95"}


@af.step(name="typed.version.quote")
async def _quote_v2(n: int) -> tp.Line:
    raise AssertionError("a recorded step does not run again")


@af.step(name="typed.version.quote")
async def _quote_v3(n: int) -> tp.Address:
    raise AssertionError("a recorded step does not run again")


async def _recorded_by_v1(url: str) -> str:
    v1 = _versioned(_quote_v1)
    async with af.Engine(url, workflows=[v1]) as engine:
        run = await engine.start(v1, 3)
        await wait_for_status(run, af.RunStatus.WAITING, timeout=TIMEOUT)
    return run.id


async def test_a_run_recorded_without_types_replays_and_decodes_into_new_types(
    durable_url: str,
) -> None:
    """A run recorded while its step returned a dict (JSON) is replayed after the step was
    annotated with a dataclass: the recorded JSON decodes into it."""
    run_id = await _recorded_by_v1(durable_url)
    v2 = _versioned(_quote_v2)
    async with af.Engine(durable_url, workflows=[v2]) as engine:
        run = engine.get_run(run_id)
        await run.send_event("go")
        assert await run.result(timeout=TIMEOUT) == ["Line", 3]
    # The old run, unchanged, replays unchanged.
    run_id = await _recorded_by_v1(durable_url)
    v1 = _versioned(_quote_v1)
    async with af.Engine(durable_url, workflows=[v1]) as engine:
        run = engine.get_run(run_id)
        await run.send_event("go")
        assert await run.result(timeout=TIMEOUT) == [
            "dict",
            {"sku": "lamp", "qty": 3, "price": "19.95"},
        ]


async def test_a_recorded_value_that_no_longer_fits_fails_the_run_naming_step_and_type(
    durable_url: str,
) -> None:
    run_id = await _recorded_by_v1(durable_url)
    v3 = _versioned(_quote_v3)
    async with af.Engine(durable_url, workflows=[v3]) as engine:
        run = engine.get_run(run_id)
        # The event brings the run back; its replay fails at the step, before the wait.
        with pytest.raises(af.InvalidStateError):
            await run.send_event("go")
        with pytest.raises(af.RunFailedError) as caught:
            await run.result(timeout=TIMEOUT)
    assert caught.value.error.type == "ValidationError"
    assert caught.value.error.message == (
        "the result of step 'typed.version.quote' does not fit its annotation Address: "
        "Object missing required field `street`"
    )


@af.workflow(name="typed.approval")
async def typed_approval() -> list[Any]:
    got: list[Any] = []
    await af.wait_for_event("go")  # the approvals arrive first: buffered, checked here
    for _ in range(3):
        try:
            approval = await af.wait_for_event("approval", type=tp.Approval)
            got.append([type(approval).__name__, approval.by, approval.at.year])
        except af.ValidationError as exc:
            got.append(str(exc))
    got.append(await af.wait_for_event("count", type=int))
    return got


async def test_buffered_event_payloads_are_decoded_into_the_waiters_type(engine: af.Engine) -> None:
    run = await engine.start(typed_approval)
    await run.send_event("approval", tp.APPROVAL)
    await run.send_event("approval", {"by": "bob", "at": "2026-01-02T03:04:05Z"})
    await run.send_event("approval", {"by": 7, "at": "2026-01-02T03:04:05Z"})
    await run.send_event("go")
    await run.send_event("count", 3)
    assert await run.result(timeout=TIMEOUT) == [
        ["Approval", "alice", 2026],
        ["Approval", "bob", 2026],
        "the 'approval' event does not fit its annotation Approval at .by: "
        "Expected `str`, got `int`",
        3,
    ]


async def test_schedule_args_are_checked_and_stored_runs_get_typed_arguments(
    engine: af.Engine,
) -> None:
    with pytest.raises(af.ValidationError) as caught:
        await engine.create_schedule(
            "typed-bad", typed_child, "@daily", args=({"sku": 1, "qty": 1, "price": "1"}, tp.AT)
        )
    assert str(caught.value).startswith("schedule 'typed-bad': workflow 'typed.child'")
    assert (caught.value.argument, caught.value.path) == ("line", ".sku")
    assert await engine.list_schedules() == []
    sched = await engine.create_schedule(
        "typed-ok", typed_child, "@daily", args=(tp.Line("a", 1, Decimal("2.5")), tp.AT)
    )
    run = await sched.trigger()
    line = await engine.get_run(run.id, workflow=typed_child).result(timeout=TIMEOUT)
    assert line == tp.Line("a", 2, Decimal("2.5"))
