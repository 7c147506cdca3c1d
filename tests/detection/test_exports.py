"""GeoPackage (styled for QGIS), CSV summary and GeoJSON writing."""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import errno
import io
import json
import sqlite3
import xml.dom.minidom
from pathlib import Path

import geopandas as gpd
import pyogrio
import pytest

from detection.alerts import (
    CONFIDENCE_LEVELS,
    SUMMARY_COLUMNS,
    build_feature_collection,
    write_geojson,
    write_geopackage,
    write_summary_csv,
)
from detection.alerts import _exports as exports
from detection.errors import DetectionError
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

    # Dates are DATE fields (GDAL reads them as dates), not text.
    assert back["first_detected"].dtype.kind == "M"
    assert str(row["first_detected"].date()) == "2024-09-30"
    assert str(back.set_index("site_id").loc["mw-d-00000001", "first_detected"].date()) == (
        "2024-06-30"
    )
    history_back = pyogrio.read_dataframe(path, layer="sites_history")
    assert history_back["period_end"].dtype.kind == "M"
    with sqlite3.connect(path) as con:
        types = {r[1]: r[2] for r in con.execute("PRAGMA table_info(alerts)")}
        # GeoPackage 1.2: GDAL 3.6 (QGIS 3.22 on Debian 12) warns on every open of a 1.4 file.
        version = con.execute("PRAGMA user_version").fetchone()
    assert {types[c] for c in ("first_detected", "last_detected")} == {"DATE"}
    assert types["site_id"] == "TEXT" and types["area_ha"] == "REAL"
    assert version == (10200,)

    with sqlite3.connect(path) as con:
        rows = con.execute(
            "SELECT f_table_name, f_geometry_column, styleName, styleQML, useAsDefault "
            "FROM layer_styles ORDER BY f_table_name"
        ).fetchall()
        registered = con.execute(
            "SELECT data_type FROM gpkg_contents WHERE table_name = 'layer_styles'"
        ).fetchone()
    assert [r[0] for r in rows] == ["alerts", "aois", "coverage", "sites_history"]
    assert all(r[1] == "geom" and r[4] == 1 for r in rows)
    styles = {r[0]: xml.dom.minidom.parseString(r[3]) for r in rows}
    renderer = styles["alerts"].getElementsByTagName("renderer-v2")[0]
    assert renderer.getAttribute("type") == "RuleRenderer"
    labels = [r.getAttribute("label") for r in styles["alerts"].getElementsByTagName("rule")]
    assert labels[:2] == ["Mining: new", "Mining: expanding"]
    assert f"{CONFIDENCE_LEVELS[0].capitalize()} confidence (dashed outline)" in labels
    # Nothing drawn from a data-defined override the legend cannot show.
    assert not styles["alerts"].getElementsByTagName("data_defined_properties")
    aoi_fill = {
        o.getAttribute("name"): o.getAttribute("value")
        for o in styles["aois"].getElementsByTagName("Option")
    }
    assert aoi_fill["style"] == "no"  # outline only: the reserve does not hide the alerts
    coverage_qml = styles["coverage"]
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
        assert con.execute("SELECT count(*) FROM layer_styles").fetchone() == (3,)
        types = {r[1]: r[2] for r in con.execute("PRAGMA table_info(alerts)")}
    # Dates keep their type when there is no value to tell it from.
    assert types["first_detected"] == "DATE" and types["last_detected"] == "DATE"


def test_geopackage_dates_by_value(
    alerts: gpd.GeoDataFrame, coverage: gpd.GeoDataFrame, aois: gpd.GeoDataFrame, tmp_path: Path
) -> None:
    # Any column of dates only is a DATE field; one bad value keeps a column text; datetimes
    # are DATETIME in UTC.
    aois["image_date"] = [dt.date(2024, 8, 14)]
    aois["note"] = ["2024-13-45"]
    aois["checked_at"] = [dt.datetime(2024, 10, 1, 9, 30, tzinfo=dt.timezone.utc)]
    alerts["scene_date"] = ["2024-08-14", None, "2024-09-02"]
    path = tmp_path / "alerts.gpkg"
    write_geopackage(path, alerts=alerts, coverage=coverage, aois=aois)
    with sqlite3.connect(path) as con:
        aoi_types = {r[1]: r[2] for r in con.execute("PRAGMA table_info(aois)")}
        alert_types = {r[1]: r[2] for r in con.execute("PRAGMA table_info(alerts)")}
        scene_dates = con.execute("SELECT scene_date FROM alerts ORDER BY site_id").fetchall()
        checked = con.execute("SELECT checked_at FROM aois").fetchone()
    assert aoi_types["image_date"] == "DATE" and alert_types["scene_date"] == "DATE"
    assert aoi_types["note"] == "TEXT" and aoi_types["aoi_name"] == "TEXT"
    assert aoi_types["checked_at"] == "DATETIME" and checked[0].startswith("2024-10-01T09:30:00")
    assert scene_dates == [(None,), ("2024-08-14",), ("2024-09-02",)]


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
    real = pyogrio.raw.write

    def fail_on_aois(target: Path, *args: object, **kwargs: object) -> None:
        if kwargs["layer"] == "aois":
            raise OSError(errno.ENOSPC, "No space left on device")
        real(target, *args, **kwargs)

    monkeypatch.setattr(exports.pyogrio.raw, "write", fail_on_aois)
    with pytest.raises(DetectionError, match=r"layer 'aois': .*No space left on device"):
        write_geopackage(path, alerts=alerts, coverage=coverage, aois=aois)
    assert path.read_bytes() == b"previous run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alerts.gpkg"]


def test_summary_csv_one_row_per_site(
    alerts: gpd.GeoDataFrame, metadata: dict, tmp_path: Path
) -> None:
    path = tmp_path / "summary.csv"
    write_summary_csv(path, alerts, thresholds=THRESHOLDS)
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == SUMMARY_COLUMNS
    assert [r["site_id"] for r in rows] == sorted(alerts["site_id"])
    assert rows[0]["confidence_level"] == "likely" and rows[0]["tile_id"] == "21MYN_0000,21MYN_0001"
    assert rows[2]["aoi_name"] == "Sai Cinza <b>&"
    # From the FeatureCollection: the same bytes.
    from_fc = tmp_path / "from_fc.csv"
    write_summary_csv(from_fc, build_feature_collection(alerts, metadata=metadata))
    assert from_fc.read_bytes() == path.read_bytes()


def _open_like_a_spreadsheet(path: Path) -> list[dict[str, str]]:
    """Read a CSV as Excel and LibreOffice Calc do on a pt-BR desktop: UTF-8 when the file starts
    with a byte-order mark, else the locale's ANSI code page (Windows-1252); the delimiter
    sniffed."""
    raw = path.read_bytes()
    encoding = "utf-8-sig" if raw.startswith(codecs.BOM_UTF8) else "cp1252"
    text = raw.decode(encoding)
    dialect = csv.Sniffer().sniff(text.splitlines()[0], delimiters=",;\t")
    return list(csv.DictReader(io.StringIO(text, newline=""), dialect=dialect))


def test_summary_csv_opens_right_in_a_spreadsheet(
    alerts: gpd.GeoDataFrame, tmp_path: Path
) -> None:
    alerts["aoi_name"] = ["Terra Indígena Munduruku", "Sawré Muybu", "Kayabi (Pará)"]
    path = tmp_path / "summary.csv"
    write_summary_csv(path, alerts, thresholds=THRESHOLDS)
    assert path.read_bytes().startswith(codecs.BOM_UTF8)
    rows = _open_like_a_spreadsheet(path)
    assert tuple(rows[0]) == SUMMARY_COLUMNS  # the BOM is not glued to the first header
    assert {r["aoi_name"] for r in rows} == set(alerts["aoi_name"])
    # Without the mark the same spreadsheet shows mojibake (what the BOM prevents).
    bare = tmp_path / "bare.csv"
    bare.write_bytes(path.read_bytes()[len(codecs.BOM_UTF8) :])
    assert "Terra IndÃ­gena Munduruku" in {r["aoi_name"] for r in _open_like_a_spreadsheet(bare)}


def test_summary_csv_empty_and_errors(alerts: gpd.GeoDataFrame, tmp_path: Path) -> None:
    path = tmp_path / "summary.csv"
    write_summary_csv(path, alerts.iloc[0:0])
    assert path.read_text(encoding="utf-8-sig") == ",".join(SUMMARY_COLUMNS) + "\n"
    with pytest.raises(DetectionError, match=r"missing columns \['confidence_level'\]"):
        write_summary_csv(path, alerts)
    with pytest.raises(DetectionError, match="expected a FeatureCollection or a GeoDataFrame"):
        write_summary_csv(path, {"type": "Feature"})


def test_a_partial_run_says_so_in_the_csv_and_the_geopackage(
    alerts: gpd.GeoDataFrame,
    coverage: gpd.GeoDataFrame,
    aois: gpd.GeoDataFrame,
    metadata: dict,
    tmp_path: Path,
) -> None:
    """Issue 18, must-be-true 2: a spreadsheet user sees the outcome in the CSV's first column, a
    QGIS user in the GeoPackage's ``run`` table and layer descriptions; a clean run has none."""
    partial = {**metadata, "outcome": "partial", "failed_units": 3, "unobserved_periods": ["Q3"]}
    warning = "PARTIAL RUN: 3 unit(s) failed; no alert where a unit failed does not mean no mining"
    write_summary_csv(tmp_path / "clean.csv", build_feature_collection(alerts, metadata=metadata))
    write_summary_csv(tmp_path / "partial.csv", build_feature_collection(alerts, metadata=partial))

    def rows(name: str) -> list[dict[str, str]]:
        with open(tmp_path / name, newline="", encoding="utf-8-sig") as fh:
            return list(csv.DictReader(fh))

    clean, marked = rows("clean.csv"), rows("partial.csv")
    assert tuple(clean[0]) == SUMMARY_COLUMNS
    assert tuple(marked[0]) == ("run_outcome", *SUMMARY_COLUMNS)
    assert {r.pop("run_outcome") for r in marked} == {warning}
    assert marked == clean  # the rest of each row is as in a clean run
    failed = {**partial, "outcome": "failed"}
    write_summary_csv(
        tmp_path / "failed.csv", build_feature_collection(alerts.iloc[0:0], metadata=failed)
    )
    (note,) = rows("failed.csv")  # no site: the warning on a row of its own
    assert note["run_outcome"].startswith("FAILED RUN: 3 unit(s) failed")
    assert set(note.values()) == {note["run_outcome"], ""}

    for name, run in (("clean.gpkg", metadata), ("partial.gpkg", partial)):
        write_geopackage(tmp_path / name, alerts=alerts, coverage=coverage, aois=aois, run=run)
    assert "run" not in {n for n, _ in pyogrio.list_layers(tmp_path / "clean.gpkg")}
    table = pyogrio.read_dataframe(tmp_path / "partial.gpkg", layer="run")
    assert table.to_dict("records") == [
        {
            "run_id": metadata["run_id"],
            "outcome": "partial",
            "failed_units": 3,
            "unobserved_periods": "Q3",
            "message": warning,
        }
    ]
    for name, expected in (("clean.gpkg", ""), ("partial.gpkg", warning)):
        with sqlite3.connect(tmp_path / name) as con:
            described = dict(
                con.execute(
                    "SELECT table_name, description FROM gpkg_contents "
                    "WHERE table_name IN ('alerts', 'coverage')"
                ).fetchall()
            )
        assert described == {"alerts": expected, "coverage": expected}, name


def test_write_geojson_refuses_what_is_not_a_collection(tmp_path: Path) -> None:
    with pytest.raises(DetectionError, match="expected a FeatureCollection"):
        write_geojson(tmp_path / "x.geojson", {"type": "Feature"})
    with pytest.raises(DetectionError, match="not JSON-serialisable"):
        write_geojson(
            tmp_path / "x.geojson", {"type": "FeatureCollection", "x": float("nan"), "features": []}
        )
    assert not (tmp_path / "x.geojson").exists()
