"""attribute_aois: inside / buffer / dropped, distances against known geometry."""

from __future__ import annotations

import logging
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest

from detection.errors import DetectionError
from detection.sites import attribute_admin, attribute_aois
from tests.detection.conftest import UTM, sites_frame, to_wgs84, utm_box


def _aois(rows: list[tuple[str, str, object]]) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {
            "aoi_id": [r[0] for r in rows],
            "aoi_name": [r[1] for r in rows],
            "aoi_kind": ["indigenous_land"] * len(rows),
        },
        geometry=to_wgs84([r[2] for r in rows]),
        crs="EPSG:4326",
    )


@pytest.fixture
def territory() -> gpd.GeoDataFrame:
    """A 10 km x 10 km territory with its lower-left corner at the origin of the test grid."""
    return _aois([("TI-1", "Munduruku", utm_box(0, 0, 10_000, 10_000))])


def test_inside_buffer_and_dropped(territory: gpd.GeoDataFrame, caplog) -> None:
    sites = sites_frame(
        [
            ("mining", utm_box(1000, 5000, 100, 100)),  # inside, 1000 m from the west edge
            ("mining", utm_box(-50, 5000, 100, 100)),  # crosses the west edge
            ("mining", utm_box(-400, 5000, 100, 100)),  # 300 m outside
            ("mining", utm_box(-5100, 5000, 100, 100)),  # 5 km outside
        ],
        label=["deep", "edge", "near", "far"],
    )
    with caplog.at_level(logging.INFO, logger="detection.sites._context"):
        out = attribute_aois(sites, territory, buffer_m=1000)
    assert list(out["label"]) == ["deep", "edge", "near"]
    assert "dropped 1 of 4 sites farther than 1000 m" in caplog.text
    assert list(out["aoi_relation"]) == ["inside", "inside", "buffer"]
    assert list(out["aoi_id"]) == ["TI-1"] * 3
    assert set(out["aoi_name"]) == {"Munduruku"} and set(out["aoi_kind"]) == {"indigenous_land"}
    assert list(out["distance_to_boundary_m"]) == pytest.approx([1000, 0, 300], abs=0.5)
    assert list(out["aoi_ids"]) == [["TI-1"]] * 3


def test_site_in_a_hole_is_outside(territory: gpd.GeoDataFrame) -> None:
    holed = _aois(
        [
            (
                "TI-2",
                "Holed",
                utm_box(0, 0, 10_000, 10_000).difference(utm_box(4000, 4000, 2000, 2000)),
            )
        ]
    )
    sites = sites_frame([("mining", utm_box(4500, 5000, 100, 100))])
    out = attribute_aois(sites, holed, buffer_m=1000)
    assert out["aoi_relation"].iloc[0] == "buffer"
    assert out["distance_to_boundary_m"].iloc[0] == pytest.approx(500, abs=0.5)


def test_overlapping_aois_pick_the_largest_share_and_inside_beats_buffer() -> None:
    aois = _aois(
        [
            ("A", "West", utm_box(0, 0, 1030, 5000)),
            ("B", "East", utm_box(1030, 0, 5000, 5000)),
            ("C", "Nearby", utm_box(-800, 0, 500, 5000)),
        ]
    )
    # 100 m wide site at x 1000..1100: 30 m in A, 70 m in B; C is 1300 m away.
    sites = sites_frame([("mining", utm_box(1000, 2000, 100, 100))])
    out = attribute_aois(sites, aois, buffer_m=2000)
    assert out["aoi_id"].iloc[0] == "B" and out["aoi_relation"].iloc[0] == "inside"
    assert out["aoi_ids"].iloc[0] == ["B", "A", "C"]
    assert out["distance_to_boundary_m"].iloc[0] == 0
    # Outside every AOI but near two: the nearest wins.
    far = sites_frame([("mining", utm_box(-1000, 2000, 100, 100))])
    out = attribute_aois(far, aois, buffer_m=2000)
    assert out["aoi_id"].iloc[0] == "C" and out["aoi_relation"].iloc[0] == "buffer"
    assert out["distance_to_boundary_m"].iloc[0] == pytest.approx(100, abs=0.5)


def test_no_sites_gives_no_rows_with_columns(territory: gpd.GeoDataFrame) -> None:
    out = attribute_aois(sites_frame([]), territory, buffer_m=100)
    assert out.empty and {"aoi_id", "aoi_relation", "distance_to_boundary_m"} <= set(out.columns)


def test_errors_name_the_problem(territory: gpd.GeoDataFrame) -> None:
    sites = sites_frame([("mining", utm_box(0, 0, 100, 100))])
    with pytest.raises(DetectionError, match="buffer_m -1; expected >= 0"):
        attribute_aois(sites, territory, buffer_m=-1)
    with pytest.raises(DetectionError, match=r"aois lack columns \['aoi_kind'\]"):
        attribute_aois(sites, territory.drop(columns="aoi_kind"), buffer_m=10)
    with pytest.raises(DetectionError, match="sites CRS is EPSG:32721; expected EPSG:4326"):
        attribute_aois(sites.to_crs(UTM), territory, buffer_m=10)


def test_overlapping_real_and_convention_layers(shared_data: Path, tmp_path: Path) -> None:
    """The real Munduruku outline (Amazon Mining Watch fields), a WDPA-style protected area and
    a FUNAI-style territory overlapping it, each read through its field convention."""
    import json

    from shapely.geometry import box, mapping

    from aoi import load_aoi
    from aoi.config import AOIConfig

    munduruku = load_aoi(
        AOIConfig(
            path=shared_data / "amw" / "boundaries" / "indigenous_territories_impacts.geojson",
            where="name_field = 'Munduruku'",
        )
    )

    def layer(name: str, props: dict, geom: object) -> Path:
        path = tmp_path / name
        doc = {
            "type": "FeatureCollection",
            "features": [{"type": "Feature", "properties": props, "geometry": mapping(geom)}],
        }
        path.write_text(json.dumps(doc), encoding="utf-8")
        return path

    # Inside Munduruku near the demo area (-57.5, -6.6).
    wdpa = load_aoi(
        AOIConfig(
            path=layer(
                "wdpa.geojson",
                {"WDPAID": 555001, "NAME": "Floresta Nacional X", "DESIG_ENG": "National Forest"},
                box(-57.60, -6.70, -57.50, -6.60),
            )
        )
    )
    funai = load_aoi(
        AOIConfig(
            path=layer(
                "funai.geojson",
                {"terrai_cod": "77701", "terrai_nom": "Sai Cinza"},
                box(-57.55, -6.65, -57.45, -6.55),
            )
        )
    )
    aois = gpd.GeoDataFrame(pd.concat([munduruku, wdpa, funai], ignore_index=True), crs=4326)
    assert list(aois["aoi_kind"]) == ["indigenous_land", "protected_area", "indigenous_land"]
    assert list(aois["aoi_name"]) == ["Munduruku", "Floresta Nacional X", "Sai Cinza"]

    sites = gpd.GeoDataFrame(
        {"alert_class": ["mining", "mining"], "area_ha": [1.0, 1.0]},
        geometry=[
            box(-57.530, -6.630, -57.525, -6.625),  # in all three
            box(-57.598, -6.698, -57.590, -6.690),  # in Munduruku and the WDPA area only
        ],
        crs="EPSG:4326",
    )
    out = attribute_aois(sites, aois, buffer_m=1000)
    # Equal shares: the tie goes to the smaller id; every AOI is listed, best first.
    assert out["aoi_ids"].iloc[0] == ["29801", "555001", "77701"]
    assert out["aoi_id"].iloc[0] == "29801" and out["aoi_relation"].iloc[0] == "inside"
    assert out["aoi_ids"].iloc[1][:2] == ["29801", "555001"]
    # Depth inside the WDPA box edge is about 220 m; Munduruku's boundary is kilometres away.
    assert out["distance_to_boundary_m"].iloc[1] > 5_000


def test_area_inside_each_aoi_of_a_site_across_two(territory: gpd.GeoDataFrame) -> None:
    """A 200 m x 100 m site (2 ha) across the border of two territories: 1.5 ha in one, 0.5 ha
    in the other; neither counts it whole."""
    two = _aois(
        [
            ("TI-1", "Munduruku", utm_box(0, 0, 10_000, 10_000)),
            ("TI-2", "Sai Cinza", utm_box(10_000, 0, 10_000, 10_000)),
        ]
    )
    sites = sites_frame(
        [("mining", utm_box(9_850, 5_000, 200, 100)), ("mining", utm_box(-400, 5000, 100, 100))]
    )
    sites["area_ha"] = [2.0, 1.0]
    out = attribute_aois(sites, two, buffer_m=1000)
    straddling, outside = out.iloc[0], out.iloc[1]
    assert straddling["aoi_id"] == "TI-1" and straddling["aoi_relation"] == "inside"
    assert [a["aoi_id"] for a in straddling["aoi_areas"]] == ["TI-1", "TI-2"]
    areas = [a["area_ha"] for a in straddling["aoi_areas"]]
    assert areas == pytest.approx([1.5, 0.5], abs=1e-3)
    assert straddling["aoi_area_ha"] == pytest.approx(1.5, abs=1e-3)
    assert straddling["aoi_area_ha"] < straddling["area_ha"]
    assert sum(areas) == pytest.approx(2.0, abs=1e-3)
    assert outside["aoi_relation"] == "buffer"
    assert outside["aoi_areas"] == [] and outside["aoi_area_ha"] == 0.0


def test_municipalities_of_a_site(territory: gpd.GeoDataFrame) -> None:
    municipalities = gpd.GeoDataFrame(
        {"municipality": ["Jacareacanga", "Itaituba"], "state": ["PA", "PA"]},
        geometry=to_wgs84([utm_box(0, 0, 10_000, 5_000), utm_box(0, 5_000, 10_000, 5_000)]),
        crs="EPSG:4326",
    )
    sites = sites_frame(
        [
            ("mining", utm_box(1_000, 4_900, 100, 400)),  # 0.1 ha south, 0.3 ha north
            ("mining", utm_box(20_000, 20_000, 100, 100)),  # outside the layer
        ]
    )
    sites["area_ha"] = [0.4, 0.1]
    out = attribute_admin(sites, municipalities)
    first = out.iloc[0]
    assert (first["municipality"], first["state"]) == ("Itaituba", "PA")
    assert [m["municipality"] for m in first["municipalities"]] == ["Itaituba", "Jacareacanga"]
    assert [m["area_ha"] for m in first["municipalities"]] == pytest.approx([0.3, 0.1], abs=1e-3)
    assert out.iloc[1]["municipality"] is None and out.iloc[1]["municipalities"] == []
    none = attribute_admin(sites, None)
    assert list(none["municipality"]) == [None, None] and list(none["municipalities"]) == [[], []]
