"""Probability rasters to site polygons: thresholds, hysteresis, morphology, minimum mapping unit.

:func:`sites_from_probabilities` reads a probability COG of :func:`detection.inference.
predict_raster` in blocks of rows (with a halo for the morphology), so memory stays bounded on a
whole Sentinel-2 tile:

1. per class (:func:`class_mask`), pixels at or above the class threshold (from the options,
   else the checkpoint's thresholds recorded in the COG, else 0.5) form the mask; with
   hysteresis, pixels at or above the ``low`` threshold do, and the pixels at or above the
   threshold are kept aside as seeds;
2. morphology: a binary opening (removes specks) then a closing (fills pinholes) with square
   structuring elements of ``opening_px`` / ``closing_px`` radius;
3. each block is polygonised (:func:`detection.sites.trace_regions`); the polygons of
   neighbouring blocks are merged (:func:`detection.sites.merge_parts`), so a site crossing a
   block edge is one site;
4. :func:`finish_sites`: with hysteresis a merged site is kept when it holds a seed; then the
   minimum mapping unit (``min_area_ha``, on the equal-area projection), then outlines are
   simplified by ``simplify_m``.

This is the one rule from probabilities to sites: a scan applies steps 1-2 to each chip with
its halo and steps 3-4 to the chips' polygons (:mod:`detection.runs`),
so a scene scanned as chips and the same scene through ``minewatch predict`` give the same
sites. Its settings are the scan config's ``sites`` section (:class:`detection.runs.
SitesConfig`), which ``minewatch predict``'s flags map onto.

:func:`merge_tile_sites` merges the sites of several scenes or tiles the same way: a mine
straddling two tiles is one site.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import cast

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import rasterio.errors
import rasterio.windows
from affine import Affine
from pyproj import CRS
from scipy import ndimage

from detection.errors import ConfigError, InputFormatError, InputReadError
from detection.inference import TAG_THRESHOLDS, UINT8_NODATA, UINT8_SCALE, ProgressFn
from detection.sites._polygonize import TracedRegions, regions_frame, simplify_metres, trace_regions
from detection.sites._sites import merge_parts
from models import site_rule
from models.detector import ALERT_CLASSES
from models.runtime import cpu_threads
from models.site_rule import stored_probability

log = logging.getLogger(__name__)

#: Columns of the tables this module returns, geometry last.
SITE_TABLE_COLUMNS: tuple[str, ...] = (
    "alert_class", "area_ha", "confidence", "tile_id", "geometry",
)

#: Per box of a block: its mask and probabilities (the block's own rows), the mask of the pixels
#: above the class threshold when hysteresis crosses blocks, and the box's transform.
_Boxes = list[tuple[np.ndarray, np.ndarray, "np.ndarray | None", Affine]]


@dataclass(frozen=True)
class MaskOptions:
    """How probabilities become masks and polygons.

    Attributes:
        thresholds: per-class probability thresholds; a class not named here takes the
            checkpoint's threshold recorded in the probability COG, else 0.5.
        hysteresis_low: per-class low thresholds; a class named here uses hysteresis (sites of
            pixels ``>= low``, after the morphology, holding a pixel ``>= threshold`` are kept).
        opening_px: radius of the binary opening (0: none).
        closing_px: radius of the binary closing (0: none).
        min_area_ha: minimum mapping unit of a site (after merging across blocks).
        simplify_m: outline simplification tolerance in metres (None: exact pixel outlines).
        block_rows: rows read per block.
        connectivity: 4 or 8.
    """

    thresholds: Mapping[str, float] = field(default_factory=dict)
    hysteresis_low: Mapping[str, float] = field(default_factory=dict)
    opening_px: int = 1
    closing_px: int = 1
    min_area_ha: float = 0.5
    simplify_m: float | None = 5.0
    block_rows: int = 2048
    connectivity: int = 8

    def __post_init__(self) -> None:
        for what, values in (("thresholds", self.thresholds), ("low", self.hysteresis_low)):
            bad = {k: v for k, v in values.items() if not 0.0 < float(v) <= 1.0}
            unknown = sorted(set(values) - set(ALERT_CLASSES))
            if bad or unknown:
                raise ConfigError(
                    f"masks: {what} {dict(values)}: expected values in (0, 1] for classes "
                    f"{list(ALERT_CLASSES)}; bad {bad or unknown}"
                )
        for name, low in self.hysteresis_low.items():
            high = self.thresholds.get(name)
            if high is not None and low > high:
                raise ConfigError(
                    f"masks: hysteresis low {low} of {name} is above its threshold {high}"
                )
        if self.opening_px < 0 or self.closing_px < 0:
            raise ConfigError(
                f"masks: opening_px {self.opening_px} and closing_px {self.closing_px} must be >= 0"
            )
        if not self.min_area_ha >= 0 or (self.simplify_m is not None and self.simplify_m < 0):
            raise ConfigError(
                f"masks: min_area_ha {self.min_area_ha} and simplify_m {self.simplify_m} must be "
                ">= 0"
            )
        if self.block_rows < 64 or self.connectivity not in (4, 8):
            raise ConfigError(
                f"masks: block_rows {self.block_rows} must be >= 64 and connectivity "
                f"{self.connectivity} 4 or 8"
            )

    @property
    def halo_px(self) -> int:
        """Rows read above and below a block so that the morphology at its edges is exact."""
        return 2 * (self.opening_px + self.closing_px) + 2


def resolve_thresholds(
    options: MaskOptions, recorded: Mapping[str, float] | None = None
) -> dict[str, float]:
    """The threshold of every alert class: the options', else the model's (``recorded``: a
    checkpoint's, see :func:`models.site_rule.checkpoint_thresholds`), else 0.5."""
    return site_rule.resolve_thresholds(ALERT_CLASSES, options.thresholds, recorded)


def class_mask(
    probability: np.ndarray,
    name: str,
    *,
    thresholds: Mapping[str, float],
    options: MaskOptions,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The mask of one class under the rule (steps 1-2 of this module), and its seeds
    (:func:`models.site_rule.class_mask` with the options of class ``name``).

    Args:
        probability: ``(row, col)`` probabilities of class ``name``, NaN where not observed.
        name: the class.
        thresholds: every class's threshold (:func:`resolve_thresholds`).
        options: hysteresis and morphology.

    Returns:
        The mask; with hysteresis for ``name`` the mask is of the pixels ``>= low`` and the
        second array holds its pixels ``>= threshold`` (a site is kept by
        :func:`finish_sites` when it holds one); else None.
    """
    return site_rule.class_mask(
        probability,
        threshold=thresholds[name],
        low=options.hysteresis_low.get(name),
        opening_px=options.opening_px,
        closing_px=options.closing_px,
        connectivity=options.connectivity,
    )


def sites_from_probabilities(
    path: str,
    *,
    options: MaskOptions | None = None,
    tile_id: str = "",
    progress: ProgressFn | None = None,
) -> gpd.GeoDataFrame:
    """Sites of a probability COG, in its CRS, block by block.

    Args:
        path: a probability raster of :func:`detection.inference.predict_raster` (band
            descriptions name the classes).
        options: thresholds, morphology, minimum mapping unit (defaults: :class:`MaskOptions`).
        tile_id: written into the ``tile_id`` column (provenance, for merging across tiles).
        progress: called as ``progress("polygons", done, total)`` per block.

    Returns:
        One row per site with ``alert_class``, ``area_ha`` (EPSG:6933), ``confidence`` (mean
        probability over the site, weighted by area), ``tile_id`` and ``geometry``, in the
        raster's CRS.

    Raises:
        DetectionError: the raster cannot be read, has no CRS, or its bands are not named
            after the alert classes.
    """
    opts = options or MaskOptions()
    try:
        with rasterio.open(path) as src:
            crs, transform = src.crs, src.transform
            height, width = src.height, src.width
            names = [d or "" for d in src.descriptions]
            recorded = src.tags().get(TAG_THRESHOLDS)
            nodata = src.nodata
            dtype = src.dtypes[0]
    except rasterio.errors.RasterioIOError as exc:
        raise InputReadError(f"{path}: cannot read probabilities ({exc})") from exc
    if crs is None:
        raise InputFormatError(f"{path}: has no CRS; expected a probability COG of predict_raster")
    stream = SiteStream(
        crs=crs,
        transform=transform,
        height=height,
        width=width,
        bands=names,
        nodata=UINT8_NODATA if dtype == "uint8" and nodata is None else nodata,
        recorded_thresholds=_recorded(recorded),
        options=opts,
        tile_id=tile_id,
        progress=progress,
        name=path,
    )
    for r0 in range(0, height, opts.block_rows):
        rows = min(opts.block_rows, height - r0)
        stream.add(_read_block(path, rasterio.windows.Window(0, r0, width, rows)), r0)
    return stream.finish()


class SiteStream:
    """Sites of a probability raster fed row block by row block, in order, as it is written.

    :meth:`add` takes rows of any height. Each block of ``options.block_rows`` rows is made
    into masks as soon as its rows and the morphology's halo below it have arrived, on threads
    (one task per block and class: the morphology and most array work release the GIL), and
    traced on the thread that calls :meth:`add` and then :meth:`finish`, one after the other
    (``rasterio.features.shapes`` relies on
    ``warnings.catch_warnings``, which other threads' ``catch_warnings`` would undo). So the
    sites of a scene are ready soon after its last row: :func:`sites_from_probabilities` feeds
    it from a file, ``minewatch predict`` from the predictor while the network runs. The result
    is the same whatever the heights of the rows added.

    Args:
        crs, transform, height, width: the raster's.
        bands: the name of each band; those named after an alert class are used.
        nodata: the value of unobserved pixels (``uint8``: 255; float: NaN or None).
        recorded_thresholds: per-class thresholds the model recommends (the options' win).
        options: thresholds, morphology, minimum mapping unit.
        tile_id: written into the ``tile_id`` column.
        progress: called as ``progress("polygons", done, total)`` per block.
        name: the raster, in log messages.

    Raises:
        DetectionError: no band is named after an alert class.
    """

    def __init__(
        self,
        *,
        crs: CRS,
        transform: Affine,
        height: int,
        width: int,
        bands: Sequence[str],
        nodata: float | None,
        recorded_thresholds: Mapping[str, float] | None = None,
        options: MaskOptions | None = None,
        tile_id: str = "",
        progress: ProgressFn | None = None,
        name: str = "probabilities",
    ) -> None:
        self.opts = opts = options or MaskOptions()
        classes = [c for c in ALERT_CLASSES if c in bands]
        if not classes:
            raise InputFormatError(
                f"{name}: band descriptions {list(bands)}; expected the alert classes "
                f"{list(ALERT_CLASSES)}"
            )
        self.crs, self.transform, self.height, self.width = crs, transform, height, width
        self.nodata, self.tile_id, self.progress, self.name = nodata, tile_id, progress, name
        self.thresholds = resolve_thresholds(opts, recorded_thresholds)
        log.info("%s: thresholds %s", name, self.thresholds)
        self.bands = {c: list(bands).index(c) for c in classes}
        self.starts = list(range(0, height, opts.block_rows))
        self.parts: list[gpd.GeoDataFrame] = []
        self.high_parts: list[gpd.GeoDataFrame] = []
        # The rows received and not yet needed, from row `self._first` on.
        self._rows: list[np.ndarray] = []
        self._first = 0
        self._received = 0
        self._next = 0  # the next block to start
        threads = min(len(self.starts) * len(self.bands), cpu_threads())
        self._in_flight = max(1, threads // len(self.bands))
        self._pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="minewatch-sites")
        self._pending: deque[tuple[int, list[tuple[str, Future[_Boxes]]]]] = deque()

    def add(self, rows: np.ndarray, row: int) -> None:
        """The raster's rows ``row...`` as ``(band, row, col)`` raw values (in order)."""
        if row != self._received or rows.shape[2] != self.width:
            raise InputFormatError(
                f"{self.name}: rows {row}.. of width {rows.shape[2]} added after row "
                f"{self._received}; expected rows {self._received}.. of width {self.width}, "
                "in order"
            )
        self._rows.append(rows)
        self._received += rows.shape[1]
        self._start_blocks(final=False)

    def finish(self) -> gpd.GeoDataFrame:
        """The sites (before the minimum mapping unit when ``min_area_ha`` is 0)."""
        try:
            if self._received != self.height:
                raise InputFormatError(
                    f"{self.name}: {self._received} of {self.height} rows were added"
                )
            self._start_blocks(final=True)
            while self._pending:
                self._collect(*self._pending.popleft())
        finally:
            self.close()
        opts, crs = self.opts, self.crs
        sites = merge_parts(self.parts, tolerance_m=0.5) if self.parts else _empty(crs)
        sites = finish_sites(sites, options=opts, strong=self.high_parts)
        log.info("%s: %d site(s) >= %s ha", self.name, len(sites), opts.min_area_ha)
        return gpd.GeoDataFrame(sites[list(SITE_TABLE_COLUMNS)], geometry="geometry", crs=crs)

    def close(self) -> None:
        """Stops its threads: after :meth:`finish`, or when the rows stop coming."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> SiteStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start_blocks(self, *, final: bool) -> None:
        halo, block_rows = self.opts.halo_px, self.opts.block_rows
        while self._next < len(self.starts):
            r0 = self.starts[self._next]
            a0 = max(0, r0 - halo)
            a1 = min(self.height, r0 + block_rows + halo)
            if self._received < a1 and not final:
                return
            raw = self._take(a0, a1, keep_from=max(0, r0 + block_rows - halo))
            while len(self._pending) >= self._in_flight:
                self._collect(*self._pending.popleft())
            tasks = [
                (n, self._pool.submit(self._block_class, raw, r0, a0, n)) for n in self.bands
            ]
            self._pending.append((self._next, tasks))
            self._next += 1

    def _take(self, a0: int, a1: int, keep_from: int) -> np.ndarray:
        """Rows ``a0:a1`` of those received; rows before ``keep_from`` are let go."""
        held = self._rows[0] if len(self._rows) == 1 else np.concatenate(self._rows, axis=1)
        raw = held[:, a0 - self._first : a1 - self._first]
        self._rows = [held[:, keep_from - self._first :].copy()]  # not a view: frees `held`
        self._first = keep_from
        return raw

    def _block_class(self, raw: np.ndarray, r0: int, a0: int, name: str) -> _Boxes:
        """The masks of one class in one block (rows ``r0``...; ``raw`` starts at ``a0``)."""
        opts, thresholds = self.opts, self.thresholds
        r1 = min(self.height, r0 + opts.block_rows)
        values = raw[self.bands[name]]
        low = opts.hysteresis_low.get(name)
        out: _Boxes = []
        # Every pixel of the final mask lies within the morphology's reach of a pixel at or
        # above the lowest threshold: only boxes around those are worked on.
        seed = _at_least(values, low if low is not None else thresholds[name], self.nodata)
        for (b0, b1, c0, c1), (w0, w1, v0, v1) in _boxes(seed, opts.halo_px):
            # The part of the box in this block's own rows (the halo rows belong to the
            # neighbouring blocks).
            k0, k1 = max(w0, r0 - a0), min(w1, r1 - a0)
            if k1 <= k0:
                continue
            prob = _probabilities(values[b0:b1, c0:c1], self.nodata)
            mask, strong = class_mask(prob, name, thresholds=thresholds, options=opts)
            core = (slice(k0 - b0, k1 - b0), slice(v0 - c0, v1 - c0))
            box_transform = self.transform @ Affine.translation(v0, a0 + k0)
            out.append((mask[core], prob[core], None if strong is None else strong[core],
                        box_transform))
        return out

    def _collect(self, k: int, futures: list[tuple[str, Future[_Boxes]]]) -> None:
        connectivity = self.opts.connectivity
        for name, future in futures:  # in block and class order: the result never varies
            traced, high = TracedRegions(), TracedRegions()
            for mask, prob, strong, box_transform in future.result():
                trace_regions(mask, box_transform, probabilities=prob,
                              connectivity=connectivity, into=traced)
                if strong is not None:
                    trace_regions(strong, box_transform, connectivity=connectivity, into=high)
            if traced.geometries:
                gdf = regions_frame(traced, self.crs)
                gdf["alert_class"] = name
                gdf["tile_id"] = self.tile_id
                self.parts.append(gdf)
            if high.geometries:
                hg = regions_frame(high, self.crs)
                hg["alert_class"] = name
                self.high_parts.append(hg)
        if self.progress is not None:
            self.progress("polygons", k + 1, len(self.starts))


def finish_sites(
    sites: gpd.GeoDataFrame,
    *,
    options: MaskOptions,
    strong: Sequence[gpd.GeoDataFrame] = (),
) -> gpd.GeoDataFrame:
    """Hysteresis, the minimum mapping unit, then outline simplification, of merged sites.

    Applied after merging: a mine cut by a block, chip or tile edge is measured whole.

    Args:
        sites: sites with ``alert_class`` and ``area_ha`` (any CRS; simplification runs in
            metres, in a local UTM zone where the CRS is not metric).
        options: ``hysteresis_low`` (a site of such a class is kept when it meets one of
            ``strong``), ``min_area_ha``, ``simplify_m``.
        strong: the seeds' polygons (``alert_class``, ``geometry``; :func:`class_mask`).
    """
    if len(sites) and options.hysteresis_low:
        sites = _keep_with_high(sites, list(strong), set(options.hysteresis_low))
    sites = sites[sites["area_ha"] >= options.min_area_ha].reset_index(drop=True)
    if options.simplify_m and len(sites):
        sites = sites.set_geometry(simplify_metres(sites.geometry, options.simplify_m))
    return sites


def merge_tile_sites(
    frames: Sequence[gpd.GeoDataFrame],
    *,
    tolerance_m: float = 0.5,
    min_area_ha: float = 0.0,
    simplify_m: float | None = None,
) -> gpd.GeoDataFrame:
    """Merge the sites of several scenes or tiles: a site straddling a tile edge becomes one.

    Frames in one projected CRS are merged there (tile edges abut exactly); frames in several
    CRSs (e.g. two UTM zones) are reprojected to ``EPSG:4326`` first. Sites of overlapping
    tiles that overlap are one site, measured on their union.

    To keep a mine whose pieces on each tile are below the minimum mapping unit, make the
    frames with ``MaskOptions(min_area_ha=0, simplify_m=None)`` and give the unit here.

    Args:
        frames: site tables of :func:`sites_from_probabilities`.
        tolerance_m: sites of the same class closer than this are one site.
        min_area_ha: minimum mapping unit of the merged sites (:func:`finish_sites`).
        simplify_m: outline simplification of the merged sites, in metres.

    Returns:
        The merged sites, in the common projected CRS or in ``EPSG:4326``.

    Raises:
        DetectionError: a frame has no CRS or lacks a column.
    """
    frames = [f for f in frames if len(f)]
    if not frames:
        return _empty(CRS.from_epsg(4326))
    crss = {CRS.from_user_input(f.crs).to_wkt() if f.crs is not None else "" for f in frames}
    if "" in crss:
        raise InputFormatError("merge_tile_sites: a site table has no CRS")
    if len(crss) > 1:
        frames = [f.to_crs("EPSG:4326") for f in frames]
    merged = merge_parts(frames, tolerance_m=tolerance_m)
    return finish_sites(
        merged, options=MaskOptions(min_area_ha=min_area_ha, simplify_m=simplify_m)
    )


def _read_block(path: str, window: rasterio.windows.Window) -> np.ndarray:
    """Raw values of a probability raster's window."""
    try:
        # GDAL decodes the window's blocks on all cores.
        with rasterio.open(path, NUM_THREADS=str(cpu_threads())) as src:
            return cast(np.ndarray, src.read(window=window))
    except rasterio.errors.RasterioIOError as exc:
        raise InputReadError(f"{path}: cannot read probabilities ({exc})") from exc


def _probabilities(raw: np.ndarray, nodata: float | None) -> np.ndarray:
    """Float probabilities of raw values, NaN where not observed (as ``read_probabilities``)."""
    if raw.dtype == np.uint8:
        out = raw.astype(np.float32) / np.float32(UINT8_SCALE)
        out[raw == int(cast(float, nodata))] = np.nan
        return out
    return raw.astype(np.float32, copy=False)


def _at_least(raw: np.ndarray, threshold: float, nodata: float | None) -> np.ndarray:
    """Pixels whose probability is ``>= threshold``, compared as :func:`threshold_mask` does,
    without making floats of a whole block."""
    if raw.dtype != np.uint8:
        values = stored_probability(_probabilities(raw, nodata))
        return cast(np.ndarray, np.nan_to_num(values, nan=0.0) >= threshold)
    levels = (np.arange(256, dtype=np.float32) / np.float32(UINT8_SCALE)) >= threshold
    levels[int(cast(float, nodata))] = False
    if not levels.any():
        return np.zeros(raw.shape, dtype=bool)
    if levels[int(np.argmax(levels)) :].all():  # one cut: a comparison, not a lookup
        return cast(np.ndarray, raw >= np.argmax(levels))
    return cast(np.ndarray, levels[raw])


def _boxes(
    seed: np.ndarray, halo: int
) -> list[tuple[tuple[int, int, int, int], tuple[int, int, int, int]]]:
    """Disjoint boxes around the seed pixels, each with the box to compute it from.

    The array is cut into tiles of ``t = max(16, 2 * halo)`` pixels; tiles holding a seed pixel,
    and their neighbours (so a box reaches at least ``t >= halo`` beyond its seeds), form
    boxes, merged until none overlap. A region of the final mask lies within ``halo`` of its
    seeds, so inside one box; a box computed from itself grown by ``halo`` (clipped to the
    array, whose edges are the same for both) is exactly what the whole array would give.

    Returns:
        ``((b0, b1, c0, c1), (w0, w1, v0, v1))`` per box: the rows/columns to compute from, and
        the box itself.
    """
    t = max(16, 2 * halo)
    rows, cols = seed.shape
    grid = _tiles_any(_tiles_any(seed, t).T, t).T
    if not grid.any():
        return []
    square = np.ones((3, 3), dtype=bool)
    grid = ndimage.binary_dilation(grid, structure=square)
    while True:  # paint each box's rectangle until the boxes are disjoint rectangles
        labels, _n = ndimage.label(grid, structure=square)
        slices = [s for s in ndimage.find_objects(labels) if s is not None]
        painted = np.zeros_like(grid)
        for sl in slices:
            painted[sl] = True
        if np.array_equal(painted, grid):
            break
        grid = painted
    out = []
    for sr, sc in slices:
        w0, w1 = sr.start * t, min(rows, sr.stop * t)
        v0, v1 = sc.start * t, min(cols, sc.stop * t)
        b0, b1 = max(0, w0 - halo), min(rows, w1 + halo)
        c0, c1 = max(0, v0 - halo), min(cols, v1 + halo)
        out.append(((b0, b1, c0, c1), (w0, w1, v0, v1)))
    return out


def _tiles_any(a: np.ndarray, t: int) -> np.ndarray:
    """Whether any element is set in each run of ``t`` rows of a 2-D boolean array."""
    full = (a.shape[0] // t) * t
    parts = [a[:full].reshape(-1, t, a.shape[1]).any(axis=1)]
    if full < a.shape[0]:
        parts.append(a[full:].any(axis=0, keepdims=True))
    return np.concatenate(parts)


def _keep_with_high(
    sites: gpd.GeoDataFrame, highs: list[gpd.GeoDataFrame], classes: set[str]
) -> gpd.GeoDataFrame:
    if not highs:
        return sites[~sites["alert_class"].isin(classes)].reset_index(drop=True)
    high = gpd.GeoDataFrame(
        pd.concat([h.to_crs(sites.crs) for h in highs], ignore_index=True), crs=sites.crs
    )
    keep = np.ones(len(sites), dtype=bool)
    for i, row in enumerate(sites.itertuples()):
        if row.alert_class not in classes:
            continue
        same = high[high["alert_class"] == row.alert_class]
        keep[i] = bool(same.intersects(row.geometry).any())
    return sites[keep].reset_index(drop=True)


def _recorded(tag: str | None) -> dict[str, float]:
    """The thresholds a probability COG records (:data:`TAG_THRESHOLDS`); {} if unreadable."""
    if not tag:
        return {}
    try:
        return {str(k): float(v) for k, v in json.loads(tag).items()}
    except (ValueError, TypeError, AttributeError):
        log.warning("ignoring unreadable %s tag %r", TAG_THRESHOLDS, tag)
        return {}


def _empty(crs: CRS) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {
            "alert_class": pd.Series([], dtype=object),
            "area_ha": pd.Series([], dtype=float),
            "confidence": pd.Series([], dtype=float),
            "tile_id": pd.Series([], dtype=object),
        },
        geometry=gpd.GeoSeries([], crs=crs),
        crs=crs,
    )
