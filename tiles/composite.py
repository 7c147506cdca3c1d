"""Per-period cloud-free composites and clear-observation counts (DESIGN.md section 4).

For one grid cell and one period, every scene is masked (`tiles.masks.clear_mask`: its SCL, or
the trained cloud/shadow detector of `tiles.clouds` when it has none, per ``cloud_mask``) and the
clear observations are combined per pixel:

- ``median`` (default): the NaN-aware median of every clear observation, band by band.
- ``best``: the whole spectrum of the clear observation with the lowest blue (B02) reflectance.
  Lowest blue avoids haze and thin cloud edges the SCL missed. Highest NDVI, the other common
  rule, is not offered: it prefers vegetated dates and so hides the fresh clearings and bare
  mining sediment this project looks for.

The clear-observation count records how often each pixel was seen. A pixel never seen clearly is
NaN in the composite and 0 in the count: "not observed", never "no change".

Observations are counted per pass (solar day), not per scene: the MGRS tiles of one acquisition
overlap by about 10 km, so a chip there is read from two or more scenes of the same pass
(`tiles.scene.same_pass`: same platform and relative orbit, within minutes). They are mosaicked
first (the first clear pixel wins), so each pass is one observation in the median and in the
count, as it is away from the overlaps.

Scenes must already be on the cell's grid and in reflectance (as `tiles.sources.read_scene` gives
them); scenes of different processing baselines can be mixed since each was converted to
reflectance with its own offset when read. Scenes of different processing levels (L1C top of
atmosphere, L2A surface) are never mixed (`tiles.errors.LevelMixError`).
"""

from __future__ import annotations

import datetime as dt
import logging
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np

from aoi.grid import GridCell
from tiles.bands import DEFAULT_MASKED_SCL, check_band_names
from tiles.clouds import check_cloud_mask, uses_detector
from tiles.cog import write_cog
from tiles.errors import CloudyPeriodWarning
from tiles.masks import check_mask_options, clear_mask
from tiles.periods import Period
from tiles.radiometry import TAG_REFLECTANCE_SCALE, check_one_level
from tiles.scene import Scene, SceneInfo, same_pass

log = logging.getLogger(__name__)

Method = Literal["median", "best"]
_METHODS: tuple[str, ...] = ("median", "best")
#: The band ``best`` minimises.
BEST_BAND = "B02"


@dataclass(frozen=True)
class Composite:
    """A cloud-masked composite of one grid cell over one period.

    Attributes:
        cell: the grid cell; ``data`` is on its grid.
        period: the period composited.
        bands: band names in the order of ``data``.
        data: ``(band, row, col)`` float32 reflectance, NaN where no clear observation.
        clear_count: ``(row, col)`` uint16, clear observations per pixel.
        scene_ids: scenes that contributed at least one clear pixel, by acquisition time.
        method: ``"median"`` or ``"best"``.
    """

    cell: GridCell
    period: Period
    bands: tuple[str, ...]
    data: np.ndarray
    clear_count: np.ndarray
    scene_ids: tuple[str, ...]
    method: str = "median"

    def __post_init__(self) -> None:
        shape = self.cell.shape
        if self.data.shape != (len(self.bands), *shape):
            raise ValueError(
                f"composite {self.cell.tile_id} {self.period.label}: data shape "
                f"{self.data.shape} != ({len(self.bands)}, {shape[0]}, {shape[1]})"
            )
        if self.clear_count.shape != shape:
            raise ValueError(
                f"composite {self.cell.tile_id} {self.period.label}: clear_count shape "
                f"{self.clear_count.shape} != {shape}"
            )
        if self.data.dtype != np.float32 or self.clear_count.dtype != np.uint16:
            raise ValueError(
                f"composite {self.cell.tile_id} {self.period.label}: dtypes "
                f"{self.data.dtype}/{self.clear_count.dtype}, expected float32/uint16"
            )

    @property
    def observed(self) -> np.ndarray:
        """``(row, col)`` bool, True where at least one clear observation exists."""
        return np.asarray(self.clear_count > 0)

    @property
    def observed_fraction(self) -> float:
        """Share of the cell's pixels with at least one clear observation (0..1)."""
        return float(self.observed.mean())


@dataclass
class _Pass:
    """One acquisition (pass) on the cell, mosaicked from its scenes: the first clear pixel."""

    info: SceneInfo
    clear: np.ndarray  # (row, col) bool
    values: np.ndarray | None  # median: (band, row, col) float32, NaN where not clear
    scenes: int = 1

    def add(self, clear: np.ndarray, values: np.ndarray | None) -> None:
        new = clear & ~self.clear
        self.clear |= new
        if self.values is not None and values is not None:
            self.values[:, new] = values[:, new]
        self.scenes += 1


def _add_to_pass(
    passes: list[_Pass], info: SceneInfo, clear: np.ndarray, values: np.ndarray | None
) -> None:
    """Mosaic a scene's clear pixels into its pass (a new one when no pass has it)."""
    for p in passes:
        if same_pass(p.info, info):
            p.add(clear, values)
            return
    own = None if values is None else np.where(clear, values, np.float32(np.nan))
    passes.append(_Pass(info, clear.copy(), own))


def _check_scene(scene: Scene, cell: GridCell, period: Period, seen: set[str]) -> None:
    sid = scene.info.scene_id
    if not period.contains(scene.info.datetime):
        raise ValueError(
            f"scene {sid} acquired {scene.info.datetime.isoformat()} is outside period "
            f"{period.label} ({period.start}..{period.end}); select scenes by period first"
        )
    if sid in seen:
        raise ValueError(f"scene {sid} given twice for {cell.tile_id} {period.label}")
    seen.add(sid)
    if scene.crs != cell.crs:
        raise ValueError(
            f"scene {sid}: CRS {scene.crs} differs from cell {cell.tile_id}'s {cell.crs}; "
            "read scenes onto the cell's grid first"
        )
    if scene.data.shape[1:] != cell.shape or not scene.transform.almost_equals(cell.transform):
        raise ValueError(
            f"scene {sid}: grid {scene.data.shape[1:]} {tuple(scene.transform)[:6]} differs "
            f"from cell {cell.tile_id}'s {cell.shape} {tuple(cell.transform)[:6]}; read scenes "
            "onto the cell's grid first"
        )


def composite_period(
    scenes: Iterable[Scene],
    *,
    cell: GridCell,
    period: Period,
    bands: Sequence[str],
    method: Method = "median",
    masked_scl: Sequence[int] = DEFAULT_MASKED_SCL,
    dilation_px: int = 0,
    core: GridCell | None = None,
    cloud_mask: str = "auto",
) -> Composite:
    """Composite the clear observations of one cell over one period.

    Scenes are consumed one at a time: ``median`` holds only the clear observations of this
    cell and period (one layer per pass), ``best`` holds only the running best. Scenes of one
    pass (the MGRS tiles of one acquisition, `tiles.scene.same_pass`) are mosaicked, first clear
    pixel first, and count as one observation.

    Args:
        scenes: scenes on ``cell``'s grid, acquired within ``period`` (a generator is fine).
        cell: the grid cell.
        period: the period; every scene must fall within it.
        bands: bands of the composite, in order; every scene must have them (and B02 for
            ``best``).
        method: ``"median"`` (per band, NaN-aware) or ``"best"`` (lowest-blue observation).
        masked_scl: SCL classes that are not clear (see `tiles.masks.clear_mask`).
        dilation_px: radius by which cloud and shadow classes are grown.
        core: the part of ``cell`` the composite is for when ``cell`` is a chip with a halo
            around it (`GridCell.with_halo`): ``scene_ids``, the log and the not-observed warning
            count only its pixels, so `crop_composite` to ``core`` gives the chip's composite.
            Default: the whole cell.
        cloud_mask: ``scl``, ``ukis-csmask`` or ``auto`` (default: the SCL where a scene has
            one, else the detector; see `tiles.clouds`). Scenes masked by the detector must hold
            its bands (read them with `tiles.clouds.mask_bands`).

    Returns:
        The composite on ``cell``. When nothing was observed clearly (in ``core``), its data is
        all NaN there and its counts 0, and a `CloudyPeriodWarning` says the cell was not
        observed in the period.

    Raises:
        ValueError: an unknown method, band or SCL class; a scene outside the period, on another
            grid, or given twice; a ``core`` not on ``cell``'s pixel grid inside it.
        MissingBandError: a scene lacks a requested band (or B02 for ``best``), or the bands the
            cloud detector needs.
        LevelMixError: scenes of different processing levels (L1C and L2A).
        CloudDetectorMissingError: a scene needs the cloud detector and it is not installed.
    """
    wanted = _check_options(method, bands, masked_scl, dilation_px, cloud_mask)
    run = _Run(
        cell=cell,
        period=period,
        bands=wanted,
        method=method,
        masked_scl=masked_scl,
        dilation_px=dilation_px,
        cloud_mask=cloud_mask,
        inside=cell.slices_of(core) if core is not None else (slice(None), slice(None)),
        name=(core or cell).tile_id,
    )
    for scene in scenes:
        run.add(scene)
    run.log_masking()
    composite = run.finish()
    observed = composite.observed[run.inside]
    if not observed.any():
        warnings.warn(
            f"tile {run.name}, period {period.label}: not observed: no clear observation in "
            f"{run.n_scenes} scene(s); the composite is all NaN; report it as not observed, "
            "never as no change",
            CloudyPeriodWarning,
            stacklevel=2,
        )
    else:
        log.info(
            "%s %s: %s composite of %d scene(s) (%d contributed), %.1f%% observed",
            run.name,
            period.label,
            method,
            run.n_scenes,
            len(run.contributed),
            100.0 * float(observed.mean()),
        )
    return composite


def _check_options(
    method: str,
    bands: Sequence[str],
    masked_scl: Sequence[int],
    dilation_px: int,
    cloud_mask: str,
) -> tuple[str, ...]:
    """Validate `composite_period`'s options; return its bands as a checked tuple."""
    if method not in _METHODS:
        raise ValueError(f"composite method {method!r}: expected one of {list(_METHODS)}")
    wanted = check_band_names(list(bands))
    if not wanted:
        raise ValueError("bands is empty: name the bands to composite, e.g. ('B02', 'B03')")
    check_mask_options(masked_scl, dilation_px)
    check_cloud_mask(cloud_mask)
    return wanted


@dataclass
class _Run:
    """The state of one `composite_period`: its options, the passes (``median``: the values
    per pass, NaN where not clear) or the running best spectrum (``best``), and what was seen."""

    cell: GridCell
    period: Period
    bands: tuple[str, ...]
    method: Method
    masked_scl: Sequence[int]
    dilation_px: int
    cloud_mask: str
    inside: tuple[slice, slice]
    name: str
    passes: list[_Pass] = field(default_factory=list)
    contributed: list[tuple[dt.datetime, str]] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    no_scl: list[str] = field(default_factory=list)
    detected: list[str] = field(default_factory=list)
    first: SceneInfo | None = None
    n_scenes: int = 0
    best: np.ndarray = field(init=False)
    best_blue: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        height, width = self.cell.shape
        n = len(self.bands)
        best_shape = (n, height, width) if self.method == "best" else (n, 0, 0)
        self.best = np.full(best_shape, np.nan, dtype=np.float32)
        self.best_blue = np.full(best_shape[1:], np.inf, dtype=np.float32)

    def add(self, scene: Scene) -> None:
        """Check one scene, mask it and add its clear pixels to its pass (and the best)."""
        self.n_scenes += 1
        _check_scene(scene, self.cell, self.period, self.seen)
        self.first = self.first or scene.info
        check_one_level((self.first, scene.info))
        if uses_detector(self.cloud_mask, has_scl=scene.scl is not None):
            self.detected.append(scene.info.scene_id)
        elif scene.scl is None:
            self.no_scl.append(scene.info.scene_id)
        clear = clear_mask(
            scene,
            masked_scl=self.masked_scl,
            dilation_px=self.dilation_px,
            log_missing_scl=False,
            cloud_mask=self.cloud_mask,
        )
        values = np.stack([scene.band(b) for b in self.bands]).astype(np.float32, copy=False)
        clear &= np.all(np.isfinite(values), axis=0)
        blue = scene.band(BEST_BAND) if self.method == "best" else values[0]
        clear &= np.isfinite(blue)
        if not clear.any():
            log.debug("scene %s: no clear pixel on %s", scene.info.scene_id, self.cell.tile_id)
            return
        if clear[self.inside].any():
            self.contributed.append((scene.info.datetime, scene.info.scene_id))
        _add_to_pass(self.passes, scene.info, clear, values if self.method == "median" else None)
        if self.method == "best":
            better = clear & (blue < self.best_blue)
            self.best_blue[better] = blue[better]
            self.best[:, better] = values[:, better]

    def log_masking(self) -> None:
        """Log the scenes masked by the cloud detector, and warn of those left unmasked."""
        if self.detected:
            log.info(
                "%s %s: %d of %d scene(s) masked by the cloud detector (cloud_mask %s): %s",
                self.cell.tile_id,
                self.period.label,
                len(self.detected),
                self.n_scenes,
                self.cloud_mask,
                ", ".join(self.detected),
            )
        if self.no_scl:
            log.warning(
                "%s %s: %d of %d scene(s) have no SCL band, so no cloud mask was applied to "
                "them (cloud_mask scl; 'auto' masks them with the cloud detector): %s",
                self.cell.tile_id,
                self.period.label,
                len(self.no_scl),
                self.n_scenes,
                ", ".join(self.no_scl),
            )

    def finish(self) -> Composite:
        """The composite: the clear count per pass, the median or the best; frees the passes."""
        count = np.zeros(self.cell.shape, dtype=np.uint16)
        for p in self.passes:
            count += p.clear.astype(np.uint16)
        merged = [p for p in self.passes if p.scenes > 1]
        if merged:
            log.info(
                "%s %s: %d scene(s) of %d pass(es) mosaicked (the MGRS tiles of one "
                "acquisition count once): %s",
                self.name,
                self.period.label,
                sum(p.scenes for p in merged),
                len(merged),
                ", ".join(f"{p.info.datetime:%Y-%m-%d %H:%M}" for p in merged),
            )
        if self.method == "median":
            stack = [p.values for p in self.passes if p.values is not None]
            data = _nanmedian(stack, len(self.bands), self.cell.shape)
            del stack
        else:
            data = self.best
        self.passes = []
        return Composite(
            cell=self.cell,
            period=self.period,
            bands=self.bands,
            data=data,
            clear_count=count,
            scene_ids=tuple(sid for _, sid in sorted(self.contributed)),
            method=self.method,
        )


def crop_composite(composite: Composite, cell: GridCell) -> Composite:
    """The part of ``composite`` on ``cell``: a cell on the same pixel grid inside the
    composite's (the chip of a composite made with a halo). ``scene_ids`` are kept: make the
    composite with ``core=cell`` so that they are the chip's.

    Raises:
        ValueError: ``cell`` is not on the composite's pixel grid, or reaches outside it.
    """
    if cell == composite.cell:
        return composite
    rows, cols = composite.cell.slices_of(cell)
    return replace(
        composite,
        cell=cell,
        data=composite.data[:, rows, cols].copy(),
        clear_count=composite.clear_count[rows, cols].copy(),
    )


def _nanmedian(stack: list[np.ndarray], n_bands: int, shape: tuple[int, int]) -> np.ndarray:
    """Per-pixel NaN-aware median over a list of ``(band,row,col)`` arrays, one band at a time."""
    out = np.full((n_bands, *shape), np.nan, dtype=np.float32)
    if not stack:
        return out
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "All-NaN slice encountered", RuntimeWarning)
        for b in range(n_bands):
            layer = np.stack([s[b] for s in stack])
            out[b] = np.nanmedian(layer, axis=0).astype(np.float32)
    return out


def composite_paths(composite: Composite, folder: str | Path) -> dict[str, Path]:
    """Where `write_composite` writes: ``{"composite": ..., "clear_count": ...}``."""
    stem = f"{composite.cell.tile_id}_{composite.period.label}"
    base = Path(folder)
    return {
        "composite": base / f"{stem}_composite.tif",
        "clear_count": base / f"{stem}_clear_count.tif",
    }


def write_composite(
    composite: Composite, folder: str | Path, *, dtype: Literal["float32", "uint16"] = "float32"
) -> dict[str, Path]:
    """Write a composite and its clear-observation count as COGs.

    ``<tile_id>_<period>_composite.tif``: float32 reflectance, one band per composite band named
    in the band descriptions, nodata NaN. ``<tile_id>_<period>_clear_count.tif``: uint16 count.
    Both carry the tags ``TILE_ID``, ``PERIOD``, ``PERIOD_START``, ``PERIOD_END``,
    ``COMPOSITE_METHOD`` and ``SCENE_IDS``. Each file is written atomically.

    With ``dtype="uint16"`` the composite is stored like L2A digital numbers without offset:
    ``round(reflectance * 10000)``, nodata 0, tag ``REFLECTANCE_SCALE=0.0001`` (half the size).

    Args:
        composite: the composite.
        folder: output folder (created when missing).
        dtype: ``float32`` reflectance, or ``uint16`` scaled reflectance.

    Returns:
        ``{"composite": path, "clear_count": path}``.

    Raises:
        OSError: the folder cannot be written (e.g. disk full); no half file is left behind.
    """
    paths = composite_paths(composite, folder)
    cell = composite.cell
    tags = {
        "TILE_ID": cell.tile_id,
        "PERIOD": composite.period.label,
        "PERIOD_START": composite.period.start.isoformat(),
        "PERIOD_END": composite.period.end.isoformat(),
        "COMPOSITE_METHOD": composite.method,
        "SCENE_IDS": ",".join(composite.scene_ids),
    }
    data: np.ndarray = composite.data
    nodata: float = float("nan")
    if dtype == "uint16":
        scaled = np.nan_to_num(composite.data * 10000.0, nan=0.0)
        data = np.clip(np.rint(scaled), 1, 65535).astype(np.uint16)
        data[:, ~np.isfinite(composite.data).all(axis=0)] = 0
        nodata = 0
        tags[TAG_REFLECTANCE_SCALE] = "0.0001"
    write_cog(
        paths["composite"],
        data,
        crs=cell.crs,
        transform=cell.transform,
        nodata=nodata,
        band_descriptions=list(composite.bands),
        tags=tags,
        resampling="average",
    )
    write_cog(
        paths["clear_count"],
        composite.clear_count,
        crs=cell.crs,
        transform=cell.transform,
        nodata=None,
        band_descriptions=["clear_count"],
        tags=tags,
        resampling="nearest",
    )
    log.info("%s %s: wrote %s", cell.tile_id, composite.period.label, paths["composite"])
    return paths
