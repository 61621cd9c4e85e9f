"""`actorflow serve --metrics`: a standalone server's `GET /metrics`, scraped from a real
`actorflow serve` subprocess after runs it served."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests._cli import cli, ok, serving


def _samples(text: str, family: str, suffix: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of `family` whose name ends with `suffix`, by their labels (the
    exporter's scope labels left out)."""
    found = {f.name: f for f in text_string_to_metric_families(text)}[family]
    return {
        tuple(sorted((k, v) for k, v in s.labels.items() if not k.startswith("otel_"))): s.value
        for s in found.samples
        if s.name.endswith(suffix)
    }


def test_serve_with_metrics_answers_metrics_of_the_runs_it_served(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'metrics.db'}"
    with serving(db, options=("--metrics",)) as url:
        for a in range(2):
            assert ok(cli("runs", "start", "cli_summed", str(a), "2", "--wait", url=url)) != ""
        response = httpx.get(url + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    started = _samples(text, "actorflow_runs_started", "_total")
    assert started == {(("workflow", "cli_summed"),): 2.0}
    finished = _samples(text, "actorflow_runs_finished", "_total")
    assert finished == {(("outcome", "completed"), ("workflow", "cli_summed")): 2.0}
    steps = _samples(text, "actorflow_step_duration_seconds", "_count")
    labels = (("outcome", "completed"), ("step", "cli_add"), ("workflow", "cli_summed"))
    assert steps == {labels: 4.0}
    ended = _samples(text, "actorflow_steps_finished", "_total")
    assert ended == {(("attempts", "1"), *labels): 4.0}


def test_serve_without_metrics_says_how_to_turn_them_on(tmp_path: Path) -> None:
    with serving(f"sqlite:///{tmp_path / 'plain.db'}") as url:
        response = httpx.get(url + "/metrics")
    assert response.status_code == 404
    assert "actorflow serve with --metrics" in response.json()["error"]["message"]
