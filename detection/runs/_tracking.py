"""Tracking the periods of a scan: the units' polygons -> each period's sites -> tracked sites.

What the units of a scan gave (`UnitOutcomes`: polygons, observed areas, scenes, failures and
composites, per period) becomes, period after period, merged sites tracked against the
history (`track_periods`): a site of the previous period whose place was not observed now is
carried with its last status, never dropped as "no mining".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from aoi.geometry import EQUAL_AREA_CRS
from detection.errors import ConfigError
from detection.runs._units import UnitResult
from detection.sites import MaskOptions, append_history, finish_sites, merge_parts, track_sites
from tiles.periods import Period

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChipFailure:
    """One chip and period that could not be processed, with the reason."""

    tile_id: str
    period: str
    reason: str


@dataclass
class UnitOutcomes:
    """What the units of a scan gave, gathered per period (label) for tracking and alerts."""

    periods: list[Period]
    #: coverage rows (``no_imagery`` chip-periods first, then the units by chip and period)
    coverage_rows: list[dict[str, Any]] = field(default_factory=list)
    failures: list[ChipFailure] = field(default_factory=list)
    #: scenes left out of a unit's composite: ``tile_id``, ``period``, ``scene_id``, ``reason``
    dropped_scenes: list[dict[str, str]] = field(default_factory=list)
    #: ``(tile_id, period label)`` -> the scenes that gave a clear pixel
    scene_ids: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    parts: dict[str, list[gpd.GeoDataFrame]] = field(default_factory=dict)
    seeds: dict[str, list[gpd.GeoDataFrame]] = field(default_factory=dict)
    observed: dict[str, list[Any]] = field(default_factory=dict)
    #: the composites the units wrote (or reused), per period: what evidence is cut from
    composites: dict[str, list[Path]] = field(default_factory=dict)
    computed: int = 0
    reused: int = 0

    def __post_init__(self) -> None:
        for store in (self.parts, self.seeds, self.observed, self.composites):
            for p in self.periods:
                store.setdefault(p.label, [])

    def add(self, res: UnitResult, *, units_dir: Path) -> None:
        """Gather one unit's result (its coverage row and store record are the caller's)."""
        self.dropped_scenes.extend(
            {"tile_id": res.tile_id, "period": res.period, "scene_id": sid, "reason": why}
            for sid, why in res.dropped
        )
        if res.failed:
            self.failures.append(ChipFailure(res.tile_id, res.period, res.reason))
            return
        self.scene_ids[(res.tile_id, res.period)] = res.scene_ids
        if res.composite:
            self.composites[res.period].append(units_dir / res.period / res.composite)
        if res.observed is not None and not res.observed.is_empty:
            self.observed[res.period].append(res.observed)
        if res.parts is not None and not res.parts.empty:
            self.parts[res.period].append(res.parts)
        if res.seeds is not None and not res.seeds.empty:
            self.seeds[res.period].append(res.seeds)


@dataclass
class Tracking:
    """The sites of the last period tracked through every period of the scan."""

    tracked: gpd.GeoDataFrame
    history: gpd.GeoDataFrame
    #: per period: mean clear-observation share of the chips that had imagery
    observed_fraction: dict[str, float]
    #: per period: share of the AOIs' area (not buffered) with a clear observation
    aoi_observed_fraction: dict[str, float]
    #: periods in which no chip was observed (no imagery, all cloud, or every unit failed)
    unobserved: list[str]
    #: sites of an earlier period carried into the last one because their place was not seen
    carried: int


def track_periods(
    outcomes: UnitOutcomes,
    *,
    masks: MaskOptions,
    aois: gpd.GeoDataFrame,
    scene_dates: dict[str, str],
) -> Tracking:
    """Each period's sites (the units' polygons merged and finished by ``masks``), tracked
    against the history of the periods before it, with their image dates and observed share."""
    periods = outcomes.periods
    history: gpd.GeoDataFrame | None = None
    tracked: gpd.GeoDataFrame | None = None
    observed_fraction: dict[str, float] = {}
    aoi_observed_fraction: dict[str, float] = {}
    aoi_area = gpd.GeoSeries(aois.geometry, crs=aois.crs).to_crs(EQUAL_AREA_CRS).union_all()
    unobserved: list[str] = []
    carried_count = 0
    first_images: dict[str, str | None] = {}
    for i, period in enumerate(periods):
        previous = periods[i - 1] if i else None
        label = period.label
        sites = _sites_of_period(outcomes.parts[label], masks, outcomes.seeds[label])
        before = tracked
        tracked = track_sites(sites, history, period=period, previous_period=previous)
        tracked = _with_image_dates(
            tracked, period, outcomes.scene_ids, scene_dates, first_images
        )
        seen = shapely.union_all(outcomes.observed[label]) if outcomes.observed[label] else None
        tracked["observed_fraction"] = _observed_share(tracked, history, seen)
        if seen is None or seen.is_empty:
            unobserved.append(label)
        if before is not None and not before.empty:
            # "Not observed" is never "no mining": a site of the previous period whose place was
            # not seen now (no imagery, cloud, a failed chip) stays, with its last status.
            carried = _carry_unseen(before, tracked, seen)
            if not carried.empty:
                log.warning(
                    "period %s: %d site(s) of %s not observed now (no imagery, cloud or a failed "
                    "chip): kept with their last status and their observed share",
                    label,
                    len(carried),
                    previous.label if previous else "?",
                )
                tracked = gpd.GeoDataFrame(
                    pd.concat([tracked, carried], ignore_index=True), crs=tracked.crs
                )
                if period is periods[-1]:
                    carried_count = len(carried)
        history = append_history(history, tracked, period)
        observed_fraction[label] = _period_observed_share(outcomes.coverage_rows, label)
        aoi_observed_fraction[label] = _aoi_observed_share(seen, aoi_area)
    if tracked is None or history is None:  # pragma: no cover - two periods are checked before
        raise ConfigError("no period was processed")
    for label in unobserved:
        log.warning(
            "period %s was not observed: no chip has a clear observation (no imagery yet, all "
            "cloud, or every unit failed); its alerts carry the earlier sites, not 'no mining'",
            label,
        )
    return Tracking(
        tracked, history, observed_fraction, aoi_observed_fraction, unobserved, carried_count
    )


def _sites_of_period(
    parts: list[gpd.GeoDataFrame], masks: MaskOptions, seeds: list[gpd.GeoDataFrame]
) -> gpd.GeoDataFrame:
    """The chips' polygons merged into sites, finished as ``minewatch predict`` finishes a
    scene's (hysteresis, minimum mapping unit, simplification: `finish_sites`)."""
    if not parts:
        return gpd.GeoDataFrame(
            {"alert_class": [], "area_ha": [], "confidence": [], "tile_id": []},
            geometry=gpd.GeoSeries([], crs="EPSG:4326"),
            crs="EPSG:4326",
        )
    return finish_sites(merge_parts(parts), options=masks, strong=seeds)


def _observed_share(
    tracked: gpd.GeoDataFrame, history: gpd.GeoDataFrame | None, seen: Any
) -> list[float]:
    """Clear-observation share of each site's footprint: its polygon now, joined with its polygon
    of the previous period, so a site half under cloud says it was half seen."""
    if tracked.empty:
        return []
    previous: dict[str, Any] = {}
    if history is not None and not history.empty:
        last_label = history["period_label"].iloc[-1]
        prev_rows = history[history["period_label"] == last_label]
        previous = dict(zip(prev_rows["site_id"], prev_rows.geometry, strict=False))
    projected_seen = (
        gpd.GeoSeries([seen], crs="EPSG:4326").to_crs(EQUAL_AREA_CRS).iloc[0]
        if seen is not None
        else None
    )
    shares = []
    for site_id, geom in zip(tracked["site_id"], tracked.geometry, strict=True):
        footprint = shapely.union(geom, previous[site_id]) if site_id in previous else geom
        fp = gpd.GeoSeries([footprint], crs="EPSG:4326").to_crs(EQUAL_AREA_CRS).iloc[0]
        if projected_seen is None or fp.area == 0:
            shares.append(0.0)
            continue
        shares.append(round(min(1.0, fp.intersection(projected_seen).area / fp.area), 4))
    return shares


#: A site of the previous period absent now is carried when less than this share of it was seen.
CARRY_BELOW_SHARE = 0.5


def _carry_unseen(
    before: gpd.GeoDataFrame, tracked: gpd.GeoDataFrame, seen: Any
) -> gpd.GeoDataFrame:
    """The sites of ``before`` (the previous period's tracked sites) that are neither in
    ``tracked`` nor merged into one of its sites, and of which less than `CARRY_BELOW_SHARE` was
    observed in this period: their absence says nothing, so they are kept as they were, with
    this period's observed share of them."""
    present = set(tracked["site_id"].astype(str))
    for merged in tracked.get("merged_from", []):
        present.update(str(m) for m in (merged if isinstance(merged, list | tuple) else []))
    gone = before[~before["site_id"].astype(str).isin(present)]
    if gone.empty:
        return gone
    projected_seen = (
        gpd.GeoSeries([seen], crs="EPSG:4326").to_crs(EQUAL_AREA_CRS).iloc[0]
        if seen is not None and not seen.is_empty
        else None
    )
    keep, shares = [], []
    for idx, geom in zip(gone.index, gone.geometry.to_crs(EQUAL_AREA_CRS), strict=True):
        share = (
            0.0
            if projected_seen is None or geom.area == 0
            else min(1.0, geom.intersection(projected_seen).area / geom.area)
        )
        if share < CARRY_BELOW_SHARE:
            keep.append(idx)
            shares.append(round(share, 4))
    carried = gone.loc[keep].copy()
    carried["observed_fraction"] = shares
    return carried


def _period_observed_share(rows: list[dict[str, Any]], label: str) -> float:
    """Mean observed share of the chips that had imagery in the period."""
    fracs = [
        r["observed_fraction"] for r in rows if r["period"] == label and r["status"] != "no_imagery"
    ]
    return round(float(np.mean(fracs)), 4) if fracs else 0.0


def _aoi_observed_share(seen: Any, aoi_area: Any) -> float:
    """Share of the AOIs' area (``aoi_area``, in `EQUAL_AREA_CRS`) inside the observed part
    ``seen`` (EPSG:4326, or None): what a reader means by "how much of the reserve was seen"."""
    if seen is None or seen.is_empty or aoi_area.area == 0:
        return 0.0
    projected = gpd.GeoSeries([seen], crs="EPSG:4326").to_crs(EQUAL_AREA_CRS).iloc[0]
    return round(min(1.0, projected.intersection(aoi_area).area / aoi_area.area), 4)


def scenes_of(
    tile_field: Any, period: Period, scene_ids: dict[tuple[str, str], tuple[str, ...]]
) -> list[str]:
    """The scenes that gave a clear pixel to the chips of a site (``tile_id``, comma-joined)."""
    found: set[str] = set()
    for tile in str(tile_field).split(","):
        found.update(scene_ids.get((tile.strip(), period.label), ()))
    return sorted(found)


def _with_image_dates(
    tracked: gpd.GeoDataFrame,
    period: Period,
    scene_ids: dict[tuple[str, str], tuple[str, ...]],
    scene_dates: dict[str, str],
    first_images: dict[str, str | None],
) -> gpd.GeoDataFrame:
    """``last_image_date``: the newest acquisition of the period's composite over the site's
    chips; ``first_image_date``: the earliest one of the composite the site (or the site it
    split from) was first detected in, kept from that period as ``first_detected`` is.
    ``first_images`` (site id -> first image date) carries it across the periods of the scan."""
    out = tracked.copy()
    firsts: list[str | None] = []
    lasts: list[str | None] = []
    end = period.end.isoformat()
    splits = out["split_from"] if "split_from" in out.columns else [None] * len(out)
    for sid, tile_field, first_detected, split in zip(
        out["site_id"], out["tile_id"], out["first_detected"], splits, strict=True
    ):
        dates = sorted(
            scene_dates[s] for s in scenes_of(tile_field, period, scene_ids) if s in scene_dates
        )
        earlier = str(first_detected) < end
        inherited = first_images.get(str(sid)) or (first_images.get(str(split)) if split else None)
        firsts.append(inherited if earlier and inherited else (dates[0] if dates else None))
        lasts.append(dates[-1] if dates else None)
    out["first_image_date"] = pd.Series(firsts, index=out.index, dtype=object)
    out["last_image_date"] = pd.Series(lasts, index=out.index, dtype=object)
    first_images.update(zip(out["site_id"].astype(str), firsts, strict=True))
    return out


