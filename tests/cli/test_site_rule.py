"""One rule from probabilities to sites (issue 17): a scene scanned as chips and the same scene
through ``minewatch predict`` give the same sites, here on a world whose mines straddle chip
edges (the demo world: tests/cli/test_demo.py)."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import pytest
import shapely

from tests.cli.conftest import minewatch, small_config
from tests.cli.site_rule import assert_same_sites, mosaic_composites

pytestmark = pytest.mark.slow


def _chip_edges(units: Path, period: str) -> shapely.Geometry:
    """The outlines of the chips the scan computed (from their composites' footprints)."""
    import rasterio

    outlines = []
    for path in sorted((units / period).glob("*_composite.tif")):
        with rasterio.open(path) as src:
            outlines.append(shapely.box(*src.bounds).boundary)
            crs = src.crs
    return gpd.GeoSeries([shapely.union_all(outlines)], crs=crs)


def test_scan_and_predict_find_the_same_sites_across_chip_edges(tmp_path: Path) -> None:
    world = tmp_path / "world"
    # 128 px chips on a 640 px world: mines straddle chip edges; the shipped network.
    cfg = small_config(tmp_path, world=world, grid__chip_size_px=128, detector__kind="network",
                       detector__device="cpu")  # fmt: skip
    out = tmp_path / "out"
    res = minewatch("scan", str(cfg), "--out", str(out), "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    period = "2024Q3"
    edges = _chip_edges(out / "units", period)
    truth = gpd.read_file(world / "truth" / "sites.geojson").to_crs(edges.crs)
    mines = truth[(truth["class"] == "mining") & (truth["period"] == period)]
    straddling = mines[mines.intersects(edges.iloc[0])]
    assert len(straddling) >= 2, "the world's mines should straddle chip edges"

    scene = mosaic_composites(out / "units", period, tmp_path / f"composite_{period}.tif")
    pred = tmp_path / "pred"
    res = minewatch("predict", str(scene), "--config", str(cfg), "--device", "cpu",
                    "--out", str(pred), "--json", cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout)["site_count"] > 0
    assert_same_sites(out, period, pred, scene)
    # A site cut by a chip edge is one site in the scan, measured whole.
    sites = gpd.read_file(out / "alerts.gpkg", layer="sites_history").to_crs(edges.crs)
    sites = sites[(sites["period_label"] == period) & (sites["alert_class"] == "mining")]
    assert sites.intersects(edges.iloc[0]).sum() >= 1
