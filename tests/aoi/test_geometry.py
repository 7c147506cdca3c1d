"""Geometry helpers: UTM zones, repair, antimeridian, buffers in metres, areas."""

from __future__ import annotations

import math

import geopandas as gpd
import pytest
import shapely
from pyproj import Geod
from shapely.geometry import MultiPolygon, Point, Polygon, box

from aoi import (
    AOIError,
    AOIGeometryError,
    area_ha,
    buffer_aoi,
    buffer_geometry,
    repair_geometry,
    split_antimeridian,
    utm_crs_for,
    utm_zone_for,
)
from aoi.geometry import utm_zone_region

GEOD = Geod(ellps="WGS84")


def geodesic_area_m2(geom: shapely.Geometry) -> float:
    area, _ = GEOD.geometry_area_perimeter(geom)
    return abs(area)


def geodesic_square(lon: float, lat: float, side_m: float) -> Polygon:
    """A lon/lat square of ``side_m`` centred on (lon, lat), built with geodesic offsets."""
    half = side_m / 2
    _, north, _ = GEOD.fwd(lon, lat, 0, half)
    _, south, _ = GEOD.fwd(lon, lat, 180, half)
    east, _, _ = GEOD.fwd(lon, lat, 90, half)
    west, _, _ = GEOD.fwd(lon, lat, 270, half)
    return box(west, south, east, north)


# --------------------------------------------------------------------------------------------
# UTM
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("lon", "lat", "epsg"), [
    (-57.55, -6.62, 32721),   # Munduruku
    (-54.01, -6.5, 32721),    # just west of 54 W
    (-53.99, -6.5, 32722),    # just east of 54 W
    (-63.0, 2.0, 32620),      # Yanomami, north of the equator
    (-50.0, 0.0, 32622),      # the equator counts as north
    (10.75, 59.91, 32632),    # Oslo
    (5.32, 60.39, 32632),     # Bergen: zone 32V is widened west to 3 E
    (15.0, 78.0, 32633),      # Svalbard: zone 33X
    (8.0, 78.0, 32631),       # Svalbard: zone 31X runs to 9 E
    (180.0, -16.5, 32760),
    (-180.0, -16.5, 32701),
])
def test_utm_crs_for(lon: float, lat: float, epsg: int) -> None:
    assert utm_crs_for(lon, lat).to_epsg() == epsg


def test_utm_outside_its_latitudes() -> None:
    with pytest.raises(AOIGeometryError, match=r"latitude 85 is outside -80\.\.84, where UTM "
                                               r"is defined"):
        utm_zone_for(0, 85)
    with pytest.raises(AOIGeometryError, match=r"longitude 190 is outside -180\.\.180"):
        utm_zone_for(190, 0)


def test_zone_regions_tile_the_globe() -> None:
    north = shapely.union_all([utm_zone_region(z, north=True) for z in range(1, 61)])
    assert north.equals(box(-180, 0, 180, 84))
    assert utm_zone_region(32, north=True).contains(Point(5.32, 60.39))
    assert not utm_zone_region(31, north=True).contains(Point(5.32, 60.39))
    assert utm_zone_region(34, north=True).intersection(box(-180, 72, 180, 84)).area == 0


# --------------------------------------------------------------------------------------------
# Repair
# --------------------------------------------------------------------------------------------


def test_repair_valid_polygon_is_unchanged() -> None:
    square = box(0, 0, 1, 1)
    fixed, reason = repair_geometry(square)
    assert fixed is square and reason is None


def test_repair_bow_tie() -> None:
    bow_tie = Polygon([(0, 0), (1, 1), (1, 0), (0, 1), (0, 0)])
    fixed, reason = repair_geometry(bow_tie)
    assert reason == "Self-intersection[0.5 0.5]"
    assert isinstance(fixed, MultiPolygon) and fixed.is_valid
    assert fixed.area == pytest.approx(0.5)


def test_repair_keeps_only_polygonal_parts() -> None:
    # a square with a dangling spike: make_valid returns a polygon plus a line
    spiky = Polygon([(0, 0), (2, 0), (2, 2), (3, 3), (2, 2), (0, 2), (0, 0)])
    fixed, reason = repair_geometry(spiky)
    assert reason is not None
    assert fixed.geom_type == "Polygon" and fixed.area == pytest.approx(4)


def test_repair_empty() -> None:
    with pytest.raises(AOIGeometryError, match="empty geometry; expected a Polygon"):
        repair_geometry(Polygon())
    with pytest.raises(AOIGeometryError, match="empty geometry"):
        repair_geometry(None)


def test_repair_collapsed_polygon() -> None:
    flat = Polygon([(0, 0), (1, 1), (2, 2), (0, 0)])
    with pytest.raises(AOIGeometryError, match=r"invalid geometry \(Self-intersection\[1 1\]\) "
                                               r"has no area left after make_valid"):
        repair_geometry(flat)


def test_repair_line() -> None:
    with pytest.raises(AOIGeometryError, match="got a LineString; expected a Polygon"):
        repair_geometry(shapely.LineString([(0, 0), (1, 1)]))


# --------------------------------------------------------------------------------------------
# Antimeridian
# --------------------------------------------------------------------------------------------


def test_split_antimeridian_keeps_area_and_range() -> None:
    past = box(170, 50, 190, 55)
    split = split_antimeridian(past)
    assert split.bounds == (-180, 50, 180, 55)
    assert split.area == pytest.approx(past.area)
    assert split_antimeridian(box(0, 0, 1, 1)).equals(box(0, 0, 1, 1))


def test_split_antimeridian_hole() -> None:
    shell = [(179, -18), (-179, -18), (-179, -15), (179, -15), (179, -18)]
    hole = [(179.5, -17), (179.5, -16), (-179.5, -16), (-179.5, -17), (179.5, -17)]
    split = split_antimeridian(Polygon(shell, [hole]))
    assert split.area == pytest.approx(2 * 3 - 1 * 1)


def test_ring_around_a_pole_is_rejected() -> None:
    around_pole = Polygon([(170, 80), (-170, 81), (-50, 80), (60, 81), (170, 80)])
    with pytest.raises(AOIGeometryError, match=r"encircles a pole .*split it along a meridian"):
        split_antimeridian(around_pole)


# --------------------------------------------------------------------------------------------
# Buffers
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lat", [-6.6, 45.0, 60.0])
def test_buffer_grows_a_square_by_steiner(lat: float) -> None:
    side, distance = 10_000.0, 5_000.0
    square = geodesic_square(-57.5, lat, side)
    aois = gpd.GeoDataFrame({"aoi_id": ["a"]}, geometry=[square], crs="EPSG:4326")
    grown = buffer_aoi(aois, distance)
    assert list(grown.columns) == ["aoi_id", "geometry"] and grown.crs.to_epsg() == 4326
    # Steiner: area(K + dB) = area(K) + perimeter(K) d + pi d^2 for a convex K.
    expected = side**2 + 4 * side * distance + math.pi * distance**2
    got = geodesic_area_m2(grown.geometry.iloc[0])
    assert got == pytest.approx(expected, rel=5e-3)
    growth = got - geodesic_area_m2(square)
    assert growth == pytest.approx(expected - side**2, rel=5e-3)


def test_buffer_of_a_tiny_aoi_is_a_5km_disc() -> None:
    speck = geodesic_square(10.0, 60.0, 1.0)
    disc = buffer_geometry(speck, 5_000)
    assert geodesic_area_m2(disc) == pytest.approx(math.pi * 5_000**2, rel=5e-3)
    # 5 km north and 5 km east of the centre are on the edge of the disc
    for azimuth in (0, 90, 180, 270):
        lon, lat, _ = GEOD.fwd(10.0, 60.0, azimuth, 4_950)
        assert disc.contains(Point(lon, lat))
        lon, lat, _ = GEOD.fwd(10.0, 60.0, azimuth, 5_050)
        assert not disc.contains(Point(lon, lat))


def test_buffer_across_the_antimeridian() -> None:
    split = split_antimeridian(box(179.9, -16.6, 180.1, -16.4))
    grown = buffer_geometry(split, 5_000)
    minx, _, maxx, _ = grown.bounds
    assert minx >= -180 and maxx <= 180
    assert isinstance(grown, MultiPolygon)
    assert geodesic_area_m2(grown) > geodesic_area_m2(split)


def test_buffer_zero_and_negative() -> None:
    aois = gpd.GeoDataFrame({"aoi_id": ["a"]}, geometry=[box(0, 0, 1, 1)], crs="EPSG:4326")
    assert buffer_aoi(aois, 0).geometry.iloc[0].equals(box(0, 0, 1, 1))
    with pytest.raises(ValueError, match=r"buffer distance -1 m; expected a finite distance"):
        buffer_aoi(aois, -1)


def test_buffer_requires_wgs84() -> None:
    aois = gpd.GeoDataFrame({"aoi_id": ["a"]}, geometry=[box(0, 0, 1, 1)], crs="EPSG:3857")
    with pytest.raises(AOIError, match=r"are in EPSG:3857; expected EPSG:4326"):
        buffer_aoi(aois, 10)
    with pytest.raises(AOIError, match=r"have no CRS; expected EPSG:4326"):
        buffer_aoi(gpd.GeoDataFrame(geometry=[box(0, 0, 1, 1)]), 10)


# --------------------------------------------------------------------------------------------
# Areas
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lat", [0.0, -6.0, 55.0])
def test_area_ha_is_equal_area(lat: float) -> None:
    cell = box(-58, lat, -57, lat + 1)
    frame = gpd.GeoDataFrame(geometry=[cell], crs="EPSG:4326")
    expected_ha = geodesic_area_m2(cell) / 10_000
    assert area_ha(frame).iloc[0] == pytest.approx(expected_ha, rel=1e-4)
