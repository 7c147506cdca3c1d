"""Per-reserve report of an output folder: the figures a ministry, a prosecutor or a gold-supply
auditor reads, computed from an agency's own scans.

:func:`build_report` reads the run store (``runs.sqlite``: runs, site history) and the
``aois`` and ``coverage`` layers of ``alerts.gpkg``; :func:`write_report` writes

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

import base64
import datetime as dt
import html
import io
import json
import logging
import math
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from matplotlib.axes import Axes
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from aoi.geometry import EQUAL_AREA_CRS
from detection.errors import DetectionError, OutputExistsError
from detection.sites import (
    LEGAL_STATUSES,
    LegalConfig,
    area_inside_ha,
    assign_legal_status,
    attribute_aois,
)
from tiles.files import atomic_path, write_text_atomic
from tiles.periods import Period

log = logging.getLogger(__name__)


#: ``aoi_id`` of the rows that add up every reserve.
ALL_ID = "all"

#: Below this clear share of the imaged area a period's hectares are a lower bound (hatched).
LOW_OBSERVED = 0.5

#: Buffer (m) used when ``run.json`` does not record the scan's ``aoi.buffer_m``.
DEFAULT_BUFFER_M = 5000.0

#: Files :func:`write_report` may write into the report folder (``figures/`` too).
REPORT_FILES = (
    "report.html",
    "reserve_periods.csv",
    "top_sites.csv",
    "legal_status.csv",
    "report.pdf",
)

#: Columns of ``legal_status.csv``: hectares by legal status per reserve, period and class.
LEGAL_COLUMNS: tuple[str, ...] = (
    "aoi_id",
    "aoi_name",
    "period",
    "period_start",
    "period_end",
    "alert_class",
    "legal_status",
    "sites",
    "area_ha",
)

#: Columns of ``reserve_periods.csv``.
PERIOD_COLUMNS: tuple[str, ...] = (
    "aoi_id",
    "aoi_name",
    "period",
    "period_start",
    "period_end",
    "comparison",
    "observation",
    "observed_share",
    "imagery_share",
    "observed_ha",
    "alert_class",
    "area_ha",
    "sites",
    "new_sites",
    "new_ha",
    "expanding_sites",
    "expanding_growth_ha",
    "reactivated_sites",
    "stable_sites",
    "receding_sites",
    "buffer_area_ha",
    "buffer_sites",
)

#: Columns of ``top_sites.csv``.
TOP_COLUMNS: tuple[str, ...] = (
    "rank",
    "site_id",
    "alert_class",
    "aoi_id",
    "aoi_name",
    "aoi_relation",
    "growth_ha",
    "area_start_ha",
    "area_ha",
    "first_period",
    "last_period",
    "status",
    "observed_fraction",
    "lon",
    "lat",
)

CLASSES: tuple[str, ...] = ("mining", "deforestation")
_CLASS_LABEL = {"mining": "mining", "deforestation": "forest clearing"}
_COLOURS = {
    "mining": "#c2570c",
    "mining_light": "#f4a259",
    "deforestation": "#2a7d3a",
    "deforestation_light": "#8fcf8a",
    "observed": "#4a78a8",
    "low": "#b8c7d9",
    "reserve": "#333333",
    "imagery": "#dbe7f3",
}
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


@dataclass(frozen=True)
class ReportFigure:
    """A rendered figure: its file stem, title (also the image's alt text), caption and PNG."""

    name: str
    title: str
    caption: str
    png: bytes
    figure: Figure


@dataclass
class ReportResult:
    """What :func:`write_report` wrote."""

    report_dir: Path
    files: list[Path]
    report: Report
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """Machine-readable summary (the CLI's ``--json``)."""
        rep = self.report
        latest = rep.periods[-1].label
        rows = rep.by_period[rep.by_period["period"] == latest]
        per_reserve = []
        for res in rep.reserves:
            sub = rows[rows["aoi_id"] == res.aoi_id]
            entry: dict[str, Any] = {"aoi_id": res.aoi_id, "aoi_name": res.aoi_name}
            for cls in CLASSES:
                val = sub.loc[sub["alert_class"] == cls, "area_ha"]
                entry[f"{cls}_ha"] = _json_number(val.iloc[0]) if len(val) else None
            obs = sub["observed_share"]
            entry["observed_share"] = _json_number(obs.iloc[0]) if len(obs) else None
            entry["observation"] = str(sub["observation"].iloc[0]) if len(sub) else None
            per_reserve.append(entry)
        return {
            "report_dir": str(self.report_dir),
            "files": [str(p) for p in self.files],
            "periods": [p.label for p in rep.periods],
            "reserves": len(rep.reserves) - 1,
            "sites": int(rep.sites["site_id"].nunique()) if len(rep.sites) else 0,
            "latest_period": latest,
            "latest": per_reserve,
            "seconds": round(self.seconds, 2),
        }


def build_report(out_dir: Path, *, since: dt.date | None = None, top_n: int = 10) -> Report:
    """Read an output folder's run store and GeoPackage and compute the report's tables.

    Args:
        out_dir: the output folder of a scan (holding ``runs.sqlite`` and ``alerts.gpkg``).
        since: report only the periods ending on or after this day (default: every period).
        top_n: how many sites the top-growth table keeps.

    Returns:
        The report's tables.

    Raises:
        DetectionError: ``out_dir`` holds no run store, no finished run, no ``alerts.gpkg`` (or
            it lacks the ``aois`` or ``coverage`` layer), the store cannot be read, or no period
            ends on or after ``since``.
    """
    if top_n < 1:
        raise DetectionError(f"top_n {top_n!r}: expected at least 1")
    out_dir = Path(out_dir)
    store = out_dir / "runs.sqlite"
    if not store.is_file():
        raise DetectionError(
            f"{str(out_dir)!r} holds no run store (runs.sqlite); pass the output folder of a "
            "scan ('minewatch scan CONFIG --out OUT')"
        )
    runs, history = _read_store(store)
    if not any(r["outcome"] != "running" for r in runs):
        raise DetectionError(
            f"{store}: no finished run yet; run a scan into {str(out_dir)!r} first"
        )
    gpkg = out_dir / "alerts.gpkg"
    if not gpkg.is_file():
        raise DetectionError(
            f"{str(out_dir)!r} holds no alerts.gpkg (its 'aois' and 'coverage' layers are "
            "needed); rerun the scan into this folder"
        )
    aois = _read_layer(gpkg, "aois")
    coverage = _read_layer(gpkg, "coverage")
    run_json = _read_run_json(out_dir)
    buffer_m = _buffer_m(run_json)

    periods = _periods(history, coverage)
    if not periods:
        raise DetectionError(f"{str(out_dir)!r}: the run store and coverage layer name no period")
    first_scanned = periods[0].label
    if since is not None:
        kept = [p for p in periods if p.end >= since]
        if not kept:
            raise DetectionError(
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


def _read_store(path: Path) -> tuple[list[dict[str, Any]], gpd.GeoDataFrame]:
    """Runs and site history of a run store, read-only (the store is never modified)."""
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as exc:  # pragma: no cover - connect rarely fails before a query
        raise DetectionError(f"{path}: cannot open the run store: {exc}") from exc
    con.row_factory = sqlite3.Row
    try:
        runs = [
            dict(r)
            for r in con.execute(
                "SELECT r.run_id, r.started_at, r.ended_at, r.outcome, r.config_name,"
                " r.period_start, r.period_end,"
                " SUM(u.reused = 0) AS units_computed, SUM(u.reused = 1) AS units_reused,"
                " SUM(u.status = 'failed') AS units_failed"
                " FROM runs r LEFT JOIN units u ON u.run_id = r.run_id"
                " GROUP BY r.run_id ORDER BY r.started_at, r.rowid"
            )
        ]
        records = [row[0] for row in con.execute("SELECT record FROM site_history")]
    except sqlite3.Error as exc:
        raise DetectionError(
            f"{path}: not a readable minewatch run store ({exc}); pass the output folder of a scan"
        ) from exc
    finally:
        con.close()
    features = [json.loads(r) for r in records]
    if features:
        history = gpd.GeoDataFrame.from_features(features, crs="EPSG:4326")
    else:
        history = gpd.GeoDataFrame(
            {c: pd.Series(dtype=object) for c in _HISTORY_NEEDED},
            geometry=gpd.GeoSeries([], crs="EPSG:4326"),
            crs="EPSG:4326",
        )
    missing = [c for c in _HISTORY_NEEDED if c not in history.columns]
    if missing:
        raise DetectionError(
            f"{path}: site history records lack {missing}; rerun the scan with this minewatch"
        )
    history["area_ha"] = pd.to_numeric(history["area_ha"], errors="coerce").astype(float)
    history["area_change_ha"] = pd.to_numeric(history["area_change_ha"], errors="coerce").astype(
        float
    )
    history["observed_fraction"] = pd.to_numeric(
        history["observed_fraction"], errors="coerce"
    ).astype(float)
    return runs, history


_HISTORY_NEEDED = (
    "site_id",
    "alert_class",
    "period_label",
    "period_start",
    "period_end",
    "status",
    "area_ha",
    "area_change_ha",
    "observed_fraction",
)


def _read_layer(gpkg: Path, layer: str) -> gpd.GeoDataFrame:
    try:
        layers = {str(name) for name, _ in pyogrio.list_layers(gpkg)}
        if layer not in layers:
            raise DetectionError(
                f"{gpkg}: no layer {layer!r} (has {sorted(layers)}); rerun the scan with this "
                "minewatch"
            )
        frame = pyogrio.read_dataframe(gpkg, layer=layer)
    except DetectionError:
        raise
    except Exception as exc:  # GDAL errors come in several classes
        raise DetectionError(f"{gpkg}: layer {layer!r}: {exc}") from exc
    if frame.crs is None:
        raise DetectionError(f"{gpkg}: layer {layer!r} has no CRS; expected EPSG:4326")
    return frame.to_crs(4326) if frame.crs.to_epsg() != 4326 else frame


def _read_run_json(out_dir: Path) -> dict[str, Any]:
    path = out_dir / "run.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("%s cannot be read (%s); the report does without it", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def _buffer_m(run_json: dict[str, Any]) -> float:
    try:
        return float(run_json["config"]["aoi"]["buffer_m"])
    except (KeyError, TypeError, ValueError):
        log.warning(
            "run.json does not record the scan's aoi.buffer_m; sites within %.0f m of a reserve "
            "count as its buffer zone",
            DEFAULT_BUFFER_M,
        )
        return DEFAULT_BUFFER_M


def _title(runs: list[dict[str, Any]], run_json: dict[str, Any]) -> str:
    name = (
        run_json.get("config", {}).get("name") if isinstance(run_json.get("config"), dict) else None
    )
    if not name:
        names = [r["config_name"] for r in runs if r.get("config_name")]
        name = names[-1] if names else "scan"
    return str(name)


def _periods(history: gpd.GeoDataFrame, coverage: gpd.GeoDataFrame) -> list[Period]:
    found: dict[str, Period] = {}
    for frame, label_col in ((coverage, "period"), (history, "period_label")):
        if not len(frame):
            continue
        cols = frame[[label_col, "period_start", "period_end"]].drop_duplicates()
        for label, start, end in cols.itertuples(index=False):
            if label not in found:
                found[str(label)] = Period(
                    dt.date.fromisoformat(str(start)[:10]),
                    dt.date.fromisoformat(str(end)[:10]),
                    str(label),
                )
    return sorted(found.values(), key=lambda p: (p.start, p.end))


def _normalise_aois(aois: gpd.GeoDataFrame, gpkg: Path) -> gpd.GeoDataFrame:
    missing = [c for c in ("aoi_id", "aoi_name", "aoi_kind") if c not in aois.columns]
    if missing:
        raise DetectionError(f"{gpkg}: layer 'aois' lacks {missing}; rerun the scan")
    if aois.empty:
        raise DetectionError(f"{gpkg}: layer 'aois' is empty; rerun the scan")
    aois = aois[["aoi_id", "aoi_name", "aoi_kind", "geometry"]].copy()
    aois["aoi_id"] = aois["aoi_id"].astype(str)
    aois["aoi_name"] = aois["aoi_name"].astype(str)
    aois["aoi_kind"] = aois["aoi_kind"].astype(str)
    geoms = aois.geometry.to_numpy()
    invalid = ~shapely.is_valid(geoms)
    if invalid.any():
        aois.loc[invalid, "geometry"] = shapely.make_valid(geoms[invalid])
    return aois.reset_index(drop=True)


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
        "sites",
        "new_sites",
        "expanding_sites",
        "reactivated_sites",
        "stable_sites",
        "receding_sites",
        "buffer_sites",
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


# ----------------------------------------------------------------------------------- figures


def draw_figures(report: Report, *, dpi: int = 110) -> list[ReportFigure]:
    """Draw the report's figures (matplotlib, Agg; no pyplot state) and render them as PNG.

    Figures: the trend of every reserve together (``trend-all``), the hot-spot map
    (``hotspots``), the sites that grew most (``top-sites``, when any grew), then the trend of
    each reserve with detections or of a layer of several reserves (``trend-<aoi_id>``).

    Args:
        report: the report's tables.
        dpi: resolution of the PNGs.

    Returns:
        The figures, in the order the report shows them.

    Raises:
        DetectionError: ``dpi`` is not positive.
    """
    if dpi <= 0:
        raise DetectionError(f"dpi {dpi!r}: expected a positive number")
    out: list[ReportFigure] = []
    all_res = report.reserves[-1]
    several = len(report.reserves) > 2
    all_title = (
        f"All {len(report.reserves) - 1} reserves" if several else report.reserves[0].aoi_name
    )
    out.append(_trend_figure(report, all_res, name="trend-all", heading=all_title, dpi=dpi))
    out.append(_hotspot_figure(report, dpi=dpi))
    if len(report.top_sites):
        out.append(_top_figure(report, dpi=dpi))
    if several:
        with_sites = set(report.sites["aoi_id"].astype(str)) if len(report.sites) else set()
        for res in report.reserves[:-1]:
            if res.aoi_id in with_sites:
                out.append(
                    _trend_figure(
                        report,
                        res,
                        name=f"trend-{_slug(res.aoi_id)}",
                        heading=res.aoi_name,
                        dpi=dpi,
                    )
                )
    return out


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text)[:60] or "reserve"


def _render(fig: Figure, *, dpi: int) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white", metadata={"Software": None})
    # keep the layout just computed: saving again (PDF) need not lay it out a second time
    fig.set_layout_engine("none")
    return buf.getvalue()


def _trend_figure(
    report: Report, res: Reserve, *, name: str, heading: str, dpi: int
) -> ReportFigure:
    table = report.by_period[report.by_period["aoi_id"] == res.aoi_id]
    labels = [p.label for p in report.periods]
    n = len(labels)
    x = np.arange(n)
    by_cls = {
        cls: table[table["alert_class"] == cls].set_index("period").reindex(labels)
        for cls in CLASSES
    }
    first = by_cls["mining"]
    state = first["observation"].astype(str).to_numpy()
    share = first["observed_share"].astype(float).to_numpy()
    imagery = first["imagery_share"].astype(float).to_numpy()
    comparison = first["comparison"].astype(str).to_numpy()
    unseen = state == "not_observed"
    low = (~unseen) & (share < LOW_OBSERVED)

    fig = Figure(figsize=(9.0, 7.6), layout="constrained")
    axes = fig.subplots(3, 1, sharex=True, height_ratios=[3.0, 2.4, 1.3])
    title = f"{heading}: mining and forest clearing detected, {report.period_range}"
    fig.suptitle(title, fontsize=13, fontweight="bold")
    width = 0.38

    # 1. area detected inside the reserve
    ax = axes[0]
    top = 0.0
    for k, cls in enumerate(CLASSES):
        vals = by_cls[cls]["area_ha"].astype(float).to_numpy()
        pos = x + (k - 0.5) * width
        ok = ~np.isnan(vals)
        bars = ax.bar(pos[ok], vals[ok], width, color=_COLOURS[cls], label=f"{_CLASS_LABEL[cls]}")
        for bar, is_low in zip(bars, low[ok], strict=True):
            if is_low:
                bar.set_hatch("//")
                bar.set_edgecolor("white")
        for p, v, is_low in zip(pos[ok], vals[ok], low[ok], strict=True):
            ax.annotate(
                f"≥{v:,.1f}" if is_low else f"{v:,.1f}",
                (p, v),
                xytext=(0, 2),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=8,
            )
        top = max(top, float(np.nanmax(vals)) if ok.any() else 0.0)
    ax.set_ylim(0, max(1.0, top * 1.35))
    _mark_unseen(ax, x, unseen)
    ax.set_ylabel("area inside the reserve (ha)")
    ax.set_title("Area of active sites detected in each period", fontsize=10, loc="left")
    handles, _ = ax.get_legend_handles_labels()
    handles += _observation_handles(low.any(), unseen.any())
    ax.legend(handles=handles, loc="upper left", fontsize=8, frameon=False, ncol=2)
    ax.grid(axis="y", alpha=0.3)

    # 2. new vs expanding
    ax = axes[1]
    top = 0.0
    for k, cls in enumerate(CLASSES):
        new = by_cls[cls]["new_ha"].astype(float).to_numpy()
        grow = by_cls[cls]["expanding_growth_ha"].astype(float).to_numpy()
        pos = x + (k - 0.5) * width
        ok = ~np.isnan(new)
        new_bars = ax.bar(
            pos[ok], new[ok], width, color=_COLOURS[cls], label=f"new {_CLASS_LABEL[cls]} sites"
        )
        grow_bars = ax.bar(
            pos[ok],
            grow[ok],
            width,
            bottom=new[ok],
            color=_COLOURS[f"{cls}_light"],
            label=f"growth of expanding {_CLASS_LABEL[cls]} sites",
        )
        for bars in (new_bars, grow_bars):
            for bar, is_low in zip(bars, low[ok], strict=True):
                if is_low:
                    bar.set_hatch("//")
                    bar.set_edgecolor("white")
        sums = np.where(ok, np.nan_to_num(new) + np.nan_to_num(grow), np.nan)
        top = max(top, float(np.nanmax(sums)) if ok.any() else 0.0)
        n_new = by_cls[cls]["new_sites"].to_numpy()
        n_exp = by_cls[cls]["expanding_sites"].to_numpy()
        for i in np.flatnonzero(ok):
            ax.annotate(
                f"{int(n_new[i])}+{int(n_exp[i])}",
                (pos[i], sums[i]),
                xytext=(0, 2),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=7,
            )
    ax.set_ylim(0, max(1.0, top * 1.3))
    for i in np.flatnonzero(comparison == "baseline"):
        ax.text(
            x[i],
            ax.get_ylim()[1] * 0.5,
            "baseline:\nfirst period scanned",
            ha="center",
            va="center",
            fontsize=8,
            color="0.35",
        )
    _mark_unseen(ax, x, unseen & (comparison != "baseline"))
    ax.set_ylabel("area added (ha)")
    ax.set_title(
        "Change since the previous period: new sites and growth of expanding ones "
        "(labels: new + expanding sites)",
        fontsize=10,
        loc="left",
    )
    ax.legend(loc="upper left", fontsize=7, frameon=False, ncol=2)
    ax.grid(axis="y", alpha=0.3)

    # 3. observation
    ax = axes[2]
    colours = [_COLOURS["low"] if lo else _COLOURS["observed"] for lo in low | unseen]
    ax.bar(x, share * 100, 0.6, color=colours)
    for j in range(n):
        text = "not observed" if unseen[j] else f"{share[j]:.0%}"
        if not unseen[j] and imagery[j] < 0.99:
            text += f"\nof {imagery[j]:.0%} imaged"
        ax.annotate(
            text,
            (x[j], share[j] * 100),
            xytext=(0, 2),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=7,
            color="#a00000" if unseen[j] else "black",
        )
    ax.axhline(LOW_OBSERVED * 100, color="0.5", lw=0.8, ls="--")
    ax.set_ylim(0, 150)
    ax.set_yticks([0, 50, 100])
    ax.set_ylabel("observed (%)")
    ax.set_title(
        "Clear (cloud-free) share of the imaged area of the reserve", fontsize=10, loc="left"
    )
    ax.set_xticks(x, labels)
    ax.set_xlabel("period")
    ax.set_xlim(-0.6, n - 0.4)
    caption = (
        f"{heading}: hectares of mining and forest clearing detected inside the reserve per period "
        f"({report.period_range}), new and expanding sites, and the observed share. Hatched: "
        f"under {LOW_OBSERVED:.0%} observed (a lower bound); 'not observed' periods have no data."
    )
    return ReportFigure(name, title, caption, _render(fig, dpi=dpi), fig)


def _observation_handles(low: bool, unseen: bool) -> list[Any]:
    handles: list[Any] = []
    if low:
        handles.append(
            Patch(
                facecolor="0.6",
                hatch="//",
                edgecolor="white",
                label=f"under {LOW_OBSERVED:.0%} observed: a lower bound",
            )
        )
    if unseen:
        handles.append(
            Patch(facecolor="none", hatch="xx", edgecolor="0.6", label="not observed: no data")
        )
    return handles


def _mark_unseen(ax: Axes, x: np.ndarray, unseen: np.ndarray) -> None:
    ymax = ax.get_ylim()[1]
    for i in np.flatnonzero(unseen):
        ax.bar(x[i], ymax, 0.85, facecolor="none", edgecolor="0.6", hatch="xx", lw=0.5)
        ax.text(
            x[i],
            ymax * 0.5,
            "not observed",
            rotation=90,
            ha="center",
            va="center",
            fontsize=9,
            color="#a00000",
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8},
        )


def _hotspot_figure(report: Report, *, dpi: int) -> ReportFigure:
    sites = report.sites
    latest = (
        sites.sort_values(["period_end", "site_id"], kind="stable").groupby("site_id").tail(1)
        if len(sites)
        else sites
    )
    two = len(latest) > 0
    boxes = [tuple(report.aois.total_bounds)]
    if report.footprint is not None:
        boxes.append(report.footprint.bounds)
    if two:
        boxes.append(tuple(latest.total_bounds))
    overview = _padded(_union_bounds(boxes), 0.04)
    ratio = _display_ratio(overview)
    panel_w = 5.2
    height = min(max(panel_w * ratio, 3.2), 7.5) + 1.7
    fig = Figure(figsize=(panel_w * (2 if two else 1) + 0.8, height), layout="constrained")
    axes = fig.subplots(1, 2 if two else 1, squeeze=False)[0]
    title = f"Hot spots: latest extent of every site detected, {report.period_range}"
    fig.suptitle(title, fontsize=13, fontweight="bold")
    ax = axes[0]
    _map_base(ax, report, overview)
    handles = _map_handles(report)
    if two:
        areas = latest["area_ha"].astype(float).to_numpy()
        scale = 220.0 / max(float(np.nanmax(areas)), 1.0)
        cents = shapely.centroid(latest.geometry.to_numpy())
        for cls in CLASSES:
            sel = (latest["alert_class"] == cls).to_numpy()
            if sel.any():
                ax.scatter(
                    shapely.get_x(cents[sel]),
                    shapely.get_y(cents[sel]),
                    s=np.maximum(areas[sel] * scale, 12.0),
                    c=_COLOURS[cls],
                    alpha=0.75,
                    edgecolors="black",
                    linewidths=0.4,
                    zorder=4,
                )
        ax.set_title("All reserves (circle area ~ site area)", fontsize=10, loc="left")
        size_handles = [
            Line2D(
                [],
                [],
                ls="",
                marker="o",
                markersize=math.sqrt(max(a * scale, 12.0)),
                markerfacecolor="0.7",
                markeredgecolor="black",
                label=f"{a:g} ha",
            )
            for a in _nice_sizes(float(np.nanmax(areas)))
        ]
        class_handles = [
            Patch(facecolor=_COLOURS[c], edgecolor="black", label=_CLASS_LABEL[c]) for c in CLASSES
        ]
        handles = class_handles + size_handles + handles
        # zoom on the sites, squarish, at least 2 km across
        zoom = _squarish(_padded(tuple(latest.total_bounds), 0.12), min_km=2.0)
        axz = axes[1]
        _map_base(axz, report, zoom)
        for cls in CLASSES:
            sel = latest[latest["alert_class"] == cls]
            if len(sel):
                sel.plot(ax=axz, color=_COLOURS[cls], edgecolor="black", linewidth=0.4, zorder=4)
        for row in _records(report.top_sites.head(5)):
            axz.annotate(
                f"#{row['rank']}",
                (row["lon"], row["lat"]),
                xytext=(4, 4),
                textcoords="offset points",
                fontsize=8,
                fontweight="bold",
                zorder=5,
            )
        axz.set_title(
            "Where the sites are (outlines; #n: fastest-growing)", fontsize=10, loc="left"
        )
        ax.add_patch(_rect(zoom, edgecolor="#a00000", facecolor="none", lw=1.2, zorder=5))
        handles.append(Patch(facecolor="none", edgecolor="#a00000", label="zoomed area"))
    else:
        ax.set_title("No site detected in the periods reported", fontsize=10, loc="left")
    fig.legend(
        handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False
    )
    caption = (
        f"Reserve outlines, the area with imagery, and the latest extent of each site detected in "
        f"{report.period_range}, coloured by class and sized by area. No background tiles: the map "
        "is drawn from the run's own layers."
    )
    return ReportFigure("hotspots", title, caption, _render(fig, dpi=dpi), fig)


Bounds = tuple[float, float, float, float]


def _union_bounds(boxes: Sequence[Sequence[float]]) -> Bounds:
    arr = np.asarray(boxes, dtype=float)
    return (
        float(arr[:, 0].min()),
        float(arr[:, 1].min()),
        float(arr[:, 2].max()),
        float(arr[:, 3].max()),
    )


def _padded(bounds: Sequence[float], share: float) -> Bounds:
    x0, y0, x1, y1 = (float(v) for v in bounds)
    pad = max(x1 - x0, y1 - y0, 1e-4) * share
    return (x0 - pad, y0 - pad, x1 + pad, y1 + pad)


def _lon_factor(bounds: Bounds) -> float:
    return max(math.cos(math.radians((bounds[1] + bounds[3]) / 2)), 0.05)


def _display_ratio(bounds: Bounds) -> float:
    """Height / width of ``bounds`` drawn with equal ground distances."""
    x0, y0, x1, y1 = bounds
    return (y1 - y0) / max((x1 - x0) * _lon_factor(bounds), 1e-9)


def _squarish(bounds: Bounds, *, min_km: float) -> Bounds:
    """Widen the narrow side of ``bounds`` to at least 60 % of the wide one and ``min_km``."""
    x0, y0, x1, y1 = bounds
    f = _lon_factor(bounds)
    w_km, h_km = (x1 - x0) * f * 111.32, (y1 - y0) * 111.32
    target_w = max(w_km, 0.6 * h_km, min_km)
    target_h = max(h_km, 0.6 * w_km, min_km)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    dx, dy = target_w / 111.32 / f / 2, target_h / 111.32 / 2
    return (cx - dx, cy - dy, cx + dx, cy + dy)


def _rect(bounds: tuple[float, float, float, float], **kwargs: Any) -> Any:
    from matplotlib.patches import Rectangle

    x0, y0, x1, y1 = bounds
    return Rectangle((x0, y0), x1 - x0, y1 - y0, **kwargs)


def _map_handles(report: Report) -> list[Any]:
    handles: list[Any] = [
        Patch(facecolor="#f3efe6", edgecolor=_COLOURS["reserve"], label="reserve")
    ]
    if report.footprint is not None:
        handles.append(Patch(facecolor=_COLOURS["imagery"], edgecolor="none", label="imagery"))
    return handles


def _map_base(ax: Axes, report: Report, bounds: Bounds) -> None:
    x0, y0, x1, y1 = bounds
    report.aois.plot(ax=ax, facecolor="#f3efe6", edgecolor="none", zorder=1)
    if report.footprint is not None:
        gpd.GeoSeries([report.footprint], crs="EPSG:4326").plot(
            ax=ax, facecolor=_COLOURS["imagery"], edgecolor="none", alpha=0.8, zorder=2
        )
    report.aois.boundary.plot(ax=ax, color=_COLOURS["reserve"], linewidth=0.8, zorder=3)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect(1.0 / _lon_factor(bounds))
    ax.set_xlabel("longitude (°)")
    ax.set_ylabel("latitude (°)")
    ax.tick_params(labelsize=7)
    _scale_bar(ax, bounds)


def _scale_bar(ax: Axes, bounds: tuple[float, float, float, float]) -> None:
    x0, y0, x1, y1 = bounds
    km_per_deg = 111.32 * math.cos(math.radians((y0 + y1) / 2))
    width_km = (x1 - x0) * km_per_deg
    length = max(
        (v for v in (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500) if v <= width_km / 4), default=0.5
    )
    bx = x1 - (x1 - x0) * 0.05 - length / km_per_deg
    by = y0 + (y1 - y0) * 0.05
    ax.plot([bx, bx + length / km_per_deg], [by, by], color="black", lw=2.5, zorder=6)
    ax.text(
        bx + length / km_per_deg / 2,
        by + (y1 - y0) * 0.015,
        f"{length:g} km",
        ha="center",
        va="bottom",
        fontsize=8,
        zorder=6,
    )


def _nice_sizes(max_area: float) -> list[float]:
    candidates = [0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]
    fit = [c for c in candidates if c <= max_area] or [candidates[0]]
    return sorted({fit[-1], fit[max(0, len(fit) - 3)]})


def _top_figure(report: Report, *, dpi: int) -> ReportFigure:
    top = report.top_sites.iloc[::-1]
    fig = Figure(figsize=(9.0, max(3.4, 1.4 + 0.42 * len(top))), layout="constrained")
    ax = fig.subplots()
    title = f"Fastest-growing sites, {report.period_range}"
    fig.suptitle(title, fontsize=13, fontweight="bold")
    y = np.arange(len(top))
    ax.barh(y, top["growth_ha"], color=[_COLOURS[c] for c in top["alert_class"]], height=0.65)
    for yi, g, a in zip(y, top["growth_ha"], top["area_ha"], strict=True):
        ax.annotate(
            f"+{g:,.1f} ha (now {a:,.1f} ha)",
            (g, yi),
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
    multi = len(report.reserves) > 2
    ax.set_yticks(
        y,
        [
            f"#{r['rank']} {r['site_id']}"
            + (f" ({r['aoi_name']})" if multi else "")
            + (" [buffer]" if r["aoi_relation"] == "buffer" else "")
            for r in _records(top)
        ],
        fontsize=8,
    )
    ax.set_xlim(0, float(top["growth_ha"].max()) * 1.35)
    ax.set_xlabel("area gained over the periods reported (ha)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(
        handles=[Patch(facecolor=_COLOURS[c], label=_CLASS_LABEL[c]) for c in CLASSES],
        loc="lower right",
        fontsize=8,
        frameon=False,
    )
    caption = (
        f"The {len(top)} sites that gained most area over {report.period_range}: area at their "
        "last detection minus their area at the start (before the first period reported, or in "
        "the baseline period when the report starts there; 0 for sites that appeared since). "
        "[buffer]: outside the reserve, within its buffer zone."
    )
    return ReportFigure("top-sites", title, caption, _render(fig, dpi=dpi), fig)


# ------------------------------------------------------------------------------------ writing


def write_report(
    out_dir: Path,
    report_dir: Path | None = None,
    *,
    since: dt.date | None = None,
    pdf: bool = False,
    overwrite: bool = False,
    top_n: int = 10,
    dpi: int = 110,
) -> ReportResult:
    """Build the report of an output folder and write it: HTML, CSVs, PNGs and optionally PDF.

    Args:
        out_dir: the scan's output folder.
        report_dir: where to write (default ``out_dir/report``).
        since: report only the periods ending on or after this day.
        pdf: also write ``report.pdf``.
        overwrite: replace a report already in ``report_dir``.
        top_n: sites in the top-growth table.
        dpi: resolution of the PNG figures.

    Returns:
        The files written and the report's tables.

    Raises:
        DetectionError: see :func:`build_report`.
        OutputExistsError: ``report_dir`` holds a report and ``overwrite`` is False.
    """
    started = time.monotonic()
    out_dir = Path(out_dir)
    report_dir = Path(report_dir) if report_dir is not None else out_dir / "report"
    existing = [n for n in REPORT_FILES if (report_dir / n).exists()]
    if existing and not overwrite:
        raise OutputExistsError(
            f"report folder {str(report_dir)!r} already holds a report ({', '.join(existing)}); "
            "pass --overwrite to replace it or --out to write elsewhere"
        )
    report = build_report(out_dir, since=since, top_n=top_n)
    figures = draw_figures(report, dpi=dpi)
    report_dir.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    fig_dir = report_dir / "figures"
    if overwrite and fig_dir.is_dir():
        for old in fig_dir.glob("*.png"):
            old.unlink()
    for fig in figures:
        path = fig_dir / f"{fig.name}.png"
        with atomic_path(path) as tmp:
            tmp.write_bytes(fig.png)
        files.append(path)
    csv_periods = report_dir / "reserve_periods.csv"
    write_text_atomic(csv_periods, report.by_period.to_csv(index=False, lineterminator="\n"))
    csv_top = report_dir / "top_sites.csv"
    write_text_atomic(csv_top, report.top_sites.to_csv(index=False, lineterminator="\n"))
    csv_legal = report_dir / "legal_status.csv"
    write_text_atomic(csv_legal, report.legal_by_period.to_csv(index=False, lineterminator="\n"))
    files += [csv_periods, csv_top, csv_legal]
    pdf_path = report_dir / "report.pdf"
    if pdf:
        _write_pdf(pdf_path, report, figures)
        files.append(pdf_path)
    elif overwrite:
        pdf_path.unlink(missing_ok=True)
    html_path = report_dir / "report.html"
    write_text_atomic(html_path, render_html(report, figures, pdf=pdf))
    files.insert(0, html_path)
    seconds = time.monotonic() - started
    log.info("report written to %s in %.1f s", report_dir, seconds)
    return ReportResult(report_dir=report_dir, files=files, report=report, seconds=seconds)


# --------------------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:"Segoe UI",Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:2px solid #c2570c;padding-bottom:.2em;
margin-top:2em}h3{margin-top:1.5em}
.meta{color:#555}.note{background:#f6f3ea;border-left:4px solid #c2570c;padding:.6em 1em}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}th,td{border:1px solid #ccc;
padding:.3em .6em;text-align:right}th{background:#f0f0f0}td.l,th.l{text-align:left}
td.unseen{color:#a00000;font-style:italic;background:repeating-linear-gradient(45deg,#fff,#fff 4px,
#eee 4px,#eee 8px)}td.low{background:#eef3f8}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #ddd}
figcaption{color:#555;font-size:.9em}
@media print{body{max-width:none}figure{page-break-inside:avoid}}
"""


def render_html(report: Report, figures: Sequence[ReportFigure], *, pdf: bool = False) -> str:
    """The report as one self-contained HTML page (figures as ``data:`` PNGs, inline CSS).

    Args:
        report: the report's tables.
        figures: the figures of :func:`draw_figures`.
        pdf: mention ``report.pdf`` among the files.

    Returns:
        The page.
    """
    e = html.escape
    figs = {f.name: f for f in figures}
    last = report.runs[-1] if report.runs else {}
    finished = [r for r in report.runs if r["outcome"] != "running"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>minewatch report: {e(report.title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>minewatch report: {e(report.title)}</h1>",
        f'<p class="meta">Periods {e(report.period_range)} '
        f"({report.periods[0].start.isoformat()} to {report.periods[-1].end.isoformat()}); "
        f"{len(report.reserves) - 1} reserve(s); {len(finished)} scan run(s) in the store, the "
        f"last {e(str(last.get('run_id', '?')))} ({e(str(last.get('outcome', '?')))}, "
        f"{e(str(last.get('started_at', '?')))}). Generated "
        f"{dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}.</p>",
        '<div class="note"><b>How to read this report.</b> Hectares are the area of the sites '
        "detected by the scans inside each reserve (of a site crossing the boundary, only its part "
        "inside); sites and parts outside but within the "
        f"{report.buffer_m / 1000:g} km buffer zone are counted apart. <i>Observed</i> is the "
        "clear, cloud-free share of the area that had imagery in that period: where nothing was "
        "observed there is no figure (<i>not observed</i>, hatched), never a zero; below "
        f"{LOW_OBSERVED:.0%} observed, hectares are a lower bound (hatched bars). "
        "<i>Imaged</i> is the share of the reserve covered by the scan's imagery. "
        + (
            f"The first period scanned ({e(report.baseline)}) is the baseline: every site "
            "in it is new to the scanner, not necessarily on the ground. "
            if report.baseline
            else ""
        )
        + "Detections are automatic and unreviewed unless analysts confirmed them.</div>",
    ]
    parts += _summary_section(report)
    all_res = report.reserves[-1]
    several = len(report.reserves) > 2
    parts.append(f"<h2>Trend: {e('all reserves' if several else report.reserves[0].aoi_name)}</h2>")
    parts += _figure_html(figs.get("trend-all"))
    parts += _period_table(report, all_res if several else report.reserves[0])
    parts.append("<h2>Hot spots</h2>")
    parts += _figure_html(figs.get("hotspots"))
    parts.append("<h2>Fastest-growing sites</h2>")
    if len(report.top_sites):
        parts += _figure_html(figs.get("top-sites"))
        parts += _top_table(report)
    else:
        parts.append("<p>No site gained area over the periods reported.</p>")
    if several:
        parts.append("<h2>Per reserve</h2>")
        for res in report.reserves[:-1]:
            parts.append(f"<h3>{e(res.aoi_name)} ({e(res.aoi_kind)}, {res.area_ha:,.0f} ha)</h3>")
            fig = figs.get(f"trend-{_slug(res.aoi_id)}")
            if fig is None:
                parts.append("<p>No site detected in the periods reported.</p>")
            else:
                parts += _figure_html(fig)
            parts += _period_table(report, res)
    parts += _legal_section(report)
    parts += _provenance(report, pdf=pdf)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _figure_html(fig: ReportFigure | None) -> list[str]:
    if fig is None:
        return []
    data = base64.b64encode(fig.png).decode("ascii")
    return [
        f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(fig.title)}">'
        f"<figcaption>{html.escape(fig.caption)}</figcaption></figure>"
    ]


def _fmt(value: Any, spec: str = ",.1f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "–"
    return format(value, spec)


def _summary_section(report: Report) -> list[str]:
    e = html.escape
    latest = report.periods[-1].label
    rows = report.by_period
    out = [
        f"<h2>Summary, latest period {e(latest)}</h2>",
        "<table><tr><th class='l'>reserve</th><th class='l'>kind</th><th>area (ha)</th>"
        "<th>observed</th><th>imaged</th><th>mining (ha)</th><th>forest clearing (ha)</th>"
        f"<th>mining gained over {e(report.period_range)} (ha)</th></tr>",
    ]
    for res in report.reserves:
        sub = rows[(rows["aoi_id"] == res.aoi_id) & (rows["period"] == latest)].set_index(
            "alert_class"
        )
        m = sub.loc["mining"]
        d = sub.loc["deforestation"]
        unseen = m["observation"] == "not_observed"
        gain = _mining_gain(report, res.aoi_id)
        cls = (
            " class='unseen'"
            if unseen
            else (" class='low'" if m["observed_share"] < LOW_OBSERVED else "")
        )
        out.append(
            f"<tr><td class='l'>{e(res.aoi_name)}</td><td class='l'>{e(res.aoi_kind)}</td>"
            f"<td>{res.area_ha:,.0f}</td>"
            f"<td{cls}>{'not observed' if unseen else format(m['observed_share'], '.0%')}</td>"
            f"<td>{m['imagery_share']:.1%}</td>"
            f"<td{cls}>{'not observed' if unseen else _fmt(m['area_ha'])}</td>"
            f"<td{cls}>{'not observed' if unseen else _fmt(d['area_ha'])}</td>"
            f"<td>{_fmt(gain)}</td></tr>"
        )
    out.append("</table>")
    if report.outside_sites:
        out.append(
            f"<p>{report.outside_sites} site-period record(s) lie farther than "
            f"{report.buffer_m / 1000:g} km from every reserve and are not counted.</p>"
        )
    if report.failed_chips:
        out.append(
            "<p>Chips that failed (not observed; retried by the next scan): "
            + ", ".join(f"{e(k)} {v}" for k, v in sorted(report.failed_chips.items()))
            + ".</p>"
        )
    return out


def _mining_gain(report: Report, aoi_id: str) -> float:
    """Area gained by the mining sites inside the reserve over the periods reported (the sum of
    their gains, as in ``top_sites.csv``; sites that shrank are not subtracted)."""
    g = report.growth
    sel = (g["alert_class"] == "mining") & (g["aoi_relation"] == "inside") & (g["growth_ha"] > 0)
    if aoi_id != ALL_ID:
        sel &= g["aoi_id"] == aoi_id
    return float(g.loc[sel, "growth_ha"].sum())


def _period_table(report: Report, res: Reserve) -> list[str]:
    e = html.escape
    sub = report.by_period[report.by_period["aoi_id"] == res.aoi_id]
    out = [
        "<table><tr><th class='l'>period</th><th>observed</th><th>imaged</th>"
        "<th>mining (ha)</th><th>forest clearing (ha)</th><th>new sites (ha)</th>"
        "<th>expanding sites (+ha)</th><th>buffer zone (ha)</th></tr>"
    ]
    for period in report.periods:
        rows = sub[sub["period"] == period.label].set_index("alert_class")
        m, d = rows.loc["mining"], rows.loc["deforestation"]
        unseen = m["observation"] == "not_observed"
        low = m["observed_share"] < LOW_OBSERVED
        cls = " class='unseen'" if unseen else (" class='low'" if low else "")

        def cell(val: Any, unseen: bool = unseen, cls: str = cls) -> str:
            return f"<td{cls}>{'not observed' if unseen else val}</td>"

        if m["comparison"] == "baseline":
            new = exp = "<td class='l'>baseline</td>"
        else:
            n_new = _int_sum(m["new_sites"], d["new_sites"])
            n_exp = _int_sum(m["expanding_sites"], d["expanding_sites"])
            new = cell(f"{n_new} ({_fmt(_sum(m['new_ha'], d['new_ha']))})")
            exp = cell(
                f"{n_exp} (+{_fmt(_sum(m['expanding_growth_ha'], d['expanding_growth_ha']))})"
            )
        out.append(
            f"<tr><td class='l'>{e(period.label)}</td>"
            f"{cell(format(m['observed_share'], '.0%'))}<td>{m['imagery_share']:.1%}</td>"
            f"{cell(_fmt(m['area_ha']))}{cell(_fmt(d['area_ha']))}{new}{exp}"
            f"{cell(_fmt(_sum(m['buffer_area_ha'], d['buffer_area_ha'])))}</tr>"
        )
    out.append("</table>")
    return out


def _sum(*values: Any) -> float:
    vals = [float(v) for v in values if v is not None and v is not pd.NA and not pd.isna(v)]
    return float(sum(vals)) if vals else float("nan")


def _int_sum(*values: Any) -> int:
    return int(sum(int(v) for v in values if v is not None and not pd.isna(v)))


def _top_table(report: Report) -> list[str]:
    e = html.escape
    out = [
        "<table><tr><th>#</th><th class='l'>site</th><th class='l'>class</th>"
        "<th class='l'>reserve</th><th>gained (ha)</th><th>area now (ha)</th>"
        "<th class='l'>first / last period</th><th class='l'>status</th><th>observed</th>"
        "<th>lon, lat</th></tr>"
    ]
    for r in _records(report.top_sites):
        where = e(r["aoi_name"]) + (" (buffer zone)" if r["aoi_relation"] == "buffer" else "")
        obs = (
            "–"
            if r["observed_fraction"] is None or pd.isna(r["observed_fraction"])
            else f"{r['observed_fraction']:.0%}"
        )
        out.append(
            f"<tr><td>{r['rank']}</td><td class='l'>{e(r['site_id'])}</td>"
            f"<td class='l'>{e(_CLASS_LABEL.get(r['alert_class'], r['alert_class']))}</td>"
            f"<td class='l'>{where}</td><td>{r['growth_ha']:,.2f}</td><td>{r['area_ha']:,.2f}</td>"
            f"<td class='l'>{e(r['first_period'])} / {e(r['last_period'])}</td>"
            f"<td class='l'>{e(r['status'])}</td><td>{obs}</td>"
            f"<td>{r['lon']:.5f}, {r['lat']:.5f}</td></tr>"
        )
    out.append("</table>")
    return out


def _legal_cells(report: Report) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the legal-status table: mining hectares (sites) by status, per
    reserve with detections and period."""
    table = report.legal_by_period
    mining = table[table["alert_class"] == "mining"]
    header = ["reserve", "period", *LEGAL_STATUSES]
    rows = []
    for res in report.reserves:
        sub = mining[mining["aoi_id"] == res.aoi_id]
        if res.aoi_id == ALL_ID and len(report.reserves) <= 2:
            continue
        for period in report.periods:
            cells = sub[sub["period"] == period.label].set_index("legal_status")
            if cells.empty or not cells["sites"].sum():
                continue
            rows.append(
                [res.aoi_name, period.label]
                + [
                    f"{cells.loc[s, 'area_ha']:,.1f} ({int(cells.loc[s, 'sites'])})"
                    if s in cells.index and cells.loc[s, "sites"]
                    else "–"
                    for s in LEGAL_STATUSES
                ]
            )
    return header, rows


def _legal_section(report: Report) -> list[str]:
    e = html.escape
    header, rows = _legal_cells(report)
    out = [
        "<h2>Legal status</h2>",
        "<p>Mining hectares (sites) of each reserve and its buffer zone by legal status: "
        "<i>prohibited_area</i> (in an area closed to mining), <i>no_title</i>, <i>titled</i> "
        "(a title in a phase that allows extraction), <i>title_phase_not_extraction</i> (only "
        "research or application titles), <i>unknown</i> (no title layer). All classes: "
        "<code>legal_status.csv</code>.</p>",
    ]
    if not rows:
        return [*out, "<p>No mining site in the periods reported.</p>"]
    out.append(
        "<table><tr>"
        + "".join(f"<th class='l'>{e(h)}</th>" if i < 2 else f"<th>{e(h)}</th>"
                  for i, h in enumerate(header))
        + "</tr>"
    )
    for row in rows:
        out.append(
            "<tr>"
            + "".join(f"<td class='l'>{e(c)}</td>" if i < 2 else f"<td>{e(c)}</td>"
                      for i, c in enumerate(row))
            + "</tr>"
        )
    out.append("</table>")
    return out


def _provenance(report: Report, *, pdf: bool) -> list[str]:
    e = html.escape
    files = ["reserve_periods.csv", "top_sites.csv", "figures/*.png"] + (
        ["report.pdf"] if pdf else []
    )
    out = [
        "<h2>Sources</h2>",
        f"<p>Computed from <code>{e(report.out_dir.name or str(report.out_dir))}/runs.sqlite</code>"
        " (site history, runs) and the <code>aois</code> and <code>coverage</code> layers of "
        "<code>alerts.gpkg</code>. The same figures: "
        + ", ".join(f"<code>{f}</code>" for f in files)
        + ".</p>",
        "<table><tr><th class='l'>run</th><th class='l'>started</th><th class='l'>outcome</th>"
        "<th class='l'>period</th><th>units computed</th><th>reused</th><th>failed</th></tr>",
    ]
    for r in report.runs[-12:]:
        out.append(
            f"<tr><td class='l'>{e(str(r['run_id']))}</td>"
            f"<td class='l'>{e(str(r['started_at']))}</td>"
            f"<td class='l'>{e(str(r['outcome']))}</td>"
            f"<td class='l'>{e(str(r['period_start']))}..{e(str(r['period_end']))}</td>"
            f"<td>{r['units_computed'] or 0}</td><td>{r['units_reused'] or 0}</td>"
            f"<td>{r['units_failed'] or 0}</td></tr>"
        )
    out.append("</table>")
    return out


# ---------------------------------------------------------------------------------------- PDF


def _write_pdf(path: Path, report: Report, figures: Iterable[ReportFigure]) -> None:
    """The figures and the key tables as a PDF (A4 landscape pages for the tables)."""
    meta = {"Title": f"minewatch report: {report.title}", "Creator": "minewatch"}
    with atomic_path(path) as tmp, PdfPages(tmp, metadata=meta) as pdf:
        pdf.savefig(_cover_page(report))
        for fig in figures:
            pdf.savefig(fig.figure)
        if len(report.top_sites):
            pdf.savefig(_table_page(report))
        pdf.savefig(_legal_page(report))


def _cover_page(report: Report) -> Figure:
    fig = Figure(figsize=(11.69, 8.27))
    fig.text(0.05, 0.92, f"minewatch report: {report.title}", fontsize=20, fontweight="bold")
    fig.text(
        0.05,
        0.87,
        f"Periods {report.period_range} ({report.periods[0].start} to {report.periods[-1].end});"
        f" {len(report.reserves) - 1} reserve(s); generated "
        f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
        fontsize=11,
        color="0.3",
    )
    notes = (
        "Hectares: area of the sites detected inside each reserve (parts outside apart). "
        "Observed: clear share of the imaged area;\n'not observed' periods have no figure (never "
        f"zero); under {LOW_OBSERVED:.0%} observed the hectares are a lower bound. "
        + (f"{report.baseline} is the baseline (first period scanned)." if report.baseline else "")
    )
    fig.text(0.05, 0.80, notes, fontsize=9, va="top")
    ax = fig.add_axes((0.05, 0.05, 0.9, 0.62))
    ax.axis("off")
    res = report.reserves[-1] if len(report.reserves) > 2 else report.reserves[0]
    sub = report.by_period[report.by_period["aoi_id"] == res.aoi_id]
    cells = []
    for period in report.periods:
        rows = sub[sub["period"] == period.label].set_index("alert_class")
        m, d = rows.loc["mining"], rows.loc["deforestation"]
        unseen = m["observation"] == "not_observed"
        na = "not observed"
        cells.append(
            [
                period.label,
                na if unseen else f"{m['observed_share']:.0%}",
                f"{m['imagery_share']:.1%}",
                na if unseen else _fmt(m["area_ha"]),
                na if unseen else _fmt(d["area_ha"]),
                "baseline"
                if m["comparison"] == "baseline"
                else _fmt(_sum(m["new_ha"], d["new_ha"])),
                "baseline"
                if m["comparison"] == "baseline"
                else _fmt(_sum(m["expanding_growth_ha"], d["expanding_growth_ha"])),
            ]
        )
    ax.set_title(f"{res.aoi_name}: per period", loc="left", fontsize=12)
    table = ax.table(
        cellText=cells,
        colLabels=[
            "period",
            "observed",
            "imaged",
            "mining (ha)",
            "forest clearing (ha)",
            "new sites (ha)",
            "expansion (ha)",
        ],
        loc="upper left",
        cellLoc="right",
    )
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    table.scale(1.0, 1.4)
    return fig


def _table_page(report: Report) -> Figure:
    fig = Figure(figsize=(11.69, 8.27))
    ax = fig.add_axes((0.03, 0.05, 0.94, 0.85))
    ax.axis("off")
    ax.set_title(f"Fastest-growing sites, {report.period_range}", loc="left", fontsize=14)
    cells = [
        [
            str(r["rank"]),
            r["site_id"],
            _CLASS_LABEL.get(r["alert_class"], r["alert_class"]),
            r["aoi_name"] + (" (buffer)" if r["aoi_relation"] == "buffer" else ""),
            f"{r['growth_ha']:,.2f}",
            f"{r['area_ha']:,.2f}",
            f"{r['first_period']} / {r['last_period']}",
            r["status"],
            f"{r['lon']:.5f}, {r['lat']:.5f}",
        ]
        for r in _records(report.top_sites)
    ]
    table = ax.table(
        cellText=cells,
        colLabels=[
            "#",
            "site",
            "class",
            "reserve",
            "gained (ha)",
            "area (ha)",
            "periods",
            "status",
            "lon, lat",
        ],
        loc="upper left",
        cellLoc="left",
    )
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1.0, 1.3)
    return fig


def _legal_page(report: Report) -> Figure:
    fig = Figure(figsize=(11.69, 8.27))
    ax = fig.add_axes((0.03, 0.05, 0.94, 0.85))
    ax.axis("off")
    ax.set_title(
        f"Mining hectares (sites) by legal status, {report.period_range}", loc="left", fontsize=14
    )
    header, rows = _legal_cells(report)
    if not rows:
        ax.text(0.0, 0.9, "No mining site in the periods reported.", fontsize=11)
        return fig
    table = ax.table(cellText=rows, colLabels=header, loc="upper left", cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1.0, 1.3)
    return fig
