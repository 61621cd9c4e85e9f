"""Headless Chromium driven by selenium, as Debian packages it (`chromium` and
`chromium-driver`): nothing is downloaded, and a missing browser is an error saying what
to install, never a silent skip."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

# No first-run dialogs, and no traffic of the browser's own: the machine may have no
# internet, and a test must not depend on it.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


class BrowserMissingError(RuntimeError):
    """Chromium or its driver is not installed."""


def find_browser() -> tuple[str, str]:
    """The Chromium and chromedriver binaries. Raises BrowserMissingError."""
    chromium = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    driver = CHROMEDRIVER if Path(CHROMEDRIVER).exists() else shutil.which("chromedriver")
    if not chromium or not driver:
        raise BrowserMissingError(
            "headless Chromium is needed: install Debian's packages with "
            "`apt-get install -y chromium chromium-driver` (.ci/run does this)"
        )
    return chromium, driver


@contextmanager
def chromium(width: int = 1400, height: int = 900) -> Iterator[webdriver.Chrome]:
    """A headless Chromium with a fresh profile, closed (and its profile removed) on exit.
    Raises BrowserMissingError."""
    binary, driver = find_browser()
    with tempfile.TemporaryDirectory(prefix="actorflow-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = binary
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile}")
        options.add_argument(f"--window-size={width},{height}")
        browser = webdriver.Chrome(options=options, service=Service(executable_path=driver))
        try:
            yield browser
        finally:
            browser.quit()
