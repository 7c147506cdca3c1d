"""GeoPackage (styled for QGIS), CSV summary and GeoJSON writing."""

from __future__ import annotations

import csv
import errno
import json
import sqlite3
import xml.dom.minidom
from pathlib import Path

import geopandas as gpd
import pyogrio
import pytest

from detection import exports
from detection.alerts import build_feature_collection
from detection.errors import DetectionError
from detection.exports import (
    SUMMARY_COLUMNS,
    write_geojson,
    write_geopackage,
    write_summary_csv,
)
from detection.sites import append_history
from tests.detection.conftest import to_wgs84, utm_box
from tiles.periods import Period

THRESHOLDS = {"probable": 0.5, "likely": 0.7, "very_likely": 0.9}


@pytest.fixture
def coverage() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {
            "tile_id": ["21MYN_0000", "21MYN_0001"],
            "status": ["observed", "no_imagery"],
            "observed_fraction": [0.97, 0.0],
        },
        geometry=to_wgs84([utm_box(-500, -500, 3000, 3000), utm_box(2500, -500, 3000, 3000)]),
        crs="EPSG:4326",
    )


@pytest.fixture
def aois() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"aoi_id": ["TI-1"], "aoi_name": ["Munduruku"], "aoi_kind": ["indigenous_land"]},
        geometry=to_wgs84([utm_box(-1000, -1000, 10_000, 10_000)]),
        crs="EPSG:4326",
    ).to_crs("EPSG:32721")  # written in EPSG:4326 whatever it comes in


def test_geopackage_layers_and_qgis_styles(
    alerts: gpd.GeoDataFrame,
    coverage: gpd.GeoDataFrame,
    aois: gpd.GeoDataFrame,
    q3: Period,
    tmp_path: Path,
) -> None:
    alerts["evidence"] = [{"before": "chips/a.png"}, None, {}]
    history = append_history(None, alerts.assign(split_from=None), q3)
    path = tmp_path / "alerts.gpkg"
    write_geopackage(path, alerts=alerts, coverage=coverage, aois=aois, history=history)

    layers = {name: kind for name, kind in pyogrio.list_layers(path)}
    assert {"alerts", "coverage", "aois", "sites_history"} <= set(layers)
    assert layers["alerts"] == "MultiPolygon"
    back = pyogrio.read_dataframe(path, layer="alerts")
    assert len(back) == 3 and back.crs.to_epsg() == 4326
    row = back.set_index("site_id").loc["mw-m-00000002"]
    assert json.loads(row["scene_ids"]) == ["S2A_1", "S2B_2"]
    assert json.loads(row["evidence"]) == {"before": "chips/a.png"}
    assert pyogrio.read_dataframe(path, layer="aois").crs.to_epsg() == 4326
    assert set(pyogrio.read_dataframe(path, layer="coverage")["status"]) == {
        "observed",
        "no_imagery",
    }
    assert len(pyogrio.read_dataframe(path, layer="sites_history")) == 3

    with sqlite3.connect(path) as con:
        rows = con.execute(
            "SELECT f_table_name, f_geometry_column, styleName, styleQML, useAsDefault "
            "FROM layer_styles ORDER BY f_table_name"
        ).fetchall()
        registered = con.execute(
            "SELECT data_type FROM gpkg_contents WHERE table_name = 'layer_styles'"
        ).fetchone()
    assert [r[0] for r in rows] == ["alerts", "coverage"]
    assert all(r[1] == "geom" and r[4] == 1 for r in rows)
    alerts_qml = xml.dom.minidom.parseString(rows[0][3])
    renderer = alerts_qml.getElementsByTagName("renderer-v2")[0]
    assert renderer.getAttribute("attr") == "alert_class"
    values = {c.getAttribute("value") for c in alerts_qml.getElementsByTagName("category")}
    assert values == {"mining", "deforestation"}
    coverage_qml = xml.dom.minidom.parseString(rows[1][3])
    filters = [r.getAttribute("filter") for r in coverage_qml.getElementsByTagName("rule")]
    assert filters == ["\"status\" = 'observed'", "\"status\" = 'partly_observed'", "ELSE"]
    assert registered == ("attributes",)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alerts.gpkg"]  # no temp files left


def test_geopackage_with_no_alerts(
    alerts: gpd.GeoDataFrame, coverage: gpd.GeoDataFrame, aois: gpd.GeoDataFrame, tmp_path: Path
) -> None:
    path = tmp_path / "alerts.gpkg"
    write_geopackage(path, alerts=alerts.iloc[0:0], coverage=coverage, aois=aois)
    assert pyogrio.read_info(path, layer="alerts")["features"] == 0
    with sqlite3.connect(path) as con:
        assert con.execute("SELECT count(*) FROM layer_styles").fetchone() == (2,)


def test_geopackage_needs_coverage_status(
    alerts: gpd.GeoDataFrame, coverage: gpd.GeoDataFrame, aois: gpd.GeoDataFrame, tmp_path: Path
) -> None:
    with pytest.raises(DetectionError, match="coverage lacks the 'status' column"):
        write_geopackage(
            tmp_path / "a.gpkg", alerts=alerts, coverage=coverage.drop(columns="status"), aois=aois
        )


def test_disk_full_leaves_no_half_file(
    alerts: gpd.GeoDataFrame,
    coverage: gpd.GeoDataFrame,
    aois: gpd.GeoDataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "alerts.gpkg"
    path.write_bytes(b"previous run")
    real = pyogrio.write_dataframe

    def fail_on_aois(frame: gpd.GeoDataFrame, target: Path, **kwargs: object) -> None:
        if kwargs["layer"] == "aois":
            raise OSError(errno.ENOSPC, "No space left on device")
        real(frame, target, **kwargs)

    monkeypatch.setattr(exports.pyogrio, "write_dataframe", fail_on_aois)
    with pytest.raises(DetectionError, match=r"layer 'aois': .*No space left on device"):
        write_geopackage(path, alerts=alerts, coverage=coverage, aois=aois)
    assert path.read_bytes() == b"previous run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alerts.gpkg"]


def test_summary_csv_one_row_per_site(
    alerts: gpd.GeoDataFrame, metadata: dict, tmp_path: Path
) -> None:
    path = tmp_path / "summary.csv"
    write_summary_csv(path, alerts, thresholds=THRESHOLDS)
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == SUMMARY_COLUMNS
    assert [r["site_id"] for r in rows] == sorted(alerts["site_id"])
    assert rows[0]["confidence_level"] == "likely" and rows[0]["tile_id"] == "21MYN_0000,21MYN_0001"
    assert rows[2]["aoi_name"] == "Sai Cinza <b>&"
    # From the FeatureCollection: the same bytes.
    from_fc = tmp_path / "from_fc.csv"
    write_summary_csv(from_fc, build_feature_collection(alerts, metadata=metadata))
    assert from_fc.read_bytes() == path.read_bytes()


def test_summary_csv_empty_and_errors(alerts: gpd.GeoDataFrame, tmp_path: Path) -> None:
    path = tmp_path / "summary.csv"
    write_summary_csv(path, alerts.iloc[0:0])
    assert path.read_text(encoding="utf-8") == ",".join(SUMMARY_COLUMNS) + "\n"
    with pytest.raises(DetectionError, match=r"missing columns \['confidence_level'\]"):
        write_summary_csv(path, alerts)
    with pytest.raises(DetectionError, match="expected a FeatureCollection or a GeoDataFrame"):
        write_summary_csv(path, {"type": "Feature"})


def test_write_geojson_refuses_what_is_not_a_collection(tmp_path: Path) -> None:
    with pytest.raises(DetectionError, match="expected a FeatureCollection"):
        write_geojson(tmp_path / "x.geojson", {"type": "Feature"})
    with pytest.raises(DetectionError, match="not JSON-serialisable"):
        write_geojson(
            tmp_path / "x.geojson", {"type": "FeatureCollection", "x": float("nan"), "features": []}
        )
    assert not (tmp_path / "x.geojson").exists()
