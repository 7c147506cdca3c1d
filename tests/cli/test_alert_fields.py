"""The fields an analyst of GFW, DETER or MapBiomas Alerta looks for, through `minewatch scan`:
image dates, source, location, area inside each reserve, municipality and state, paired evidence
scenes (docs/alerts.md, *Fields of the alert services*)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import geopandas as gpd
import pyogrio
import pytest
import shapely
from shapely.geometry import box, shape

from detection.alerts import CONFIDENCE_LEVELS, read_scenes
from tests.cli.conftest import CENTER, features, minewatch, small_config
from tests.conftest import write_aoi

pytestmark = pytest.mark.slow

D = 0.03  # half side of the small scan's box AOI, degrees


def _scan(folder: Path, world: Path, **changes: object) -> Path:
    cfg = small_config(folder, world=world, **changes)
    proc = minewatch("scan", str(cfg), "--out", "out", "--json", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    return folder / "out"


def _ha(geom: shapely.Geometry) -> float:
    return float(gpd.GeoSeries([geom], crs=4326).to_crs("EPSG:6933").area.iloc[0]) / 10_000


@pytest.fixture(scope="module")
def first(small_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _scan(tmp_path_factory.mktemp("fields"), small_world)


def test_image_dates_source_location_and_paired_scenes(first: Path) -> None:
    fc = json.loads((first / "alerts.geojson").read_text(encoding="utf-8"))
    assert fc["minewatch"]["version"] == "2.0"
    assert list(fc["minewatch"]["confidence_levels"]) == list(CONFIDENCE_LEVELS)
    dates = {sid: rec["datetime"][:10] for sid, rec in read_scenes(first).items()}
    period = fc["minewatch"]["period"]
    feats = fc["features"]
    assert feats, "the small world must give alerts, or nothing below is tested"
    for f in feats:
        p = f["properties"]
        own = sorted(dates[s] for s in p["scene_ids"])
        # The image dates are acquisitions, not the period's end.
        assert p["last_image_date"] == own[-1] != period["end"]
        assert p["first_image_date"] in dates.values()
        assert p["first_image_date"] <= p["last_image_date"] <= period["end"]
        if p["status"] == "new":
            assert p["first_image_date"] == own[0] >= period["start"]
        assert (p["satellite"], p["sensor"], p["processing_level"]) == ("Sentinel-2", "MSI", "L2A")
        assert p["platforms"] == sorted({s[:3] for s in p["scene_ids"]})
        assert set(p["platforms"]) <= {"S2A", "S2B", "S2C"}
        # lon/lat: on the site, 6 decimals.
        geom = shape(f["geometry"])
        assert geom.buffer(1e-6).covers(shapely.Point(p["lon"], p["lat"]))
        assert round(p["lon"], 6) == p["lon"] and round(p["lat"], 6) == p["lat"]
        assert p["confidence_level"] in CONFIDENCE_LEVELS
        # No municipal layer configured: none said.
        assert (p["municipality"], p["state"], p["municipalities"]) == (None, None, [])
        # Evidence: each scene with its own date and side.
        scenes = p["evidence"]["scenes"]
        assert scenes and {e["role"] for e in scenes} <= {"before", "after"}
        for e in scenes:
            assert e["date"] == dates[e["id"]]
        assert [e["role"] for e in scenes] == sorted((e["role"] for e in scenes), reverse=True)
    # The CSV places each site too, with the GeoJSON's values.
    with open(first / "summary.csv", newline="", encoding="utf-8-sig") as fh:
        rows = {r["site_id"]: r for r in csv.DictReader(fh)}
    for f in feats:
        p, row = f["properties"], rows[f["id"]]
        assert (float(row["lon"]), float(row["lat"])) == (p["lon"], p["lat"])
        assert row["first_image_date"] == p["first_image_date"]
        assert row["platforms"] == ";".join(p["platforms"])
    # The GeoPackage carries them as columns.
    layer = pyogrio.read_dataframe(first / "alerts.gpkg", layer="alerts")
    for col in ("lon", "lat", "first_image_date", "last_image_date", "aoi_area_ha", "platforms"):
        assert col in layer.columns, col
    assert sorted(layer["lon"].round(6)) == sorted(f["properties"]["lon"] for f in feats)


def _write_municipalities(path: Path, split_lat: float) -> None:
    """Two municipalities north and south of ``split_lat``, DETER-style fields, SIRGAS 2000
    (EPSG:4674, as IBGE's mesh), in a GeoPackage."""
    lon, lat = CENTER
    west, east = lon - 2 * D, lon + 2 * D
    frame = gpd.GeoDataFrame(
        {"municipali": ["Jacareacanga", "Itaituba"], "uf": ["PA", "PA"], "geocodigo": [1, 2]},
        geometry=[
            box(west, split_lat, east, lat + 2 * D),
            box(west, lat - 2 * D, east, split_lat),
        ],
        crs="EPSG:4674",
    )
    pyogrio.write_dataframe(frame, path, layer="municipios", driver="GPKG")


def test_area_inside_each_reserve_and_municipalities_of_a_site_across_boundaries(
    first: Path, small_world: Path, tmp_path: Path
) -> None:
    before = max(features(first), key=lambda f: f["properties"]["area_ha"])
    x, y = before["properties"]["lon"], before["properties"]["lat"]
    lon, lat = CENTER
    # A reserve whose eastern boundary runs through the site, and two municipalities whose
    # border does.
    reserve = box(lon - D, lat - D, x, lat + D)
    write_aoi(tmp_path / "aoi.geojson", reserve, aoi_id="west-1", name="Reserva Oeste")
    _write_municipalities(tmp_path / "municipios.gpkg", y)
    out = _scan(
        tmp_path,
        small_world,
        admin={"layer": "municipios.gpkg", "municipality_field": "municipali", "state_field": "uf"},
    )
    fc = json.loads((out / "alerts.geojson").read_text(encoding="utf-8"))
    site = next(f for f in fc["features"] if shape(f["geometry"]).covers(shapely.Point(x, y)))
    p = site["properties"]
    geom = shape(site["geometry"])
    # Inside the reserve: only the part inside, not the whole site.
    assert p["aoi_relation"] == "inside" and p["aoi_id"] == "west-1"
    assert 0 < p["aoi_area_ha"] < p["area_ha"]
    assert p["aoi_areas"] == [
        {"aoi_id": "west-1", "aoi_name": "Reserva Oeste", "area_ha": p["aoi_area_ha"]}
    ]
    assert p["aoi_area_ha"] == pytest.approx(_ha(geom.intersection(reserve)), rel=0.01)
    outside = _ha(geom.difference(reserve))
    assert outside > 0
    assert p["aoi_area_ha"] + outside == pytest.approx(p["area_ha"], rel=0.01)
    # Municipalities: both parts, largest first, adding up to the site.
    parts = p["municipalities"]
    assert {m["municipality"] for m in parts} == {"Jacareacanga", "Itaituba"}
    assert all(m["state"] == "PA" and m["area_ha"] > 0 for m in parts)
    assert parts[0]["area_ha"] >= parts[1]["area_ha"]
    assert (p["municipality"], p["state"]) == (parts[0]["municipality"], "PA")
    assert sum(m["area_ha"] for m in parts) == pytest.approx(p["area_ha"], rel=0.01)
    with open(out / "summary.csv", newline="", encoding="utf-8-sig") as fh:
        row = next(r for r in csv.DictReader(fh) if r["site_id"] == p["site_id"])
    assert (row["municipality"], row["state"]) == (p["municipality"], "PA")
    assert float(row["aoi_area_ha"]) == p["aoi_area_ha"]

    # The report's reserve hectares count the parts inside, not the whole sites.
    proc = minewatch("report", "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    with open(out / "report" / "reserve_periods.csv", newline="", encoding="utf-8-sig") as fh:
        table = list(csv.DictReader(fh))
    row = next(
        r
        for r in table
        if r["aoi_id"] == "west-1"
        and r["period_end"] == fc["minewatch"]["period"]["end"]
        and r["alert_class"] == p["alert_class"]
    )
    same = [
        f["properties"]
        for f in fc["features"]
        if f["properties"]["alert_class"] == p["alert_class"]
        and f["properties"]["aoi_id"] == "west-1"
    ]
    assert float(row["area_ha"]) == pytest.approx(sum(q["aoi_area_ha"] for q in same), abs=1e-3)
    assert float(row["area_ha"]) < sum(q["area_ha"] for q in same if q["aoi_relation"] == "inside")
    assert float(row["area_ha"]) + float(row["buffer_area_ha"]) == pytest.approx(
        sum(q["area_ha"] for q in same), abs=1e-3
    )


def test_a_municipal_layer_without_the_field_is_one_clear_line(
    small_world: Path, tmp_path: Path
) -> None:
    _write_municipalities(tmp_path / "municipios.gpkg", CENTER[1])
    cfg = small_config(tmp_path, world=small_world, admin={"layer": "municipios.gpkg"})
    proc = minewatch("scan", str(cfg), "--out", "out", cwd=tmp_path)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr
    assert "no field 'NM_MUN'" in lines[0] and "municipali, uf, geocodigo" in lines[0]
    assert "admin.municipality_field" in lines[0]
    assert not (tmp_path / "out" / "alerts.geojson").exists()
