"""Fixtures of the detection tests: tiny sites and AOIs built in code, in a real UTM zone.

Everything is built in UTM zone 21S (EPSG:32721, central meridian 57 W, over Para, Brazil) where
lengths are exact, then reprojected to EPSG:4326 as the pipeline does.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

import geopandas as gpd
import pytest
import shapely
from shapely.geometry import box

from tiles.periods import Period, quarter

UTM = "EPSG:32721"
#: A point near 57 W, 7 S in UTM 21S coordinates.
X0, Y0 = 500_000.0, 9_226_000.0


def utm_box(x: float, y: float, w: float, h: float) -> shapely.Polygon:
    """A ``w`` x ``h`` metre rectangle whose lower-left corner is ``(X0 + x, Y0 + y)``."""
    return box(X0 + x, Y0 + y, X0 + x + w, Y0 + y + h)


def to_wgs84(geoms: Sequence[shapely.Geometry]) -> list[shapely.Geometry]:
    return list(gpd.GeoSeries(list(geoms), crs=UTM).to_crs(4326))


def sites_frame(rows: Sequence[tuple[str, shapely.Geometry]], **extra: Any) -> gpd.GeoDataFrame:
    """Sites in EPSG:4326 from ``(alert_class, UTM geometry)`` rows; area from the UTM geometry."""
    geoms = [g for _, g in rows]
    data = {
        "alert_class": [c for c, _ in rows],
        "area_ha": [g.area / 10_000 for g in geoms],
        "confidence": [0.8] * len(rows),
        "tile_id": ["21MYN_0000"] * len(rows),
    }
    data.update(extra)
    return gpd.GeoDataFrame(data, geometry=to_wgs84(geoms), crs="EPSG:4326")


@pytest.fixture
def q1() -> Period:
    return quarter(2024, 1)


@pytest.fixture
def q2() -> Period:
    return quarter(2024, 2)


@pytest.fixture
def q3() -> Period:
    return quarter(2024, 3)


@pytest.fixture
def make_sites() -> Callable[..., gpd.GeoDataFrame]:
    return sites_frame


@pytest.fixture
def metadata(q2: Period, q3: Period) -> dict[str, Any]:
    return {
        "version": "1.0",
        "run_id": "20241001T000000Z-test",
        "generated_at": dt.datetime(2024, 10, 1, 12, 30, tzinfo=dt.timezone.utc),
        "period": q3,
        "previous_period": q2,
        "model": {"name": "indices", "version": "0.1", "sha256": "ab" * 32},
        "source": "synthetic (seed 7)",
        "confidence_levels": {"low": 0.5, "high": 0.7, "highest": 0.9},
    }


@pytest.fixture
def alerts() -> gpd.GeoDataFrame:
    """Three finished alerts (every column of the contract), one with a hole, unsorted ids."""
    holed = utm_box(0, 0, 300, 300).difference(utm_box(100, 100, 100, 100))
    geoms = to_wgs84([holed, utm_box(1000, 0, 100, 200), utm_box(2000, 500, 150, 150)])
    # Clockwise exterior on purpose: the output must rewind it.
    geoms[1] = shapely.Polygon(list(geoms[1].exterior.coords)[::-1])
    return gpd.GeoDataFrame(
        {
            "site_id": ["mw-m-00000002", "mw-d-00000001", "mw-m-00000003"],
            "alert_class": ["mining", "deforestation", "mining"],
            "status": ["new", "expanding", "stable"],
            "area_ha": [8.0, 2.0, 2.25],
            "area_change_ha": [8.0, 0.75, 0.0],
            "confidence": [0.95, 0.72, 0.55],
            "first_detected": ["2024-09-30", dt.date(2024, 6, 30), "2024-03-31"],
            "last_detected": ["2024-09-30"] * 3,
            "observed_fraction": [1.0, 0.5, 0.8],
            "aoi_id": ["TI-1", "TI-1", "TI-2"],
            "aoi_name": ["Munduruku", "Munduruku", "Sai Cinza <b>&"],
            "aoi_kind": ["indigenous_land"] * 3,
            "aoi_relation": ["inside", "inside", "buffer"],
            "distance_to_boundary_m": [120.04, 0.0, 850.0],
            "tile_id": ["21MYN_0000", "21MYN_0000,21MYN_0001", "21MYN_0001"],
            "scene_ids": [["S2A_1", "S2B_2"], [], ["S2A_1"]],
            "merged_from": [[], ["mw-d-0000000f"], []],
        },
        geometry=geoms,
        crs="EPSG:4326",
    )
