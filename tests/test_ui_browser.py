"""The dashboard in a real headless Chromium (Debian's chromium and chromium-driver, driven
by selenium), against a real uvicorn server on a loopback port and a SQLite engine.

Every wait is a WebDriverWait on a condition. Without Chromium these tests fail, saying
what to install: they never skip."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait
from starlette.applications import Starlette
from starlette.routing import Mount

import actorflow as af
from actorflow.http.ui import dashboard
from actorflow.http.ui._browser import chromium
from actorflow.http.ui._serving import ServedEngine, until_status

WAIT = 20.0  # generous: 2 cores shared with other work


@af.step
async def prepare(x: int) -> int:
    return x * 2


@af.workflow(name="ui.gated")
async def gated(x: int) -> dict[str, Any]:
    """Waits for a "finish" event, so the test decides when it completes."""
    doubled = await prepare(x)
    payload = await af.wait_for_event("finish")
    return {"doubled": doubled, "payload": payload}


@af.step
async def forever() -> None:
    await asyncio.sleep(3600)  # cancelled by terminate or by the engine closing


@af.workflow(name="ui.hold", concurrency=1)
async def hold() -> None:
    await forever()


@af.workflow(name="ui.long")
async def long() -> None:
    await forever()


@af.step
async def reject() -> None:
    raise af.FatalError("no such customer")


@af.workflow(name="ui.fails")
async def fails() -> None:
    await reject()


_attempts: dict[str, int] = {}


@af.step(retry=af.Retry(limit=2, delay=0.05))
async def flaky(key: str) -> str:
    _attempts[key] = _attempts.get(key, 0) + 1
    if _attempts[key] == 1:
        raise RuntimeError("first attempt fails")
    return "ok"


@af.workflow(name="ui.child")
async def child(x: int) -> int:
    return await prepare(x)


@af.workflow(name="ui.journey")
async def journey(key: str) -> str:
    """A retried step, a sleep, a child run, then a stream written chunk by chunk, each
    after a "more" event."""
    await flaky(key)
    await af.sleep(0.05)
    await (await af.start(child, 3)).result()
    writer = af.get_writable()
    await writer.write("one")
    await af.wait_for_event("more")
    await writer.write({"two": 2})
    await af.wait_for_event("more")
    return "done"


@af.step
async def report_progress() -> None:
    writer = af.get_writable("progress")
    await writer.write("half")
    await writer.write("all")
    await writer.close()


@af.workflow(name="ui.step_streams")
async def step_streams() -> None:
    """A stream written by a step: the log does not name it, the run's `streams` do."""
    await report_progress()


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    with chromium() as driver:
        yield driver


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServedEngine]:
    with ServedEngine(f"sqlite:///{tmp_path}/ui.db", max_payload_bytes=2000) as served:
        yield served


class Api:
    """The served app's /v1 API over one HTTP connection."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def start(self, workflow: str, *args: Any, id: str) -> None:
        response = self.client.post(f"workflows/{workflow}/runs", json={"args": args, "id": id})
        assert response.status_code == 201, response.text

    def post(self, path: str, body: Any = None) -> None:
        response = self.client.post(path, json=body)
        assert response.status_code in (200, 201, 202), response.text


@pytest.fixture
def api(served: ServedEngine) -> Iterator[Api]:
    with httpx.Client(base_url=f"{served.base_url}/v1/", timeout=30) as client:
        yield Api(client)


def wait(browser: WebDriver, condition: Any, message: str = "") -> Any:
    # The pages re-render what changed: an element found a moment ago may be replaced.
    waiter = WebDriverWait(browser, WAIT, ignored_exceptions=[StaleElementReferenceException])
    return waiter.until(condition, message)


def row_status(browser: WebDriver, run_id: str) -> str | None:
    status: str | None = browser.execute_script(
        "const row = document.querySelector(`#runs-table tr[data-run-id='${arguments[0]}']`);"
        "return row ? row.dataset.status : null;",
        run_id,
    )
    return status


def run_status(browser: WebDriver) -> str:
    """The status the run page shows, as its badge's text (glyph and word)."""
    text: str = browser.execute_script(
        "const badge = document.querySelector('#run-status .status');"
        "return badge ? badge.textContent : '';"
    )
    return text.split()[-1] if text else ""


def open_run(browser: WebDriver, served: ServedEngine, run_id: str) -> None:
    browser.get(f"{served.base_url}/ui/#/runs/{run_id}")
    wait(browser, lambda b: run_status(b) != "", "the run page did not load")


def click(browser: WebDriver, selector: str) -> WebElement:
    element = wait(
        browser,
        lambda b: next(
            (e for e in b.find_elements(By.CSS_SELECTOR, selector) if e.is_enabled()), False
        ),
        f"{selector} never became enabled",
    )
    element.click()
    return element


def test_runs_page_lists_every_status_and_updates_live(
    browser: WebDriver, served: ServedEngine, api: Api
) -> None:
    for run_id in ("w1", "c1", "t1", "p1"):
        api.start("ui.gated", 1, id=run_id)
    api.start("ui.fails", id="f1")
    api.start("ui.hold", id="r1")
    api.start("ui.hold", id="q1")  # queued behind r1: concurrency 1
    api.start("ui.long", id="pp1")

    async def settle(engine: af.Engine) -> None:
        for run_id in ("w1", "c1", "t1", "p1"):
            await until_status(engine.get_run(run_id), "waiting")
        await engine.send_event("c1", "finish", None)
        await until_status(engine.get_run("c1"), "completed")
        await engine.get_run("t1").terminate()
        await engine.get_run("p1").pause()
        await until_status(engine.get_run("f1"), "failed")
        await until_status(engine.get_run("r1"), "running")
        await until_status(engine.get_run("pp1"), "running")
        await engine.get_run("pp1").pause()  # its step still runs: pausing

    served.call(settle)
    expected = {
        "w1": "waiting", "c1": "completed", "t1": "terminated", "p1": "paused",
        "f1": "failed", "r1": "running", "q1": "queued", "pp1": "pausing",
    }  # fmt: skip
    browser.get(f"{served.base_url}/ui/")
    wait(
        browser,
        lambda b: all(row_status(b, i) == s for i, s in expected.items()),
        "the runs page did not list every run in its status",
    )
    for run_id, status in expected.items():
        row = browser.find_element(By.CSS_SELECTOR, f"tr[data-run-id='{run_id}']")
        assert status in row.text  # the word, not only the colour
    # Steps done, from the listing itself (no request per run).
    done = {"w1": "1", "c1": "1", "t1": "1", "p1": "1", "f1": "0", "r1": "0", "q1": "0", "pp1": "0"}
    for run_id, count in done.items():
        cell = f"tr[data-run-id='{run_id}'] td[data-label='Steps done']"
        assert browser.find_element(By.CSS_SELECTOR, cell).text == count, run_id

    # Live: a run started now appears, and its status changes, with no reload.
    marker = browser.execute_script("return window.__marker = Math.random()")
    api.start("ui.gated", 5, id="live-1")
    wait(browser, lambda b: row_status(b, "live-1") == "waiting", "a new run did not appear")
    api.post("runs/live-1/events/finish", {"ok": True})
    wait(browser, lambda b: row_status(b, "live-1") == "completed", "the run never completed")
    assert browser.execute_script("return window.__marker") == marker  # same page, no reload

    # Filters: by status, and by workflow.
    browser.get(f"{served.base_url}/ui/#/runs?status=failed")
    wait(browser, lambda b: row_status(b, "f1") == "failed" and row_status(b, "w1") is None)
    browser.get(f"{served.base_url}/ui/#/runs?workflow=ui.hold")
    wait(
        browser,
        lambda b: row_status(b, "r1") == "running" and row_status(b, "c1") is None,
        "the workflow filter did not apply",
    )

    # Cursor paging: 30 runs are a page of 25 and a page of 5.
    api.post("workflows/ui.child/runs/batch", {"runs": [{"args": [i]} for i in range(30)]})

    def shown(b: WebDriver) -> int:
        return len(b.find_elements(By.CSS_SELECTOR, "#runs-table tbody tr"))

    browser.get(f"{served.base_url}/ui/#/runs?workflow=ui.child")
    wait(browser, lambda b: shown(b) == 25, "the first page is not 25 runs")
    first_page = browser.execute_script(
        "return document.querySelector('#runs-table tbody tr').dataset.runId"
    )
    click(browser, "#page-older")
    wait(browser, lambda b: shown(b) == 5, "the second page is not the 5 oldest runs")
    click(browser, "#page-newer")
    wait(browser, lambda b: shown(b) == 25 and row_status(b, first_page) is not None)


def test_run_page_timeline_result_and_live_stream(
    browser: WebDriver, served: ServedEngine, api: Api
) -> None:
    api.start("ui.journey", "k1", id="j1")
    open_run(browser, served, "j1")

    def chunks(b: WebDriver) -> list[str]:
        return [
            e.text for e in b.find_elements(By.CSS_SELECTOR, ".stream[data-namespace='default'] li")
        ]

    wait(browser, lambda b: chunks(b) == ['"one"'], "the first chunk did not show")
    api.post("runs/j1/events/more")
    wait(browser, lambda b: chunks(b) == ['"one"', '{"two":2}'], "the second chunk was not pushed")
    api.post("runs/j1/events/more")
    wait(browser, lambda b: run_status(b) == "completed", "the run page did not see the end")
    wait(
        browser,
        lambda b: '"done"' in b.find_element(By.ID, "run-outcome").text,
        "the result was not shown",
    )

    step = browser.find_element(By.CSS_SELECTOR, ".tl-row[data-name='flaky']")
    assert step.get_attribute("data-outcome") == "completed"
    assert "2 attempts" in step.text
    assert len(step.find_elements(By.CSS_SELECTOR, ".bar-attempt-failed")) == 1
    assert len(step.find_elements(By.CSS_SELECTOR, ".bar-attempt-ok")) == 1
    assert len(step.find_elements(By.CSS_SELECTOR, ".bar-backoff")) == 1
    sleep = browser.find_element(By.CSS_SELECTOR, ".tl-row[data-name='sleep']")
    assert sleep.find_elements(By.CSS_SELECTOR, ".bar-sleep")
    waits = browser.find_elements(By.CSS_SELECTOR, ".tl-wait .bar-wait")
    assert len(waits) == 2
    kinds = [
        e.text for e in browser.find_elements(By.CSS_SELECTOR, "#event-log td.mono:nth-child(4)")
    ]
    assert kinds[0] == "run_created" and kinds[-1] == "run_completed"
    child_bar = browser.find_element(By.CSS_SELECTOR, ".tl-child a.bar-child")
    child_id = browser.find_element(By.CSS_SELECTOR, "#run-children a").text
    assert child_bar.get_attribute("href").endswith(f"#/runs/{child_id}")
    child_bar.click()
    wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#run-summary a[href='#/runs/j1']"))
    assert run_status(browser) == "completed"


def test_run_page_opens_the_streams_steps_wrote(
    browser: WebDriver, served: ServedEngine, api: Api
) -> None:
    api.start("ui.step_streams", id="s1")
    open_run(browser, served, "s1")

    def chunks(b: WebDriver) -> list[str]:
        selector = ".stream[data-namespace='progress'] li"
        return [e.text for e in b.find_elements(By.CSS_SELECTOR, selector)]

    wait(browser, lambda b: chunks(b) == ['"half"', '"all"'], "the step's stream was not opened")


def test_controls_pause_resume_terminate_and_send_event(
    browser: WebDriver, served: ServedEngine, api: Api
) -> None:
    api.start("ui.gated", 4, id="g1")
    open_run(browser, served, "g1")
    wait(browser, lambda b: run_status(b) == "waiting")

    click(browser, "#control-pause")
    wait(browser, lambda b: run_status(b) == "paused", "pause did not take effect")
    click(browser, "#control-resume")
    wait(browser, lambda b: run_status(b) == "waiting", "resume did not take effect")

    # A payload that is not JSON is refused before it is sent; one over the server's
    # limit is refused by the API, and its error is shown.
    browser.find_element(By.ID, "event-type").send_keys("finish")
    payload = browser.find_element(By.ID, "event-payload")
    payload.send_keys("{not json")
    click(browser, "#event-send")
    alert = browser.find_element(By.CSS_SELECTOR, "[role=alert]")
    wait(browser, lambda b: "not valid JSON" in alert.text)
    payload.clear()
    # set, not typed: typing 3,000 characters takes seconds
    browser.execute_script("arguments[0].value = arguments[1]", payload, '"' + "x" * 3000 + '"')
    click(browser, "#event-send")
    wait(browser, lambda b: "PayloadTooLarge" in alert.text, "the API error was not shown")
    assert run_status(browser) == "waiting"

    payload.clear()
    payload.send_keys('{"approved": true}')
    click(browser, "#event-send")
    wait(browser, lambda b: run_status(b) == "completed", "the event did not reach the run")
    outcome = browser.find_element(By.ID, "run-outcome").text
    assert '"approved": true' in outcome and '"doubled": 8' in outcome

    # Restart from a chosen step, confirmed: a second execution, shown on its own.
    Select(browser.find_element(By.ID, "restart-from")).select_by_value("prepare")
    click(browser, "#control-restart")
    click(browser, "#confirm-ok")
    executions = Select(browser.find_element(By.ID, "generation"))
    wait(browser, lambda b: len(executions.options) == 2, "the new execution is not shown")
    assert executions.first_selected_option.text == "generation 1 (latest)"
    # The event it received stays buffered for the new execution, which completes again.
    wait(browser, lambda b: run_status(b) == "completed", "the new execution did not finish")
    assert browser.find_elements(By.CSS_SELECTOR, ".tl-row[data-name='prepare']")

    # Terminate asks first: cancelled, nothing happens; confirmed, the run ends.
    api.start("ui.gated", 1, id="g2")
    open_run(browser, served, "g2")
    wait(browser, lambda b: run_status(b) == "waiting")
    click(browser, "#control-terminate")
    wait(browser, lambda b: b.find_element(By.ID, "confirm-dialog").is_displayed())
    click(browser, "#confirm-cancel")
    wait(browser, lambda b: not b.find_element(By.ID, "confirm-dialog").is_displayed())
    assert run_status(browser) == "waiting"
    click(browser, "#control-terminate")
    click(browser, "#confirm-ok")
    wait(browser, lambda b: run_status(b) == "terminated", "terminate did not take effect")
    assert served.call(lambda engine: engine.get_run("g2").status()) == af.RunStatus.TERMINATED


def test_token_is_asked_once_and_kept_for_the_session(browser: WebDriver, tmp_path: Path) -> None:
    with ServedEngine(f"sqlite:///{tmp_path}/token.db", token="s3cret") as served:
        response = httpx.post(
            f"{served.base_url}/v1/workflows/ui.child/runs",
            json={"args": [1], "id": "t-1"},
            headers={"Authorization": "Bearer s3cret"},
        )
        assert response.status_code == 201
        browser.get(f"{served.base_url}/ui/")
        dialog = browser.find_element(By.ID, "token-dialog")
        wait(browser, lambda b: dialog.is_displayed(), "no token was asked for")
        # Declined: the 401 is shown, and the token can be given later from the header.
        browser.find_element(By.ID, "token-cancel").click()
        alert = browser.find_element(By.CSS_SELECTOR, "[role=alert]")
        wait(browser, lambda b: "HTTP 401" in alert.text, "the refusal was not shown")
        click(browser, "#token-button")
        wait(browser, lambda b: dialog.is_displayed(), "the header's button did not ask")
        browser.find_element(By.ID, "token-input").send_keys("wrong")
        browser.find_element(By.CSS_SELECTOR, "#token-form button[type=submit]").click()
        wait(browser, lambda b: "refused" in b.find_element(By.ID, "token-reason").text)
        token_input = browser.find_element(By.ID, "token-input")
        token_input.clear()
        token_input.send_keys("s3cret")
        browser.find_element(By.CSS_SELECTOR, "#token-form button[type=submit]").click()
        wait(browser, lambda b: row_status(b, "t-1") == "completed", "the token was not used")
        browser.refresh()
        wait(browser, lambda b: row_status(b, "t-1") == "completed")
        assert not browser.find_element(By.ID, "token-dialog").is_displayed()
        # The event log and streams are read through fetch, with the token too.
        browser.get(f"{served.base_url}/ui/#/runs/t-1")
        wait(
            browser,
            lambda b: "run_completed" in b.find_element(By.ID, "event-log").text,
            "the event stream was not read with the token",
        )
        assert not browser.find_element(By.ID, "token-dialog").is_displayed()


def test_static_files_are_served_and_self_contained(served: ServedEngine) -> None:
    with httpx.Client(base_url=served.base_url) as client:
        response = client.get("/ui", follow_redirects=True)
        assert response.status_code == 200
        assert '<script type="module" src="app.js">' in response.text
        static = Path(af.__file__).parent / "http" / "ui" / "static"
        files = sorted(p.name for p in static.iterdir())
        assert "index.html" in files and "app.js" in files
        for name in files:
            text = (static / name).read_text()
            assert "http://" not in text and "https://" not in text, f"{name} fetches from outside"
            assert client.get(f"/ui/{name}").status_code == 200


def test_schedules_page_without_schedule_routes(browser: WebDriver, tmp_path: Path) -> None:
    """A server whose API has no schedule routes (an older one, or one mounting only the
    dashboard): the page says so instead of failing."""

    def without_api(engine: af.Engine) -> Starlette:
        return Starlette(routes=[Mount("/ui", app=dashboard()), Mount("/v1", routes=[])])

    with ServedEngine(f"sqlite:///{tmp_path}/bare.db", app=without_api) as served:
        browser.get(f"{served.base_url}/ui/#/schedules")
        notice = wait(browser, lambda b: b.find_elements(By.ID, "schedules-unavailable"))
        assert "not available" in notice[0].text
        assert not browser.find_element(By.CSS_SELECTOR, "[role=alert]").is_displayed()
        browser.get(f"{served.base_url}/ui/#/workflows")  # other routes: the error is shown
        wait(
            browser,
            lambda b: "404" in b.find_element(By.CSS_SELECTOR, "[role=alert]").text,
            "the API's 404 was not shown",
        )


def test_schedules_page_ticks_pause_resume_trigger(
    browser: WebDriver, served: ServedEngine, api: Api
) -> None:
    api.post(
        "schedules",
        {"id": "every-second", "workflow": "ui.child", "cron": "@every 1s", "args": [2]},
    )
    browser.get(f"{served.base_url}/ui/#/schedules")
    card = "[data-schedule='every-second']"

    def text(b: WebDriver) -> str:
        found = b.find_elements(By.CSS_SELECTOR, card)
        return found[0].text if found else ""

    wait(browser, lambda b: "@every 1s" in text(b) and "Next tick" in text(b))
    # Its ticks appear as they fire (the page refreshes), each with its run.
    wait(browser, lambda b: "started" in text(b), "no tick was shown")
    tick_run = browser.find_element(By.CSS_SELECTOR, f"{card} .ticks a").text
    assert tick_run.startswith("every-second@")

    click(browser, f"{card} [data-action=pause]")
    wait(browser, lambda b: "none while paused" in text(b), "pause did not take effect")
    click(browser, f"{card} [data-action=resume]")
    wait(browser, lambda b: "none while paused" not in text(b) and "active" in text(b))
    click(browser, f"{card} [data-action=trigger]")
    started = wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, f"{card} .triggered a"))
    started[0].click()
    wait(browser, lambda b: run_status(b) == "completed", "the triggered run did not complete")

    # A tick's run names its schedule and tick.
    open_run(browser, served, tick_run)
    wait(
        browser,
        lambda b: (
            "every-second" in b.find_element(By.ID, "run-summary").text
            and b.find_elements(By.ID, "run-schedule")
        ),
        "the run page does not show its schedule tick",
    )
