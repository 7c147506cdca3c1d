"""Per-reserve report of an output folder: the figures a ministry, a prosecutor or a gold-supply
auditor reads, computed from an agency's own scans.

:func:`build_report` reads the run store (``runs.sqlite``: runs, site history) and the
``aois`` and ``coverage`` layers of ``alerts.gpkg`` (:mod:`._read`) and computes the tables;
:func:`write_report` (:mod:`._write`) writes them with the figures (:mod:`._figures`), the page
(:mod:`._html`) and the PDF (:mod:`._pdf`):

* ``report.html``: one self-contained page (figures inlined as PNG, no script, no external
  reference), readable offline;
* ``reserve_periods.csv``: per reserve (and ``all``), period and alert class: hectares detected
  inside the reserve and in its buffer zone, sites, new vs expanding sites, and how much of the
  reserve was observed;
* ``top_sites.csv``: the sites that grew most over the periods reported;
* ``figures/*.png``: the figures, for slides;
* ``report.pdf`` on request: the same figures and tables, for e-mail and print.

Rules (``docs/guide-operator.md``):

* A site counts for the reserve :func:`detection.sites.attribute_aois` gives it (the one it
  shares most area with; else the nearest within the scan's buffer). The reserve's hectares are
  the parts of its sites inside it (``aoi_areas``; for "all", inside any reserve), the
  buffer-zone hectares the rest of them: a site crossing the boundary is split, never counted
  inside whole. Site counts and ``expanding_growth_ha`` go by the attribution.
* Observation per reserve and period, from the ``coverage`` layer (chip-level shares weighted by
  each chip's area inside the reserve): ``imagery_share`` is the share of the reserve covered by
  chips that had imagery; ``observed_share`` the clear (cloud-free) share of that imaged area.
  A period with nothing observed is ``not_observed``: its hectares are left empty, never 0.
  Below :data:`LOW_OBSERVED` the hectares are a lower bound, and the figures hatch them.
* The first period in the store has no previous period: its sites are all ``new`` to the
  scanner, not to the ground, so it is the ``baseline`` and has no new/expanding figures.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely

from aoi.geometry import EQUAL_AREA_CRS
from detection.errors import ConfigError, InputFormatError, InputNotFoundError, RunStateError
from detection.report._read import (
    _buffer_m,
    _normalise_aois,
    _periods,
    _read_layer,
    _read_run_json,
    _read_store,
    _title,
)
from detection.sites import (
    LEGAL_STATUSES,
    LegalConfig,
    area_inside_ha,
    assign_legal_status,
    attribute_aois,
)
from tiles.periods import Period

log = logging.getLogger(__name__)


#: ``aoi_id`` of the rows that add up every reserve.
ALL_ID = "all"

#: Below this clear share of the imaged area a period's hectares are a lower bound (hatched).
LOW_OBSERVED = 0.5

#: Columns of ``legal_status.csv``: hectares by legal status per reserve, period and class.
LEGAL_COLUMNS: tuple[str, ...] = (
    "aoi_id", "aoi_name", "period", "period_start", "period_end", "alert_class", "legal_status",
    "sites", "area_ha",
)

#: Columns of ``reserve_periods.csv``.
PERIOD_COLUMNS: tuple[str, ...] = (
    "aoi_id", "aoi_name", "period", "period_start", "period_end", "comparison", "observation",
    "observed_share", "imagery_share", "observed_ha", "alert_class", "area_ha", "sites",
    "new_sites", "new_ha", "expanding_sites", "expanding_growth_ha", "reactivated_sites",
    "stable_sites", "receding_sites", "buffer_area_ha", "buffer_sites",
)

#: Columns of ``top_sites.csv``.
TOP_COLUMNS: tuple[str, ...] = (
    "rank", "site_id", "alert_class", "aoi_id", "aoi_name", "aoi_relation", "growth_ha",
    "area_start_ha", "area_ha", "first_period", "last_period", "status", "observed_fraction", "lon",
    "lat",
)

CLASSES: tuple[str, ...] = ("mining", "deforestation")
_CLASS_LABEL = {"mining": "mining", "deforestation": "forest clearing"}
_M2_PER_HA = 10_000.0


# ------------------------------------------------------------------------------------ tables


@dataclass(frozen=True)
class Reserve:
    """One reserve (AOI) of the run, or ``all`` of them."""

    aoi_id: str
    aoi_name: str
    aoi_kind: str
    area_ha: float


@dataclass
class Report:
    """Everything the report shows, computed from an output folder.

    Attributes:
        out_dir: the scan's output folder.
        title: the report's title (the scan's name).
        periods: the periods reported, oldest first.
        baseline: label of the first period in the store (no previous period), if reported.
        reserves: the reserves, in the order of the ``aois`` layer, then ``all`` last.
        aois: the reserves' outlines (``EPSG:4326``).
        footprint: union of the chips that had imagery in any period reported (``EPSG:4326``).
        sites: history rows of the periods reported, with ``aoi_id``, ``aoi_name``,
            ``aoi_relation`` (one row per site and period; ``EPSG:4326``).
        by_period: the ``reserve_periods.csv`` table.
        top_sites: the ``top_sites.csv`` table.
        growth: every site seen in the periods reported with the area it gained over them.
        runs: the runs of the store, oldest first (``run_id``, ``started_at``, ``outcome``...).
        buffer_m: the scan's AOI buffer.
        failed_chips: chips that failed, per period label.
        outside_sites: sites (rows) farther than ``buffer_m`` from every reserve (not counted).
    """

    out_dir: Path
    title: str
    periods: list[Period]
    baseline: str | None
    reserves: list[Reserve]
    aois: gpd.GeoDataFrame
    footprint: Any
    sites: gpd.GeoDataFrame
    by_period: pd.DataFrame
    top_sites: pd.DataFrame
    growth: pd.DataFrame
    runs: list[dict[str, Any]]
    buffer_m: float
    failed_chips: dict[str, int] = field(default_factory=dict)
    outside_sites: int = 0
    legal_by_period: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=list(LEGAL_COLUMNS))
    )

    @property
    def period_range(self) -> str:
        return f"{self.periods[0].label}–{self.periods[-1].label}"


def build_report(out_dir: Path, *, since: dt.date | None = None, top_n: int = 10) -> Report:
    """Read an output folder's run store and GeoPackage and compute the report's tables.

    Args:
        out_dir: the output folder of a scan (holding ``runs.sqlite`` and ``alerts.gpkg``).
        since: report only the periods ending on or after this day (default: every period).
        top_n: how many sites the top-growth table keeps.

    Returns:
        The report's tables.

    Raises:
        ConfigError: ``top_n`` is below 1, or no period ends on or after ``since``.
        InputNotFoundError: ``out_dir`` holds no run store or no ``alerts.gpkg``.
        RunStateError: the store holds no finished run.
        InputFormatError: the store or ``alerts.gpkg`` is not what a scan writes (not a run
            store, no ``aois`` or ``coverage`` layer, no period).
        InputReadError: the store or a layer of ``alerts.gpkg`` cannot be read.
    """
    if top_n < 1:
        raise ConfigError(f"top_n {top_n!r}: expected at least 1")
    out_dir = Path(out_dir)
    store = out_dir / "runs.sqlite"
    runs, history = _read_store(out_dir)
    if not any(r["outcome"] != "running" for r in runs):
        raise RunStateError(
            f"{store}: no finished run yet; run a scan into {str(out_dir)!r} first"
        )
    gpkg = out_dir / "alerts.gpkg"
    if not gpkg.is_file():
        raise InputNotFoundError(
            f"{str(out_dir)!r} holds no alerts.gpkg (its 'aois' and 'coverage' layers are "
            "needed); rerun the scan into this folder"
        )
    aois = _read_layer(gpkg, "aois")
    coverage = _read_layer(gpkg, "coverage")
    run_json = _read_run_json(out_dir)
    buffer_m = _buffer_m(run_json)

    periods = _periods(history, coverage)
    if not periods:
        raise InputFormatError(
            f"{str(out_dir)!r}: the run store and coverage layer name no period"
        )
    first_scanned = periods[0].label
    if since is not None:
        kept = [p for p in periods if p.end >= since]
        if not kept:
            raise ConfigError(
                f"--since {since.isoformat()}: no period ends on or after it; the store holds "
                f"{periods[0].label}..{periods[-1].label} (ending {periods[-1].end.isoformat()})"
            )
        periods = kept
    labels = [p.label for p in periods]
    baseline = first_scanned if first_scanned in labels else None
    log.info("report of %s: %d period(s) %s..%s", out_dir, len(periods), labels[0], labels[-1])

    aois = _normalise_aois(aois, gpkg)
    reserves = _reserves(aois)
    sites_all, outside = _attribute(history, aois, buffer_m=buffer_m)
    sites = sites_all[sites_all["period_label"].isin(labels)].reset_index(drop=True)
    observation = _observation(coverage, aois, labels)
    by_period = _by_period(sites, observation, reserves, periods, baseline=baseline)
    growth = _site_growth(sites_all, periods, baseline=baseline)
    top = _top_sites(growth, top_n=top_n)
    cov_in = coverage[coverage["period"].isin(labels)]
    imaged = cov_in[cov_in["status"] != "no_imagery"]
    footprint = shapely.union_all(imaged.geometry.to_numpy()) if len(imaged) else None
    failed = cov_in[cov_in["status"] == "failed"].groupby("period").size()
    title = _title(runs, run_json)
    return Report(
        out_dir=out_dir,
        title=title,
        periods=periods,
        baseline=baseline,
        reserves=reserves,
        aois=aois,
        footprint=footprint,
        sites=sites,
        by_period=by_period,
        top_sites=top,
        growth=growth,
        runs=runs,
        buffer_m=buffer_m,
        failed_chips={str(k): int(v) for k, v in failed.items()},
        outside_sites=int(outside[outside["period_label"].isin(labels)].shape[0]),
        legal_by_period=_legal_by_period(sites, aois, gpkg, run_json, reserves, periods),
    )


def _reserves(aois: gpd.GeoDataFrame) -> list[Reserve]:
    areas = aois.to_crs(EQUAL_AREA_CRS).area.to_numpy() / _M2_PER_HA
    out = [
        Reserve(str(i), str(n), str(k), float(a))
        for i, n, k, a in zip(
            aois["aoi_id"], aois["aoi_name"], aois["aoi_kind"], areas, strict=True
        )
    ]
    union = shapely.union_all(aois.to_crs(EQUAL_AREA_CRS).geometry.to_numpy())
    out.append(Reserve(ALL_ID, "all reserves", "all", float(union.area / _M2_PER_HA)))
    return out


def _attribute(
    history: gpd.GeoDataFrame, aois: gpd.GeoDataFrame, *, buffer_m: float
) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """History rows with their reserve; and the rows farther than ``buffer_m`` from every one."""
    hist = history.reset_index(drop=True)
    if hist.empty:
        empty = hist.copy()
        for col in ("aoi_id", "aoi_name", "aoi_relation"):
            empty[col] = pd.Series(dtype=object)
        for col in ("aoi_area_ha", "inside_all_ha"):
            empty[col] = pd.Series(dtype=float)
        return empty, empty
    attributed = attribute_aois(hist, aois, buffer_m=buffer_m)
    # The part of each site inside any reserve (for "all"; ``aoi_area_ha`` is the part inside its
    # own): a site crossing a boundary counts inside only with its part inside.
    attributed["inside_all_ha"] = area_inside_ha(
        attributed.geometry.to_numpy(),
        shapely.union_all(aois.geometry.to_numpy()),
        attributed["area_ha"].to_numpy(dtype=float),
    )
    outside = hist.loc[~hist.index.isin(attributed.index)]
    if len(outside):
        log.info(
            "%d site-period row(s) lie farther than %.0f m from every reserve; not counted",
            len(outside),
            buffer_m,
        )
    return attributed.reset_index(drop=True), outside


def _observation(
    coverage: gpd.GeoDataFrame, aois: gpd.GeoDataFrame, labels: Sequence[str]
) -> pd.DataFrame:
    """Per reserve (and ``all``) and period: imaged, observed and reserve hectares."""
    cov = coverage[coverage["period"].isin(labels)]
    tiles = cov.drop_duplicates("tile_id")[["tile_id", "geometry"]]
    tiles_ea = tiles.to_crs(EQUAL_AREA_CRS)
    tile_geoms = tiles_ea.geometry.to_numpy()
    tile_ids = tiles_ea["tile_id"].astype(str).to_numpy()
    aois_ea = aois.to_crs(EQUAL_AREA_CRS)
    targets: list[tuple[str, Any]] = list(
        zip(aois_ea["aoi_id"].astype(str), aois_ea.geometry.to_numpy(), strict=True)
    )
    targets.append((ALL_ID, shapely.union_all(aois_ea.geometry.to_numpy())))
    tree = shapely.STRtree(tile_geoms)
    # share of each tile's area inside each reserve: chip area inside, in hectares
    inside_ha: dict[str, dict[str, float]] = {}
    for aoi_id, geom in targets:
        idx = tree.query(geom, predicate="intersects")
        shapely.prepare(geom)
        within = shapely.contains_properly(geom, tile_geoms[idx])
        area = shapely.area(tile_geoms[idx])
        part = idx[~within]
        if len(part):
            area[~within] = shapely.area(shapely.intersection(tile_geoms[part], geom))
        inside_ha[aoi_id] = {
            str(t): float(a) / _M2_PER_HA for t, a in zip(tile_ids[idx], area, strict=True) if a > 0
        }
        shapely.destroy_prepared(geom)
    rows = []
    status = cov["status"].astype(str).to_numpy()
    frac = pd.to_numeric(cov["observed_fraction"], errors="coerce").fillna(0.0).to_numpy()
    periods = cov["period"].astype(str).to_numpy()
    tids = cov["tile_id"].astype(str).to_numpy()
    for aoi_id, weights in inside_ha.items():
        w = np.array([weights.get(t, 0.0) for t in tids])
        for label in labels:
            sel = (periods == label) & (w > 0)
            imaged = sel & (status != "no_imagery")
            imaged_ha = float(w[imaged].sum())
            observed_ha = float((w[imaged] * np.clip(frac[imaged], 0, 1)).sum())
            rows.append(
                {
                    "aoi_id": aoi_id,
                    "period": label,
                    "imaged_ha": imaged_ha,
                    "observed_ha": observed_ha,
                }
            )
    return pd.DataFrame(rows, columns=["aoi_id", "period", "imaged_ha", "observed_ha"])


def _by_period(
    sites: gpd.GeoDataFrame,
    observation: pd.DataFrame,
    reserves: list[Reserve],
    periods: list[Period],
    *,
    baseline: str | None,
) -> pd.DataFrame:
    obs: dict[tuple[str, str], tuple[float, float]] = {
        (str(a), str(p)): (float(i), float(o))
        for a, p, i, o in zip(
            observation["aoi_id"],
            observation["period"],
            observation["imaged_ha"],
            observation["observed_ha"],
            strict=True,
        )
    }
    rows: list[dict[str, Any]] = []
    for i, period in enumerate(periods):
        if period.label == baseline:
            comparison = "baseline"
        elif i:
            comparison = f"vs {periods[i - 1].label}"
        else:
            comparison = "vs previous"
        in_period = sites[sites["period_label"] == period.label]
        for res in reserves:
            imaged_ha, observed_ha = obs.get((res.aoi_id, period.label), (0.0, 0.0))
            observed_share = observed_ha / imaged_ha if imaged_ha > 0 else 0.0
            imagery_share = min(1.0, imaged_ha / res.area_ha) if res.area_ha > 0 else 0.0
            if observed_ha <= 0:
                observation_state = "not_observed"
            elif observed_share >= 0.99 and imagery_share >= 0.99:
                observation_state = "observed"
            else:
                observation_state = "partly_observed"
            mine = (
                in_period if res.aoi_id == ALL_ID else in_period[in_period["aoi_id"] == res.aoi_id]
            )
            part = "inside_all_ha" if res.aoi_id == ALL_ID else "aoi_area_ha"
            for cls in CLASSES:
                of_cls = mine[mine["alert_class"] == cls]
                inside = of_cls[of_cls["aoi_relation"] == "inside"]
                buffer = of_cls[of_cls["aoi_relation"] == "buffer"]
                inside_ha = of_cls[part].astype(float)
                new_ha = inside_ha[of_cls["status"] == "new"].sum()
                outside_ha = (of_cls["area_ha"].astype(float) - inside_ha).clip(lower=0).sum()
                row: dict[str, Any] = {
                    "aoi_id": res.aoi_id,
                    "aoi_name": res.aoi_name,
                    "period": period.label,
                    "period_start": period.start.isoformat(),
                    "period_end": period.end.isoformat(),
                    "comparison": comparison,
                    "observation": observation_state,
                    "observed_share": round(observed_share, 4),
                    "imagery_share": round(imagery_share, 4),
                    "observed_ha": round(observed_ha, 2),
                    "alert_class": cls,
                }
                unseen = observation_state == "not_observed" and inside.empty and buffer.empty
                counts = _status_counts(inside)
                no_change = comparison == "baseline" or unseen
                row |= {
                    "area_ha": np.nan if unseen else round(float(inside_ha.sum()), 4),
                    "sites": np.nan if unseen else len(inside),
                    "new_sites": np.nan if no_change else counts["new"],
                    "new_ha": np.nan if no_change else round(float(new_ha), 4),
                    "expanding_sites": np.nan if no_change else counts["expanding"],
                    "expanding_growth_ha": np.nan
                    if no_change
                    else round(
                        float(inside.loc[inside["status"] == "expanding", "area_change_ha"].sum()),
                        4,
                    ),
                    "reactivated_sites": np.nan if no_change else counts["reactivated"],
                    "stable_sites": np.nan if no_change else counts["stable"],
                    "receding_sites": np.nan if no_change else counts["receding"],
                    "buffer_area_ha": np.nan if unseen else round(float(outside_ha), 4),
                    "buffer_sites": np.nan if unseen else len(buffer),
                }
                rows.append(row)
    table = pd.DataFrame(rows, columns=list(PERIOD_COLUMNS))
    for col in (
        "sites", "new_sites", "expanding_sites", "reactivated_sites", "stable_sites",
        "receding_sites", "buffer_sites",
    ):
        table[col] = table[col].astype("Int64")
    return table


def _legal_by_period(
    sites: gpd.GeoDataFrame,
    aois: gpd.GeoDataFrame,
    gpkg: Path,
    run_json: dict[str, Any],
    reserves: list[Reserve],
    periods: list[Period],
) -> pd.DataFrame:
    """Hectares and sites by legal status per reserve (inside and buffer), period and class.

    Each site-period row is judged (:func:`detection.sites.assign_legal_status`) against the
    ``titles`` layer of ``alerts.gpkg`` (none: ``unknown`` outside closed areas) with the scan's
    ``legal`` settings from ``run.json`` (defaults when it records none), for titles valid at the
    end of that period.
    """
    settings = run_json.get("config", {}).get("legal") if isinstance(run_json, dict) else None
    settings = dict(settings) if isinstance(settings, dict) else {}
    settings.pop("titles", None)
    try:
        config = LegalConfig.model_validate(settings)
    except ValueError as exc:
        log.warning("run.json: legal settings %s unreadable (%s); defaults used", settings, exc)
        config = LegalConfig()
    titles = None
    if {str(name) for name, _ in pyogrio.list_layers(gpkg)} >= {"titles"}:
        titles = _read_layer(gpkg, "titles")
        for column in ("valid_from", "valid_to", "holder", "substance", "use", "state"):
            if column in titles.columns:
                titles[column] = titles[column].astype(object).where(titles[column].notna(), None)
    rows: list[dict[str, Any]] = []
    judged = (
        assign_legal_status(sites, aois=aois, titles=titles, config=config)
        if len(sites)
        else sites.assign(legal_status=pd.Series(dtype=object))
    )
    for period in periods:
        in_period = judged[judged["period_label"] == period.label]
        for res in reserves:
            mine = (
                in_period if res.aoi_id == ALL_ID else in_period[in_period["aoi_id"] == res.aoi_id]
            )
            for cls in CLASSES:
                of_cls = mine[mine["alert_class"] == cls]
                for status in LEGAL_STATUSES:
                    chosen = of_cls[of_cls["legal_status"] == status]
                    rows.append(
                        {
                            "aoi_id": res.aoi_id,
                            "aoi_name": res.aoi_name,
                            "period": period.label,
                            "period_start": period.start.isoformat(),
                            "period_end": period.end.isoformat(),
                            "alert_class": cls,
                            "legal_status": status,
                            "sites": len(chosen),
                            "area_ha": round(float(chosen["area_ha"].sum()), 4),
                        }
                    )
    return pd.DataFrame(rows, columns=list(LEGAL_COLUMNS))


def _status_counts(frame: pd.DataFrame) -> dict[str, int]:
    counts = frame["status"].value_counts()
    return {
        s: int(counts.get(s, 0)) for s in ("new", "expanding", "stable", "reactivated", "receding")
    }


def _site_growth(
    history: gpd.GeoDataFrame, periods: list[Period], *, baseline: str | None
) -> pd.DataFrame:
    """Every site seen in the periods reported, with the area it gained over them: its area at
    its last detection in the window minus its area at the start of the window. The start is
    its last detection before the window; else, for a site seen in the ``baseline`` period
    (the first period scanned, when the window starts there), its area then; else 0 (it
    appeared in the window). Sorted by gain, largest first."""
    cols = [c for c in TOP_COLUMNS if c != "rank"]
    if history.empty:
        return pd.DataFrame(columns=cols)
    labels = {p.label for p in periods}
    start = periods[0].start.isoformat()
    hist = history.sort_values(["period_end", "site_id"], kind="stable")
    rows = []
    for site_id, group in hist.groupby("site_id", sort=True):
        in_window = group[group["period_label"].isin(labels)]
        if in_window.empty:
            continue
        before = group[group["period_end"].astype(str) < start]
        last = in_window.iloc[-1]
        if len(before):
            area_before = float(before["area_ha"].iloc[-1])
        elif in_window["period_label"].iloc[0] == baseline:
            area_before = float(in_window["area_ha"].iloc[0])
        else:
            area_before = 0.0
        centroid = shapely.centroid(last.geometry)
        rows.append(
            {
                "site_id": str(site_id),
                "alert_class": str(last["alert_class"]),
                "aoi_id": str(last["aoi_id"]),
                "aoi_name": str(last["aoi_name"]),
                "aoi_relation": str(last["aoi_relation"]),
                "growth_ha": round(float(last["area_ha"]) - area_before, 4),
                "area_start_ha": round(area_before, 4),
                "area_ha": round(float(last["area_ha"]), 4),
                "first_period": str(in_window["period_label"].iloc[0]),
                "last_period": str(last["period_label"]),
                "status": str(last["status"]),
                "observed_fraction": _json_number(last["observed_fraction"]),
                "lon": round(float(shapely.get_x(centroid)), 5),
                "lat": round(float(shapely.get_y(centroid)), 5),
            }
        )
    if not rows:
        return pd.DataFrame(columns=cols)
    table = pd.DataFrame(rows, columns=cols)
    return table.sort_values(
        ["growth_ha", "site_id"], ascending=[False, True], kind="stable"
    ).reset_index(drop=True)


def _top_sites(growth: pd.DataFrame, *, top_n: int) -> pd.DataFrame:
    """The ``top_n`` sites that gained most area (gains only), ranked."""
    table = growth[growth["growth_ha"] > 0].head(top_n).reset_index(drop=True)
    table.insert(0, "rank", range(1, len(table) + 1))
    return table[list(TOP_COLUMNS)]


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of ``frame`` as plain dicts (column -> value)."""
    return [{str(k): v for k, v in row.items()} for row in frame.to_dict("records")]


def _json_number(value: Any) -> float | None:
    try:
        num = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(num) else round(num, 4)
