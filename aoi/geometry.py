"""Geometry of AOIs: repair, the antimeridian, buffers in metres, UTM zones and areas.

Everything here takes and returns lon/lat geometries in EPSG:4326 unless a name says otherwise.
Buffers are computed in a projection local to each AOI (azimuthal equidistant, centred on it), so
"5 km" means 5 km on the ground at any latitude.
"""

from __future__ import annotations

import logging
import math
from typing import TypeVar

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely
from pyproj import Transformer
from rasterio.crs import CRS
from shapely import affinity
from shapely.geometry import MultiPolygon, Polygon, box
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient as _orient_polygon

from aoi.errors import AOIError, AOIGeometryError

log = logging.getLogger(__name__)

WGS84 = "EPSG:4326"
"""The CRS of every AOI geometry minewatch hands around (lon/lat, RFC 7946)."""

EQUAL_AREA_CRS = "EPSG:6933"
"""WGS 84 / NSIDC EASE-Grid 2.0 Global: equal-area, used for every area in hectares."""

UTM_MIN_LAT = -80.0
UTM_MAX_LAT = 84.0

DENSIFY_DEG = 0.01
"""Longest edge (degrees) kept when a lon/lat geometry is projected, so long straight edges
follow the same path in both CRSs."""

DENSIFY_M = 1000.0
"""Longest edge (metres) kept when a projected geometry goes back to lon/lat."""

BUFFER_QUAD_SEGS = 16
"""Segments per quarter circle of a buffer (area error of a circle below 0.2 %)."""

# UTM zone exceptions of the Norway / Svalbard area (also used by MGRS and Sentinel-2):
# (west, south, east, north) in degrees -> zone.
_ZONE_EXCEPTIONS: tuple[tuple[tuple[float, float, float, float], int], ...] = (
    ((3.0, 56.0, 6.0, 64.0), 32),
    ((6.0, 72.0, 9.0, 84.0), 31),
    ((9.0, 72.0, 12.0, 84.0), 33),
    ((18.0, 72.0, 21.0, 84.0), 33),
    ((21.0, 72.0, 24.0, 84.0), 35),
    ((30.0, 72.0, 33.0, 84.0), 35),
    ((33.0, 72.0, 36.0, 84.0), 37),
)

G = TypeVar("G", gpd.GeoDataFrame, gpd.GeoSeries)


# --------------------------------------------------------------------------------------------
# UTM zones
# --------------------------------------------------------------------------------------------


def utm_zone_for(lon: float, lat: float) -> int:
    """The UTM zone number of a point, with the Norway and Svalbard exceptions.

    Args:
        lon: longitude in degrees, -180..180.
        lat: latitude in degrees, -80..84 (where UTM is defined).

    Returns:
        The zone, 1..60.

    Raises:
        AOIGeometryError: the point is outside -180..180 / -80..84.
    """
    if not (-180.0 <= lon <= 180.0) or not math.isfinite(lon):
        raise AOIGeometryError(
            f"longitude {lon} is outside -180..180; expected lon/lat degrees (EPSG:4326)"
        )
    if not (UTM_MIN_LAT <= lat <= UTM_MAX_LAT) or not math.isfinite(lat):
        raise AOIGeometryError(
            f"latitude {lat} is outside {UTM_MIN_LAT:g}..{UTM_MAX_LAT:g}, where UTM is defined; "
            "polar areas need UPS, which minewatch does not support"
        )
    for (west, south, east, north), zone in _ZONE_EXCEPTIONS:
        if west <= lon < east and south <= lat < north:
            return zone
    return min(int((lon + 180.0) // 6.0) + 1, 60)


def utm_crs_for(lon: float, lat: float) -> CRS:
    """The WGS 84 / UTM CRS of a point: EPSG:326zz north of the equator, EPSG:327zz south.

    Args:
        lon: longitude in degrees.
        lat: latitude in degrees (0 counts as north).

    Returns:
        A rasterio CRS.

    Raises:
        AOIGeometryError: the point is outside -180..180 / -80..84.
    """
    return CRS.from_epsg(utm_epsg(utm_zone_for(lon, lat), north=lat >= 0))


def utm_epsg(zone: int, *, north: bool) -> int:
    """The EPSG code of WGS 84 / UTM ``zone``: 326zz in the north, 327zz in the south."""
    return (32600 if north else 32700) + zone


def utm_zone_region(zone: int, *, north: bool) -> BaseGeometry:
    """The lon/lat region (EPSG:4326) where ``zone`` is the UTM zone, in one hemisphere.

    Args:
        zone: UTM zone, 1..60.
        north: the northern (lat >= 0) or southern half.

    Returns:
        A polygon (possibly empty: zones 32, 34 and 36 do not exist in band X).

    Raises:
        ValueError: the zone is not 1..60.
    """
    if not 1 <= zone <= 60:
        raise ValueError(f"UTM zone {zone} is not 1..60")
    west = -180.0 + 6.0 * (zone - 1)
    south, north_lat = (0.0, UTM_MAX_LAT) if north else (UTM_MIN_LAT, 0.0)
    region: BaseGeometry = box(west, south, west + 6.0, north_lat)
    hemisphere = box(-180.0, south, 180.0, north_lat)
    for bounds, owner in _ZONE_EXCEPTIONS:
        exception = box(*bounds)
        region = (region.union(exception) if owner == zone else region.difference(exception))
    return region.intersection(hemisphere)


# --------------------------------------------------------------------------------------------
# Repair and orientation
# --------------------------------------------------------------------------------------------


def polygonal_parts(geom: BaseGeometry) -> list[Polygon]:
    """The non-empty polygons inside any geometry (collections are flattened)."""
    parts: list[Polygon] = []
    for part in shapely.get_parts(geom):
        if isinstance(part, Polygon):
            if not part.is_empty:
                parts.append(part)
        elif isinstance(part, (MultiPolygon, shapely.GeometryCollection)):
            parts.extend(polygonal_parts(part))
    return parts


def _as_polygonal(parts: list[Polygon]) -> Polygon | MultiPolygon:
    if len(parts) == 1:
        return parts[0]
    merged = shapely.union_all(parts)
    polys = polygonal_parts(merged)
    return polys[0] if len(polys) == 1 else MultiPolygon(polys)


def repair_geometry(geom: BaseGeometry | None) -> tuple[Polygon | MultiPolygon, str | None]:
    """Make an AOI geometry valid, keeping only its polygonal parts.

    A valid polygon comes back unchanged with reason None. An invalid one (self-intersection,
    bow-tie, unclosed or too-short ring, ...) goes through ``shapely.make_valid``; lines and
    points produced by the repair are dropped.

    Args:
        geom: a Polygon or MultiPolygon (a GeometryCollection holding polygons is accepted).

    Returns:
        The valid Polygon/MultiPolygon, and the reason it was invalid
        (``shapely.is_valid_reason``), or None when it was valid.

    Raises:
        AOIGeometryError: the geometry is missing or empty, is not polygonal, or has no area left
            after repair.
    """
    if geom is None or geom.is_empty:
        raise AOIGeometryError(
            "empty geometry; expected a Polygon or MultiPolygon with an area; "
            "remove the feature or filter it out"
        )
    if not polygonal_parts(geom):
        raise AOIGeometryError(
            f"got a {geom.geom_type}; expected a Polygon or MultiPolygon; buffer points and lines "
            "into polygons before using them as AOIs"
        )
    if isinstance(geom, (Polygon, MultiPolygon)) and geom.is_valid:
        return geom, None
    reason = None if geom.is_valid else str(shapely.is_valid_reason(geom))
    fixed = geom if geom.is_valid else shapely.make_valid(geom)
    parts = [p for p in polygonal_parts(fixed) if p.area > 0]
    if not parts:
        raise AOIGeometryError(
            f"invalid geometry ({reason}) has no area left after make_valid; "
            "expected a polygon enclosing an area; fix the ring in a GIS"
        )
    result = _as_polygonal(parts)
    if reason is None and isinstance(geom, shapely.GeometryCollection):
        reason = "GeometryCollection; kept its polygons"
    return result, reason


def orient_rfc7946(geom: BaseGeometry) -> BaseGeometry:
    """Rewind polygons to the RFC 7946 right-hand rule (exterior counter-clockwise)."""
    orient = getattr(shapely, "orient_polygons", None)
    if orient is not None:  # shapely >= 2.1
        result: BaseGeometry = orient(geom, exterior_cw=False)
        return result
    polys = [_orient_polygon(p, sign=1.0) for p in polygonal_parts(geom)]
    return polys[0] if len(polys) == 1 else MultiPolygon(polys)


# --------------------------------------------------------------------------------------------
# Antimeridian (RFC 7946 section 3.1.9)
# --------------------------------------------------------------------------------------------


def _unwrap_ring(coords: np.ndarray) -> np.ndarray:
    out = coords.copy()
    out[:, 0] = np.unwrap(coords[:, 0], period=360.0)
    return out


def crosses_antimeridian(geom: BaseGeometry) -> bool:
    """Whether a lon/lat geometry crosses ±180: longitudes beyond ±180, or an edge that jumps
    more than 180 degrees (from 179 to -179, say)."""
    if geom.is_empty:
        return False
    minx, _, maxx, _ = geom.bounds
    if minx < -180.0 or maxx > 180.0:
        return True
    for poly in polygonal_parts(geom):
        for ring in (poly.exterior, *poly.interiors):
            x = np.asarray(ring.coords)[:, 0]
            if x.size > 1 and np.abs(np.diff(x)).max() > 180.0:
                return True
    return False


def unwrap_antimeridian(geom: BaseGeometry) -> BaseGeometry:
    """Give polygons that jump across ±180 continuous longitudes (which may pass 180).

    A ring whose consecutive longitudes differ by more than 180 degrees is read as crossing the
    antimeridian (RFC 7946 section 3.1.9): its longitudes are unwrapped, e.g.
    ``179 -> -179`` becomes ``179 -> 181``. Holes are moved next to their exterior. Geometries that
    do not jump come back unchanged.

    Args:
        geom: a lon/lat Polygon or MultiPolygon.

    Returns:
        The geometry with continuous longitudes.

    Raises:
        AOIGeometryError: a ring does not close after unwrapping (it encircles a pole).
    """
    polys = polygonal_parts(geom)
    jumping = False
    for poly in polys:
        for ring in (poly.exterior, *poly.interiors):
            x = np.asarray(ring.coords)[:, 0]
            if x.size > 1 and np.abs(np.diff(x)).max() > 180.0:
                jumping = True
    if not jumping:
        return geom
    out: list[Polygon] = []
    for poly in polys:
        shell = _unwrap_ring(np.asarray(poly.exterior.coords)[:, :2])
        if abs(shell[0, 0] - shell[-1, 0]) > 1e-9:
            raise AOIGeometryError(
                f"a polygon ring encircles a pole (its longitudes wrap by "
                f"{shell[-1, 0] - shell[0, 0]:+.0f} degrees); expected an area that stays on one "
                "side of the poles; split it along a meridian"
            )
        centre = 0.5 * (shell[:, 0].min() + shell[:, 0].max())
        holes = []
        for interior in poly.interiors:
            hole = _unwrap_ring(np.asarray(interior.coords)[:, :2])
            hole[:, 0] += 360.0 * round((centre - hole[:, 0].mean()) / 360.0)
            holes.append(hole)
        out.append(Polygon(shell, holes))
    return out[0] if len(out) == 1 else MultiPolygon(out)


def split_antimeridian(geom: BaseGeometry) -> BaseGeometry:
    """Split a lon/lat polygon that crosses ±180 into parts within -180..180 (RFC 7946 3.1.9).

    Handles both a polygon given with continuous longitudes past 180 (``170 .. 190``) and one whose
    edges jump from 179 to -179. Geometries that do not cross come back unchanged.

    Args:
        geom: a lon/lat Polygon or MultiPolygon.

    Returns:
        A Polygon or MultiPolygon whose longitudes are all within -180..180.

    Raises:
        AOIGeometryError: a ring encircles a pole.
    """
    if not crosses_antimeridian(geom):
        return geom
    continuous = unwrap_antimeridian(geom)
    if not continuous.is_valid:
        continuous = _as_polygonal(polygonal_parts(shapely.make_valid(continuous)))
    parts: list[Polygon] = []
    for k in (-1, 0, 1):
        window = box(-180.0 + 360.0 * k, -90.0, 180.0 + 360.0 * k, 90.0)
        piece = continuous.intersection(window)
        if piece.is_empty:
            continue
        if k:
            piece = affinity.translate(piece, xoff=-360.0 * k)
        parts.extend(p for p in polygonal_parts(piece) if p.area > 0)
    if not parts:
        raise AOIGeometryError("antimeridian split left no area; expected a polygon with an area")
    return parts[0] if len(parts) == 1 else MultiPolygon(parts)


def _rejoin_antimeridian(geom: BaseGeometry) -> BaseGeometry:
    """Undo a split at ±180: move the western parts of a geometry touching both ±180 by +360."""
    minx, _, maxx, _ = geom.bounds
    if not (minx <= -180.0 + 1e-9 and maxx >= 180.0 - 1e-9):
        return geom
    parts = [
        affinity.translate(p, xoff=360.0) if p.centroid.x < 0 else p
        for p in polygonal_parts(geom)
    ]
    return shapely.union_all(parts)


# --------------------------------------------------------------------------------------------
# Buffers and areas
# --------------------------------------------------------------------------------------------


def local_crs(geom: BaseGeometry) -> pyproj.CRS:
    """An azimuthal equidistant CRS centred on a lon/lat geometry (antimeridian aware)."""
    centre = _rejoin_antimeridian(geom).centroid
    lon = ((centre.x + 180.0) % 360.0) - 180.0
    return pyproj.CRS.from_proj4(
        f"+proj=aeqd +lat_0={centre.y:.6f} +lon_0={lon:.6f} +datum=WGS84 +units=m +no_defs"
    )


def _project(geom: BaseGeometry, src: str | pyproj.CRS, dst: str | pyproj.CRS) -> BaseGeometry:
    transformer = Transformer.from_crs(src, dst, always_xy=True)
    return shapely.transform(geom, lambda xy: np.column_stack(transformer.transform(*xy.T)))


def buffer_geometry(geom: BaseGeometry, distance_m: float) -> BaseGeometry:
    """Buffer one lon/lat polygon by ``distance_m`` metres on the ground.

    Args:
        geom: a valid lon/lat Polygon or MultiPolygon in -180..180.
        distance_m: buffer distance in metres, >= 0.

    Returns:
        The buffered Polygon/MultiPolygon in lon/lat, split at ±180 where it crosses.

    Raises:
        ValueError: ``distance_m`` is negative or not finite.
    """
    if not math.isfinite(distance_m) or distance_m < 0:
        raise ValueError(f"buffer distance {distance_m} m; expected a finite distance >= 0")
    if distance_m == 0 or geom.is_empty:
        return geom
    joined = _rejoin_antimeridian(geom)
    crs = local_crs(joined)
    projected = _project(shapely.segmentize(joined, DENSIFY_DEG), WGS84, crs)
    grown = projected.buffer(distance_m, quad_segs=BUFFER_QUAD_SEGS)
    back = _project(shapely.segmentize(grown, DENSIFY_M), crs, WGS84)
    result = split_antimeridian(back)
    if not result.is_valid:
        result = _as_polygonal(polygonal_parts(shapely.make_valid(result)))
    return orient_rfc7946(result)


def _require_wgs84(frame: gpd.GeoDataFrame | gpd.GeoSeries, what: str) -> None:
    if frame.crs is None:
        raise AOIError(f"{what} have no CRS; expected EPSG:4326 (as load_aoi returns); set it")
    if not pyproj.CRS.from_user_input(frame.crs).equals(pyproj.CRS.from_user_input(WGS84)):
        raise AOIError(
            f"{what} are in {frame.crs.to_string()}; expected EPSG:4326; "
            "reproject with .to_crs('EPSG:4326') first"
        )


def buffer_aoi(aois: gpd.GeoDataFrame, distance_m: float) -> gpd.GeoDataFrame:
    """Buffer every AOI by ``distance_m`` metres, each in its own local projection.

    Each AOI is projected to an azimuthal equidistant CRS centred on it, buffered there and
    brought back to EPSG:4326, so the distance is right on the ground at any latitude (a buffer in
    degrees would be 2x too narrow east-west at 60 degrees latitude).

    Args:
        aois: AOIs in EPSG:4326 (as :func:`aoi.load_aoi` returns them).
        distance_m: buffer distance in metres, >= 0.

    Returns:
        A copy of ``aois`` with buffered geometries (other columns unchanged), EPSG:4326.

    Raises:
        AOIError: ``aois`` is not in EPSG:4326.
        ValueError: ``distance_m`` is negative or not finite.
    """
    if not math.isfinite(distance_m) or distance_m < 0:
        raise ValueError(f"buffer distance {distance_m} m; expected a finite distance >= 0")
    _require_wgs84(aois, "AOIs to buffer")
    out = aois.copy()
    out[out.geometry.name] = gpd.GeoSeries(
        [buffer_geometry(g, distance_m) for g in aois.geometry], index=aois.index, crs=aois.crs
    )
    log.debug("buffered %d AOIs by %.1f m", len(out), distance_m)
    return out


def to_wgs84(frame: G) -> G:
    """Reproject projected geometries to lon/lat (EPSG:4326), splitting those that cross ±180
    as RFC 7946 asks (3.1.9): a site in UTM zone 60 or 1 across the antimeridian becomes a
    MultiPolygon, not an invalid polygon around the globe."""
    out = frame.to_crs(WGS84)
    if out.empty:
        return out
    minx, _, maxx, _ = out.total_bounds
    if maxx - minx <= 180.0:  # nothing can jump across ±180
        return out
    split = gpd.GeoSeries(
        [split_antimeridian(g) if g is not None else g for g in out.geometry],
        index=out.index,
        crs=out.crs,
    )
    if isinstance(out, gpd.GeoSeries):
        return split
    out[out.geometry.name] = split
    return out


def to_equal_area(frame: G) -> G:
    """Reproject lon/lat geometries to the equal-area CRS used for areas (EPSG:6933).

    Args:
        frame: a GeoDataFrame or GeoSeries in EPSG:4326.

    Returns:
        The same, in EPSG:6933.

    Raises:
        AOIError: ``frame`` is not in EPSG:4326.
    """
    _require_wgs84(frame, "geometries")
    return frame.to_crs(EQUAL_AREA_CRS)


def area_ha(frame: gpd.GeoDataFrame | gpd.GeoSeries) -> pd.Series:
    """Area of each geometry in hectares, on the equal-area CRS (EPSG:6933).

    Args:
        frame: a GeoDataFrame or GeoSeries in EPSG:4326.

    Returns:
        A float Series aligned with ``frame``.

    Raises:
        AOIError: ``frame`` is not in EPSG:4326.
    """
    series = frame.geometry if isinstance(frame, gpd.GeoDataFrame) else frame
    return to_equal_area(series).area / 10_000.0
