"""Context of a site: which protected area or indigenous land it is in or near."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS

from aoi.geometry import EQUAL_AREA_CRS, utm_crs_for
from detection.errors import ConfigError, InputFormatError

log = logging.getLogger(__name__)

#: Columns :func:`attribute_aois` adds.
AOI_COLUMNS: tuple[str, ...] = (
    "aoi_id", "aoi_name", "aoi_kind", "aoi_relation", "distance_to_boundary_m", "aoi_ids",
    "aoi_areas", "aoi_area_ha",
)


_M_PER_DEGREE = 111_320.0
_M2_PER_HA = 10_000.0


@dataclass(frozen=True)
class _Candidate:
    aoi: int
    inside: bool
    shared_ha: float
    distance_m: float
    boundary_m: float


def attribute_aois(
    sites: gpd.GeoDataFrame, aois: gpd.GeoDataFrame, *, buffer_m: float
) -> gpd.GeoDataFrame:
    """Attach to each site the AOI it lies in or near; drop sites far from every AOI.

    Geometry is measured in the UTM zone of each site's centroid (a local metric CRS).

    * ``aoi_relation`` is ``inside`` when the site intersects the AOI, ``buffer`` when it does
      not but lies within ``buffer_m`` of it.
    * ``distance_to_boundary_m`` is the shortest distance in metres from the site to the AOI's
      boundary (holes included): 0 when the site crosses the boundary, else positive, inside
      (how deep in) as well as outside (how far out); ``aoi_relation`` tells which side.
    * Several AOIs: ``inside`` beats ``buffer``; among ``inside`` the AOI sharing the largest area
      with the site wins, among ``buffer`` the nearest; ties go to the smaller ``aoi_id``.
      ``aoi_ids`` lists every AOI within ``buffer_m``, best first.
    * ``aoi_areas`` lists every AOI the site overlaps, best first, as
      ``{"aoi_id", "aoi_name", "area_ha"}``: the part of the site inside it (its ``area_ha``
      times the share of it inside, on :data:`EQUAL_AREA_CRS`; a site crossing a boundary is not
      counted whole).

    Args:
        sites: sites in ``EPSG:4326``.
        aois: ``aoi_id``, ``aoi_name``, ``aoi_kind`` and ``geometry`` in ``EPSG:4326``.
        buffer_m: sites farther than this (metres) from every AOI are dropped.

    Returns:
        The sites kept (in their order) with ``aoi_id``, ``aoi_name``, ``aoi_kind``,
        ``aoi_relation``, ``distance_to_boundary_m``, ``aoi_ids``, ``aoi_areas`` and
        ``aoi_area_ha`` (the part inside ``aoi_id``; 0 for ``buffer``) added.

    Raises:
        DetectionError: a table is not in ``EPSG:4326`` or lacks a column, an AOI geometry is
            empty, or ``buffer_m`` is negative.
    """
    if not (buffer_m >= 0):
        raise ConfigError(f"attribute_aois: buffer_m {buffer_m!r}; expected >= 0")
    aoi_geoms = _checked_aoi_geoms(sites, aois)
    site_geoms = sites.geometry.to_numpy()
    n = len(sites)
    best: list[list[_Candidate]] = [[] for _ in range(n)]
    if n and len(aois):
        _collect(site_geoms, aoi_geoms, buffer_m, best)

    rows, keep, pairs = _best_aois(best, aois)
    areas = _aoi_areas(sites, aois, aoi_geoms, pairs, n_rows=int(keep.sum()))
    rows["aoi_areas"] = list(areas)
    rows["aoi_area_ha"] = [
        sum(float(a["area_ha"]) for a in site if a["aoi_id"] == aoi_id)
        for site, aoi_id in zip(areas, rows["aoi_id"], strict=True)
    ]
    dropped = int(n - keep.sum())
    if dropped:
        log.info(
            "attribute_aois: dropped %d of %d sites farther than %s m from every AOI",
            dropped,
            n,
            buffer_m,
        )
    out = sites[keep].copy()
    for col in AOI_COLUMNS:
        out[col] = pd.Series(
            rows[col],
            index=out.index,
            dtype=float if col in ("distance_to_boundary_m", "aoi_area_ha") else object,
        )
    return out


def _best_aois(
    best: list[list[_Candidate]], aois: gpd.GeoDataFrame
) -> tuple[dict[str, list[object]], np.ndarray, list[tuple[int, int, int]]]:
    """Rank each site's candidate AOIs (``inside`` first, by shared area, then ``buffer`` by
    distance, ties by ``aoi_id``): the AOI columns of the sites kept (all but the areas), which
    sites are kept (those with a candidate), and the ``(output row, site, AOI)`` of each
    overlap."""
    n = len(best)
    aoi_ids = aois["aoi_id"].astype(str).to_numpy()
    aoi_names = aois["aoi_name"].to_numpy()
    aoi_kinds = aois["aoi_kind"].to_numpy()
    rows: dict[str, list[object]] = {c: [] for c in AOI_COLUMNS}
    keep = np.zeros(n, dtype=bool)
    pairs: list[tuple[int, int, int]] = []
    for i, candidates in enumerate(best):
        if not candidates:
            continue
        keep[i] = True
        ranked = sorted(
            candidates,
            key=lambda c: (
                not c.inside,
                -c.shared_ha if c.inside else c.distance_m,
                aoi_ids[c.aoi],
            ),
        )
        top = ranked[0]
        rows["aoi_id"].append(aoi_ids[top.aoi])
        rows["aoi_name"].append(str(aoi_names[top.aoi]))
        rows["aoi_kind"].append(str(aoi_kinds[top.aoi]))
        rows["aoi_relation"].append("inside" if top.inside else "buffer")
        rows["distance_to_boundary_m"].append(float(top.boundary_m))
        rows["aoi_ids"].append(list(dict.fromkeys(aoi_ids[c.aoi] for c in ranked)))
        pairs.extend((len(rows["aoi_ids"]) - 1, i, c.aoi) for c in ranked if c.inside)
    return rows, keep, pairs


def _checked_aoi_geoms(sites: gpd.GeoDataFrame, aois: gpd.GeoDataFrame) -> np.ndarray:
    """The AOIs' geometries, invalid ones repaired with ``make_valid`` (logged).

    Raises:
        DetectionError: a table is not in ``EPSG:4326``, ``aois`` lacks a column, or an AOI
            geometry is empty.
    """
    for frame, what in ((sites, "sites"), (aois, "aois")):
        if frame.crs is None or CRS.from_user_input(frame.crs) != CRS.from_epsg(4326):
            got = "no CRS" if frame.crs is None else CRS.from_user_input(frame.crs).to_string()
            raise InputFormatError(
                f"attribute_aois: {what} CRS is {got}; expected EPSG:4326 (use .to_crs(4326))"
            )
    missing = [c for c in ("aoi_id", "aoi_name", "aoi_kind") if c not in aois.columns]
    if missing:
        raise InputFormatError(
            f"attribute_aois: aois lack columns {missing}; has {[str(c) for c in aois.columns]}"
        )
    aoi_geoms = aois.geometry.to_numpy().copy()
    empty = shapely.is_empty(aoi_geoms) | shapely.is_missing(aoi_geoms)
    if empty.any():
        bad = aois["aoi_id"].to_numpy()[empty].tolist()
        raise InputFormatError(f"attribute_aois: AOIs {bad} have empty geometry; drop or fix them")
    invalid = ~shapely.is_valid(aoi_geoms)
    if invalid.any():
        log.warning(
            "attribute_aois: repairing invalid geometry of AOIs %s with make_valid",
            aois["aoi_id"].to_numpy()[invalid].tolist(),
        )
        aoi_geoms[invalid] = shapely.make_valid(aoi_geoms[invalid])
    return aoi_geoms


def _aoi_areas(
    sites: gpd.GeoDataFrame,
    aois: gpd.GeoDataFrame,
    aoi_geoms: np.ndarray,
    pairs: list[tuple[int, int, int]],
    *,
    n_rows: int,
) -> list[list[dict[str, Any]]]:
    """The ``aoi_areas`` of each output row from its ``(output row, site, AOI)`` overlaps, in
    ranking order, with one reprojection for all of them; overlaps of no area left out."""
    aoi_ids = aois["aoi_id"].astype(str).to_numpy()
    aoi_names = aois["aoi_name"].to_numpy()
    site_geoms = sites.geometry.to_numpy()
    areas: list[list[dict[str, Any]]] = [[] for _ in range(n_rows)]
    totals = sites["area_ha"].to_numpy(dtype=float) if "area_ha" in sites.columns else None
    shares = area_inside_ha(
        [site_geoms[i] for _, i, _ in pairs],
        [aoi_geoms[a] for *_, a in pairs],
        None if totals is None else [totals[i] for _, i, _ in pairs],
    )
    for (row, _, a), ha in zip(pairs, shares, strict=True):
        if ha > 0:
            areas[row].append(
                {"aoi_id": aoi_ids[a], "aoi_name": str(aoi_names[a]), "area_ha": round(ha, 4)}
            )
    return areas


def area_inside_ha(
    site_geoms: Sequence[Any], regions: Sequence[Any] | Any, totals: Sequence[float] | None = None
) -> list[float]:
    """Hectares of each site (EPSG:4326) inside its region (one region per site, or one for
    all): the share of the site's area inside, on :data:`EQUAL_AREA_CRS`, times its ``totals``
    (the site's ``area_ha``, so the parts of a site add up to it), or times its own area."""
    sites = np.asarray(list(site_geoms), dtype=object)
    if len(sites) == 0:
        return []
    parts = shapely.intersection(sites, np.asarray(regions, dtype=object))
    both = gpd.GeoSeries(np.concatenate([parts, sites]), crs="EPSG:4326").to_crs(EQUAL_AREA_CRS)
    areas = both.area.to_numpy()
    inside, whole = areas[: len(sites)], areas[len(sites) :]
    if totals is None:
        return [float(a) / _M2_PER_HA for a in inside]
    return [
        float(t) * min(1.0, float(a) / float(w)) if w > 0 else 0.0
        for a, w, t in zip(inside, whole, totals, strict=True)
    ]


def _collect(
    site_geoms: np.ndarray, aoi_geoms: np.ndarray, buffer_m: float, best: list[list[_Candidate]]
) -> None:
    """Fill ``best[i]`` with every AOI within ``buffer_m`` of site ``i``."""
    bounds = shapely.bounds(site_geoms)
    lat_max = np.maximum(np.abs(bounds[:, 1]), np.abs(bounds[:, 3]))
    # Degrees of longitude per metre grow towards the poles: widen the box by the worst case.
    margin_lon = buffer_m / (_M_PER_DEGREE * np.cos(np.radians(np.minimum(lat_max, 89.0))))
    margin_lat = buffer_m / _M_PER_DEGREE * 1.01 + 1e-9
    boxes = shapely.box(
        bounds[:, 0] - margin_lon * 1.01 - 1e-9,
        bounds[:, 1] - margin_lat,
        bounds[:, 2] + margin_lon * 1.01 + 1e-9,
        bounds[:, 3] + margin_lat,
    )
    tree = shapely.STRtree(aoi_geoms)
    si, ai = tree.query(boxes)
    if len(si) == 0:
        return
    centroids = shapely.centroid(site_geoms)
    zones = np.array([_utm_epsg(p.x, p.y) for p in centroids])
    for epsg in np.unique(zones[si]):
        in_zone = zones[si] == epsg
        s_idx, a_idx = si[in_zone], ai[in_zone]
        sites_m = _to_crs(site_geoms[s_idx], int(epsg))
        uniq, inverse = np.unique(a_idx, return_inverse=True)
        aois_m = _to_crs(aoi_geoms[uniq], int(epsg))[inverse]
        inside = shapely.intersects(sites_m, aois_m)
        distance = shapely.distance(sites_m, aois_m)
        boundary = shapely.distance(sites_m, shapely.boundary(aois_m))
        shared = np.zeros(len(s_idx))
        if inside.any():
            shared[inside] = (
                shapely.area(shapely.intersection(sites_m[inside], aois_m[inside])) / _M2_PER_HA
            )
        near = inside | (distance <= buffer_m)
        for k in np.flatnonzero(near):
            best[int(s_idx[k])].append(
                _Candidate(
                    aoi=int(a_idx[k]),
                    inside=bool(inside[k]),
                    shared_ha=float(shared[k]),
                    distance_m=float(distance[k]),
                    boundary_m=0.0 if not math.isfinite(boundary[k]) else float(boundary[k]),
                )
            )


def _utm_epsg(lon: float, lat: float) -> int:
    return int(utm_crs_for(lon, lat).to_epsg())


def _to_crs(geoms: np.ndarray, epsg: int) -> np.ndarray:
    return gpd.GeoSeries(geoms, crs="EPSG:4326").to_crs(epsg).to_numpy()


#: Columns :func:`attribute_admin` adds.
ADMIN_COLUMNS: tuple[str, ...] = ("municipality", "state", "municipalities")


def attribute_admin(
    sites: gpd.GeoDataFrame, municipalities: gpd.GeoDataFrame | None
) -> gpd.GeoDataFrame:
    """Attach the municipalities each site lies in (DETER's ``municipali`` / ``uf``, MapBiomas
    Alerta's ``crossedCities`` / ``crossedStates``).

    * ``municipalities``: every municipality the site overlaps, largest share first (ties by
      name), as ``{"municipality", "state", "area_ha"}``: the part of the site inside it, as
      for ``aoi_areas``;
    * ``municipality`` and ``state``: those of the first (the largest share); ``None`` (and
      ``municipalities`` ``[]``) when the site lies outside every polygon of the layer or no
      layer is given.

    Args:
        sites: sites in ``EPSG:4326``.
        municipalities: :func:`aoi.admin.load_admin`'s table (``municipality``, ``state``,
            geometry in ``EPSG:4326``), or None.

    Returns:
        A copy of ``sites`` with the :data:`ADMIN_COLUMNS`.
    """
    out = sites.copy()
    found: list[list[dict[str, object]]] = [[] for _ in range(len(out))]
    if municipalities is not None and len(out) and len(municipalities):
        site_geoms = out.geometry.to_numpy()
        admin_geoms = municipalities.geometry.to_numpy()
        si, ai = shapely.STRtree(admin_geoms).query(site_geoms, predicate="intersects")
        totals = out["area_ha"].to_numpy(dtype=float)[si] if "area_ha" in out.columns else None
        areas = area_inside_ha(site_geoms[si], admin_geoms[ai], totals)
        names = municipalities["municipality"].to_numpy()
        states = municipalities["state"].to_numpy()
        for s, a, ha in zip(si, ai, areas, strict=True):
            if ha > 0:
                found[int(s)].append(
                    {"municipality": names[a], "state": states[a], "area_ha": round(ha, 4)}
                )
        for entries in found:
            entries.sort(key=lambda e: (-float(e["area_ha"]), str(e["municipality"])))  # type: ignore[arg-type]
    out["municipality"] = pd.Series(
        [e[0]["municipality"] if e else None for e in found], index=out.index, dtype=object
    )
    out["state"] = pd.Series(
        [e[0]["state"] if e else None for e in found], index=out.index, dtype=object
    )
    out["municipalities"] = pd.Series(found, index=out.index, dtype=object)
    return out
