"""A scan: AOIs -> processing grid -> period composites -> detector -> sites -> alerts.

Work is split per chip of the grid and per period. A chip that fails (unreadable scene, no valid
pixels) is recorded with its reason and the scan goes on; what was not observed is written to the
coverage layer, so "no alert" never stands for "not seen".
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import sqlite3
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import shapely
import shapely.ops
from shapely.geometry.base import BaseGeometry

from aoi import buffer_aoi, grid_to_geodataframe, load_aoi, make_grid
from aoi.admin import load_admin
from aoi.grid import GridCell
from aoi.titles import load_titles
from detection.alerts import (
    SATELLITE,
    SENSOR,
    build_feature_collection,
    platforms_of,
    record_scenes,
    site_locations,
    write_evidence,
    write_geojson,
    write_geopackage,
    write_kml,
    write_review_html,
    write_summary_csv,
)
from detection.errors import (
    ConfigError,
    InputFormatError,
    InputNotFoundError,
    OutputExistsError,
    OutputWriteError,
)
from detection.inference import checkpoint_thresholds
from detection.runs._config import ScanConfig
from detection.runs._executor import ExecutorConfig, run_units
from detection.runs._lock import output_lock
from detection.runs._plan import Plan, plan_units
from detection.runs._store import STORE_NAME, RunStore
from detection.runs._tracking import (
    ChipFailure,
    Tracking,
    UnitOutcomes,
    scenes_of,
    track_periods,
)
from detection.runs._units import UnitResult, UnitSettings, WorkUnit, load_unit
from detection.sites import (
    MaskOptions,
    assign_legal_status,
    attribute_admin,
    attribute_aois,
    resolve_thresholds,
)
from models.detector import Detector, for_level
from tiles.bands import BANDS
from tiles.clouds import require_detector
from tiles.errors import TileError
from tiles.files import write_text_atomic
from tiles.periods import Period
from tiles.radiometry import check_one_level
from tiles.sources import Source, SyntheticSource, open_source

log = logging.getLogger(__name__)

#: Version of the alert format written into every output (docs/alerts.md, *Format versions*):
#: 2.0 added image dates, location, areas inside AOIs, municipalities and source fields, paired
#: the evidence scenes and renamed the confidence words.
FORMAT_VERSION = "2.0"

#: Files a scan writes into its output folder; their presence marks a folder as holding results.
OUTPUT_FILES = ("alerts.geojson", "alerts.gpkg", "summary.csv", "review.html", "run.json")

#: ``progress(stage, done, total)``: called by the scan as work advances.
ProgressFn = Callable[[str, int, int], None]



@dataclass
class ScanResult:
    """What a scan produced; ``outcome`` is ``success``, ``partial`` or ``failed``."""

    out_dir: Path
    run_id: str
    periods: list[Period]
    alerts: gpd.GeoDataFrame
    feature_collection: dict[str, Any]
    chips_total: int
    chips_with_imagery: int
    failures: list[ChipFailure] = field(default_factory=list)
    #: per period: mean clear-observation share of the chips that had imagery
    observed_fraction: dict[str, float] = field(default_factory=dict)
    #: per period: share of the AOIs' area (not buffered) with a clear observation
    aoi_observed_fraction: dict[str, float] = field(default_factory=dict)
    #: scenes left out of a unit's composite: ``tile_id``, ``period``, ``scene_id``, ``reason``
    dropped_scenes: list[dict[str, str]] = field(default_factory=list)
    #: periods in which no chip was observed (no imagery, all cloud, or every unit failed)
    unobserved_periods: list[str] = field(default_factory=list)
    #: sites of an earlier period carried into the alerts because their place was not observed
    carried_sites: int = 0
    units_computed: int = 0
    units_reused: int = 0
    world_dir: Path | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def outcome(self) -> str:
        return _outcome(self.failures, self.units_computed + self.units_reused)

    def counts(self) -> dict[str, int]:
        """Alerts by ``class/status``."""
        if self.alerts.empty:
            return {}
        grouped = self.alerts.groupby(["alert_class", "status"]).size()
        return {f"{c}/{s}": int(n) for (c, s), n in grouped.items()}

    def summary(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "outcome": self.outcome,
            "out_dir": str(self.out_dir),
            "period": self.periods[-1].as_dict(),
            "previous_period": self.periods[-2].as_dict(),
            "alerts": len(self.alerts),
            "alerts_by_class_status": self.counts(),
            "chips_total": self.chips_total,
            "chips_with_imagery": self.chips_with_imagery,
            "units_computed": self.units_computed,
            "units_reused": self.units_reused,
            "observed_fraction": self.observed_fraction,
            "aoi_observed_fraction": self.aoi_observed_fraction,
            "unobserved_periods": self.unobserved_periods,
            "carried_sites": self.carried_sites,
            "scenes_dropped": self.dropped_scenes,
            "failures": [f.__dict__ for f in self.failures],
            "seconds": round(self.seconds, 1),
        }


def _outcome(failures: list[ChipFailure], attempted: int) -> str:
    """``failed`` when every unit failed, ``partial`` when a unit failed or a scene of the source
    was skipped (``tile_id`` ``*``), else ``success``."""
    if not failures:
        return "success"
    units_failed = sum(1 for f in failures if f.tile_id != "*")
    return "failed" if units_failed >= attempted else "partial"


def check_output_dir(out_dir: Path, *, scan_identity: str, overwrite: bool) -> None:
    """Refuse to write into a folder that holds results of another scan, unless ``overwrite``.

    A folder whose last run was the same scan (the same config apart from its periods and
    output, see ``ScanConfig.identity``) is this scan's own folder: the new run updates it,
    reusing finished units; that is what a scheduled scan or a ``--since`` backfill does.

    Raises:
        OutputExistsError: results of another config exist and ``overwrite`` is False.
    """
    existing = [name for name in OUTPUT_FILES if (out_dir / name).exists()]
    if not existing or overwrite:
        return
    last = RunStore(out_dir).last_run() if (out_dir / STORE_NAME).exists() else None
    if last is not None and last["scan_identity"] == scan_identity:
        log.info("updating the scan in %s (last run %s)", out_dir, last["run_id"])
        return
    raise OutputExistsError(
        f"output folder {str(out_dir)!r} already holds results of another scan "
        f"({', '.join(existing)}); pass --overwrite to replace them or --out to write elsewhere"
    )


def check_free_space(out_dir: Path, *, min_free_mb: float) -> None:
    """Raise before writing when the output's filesystem is nearly full (RELIABILITY row 16).

    Raises:
        OutputWriteError: less than ``min_free_mb`` MB free.
    """
    free_mb = shutil.disk_usage(out_dir).free / 2**20
    if free_mb < min_free_mb:
        raise OutputWriteError(
            f"only {free_mb:.0f} MB free on the filesystem of {str(out_dir)!r}; a scan needs at "
            f"least {min_free_mb:.0f} MB: free space or pass another --out"
        )


def run_scan(
    config: ScanConfig,
    *,
    detector: Detector,
    out_dir: Path,
    overwrite: bool = False,
    executor: ExecutorConfig | None = None,
    progress: ProgressFn | None = None,
    min_free_mb: float | None = None,
) -> ScanResult:
    """Run one scan and write its outputs into ``out_dir``.

    Finished units of earlier runs with the same inputs are reused, so a scan with no new imagery
    does no model work; a killed scan resumes where it stopped. The output folder is locked for
    the run, and every file is written to a temporary name and renamed.

    Args:
        config: the validated scan config.
        detector: turns composites into class probabilities.
        out_dir: the output folder.
        overwrite: replace results of another scan already in ``out_dir``.
        executor: where units run (default: in this process).
        progress: called as ``progress(stage, done, total)``.
        min_free_mb: free space the output filesystem must keep (default: the config's
            ``output.min_free_mb``).

    Returns:
        The scan's result; its outputs are on disk.

    Raises:
        OutputExistsError: ``out_dir`` holds another scan's results and ``overwrite`` is False.
        OutputLockedError: another scan is writing ``out_dir``.
        ConfigError: fewer than two periods.
        InputNotFoundError: no scene at all over the AOI.
        InputFormatError: the detector needs a band no source reads.
        OutputWriteError: the disk is full.
        AOIError, TileError: the AOI layer or the source cannot be read.
    """
    started = time.monotonic()
    executor = executor or ExecutorConfig()
    if min_free_mb is None:
        min_free_mb = config.output.min_free_mb
    periods = config.periods.resolve()
    if len(periods) < 2:
        raise ConfigError(
            f"periods: got {len(periods)} period(s) {[p.label for p in periods]}; a scan compares "
            "at least two: widen periods.start/end"
        )
    config_sha256 = config.digest()
    check_output_dir(out_dir, scan_identity=config.identity(), overwrite=overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    with output_lock(out_dir):
        check_free_space(out_dir, min_free_mb=min_free_mb)
        if overwrite:
            shutil.rmtree(out_dir / "units", ignore_errors=True)
            (out_dir / STORE_NAME).unlink(missing_ok=True)
        store = RunStore(out_dir)
        run_id = f"{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
        store.start_run(
            run_id,
            config_name=config.name,
            config_sha256=config_sha256,
            scan_identity=config.identity(),
            model_sha256=detector.info.sha256,
            software_version=_software_version(),
            period=periods[-1].as_dict(),
        )
        try:
            result = _scan(
                config,
                detector=detector,
                out_dir=out_dir,
                periods=periods,
                run_id=run_id,
                store=store,
                executor=executor,
                progress=progress,
                min_free_mb=min_free_mb,
            )
        except BaseException as exc:
            try:
                store.finish_run(run_id, outcome="failed", summary={"error": str(exc)})
            except (OSError, sqlite3.Error) as record_exc:
                # A full disk fails this write too: say so once and raise the first error; the
                # next run marks this one 'interrupted'.
                log.error("could not record the failure in %s: %s", store.path, record_exc)
            raise
        result.seconds = time.monotonic() - started
        store.finish_run(run_id, outcome=result.outcome, summary=result.summary())
        _write_run_json(result, config=config)
    return result


def _no_scene_message(source: Source, area: BaseGeometry, periods: list[Period]) -> str:
    """Why no unit exists: no scene covers the AOI. An AOI given as (lat, lon) still lies within
    -90..90 / -180..180 when its longitude does (the Amazon's lands in the Southern Ocean), so the
    source is searched once more with x and y swapped: scenes there mean the axes are swapped."""
    when = f"{periods[0].start}..{periods[-1].end}"
    c = area.centroid
    message = (
        f"no scene of {source.description} covers the AOI (centre lon {c.x:.4f}, lat "
        f"{c.y:.4f}) during {when}; check the source and the periods"
    )
    if abs(c.x) > 90.0:  # swapped, the longitude would be a latitude beyond ±90
        return message
    swapped = shapely.ops.transform(lambda x, y, *_: (y, x), area)
    try:
        found = [
            s for s in source.search(swapped, periods[0].start, periods[-1].end)
            if any(p.contains(s.datetime) for p in periods)
        ]
    except (TileError, ValueError) as exc:
        log.debug("search with swapped axes failed: %s", exc)
        found = []
    if found:
        return (
            f"no scene of {source.description} covers the AOI (centre lon {c.x:.4f}, lat "
            f"{c.y:.4f}) during {when}, but {len(found)} cover it with x and y swapped (centre "
            f"lon {c.y:.4f}, lat {c.x:.4f}): its coordinates look swapped (lat, lon) - GeoJSON "
            "is (lon, lat); swap the axes of the AOI layer"
        )
    return (
        f"{message}; if the AOI was written as (lat, lon), its coordinates may be swapped - "
        f"GeoJSON is (lon, lat): swapped, its centre would be lon {c.y:.4f}, lat {c.x:.4f}"
    )


@dataclass
class _ScanInputs:
    """What the plan step gives the others: the areas, the source, the units and their rule."""

    aois: gpd.GeoDataFrame
    titles: gpd.GeoDataFrame | None
    municipalities: gpd.GeoDataFrame | None
    source: Source
    plan: Plan
    level: str | None
    #: scenes the source could not read: the scan goes on without them and says so
    scene_failures: list[ChipFailure]
    #: acquisition date (``YYYY-MM-DD``) by scene id
    scene_dates: dict[str, str]
    settings: UnitSettings
    cell_geoms: dict[str, Any]
    #: the detector as it reads this scan's processing level (``models.detector.for_level``)
    detector: Detector


def _scan(
    config: ScanConfig,
    *,
    detector: Detector,
    out_dir: Path,
    periods: list[Period],
    run_id: str,
    store: RunStore,
    executor: ExecutorConfig,
    progress: ProgressFn | None,
    min_free_mb: float,
) -> ScanResult:
    """plan -> run units -> track periods -> assemble alerts -> write."""
    inputs = _plan_scan(
        config, detector=detector, out_dir=out_dir, periods=periods, progress=progress
    )
    detector = inputs.detector
    outcomes = _run_scan_units(
        inputs,
        detector=detector,
        out_dir=out_dir,
        run_id=run_id,
        store=store,
        executor=executor,
        progress=progress,
        min_free_mb=min_free_mb,
    )
    tracking = track_periods(
        outcomes, masks=inputs.settings.masks, aois=inputs.aois, scene_dates=inputs.scene_dates
    )
    result = _assemble_alerts(
        config, inputs, outcomes, tracking, detector=detector, out_dir=out_dir, run_id=run_id
    )
    coverage = gpd.GeoDataFrame(outcomes.coverage_rows, geometry="geometry", crs="EPSG:4326")
    _write_outputs(
        result,
        config=config,
        coverage=coverage,
        aois=inputs.aois,
        history=tracking.history,
        titles=inputs.titles,
        composites=outcomes.composites,
    )
    if result.outcome != "failed":
        store.save_history(tracking.history)
    return result


def _plan_scan(
    config: ScanConfig,
    *,
    detector: Detector,
    out_dir: Path,
    periods: list[Period],
    progress: ProgressFn | None,
) -> _ScanInputs:
    """The AOIs, titles, municipalities and grid; the source searched; the units planned.

    Raises:
        InputFormatError: the detector needs a band no source reads, or no scene covers the AOI.
    """
    unreadable = [b for b in detector.bands if b not in BANDS]
    if unreadable:
        raise InputFormatError(
            f"detector {detector.info.name} needs band(s) {unreadable}, which no imagery source "
            f"of this minewatch reads (sources read {sorted(BANDS)}); for the 13-band Amazon "
            "Mining Watch classifier use the 12-band ensemble (the default: leave out "
            "detector.checkpoint, or package:models/weights/amw-48px-v3.2-3.7ensemble.pt), or "
            "run minewatch predict --checkpoint on a 13-band L1C GeoTIFF"
        )
    aois = load_aoi(config.aoi)
    area = buffer_aoi(aois, config.aoi.buffer_m)
    area_geom = shapely.union_all(area.geometry.values)
    titles = (
        load_titles(config.legal.titles, bbox=area_geom.bounds)
        if config.legal.titles is not None
        else None
    )
    municipalities = (
        load_admin(config.admin, bbox=area_geom.bounds) if config.admin is not None else None
    )
    cells = make_grid(
        area_geom, chip_size_px=config.grid.chip_size_px, resolution_m=config.grid.resolution_m
    )
    log.info("AOI layer: %d area(s); grid: %d chip(s)", len(aois), len(cells))

    def _synth_progress(done: int, total: int) -> None:
        if progress:
            progress("synthesising scenes", done, total)

    source = open_source(config.source, workdir=out_dir, progress=_synth_progress)
    plan = plan_units(
        cells,
        periods,
        source.search(area_geom, periods[0].start, periods[-1].end),
        halo_px=config.grid.halo_px,
    )
    in_periods = list(plan.scenes)
    log.info("%d scene(s) from %s inside the scan's periods", len(in_periods), source.description)
    # One processing level per scan, and the cloud detector there when scenes need it: both
    # refused here, before any unit is computed, with the fix.
    level = check_one_level(in_periods)
    require_detector(config.composite.cloud_mask, in_periods)
    if level is not None:
        log.info("processing level %s", level)
        _warn_level_mismatch(detector, level)
    detector = for_level(detector, level)
    options = getattr(detector, "options", {})
    if options.get("toa_offsets"):
        log.info(
            "L1C scenes: the network reads them as surface-like reflectance (top of atmosphere "
            "minus %s, as its real L1C training chips)", options["toa_offsets"],
        )
    # Scenes the source could not read (truncated, corrupt): the scan goes on without them, and
    # says so; the next run tries them again.
    scene_failures = [
        ChipFailure("*", "*", f"scene skipped: {exc}") for exc in getattr(source, "rejected", [])
    ]
    record_scenes(out_dir, in_periods)
    if not plan.active:
        raise InputNotFoundError(_no_scene_message(source, area_geom, periods))
    settings = UnitSettings(
        bands=tuple(detector.bands),
        method=config.composite.method,
        masked_scl=tuple(config.composite.masked_scl),
        dilation_px=config.composite.dilation_px,
        cloud_mask=config.composite.cloud_mask,
        masks=site_rule(config, detector),
        model_sha256=detector.info.sha256,
        halo_px=config.grid.halo_px,
        detector_options=tuple(sorted(options.items())),
    )
    grid_frame = grid_to_geodataframe(cells)
    return _ScanInputs(
        aois=aois,
        titles=titles,
        municipalities=municipalities,
        source=source,
        plan=plan,
        level=level,
        scene_failures=scene_failures,
        scene_dates={s.scene_id: s.datetime.date().isoformat() for s in in_periods},
        settings=settings,
        cell_geoms=dict(zip(grid_frame["tile_id"], grid_frame.geometry, strict=True)),
        detector=detector,
    )


def _run_scan_units(
    inputs: _ScanInputs,
    *,
    detector: Detector,
    out_dir: Path,
    run_id: str,
    store: RunStore,
    executor: ExecutorConfig,
    progress: ProgressFn | None,
    min_free_mb: float,
) -> UnitOutcomes:
    """Reuse the finished units, compute the others, record each in the run store, and gather
    what they gave (coverage, polygons, composites) per period."""
    units_dir = out_dir / "units"
    plan, settings = inputs.plan, inputs.settings
    outcomes = UnitOutcomes(list(plan.periods), failures=list(inputs.scene_failures))
    outcomes.coverage_rows = [
        _coverage_row(cell, period, None, inputs.cell_geoms) for cell, period in plan.no_imagery
    ]
    todo: list[WorkUnit] = []
    finished: list[tuple[WorkUnit, UnitResult, bool]] = []
    for unit in plan.units:
        cached = load_unit(units_dir, unit.cell.tile_id, unit.period.label, key=unit.key(settings))
        if cached is None or cached.dropped:  # scenes dropped last time: try them again
            todo.append(unit)
        else:
            finished.append((unit, cached, True))
    outcomes.computed, outcomes.reused = len(todo), len(finished)
    if todo:
        log.info(
            "%d unit(s) (chip x period) to compute, %d reused from earlier runs, on %s",
            len(todo),
            outcomes.reused,
            executor.describe(),
        )
    else:
        log.info("no new imagery since the last run: all %d unit(s) reused", outcomes.reused)
    total = len(todo) + outcomes.reused
    if progress:
        progress("detecting", outcomes.reused, total)
    computed = run_units(
        todo,
        source=inputs.source,
        detector=detector,
        settings=settings,
        units_dir=units_dir,
        executor=executor,
    )
    for done, (unit, res) in enumerate(computed, start=outcomes.reused + 1):
        finished.append((unit, res, False))
        if progress:
            progress("detecting", done, total)
        if done % 16 == 0:
            check_free_space(out_dir, min_free_mb=min_free_mb)
    finished.sort(key=lambda item: (item[0].cell.tile_id, item[0].period))
    for unit, res, was_reused in finished:
        store.record_unit(
            run_id,
            tile_id=res.tile_id,
            period=res.period,
            status=res.status,
            reused=was_reused,
            observed_fraction=res.observed_fraction,
            scenes=res.scenes,
            reason=res.reason,
            unit_key=res.key,
            scene_ids=res.scene_ids,
            newest_acquisition=max(s.datetime for s in unit.scenes).isoformat(),
        )
        outcomes.coverage_rows.append(_coverage_row(unit.cell, unit.period, res, inputs.cell_geoms))
        outcomes.add(res, units_dir=units_dir)
    return outcomes


def _assemble_alerts(
    config: ScanConfig,
    inputs: _ScanInputs,
    outcomes: UnitOutcomes,
    tracking: Tracking,
    *,
    detector: Detector,
    out_dir: Path,
    run_id: str,
) -> ScanResult:
    """The last period's tracked sites as alerts (AOIs, municipalities, scenes, legal status,
    evidence chips cut from the units' composites) and the run's metadata."""
    periods = list(inputs.plan.periods)
    last, prev = periods[-1], periods[-2]
    alerts = attribute_aois(tracking.tracked, inputs.aois, buffer_m=config.aoi.buffer_m)
    alerts = attribute_admin(alerts, inputs.municipalities)
    alerts = _finish_alerts(alerts, last, outcomes.scene_ids, level=inputs.level)
    alerts = assign_legal_status(
        alerts, aois=inputs.aois, titles=inputs.titles, config=config.legal
    )
    alerts = write_evidence(
        alerts,
        units_dir=out_dir / "units",
        composites=outcomes.composites,
        period=last,
        previous_period=prev,
        out_dir=out_dir,
        scene_dates=inputs.scene_dates,
    )
    metadata: dict[str, Any] = {
        "version": FORMAT_VERSION,
        "run_id": run_id,
        "generated_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "period": last.as_dict(),
        "previous_period": prev.as_dict(),
        "model": detector.info.as_dict(),
        "source": inputs.source.description,
        "confidence_levels": config.alerts.confidence_levels.model_dump(),
    }
    # Said only when it applies, so the alerts of a clean run stay byte for byte the same.
    failures = outcomes.failures
    outcome = _outcome(failures, outcomes.computed + outcomes.reused)
    if outcome != "success":
        metadata["outcome"] = outcome
        metadata["failed_units"] = sum(1 for f in failures if f.tile_id != "*")
    if tracking.unobserved:
        metadata["unobserved_periods"] = tracking.unobserved
    if outcomes.dropped_scenes:
        metadata["dropped_scenes"] = len(outcomes.dropped_scenes)
    source = inputs.source
    return ScanResult(
        out_dir=out_dir,
        run_id=run_id,
        periods=periods,
        alerts=alerts,
        feature_collection=build_feature_collection(alerts, metadata=metadata),
        chips_total=len(inputs.plan.cells),
        chips_with_imagery=len(inputs.plan.active),
        failures=failures,
        observed_fraction=tracking.observed_fraction,
        aoi_observed_fraction=tracking.aoi_observed_fraction,
        units_computed=outcomes.computed,
        units_reused=outcomes.reused,
        world_dir=source.world_dir if isinstance(source, SyntheticSource) else None,
        metadata=metadata,
        dropped_scenes=outcomes.dropped_scenes,
        unobserved_periods=tracking.unobserved,
        carried_sites=tracking.carried,
    )


def _software_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("minewatch")
    except PackageNotFoundError:  # pragma: no cover - a bare checkout
        return "0.0.0+unknown"


def _coverage_row(
    cell: GridCell, period: Period, res: UnitResult | None, geoms: dict[str, Any]
) -> dict[str, Any]:
    base = {
        "tile_id": cell.tile_id,
        "period": period.label,
        "period_start": period.start.isoformat(),
        "period_end": period.end.isoformat(),
    }
    if res is None:
        row = base | {
            "status": "no_imagery",
            "observed_fraction": 0.0,
            "mean_clear_observations": 0.0,
            "scenes": 0,
            "reason": "",
        }
        geom = geoms[cell.tile_id]
    else:
        row = base | res.coverage_row()
        geom = geoms[cell.tile_id]
    return row | {"geometry": geom}


def _finish_alerts(
    alerts: gpd.GeoDataFrame,
    period: Period,
    scene_ids: dict[tuple[str, str], tuple[str, ...]],
    *,
    level: str | None,
) -> gpd.GeoDataFrame:
    alerts = alerts.copy()
    alerts["period_start"] = period.start.isoformat()
    alerts["period_end"] = period.end.isoformat()
    ids = [scenes_of(tile_field, period, scene_ids) for tile_field in alerts.get("tile_id", [])]
    alerts["scene_ids"] = pd.Series(ids, index=alerts.index, dtype=object)
    alerts["satellite"] = SATELLITE
    alerts["platforms"] = pd.Series(
        [platforms_of(i) for i in ids], index=alerts.index, dtype=object
    )
    alerts["sensor"] = SENSOR
    alerts["processing_level"] = level
    located = site_locations(alerts.geometry.to_crs(4326))
    alerts["lon"] = [x for x, _ in located]
    alerts["lat"] = [y for _, y in located]
    if "evidence" not in alerts:
        alerts["evidence"] = [{} for _ in range(len(alerts))]
    if "review_status" not in alerts:
        alerts["review_status"] = "unreviewed"
    return alerts


def _write_outputs(
    result: ScanResult,
    *,
    config: ScanConfig,
    coverage: gpd.GeoDataFrame,
    aois: gpd.GeoDataFrame,
    history: gpd.GeoDataFrame | None,
    titles: gpd.GeoDataFrame | None = None,
    composites: dict[str, list[Path]] | None = None,
) -> None:
    out = result.out_dir
    out.mkdir(parents=True, exist_ok=True)
    if result.outcome == "failed" and (out / "alerts.geojson").is_file():
        log.error(
            "run %s failed (every unit failed): the alerts, GeoPackage, CSV, KML and review "
            "page of the last run in %s are kept unchanged; run.json records this failure",
            result.run_id,
            out,
        )
        return
    write_geojson(out / "alerts.geojson", result.feature_collection)
    write_geopackage(
        out / "alerts.gpkg",
        alerts=result.alerts,
        coverage=coverage,
        aois=aois,
        history=history,
        thresholds=result.metadata["confidence_levels"],
        titles=titles,
        run=result.metadata,
    )
    write_summary_csv(out / "summary.csv", result.feature_collection)
    coverage_fc = json.loads(coverage.to_json(drop_id=True))
    write_review_html(
        out / "review.html",
        result.feature_collection,
        title=f"minewatch: {config.name}",
        coverage_fc=coverage_fc,
        units_dir=out / "units",
        composites=composites,
        period=result.periods[-1],
        previous_period=result.periods[-2],
    )
    write_kml(out / "alerts.kml", result.feature_collection)


def _write_run_json(result: ScanResult, *, config: ScanConfig) -> None:
    record = {
        **result.summary(),
        "config_sha256": config.digest(),
        "config": config.model_dump(mode="json"),
        "metadata": result.metadata,
        "periods": [p.label for p in result.periods],
    }
    write_text_atomic(result.out_dir / "run.json", json.dumps(record, indent=2, default=str) + "\n")


def _warn_level_mismatch(detector: Any, level: str) -> None:
    """Say so when the scenes are of another processing level than the network was trained on
    (Amazon Mining Watch's classifiers: L1C top of atmosphere): it runs, outside its training."""
    checkpoint = getattr(detector, "checkpoint", None)
    if checkpoint is None:
        return
    trained = checkpoint.metadata.extra.get("processing_level")
    if trained and trained != level:
        log.warning(
            "the detector %s was trained on %s scenes and this scan reads %s: its scores are "
            "outside what it was measured on; scan %s scenes for it (e.g. source.collection "
            "sentinel-2-%s)",
            checkpoint.metadata.name, trained, level, trained, trained.lower(),
        )


def site_rule(config: ScanConfig, detector: Any) -> MaskOptions:
    """The scan's rule from probabilities to sites: its ``sites`` section, each class's
    threshold resolved (the config's, else a checkpoint's own, else 0.5)."""
    checkpoint = getattr(detector, "checkpoint", None)
    recorded = checkpoint_thresholds(checkpoint) if checkpoint is not None else {}
    masks = config.sites.mask_options()
    return replace(masks, thresholds=resolve_thresholds(masks, recorded))
