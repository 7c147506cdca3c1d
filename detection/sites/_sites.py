"""Sites: chip polygons merged into places, tracked across periods under stable ids.

A *site* is one place where an alert class (``mining`` or ``deforestation``) was detected. Its
``site_id`` is stable across runs and periods: a site keeps its id as it grows, shrinks, merges
with neighbours or comes back after a quiet period (DESIGN.md section 6).

Rules (see ``docs/alerts.md``):

* **Merging chips** (:func:`merge_parts`): polygons of the same class closer than
  ``tolerance_m`` (touching, overlapping, or abutting across a chip edge) form one site.
  Geometry is their union; ``area_ha`` is recomputed on ``EPSG:6933`` (overlaps counted once);
  ``confidence`` is the mean of the parts' confidences weighted by their ``area_ha``;
  ``tile_id`` is the sorted, de-duplicated, comma-joined tile ids of the parts.
* **Tracking** (:func:`track_sites`): overlaps are measured as intersection area on
  ``EPSG:6933``; only a positive shared area counts (touching does not).
  Pairs (current polygon, previous site) are assigned greedily by shared area, largest first,
  each previous id going to at most one current polygon. A current polygon that gets no id but
  overlaps a previous site is a *split* part: new id, ``split_from`` = the previous site it shares
  most with. A previous site that gives its id to nobody but overlaps a current polygon is
  *merged* into the current polygon it shares most with (listed in that row's ``merged_from``).
  The same is done, for polygons still without a previous-period match, against *dormant* sites
  (seen in an earlier period, absent in the previous one): those become ``reactivated``.
* **Status**: against a baseline area (the previous site plus the sites merged into it; for a
  split part, its shared area with the previous sites), the change is significant when
  ``|change| > max(growth_tolerance_pct % of baseline, growth_tolerance_ha)`` (defaults 10 % and
  0.5 ha): ``expanding`` above, ``receding`` below, else ``stable``. ``new`` and
  ``reactivated`` sites report ``area_change_ha = area_ha`` (absent in the previous period).
* **New ids** are ``mw-<m|d>-<8 hex>``: the first 8 hex digits of the SHA-256 of the class, the
  label of the first period and the centroid (lon/lat rounded to 4 decimals, about 11 m). The same
  inputs always give the same ids; on a re-run of a period whose rows are already in the history,
  a polygon that would get a new id takes the id born in that period's earlier run that it
  overlaps most, so re-running never creates a second id for the same site.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from aoi.geometry import EQUAL_AREA_CRS
from detection.errors import ConfigError, InputFormatError
from detection.values import iso_date, present
from models.detector import ALERT_CLASSES
from tiles.periods import Period

log = logging.getLogger(__name__)


#: Columns :func:`merge_parts` returns (``scene_ids`` too when the parts carry it).
SITE_COLUMNS: tuple[str, ...] = ("alert_class", "area_ha", "confidence", "tile_id", "geometry")

#: Columns :func:`track_sites` adds to the current sites.
TRACK_COLUMNS: tuple[str, ...] = (
    "site_id", "status", "area_change_ha", "first_detected", "last_detected", "merged_from",
    "split_from",
)

#: Columns of the site history (one row per site and period), geometry last.
HISTORY_COLUMNS: tuple[str, ...] = (
    "site_id", "alert_class", "period_label", "period_start", "period_end", "status", "area_ha",
    "area_change_ha", "confidence", "observed_fraction", "first_detected", "last_detected",
    "merged_from", "split_from", "geometry",
)

STATUSES: tuple[str, ...] = ("new", "expanding", "stable", "reactivated", "receding")

_M2_PER_HA = 10_000.0
_M_PER_DEGREE = 111_320.0
_GRID_DEGREES = 1e-7  # the 7 decimals of the GeoJSON output, about 1 cm
_GRID_METRES = 0.01


# --------------------------------------------------------------------------------------- merge


def merge_parts(parts: Sequence[gpd.GeoDataFrame], *, tolerance_m: float = 0.5) -> gpd.GeoDataFrame:
    """Merge the polygons of adjacent processing chips into sites.

    All parts must share one CRS: ``EPSG:4326`` (chips from several UTM zones, reprojected) or
    one projected CRS in metres (chips of one zone, where chip edges abut exactly). In
    ``EPSG:4326`` the union snaps to a 1e-7 degree grid (the precision of the GeoJSON output) so
    that edges reprojected from the two sides of a chip boundary close up.

    Args:
        parts: one table per chip with ``alert_class``, ``geometry``, ``area_ha``,
            ``confidence`` and ``tile_id`` (optional ``scene_ids``, a list per row).
        tolerance_m: polygons of the same class closer than this (metres) are one site.

    Returns:
        One row per site with ``alert_class``, ``area_ha``, ``confidence``, ``tile_id``
        (sorted unique tile ids joined with ``","``), ``scene_ids`` (sorted union, when the parts
        have it) and ``geometry``, in the parts' CRS, sorted by class then position. An empty
        table in ``EPSG:4326`` when there are no parts.

    Raises:
        DetectionError: a part lacks a column or a CRS, the parts' CRSs differ, the CRS is
            geographic but not ``EPSG:4326``, a class is unknown, or ``tolerance_m`` < 0.
    """
    if not (tolerance_m >= 0):
        raise ConfigError(f"merge_parts: tolerance_m {tolerance_m!r}; expected >= 0")
    frames = [p for p in parts if len(p)]
    crs = _common_crs(parts)
    with_scenes = any("scene_ids" in p.columns for p in frames)
    columns = [c for c in SITE_COLUMNS if c != "geometry"]
    if with_scenes:
        columns.append("scene_ids")
    if not frames:
        return _empty_frame([*columns, "geometry"], crs)
    for i, part in enumerate(frames):
        _require_columns(part, SITE_COLUMNS, f"merge_parts: part {i}")
        _check_classes(part["alert_class"], f"merge_parts: part {i}")

    table = pd.concat([p.to_crs(crs) for p in frames], ignore_index=True)
    geoms = table.geometry.to_numpy()
    nonempty = ~(shapely.is_empty(geoms) | shapely.is_missing(geoms))
    table = table[nonempty].reset_index(drop=True)
    if len(table) == 0:
        return _empty_frame([*columns, "geometry"], crs)

    groups = _neighbour_groups(table, crs, tolerance_m=tolerance_m)
    grid = _GRID_METRES if crs.is_projected else _GRID_DEGREES
    rows = _merged_rows(table, groups, grid=grid, with_scenes=with_scenes)
    merged = gpd.GeoDataFrame(rows, geometry="geometry", crs=crs)
    merged["area_ha"] = _area_ha(merged.geometry)
    merged = _sorted_by_position(merged)
    log.info(
        "merge_parts: %d polygons from %d chips -> %d sites", len(table), len(frames), len(merged)
    )
    return gpd.GeoDataFrame(merged[[*columns, "geometry"]], geometry="geometry", crs=crs)


def _common_crs(parts: Sequence[gpd.GeoDataFrame]) -> CRS:
    """The one CRS of all parts (``EPSG:4326`` when there are none).

    Raises:
        DetectionError: a part has no CRS, the parts' CRSs differ, or the CRS is geographic
            but not ``EPSG:4326``.
    """
    crs_list = [p.crs for p in parts]
    if any(c is None for c in crs_list):
        raise InputFormatError("merge_parts: a part has no CRS; set it to its chip's CRS")
    crs = CRS.from_user_input(crs_list[0]) if crs_list else CRS.from_epsg(4326)
    for other in crs_list[1:]:
        if CRS.from_user_input(other) != crs:
            raise InputFormatError(
                f"merge_parts: parts are in {crs.to_string()} and "
                f"{CRS.from_user_input(other).to_string()}; reproject every part to EPSG:4326 "
                "(or one projected CRS) before merging"
            )
    if crs.is_geographic and crs != CRS.from_epsg(4326):
        raise InputFormatError(
            f"merge_parts: geographic CRS {crs.to_string()}; expected EPSG:4326 or a projected CRS"
        )
    return crs


def _neighbour_groups(table: gpd.GeoDataFrame, crs: CRS, *, tolerance_m: float) -> list[np.ndarray]:
    """Row indices of each site: polygons of one class within ``tolerance_m``, transitively."""
    geoms = table.geometry.to_numpy()
    classes = table["alert_class"].to_numpy()
    distance = tolerance_m if crs.is_projected else tolerance_m / _M_PER_DEGREE
    tree = shapely.STRtree(geoms)
    left, right = tree.query(geoms, predicate="dwithin", distance=distance)
    same = (classes[left] == classes[right]) & (left != right)
    n = len(table)
    graph = coo_matrix((np.ones(int(same.sum())), (left[same], right[same])), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    order = np.argsort(component, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(component[order])) + 1)


def _merged_rows(
    table: gpd.GeoDataFrame, groups: list[np.ndarray], *, grid: float, with_scenes: bool
) -> list[dict[str, Any]]:
    """One row per group: the union of its polygons (snapped to ``grid``), the area-weighted
    confidence, its tile ids and (``with_scenes``) its scene ids; ``area_ha`` left NaN."""
    geoms = table.geometry.to_numpy()
    classes = table["alert_class"].to_numpy()
    confidence = table["confidence"].astype(float).to_numpy()
    weights = table["area_ha"].astype(float).to_numpy()
    tiles = [str(t) if present(t) else "" for t in table["tile_id"]]
    scenes = (
        [_as_list(v) for v in table["scene_ids"]]
        if "scene_ids" in table.columns
        else [[] for _ in range(len(table))]
    )
    rows: list[dict[str, Any]] = []
    for members in groups:
        first = int(members[0])
        if len(members) == 1:
            geometry = geoms[first]
        else:
            geometry = shapely.union_all(geoms[members], grid_size=grid)
        row: dict[str, Any] = {
            "alert_class": str(classes[first]),
            "area_ha": np.nan,
            "confidence": _weighted_mean(confidence[members], weights[members]),
            "tile_id": ",".join(sorted({tiles[i] for i in members if tiles[i]})),
            "geometry": geometry,
        }
        if with_scenes:
            row["scene_ids"] = sorted({str(x) for i in members for x in scenes[i]})
        rows.append(row)
    return rows


def _sorted_by_position(merged: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The sites sorted by class, then by their bounds (west, south, east, north)."""
    bounds = merged.geometry.bounds
    return (
        pd.concat([merged, bounds], axis=1)
        .sort_values(["alert_class", "minx", "miny", "maxx", "maxy"], kind="stable")
        .drop(columns=["minx", "miny", "maxx", "maxy"])
        .reset_index(drop=True)
    )


# ------------------------------------------------------------------------------------ tracking


@dataclass(frozen=True)
class _Overlap:
    current: int
    ref: int
    shared_ha: float


@dataclass(frozen=True)
class _Current:
    """This period's polygons as tracking measures them."""

    geoms_ea: np.ndarray  # geometries on EQUAL_AREA_CRS
    classes: np.ndarray
    area_ha: np.ndarray


@dataclass
class _Tracks:
    """The track columns being filled, one entry per current polygon."""

    site_id: list[str | None]
    status: list[str]
    change: np.ndarray
    first: list[str]
    merged_from: list[list[str]]
    split_from: list[str | None]

    @classmethod
    def start(cls, area_ha: np.ndarray, period_end: str) -> _Tracks:
        """Every polygon ``new``, first seen in this period, its whole area as the change."""
        n = len(area_ha)
        return cls(
            site_id=[None] * n,
            status=["new"] * n,
            change=area_ha.copy(),
            first=[period_end] * n,
            merged_from=[[] for _ in range(n)],
            split_from=[None] * n,
        )


def track_sites(
    current: gpd.GeoDataFrame,
    history: gpd.GeoDataFrame | None,
    *,
    period: Period,
    previous_period: Period | None,
    growth_tolerance_pct: float = 10.0,
    growth_tolerance_ha: float = 0.5,
) -> gpd.GeoDataFrame:
    """Give this period's sites their ids and status against the previous period.

    Args:
        current: this period's sites in ``EPSG:4326`` with ``alert_class``, ``geometry`` and
            ``area_ha`` (other columns are kept).
        history: tracked sites of earlier periods (see :data:`HISTORY_COLUMNS`; needs at least
            ``site_id``, ``alert_class``, ``period_label``, ``period_end``, ``geometry``,
            ``area_ha``) in ``EPSG:4326``, or ``None`` for the first period. Rows of ``period``
            itself (an earlier run of this period) are used only to reuse ids born in it.
        period: the period of ``current``.
        previous_period: the period compared against; ``None`` means none (every site is
            ``new``, or ``reactivated`` when it overlaps a site of ``history``).
        growth_tolerance_pct: relative part of the stable band, percent of the baseline area.
        growth_tolerance_ha: absolute part of the stable band, hectares.

    Returns:
        ``current`` (same row order) with ``site_id``, ``status``, ``area_change_ha``,
        ``first_detected`` and ``last_detected`` (ISO dates, period ends), ``merged_from``
        (sorted list of ids) and ``split_from`` (id or ``None``).

    Raises:
        DetectionError: a table is not in ``EPSG:4326`` or lacks a column, a class is unknown,
            the history holds a site twice in one period, ``previous_period`` does not end
            before ``period`` starts, or a tolerance is negative.
    """
    _check_track_inputs(
        current,
        period=period,
        previous_period=previous_period,
        growth_tolerance_pct=growth_tolerance_pct,
        growth_tolerance_ha=growth_tolerance_ha,
    )
    hist = _prepare_history(history)

    out = current.copy()
    n = len(out)
    period_end = period.end.isoformat()
    tracks = _Tracks.start(out["area_ha"].astype(float).to_numpy(), period_end)
    if n == 0:
        return _with_track_columns(out, tracks, period_end)

    polygons = _Current(
        geoms_ea=current.geometry.to_crs(EQUAL_AREA_CRS).to_numpy(),
        classes=current["alert_class"].astype(str).to_numpy(),
        area_ha=current["area_ha"].astype(float).to_numpy(),
    )
    first_by_id = _first_detected(hist)
    before = hist[hist["period_end"] < period.start.isoformat()]
    prev, dormant = _previous_and_dormant(before, previous_period)
    unmatched = np.ones(n, dtype=bool)

    # Stage 1: the previous period. Stage 2: dormant sites, for polygons still unmatched.
    for stage, ref in (("previous", prev), ("dormant", dormant)):
        if ref.empty or not unmatched.any():
            continue
        _match_stage(
            stage,
            ref,
            polygons,
            tracks,
            unmatched,
            first_by_id=first_by_id,
            period_end=period_end,
            tolerance=(growth_tolerance_pct, growth_tolerance_ha),
        )

    # Stage 3: new ids, reusing ids born in an earlier run of this same period.
    _name_new_sites(current, polygons, tracks, hist=hist, before=before, period=period)

    counts = pd.Series(tracks.status).value_counts().to_dict()
    log.info("track_sites %s: %d sites %s", period.label, n, dict(sorted(counts.items())))
    return _with_track_columns(out, tracks, period_end)


def _check_track_inputs(
    current: gpd.GeoDataFrame,
    *,
    period: Period,
    previous_period: Period | None,
    growth_tolerance_pct: float,
    growth_tolerance_ha: float,
) -> None:
    """Raise for the tolerances, the periods' order and the current table, as track_sites."""
    if growth_tolerance_pct < 0 or growth_tolerance_ha < 0:
        raise ConfigError(
            f"track_sites: tolerances {growth_tolerance_pct!r} % / {growth_tolerance_ha!r} ha; "
            "expected >= 0"
        )
    if previous_period is not None and previous_period.end >= period.start:
        raise InputFormatError(
            f"track_sites: previous period {previous_period.label} ends {previous_period.end}, "
            f"not before period {period.label} starts {period.start}"
        )
    _require_columns(current, ("alert_class", "geometry", "area_ha"), "track_sites: current")
    _require_4326(current, "track_sites: current")
    _check_classes(current["alert_class"], "track_sites: current")


def _previous_and_dormant(
    before: gpd.GeoDataFrame, previous_period: Period | None
) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """The sites of the previous period, and the latest row of each site seen earlier but not
    in the previous period (dormant), from the history rows ``before`` this period."""
    prev_label = previous_period.label if previous_period is not None else None
    prev = before[before["period_label"] == prev_label].reset_index(drop=True)
    dormant = (
        before[~before["site_id"].isin(set(prev["site_id"]))]
        .sort_values(["period_end", "site_id"])
        .drop_duplicates("site_id", keep="last")
        .reset_index(drop=True)
    )
    return prev, dormant


def _match_stage(
    stage: str,
    ref: gpd.GeoDataFrame,
    polygons: _Current,
    tracks: _Tracks,
    unmatched: np.ndarray,
    *,
    first_by_id: dict[str, str],
    period_end: str,
    tolerance: tuple[float, float],
) -> None:
    """Match the ``unmatched`` polygons to the reference sites ``ref`` (the previous period's
    or the dormant ones): ids, splits, merges and status go into ``tracks``."""
    ref_ids = ref["site_id"].astype(str).to_list()
    ref_area = ref["area_ha"].astype(float).to_numpy()
    overlaps = _overlaps(
        polygons.geoms_ea,
        polygons.classes,
        ref.geometry.to_crs(EQUAL_AREA_CRS).to_numpy(),
        ref["alert_class"].astype(str).to_numpy(),
        only=unmatched,
    )
    if not overlaps:
        return
    ref_index = {sid: i for i, sid in enumerate(ref_ids)}
    owner = _assign(overlaps, ref_ids)
    by_current: dict[int, list[_Overlap]] = {}
    by_ref: dict[int, list[_Overlap]] = {}
    for o in overlaps:
        by_current.setdefault(o.current, []).append(o)
        by_ref.setdefault(o.ref, []).append(o)
    touched = set(by_current)
    # Previous sites that gave their id to nobody merge into the polygon sharing most.
    given = set(owner.values())
    for r in sorted(set(by_ref) - given, key=lambda r: ref_ids[r]):
        best = max(by_ref[r], key=lambda o: (o.shared_ha, -o.current))
        tracks.merged_from[best.current].append(ref_ids[r])
    for c in sorted(touched):
        shares = by_current[c]
        merged_area = sum(ref_area[ref_index[m]] for m in tracks.merged_from[c])
        if c in owner:
            r = owner[c]
            tracks.site_id[c] = ref_ids[r]
            tracks.first[c] = first_by_id.get(ref_ids[r], period_end)
            baseline = ref_area[r] + merged_area
        else:
            parent = max(shares, key=lambda o: (o.shared_ha, ref_ids[o.ref]))
            tracks.split_from[c] = ref_ids[parent.ref]
            tracks.first[c] = first_by_id.get(ref_ids[parent.ref], period_end)
            baseline = sum(o.shared_ha for o in shares) + merged_area
        if stage == "previous":
            tracks.change[c] = polygons.area_ha[c] - baseline
            tracks.status[c] = _growth_status(
                tracks.change[c], baseline, pct=tolerance[0], ha=tolerance[1]
            )
        else:
            tracks.status[c] = "reactivated"
            tracks.change[c] = polygons.area_ha[c]
        tracks.merged_from[c].sort()
        unmatched[c] = False
    log.debug("track_sites: %s stage matched %d polygons", stage, len(touched))


def _name_new_sites(
    current: gpd.GeoDataFrame,
    polygons: _Current,
    tracks: _Tracks,
    *,
    hist: gpd.GeoDataFrame,
    before: gpd.GeoDataFrame,
    period: Period,
) -> None:
    """Give the polygons still without an id one: the id born in an earlier run of this period
    that they overlap most, else a new id (:func:`new_site_id`, suffixed ``-2``, ``-3``... when
    taken)."""
    used = {s for s in tracks.site_id if s is not None}
    fresh = np.flatnonzero([s is None for s in tracks.site_id])
    rerun = hist[hist["period_label"] == period.label]
    born_here = rerun[~rerun["site_id"].isin(set(before["site_id"])) & ~rerun["site_id"].isin(used)]
    reused: dict[int, int] = {}
    if len(fresh) and len(born_here):
        only = np.zeros(len(tracks.site_id), dtype=bool)
        only[fresh] = True
        born_ids = born_here["site_id"].astype(str).to_list()
        overlaps = _overlaps(
            polygons.geoms_ea,
            polygons.classes,
            born_here.geometry.to_crs(EQUAL_AREA_CRS).to_numpy(),
            born_here["alert_class"].astype(str).to_numpy(),
            only=only,
        )
        reused = _assign(overlaps, born_ids)
        for c, r in reused.items():
            tracks.site_id[c] = born_ids[r]
            used.add(born_ids[r])
    for c in (int(i) for i in fresh):
        if c in reused:
            continue
        base = new_site_id(
            polygons.classes[c], first_period=period.label, geometry=current.geometry.iloc[c]
        )
        candidate, k = base, 1
        while candidate in used:
            k += 1
            candidate = f"{base}-{k}"
        tracks.site_id[c] = candidate
        used.add(candidate)


def new_site_id(alert_class: str, *, first_period: str, geometry: shapely.Geometry) -> str:
    """The deterministic id of a site first seen in ``first_period``.

    ``mw-<first letter of the class>-<8 hex>``, the hex being the start of the SHA-256 of the
    class, the period label and the lon/lat centroid rounded to 4 decimals (about 11 m).

    Raises:
        DetectionError: the geometry is empty.
    """
    if geometry is None or geometry.is_empty:
        raise InputFormatError(f"new_site_id: empty geometry for a {alert_class} site")
    centroid = geometry.centroid
    lon = round(centroid.x, 4) + 0.0  # + 0.0 turns -0.0 into 0.0
    lat = round(centroid.y, 4) + 0.0
    key = f"{alert_class}|{first_period}|{lon:.4f}|{lat:.4f}"
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:8]
    return f"mw-{alert_class[:1]}-{digest}"


def append_history(
    history: gpd.GeoDataFrame | None, tracked: gpd.GeoDataFrame, period: Period
) -> gpd.GeoDataFrame:
    """Add this period's tracked sites to the history, replacing rows of an earlier run of it.

    Args:
        history: the history so far (``None`` for none), ``EPSG:4326``.
        tracked: the output of :func:`track_sites` for ``period``; its ``confidence`` and
            ``observed_fraction`` (clear-observation share of each site in the period, from the
            coverage layer) are kept when present, else NaN.
        period: the period of ``tracked``.

    Returns:
        The history with :data:`HISTORY_COLUMNS` (dates as ISO strings), sorted by
        ``period_end`` then ``site_id``.

    Raises:
        DetectionError: ``tracked`` lacks a column or is not ``EPSG:4326``, or holds a site id
            twice.
    """
    needed = (
        "site_id", "alert_class", "status", "area_ha", "area_change_ha", "first_detected",
        "last_detected", "geometry",
    )
    _require_columns(tracked, needed, "append_history: tracked")
    _require_4326(tracked, "append_history: tracked")
    duplicated = tracked["site_id"][tracked["site_id"].duplicated()].astype(str).to_list()
    if duplicated:
        raise InputFormatError(f"append_history: site ids {sorted(set(duplicated))} appear twice")
    rows = gpd.GeoDataFrame(tracked.copy(), geometry="geometry", crs=tracked.crs)
    rows["period_label"] = period.label
    rows["period_start"] = period.start.isoformat()
    rows["period_end"] = period.end.isoformat()
    for col, default in (
        ("confidence", np.nan),
        ("observed_fraction", np.nan),
        ("merged_from", None),
        ("split_from", None),
    ):
        if col not in rows.columns:
            rows[col] = [default] * len(rows) if default is None else default
    rows["merged_from"] = [_as_list(v) for v in rows["merged_from"]]
    rows["split_from"] = [str(v) if present(v) else None for v in rows["split_from"]]
    for col in ("first_detected", "last_detected"):
        rows[col] = [iso_date(v) for v in rows[col]]
    rows = rows[list(HISTORY_COLUMNS)]
    if history is not None and len(history):
        old = _prepare_history(history)
        old = old[old["period_label"] != period.label]
        for col in HISTORY_COLUMNS:
            if col not in old.columns:
                old[col] = None
        if len(old):
            rows = pd.concat([old[list(HISTORY_COLUMNS)], rows], ignore_index=True)
    out = gpd.GeoDataFrame(rows, geometry="geometry", crs="EPSG:4326")
    return out.sort_values(["period_end", "site_id"], kind="stable").reset_index(drop=True)


# ------------------------------------------------------------------------------------ helpers


def _overlaps(
    cur: np.ndarray, cur_cls: np.ndarray, ref: np.ndarray, ref_cls: np.ndarray, *, only: np.ndarray
) -> list[_Overlap]:
    """Positive shared areas (ha) between current polygons (``only`` those) and references."""
    tree = shapely.STRtree(ref)
    candidates = np.flatnonzero(only)
    ci, ri = tree.query(cur[candidates], predicate="intersects")
    ci = candidates[ci]
    same = cur_cls[ci] == ref_cls[ri]
    ci, ri = ci[same], ri[same]
    if len(ci) == 0:
        return []
    shared = shapely.area(shapely.intersection(cur[ci], ref[ri])) / _M2_PER_HA
    return [
        _Overlap(int(c), int(r), float(a)) for c, r, a in zip(ci, ri, shared, strict=True) if a > 0
    ]


def _assign(overlaps: list[_Overlap], ref_ids: list[str]) -> dict[int, int]:
    """Greedy one-to-one assignment, largest shared area first: ``{current: ref}``."""
    owner: dict[int, int] = {}
    taken: set[int] = set()
    for o in sorted(overlaps, key=lambda o: (-o.shared_ha, ref_ids[o.ref], o.current)):
        if o.current in owner or o.ref in taken:
            continue
        owner[o.current] = o.ref
        taken.add(o.ref)
    return owner


def _growth_status(change_ha: float, baseline_ha: float, *, pct: float, ha: float) -> str:
    band = max(baseline_ha * pct / 100.0, ha)
    if change_ha > band:
        return "expanding"
    if change_ha < -band:
        return "receding"
    return "stable"


def _with_track_columns(
    out: gpd.GeoDataFrame, tracks: _Tracks, period_end: str
) -> gpd.GeoDataFrame:
    out["site_id"] = pd.Series(tracks.site_id, index=out.index, dtype=object)
    out["status"] = pd.Series(tracks.status, index=out.index, dtype=object)
    out["area_change_ha"] = tracks.change
    out["first_detected"] = pd.Series(tracks.first, index=out.index, dtype=object)
    out["last_detected"] = pd.Series([period_end] * len(out), index=out.index, dtype=object)
    out["merged_from"] = pd.Series(tracks.merged_from, index=out.index, dtype=object)
    out["split_from"] = pd.Series(tracks.split_from, index=out.index, dtype=object)
    return out


def _prepare_history(history: gpd.GeoDataFrame | None) -> gpd.GeoDataFrame:
    needed = ("site_id", "alert_class", "period_label", "period_end", "geometry", "area_ha")
    if history is None or len(history) == 0:
        return _empty_frame(list(needed), CRS.from_epsg(4326))
    _require_columns(history, needed, "track_sites: history")
    _require_4326(history, "track_sites: history")
    hist = history.copy()
    hist["site_id"] = hist["site_id"].astype(str)
    hist["period_label"] = hist["period_label"].astype(str)
    hist["period_end"] = [iso_date(v) for v in hist["period_end"]]
    if "first_detected" in hist.columns:
        hist["first_detected"] = [
            iso_date(v) if present(v) else None for v in hist["first_detected"]
        ]
    twice = hist[hist.duplicated(["site_id", "period_label"])]
    if len(twice):
        first = twice.iloc[0]
        raise InputFormatError(
            f"track_sites: history holds site {first['site_id']} twice in period "
            f"{first['period_label']}; the history must have one row per site and period"
        )
    return hist


def _first_detected(hist: gpd.GeoDataFrame) -> dict[str, str]:
    """Earliest detection date per site id: min of ``first_detected`` and ``period_end``."""
    out: dict[str, str] = {}
    has_first = "first_detected" in hist.columns
    for row in hist.itertuples(index=False):
        sid = str(row.site_id)
        dates = [str(row.period_end)]
        if has_first and present(row.first_detected):
            dates.append(str(row.first_detected))
        out[sid] = min([*dates, out.get(sid, dates[0])])
    return out


def _area_ha(geoms: gpd.GeoSeries) -> np.ndarray:
    return geoms.to_crs(EQUAL_AREA_CRS).area.to_numpy() / _M2_PER_HA


def _weighted_mean(v: np.ndarray, w: np.ndarray) -> float:
    ok = np.isfinite(v) & np.isfinite(w) & (w > 0)
    if not ok.any():
        finite = v[np.isfinite(v)]
        return float(finite.mean()) if finite.size else float("nan")
    return float(np.average(v[ok], weights=w[ok]))


def _require_columns(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputFormatError(
            f"{what}: missing columns {missing}; has {[str(c) for c in frame.columns]}"
        )


def _require_4326(frame: gpd.GeoDataFrame, what: str) -> None:
    if frame.crs is None or CRS.from_user_input(frame.crs) != CRS.from_epsg(4326):
        got = "no CRS" if frame.crs is None else CRS.from_user_input(frame.crs).to_string()
        raise InputFormatError(f"{what}: CRS is {got}; expected EPSG:4326 (use .to_crs(4326))")


def _check_classes(values: pd.Series, what: str) -> None:
    unknown = sorted({str(v) for v in values} - set(ALERT_CLASSES))
    if unknown:
        raise InputFormatError(
            f"{what}: unknown alert_class {unknown}; expected one of {ALERT_CLASSES}"
        )


def _empty_frame(columns: list[str], crs: CRS) -> gpd.GeoDataFrame:
    data = {c: pd.Series([], dtype=object) for c in columns if c != "geometry"}
    return gpd.GeoDataFrame(data, geometry=gpd.GeoSeries([], crs=crs), crs=crs)


def _as_list(value: Any) -> list[str]:
    """A list of strings from a list, tuple, array, JSON list string, or missing value."""
    if isinstance(value, (list, tuple, np.ndarray, pd.Series)):
        return [str(v) for v in value]
    if not present(value):
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InputFormatError(f"not a JSON list: {value!r}: {exc}") from exc
            return [str(v) for v in parsed]
        return [] if not text else [text]
    return [str(value)]
