"""The review loop: reviewed alerts (QGIS-edited GeoPackage, page export) -> labels; diff; KML."""

from __future__ import annotations

import json
import sqlite3
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import click
import geopandas as gpd
import pyogrio
import pytest
import shapely
from click.testing import CliRunner

from detection.alerts import (
    LABEL_COLUMNS,
    LEGACY_CONFIDENCE_LEVELS,
    build_feature_collection,
    diff_alerts,
    read_alerts,
    read_reviewed_alerts,
    review_labels,
    write_geojson,
    write_geopackage,
    write_labels,
)
from detection.errors import (
    ConfigError,
    DetectionError,
    InputFormatError,
    InputNotFoundError,
    InputReadError,
)
from minewatch.cli_alerts import alerts as alerts_group
from tests.detection.conftest import to_wgs84, utm_box


def _edit(gpkg: Path, *updates: str) -> None:
    """Run SQL UPDATEs on a GeoPackage as QGIS does through GDAL, which gives SQLite the
    ``ST_*`` functions the GeoPackage's R-tree triggers call; here they come from shapely."""

    def geom(blob: bytes | None) -> shapely.Geometry | None:
        if blob is None:
            return None
        flags = blob[3]
        envelope = {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}[(flags >> 1) & 0x07]
        return shapely.from_wkb(bytes(blob[8 + envelope :]))

    def bound(i: int) -> Callable[[bytes | None], float | None]:
        def f(blob: bytes | None) -> float | None:
            g = geom(blob)
            return None if g is None or g.is_empty else float(g.bounds[i])

        return f

    with sqlite3.connect(gpkg) as con:

        def is_empty(blob: bytes | None) -> int:
            g = geom(blob)
            return int(g is None or g.is_empty)

        con.create_function("ST_IsEmpty", 1, is_empty)
        for i, name in enumerate(("ST_MinX", "ST_MinY", "ST_MaxX", "ST_MaxY")):
            con.create_function(name, 1, bound(i))
        for sql in updates:
            con.execute(sql)


def _cli(*args: str) -> click.testing.Result:
    group = click.Group("minewatch")
    group.add_command(alerts_group)
    return CliRunner().invoke(group, ["alerts", *args], catch_exceptions=False)


@pytest.fixture
def gpkg(alerts: gpd.GeoDataFrame, tmp_path: Path) -> Path:
    alerts["period_start"] = "2024-07-01"
    alerts["period_end"] = "2024-09-30"
    coverage = gpd.GeoDataFrame(
        {"status": ["observed"]}, geometry=to_wgs84([utm_box(0, 0, 10, 10)]), crs="EPSG:4326"
    )
    aois = coverage.assign(aoi_id="TI-1", aoi_name="x", aoi_kind="indigenous_land")
    path = tmp_path / "alerts.gpkg"
    write_geopackage(
        path,
        alerts=alerts,
        coverage=coverage,
        aois=aois,
        thresholds={"probable": 0.5, "likely": 0.7, "very_likely": 0.9},
    )
    return path


def test_geopackage_edited_like_qgis_becomes_labels(gpkg: Path, tmp_path: Path) -> None:
    assert set(pyogrio.read_dataframe(gpkg, layer="alerts")["review_status"]) == {"unreviewed"}
    # What QGIS does on save: an UPDATE of the attribute in the layer's table.
    _edit(
        gpkg,
        "UPDATE alerts SET review_status = 'confirmed' WHERE site_id = 'mw-m-00000002'",
        "UPDATE alerts SET review_status = 'Rejected' WHERE site_id = 'mw-d-00000001'",
    )
    labels_path = tmp_path / "labels.geojson"
    result = _cli("import-review", str(gpkg), "--out", str(labels_path))
    assert result.exit_code == 0 and "2 labels (background 1, mining 1)" in result.output
    labels = gpd.read_file(labels_path).set_index("site_id")
    assert list(labels.columns) == [c for c in LABEL_COLUMNS if c != "site_id"]
    assert labels.loc["mw-m-00000002", "class"] == "mining"
    assert labels.loc["mw-d-00000001", "class"] == "background"
    assert labels.loc["mw-d-00000001", "alert_class"] == "deforestation"
    assert labels.loc["mw-d-00000001", "review_status"] == "rejected"
    assert str(labels.loc["mw-m-00000002", "period_start"])[:10] == "2024-07-01"
    assert "mw-m-00000003" not in labels.index  # unreviewed: left out
    assert labels.crs.to_epsg() == 4326 and labels.geometry.is_valid.all()

    # No overwrite without --overwrite; --merge replaces the same site and period.
    again = _cli("import-review", str(gpkg), "--out", str(labels_path))
    assert again.exit_code == 2 and "--merge" in again.output
    _edit(gpkg, "UPDATE alerts SET review_status = 'rejected' WHERE site_id = 'mw-m-00000002'")
    merged = _cli("import-review", str(gpkg), "--out", str(labels_path), "--merge", "--json")
    assert json.loads(merged.output)["labels_total"] == 2
    assert gpd.read_file(labels_path).set_index("site_id").loc["mw-m-00000002", "class"] == (
        "background"
    )


def test_bad_review_values_are_named(gpkg: Path, tmp_path: Path) -> None:
    _edit(gpkg, "UPDATE alerts SET review_status = 'maybe' WHERE site_id = 'mw-m-00000003'")
    # Each error is a DetectionError (the CLI's one line) and the builtin of its cause.
    with pytest.raises(ValueError, match=r"site mw-m-00000003: review_status 'maybe'") as bad:
        read_reviewed_alerts(gpkg)
    assert isinstance(bad.value, InputFormatError)
    with pytest.raises(FileNotFoundError, match="no such file") as missing:
        read_reviewed_alerts(tmp_path / "nope.geojson")
    assert isinstance(missing.value, InputNotFoundError)
    with pytest.raises(ConfigError, match=r"unknown format '\.shp'") as unknown:
        write_labels(tmp_path / "l.shp", gpd.GeoDataFrame(geometry=[], crs="EPSG:4326"))
    assert isinstance(unknown.value, ValueError)


def test_bad_alerts_files_raise_the_error_of_their_cause(tmp_path: Path) -> None:
    """A missing file, a file that is no vector data and one without site ids: three causes,
    three classes, each also the builtin a caller who does not know minewatch would catch."""
    with pytest.raises(FileNotFoundError, match="no such file") as missing:
        read_alerts(tmp_path / "nope.geojson")
    assert isinstance(missing.value, InputNotFoundError)
    garbage = tmp_path / "garbage.geojson"
    garbage.write_text("site_id;lon;lat\nmw-m-1;-57.5;-6.6\n")
    with pytest.raises(OSError, match=r"garbage\.geojson: cannot read") as unreadable:
        read_alerts(garbage)
    assert isinstance(unreadable.value, InputReadError)
    assert not isinstance(unreadable.value, FileNotFoundError)
    nameless = tmp_path / "nameless.geojson"
    nameless.write_text(json.dumps({"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {"area_ha": 1.0},
        "geometry": {"type": "Point", "coordinates": [-57.5, -6.6]},
    }]}))
    with pytest.raises(ValueError, match="no 'site_id' column") as bad:
        read_alerts(nameless)
    assert isinstance(bad.value, InputFormatError) and isinstance(bad.value, DetectionError)


def test_labels_to_geopackage(alerts: gpd.GeoDataFrame, tmp_path: Path) -> None:
    alerts["period_start"], alerts["period_end"] = "2024-07-01", "2024-09-30"
    alerts["review_status"] = ["confirmed", "confirmed", "rejected"]
    labels = review_labels(alerts)
    assert list(labels["class"]) == ["deforestation", "mining", "background"]
    write_labels(tmp_path / "labels.gpkg", labels)
    back = pyogrio.read_dataframe(tmp_path / "labels.gpkg", layer="labels")
    assert sorted(back["class"]) == ["background", "deforestation", "mining"]


def test_diff_reports_new_removed_changed(
    alerts: gpd.GeoDataFrame, metadata: dict, tmp_path: Path
) -> None:
    a_path, b_path = tmp_path / "a.geojson", tmp_path / "b.geojson"
    write_geojson(a_path, build_feature_collection(alerts, metadata=metadata))
    later = alerts.copy()
    later.loc[0, "status"] = "expanding"  # mw-m-00000002
    later.loc[0, "area_ha"] = 9.5
    later.loc[2, "confidence"] = 0.95  # mw-m-00000003: probable -> very_likely
    later = later.drop(index=1)  # mw-d-00000001 gone
    extra = alerts.iloc[[1]].assign(site_id="mw-d-0000000a")
    later = gpd.GeoDataFrame(
        [*later.to_dict("records"), *extra.to_dict("records")], crs="EPSG:4326"
    )
    write_geojson(b_path, build_feature_collection(later, metadata=metadata))

    diff = diff_alerts(read_alerts(a_path), read_alerts(b_path))
    assert diff.new == ["mw-d-0000000a"] and diff.removed == ["mw-d-00000001"]
    assert diff.changed == {
        "mw-m-00000002": {"status": ["new", "expanding"], "area_ha": [8.0, 9.5]},
        "mw-m-00000003": {"confidence_level": ["probable", "very_likely"]},
    }
    assert diff.unchanged == 0 and not diff.identical
    result = _cli("diff", str(a_path), str(b_path))
    assert result.exit_code == 0
    assert result.output.splitlines()[0] == "1 new, 1 removed, 2 changed, 0 unchanged"
    assert "+ mw-d-0000000a" in result.output and "- mw-d-00000001" in result.output
    assert "~ mw-m-00000002: status 'new' -> 'expanding', area_ha 8.0 -> 9.5" in result.output
    same = _cli("diff", str(a_path), str(a_path), "--json")
    assert json.loads(same.output)["unchanged"] == 3


def test_diff_of_the_same_alerts_as_geojson_and_geopackage_is_empty(
    gpkg: Path, alerts: gpd.GeoDataFrame, metadata: dict, tmp_path: Path
) -> None:
    """Dates come back as datetimes from a GeoPackage and as text from GeoJSON: no change."""
    as_json = tmp_path / "a.geojson"
    write_geojson(as_json, build_feature_collection(alerts, metadata=metadata))
    diff = diff_alerts(read_alerts(as_json), read_alerts(gpkg))
    assert diff.changed == {} and diff.new == [] and diff.removed == []


def test_diff_against_a_format_1_file_reads_its_confidence_words(
    alerts: gpd.GeoDataFrame, metadata: dict, tmp_path: Path
) -> None:
    """A 1.0 alerts file said low/high/highest for the same bands: no change to report."""
    new = tmp_path / "new.geojson"
    write_geojson(new, build_feature_collection(alerts, metadata=metadata))
    old_words = {v: k for k, v in LEGACY_CONFIDENCE_LEVELS.items()}
    fc = json.loads(new.read_text(encoding="utf-8"))
    for feature in fc["features"]:
        feature["properties"]["confidence_level"] = old_words[
            feature["properties"]["confidence_level"]
        ]
    old = tmp_path / "old.geojson"
    old.write_text(json.dumps(fc), encoding="utf-8")
    assert "highest" in old.read_text(encoding="utf-8")
    diff = diff_alerts(read_alerts(old), read_alerts(new))
    assert diff.changed == {} and diff.unchanged == len(alerts)


def test_diff_sees_a_moved_outline(alerts: gpd.GeoDataFrame) -> None:
    moved = alerts.copy()
    moved.loc[1, "geometry"] = to_wgs84([utm_box(1500, 0, 100, 200)])[0]
    diff = diff_alerts(alerts, moved)
    assert diff.geometry_changed == ["mw-d-00000001"] and list(diff.changed) == ["mw-d-00000001"]


def test_export_kml_readable_by_gdal(
    alerts: gpd.GeoDataFrame, metadata: dict, tmp_path: Path
) -> None:
    src = tmp_path / "alerts.geojson"
    write_geojson(src, build_feature_collection(alerts, metadata=metadata))
    out = tmp_path / "alerts.kml"
    result = _cli("export", str(src), "--format", "kml", "--out", str(out))
    assert result.exit_code == 0 and "3 alerts" in result.output
    kml = pyogrio.read_dataframe(out)
    assert sorted(kml["Name"]) == sorted(alerts["site_id"])
    assert kml.crs.to_epsg() == 4326
    holed = kml.set_index("Name").geometry["mw-m-00000002"]
    assert len(holed.interiors) == 1  # the hole survives
    ref = alerts.set_index("site_id").geometry
    for name, geom in kml.set_index("Name").geometry.items():
        assert geom.symmetric_difference(ref[name]).area < 1e-3 * ref[name].area  # 7 decimals
    text = out.read_text(encoding="utf-8")
    assert "Sai Cinza &lt;b&gt;&amp;" in text and "<b>" not in text
    assert _cli("export", str(src), "--out", str(out)).exit_code == 2  # exists
    # Google Earth's time slider: a TimeSpan per placemark, first to last detection, where
    # KML 2.2 puts it (after the description, before the style); GDAL's LIBKML reads it back.
    spans = kml.set_index("Name")[["begin", "end"]]
    assert str(spans.loc["mw-d-00000001", "begin"])[:10] == "2024-06-30"
    assert str(spans.loc["mw-m-00000003", "begin"])[:10] == "2024-03-31"
    assert {str(v)[:10] for v in spans["end"]} == {"2024-09-30"}
    ns = {"k": "http://www.opengis.net/kml/2.2"}
    for placemark in ET.parse(out).getroot().iterfind(".//k:Placemark", ns):
        tags = [child.tag.split("}")[1] for child in placemark]
        assert tags.index("description") < tags.index("TimeSpan") < tags.index("styleUrl")


def test_export_json_summary(alerts: gpd.GeoDataFrame, metadata: dict, tmp_path: Path) -> None:
    src = tmp_path / "alerts.geojson"
    write_geojson(src, build_feature_collection(alerts, metadata=metadata))
    out = tmp_path / "field.kml"
    result = _cli("export", str(src), "--out", str(out), "--json")
    assert result.exit_code == 0
    assert json.loads(result.output) == {
        "source": str(src), "format": "kml", "out": str(out), "alerts": 3
    }
