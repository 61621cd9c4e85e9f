"""The `actorflow` console script against a real `actorflow serve` (one per module):
every command, its `--json` shapes, its human output and its exit statuses."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests._cli import (
    ROOT,
    SCRIPT,
    cli,
    cli_many,
    cli_process,
    doc,
    free_port,
    lines,
    ok,
    one_error_line,
    serving,
    wait_until,
)

RUN_KEYS = {
    "id", "workflow", "status", "args", "result", "error", "metadata", "parent_id",
    "created_at", "started_at", "completed_at", "steps", "steps_done", "streams",
}  # fmt: skip
STEP_KEYS = {"seq", "name", "status", "attempts", "result", "error", "started_at", "completed_at"}
EVENT_KEYS = {"index", "kind", "at", "generation", "seq", "name", "data"}


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db = f"sqlite:///{tmp_path_factory.mktemp('cli') / 'served.db'}"
    with serving(db) as served:
        yield served


def af(url: str, *args: str) -> str:
    """stdout of a command that must succeed against the server."""
    return ok(cli(*args, url=url))


def test_start_wait_prints_the_result_and_result_reads_it(url: str) -> None:
    assert doc(cli("runs", "start", "cli_summed", "2", "3", "--wait", "--json", url=url)) == {
        "status": "completed",
        "result": 6,
        "error": None,
    }
    assert af(url, "runs", "start", "cli_summed", "2", "3", "--wait").strip() == "6"
    run = doc(cli("runs", "start", "cli_summed", "4", "5", "--id", "sum-45", "--json", url=url))
    assert set(run) == RUN_KEYS
    assert (run["id"], run["workflow"], run["args"]) == ("sum-45", "cli_summed", [4, 5])
    answer = doc(cli("runs", "result", "sum-45", "--wait", "30", "--json", url=url))
    assert answer == {"status": "completed", "result": 10, "error": None}
    assert af(url, "runs", "result", "sum-45", "--wait", "30").strip() == "10"
    # The same id again returns the run that exists.
    again = doc(cli("runs", "start", "cli_summed", "4", "5", "--id", "sum-45", "--json", url=url))
    assert again["id"] == "sum-45" and again["status"] == "completed"


def test_arguments_are_json_and_text_that_is_not_is_a_usage_error(url: str) -> None:
    out = cli("runs", "start", "cli_echo", "2", '{"a": [1, null]}', '"text"', "--wait", "--json",
              url=url)  # fmt: skip
    assert doc(out)["result"] == [2, {"a": [1, None]}, "text"]
    bad = cli("runs", "start", "cli_echo", "2", "{}", "plain text", url=url)
    assert bad.returncode == 2
    assert "'plain text' is not JSON" in bad.stderr and '"plain text"' in bad.stderr
    assert "Traceback" not in bad.stderr
    bad_payload = cli("runs", "send-event", "sum-45", "go", "{oops", url=url)
    assert bad_payload.returncode == 2 and "is not JSON" in bad_payload.stderr


def test_failed_and_terminated_runs_exit_3(url: str) -> None:
    failed = cli("runs", "start", "cli_broken", '"boom"', "--id", "broken-1", "--wait", url=url)
    assert failed.returncode == 3, failed.stderr
    assert "failed" in failed.stdout and "FatalError: boom" in failed.stdout
    assert "Traceback (most recent call last)" in failed.stdout  # the run's, on stdout
    answer = cli("runs", "result", "broken-1", "--json", url=url)
    assert answer.returncode == 3
    described, human = cli_many(
        ["runs", "describe", "broken-1", "--json"], ["runs", "describe", "broken-1"], url=url
    )
    assert "FatalError: boom" in ok(human) and "raise af.FatalError(message)" in ok(human)
    shape = doc(described)["error"]
    assert set(shape) == {"type", "message", "traceback"}
    assert orjson.loads(answer.stdout) == {"status": "failed", "result": None, "error": shape}
    gate = doc(cli("runs", "start", "cli_gate", "--json", url=url))["id"]
    assert doc(cli("runs", "terminate", gate, "--json", url=url)) == {
        "id": gate,
        "status": "terminated",
    }
    terminated = cli("runs", "result", gate, url=url)
    assert terminated.returncode == 3 and "terminated" in terminated.stdout
    again = cli("runs", "terminate", gate, url=url)
    assert "terminated" in one_error_line(again, "InvalidStateError")


def test_result_of_an_unfinished_run_says_so(url: str) -> None:
    gate = doc(cli("runs", "start", "cli_gate", "--json", url=url))["id"]
    answer = doc(cli("runs", "result", gate, "--json", url=url))
    assert answer in ({"status": "running"}, {"status": "waiting"})
    assert "no result yet" in af(url, "runs", "result", gate)
    ok(cli("runs", "terminate", gate, url=url))


def test_list_and_describe(url: str) -> None:
    parent = doc(cli("runs", "start", "cli_parent", "3", "--id", "parent-3", "--wait", "--json",
                     url=url))  # fmt: skip
    assert parent["result"] == 7
    page, only, failed, two, table, child, human, steps = cli_many(
        ["runs", "list", "--json"],
        ["runs", "list", "--workflow", "cli_parent", "--json"],
        ["runs", "list", "--status", "completed", "--json"],
        ["runs", "list", "--limit", "1", "--json"],
        ["runs", "list", "--workflow", "cli_parent"],
        ["runs", "describe", "parent-3~0", "--json"],
        ["runs", "describe", "parent-3"],
        ["runs", "describe", "parent-3~0"],
        url=url,
    )
    listed = doc(page)
    assert set(listed) == {"runs", "next_cursor"}
    assert {run["id"] for run in listed["runs"]} >= {"parent-3", "parent-3~0"}
    assert all(set(run) == RUN_KEYS and run["steps"] == [] for run in listed["runs"])
    by_id = {run["id"]: run for run in listed["runs"]}
    assert (by_id["parent-3~0"]["steps_done"], by_id["parent-3~0"]["streams"]) == (2, [])
    assert [run["id"] for run in doc(only)["runs"]] == ["parent-3"]
    completed = doc(failed)["runs"]
    assert completed and all(run["status"] == "completed" for run in completed)
    one = doc(two)
    assert len(one["runs"]) == 1 and one["next_cursor"] == one["runs"][-1]["id"]
    shown = ok(table)
    assert "ID" in shown and "DURATION" in shown
    assert "parent-3" in shown and "cli_parent" in shown and "completed" in shown
    child_run = doc(child)
    assert set(child_run) == RUN_KEYS and child_run["parent_id"] == "parent-3"
    assert [(s["seq"], s["name"], s["status"], s["attempts"]) for s in child_run["steps"]] == [
        (0, "cli_add", "completed", 1),
        (1, "cli_add", "completed", 1),
    ]
    assert all(set(step) == STEP_KEYS for step in child_run["steps"])
    for text in ("parent-3", "cli_parent", "completed", "[3]", "result", "7", "children",
                 "parent-3~0", "cli_summed"):  # fmt: skip
        assert text in ok(human), text
    assert "cli_add" in ok(steps) and "ATTEMPTS" in ok(steps)
    assert "parent     parent-3" in ok(steps)


def test_events_stream_and_send_event(url: str) -> None:
    ok(cli("runs", "start", "cli_approval", '{"n": 1}', "--id", "ap-1", url=url))
    streaming = cli_process("runs", "stream", "ap-1", url=url)
    following = cli_process("runs", "events", "ap-1", "--follow", "--json", url=url)
    assert following.stdout is not None
    seen = [orjson_line(following.stdout.readline()) for _ in range(6)]
    assert seen[-1]["kind"] == "wait_started"  # it is waiting: the event can go now
    sent = doc(cli("runs", "send-event", "ap-1", "approve", '"bob"', "--json", url=url))
    assert sent == {"id": "ap-1", "type": "approve"}
    rest, _ = following.communicate(timeout=30)
    assert following.returncode == 0
    followed = seen + lines(rest)
    assert all(set(e) == EVENT_KEYS for e in followed)
    assert followed[-1]["kind"] == "run_completed"
    assert [e["index"] for e in followed] == list(range(len(followed)))
    text, errors = streaming.communicate(timeout=30)
    assert streaming.returncode == 0, errors
    assert text == 'waiting for approval{"order":{"n":1}}\n\x00raw\n'
    chunks = lines(af(url, "runs", "stream", "ap-1", "--json"))
    assert chunks == [
        {"index": 0, "data": "waiting for "},
        {"index": 1, "data": "approval"},
        {"index": 2, "data": {"order": {"n": 1}}},
        {"index": 3, "data": "AHJhdw==", "encoding": "base64"},
    ]
    assert lines(af(url, "runs", "stream", "ap-1", "--start", "-1", "--json")) == chunks[-1:]
    recorded = lines(af(url, "runs", "events", "ap-1", "--json"))
    assert recorded == followed
    table = af(url, "runs", "events", "ap-1")
    assert "event_received" in table and '"bob"' in table and "run_completed" in table


def orjson_line(line: str) -> dict[str, object]:
    value: dict[str, object] = orjson.loads(line)
    return value


def test_start_follow(url: str) -> None:
    proc = cli_process("runs", "start", "cli_approval", "{}", "--id", "ap-2", "--follow",
                       "--json", url=url)  # fmt: skip
    assert proc.stdout is not None
    run = orjson_line(proc.stdout.readline())
    assert run["id"] == "ap-2" and set(run) == RUN_KEYS
    while orjson_line(proc.stdout.readline())["kind"] != "wait_started":
        pass
    ok(cli("runs", "send-event", "ap-2", "approve", '"ann"', url=url))
    rest, errors = proc.communicate(timeout=30)
    assert proc.returncode == 0, errors
    printed = lines(rest)
    assert printed[-2]["kind"] == "run_completed"
    assert printed[-1] == {"status": "completed", "result": {"order": {}, "by": "ann"},
                           "error": None}  # fmt: skip
    # Human output in a pipe: one line per event, then the result.
    human = af(url, "runs", "start", "cli_summed", "1", "1", "--follow")
    assert "run_created" in human and "step_completed" in human and "cli_add" in human
    assert human.rstrip().endswith("3")
    failed = cli("runs", "start", "cli_broken", '"late"', "--follow", url=url)
    assert failed.returncode == 3 and "run_failed" in failed.stdout


def test_controls(url: str) -> None:
    gate = doc(cli("runs", "start", "cli_gate", "--id", "gate-1", "--json", url=url))["id"]
    wait_until(lambda: doc(cli("runs", "describe", gate, "--json", url=url))["status"] == "waiting")
    paused = doc(cli("runs", "pause", gate, "--json", url=url))
    assert paused["id"] == gate and paused["status"] in ("pausing", "paused")
    assert "gate-1" in af(url, "runs", "resume", gate)
    ok(cli("runs", "send-event", gate, "go", url=url))
    assert (
        doc(cli("runs", "result", gate, "--wait", "30", "--json", url=url))["result"] == "through"
    )
    # From its first step: the "go" it received stays buffered, so it runs through again.
    restarted = doc(cli("runs", "restart", gate, "--from-step", "cli_add", "--json", url=url))
    assert restarted["id"] == gate and restarted["status"] != "completed"
    again = doc(cli("runs", "result", gate, "--wait", "30", "--json", url=url))
    assert again == {"status": "completed", "result": "through", "error": None}
    assert "gate-1" in af(url, "runs", "restart", gate)


def test_hooks_resume(url: str) -> None:
    ok(cli("runs", "start", "cli_hooked", '"tok-1"', "--id", "hooked-1", url=url))
    events = lambda: lines(af(url, "runs", "events", "hooked-1", "--json"))  # noqa: E731
    wait_until(lambda: any(e["kind"] == "hook_created" for e in events()))
    assert doc(cli("hooks", "resume", "tok-1", '{"x": 1}', "--json", url=url)) == {"token": "tok-1"}
    assert doc(cli("runs", "result", "hooked-1", "--wait", "30", "--json", url=url))["result"] == {
        "x": 1
    }
    missing = cli("hooks", "resume", "no-such-token", url=url)
    assert "no-such-token" in one_error_line(missing, "HookNotFoundError")


def test_workflows_list(url: str) -> None:
    ok(cli("runs", "start", "cli_summed", "0", "0", "--wait", url=url))
    answer = doc(cli("workflows", "list", "--json", url=url))
    by_name = {wf["name"]: wf for wf in answer["workflows"]}
    summed = by_name["cli_summed"]
    assert set(summed) == {"name", "concurrency", "schedules", "schemas", "runs"}
    assert summed["schemas"]["args"]["prefixItems"][0] == {"type": "integer", "title": "a"}
    assert summed["runs"]["completed"] >= 1
    table = af(url, "workflows", "list")
    assert "cli_summed" in table and "completed" in table
    # `actorflow serve` imports the demo's module only for `actorflow demo`.
    assert not [name for name in by_name if name.startswith("demo.")]


def test_demo(tmp_path: Path) -> None:
    shown = ok(cli("demo", "--db", str(tmp_path / "demo.db"), "--burst", "20"))
    assert "3 orders in" in shown and "burst: 20 3-step workflows" in shown
    assert "approved by alice" in shown and "step_completed" in shown


def test_failed_requests_print_one_error_line(url: str) -> None:
    missing, unknown = cli_many(
        ["runs", "describe", "no-such-run"], ["runs", "start", "no_such_workflow"], url=url
    )
    assert "no-such-run" in one_error_line(missing, "RunNotFoundError")
    one_error_line(unknown, "WorkflowNotRegisteredError")
    nobody = f"http://127.0.0.1:{free_port()}"
    refused = cli_many(
        ["runs", "start", "cli_summed", "1", "2"], ["runs", "events", "x", "--follow"], url=nobody
    )
    for result in refused:
        assert nobody in one_error_line(result, "ConnectError")


def test_arguments_that_do_not_fit_are_one_error_line_naming_them(url: str) -> None:
    lines_arg = '[{"sku": "a", "qty": 1}, {"sku": "b", "qty": "x"}]'
    bad_line, bad_number, bad_schedule, good = cli_many(
        ["runs", "start", "cli_count", lines_arg],
        ["runs", "start", "cli_summed", '"two"', "3"],
        ["schedules", "create", "cli-typed", "cli_summed", "@daily", "--arg", "1.5", "--arg", "2"],
        ["runs", "start", "cli_count", '[{"sku": "a", "qty": 1}]', "--wait"],
        url=url,
    )
    assert one_error_line(bad_line, "ValidationError") == (
        "workflow 'cli_count': argument 'lines' does not fit its annotation "
        "list[tests.cli_workflows.Line] at [1].qty: Expected `int`, got `str`"
    )
    assert one_error_line(bad_number, "ValidationError") == (
        "workflow 'cli_summed': argument 'a' does not fit its annotation int: "
        "Expected `int`, got `str`"
    )
    assert one_error_line(bad_schedule, "ValidationError").startswith(
        "schedule 'cli-typed': workflow 'cli_summed': argument 'a'"
    )
    assert ok(good).strip() == "1"


def test_usage_errors_exit_2(url: str) -> None:
    commands = (["runs", "frobnicate"], ["runs", "list", "--status", "bogus"],
                ["runs", "list", "--db", "not-a-url"])  # fmt: skip
    for command, result in zip(commands, cli_many(*commands, url=url), strict=True):
        assert result.returncode == 2, (command, result.stderr)
        assert "Traceback" not in result.stderr


def test_python_dash_m(url: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "actorflow", "runs", "list", "--url", url, "--json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0 and "runs" in out.stdout


def _on_a_terminal(url: str, *args: str) -> tuple[int, str]:
    """Run `actorflow ARGS` with a pseudo-terminal as its stdout: status and output."""
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM")}
    env.update(ACTORFLOW_URL=url, TERM="xterm-256color", COLUMNS="120")
    leader, follower = pty.openpty()
    proc = subprocess.Popen([SCRIPT, *args], stdout=follower, stderr=follower, env=env, cwd=ROOT)
    os.close(follower)
    output = bytearray()
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the terminal's other end closed with the process
            break
        if not data:
            break
        output += data
    os.close(leader)
    return proc.wait(30), output.decode(errors="replace")


def test_colours_and_the_live_view_on_a_terminal_only(url: str) -> None:
    status, shown = _on_a_terminal(url, "runs", "start", "cli_summed", "5", "6", "--follow")
    assert status == 0, shown
    assert "\x1b[" in shown  # colours and the live view's redraws
    assert "cli_add" in shown and "ATTEMPTS" in shown and "completed" in shown
    assert shown.rstrip().endswith("12")
    # The same in a pipe, with a colour terminal declared: no escape codes.
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env.update(ACTORFLOW_URL=url, TERM="xterm-256color")
    piped = subprocess.run([SCRIPT, "runs", "list", "--limit", "3", "--url", url],
                           capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert "cli_summed" in ok(piped) and "\x1b[" not in piped.stdout


def test_schedules(url: str) -> None:
    created = doc(cli("schedules", "create", "cli-nightly", "cli_summed", "30 2 * * *",
                      "--arg", "2", "--arg", "3", "--timezone", "Europe/Berlin", "--json",
                      url=url))  # fmt: skip
    assert (created["id"], created["cron"], created["args"]) == (
        "cli-nightly",
        "30 2 * * *",
        [2, 3],
    )
    assert created["timezone"] == "Europe/Berlin" and created["paused"] is False
    paused, listed, table, bad = cli_many(
        ["schedules", "pause", "cli-nightly", "--json"],
        ["schedules", "list", "--json"],
        ["schedules", "list"],
        ["schedules", "create", "cli-bad", "cli_summed", "not a cron"],
        url=url,
    )
    assert doc(paused)["paused"] is True
    assert "cli-nightly" in [s["id"] for s in doc(listed)["schedules"]]
    assert "cli-nightly" in ok(table) and "30 2 * * *" in ok(table)
    one_error_line(bad, "ScheduleError")
    assert "resumed" in ok(cli("schedules", "resume", "cli-nightly", url=url))
    run = doc(cli("schedules", "trigger", "cli-nightly", "--json", url=url))
    assert run["id"].startswith("cli-nightly@") and run["workflow"] == "cli_summed"
    answer = doc(cli("runs", "result", run["id"], "--wait", "30", "--json", url=url))
    assert answer["result"] == 6
    described, human = cli_many(
        ["schedules", "describe", "cli-nightly", "--json"],
        ["runs", "describe", run["id"]],
        url=url,
    )
    assert [t["run_id"] for t in doc(described)["recent"]] == [run["id"]]
    assert "cli-nightly (30 2 * * *) tick" in ok(human)
    assert doc(cli("schedules", "delete", "cli-nightly", "--json", url=url)) == {
        "id": "cli-nightly"
    }
    gone = cli("schedules", "describe", "cli-nightly", url=url)
    one_error_line(gone, "ScheduleNotFoundError")
