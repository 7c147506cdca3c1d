"""Headless Chromium for the review-page tests (selenium + the system chromedriver)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1400,1400",
)


def _find(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


def chromium_paths() -> tuple[str, str]:
    """Chromium and chromedriver, or skip the test saying what to install."""
    browser = os.environ.get("MINEWATCH_CHROMIUM") or _find("chromium", "chromium-browser")
    driver = os.environ.get("MINEWATCH_CHROMEDRIVER") or _find("chromedriver")
    if not browser or not driver:
        pytest.skip(
            "headless Chromium not found (apt-get install chromium chromium-driver, or set "
            "MINEWATCH_CHROMIUM / MINEWATCH_CHROMEDRIVER)"
        )
    return browser, driver


def chromium_driver() -> Iterator[Any]:
    """A selenium Chrome driver on headless Chromium, quit afterwards."""
    browser, driver_path = chromium_paths()
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in CHROMIUM_ARGS:
        options.add_argument(arg)
    options.binary_location = browser
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
