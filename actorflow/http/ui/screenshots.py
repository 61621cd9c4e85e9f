"""`python -m actorflow.http.ui.screenshots OUTDIR`: serve a demo engine (a fresh SQLite
file, runs in every status), drive headless Chromium through each page of the dashboard
and save PNG screenshots in OUTDIR. Needs selenium and Debian's chromium and
chromium-driver; the orders are `python -m actorflow demo`'s (the cli extra)."""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

import actorflow as af
from actorflow.cli._demo import process_order

from ._browser import chromium
from ._serving import ServedEngine, until_status


@af.step
async def validate(record: dict[str, Any]) -> None:
    raise af.FatalError(f"record {record['id']} has no email address")


@af.workflow(name="demo.import_record")
async def import_record(record: dict[str, Any]) -> None:
    await validate(record)


@af.step
async def crunch(n: int) -> int:
    await asyncio.sleep(3600)  # still running when the screenshots are taken
    return n


@af.workflow(name="demo.report", concurrency=1)
async def report(n: int) -> int:
    return await crunch(n)


async def _populate(engine: af.Engine) -> dict[str, str]:
    """Runs in every status; returns the ids of the runs whose pages are shot."""
    items = ["book", "lamp", "mug"]
    orders = [
        await engine.start(process_order, f"o-{i}", items[: i + 1], id=f"order-{i}")
        for i in range(4)
    ]
    for run in orders[:3]:
        await until_status(run, "waiting")
        await run.send_event("approval", {"by": "alice"})
    for run in orders[:3]:
        await run.result(timeout=30)
    failed = await engine.start(import_record, {"id": 7, "name": "Ada"}, id="import-7")
    await until_status(failed, "failed")
    running = await engine.start(report, 1, id="report-1")
    await engine.start(report, 2, id="report-2")  # queued behind report-1 (concurrency 1)
    await until_status(running, "running")
    paused = await engine.start(process_order, "o-9", ["desk"], id="order-9")
    await until_status(paused, "waiting")
    await paused.pause()
    terminated = await engine.start(process_order, "o-8", ["chair"], id="order-8")
    await until_status(terminated, "waiting")
    await terminated.terminate()
    await until_status(orders[3], "waiting")
    await engine.create_schedule(
        "nightly-report", report, "30 2 * * *", args=(7,), timezone="Europe/Berlin"
    )
    labels = await engine.create_schedule("label-printer", "demo.ship", "*/5 * * * *", args=("s",))
    now = datetime.now(UTC)
    for run in await labels.backfill(now - timedelta(minutes=15), now):  # recent ticks
        await run.result(timeout=30)
    await labels.pause()
    return {"order": orders[1].id, "failed": failed.id, "waiting": orders[3].id}


Ready = Callable[[WebDriver], Any]


def _shoot(browser: WebDriver, url: str, path: Path, ready: Ready, width: int) -> None:
    def viewport(height: int) -> None:
        # Emulated rather than a window size: windows have a minimum width, and the
        # browser's frame would take its share of the height.
        metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600}
        browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)

    viewport(900 if width >= 600 else 844)
    browser.get(url)
    WebDriverWait(browser, 20).until(ready)
    # The whole page (up to a limit), not only its first screen.
    height = int(browser.execute_script("return document.documentElement.scrollHeight"))
    viewport(min(height, 3000 if width >= 600 else 1600))
    browser.save_screenshot(str(path))
    print(f"wrote {path}")


def _has(selector: str) -> Ready:
    return lambda browser: bool(browser.find_elements(By.CSS_SELECTOR, selector))


def _runs_listed(browser: WebDriver) -> bool:
    """The runs table is filled in, steps done included."""
    cells = browser.find_elements(By.CSS_SELECTOR, "#runs-table tbody td:last-child")
    return bool(cells) and all(cell.text != "…" for cell in cells)


def take_screenshots(outdir: Path) -> list[Path]:
    """Serves the demo and saves one PNG per page in `outdir`; returns their paths.
    Raises BrowserMissingError without Chromium."""
    outdir.mkdir(parents=True, exist_ok=True)
    shots: list[Path] = []
    with tempfile.TemporaryDirectory() as tmp, ServedEngine(f"sqlite:///{tmp}/demo.db") as served:
        ids = served.call(_populate)
        ui = f"{served.base_url}/ui/"
        pages: list[tuple[str, str, Ready]] = [
            ("runs.png", "#/runs", _runs_listed),
            ("run.png", f"#/runs/{ids['order']}", _has(".stream[data-ended] li")),
            ("run-failed.png", f"#/runs/{ids['failed']}", _has(".traceback")),
            ("run-waiting.png", f"#/runs/{ids['waiting']}", _has("[data-outcome='waiting']")),
            ("workflows.png", "#/workflows", _has("#workflows-table tbody tr")),
            ("schedules.png", "#/schedules", _has("[data-schedule='label-printer'] .ticks a")),
            ("runs-phone.png", "#/runs", _runs_listed),
            ("run-phone.png", f"#/runs/{ids['order']}", _has(".stream[data-ended] li")),
        ]
        with chromium() as browser:
            for name, route, ready in pages:
                path = outdir / name
                _shoot(browser, ui + route, path, ready, 390 if "phone" in name else 1400)
                shots.append(path)
    return shots


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m actorflow.http.ui.screenshots", description=__doc__
    )
    parser.add_argument("outdir", type=Path, help="where to write the PNG files")
    args = parser.parse_args(argv)
    take_screenshots(args.outdir)


if __name__ == "__main__":
    main()
