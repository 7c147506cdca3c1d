"""The unit of work of a scan: one chip of the grid in one period.

A unit reads its scenes, composites them, runs the detector and polygonises the masks. Its result
is saved under ``<output>/units/<period>/<tile_id>.json`` (plus the composite as a COG beside it),
written atomically and last, so a unit either is finished on disk or is not. Its ``key`` hashes
everything that decides its result (chip, period, scene ids, detector and settings): a later scan
with the same key reuses it instead of computing it again. That is what makes scans incremental and
resumable after a crash.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import shapely
from rasterio.features import shapes
from shapely.geometry import box, mapping, shape

from aoi.geometry import to_wgs84
from aoi.grid import GridCell
from detection.sites import MaskOptions, class_mask, polygonize_mask, resolve_thresholds
from models.detector import Detector, Prediction
from tiles.clouds import bands_to_read
from tiles.composite import Composite, composite_period, crop_composite, write_composite
from tiles.errors import HostUnavailableError, TileError
from tiles.files import write_text_atomic
from tiles.periods import Period
from tiles.scene import Scene, SceneInfo
from tiles.sources import Source

log = logging.getLogger(__name__)

UNIT_FORMAT = 1


@dataclass(frozen=True)
class UnitSettings:
    """The settings that decide a unit's result (all part of its key)."""

    bands: tuple[str, ...]
    method: str
    masked_scl: tuple[int, ...]
    dilation_px: int
    model_sha256: str
    #: how probabilities become masks (:mod:`detection.sites`): each class's threshold (a class
    #: not named: 0.5; the scan names every class, resolved from its config and the checkpoint),
    #: hysteresis and morphology. Its minimum mapping unit and simplification apply after the
    #: chips are merged, so they are not part of the key.
    masks: MaskOptions = field(default_factory=MaskOptions)
    #: context read and predicted around the chip, then cropped away (``grid.halo_px``)
    halo_px: int = 0
    #: detector settings that change its output beside the weights (the AMW stride)
    detector_options: tuple[tuple[str, Any], ...] = ()
    #: how clouds are found: ``scl``, ``ukis-csmask`` or ``auto`` (`tiles.clouds`)
    cloud_mask: str = "auto"

    def thresholds(self) -> dict[str, float]:
        """The probability at which a pixel is called each class."""
        return resolve_thresholds(self.masks)

    def as_dict(self) -> dict[str, Any]:
        masks = self.masks
        out: dict[str, Any] = {
            "bands": list(self.bands),
            "method": self.method,
            "masked_scl": list(self.masked_scl),
            "dilation_px": self.dilation_px,
            "model_sha256": self.model_sha256,
            # Always in the key: units made before the detector existed left scenes without SCL
            # unmasked; they are computed again.
            "cloud_mask": self.cloud_mask,
            # The one rule (detection.sites); units made before it (a bare threshold, no
            # morphology) are computed again.
            "sites": {
                "thresholds": self.thresholds(),
                "hysteresis_low": dict(sorted(masks.hysteresis_low.items())),
                "opening_px": masks.opening_px,
                "closing_px": masks.closing_px,
                "connectivity": masks.connectivity,
                "probability_step": "1/254",  # compared as stored (masks.stored_probability)
            },
        }
        # Only when set, so that units saved before halos existed keep their key at halo 0
        # (their result is the same) and are computed again with any halo.
        if self.halo_px:
            out["halo_px"] = self.halo_px
        if self.detector_options:
            out["detector_options"] = dict(self.detector_options)
        return out


#: A unit observed on at least this share of its chip is ``observed`` (else partly, or not).
OBSERVED_SHARE = 0.99


def coverage_status(observed_fraction: float) -> str:
    """What a unit's coverage is called from its clear-observation share: ``observed``,
    ``partly_observed`` or ``not_observed`` (a unit with imagery but no clear pixel)."""
    if observed_fraction >= OBSERVED_SHARE:
        return "observed"
    return "not_observed" if observed_fraction == 0 else "partly_observed"


@dataclass(frozen=True)
class WorkUnit:
    """One chip in one period, with the scenes that cover it."""

    cell: GridCell
    period: Period
    scenes: tuple[SceneInfo, ...]

    def key(self, settings: UnitSettings) -> str:
        payload = {
            "format": UNIT_FORMAT,
            "tile_id": self.cell.tile_id,
            "crs": self.cell.crs.to_string(),
            "transform": list(self.cell.transform)[:6],
            "shape": [self.cell.height, self.cell.width],
            "period": [self.period.start.isoformat(), self.period.end.isoformat()],
            "scenes": sorted(s.scene_id for s in self.scenes),
            "settings": settings.as_dict(),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@dataclass
class UnitResult:
    """What a unit produced. ``parts`` are polygons in EPSG:4326 with ``alert_class``,
    ``tile_id``, ``area_ha``, ``confidence``; ``observed`` is the observed part of the chip."""

    tile_id: str
    period: str
    key: str
    status: str
    observed_fraction: float = 0.0
    mean_clear_observations: float = 0.0
    scenes: int = 0
    reason: str = ""
    scene_ids: tuple[str, ...] = ()
    parts: gpd.GeoDataFrame | None = None
    #: with hysteresis, the polygons of the pixels at the threshold (a site holding none is
    #: dropped once the chips are merged: `detection.sites.finish_sites`)
    seeds: gpd.GeoDataFrame | None = None
    observed: Any = None
    composite: str | None = None
    detections: dict[str, int] = field(default_factory=dict)
    #: scenes left out of the composite because they could not be read: ``(scene_id, reason)``
    dropped: tuple[tuple[str, str], ...] = ()

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    def coverage_row(self) -> dict[str, Any]:
        return {
            "tile_id": self.tile_id,
            "period": self.period,
            "status": self.status,
            "observed_fraction": self.observed_fraction,
            "mean_clear_observations": self.mean_clear_observations,
            "scenes": self.scenes,
            "reason": self.reason,
        }


def unit_path(units_dir: Path, tile_id: str, period: str) -> Path:
    return units_dir / period / f"{tile_id}.json"


def process_unit(
    unit: WorkUnit,
    *,
    source: Source,
    detector: Detector,
    settings: UnitSettings,
    units_dir: Path,
) -> UnitResult:
    """Composite, detect and polygonise one unit; save and return its result.

    The detector sees the chip with its halo (`predict_unit`); everything saved has the chip's
    exact footprint. A scene that cannot be read (404, 403, a permanent 5xx, a truncated or
    corrupt file, an error page) is dropped from the composite with its reason
    (`UnitResult.dropped`) and the unit goes on with the others. A ``TileError`` beyond that
    (every scene dropped, a host whose circuit is open) makes a ``failed`` result with the
    reason, which is not saved, so the next scan tries the unit again.
    """
    cell, period = unit.cell, unit.period
    key = unit.key(settings)
    dropped: list[tuple[str, str]] = []
    try:
        comp, pred, grown = _predict_grown(
            unit, source=source, detector=detector, settings=settings, dropped=dropped
        )
    except TileError as exc:
        if isinstance(exc, HostUnavailableError):
            log.debug("chip %s, period %s failed: %s", cell.tile_id, period.label, exc)
        else:
            log.error("chip %s, period %s failed: %s", cell.tile_id, period.label, exc)
        return UnitResult(
            cell.tile_id,
            period.label,
            key,
            "failed",
            scenes=len(unit.scenes),
            reason=str(exc),
            dropped=tuple(dropped),
        )
    comp = comp if grown is cell else crop_composite(comp, cell)
    frac = float(comp.observed_fraction)
    status = coverage_status(frac)
    parts, seeds = chip_parts(pred, grown, cell, settings.masks)
    detections = (
        {str(k): int(v) for k, v in parts["alert_class"].value_counts().items()}
        if parts is not None
        else {}
    )
    out_dir = units_dir / period.label
    composite_file = write_composite(comp, out_dir, dtype="uint16")["composite"]
    (out_dir / f"{cell.tile_id}_{period.label}_clear_count.tif").unlink(missing_ok=True)
    result = UnitResult(
        tile_id=cell.tile_id,
        period=period.label,
        key=key,
        status=status,
        observed_fraction=round(frac, 4),
        mean_clear_observations=round(float(comp.clear_count.mean()), 3),
        scenes=len(unit.scenes),
        scene_ids=tuple(comp.scene_ids),
        parts=parts,
        seeds=seeds,
        observed=observed_polygon(comp),
        composite=composite_file.name,
        detections=detections,
        reason=_dropped_reason(dropped, len(unit.scenes)),
        dropped=tuple(dropped),
    )
    save_unit(result, units_dir)
    return result


def chip_parts(
    pred: Prediction, grown: GridCell, cell: GridCell, masks: MaskOptions
) -> tuple[gpd.GeoDataFrame | None, gpd.GeoDataFrame | None]:
    """The polygons of a chip's masks under the one rule (:func:`detection.sites.class_mask`).

    The masks are made on the chip grown by its halo (``pred`` covers ``grown``), so the
    morphology at the chip's edges sees what a whole scene would, then cropped to ``cell``.

    Returns:
        The parts (``alert_class``, ``tile_id``, ``area_ha``, ``confidence``, ``geometry`` in
        EPSG:4326), and with hysteresis the seeds' polygons (``alert_class``, ``geometry``);
        None where there are none.
    """
    thresholds = resolve_thresholds(masks)
    rows, cols = grown.slices_of(cell) if grown is not cell else (slice(None), slice(None))
    frames: list[gpd.GeoDataFrame] = []
    seed_frames: list[gpd.GeoDataFrame] = []
    for cls in pred.classes:
        mask, seeds = class_mask(pred.of(cls), cls, thresholds=thresholds, options=masks)
        prob = pred.of(cls)[rows, cols]
        for found, into in ((mask, frames), (seeds, seed_frames)):
            if found is None or not found[rows, cols].any():
                continue
            gdf = to_wgs84(polygonize_mask(
                found[rows, cols], transform=cell.transform, crs=cell.crs, min_area_ha=0.0,
                probabilities=prob, connectivity=masks.connectivity,
            ))
            gdf["alert_class"] = cls
            gdf["tile_id"] = cell.tile_id
            into.append(gdf)
    return _concat(frames), _concat(seed_frames)


def _dropped_reason(dropped: list[tuple[str, str]], total: int) -> str:
    if not dropped:
        return ""
    return f"{len(dropped)} of {total} scene(s) dropped: " + "; ".join(
        f"{sid}: {why}" for sid, why in dropped
    )


def read_scenes(
    unit: WorkUnit,
    cell: GridCell,
    *,
    source: Source,
    bands: tuple[str, ...],
    dropped: list[tuple[str, str]],
    cloud_mask: str = "scl",
) -> Iterator[Scene]:
    """The unit's scenes read onto ``cell``, one at a time, leaving out those that fail; with
    ``cloud_mask`` using the detector on a scene, its bands are read too.

    A scene whose read raises a `TileError` is logged, appended to ``dropped`` with its reason
    and skipped: one bad scene never costs the other scenes of the period.

    Raises:
        HostUnavailableError: the source's host is unreachable (its circuit is open).
        TileError: every scene was dropped (the reasons are in the message).
    """
    for info in unit.scenes:
        try:
            scene = source.read(info, cell, bands=bands_to_read(bands, info, cloud_mask))
        except HostUnavailableError:
            raise
        except TileError as exc:
            log.warning(
                "chip %s, period %s: scene %s dropped: %s",
                unit.cell.tile_id,
                unit.period.label,
                info.scene_id,
                exc,
            )
            dropped.append((info.scene_id, str(exc)))
            continue
        yield scene
    if unit.scenes and len(dropped) == len(unit.scenes):
        why = _dropped_reason(dropped, len(dropped))
        raise TileError(f"every scene of the period could not be read ({why})")


def predict_unit(
    unit: WorkUnit,
    *,
    source: Source,
    detector: Detector,
    settings: UnitSettings,
    dropped: list[tuple[str, str]] | None = None,
) -> tuple[Composite, Prediction]:
    """The composite of a unit's chip and the detector's probabilities on it.

    With ``settings.halo_px`` the scenes are read and composited on the chip grown by that many
    pixels on every side (`GridCell.with_halo`; a halo no scene covers is NaN, unobserved) and the
    detector sees the grown composite, so pixels near the chip's edge are predicted with the
    context a network needs instead of its zero padding. Both are then cropped back to the chip:
    everything after this (observed share, composite file, polygons) has the chip's exact
    footprint.

    Scenes that cannot be read are left out and listed in ``dropped`` (see `read_scenes`).

    Raises:
        TileError: every scene failed to be read, or the source's host is unreachable.
    """
    comp, pred, grown = _predict_grown(
        unit, source=source, detector=detector, settings=settings, dropped=dropped
    )
    cell = unit.cell
    if grown is cell:
        return comp, pred
    rows, cols = grown.slices_of(cell)
    probs = pred.probabilities[:, rows, cols].copy()
    return crop_composite(comp, cell), Prediction(pred.classes, probs)


def _predict_grown(
    unit: WorkUnit,
    *,
    source: Source,
    detector: Detector,
    settings: UnitSettings,
    dropped: list[tuple[str, str]] | None = None,
) -> tuple[Composite, Prediction, GridCell]:
    """The composite of the chip grown by the halo, the detector's probabilities on it, and
    the grown chip (the chip itself without a halo)."""
    cell = unit.cell
    grown = cell.with_halo(settings.halo_px)
    scenes = read_scenes(
        unit, grown, source=source, bands=settings.bands, cloud_mask=settings.cloud_mask,
        dropped=[] if dropped is None else dropped
    )
    comp = composite_period(
        scenes,
        cell=grown,
        period=unit.period,
        bands=settings.bands,
        method=settings.method,  # type: ignore[arg-type]
        masked_scl=settings.masked_scl,
        dilation_px=settings.dilation_px,
        core=cell,
        cloud_mask=settings.cloud_mask,
    )
    return comp, detector.predict(comp.data, comp.bands), grown


def observed_polygon(comp: Composite) -> Any:
    """The observed part of a chip, as one (multi)polygon in EPSG:4326."""
    observed = comp.observed.astype(np.uint8)
    if observed.all():
        geom = box(*comp.cell.bounds)
    else:
        polys = [
            shape(g)
            for g, v in shapes(observed, mask=observed.astype(bool), transform=comp.cell.transform)
            if v
        ]
        if not polys:
            return shapely.Polygon()
        geom = shapely.union_all(polys)
    return to_wgs84(gpd.GeoSeries([geom], crs=comp.cell.crs)).iloc[0]


def save_unit(result: UnitResult, units_dir: Path) -> Path:
    """Write a unit's result as JSON, atomically (its presence marks the unit as done)."""
    parts = result.parts
    record = {
        "format": UNIT_FORMAT,
        "tile_id": result.tile_id,
        "period": result.period,
        "key": result.key,
        "status": result.status,
        "observed_fraction": result.observed_fraction,
        "mean_clear_observations": result.mean_clear_observations,
        "scenes": result.scenes,
        "reason": result.reason,
        "scene_ids": list(result.scene_ids),
        "composite": result.composite,
        "detections": result.detections,
        "observed": mapping(result.observed) if result.observed is not None else None,
        "parts": _features(parts),
    }
    if result.seeds is not None:
        record["seeds"] = _features(result.seeds)
    if result.dropped:
        record["dropped"] = [list(d) for d in result.dropped]
    path = unit_path(units_dir, result.tile_id, result.period)
    write_text_atomic(path, json.dumps(record, sort_keys=True))
    return path


def load_unit(units_dir: Path, tile_id: str, period: str, *, key: str) -> UnitResult | None:
    """A saved unit result whose key is ``key``, or None (missing, stale or unreadable)."""
    path = unit_path(units_dir, tile_id, period)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        log.warning("unit %s: unreadable (%s); computing it again", path, exc)
        return None
    if record.get("key") != key or record.get("format") != UNIT_FORMAT:
        return None
    if record.get("composite") and not (path.parent / record["composite"]).is_file():
        return None
    return UnitResult(
        tile_id=record["tile_id"],
        period=record["period"],
        key=record["key"],
        status=record["status"],
        observed_fraction=record["observed_fraction"],
        mean_clear_observations=record["mean_clear_observations"],
        scenes=record["scenes"],
        reason=record["reason"],
        scene_ids=tuple(record["scene_ids"]),
        parts=_frame(record.get("parts")),
        seeds=_frame(record.get("seeds")),
        observed=shape(record["observed"]) if record.get("observed") else None,
        composite=record.get("composite"),
        detections=record.get("detections", {}),
        dropped=tuple((str(a), str(b)) for a, b in record.get("dropped", [])),
    )


def _features(frame: gpd.GeoDataFrame | None) -> dict[str, Any] | None:
    return json.loads(frame.to_json(drop_id=True)) if frame is not None else None


def _frame(collection: dict[str, Any] | None) -> gpd.GeoDataFrame | None:
    if not collection or not collection["features"]:
        return None
    return gpd.GeoDataFrame.from_features(collection["features"], crs="EPSG:4326")


def _concat(frames: list[gpd.GeoDataFrame]) -> gpd.GeoDataFrame | None:
    if not frames:
        return None
    import pandas as pd

    return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs="EPSG:4326")
