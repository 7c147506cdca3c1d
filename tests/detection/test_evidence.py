"""Evidence chips: before/after PNGs from the right periods, polygon drawn, provenance kept."""

from __future__ import annotations

import logging
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from PIL import Image

from detection.alerts import NODATA_RGB, OUTLINE_RGB, period_overlay, scene_date, write_evidence
from detection.errors import DetectionError
from tests.detection.conftest import to_wgs84, utm_box
from tests.detection.rasters import scene_ids, write_units
from tiles.periods import Period

#: The planted change: a 200 m square of bare sediment in chip T1, and a strip across T1/T2.
SQUARE = (200.0, 200.0, 200.0, 200.0)
STRIP = (1180.0, 300.0, 200.0, 100.0)


@pytest.fixture
def units(tmp_path: Path, q2: Period, q3: Period) -> Path:
    units_dir = tmp_path / "units"
    write_units(units_dir, q2, cloud_rows=3)
    write_units(units_dir, q3, bare=[SQUARE, STRIP])
    return units_dir


def _alerts(*boxes: tuple[float, float, float, float]) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"site_id": [f"mw-m-{i:08x}" for i in range(len(boxes))]},
        geometry=to_wgs84([utm_box(*b) for b in boxes]),
        crs="EPSG:4326",
    )


def _outline_box(image: np.ndarray) -> tuple[int, int, int, int]:
    """Row/col bounds of the pixels in the outline colour."""
    rows, cols = np.nonzero((image == OUTLINE_RGB).all(axis=-1))
    return int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())


def test_chips_show_before_and_after_with_the_polygon(
    units: Path, q2: Period, q3: Period, tmp_path: Path
) -> None:
    out = write_evidence(
        _alerts(SQUARE), units_dir=units, period=q3, previous_period=q2, out_dir=tmp_path
    )
    ev = out["evidence"].iloc[0]
    for key in ("before_true_colour", "after_true_colour", "before_swir", "after_swir"):
        assert ev[key] == f"evidence/mw-m-00000000/{key}.png"
        assert (tmp_path / ev[key]).is_file()
    after = np.asarray(Image.open(tmp_path / ev["after_true_colour"]).convert("RGB"))
    before = np.asarray(Image.open(tmp_path / ev["before_true_colour"]).convert("RGB"))
    # Window 800 m (min extent) = 80 px, enlarged x3 = 240 px (the caption below it); the 200 m
    # site is 60 px wide, centred: the outline's box is there, within the line width.
    assert after.shape[1] == 240 and after.shape[0] > 240
    after, before = after[:240], before[:240]
    top, bottom, left, right = _outline_box(after)
    for got, want in ((top, 90), (bottom, 150), (left, 90), (right, 150)):
        assert abs(got - want) <= 2, (top, bottom, left, right)
    assert _outline_box(before) == (top, bottom, left, right)
    # Inside the site: bright sediment after, dark forest before (one shared stretch).
    assert after[100:140, 100:140].mean() > 150 > 60 > before[100:140, 100:140].mean()
    # Provenance: scenes and dates of each side's own period.
    # Each scene with its own date and side (one list: nothing to pair by position).
    before_ids, after_ids = scene_ids("T1", q2), scene_ids("T1", q3)
    assert ev["scenes"] == [
        {"id": before_ids[0], "date": "2024-04-05", "role": "before"},
        {"id": before_ids[1], "date": "2024-04-20", "role": "before"},
        {"id": after_ids[0], "date": "2024-07-05", "role": "after"},
        {"id": after_ids[1], "date": "2024-07-20", "role": "after"},
    ]
    assert not any(k.endswith(("_scene_ids", "_scene_dates")) for k in ev)
    assert (ev["after_period_start"], ev["after_period_end"]) == ("2024-07-01", "2024-09-30")
    assert (ev["before_period_start"], ev["before_period_end"]) == ("2024-04-01", "2024-06-30")
    assert ev["after_observed_fraction"] == 1.0
    assert ev["bands"] == {"true_colour": "B04,B03,B02", "swir": "B12,B08,B04"}


def test_chips_are_captioned_and_georeferenced(
    units: Path, q2: Period, q3: Period, tmp_path: Path
) -> None:
    """Each PNG says what it shows and carries a true scale bar; a GeoTIFF beside it holds the
    same pixels where they are on the ground."""
    out = write_evidence(
        _alerts(SQUARE), units_dir=units, period=q3, previous_period=q2, out_dir=tmp_path
    )
    ev = out["evidence"].iloc[0]
    png_path = tmp_path / ev["before_true_colour"]
    png = Image.open(png_path)
    assert png.text["Title"] == "site mw-m-00000000"
    description = png.text["Description"]
    assert "BEFORE: composite of 2024-04-01..2024-06-30" in description
    assert "images of 2024-04-05, 2024-04-20 (2 scenes)" in description
    assert "true colour: R B04, G B03, B B02" in description
    assert "R B12, G B08, B B04" in Image.open(tmp_path / ev["after_swir"]).text["Description"]
    pixels = np.asarray(png.convert("RGB"))
    chip = pixels[: png.width]
    caption = pixels[png.width :]
    # Text was drawn below the image: dark pixels on at least four separate text lines.
    dark_rows = np.nonzero((caption < 100).all(axis=-1).any(axis=1))[0]
    assert len(np.split(dark_rows, np.nonzero(np.diff(dark_rows) > 1)[0] + 1)) >= 5

    with rasterio.open(png_path.with_suffix(".tif")) as tif:
        assert tif.crs.to_epsg() == 32721 and tif.res == (10.0, 10.0)
        assert tif.descriptions == ("B04", "B03", "B02")
        assert tif.tags()["SITE_ID"] == "mw-m-00000000" and tif.tags()["SIDE"] == "before"
        rgb = np.moveaxis(tif.read(), 0, -1)
        mask = tif.dataset_mask()
        # The site's centre (300, 300 m in the test grid) is where the GeoTIFF says.
        site = gpd.GeoSeries(_alerts(SQUARE).geometry).to_crs(32721).iloc[0].centroid
        row, col = tif.index(site.x, site.y)
        assert mask[row, col] == 255
    # Ground size of a PNG pixel, from the GeoTIFF (not from the PNG's own claim).
    factor = png.width // rgb.shape[1]
    metres_per_px = 10.0 / factor
    assert float(png.text["metres_per_pixel"]) == pytest.approx(metres_per_px, rel=1e-4)
    # The same pixels: the PNG is the GeoTIFF enlarged (away from the drawn outline), and the
    # masked pixels are the grey "no observation" ones.
    enlarged = rgb.repeat(factor, axis=0).repeat(factor, axis=1)
    away = ~(chip == OUTLINE_RGB).all(axis=-1)
    assert (enlarged[away] == chip[away]).all()
    assert (rgb[mask == 0] == NODATA_RGB).all() and (mask == 0).any()  # cloud rows before
    # The scale bar: the longest black run below the image is as long as its label says.
    bar_m = int(png.text["scale_bar_m"])
    runs = [_longest_run((row_ == 0).all(axis=-1)) for row_ in caption]
    assert abs(max(runs) * metres_per_px - bar_m) <= metres_per_px
    assert 0.2 * png.width <= max(runs) <= 0.4 * png.width


def _longest_run(flags: np.ndarray) -> int:
    best = current = 0
    for flag in flags:
        current = current + 1 if flag else 0
        best = max(best, current)
    return best


def test_site_across_two_chips_is_mosaicked(
    units: Path, q2: Period, q3: Period, tmp_path: Path
) -> None:
    out = write_evidence(
        _alerts(STRIP), units_dir=units, period=q3, previous_period=q2, out_dir=tmp_path
    )
    ev = out["evidence"].iloc[0]
    after = [e["id"] for e in ev["scenes"] if e["role"] == "after"]
    assert sorted(after) == sorted(scene_ids("T1", q3) + scene_ids("T2", q3))
    after = np.asarray(Image.open(tmp_path / ev["after_swir"]).convert("RGB"))
    top, bottom, left, right = _outline_box(after)
    centre = after[(top + bottom) // 2, left + 4 : right - 4]
    # Sediment on both sides of the chip edge (no nodata seam in the middle of the site).
    assert not (centre == (60, 60, 60)).all(axis=-1).any()


def test_no_previous_period(units: Path, q3: Period, tmp_path: Path) -> None:
    out = write_evidence(
        _alerts(SQUARE), units_dir=units, period=q3, previous_period=None, out_dir=tmp_path
    )
    ev = out["evidence"].iloc[0]
    assert ev["before_true_colour"] is None and ev["before_swir"] is None
    assert {e["role"] for e in ev["scenes"]} == {"after"} and ev["after_true_colour"] is not None


def test_scene_dates_stay_with_their_scene(tmp_path: Path, q2: Period, q3: Period) -> None:
    """Scene ids sorted by name and by date differ (S2B before S2A, an id with no date in it):
    each scene keeps its own date, from the id or the scan's scene list."""
    units_dir = tmp_path / "units"
    ids = [
        "S2A_MSIL2A_20240725T135411_N0510_R067_T21MT1_20240725T171208",
        "S2B_MSIL2A_20240703T135538_N0510_R067_T21MT1_20240703T185244",
        "S2C_21MT1_20240714_0_L2A",
    ]
    write_units(units_dir, q3, scene_ids_of=lambda tile, period: ids)
    out = write_evidence(
        _alerts(SQUARE),
        units_dir=units_dir,
        period=q3,
        previous_period=q2,
        out_dir=tmp_path,
        scene_dates={"S2C_21MT1_20240714_0_L2A": "2024-07-14"},
    )
    ev = out["evidence"].iloc[0]
    scenes = ev["scenes"]
    # The chip's caption has the date of the id that does not carry one, too.
    caption = Image.open(tmp_path / ev["after_true_colour"]).text["Description"]
    assert "2024-07-03, 2024-07-14, 2024-07-25" in caption
    assert [(e["id"][:3], e["date"]) for e in scenes] == [
        ("S2B", "2024-07-03"),
        ("S2C", "2024-07-14"),
        ("S2A", "2024-07-25"),
    ]


def test_composite_of_another_period_is_not_used(
    tmp_path: Path, q1: Period, q2: Period, q3: Period, caplog: pytest.LogCaptureFixture
) -> None:
    units_dir = tmp_path / "units"
    write_units(units_dir, q3, bare=[SQUARE])
    write_units(units_dir, q2, tag_period=q1)  # a q1 composite misfiled under 2024Q2
    with caplog.at_level(logging.WARNING, logger="detection.alerts._evidence"):
        out = write_evidence(
            _alerts(SQUARE), units_dir=units_dir, period=q3, previous_period=q2, out_dir=tmp_path
        )
    assert out["evidence"].iloc[0]["before_true_colour"] is None
    assert "not period 2024Q2" in caplog.text


def test_existing_evidence_keys_are_kept_and_errors(
    units: Path, q2: Period, q3: Period, tmp_path: Path
) -> None:
    alerts = _alerts(SQUARE)
    alerts["evidence"] = [{"field_photo": "photos/1.jpg"}]
    out = write_evidence(alerts, units_dir=units, period=q3, previous_period=q2, out_dir=tmp_path)
    assert out["evidence"].iloc[0]["field_photo"] == "photos/1.jpg"
    with pytest.raises(DetectionError, match="lack 'site_id'"):
        write_evidence(
            alerts.drop(columns="site_id"),
            units_dir=units,
            period=q3,
            previous_period=q2,
            out_dir=tmp_path,
        )
    with pytest.raises(DetectionError, match="chip_px 4"):
        write_evidence(
            alerts, units_dir=units, period=q3, previous_period=q2, out_dir=tmp_path, chip_px=4
        )


def test_period_overlay_and_scene_dates(units: Path, q3: Period) -> None:
    overlay = period_overlay(units, q3, max_px=64)
    assert overlay is not None and overlay.mime == "image/webp"
    assert max(overlay.width, overlay.height) == 64
    west, south, east, north = overlay.bbox
    assert -57.01 < west < east < -56.97 and -7.01 < south < north < -6.98
    assert scene_date("S2B_MSIL2A_20240408T135538_N0510_R067_T21MVN_20240408T185244") == (
        "2024-04-08"
    )
    assert scene_date("LC08_L2SP_001002") is None
