"""The review page in headless Chromium: it loads without errors or network, shows every alert,
sorts, and its confirm/reject export becomes labels through ``minewatch alerts import-review``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import geopandas as gpd
import pyogrio
import pytest
from click.testing import CliRunner

from detection.alerts import build_feature_collection, write_evidence, write_review_html
from minewatch.cli_alerts import alerts as alerts_group
from tests.detection.browser import chromium_driver
from tests.detection.rasters import write_units
from tiles.periods import Period


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    yield from chromium_driver()


@pytest.fixture
def page(alerts: gpd.GeoDataFrame, metadata: dict, q2: Period, q3: Period, tmp_path: Path) -> Path:
    """A run folder with units, evidence chips and review.html for the three fixture alerts."""
    units = tmp_path / "units"
    write_units(units, q2)
    write_units(units, q3, bare=[(0.0, 0.0, 300.0, 300.0)])
    alerts = write_evidence(
        alerts, units_dir=units, period=q3, previous_period=q2, out_dir=tmp_path
    )
    fc = build_feature_collection(alerts, metadata=metadata)
    path = tmp_path / "review.html"
    write_review_html(
        path, fc, title="review <test>", units_dir=units, period=q3, previous_period=q2
    )
    return path


def _open(driver: Any, path: Path) -> None:
    driver.get(path.as_uri())
    driver.execute_script("window.localStorage.clear()")
    driver.get(path.as_uri())
    for _ in range(100):
        if driver.execute_script("return !!(window.minewatch && window.minewatch.ready)"):
            return
        time.sleep(0.05)
    raise AssertionError(f"page never became ready; console: {driver.get_log('browser')}")


def _row_ids(driver: Any) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#alerts tbody tr'))"
        ".map(r => r.dataset.siteId)"
    )


def test_loads_offline_without_errors_and_shows_every_alert(driver: Any, page: Path) -> None:
    _open(driver, page)
    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert errors == []
    # Nothing fetched but the file itself (images are data: URIs).
    fetched = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert [u for u in fetched if not u.startswith(("data:", "blob:"))] == []
    assert sorted(_row_ids(driver)) == ["mw-d-00000001", "mw-m-00000002", "mw-m-00000003"]
    assert driver.execute_script("return document.querySelectorAll('path.mw-marker').length") == 3
    assert (
        driver.execute_script("return document.querySelectorAll('.leaflet-image-layer').length")
        == 1
    )  # the period composite under the map
    # Markup in the data stays text.
    assert driver.execute_script("return document.querySelectorAll('#alerts b').length") == 0
    assert "Sai Cinza <b>&" in driver.find_element("id", "alerts").text


def test_table_sorts_by_area_confidence_and_status(driver: Any, page: Path) -> None:
    _open(driver, page)

    def click(key: str) -> list[str]:
        driver.find_element("css selector", f'th[data-key="{key}"] button').click()
        return _row_ids(driver)

    # Numbers sort largest first on the first click, then smallest first.
    assert click("area_ha") == ["mw-m-00000002", "mw-m-00000003", "mw-d-00000001"]
    assert click("area_ha") == ["mw-d-00000001", "mw-m-00000003", "mw-m-00000002"]
    assert click("confidence") == ["mw-m-00000002", "mw-d-00000001", "mw-m-00000003"]
    # Status in lifecycle order: new, expanding, stable first on ascending.
    driver.execute_script("window.minewatch.sortBy('status', 'descending')")
    assert _row_ids(driver) == ["mw-m-00000003", "mw-d-00000001", "mw-m-00000002"]
    header = driver.find_element("css selector", 'th[data-key="status"]')
    assert header.get_attribute("aria-sort") == "descending"


def test_confirm_reject_export_and_import(driver: Any, page: Path, tmp_path: Path) -> None:
    _open(driver, page)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    # Selecting a row shows its evidence chips.
    driver.find_element("css selector", 'tr[data-site-id="mw-m-00000002"] td').click()
    src = driver.find_element("id", "d-after_true_colour").get_attribute("src")
    assert src.startswith("data:image/png;base64,")
    assert "2024-07-05" in driver.find_element("id", "d-after-period").text
    # Confirm one mining site in the table, reject the deforestation one from the panel.
    driver.find_element(
        "css selector", 'tr[data-site-id="mw-m-00000002"] button[data-decision="confirmed"]'
    ).click()
    driver.find_element("css selector", 'tr[data-site-id="mw-d-00000001"] td').click()
    driver.find_element("css selector", '#detail button[data-decision="rejected"]').click()
    driver.find_element("id", "d-note").send_keys("sandbar, not a clearing")
    driver.find_element("id", "reviewer").send_keys("ana")
    assert driver.find_element("id", "review-counts").text == (
        "1 confirmed, 1 rejected, 1 unreviewed"
    )
    driver.find_element("id", "export").click()
    target = downloads / "review-20241001T000000Z-test.geojson"
    for _ in range(100):
        if target.is_file() and target.stat().st_size:
            break
        time.sleep(0.05)
    assert target.is_file(), sorted(p.name for p in downloads.iterdir())
    exported = json.loads(target.read_text(encoding="utf-8"))
    assert exported == json.loads(driver.execute_script("return window.minewatch.lastExport"))
    status = {f["id"]: f["properties"]["review_status"] for f in exported["features"]}
    assert status == {
        "mw-m-00000002": "confirmed",
        "mw-d-00000001": "rejected",
        "mw-m-00000003": "unreviewed",
    }
    assert exported["minewatch_review"]["reviewer"] == "ana"

    # Decisions survive a reload (local storage).
    driver.refresh()
    assert driver.execute_script("return window.minewatch.decisions") == {
        "mw-m-00000002": "confirmed",
        "mw-d-00000001": "rejected",
    }

    group = click.Group("minewatch")
    group.add_command(alerts_group)
    labels = tmp_path / "labels.gpkg"
    result = CliRunner().invoke(
        group, ["alerts", "import-review", str(target), "--out", str(labels), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["by_class"] == {"background": 1, "mining": 1}
    got = pyogrio.read_dataframe(labels, layer="labels").set_index("site_id")
    assert got.loc["mw-m-00000002", "class"] == "mining"
    assert got.loc["mw-d-00000001", "class"] == "background"
    assert got.loc["mw-d-00000001", "review_note"] == "sandbar, not a clearing"
    assert got.loc["mw-d-00000001", "reviewer"] == "ana"
    assert str(got.loc["mw-d-00000001", "period_end"])[:10] == "2024-09-30"
