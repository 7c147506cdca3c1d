"""The alert FeatureCollection: RFC 7946, every property typed, deterministic bytes."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import geopandas as gpd
import jsonschema
import numpy as np
import pyogrio
import pytest
import shapely
from shapely.geometry import shape

from detection.alerts import (
    ALERT_PROPERTIES,
    CONFIDENCE_LEVELS,
    build_feature_collection,
    confidence_level,
    write_geojson,
)
from detection.errors import DetectionError

# The contract's JSON Schema, written from DESIGN.md section 2 (not from the code).
from tests.detection.test_geojson_schema import SCHEMA


def _coords(fc: dict) -> list[float]:
    def walk(value: Any):
        if isinstance(value, list):
            for v in value:
                yield from walk(v)
        else:
            yield value

    return [c for f in fc["features"] for c in walk(f["geometry"]["coordinates"])]


def test_feature_collection_is_valid_rfc7946(alerts: gpd.GeoDataFrame, metadata: dict) -> None:
    fc = build_feature_collection(alerts, metadata=metadata)
    jsonschema.validate(fc, SCHEMA)
    assert "crs" not in fc
    assert [f["id"] for f in fc["features"]] == sorted(alerts["site_id"])
    for feature in fc["features"]:
        assert feature["id"] == feature["properties"]["site_id"]
        assert tuple(feature["properties"]) == ALERT_PROPERTIES
        geom = shape(feature["geometry"])
        assert geom.is_valid
        polygons = geom.geoms if geom.geom_type == "MultiPolygon" else [geom]
        for poly in polygons:  # right-hand rule: exterior CCW, holes CW
            assert poly.exterior.is_ccw
            assert all(not hole.is_ccw for hole in poly.interiors)
        minx, miny, maxx, maxy = geom.bounds
        assert -57.1 < minx < maxx < -56.9 and -7.1 < miny < maxy < -6.9  # lon, lat order
    holed = next(f for f in fc["features"] if f["id"] == "mw-m-00000002")
    assert len(holed["geometry"]["coordinates"]) == 2
    assert all(round(c, 7) == c for c in _coords(fc))


def test_properties_have_real_values_and_json_types(
    alerts: gpd.GeoDataFrame, metadata: dict
) -> None:
    fc = build_feature_collection(alerts, metadata=metadata)
    props = {f["id"]: f["properties"] for f in fc["features"]}
    mining = props["mw-m-00000002"]
    assert mining["confidence_level"] == "very_likely"
    assert mining["scene_ids"] == ["S2A_1", "S2B_2"] and mining["platforms"] == ["S2A", "S2B"]
    assert props["mw-d-00000001"]["confidence_level"] == "likely"
    assert props["mw-m-00000003"]["confidence_level"] == "probable"
    assert props["mw-d-00000001"]["first_detected"] == "2024-06-30"
    assert mining["period_start"] == "2024-07-01" and mining["period_end"] == "2024-09-30"
    assert mining["evidence"] == {} and mining["review_status"] == "unreviewed"
    assert mining["distance_to_boundary_m"] == 120.0
    meta = fc["minewatch"]
    assert meta["generated_at"] == "2024-10-01T12:30:00Z"
    assert meta["period"] == {"start": "2024-07-01", "end": "2024-09-30"}
    assert meta["previous_period"] == {"start": "2024-04-01", "end": "2024-06-30"}
    assert meta["model"] == {"name": "indices", "version": "0.1", "sha256": "ab" * 32}
    # thresholds given under the words of format 1.x are recorded under today's
    assert meta["confidence_levels"] == {"probable": 0.5, "likely": 0.7, "very_likely": 0.9}
    json.dumps(fc, allow_nan=False)  # plain JSON types only


def test_rerun_is_byte_identical(alerts: gpd.GeoDataFrame, metadata: dict, tmp_path: Path) -> None:
    write_geojson(tmp_path / "a.geojson", build_feature_collection(alerts, metadata=metadata))
    shuffled = alerts.iloc[[2, 0, 1]]
    write_geojson(tmp_path / "b.geojson", build_feature_collection(shuffled, metadata=metadata))
    assert (tmp_path / "a.geojson").read_bytes() == (tmp_path / "b.geojson").read_bytes()


def test_gdal_reads_it_back(alerts: gpd.GeoDataFrame, metadata: dict, tmp_path: Path) -> None:
    path = tmp_path / "alerts.geojson"
    write_geojson(path, build_feature_collection(alerts, metadata=metadata))
    back = pyogrio.read_dataframe(path)
    assert len(back) == 3 and back.crs.to_epsg() == 4326
    assert set(ALERT_PROPERTIES) <= set(back.columns)
    assert sorted(back["site_id"]) == sorted(alerts["site_id"])
    json.loads(path.read_text(encoding="utf-8"))


def test_projected_input_is_reprojected(alerts: gpd.GeoDataFrame, metadata: dict) -> None:
    a = build_feature_collection(alerts, metadata=metadata)
    b = build_feature_collection(alerts.to_crs("EPSG:32721"), metadata=metadata)
    for fa, fb in zip(a["features"], b["features"], strict=True):
        assert shape(fa["geometry"]).equals_exact(shape(fb["geometry"]), 1e-6)


def test_empty_result_is_a_valid_empty_collection(metadata: dict, tmp_path: Path) -> None:
    empty = gpd.GeoDataFrame({"site_id": []}, geometry=gpd.GeoSeries([]), crs="EPSG:4326")
    fc = build_feature_collection(empty, metadata=metadata)
    jsonschema.validate(fc, SCHEMA)
    assert fc["features"] == []
    path = tmp_path / "alerts.geojson"
    write_geojson(path, fc)
    assert json.loads(path.read_text(encoding="utf-8"))["features"] == []
    assert len(pyogrio.read_dataframe(path)) == 0


THRESHOLDS = {"probable": 0.5, "likely": 0.7, "very_likely": 0.9}


@pytest.mark.parametrize(
    ("value", "level"),
    [
        (0.2, "probable"),
        (0.5, "probable"),
        (0.7, "likely"),
        (0.89, "likely"),
        (0.9, "very_likely"),
    ],
)
def test_confidence_level(value: float, level: str) -> None:
    assert CONFIDENCE_LEVELS == ("probable", "likely", "very_likely")
    assert confidence_level(value, THRESHOLDS) == level
    # thresholds keyed by format 1.x's words give the same band
    assert confidence_level(value, {"low": 0.5, "high": 0.7, "highest": 0.9}) == level


def test_confidence_words_do_not_collide_with_gfw() -> None:
    # GFW integrated alerts: nominal / high / highest count agreeing systems; ours are
    # probability bands and must not be read as those.
    assert not set(CONFIDENCE_LEVELS) & {"nominal", "high", "highest", "low"}


def test_confidence_level_rejects_bad_thresholds_and_values() -> None:
    with pytest.raises(DetectionError, match="expected a mapping with exactly"):
        confidence_level(0.5, {"probable": 0.5, "likely": 0.7})
    with pytest.raises(
        DetectionError, match="expected 0 <= probable <= likely <= very_likely <= 1"
    ):
        confidence_level(0.5, {"probable": 0.8, "likely": 0.7, "very_likely": 0.9})
    with pytest.raises(DetectionError, match=r"confidence 1\.5: expected a number in 0\.\.1"):
        confidence_level(1.5, THRESHOLDS)


def test_missing_or_unknown_metadata_is_named(alerts: gpd.GeoDataFrame, metadata: dict) -> None:
    bad = {k: v for k, v in metadata.items() if k != "run_id"} | {"runid": "x"}
    with pytest.raises(
        DetectionError, match=r"missing keys \['run_id'\], unknown keys \['runid'\]"
    ):
        build_feature_collection(alerts, metadata=bad)
    naive = metadata | {"generated_at": dt.datetime(2024, 10, 1)}
    with pytest.raises(DetectionError, match="expected a timezone-aware datetime"):
        build_feature_collection(alerts, metadata=naive)
    with pytest.raises(DetectionError, match=r"model .* non-empty 'name', 'version' and 'sha256'"):
        build_feature_collection(alerts, metadata=metadata | {"model": {"name": "x"}})


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("confidence", np.nan, "alert mw-m-00000002: property confidence is nan"),
        ("status", "growing", "alert mw-m-00000002: status 'growing'; expected one of"),
        ("aoi_name", None, "alert mw-m-00000002: property aoi_name is None"),
        (
            "observed_fraction",
            1.2,
            "alert mw-m-00000002: observed_fraction 1.2 is outside 0.0..1.0",
        ),
        ("first_detected", "soon", "alert mw-m-00000002: first_detected 'soon'; expected a date"),
        ("scene_ids", 7, "alert mw-m-00000002: scene_ids 7; expected a list of strings"),
    ],
)
def test_bad_values_name_the_site_and_property(
    alerts: gpd.GeoDataFrame, metadata: dict, column: str, value: object, message: str
) -> None:
    alerts[column] = alerts[column].astype(object)
    alerts.at[0, column] = value
    with pytest.raises(DetectionError, match=message):
        build_feature_collection(alerts, metadata=metadata)


def test_missing_columns_and_duplicate_ids_are_rejected(
    alerts: gpd.GeoDataFrame, metadata: dict
) -> None:
    with pytest.raises(DetectionError, match=r"missing columns \['observed_fraction'\]"):
        build_feature_collection(alerts.drop(columns="observed_fraction"), metadata=metadata)
    alerts.loc[1, "site_id"] = "mw-m-00000002"
    with pytest.raises(DetectionError, match="site_id 'mw-m-00000002' appears twice"):
        build_feature_collection(alerts, metadata=metadata)


def test_geometry_errors(alerts: gpd.GeoDataFrame, metadata: dict) -> None:
    alerts.loc[0, "geometry"] = shapely.Point(-57, -7)
    with pytest.raises(DetectionError, match="geometry type Point; expected Polygon"):
        build_feature_collection(alerts, metadata=metadata)
    with pytest.raises(DetectionError, match="table has no CRS"):
        build_feature_collection(alerts.set_crs(None, allow_override=True), metadata=metadata)
