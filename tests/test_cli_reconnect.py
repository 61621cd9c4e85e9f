"""Following a run (`runs start --follow`, `runs events --follow`, `runs stream`) across a
restart of `actorflow serve` on the same port and database: the command reconnects and
shows every event (or chunk) once, none twice and none missed."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path
from typing import Any

import orjson

from tests._cli import cli, cli_process, doc, free_port, lines, ok, serving


def _until_waiting(proc: subprocess.Popen[str]) -> list[Any]:
    """The JSON lines `proc` prints up to the run's `wait_started` event."""
    assert proc.stdout is not None
    printed = []
    while not printed or printed[-1].get("kind") != "wait_started":
        line = proc.stdout.readline()
        assert line, f"exited early: {proc.wait()}"
        printed.append(orjson.loads(line))
    return printed


def test_follow_reconnects_across_a_server_restart(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'restarted.db'}"
    port = free_port()
    with serving(db, port=port) as url:
        starter = cli_process("runs", "start", "cli_approval", '{"n": 1}', "--id", "ap-r",
                              "--follow", "--json", url=url)  # fmt: skip
        before = _until_waiting(starter)
        follower = cli_process("runs", "events", "ap-r", "--follow", "--json", url=url)
        followed_before = _until_waiting(follower)
    # The server is gone: both keep trying to reconnect.
    assert starter.poll() is None and follower.poll() is None
    with serving(db, port=port) as url:
        ok(cli("runs", "send-event", "ap-r", "approve", '"ann"', url=url))
        rest, errors = starter.communicate(timeout=120)
        assert starter.returncode == 0, errors
        followed_rest, errors = follower.communicate(timeout=120)
        assert follower.returncode == 0, errors
        recorded = [orjson.loads(line) for line in ok(cli("runs", "events", "ap-r", "--json",
                                                          url=url)).splitlines()]  # fmt: skip
        assert doc(cli("runs", "result", "ap-r", "--json", url=url))["status"] == "completed"
    run, *events = before
    assert run["id"] == "ap-r"
    *events_after, result = lines(rest)
    assert result == {"status": "completed", "result": {"order": {"n": 1}, "by": "ann"},
                      "error": None}  # fmt: skip
    assert recorded[-1]["kind"] == "run_completed"
    assert [*events, *events_after] == recorded  # each event once, in order
    assert [*followed_before, *lines(followed_rest)] == recorded


def test_a_stream_is_followed_across_a_server_restart(tmp_path: Path) -> None:
    """The server marks a stream's end (`event: end`): a response that ends without it
    (the server stopping) is reconnected to, from the chunk after the last one shown."""
    db = f"sqlite:///{tmp_path / 'streamed.db'}"
    port = free_port()
    with serving(db, port=port) as url:
        ok(cli("runs", "start", "cli_chatter", "--id", "ch-r", url=url))
        reader = cli_process("runs", "stream", "ch-r", "--json", url=url)
        assert reader.stdout is not None
        before = [orjson.loads(reader.stdout.readline()) for _ in range(2)]
    assert reader.poll() is None  # the server is gone: it keeps trying to reconnect
    with serving(db, port=port) as url:
        ok(cli("runs", "send-event", "ch-r", "more", "null", url=url))
        rest, errors = reader.communicate(timeout=120)
        assert reader.returncode == 0, errors
    assert [*before, *lines(rest)] == [
        {"index": 0, "data": {"i": 0}},
        {"index": 1, "data": base64.b64encode(b"raw-1").decode(), "encoding": "base64"},
        {"index": 2, "data": {"i": 2}},
    ]
