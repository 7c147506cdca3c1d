"""The detection chain on two abutting chips and two periods: masks -> alerts -> files."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
from affine import Affine

from detection.alerts import (
    build_feature_collection,
    write_geojson,
    write_geopackage,
    write_review_html,
    write_summary_csv,
)
from detection.sites import (
    append_history,
    attribute_aois,
    merge_parts,
    polygonize_mask,
    track_sites,
)
from tests.detection.conftest import UTM, X0, Y0, to_wgs84, utm_box
from tiles.periods import Period

SIZE = 50  # 50 x 50 pixels of 10 m per chip; chip B starts where chip A ends
CHIPS = {
    "21MYN_0000": Affine(10.0, 0.0, X0, 0.0, -10.0, Y0),
    "21MYN_0001": Affine(10.0, 0.0, X0 + SIZE * 10, 0.0, -10.0, Y0),
}


def _period_sites(grow: int) -> gpd.GeoDataFrame:
    """A mining site straddling the chip edge (cols 40..60 of the mosaic, rows 10..20+grow)."""
    mosaic = np.zeros((SIZE, 2 * SIZE), dtype=bool)
    mosaic[10 : 20 + grow, 40:60] = True
    parts = []
    for k, (tile_id, transform) in enumerate(CHIPS.items()):
        mask = mosaic[:, k * SIZE : (k + 1) * SIZE]
        prob = np.where(mask, 0.85, 0.05).astype(np.float32)
        gdf = polygonize_mask(
            mask, transform=transform, crs=UTM, min_area_ha=0.0, probabilities=prob
        ).to_crs(4326)
        gdf["alert_class"] = "mining"
        gdf["tile_id"] = tile_id
        parts.append(gdf)
    return merge_parts(parts)


def test_two_periods_end_to_end(metadata: dict, q2: Period, q3: Period, tmp_path: Path) -> None:
    aois = gpd.GeoDataFrame(
        {"aoi_id": ["TI-1"], "aoi_name": ["Munduruku"], "aoi_kind": ["indigenous_land"]},
        geometry=to_wgs84([utm_box(0, -2000, 2000, 2000)]),
        crs="EPSG:4326",
    )
    before = track_sites(_period_sites(0), None, period=q2, previous_period=None)
    history = append_history(None, before, q2)
    now = track_sites(_period_sites(20), history, period=q3, previous_period=q2)
    history = append_history(history, now, q3)

    assert len(before) == len(now) == 1
    assert now["site_id"].iloc[0] == before["site_id"].iloc[0]
    assert now["status"].iloc[0] == "expanding"
    assert now["area_change_ha"].iloc[0] == pytest.approx(4.0, rel=3e-3)  # 2 ha -> 6 ha
    assert now["tile_id"].iloc[0] == "21MYN_0000,21MYN_0001"

    alerts = attribute_aois(now, aois, buffer_m=1000)
    alerts["observed_fraction"] = 1.0
    alerts["scene_ids"] = [["S2A_20240801"]]
    fc = build_feature_collection(alerts, metadata=metadata)
    assert fc["features"][0]["properties"]["aoi_relation"] == "inside"

    coverage = gpd.GeoDataFrame(
        {"status": ["observed"]}, geometry=to_wgs84([utm_box(0, -500, 1000, 500)]), crs=4326
    )
    write_geojson(tmp_path / "alerts.geojson", fc)
    write_geopackage(
        tmp_path / "alerts.gpkg", alerts=alerts, coverage=coverage, aois=aois, history=history
    )
    write_summary_csv(tmp_path / "summary.csv", fc)
    write_review_html(
        tmp_path / "review.html",
        fc,
        title="demo",
        coverage_fc=json.loads(coverage.to_json(drop_id=True)),
    )
    back = pyogrio.read_dataframe(tmp_path / "alerts.gpkg", layer="sites_history")
    assert list(back["status"]) == ["new", "expanding"]
    assert json.loads(back["merged_from"].iloc[1]) == []
    assert back["split_from"].isna().all()
    assert len(pyogrio.read_dataframe(tmp_path / "alerts.geojson")) == 1
