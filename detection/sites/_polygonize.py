"""Turn a per-pixel detection mask into polygons, one per connected region."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import rasterio.features
import shapely
from affine import Affine
from pyproj import CRS
from scipy import ndimage

from aoi.geometry import EQUAL_AREA_CRS, WGS84, to_wgs84
from detection.errors import ConfigError, InputFormatError

log = logging.getLogger(__name__)



#: Columns of the table :func:`polygonize_mask` returns, geometry last.
POLYGON_COLUMNS: tuple[str, ...] = ("area_ha", "confidence", "pixel_count", "geometry")

_M2_PER_HA = 10_000.0


def polygonize_mask(
    mask: np.ndarray,
    *,
    transform: Affine,
    crs: Any,
    min_area_ha: float,
    probabilities: np.ndarray | None = None,
    simplify_m: float | None = None,
    connectivity: int = 8,
) -> gpd.GeoDataFrame:
    """Polygonize the connected regions of a detection mask.

    Regions are labelled with ``connectivity`` (8: pixels touching at a corner belong to the same
    region; 4: only edge neighbours). A region whose pixels touch only diagonally becomes a
    ``MultiPolygon`` (its parts meet at corners), so every geometry is valid.

    ``area_ha`` is the area of the region's pixels on the equal-area ``EPSG:6933`` projection,
    measured before any simplification, so it matches the pixels the model flagged.
    ``confidence`` is the mean of ``probabilities`` over the region's pixels, ignoring NaN (not
    observed) pixels; NaN when none are finite or no probabilities are given.

    Args:
        mask: ``(row, col)`` boolean (or integer, non-zero = detected) mask.
        transform: affine transform of the mask's upper-left pixel corner.
        crs: CRS of ``transform`` (anything ``pyproj.CRS.from_user_input`` accepts).
        min_area_ha: regions smaller than this are dropped.
        probabilities: ``(row, col)`` class probabilities in 0..1, NaN where not observed.
        simplify_m: simplify outlines with this tolerance in metres (topology preserved);
            ``None`` keeps the exact pixel outlines.
        connectivity: 4 or 8.

    Returns:
        One row per kept region, in raster scan order of the region's first pixel, with columns
        ``area_ha``, ``confidence``, ``pixel_count`` and ``geometry`` (in ``crs``).

    Raises:
        DetectionError: the mask is not 2-D boolean/integer, ``probabilities`` does not match it,
            ``crs`` is missing or invalid, ``connectivity`` is not 4 or 8, ``min_area_ha`` or
            ``simplify_m`` is negative, or ``transform`` is not an ``Affine``.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise InputFormatError(
            f"polygonize_mask: mask has shape {mask.shape}; expected a 2-D (row, col) array"
        )
    if mask.dtype != bool and not np.issubdtype(mask.dtype, np.integer):
        raise InputFormatError(
            f"polygonize_mask: mask dtype {mask.dtype}; expected bool or integer "
            "(threshold probabilities before polygonizing)"
        )
    if connectivity not in (4, 8):
        raise ConfigError(f"polygonize_mask: connectivity {connectivity!r}; expected 4 or 8")
    if not (min_area_ha >= 0):
        raise ConfigError(f"polygonize_mask: min_area_ha {min_area_ha!r}; expected >= 0")
    if simplify_m is not None and not (simplify_m >= 0):
        raise ConfigError(f"polygonize_mask: simplify_m {simplify_m!r}; expected >= 0 or None")
    if not isinstance(transform, Affine):
        raise InputFormatError(
            f"polygonize_mask: transform is {type(transform).__name__}; expected affine.Affine"
        )
    if crs is None:
        raise InputFormatError("polygonize_mask: crs is None; pass the CRS of the mask's transform")
    try:
        crs = CRS.from_user_input(crs)
    except Exception as exc:
        raise InputFormatError(f"polygonize_mask: invalid crs {crs!r}: {exc}") from exc
    probs: np.ndarray | None = None
    if probabilities is not None:
        probs = np.asarray(probabilities, dtype=np.float64)
        if probs.shape != mask.shape:
            raise InputFormatError(
                f"polygonize_mask: probabilities shape {probs.shape} does not match mask shape "
                f"{mask.shape}"
            )

    min_pixels = 0.0
    if crs.is_projected and min_area_ha > 0:
        # Skip regions far below the limit before tracing them (projected CRS: pixel area is
        # known to well within a factor 2 of the equal-area one); the exact filter runs below.
        min_pixels = 0.5 * min_area_ha * _M2_PER_HA / abs(transform.determinant)
    traced = trace_regions(mask, transform, probabilities=probs, connectivity=connectivity,
                           min_pixels=min_pixels)
    if not traced.geometries:
        return _empty(crs)
    gdf = regions_frame(traced, crs)
    kept = gdf[gdf["area_ha"] >= min_area_ha].reset_index(drop=True)
    log.debug(
        "polygonize_mask: %d regions, %d kept at min_area_ha=%s",
        len(gdf),
        len(kept),
        min_area_ha,
    )
    if simplify_m and len(kept):
        kept = kept.set_geometry(simplify_metres(kept.geometry, simplify_m))
    return kept[list(POLYGON_COLUMNS)]


@dataclass
class TracedRegions:
    """Outlines and pixel statistics of the connected regions of masks, gathered by
    :func:`trace_regions` (one call per mask; they accumulate)."""

    geometries: list[shapely.Geometry] = field(default_factory=list)
    pixel_count: list[int] = field(default_factory=list)
    confidence: list[float] = field(default_factory=list)


def trace_regions(
    mask: np.ndarray,
    transform: Affine,
    *,
    probabilities: np.ndarray | None = None,
    connectivity: int = 8,
    min_pixels: float = 0.0,
    into: TracedRegions | None = None,
) -> TracedRegions:
    """Trace the connected regions of a boolean ``mask`` (no argument checks: see
    :func:`polygonize_mask`), in raster scan order of each region's first pixel.

    Args:
        mask: ``(row, col)``, non-zero = detected.
        transform: of the mask's upper-left pixel corner.
        probabilities: ``(row, col)`` float probabilities, NaN where not observed.
        connectivity: 4 or 8.
        min_pixels: regions with fewer pixels are skipped before tracing.
        into: append to these (default: new ones).
    """
    out = into if into is not None else TracedRegions()
    structure = ndimage.generate_binary_structure(2, 2 if connectivity == 8 else 1)
    labels, n_regions = ndimage.label(mask != 0, structure=structure)
    if n_regions == 0:
        return out
    labels = labels.astype(np.int32, copy=False)

    # Pixel statistics per label, vectorised (index 0 is the background).
    pixel_count = np.bincount(labels.ravel(), minlength=n_regions + 1)
    if probabilities is not None:
        finite = np.isfinite(probabilities) & (labels > 0)
        values = probabilities[finite].astype(np.float64)
        sums = np.bincount(labels[finite], weights=values, minlength=n_regions + 1)
        counts = np.bincount(labels[finite], minlength=n_regions + 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_prob = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    else:
        mean_prob = np.full(n_regions + 1, np.nan)
    if min_pixels > 0:
        tiny = pixel_count < min_pixels
        tiny[0] = True
        if tiny[1:].any():
            labels = np.where(tiny[labels], 0, labels).astype(np.int32)
            if not (labels > 0).any():
                return out

    # 4-connected outlines of each label; an 8-connected label may come back in several pieces.
    pieces: dict[int, list[shapely.Polygon]] = {}
    for geojson, value in rasterio.features.shapes(
        labels, mask=labels > 0, connectivity=4, transform=transform
    ):
        pieces.setdefault(int(value), []).append(shapely.geometry.shape(geojson))
    ids = sorted(pieces)
    geoms = np.array(
        [pieces[i][0] if len(pieces[i]) == 1 else shapely.MultiPolygon(pieces[i]) for i in ids],
        dtype=object,
    )
    invalid = ~shapely.is_valid(geoms)
    if invalid.any():
        log.debug("polygonize: repairing %d invalid outlines", int(invalid.sum()))
        geoms[invalid] = shapely.make_valid(geoms[invalid])
    out.geometries.extend(geoms)
    out.pixel_count.extend(int(pixel_count[i]) for i in ids)
    out.confidence.extend(float(mean_prob[i]) for i in ids)
    return out


def regions_frame(traced: TracedRegions, crs: CRS) -> gpd.GeoDataFrame:
    """:data:`POLYGON_COLUMNS` of traced regions; ``area_ha`` on :data:`EQUAL_AREA_CRS`."""
    if not traced.geometries:
        return _empty(crs)
    gdf = gpd.GeoDataFrame(
        {
            "area_ha": np.zeros(len(traced.geometries)),
            "confidence": np.asarray(traced.confidence, dtype=np.float64),
            "pixel_count": np.asarray(traced.pixel_count, dtype=np.int64),
        },
        geometry=np.array(traced.geometries, dtype=object),
        crs=crs,
    )
    gdf["area_ha"] = gdf.geometry.to_crs(EQUAL_AREA_CRS).area.to_numpy() / _M2_PER_HA
    return gdf[list(POLYGON_COLUMNS)]


def simplify_metres(geoms: gpd.GeoSeries, tolerance_m: float) -> gpd.GeoSeries:
    """Simplify ``geoms`` by ``tolerance_m`` metres, in a metric CRS when theirs is not."""
    crs = CRS.from_user_input(geoms.crs)
    metric = crs.is_projected and all(
        (axis.unit_name or "").lower() in ("metre", "meter") for axis in crs.axis_info
    )
    if metric:
        return geoms.simplify(tolerance_m, preserve_topology=True)
    local = geoms.estimate_utm_crs()
    log.debug("simplify: %s is not metric; simplifying in %s", crs.to_string(), local.to_string())
    simplified = geoms.to_crs(local).simplify(tolerance_m, preserve_topology=True)
    # Back to lon/lat through to_wgs84, which splits a site across +-180 again (RFC 7946).
    return to_wgs84(simplified) if crs.equals(WGS84) else simplified.to_crs(crs)


def _empty(crs: CRS) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {
            "area_ha": np.array([], dtype=np.float64),
            "confidence": np.array([], dtype=np.float64),
            "pixel_count": np.array([], dtype=np.int64),
        },
        geometry=gpd.GeoSeries([], crs=crs),
        crs=crs,
    )
