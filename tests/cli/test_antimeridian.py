"""Scans at 180 degrees (Fiji, Chukotka) and AOIs given as (lat, lon), tried as an operator
meets them (issue 18, item 5): ``minewatch tiles synth`` and ``minewatch scan`` in a subprocess,
over a local folder of scenes and over ``rustac serve`` with a loopback COG server whose items'
footprints are split at the antimeridian (RFC 7946 3.1.9). Nothing is mocked.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from shapely.geometry import shape

from tests.cli.conftest import CENTER as CENTER_AMAZON
from tests.cli.conftest import minewatch, small_config
from tests.tiles.servers import StacWorld, stac_stack

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

#: Just west of the antimeridian, over Fiji's Taveuni longitude (UTM zone 60 south).
CENTER = (179.99, -17.0)


def aoi_across_180(folder: Path, parts: list[tuple[float, float]], *, lat: float = -17.0) -> Path:
    """An AOI layer of one feature split at ±180 as RFC 7946 asks: one part per (west, east)."""
    d = 0.008
    polys = [
        [[[w, lat - d], [e, lat - d], [e, lat + d], [w, lat + d], [w, lat - d]]] for w, e in parts
    ]
    path = folder / "aoi.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {"id": "fj-1", "name": "Across 180"},
        "geometry": {"type": "MultiPolygon", "coordinates": polys}}]}))
    return path


def write_config(folder: Path, source: str, *, region: str = "") -> Path:
    cfg = folder / "scan.yaml"
    cfg.write_text(
        f"""name: antimeridian
aoi: {{path: aoi.geojson, id_field: id, name_field: name, kind: indigenous_land, buffer_m: 0}}
source: {source}
periods: {{kind: quarter, start: 2024-04-01, end: 2024-09-30}}
grid: {{chip_size_px: 256}}
detector: {{kind: indices}}
"""
    )
    return cfg


def scan(cfg: Path) -> tuple[int, str, dict[str, Any]]:
    res = minewatch("scan", str(cfg), "--out", "out", "--json", cwd=cfg.parent)
    return res.returncode, res.stderr, json.loads(res.stdout) if res.returncode == 0 else {}


def assert_valid_lonlat(fc: dict[str, Any]) -> None:
    for feat in fc["features"]:
        geom = shape(feat["geometry"])
        minx, _, maxx, _ = geom.bounds
        assert geom.is_valid and minx >= -180 and maxx <= 180, feat["properties"]


@pytest.fixture(scope="module")
def world_at_180(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("synth")
    res = minewatch("tiles", "synth", "world", "--center", f"{CENTER[0]},{CENTER[1]}",
                    "--size-px", "256", "--acquisitions", "1", "--json", cwd=folder)
    assert res.returncode == 0, res.stderr[-3000:]
    return folder / "world"


def test_tiles_synth_at_180_writes_a_whole_world(world_at_180: Path) -> None:
    """It crashed in the truth sites (a polygon across 180) after writing the scenes."""
    info = json.loads((world_at_180 / "world.json").read_text())
    assert info["spec"]["center_lon"] == CENTER[0]
    sites = json.loads((world_at_180 / "truth" / "sites.geojson").read_text())
    assert_valid_lonlat(sites)
    assert any(f["geometry"]["type"] == "MultiPolygon" for f in sites["features"])
    assert len(list((world_at_180 / "scenes").glob("*.tif"))) == 2


def test_local_scenes_across_180_cover_an_aoi_on_both_sides(
    world_at_180: Path, tmp_path: Path
) -> None:
    """The scenes span 179.978..-179.998; naively reprojected, their footprint was the rest of
    the globe, and this AOI (on both sides of 180, in the scenes) was 'covered by no scene'."""
    aoi_across_180(tmp_path, [(179.985, 180.0), (-180.0, -179.999)])
    source = f"{{kind: local, path: {world_at_180}/scenes}}"
    code, err, summary = scan(write_config(tmp_path, source))
    assert code == 0, err[-3000:]
    assert "Traceback" not in err
    assert summary["units_computed"] >= 2, summary  # a chip each side of 180, both periods
    assert all(v > 0 for v in summary["observed_fraction"].values()), summary
    assert_valid_lonlat(json.loads((tmp_path / "out" / "alerts.geojson").read_text()))


@pytest.fixture(scope="module")
def stac_at_180(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, StacWorld]]:
    root = tmp_path_factory.mktemp("stac180")
    with stac_stack(root, center=CENTER) as (_, _, world, proxy):
        yield proxy.url, world


def test_stac_items_split_at_180_are_matched(
    stac_at_180: tuple[str, StacWorld], tmp_path: Path
) -> None:
    url, world = stac_at_180
    footprint = world.items[0]["geometry"]
    assert footprint["type"] == "MultiPolygon"  # as Earth Search serves a tile across 180
    west, _, east, _ = world.items[0]["bbox"]
    assert west > 0 > east
    aoi_across_180(tmp_path, [(179.99, 180.0), (-180.0, -179.99)])
    source = f"{{kind: stac, url: {url}, collection: sentinel-2-l2a}}"
    code, err, summary = scan(write_config(tmp_path, source))
    assert code == 0, err[-3000:]
    assert summary["units_computed"] >= 4, summary  # chips on both sides, two periods
    assert all(v > 0 for v in summary["observed_fraction"].values()), summary
    scenes = json.loads((tmp_path / "out" / "scenes.json").read_text())
    assert sorted(scenes) == sorted(item["id"] for item in world.items)
    assert_valid_lonlat(json.loads((tmp_path / "out" / "alerts.geojson").read_text()))


def _lat_lon_box(folder: Path, lon: float, lat: float, d: float = 0.03) -> None:
    """A box AOI written the wrong way round: each position as [lat, lon]."""
    ring = [[lat - d, lon - d], [lat - d, lon + d], [lat + d, lon + d], [lat + d, lon - d],
            [lat - d, lon - d]]
    (folder / "aoi.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {"id": "box-1", "name": "Test reserve"},
        "geometry": {"type": "Polygon", "coordinates": [ring]}}]}))


def test_amazon_aoi_given_as_lat_lon_is_named_swapped(small_world: Path, tmp_path: Path) -> None:
    """(-6.62, -57.55) read as (lon, lat) lies in the Southern Ocean: valid degrees, no scene.
    The scan says the axes look swapped, with the values and the fix."""
    lon, lat = CENTER_AMAZON
    _lat_lon_box(tmp_path, lon, lat)
    cfg = small_config(tmp_path, world=small_world)
    res = minewatch("scan", str(cfg), "--out", "out", cwd=tmp_path)
    assert res.returncode == 1, res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    line = res.stderr.strip().splitlines()[-1]
    assert f"lon {lat:.4f}, lat {lon:.4f}" in line  # where it landed: the ocean
    assert f"lon {lon:.4f}, lat {lat:.4f}" in line  # where the scenes are
    assert "look swapped (lat, lon) - GeoJSON is (lon, lat)" in line and "swap the axes" in line


def test_aoi_nowhere_near_any_scene_suggests_a_swap_only_as_a_possibility(
    world_at_180: Path, tmp_path: Path
) -> None:
    _lat_lon_box(tmp_path, -60.0, -20.0)  # read as lon -20, lat -60: no scene either way
    cfg = write_config(tmp_path, f"{{kind: local, path: {world_at_180}/scenes}}")
    res = minewatch("scan", str(cfg), "--out", "out", cwd=tmp_path)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    line = res.stderr.strip().splitlines()[-1]
    assert "no scene of local:" in line and "centre lon -20.0000, lat -60.0000" in line
    assert "may be swapped - GeoJSON is (lon, lat)" in line
    assert "swapped, its centre would be lon -60.0000, lat -20.0000" in line
    assert not (tmp_path / "out" / "alerts.geojson").exists()


def test_latitude_beyond_90_is_refused_as_swapped(world_at_180: Path, tmp_path: Path) -> None:
    """Fiji's Taveuni as (lat, lon): latitude 179.99 is no latitude; refused before any work."""
    _lat_lon_box(tmp_path, *CENTER, d=0.005)
    cfg = write_config(tmp_path, f"{{kind: local, path: {world_at_180}/scenes}}")
    res = minewatch("scan", str(cfg), "--out", "out", cwd=tmp_path)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert "latitude 179.995 is outside -90..90" in res.stderr
    assert "looks like (lat, lon) order" in res.stderr
    assert not (tmp_path / "out" / "alerts.geojson").exists()
