"""The processing grid: UTM chips aligned to the MGRS 100 km squares, laid over an AOI.

Chips live in the native UTM zone of the ground they cover (EPSG:326zz north of the equator,
EPSG:327zz south, as Sentinel-2 tiles do). Within each MGRS 100 km square, chip origins are
multiples of ``chip_size_px * resolution_m`` from the square's upper-left corner, so chips sit on
the UTM (and Sentinel-2 10 m / 20 m) pixel grid and never straddle a square edge; the last row and
column of a square are narrower when the chip step does not divide 100 km. An area over several
zones is clipped to each zone's longitude band and gets chips in each zone.

A chip is named ``{MGRS 100 km tile}_{row:02d}{col:02d}``: the tile as Sentinel-2 names it
(``21MXN``: zone, latitude band of the chip centre, square letters), then the chip's row (from the
top) and column (from the left) within the square.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import shapely
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from aoi.errors import AOIError, AOIGeometryError
from aoi.geometry import (
    DENSIFY_DEG,
    DENSIFY_M,
    UTM_MAX_LAT,
    UTM_MIN_LAT,
    WGS84,
    polygonal_parts,
    split_antimeridian,
    utm_epsg,
    utm_zone_for,
    utm_zone_region,
)

log = logging.getLogger(__name__)

SQUARE_M = 100_000
"""Side of an MGRS 100 km square, metres."""

_BAND_LETTERS = "CDEFGHJKLMNPQRSTUVWX"
_COLUMN_LETTERS = ("ABCDEFGH", "JKLMNPQR", "STUVWXYZ")
_ROW_LETTERS = "ABCDEFGHJKLMNPQRSTUV"


@dataclass(frozen=True)
class GridCell:
    """One processing chip of the grid, in its native UTM CRS.

    Attributes:
        tile_id: stable name, ``{MGRS tile}_{row:02d}{col:02d}`` (e.g. ``21MYN_0307``).
        crs: the UTM CRS of the chip.
        transform: affine transform of the chip's upper-left pixel corner.
        width: columns.
        height: rows.
    """

    tile_id: str
    crs: CRS
    transform: Affine
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(
                f"GridCell {self.tile_id}: size {self.width}x{self.height} must be > 0"
            )
        if self.transform.b != 0 or self.transform.d != 0:
            raise ValueError(f"GridCell {self.tile_id}: rotated transforms are not supported")

    @property
    def resolution_m(self) -> float:
        return float(self.transform.a)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the chip's CRS."""
        left, top = self.transform.c, self.transform.f
        right = left + self.width * self.transform.a
        bottom = top + self.height * self.transform.e
        return (left, bottom, right, top)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    def with_halo(self, halo_px: int) -> GridCell:
        """The cell grown by ``halo_px`` pixels on every side: same name, CRS and resolution,
        origin moved up and left by ``halo_px`` pixels (a scan reads and predicts a chip with
        this context around it, then keeps the chip).

        Raises:
            ValueError: ``halo_px`` is negative.
        """
        if halo_px < 0:
            raise ValueError(f"GridCell {self.tile_id}: halo {halo_px} px must be >= 0")
        if halo_px == 0:
            return self
        return GridCell(
            self.tile_id,
            self.crs,
            self.transform @ Affine.translation(-halo_px, -halo_px),
            self.width + 2 * halo_px,
            self.height + 2 * halo_px,
        )

    def slices_of(self, inner: GridCell) -> tuple[slice, slice]:
        """``(rows, cols)`` of this cell's arrays that hold ``inner``, a cell on the same pixel
        grid inside this one (``array[cell.slices_of(chip)]`` crops a halo away).

        Raises:
            ValueError: ``inner`` has another CRS or resolution, is off this cell's pixel grid, or
                reaches outside this cell.
        """
        t, u = self.transform, inner.transform
        if inner.crs != self.crs or not (math.isclose(t.a, u.a) and math.isclose(t.e, u.e)):
            raise ValueError(
                f"GridCell {inner.tile_id} ({inner.crs}, {u.a:g} m) is not on the grid of "
                f"{self.tile_id} ({self.crs}, {t.a:g} m); expected the same CRS and resolution"
            )
        col, row = (u.c - t.c) / t.a, (u.f - t.f) / t.e
        c0, r0 = round(col), round(row)
        if abs(col - c0) > 1e-6 or abs(row - r0) > 1e-6:
            raise ValueError(
                f"GridCell {inner.tile_id} starts {col:g} columns, {row:g} rows into "
                f"{self.tile_id}: not on its pixel grid; expected whole pixels"
            )
        if r0 < 0 or c0 < 0 or r0 + inner.height > self.height or c0 + inner.width > self.width:
            raise ValueError(
                f"GridCell {inner.tile_id} (rows {r0}..{r0 + inner.height}, columns "
                f"{c0}..{c0 + inner.width}) reaches outside {self.tile_id} "
                f"({self.height} x {self.width} px)"
            )
        return slice(r0, r0 + inner.height), slice(c0, c0 + inner.width)


# --------------------------------------------------------------------------------------------
# MGRS names
# --------------------------------------------------------------------------------------------


def mgrs_band(lat: float) -> str:
    """The MGRS latitude band letter (C..X, 8 degrees each, X spanning 72..84) of a latitude.

    Raises:
        AOIGeometryError: the latitude is outside -80..84.
    """
    if not (UTM_MIN_LAT <= lat <= UTM_MAX_LAT):
        raise AOIGeometryError(
            f"latitude {lat} is outside {UTM_MIN_LAT:g}..{UTM_MAX_LAT:g}, where MGRS uses UTM"
        )
    return _BAND_LETTERS[min(int((lat + 80.0) // 8.0), len(_BAND_LETTERS) - 1)]


def mgrs_square_letters(zone: int, easting: float, northing: float) -> str:
    """The two letters of the MGRS 100 km square holding a UTM position (WGS 84 'AA' lettering).

    Args:
        zone: UTM zone, 1..60.
        easting: metres, in that zone.
        northing: metres; southern-hemisphere northings include the 10,000 km false northing
            (as EPSG:327zz coordinates do).

    Returns:
        Column letter then row letter, e.g. ``"XN"``.

    Raises:
        AOIGeometryError: the easting is outside 100..900 km, where a zone has squares.
    """
    column = int(easting // SQUARE_M)
    if not 1 <= column <= 8:
        raise AOIGeometryError(
            f"easting {easting:.0f} m is outside 100000..900000 m; expected a position inside "
            f"UTM zone {zone}"
        )
    row = int(northing // SQUARE_M) % 20
    if zone % 2 == 0:
        row = (row + 5) % 20
    return _COLUMN_LETTERS[(zone - 1) % 3][column - 1] + _ROW_LETTERS[row]


def mgrs_tile_id(lon: float, lat: float) -> str:
    """The MGRS 100 km tile (Sentinel-2 tile name) holding a lon/lat point, e.g. ``21MXN``.

    The zone is zero-padded to two digits as in Sentinel-2 product names (``06VVN``).

    Args:
        lon: longitude, degrees.
        lat: latitude, degrees, -80..84.

    Returns:
        Zone, latitude band and square letters.

    Raises:
        AOIGeometryError: the point is outside -180..180 / -80..84.
    """
    zone = utm_zone_for(lon, lat)
    epsg = utm_epsg(zone, north=lat >= 0)
    transformer = Transformer.from_crs(WGS84, f"EPSG:{epsg}", always_xy=True)
    easting, northing = transformer.transform(lon, lat)
    return f"{zone:02d}{mgrs_band(lat)}{mgrs_square_letters(zone, easting, northing)}"


# --------------------------------------------------------------------------------------------
# The grid
# --------------------------------------------------------------------------------------------


def _area_geometry(area: BaseGeometry | gpd.GeoDataFrame | gpd.GeoSeries) -> BaseGeometry:
    if isinstance(area, (gpd.GeoDataFrame, gpd.GeoSeries)):
        if area.crs is None:
            raise AOIError(
                "the area to grid has no CRS; expected EPSG:4326 (as load_aoi returns); set it"
            )
        if area.crs.to_epsg() != 4326:
            log.info("reprojecting the area to grid from %s to EPSG:4326", area.crs.to_string())
            area = area.to_crs(WGS84)
        geom = shapely.union_all(np.asarray(area.geometry.values))
    else:
        geom = area
    if geom is None or geom.is_empty or not polygonal_parts(geom):
        kind = "nothing" if geom is None or geom.is_empty else f"a {geom.geom_type}"
        raise AOIGeometryError(
            f"the area to grid is {kind}; expected a non-empty Polygon/MultiPolygon in EPSG:4326"
        )
    geom = shapely.union_all(polygonal_parts(geom))
    geom = split_antimeridian(geom)
    minx, miny, maxx, maxy = geom.bounds
    if minx < -180 or maxx > 180 or miny < UTM_MIN_LAT or maxy > UTM_MAX_LAT:
        raise AOIGeometryError(
            f"the area to grid spans lon {minx:g}..{maxx:g}, lat {miny:g}..{maxy:g}; expected "
            f"lon/lat degrees (EPSG:4326) within -180..180 and {UTM_MIN_LAT:g}..{UTM_MAX_LAT:g}"
        )
    return geom


def _check_grid_options(chip_size_px: int, resolution_m: float) -> float:
    if isinstance(chip_size_px, bool) or not isinstance(chip_size_px, int) or chip_size_px <= 0:
        raise ValueError(f"chip_size_px={chip_size_px!r}; expected a positive integer such as 512")
    if not math.isfinite(resolution_m) or resolution_m <= 0:
        raise ValueError(f"resolution_m={resolution_m!r}; expected a positive number such as 10")
    pixels_per_square = SQUARE_M / resolution_m
    if abs(pixels_per_square - round(pixels_per_square)) > 1e-9:
        raise ValueError(
            f"resolution_m={resolution_m:g} does not divide the 100 km MGRS square into whole "
            "pixels; expected a divisor of 100000 such as 10, 20 or 50"
        )
    step = chip_size_px * resolution_m
    if step < SQUARE_M / 100:
        raise ValueError(
            f"chips of {chip_size_px} px x {resolution_m:g} m = {step:g} m give more than 100 "
            "chips per 100 km square side, which the two-digit row/column of tile_id cannot "
            f"name; expected chip_size_px * resolution_m >= {SQUARE_M // 100} m"
        )
    return step


def _cells_in_region(
    part: BaseGeometry, zone: int, *, north: bool, chip_size_px: int, resolution_m: float
) -> list[GridCell]:
    epsg = utm_epsg(zone, north=north)
    crs = CRS.from_epsg(epsg)
    to_utm = Transformer.from_crs(WGS84, f"EPSG:{epsg}", always_xy=True)
    to_lonlat = Transformer.from_crs(f"EPSG:{epsg}", WGS84, always_xy=True)
    dense = shapely.segmentize(part, DENSIFY_DEG)
    projected = shapely.transform(dense, lambda xy: np.column_stack(to_utm.transform(*xy.T)))
    shapely.prepare(projected)
    step = chip_size_px * resolution_m
    per_side = math.ceil(SQUARE_M / step)
    minx, miny, maxx, maxy = projected.bounds
    cells: list[GridCell] = []
    for sq_x in range(int(minx // SQUARE_M), int(maxx // SQUARE_M) + 1):
        for sq_y in range(int(miny // SQUARE_M), int(maxy // SQUARE_M) + 1):
            x0, top = sq_x * SQUARE_M, (sq_y + 1) * SQUARE_M
            cols = np.arange(
                max(0, int((minx - x0) // step)), min(per_side, int((maxx - x0) // step) + 1)
            )
            rows = np.arange(
                max(0, int((top - maxy) // step)), min(per_side, int((top - miny) // step) + 1)
            )
            if cols.size == 0 or rows.size == 0:
                continue
            rr, cc = (a.ravel() for a in np.meshgrid(rows, cols, indexing="ij"))
            left = x0 + cc * step
            right = np.minimum(left + step, x0 + SQUARE_M)
            upper = top - rr * step
            lower = np.maximum(upper - step, top - SQUARE_M)
            boxes = shapely.box(left, lower, right, upper)
            hit = shapely.intersects(projected, boxes) & ~shapely.touches(projected, boxes)
            if not hit.any():
                continue
            _, centre_lat = to_lonlat.transform(
                (left[hit] + right[hit]) / 2, (lower[hit] + upper[hit]) / 2
            )
            letters = mgrs_square_letters(zone, x0, sq_y * SQUARE_M)
            for r, c, lft, rgt, upp, low, lat in zip(
                rr[hit], cc[hit], left[hit], right[hit], upper[hit], lower[hit],
                np.atleast_1d(centre_lat), strict=True,
            ):
                band = mgrs_band(float(np.clip(lat, UTM_MIN_LAT, UTM_MAX_LAT)))
                cells.append(
                    GridCell(
                        tile_id=f"{zone:02d}{band}{letters}_{int(r):02d}{int(c):02d}",
                        crs=crs,
                        transform=Affine(resolution_m, 0.0, float(lft), 0.0, -resolution_m,
                                         float(upp)),
                        width=round((rgt - lft) / resolution_m),
                        height=round((upp - low) / resolution_m),
                    )
                )
    return cells


def make_grid(
    area: BaseGeometry | gpd.GeoDataFrame | gpd.GeoSeries,
    *,
    chip_size_px: int = 512,
    resolution_m: float = 10.0,
) -> list[GridCell]:
    """Lay processing chips over an area, in its native UTM zone(s), aligned to MGRS squares.

    Args:
        area: lon/lat geometry (EPSG:4326), or AOIs (their union is gridded; another CRS is
            reprojected to EPSG:4326, with a log line).
        chip_size_px: chip side in pixels.
        resolution_m: pixel size in metres; must divide 100 km into whole pixels.

    Returns:
        The chips that intersect the area (touching its boundary is not enough), sorted by
        ``tile_id``. Chips of different zones overlap near zone edges, as Sentinel-2 tiles do.

    Raises:
        AOIGeometryError: the area is empty, not polygonal, or outside lon -180..180 /
            lat -80..84.
        AOIError: a GeoDataFrame area has no CRS.
        ValueError: bad ``chip_size_px`` / ``resolution_m``.
    """
    _check_grid_options(chip_size_px, resolution_m)
    geom = _area_geometry(area)
    extent = box(*geom.bounds)
    by_id: dict[str, GridCell] = {}
    for zone in range(1, 61):
        for north in (True, False):
            region = utm_zone_region(zone, north=north)
            if not region.intersects(extent):
                continue
            parts = [p for p in polygonal_parts(geom.intersection(region)) if p.area > 0]
            if not parts:
                continue
            for cell in _cells_in_region(
                shapely.union_all(parts), zone, north=north,
                chip_size_px=chip_size_px, resolution_m=resolution_m,
            ):
                by_id.setdefault(cell.tile_id, cell)
    cells = [by_id[key] for key in sorted(by_id)]
    log.info(
        "grid: %d chips of %d px at %g m in UTM zone(s) %s",
        len(cells), chip_size_px, resolution_m,
        ", ".join(sorted({c.tile_id[:2] for c in cells})) or "-",
    )
    return cells


def cell_footprint(cell: GridCell) -> BaseGeometry:
    """A chip's outline in lon/lat (EPSG:4326), densified, split at ±180 if it crosses."""
    return bounds_footprint(cell.crs, cell.bounds)


def bounds_footprint(crs: CRS, bounds: Sequence[float]) -> BaseGeometry:
    """The outline of projected ``bounds`` (left, bottom, right, top in ``crs``) in lon/lat
    (EPSG:4326), densified, split at ±180 if it crosses (RFC 7946 3.1.9): a Sentinel-2 tile of
    UTM zone 60 or 1 that spans the antimeridian becomes two parts, not a band around the globe.
    """
    to_lonlat = Transformer.from_crs(CRS.from_user_input(crs).to_wkt(), WGS84, always_xy=True)
    outline = shapely.segmentize(box(*bounds), DENSIFY_M)
    lonlat = shapely.transform(outline, lambda xy: np.column_stack(to_lonlat.transform(*xy.T)))
    return split_antimeridian(lonlat)


def grid_to_geodataframe(cells: Iterable[GridCell]) -> gpd.GeoDataFrame:
    """The chips as a GeoDataFrame: ``tile_id``, ``epsg`` (of the chip's UTM CRS),
    ``width``, ``height`` and ``geometry`` (the chip outline in EPSG:4326).

    Args:
        cells: chips, e.g. from :func:`make_grid`.

    Returns:
        One row per chip, in the given order.
    """
    cells = list(cells)
    return gpd.GeoDataFrame(
        {
            "tile_id": [c.tile_id for c in cells],
            "epsg": [c.crs.to_epsg() for c in cells],
            "width": [c.width for c in cells],
            "height": [c.height for c in cells],
        },
        geometry=[cell_footprint(c) for c in cells],
        crs=WGS84,
    )


def cells_intersecting(
    cells: Sequence[GridCell],
    bounds: tuple[float, float, float, float],
    crs: CRS | str,
) -> list[GridCell]:
    """The chips whose footprint intersects a box given in any CRS.

    Args:
        cells: chips.
        bounds: (left, bottom, right, top) in ``crs``.
        crs: CRS of ``bounds`` (a rasterio CRS or anything pyproj accepts).

    Returns:
        The intersecting chips, in the given order.

    Raises:
        ValueError: ``bounds`` is not (left, bottom, right, top) with left < right and
            bottom < top.
    """
    left, bottom, right, top = bounds
    if not (left < right and bottom < top):
        raise ValueError(
            f"bounds {bounds}; expected (left, bottom, right, top) with left < right, bottom < top"
        )
    src = crs.to_wkt() if isinstance(crs, CRS) else crs
    query = box(left, bottom, right, top)
    span = max(right - left, top - bottom)
    out: list[GridCell] = []
    transformers: dict[str, Transformer] = {}
    for cell in cells:
        key = cell.crs.to_wkt()
        if key not in transformers:
            transformers[key] = Transformer.from_crs(src, key, always_xy=True)
        tr = transformers[key]
        dense = shapely.segmentize(query, span / 64)
        there = shapely.transform(dense, lambda xy, tr=tr: np.column_stack(tr.transform(*xy.T)))
        footprint = box(*cell.bounds)
        if there.intersects(footprint) and not there.touches(footprint):
            out.append(cell)
    return out
