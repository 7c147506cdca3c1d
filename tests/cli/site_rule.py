"""Helpers of the tests that a scan and ``minewatch predict`` find the same sites (issue 17)."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from rasterio.merge import merge


def mosaic_composites(units: Path, period: str, out: Path) -> Path:
    """The composites a scan saved per chip for ``period``, as one scene GeoTIFF (as written:
    ``uint16`` reflectance with its scale tag), for ``minewatch predict``."""
    paths = sorted((units / period).glob("*_composite.tif"))
    assert paths, f"no composite in {units / period}"
    sources = [rasterio.open(p) for p in paths]
    try:
        data, transform = merge(sources)
        profile = sources[0].profile | {
            "driver": "GTiff", "height": data.shape[1], "width": data.shape[2],
            "transform": transform, "tiled": True, "blockxsize": 256, "blockysize": 256,
        }  # fmt: skip
        profile.pop("compress", None)
        with rasterio.open(out, "w", **profile) as dst:
            dst.write(data)
            dst.descriptions = sources[0].descriptions
            dst.update_tags(**sources[0].tags())
    finally:
        for src in sources:
            src.close()
    return out


def scan_sites(gpkg: Path, period: str) -> gpd.GeoDataFrame:
    """The sites a scan detected in ``period`` (its ``sites_history`` layer)."""
    history = gpd.read_file(gpkg, layer="sites_history")
    return history[history["period_label"] == period].reset_index(drop=True)


def site_differences(
    scan: gpd.GeoDataFrame, predicted: gpd.GeoDataFrame, crs: object
) -> list[tuple[str, float, float, float]]:
    """Per scan site: its class, its area, the relative area difference to the predicted site
    of its class it overlaps most, and the Hausdorff distance (m) between their outlines.

    Raises:
        AssertionError: a scan site overlaps no predicted site of its class.
    """
    a, b = scan.to_crs(crs), predicted.to_crs(crs)
    out = []
    for _, site in a.iterrows():
        same = b[(b["alert_class"] == site["alert_class"]) & b.intersects(site.geometry)]
        assert len(same), f"scan site {site['alert_class']} {site['area_ha']:.2f} ha not predicted"
        other = same.iloc[int(np.argmax(same.intersection(site.geometry).area.to_numpy()))]
        out.append((
            str(site["alert_class"]),
            float(site["area_ha"]),
            abs(float(other["area_ha"]) - float(site["area_ha"])) / float(site["area_ha"]),
            float(site.geometry.boundary.hausdorff_distance(other.geometry.boundary)),
        ))  # fmt: skip
    return out


def assert_same_sites(out: Path, period: str, predict_out: Path, scene: Path) -> None:
    """The sites the scan in ``out`` found in ``period`` are those ``minewatch predict`` found
    in ``scene`` (its composites as one scene): same count per class, every outline within one
    pixel (its diagonal, 14.2 m), every area within 1 %."""
    scan = scan_sites(out / "alerts.gpkg", period)
    predicted = gpd.read_file(predict_out / f"{scene.stem}_sites.geojson")
    assert len(scan) > 0
    assert scan["alert_class"].value_counts().to_dict() == (
        predicted["alert_class"].value_counts().to_dict()
    )
    with rasterio.open(scene) as src:
        crs = src.crs
    for cls, area, area_diff, distance in site_differences(scan, predicted, crs):
        assert area_diff <= 0.01, (cls, area, area_diff)
        assert distance <= 10 * 2**0.5 + 1e-6, (cls, area, distance)
