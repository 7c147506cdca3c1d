"""The processing grid: MGRS names against real Sentinel-2 tiles, alignment, zones, coverage."""

from __future__ import annotations

import json
import re
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from pyproj import Transformer
from shapely.geometry import Point, box

from aoi import (
    AOIConfig,
    AOIGeometryError,
    GridCell,
    cells_intersecting,
    grid_to_geodataframe,
    load_aoi,
    make_grid,
    mgrs_tile_id,
)
from aoi.geometry import utm_zone_region
from aoi.grid import SQUARE_M, mgrs_square_letters

TILE_ID = re.compile(r"^(\d{2})([C-X])([A-HJ-NP-Z]{2})_(\d{2})(\d{2})$")
STEP = 512 * 10.0


def _real_tiles(shared_data: Path) -> list[tuple[str, int, float, float]]:
    """(tile, EPSG, x, y of the 100 km square's upper-left corner) of the real STAC items."""
    out: dict[str, tuple[str, int, float, float]] = {}
    root = shared_data / "stac_payloads"
    for path in sorted(root.glob("*/*.json")) + sorted(root.glob("*/*.geojson")):
        doc = json.loads(path.read_text())
        doc = doc.get("response", doc)
        items = doc.get("features") or ([doc] if doc.get("type") == "Feature" else [])
        for item in items:
            match = re.search(r"_T?(\d{1,2}[C-X][A-Z]{2})_", item["id"])
            props = item["properties"]
            epsg = props.get("proj:epsg") or props.get("proj:code")
            transforms = [a["proj:transform"] for a in item["assets"].values()
                          if a.get("proj:transform")]
            if not (match and epsg and transforms and item["id"].startswith("S2")):
                continue
            # a Sentinel-2 tile's upper-left corner is its 100 km square's, give or take 40 m
            x0, y0 = round(transforms[0][2], -5), round(transforms[0][5], -5)
            tile = match.group(1).zfill(5)
            out[tile] = (tile, int(str(epsg).split(":")[-1]), x0, y0)
    return sorted(out.values())


@pytest.fixture(scope="module")
def real_tiles(shared_data: Path) -> list[tuple[str, int, float, float]]:
    tiles = _real_tiles(shared_data)
    assert len(tiles) >= 40
    return tiles


def _square_lonlat(epsg: int, x0: float, y0: float) -> shapely.Geometry:
    to_lonlat = Transformer.from_crs(f"EPSG:{epsg}", "EPSG:4326", always_xy=True)
    square = shapely.segmentize(box(x0, y0 - SQUARE_M, x0 + SQUARE_M, y0), 1000)
    return shapely.transform(square, lambda xy: np.column_stack(to_lonlat.transform(*xy.T)))


def test_mgrs_names_match_real_sentinel2_tiles(
    real_tiles: list[tuple[str, int, float, float]],
) -> None:
    for tile, epsg, x0, y0 in real_tiles:
        zone = epsg % 100
        assert mgrs_square_letters(zone, x0 + 1, y0 - 1) == tile[3:], tile
        # a point of the square inside the zone proper (edge squares overlap the next zone)
        inside = _square_lonlat(epsg, x0, y0).intersection(
            utm_zone_region(zone, north=epsg < 32700))
        point = inside.representative_point()
        assert mgrs_tile_id(point.x, point.y) == tile, tile


def test_grid_names_match_real_sentinel2_tiles(
    real_tiles: list[tuple[str, int, float, float]],
) -> None:
    for tile, epsg, x0, y0 in real_tiles[::5]:
        to_lonlat = Transformer.from_crs(f"EPSG:{epsg}", "EPSG:4326", always_xy=True)
        lon, lat = to_lonlat.transform(x0 + 40_000, y0 - 40_000)
        zone = epsg % 100
        if not utm_zone_region(zone, north=epsg < 32700).contains(Point(lon, lat)):
            continue
        cells = make_grid(Point(lon, lat).buffer(0.001))
        assert cells and {c.tile_id[:5] for c in cells} == {tile}
        assert {c.crs.to_epsg() for c in cells} == {epsg}


def test_known_chip_of_the_demo_point() -> None:
    cells = make_grid(Point(-57.55, -6.62).buffer(1e-4))
    assert len(cells) == 1
    (cell,) = cells
    to_utm = Transformer.from_crs("EPSG:4326", "EPSG:32721", always_xy=True)
    x, y = to_utm.transform(-57.55, -6.62)
    square_x, square_top = x // SQUARE_M * SQUARE_M, (y // SQUARE_M + 1) * SQUARE_M
    row, col = int((square_top - y) // STEP), int((x - square_x) // STEP)
    assert cell.tile_id == f"21MVN_{row:02d}{col:02d}"
    assert cell.crs.to_epsg() == 32721
    left, bottom, right, top = cell.bounds
    assert left <= x < right and bottom < y <= top


@pytest.fixture(scope="module")
def munduruku() -> gpd.GeoDataFrame:
    return load_aoi(AOIConfig(path=Path("package:aoi/data/munduruku.geojson")))


def _check_alignment(cell: GridCell) -> None:
    left, bottom, right, top = cell.bounds
    square_x = left // SQUARE_M * SQUARE_M
    square_top = (np.ceil(top / SQUARE_M)) * SQUARE_M
    assert (left - square_x) % STEP == 0
    assert (square_top - top) % STEP == 0
    assert right <= square_x + SQUARE_M and bottom >= square_top - SQUARE_M
    assert cell.resolution_m == 10.0
    match = TILE_ID.match(cell.tile_id)
    assert match, cell.tile_id
    row, col = int(match.group(4)), int(match.group(5))
    assert (row, col) == ((square_top - top) // STEP, (left - square_x) // STEP)


def test_grid_over_munduruku_is_aligned_and_covers_it(munduruku: gpd.GeoDataFrame) -> None:
    cells = make_grid(munduruku)
    assert 900 < len(cells) < 1300
    ids = [c.tile_id for c in cells]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert {c.crs.to_epsg() for c in cells} == {32721}
    for cell in cells:
        _check_alignment(cell)
    # interior chips are 512 px; the last row/column of a square is 100 km - 19 x 5.12 km
    assert {c.width for c in cells} == {512, 272} and {c.height for c in cells} == {512, 272}
    utm = munduruku.to_crs("EPSG:32721").geometry.iloc[0]
    chips = [box(*c.bounds) for c in cells]
    assert all(chip.intersects(utm) and not chip.touches(utm) for chip in chips)
    assert utm.difference(shapely.union_all(chips)).area < 1.0
    assert make_grid(munduruku) == cells  # deterministic


def test_grid_across_54w_has_chips_in_zones_21_and_22() -> None:
    area = box(-54.3, -6.6, -53.7, -6.4)
    cells = make_grid(area)
    zones = {c.tile_id[:2]: c.crs.to_epsg() for c in cells}
    assert zones == {"21": 32721, "22": 32722}
    for cell in cells:
        _check_alignment(cell)
        zone_part = area.intersection(utm_zone_region(int(cell.tile_id[:2]), north=False))
        to_utm = Transformer.from_crs("EPSG:4326", cell.crs.to_wkt(), always_xy=True)
        part = shapely.transform(shapely.segmentize(zone_part, 0.01),
                                 lambda xy, t=to_utm: np.column_stack(t.transform(*xy.T)))
        assert box(*cell.bounds).intersects(part)
    frame = grid_to_geodataframe(cells)
    west = shapely.union_all(frame[frame["epsg"] == 32721].geometry.values)
    east = shapely.union_all(frame[frame["epsg"] == 32722].geometry.values)
    assert west.bounds[0] < -54.25 and east.bounds[2] > -53.75
    assert shapely.union_all(frame.geometry.values).covers(area)


def test_grid_across_the_antimeridian() -> None:
    cells = make_grid(box(179.9, -16.6, 180.0, -16.4).union(box(-180.0, -16.6, -179.9, -16.4)))
    assert {c.tile_id[:3] for c in cells} == {"60K", "01K"}
    frame = grid_to_geodataframe(cells)
    minx, _, maxx, _ = frame.total_bounds
    assert minx >= -180 and maxx <= 180


def test_grid_across_the_equator() -> None:
    cells = make_grid(box(-50.1, -0.1, -49.9, 0.1))
    north = [c for c in cells if c.crs.to_epsg() == 32622]
    south = [c for c in cells if c.crs.to_epsg() == 32722]
    assert north and south
    assert all(c.bounds[1] >= 0 for c in north)
    assert all(c.bounds[3] <= 10_000_000 for c in south)
    assert {c.tile_id[2] for c in north} == {"N"} and {c.tile_id[2] for c in south} == {"M"}


def test_grid_to_geodataframe_and_cells_intersecting(munduruku: gpd.GeoDataFrame) -> None:
    cells = make_grid(munduruku)
    frame = grid_to_geodataframe(cells)
    assert list(frame.columns) == ["tile_id", "epsg", "width", "height", "geometry"]
    assert frame.crs.to_epsg() == 4326
    hit = frame[frame.contains(Point(-57.55, -6.62))]
    assert len(hit) == 1
    near = cells_intersecting(cells, (-57.5501, -6.6201, -57.5499, -6.6199), "EPSG:4326")
    assert [c.tile_id for c in near] == list(hit["tile_id"])
    with pytest.raises(ValueError, match=r"expected \(left, bottom, right, top\)"):
        cells_intersecting(cells, (1, 1, 0, 0), "EPSG:4326")


def test_grid_chip_size_options() -> None:
    cells = make_grid(Point(-57.55, -6.62).buffer(0.05), chip_size_px=256, resolution_m=20.0)
    assert cells and all(c.resolution_m == 20.0 for c in cells)
    with pytest.raises(ValueError, match=r"chip_size_px=0; expected a positive integer"):
        make_grid(box(0, 0, 1, 1), chip_size_px=0)
    with pytest.raises(ValueError, match=r"resolution_m=60 does not divide the 100 km MGRS "
                                         r"square into whole pixels"):
        make_grid(box(0, 0, 1, 1), resolution_m=60.0)
    with pytest.raises(ValueError, match=r"more than 100 chips per 100 km square side"):
        make_grid(box(0, 0, 1, 1), chip_size_px=64, resolution_m=10.0)


def test_grid_bad_areas() -> None:
    with pytest.raises(AOIGeometryError, match=r"the area to grid is nothing; expected a "
                                               r"non-empty Polygon"):
        make_grid(shapely.Polygon())
    with pytest.raises(AOIGeometryError, match=r"the area to grid is a Point"):
        make_grid(Point(0, 0))
    with pytest.raises(AOIGeometryError, match=r"spans lon .* lat 82\.5\.\.85\.5; expected"):
        make_grid(box(0, 82.5, 1, 85.5))
