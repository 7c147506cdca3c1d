"""Real boundaries from ../shared/data and the shipped demo AOI."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import geopandas as gpd
import pytest
from shapely.geometry import Point, shape

from aoi import (
    AOIConfig,
    area_ha,
    buffer_aoi,
    bundled_aoi_path,
    demo_aoi_config,
    load_aoi,
)

DEMO_POINT = Point(-57.55, -6.62)


def test_bundled_munduruku_loads() -> None:
    aois = load_aoi(demo_aoi_config())
    assert aois[["aoi_id", "aoi_name", "aoi_kind"]].values.tolist() == [
        ["29801", "Munduruku", "indigenous_land"]]
    geom = aois.geometry.iloc[0]
    assert geom.contains(DEMO_POINT)
    # FUNAI gives 2,381,795 ha for TI Munduruku; the AMW outline is within a fraction of that.
    assert area_ha(aois).iloc[0] == pytest.approx(2_381_795, rel=0.01)


def test_bundled_file_is_small_and_attributed() -> None:
    path = bundled_aoi_path()
    assert path.stat().st_size < 200_000
    attribution = (path.parent / "ATTRIBUTION.md").read_text(encoding="utf-8")
    for needle in ("CC-BY-4.0", "FUNAI", "bbbcb2d7", "Earth Genome"):
        assert needle in attribution
    with pytest.raises(FileNotFoundError, match="no bundled AOI 'kayapo'; expected one of: "
                                                "munduruku"):
        bundled_aoi_path("kayapo")


def test_bundled_munduruku_is_the_amw_outline(shared_data: Path) -> None:
    source = shared_data / "amw" / "boundaries" / "indigenous_territories_impacts.geojson"
    doc = json.loads(source.read_text(encoding="utf-8"))
    (original,) = [f for f in doc["features"] if f["properties"]["id_field"] == "29801"]
    shipped = json.loads(bundled_aoi_path().read_text(encoding="utf-8"))["features"][0]
    assert shape(shipped["geometry"]).equals(shape(original["geometry"]))


def test_amw_impacts_layer_filtered_to_munduruku(shared_data: Path) -> None:
    path = shared_data / "amw" / "boundaries" / "indigenous_territories_impacts.geojson"
    aois = load_aoi(AOIConfig(path=path, where="name_field = 'Munduruku'"))
    assert aois[["aoi_id", "aoi_name", "aoi_kind"]].values.tolist() == [
        ["29801", "Munduruku", "indigenous_land"]]
    assert aois.geometry.iloc[0].contains(DEMO_POINT)


def test_amw_impacts_layer_loads_whole(shared_data: Path) -> None:
    path = shared_data / "amw" / "boundaries" / "indigenous_territories_impacts.geojson"
    aois = load_aoi(AOIConfig(path=path))
    assert len(aois) == 237 and aois["aoi_id"].is_unique
    assert aois.is_valid.all()


def test_yanomami_and_munduruku(shared_data: Path) -> None:
    path = shared_data / "amw" / "boundaries" / "yanomami_and_munduruku.geojson"
    aois = load_aoi(AOIConfig(path=path, id_field="name", name_field="name",
                              kind="indigenous_land"))
    assert list(aois["aoi_id"]) == ["Munduruku", "Yanomami"]
    yanomami = aois.set_index("aoi_id").geometry["Yanomami"]
    assert yanomami.contains(Point(-63.0, 2.5))  # Surucucus, Roraima
    # Brazil (~9.7 Mha) and the Venezuelan side together
    assert 15_000_000 < area_ha(aois).iloc[1] < 18_000_000


def test_guinea_protected_areas_3d_crs_and_repairs(
    shared_data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = shared_data / "amw" / "boundaries" / "guinea-east-protected_areas.geojson"
    raw = gpd.read_file(path)
    invalid = int((~raw.is_valid).sum())
    assert raw.crs.to_epsg() == 4979 and invalid > 0
    with caplog.at_level(logging.WARNING, logger="aoi.layers"):
        aois = load_aoi(AOIConfig(path=path, id_field="Code", name_field="NAME",
                                  kind="protected_area"))
    assert len(aois) == 52 and aois.crs.to_epsg() == 4326
    assert aois.is_valid.all() and not aois.has_z.any()
    repaired = [r for r in caplog.records if "invalid geometry" in r.message]
    assert len(repaired) == invalid
    assert "Parc national de Moyen-Bafing" in caplog.text


def test_buffer_of_munduruku() -> None:
    aois = load_aoi(demo_aoi_config())
    grown = buffer_aoi(aois, 5_000)
    inner, outer = area_ha(aois).iloc[0], area_ha(grown).iloc[0]
    assert grown.geometry.iloc[0].contains(aois.geometry.iloc[0])
    # roughly perimeter x 5 km; the outline is about 1,100 km long
    perimeter_km = aois.to_crs("EPSG:32721").length.iloc[0] / 1000
    assert outer - inner == pytest.approx(perimeter_km * 1000 * 5_000 / 10_000, rel=0.15)
