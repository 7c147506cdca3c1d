"""The ``local`` imagery source: a folder of Sentinel-2 L2A or L1C scenes (DESIGN.md section 3).

A folder holds scenes in either layout, side by side:

(a) one GeoTIFF per scene whose band descriptions name the bands (``B02``, ..., optional ``SCL``),
    with the dataset tag ``ACQUISITION_DATETIME`` (ISO 8601) and, for integer files, the tags
    ``BOA_ADD_OFFSET`` and/or ``PROCESSING_BASELINE`` as in the L2A product metadata;
(b) one folder per scene holding one single-band GeoTIFF per band (``B02.tif``, ..., optional
    ``SCL.tif``; bands may have different resolutions, 10/20/60 m) and a ``scene.json``::

        {"datetime": "2024-01-15T14:03:21Z", "processing_baseline": "04.00",
         "boa_add_offset": -1000, "scene_id": "optional name",
         "files": {"B02.tif": {"sha256": "9f86d0..."}, "B03.tif": {"file:checksum": "1220..."}}}

    ``files`` (optional) gives band files their checksums: ``sha256`` (hex, as ``scenes.json``
    records it) or ``file:checksum`` (a multihash, as STAC gives it). A file with a checksum is
    hashed when a run first reads it (once per file per run) and a scene whose file does not match
    is refused with `ChecksumMismatchError` (silent corruption, RELIABILITY.md row 2).

A scene is L2A unless it declares itself L1C: the tag ``PROCESSING_LEVEL=L1C`` (or
``"processing_level": "L1C"`` in scene.json). An L1C scene holds top-of-atmosphere reflectance, may
hold all 13 bands (B10 included) and never an SCL; its integer offset is ``RADIO_ADD_OFFSET``
(``"radio_add_offset"``), the L1C counterpart of ``BOA_ADD_OFFSET``, with the same rule (-1000
from baseline 04.00 on).

Radiometry: float bands hold surface reflectance and are used as they are; integer bands hold L2A
digital numbers, converted with the GDAL band scale/offset when the file sets them, else
``(DN + BOA_ADD_OFFSET) * 1e-4`` where ``BOA_ADD_OFFSET`` comes from the tag, or from the
processing baseline when only the baseline is given (``-1000`` from 04.00 on). An integer scene
that states neither is refused: the offset is never guessed. Every scene is converted to
reflectance on reading, so scenes of different baselines are harmonised here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.windows
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError
from rasterio.io import DatasetReader
from rasterio.warp import reproject, transform_bounds

from aoi.grid import GridCell
from tiles.bands import SCL, check_requested_bands
from tiles.errors import (
    MissingBandError,
    SceneFormatError,
    SceneNotFoundError,
)
from tiles.radiometry import dn_to_reflectance, parse_baseline
from tiles.scene import Scene, SceneInfo
from tiles.sources._local_format import (
    SCENE_JSON,
    TAG_BOA_ADD_OFFSET,
    TAG_DATETIME,
    TAG_PROCESSING_BASELINE,
    TIFF_SUFFIXES,
    UNKNOWN_BASELINE,
    BandSource,
    LocalScene,
    inspect_scene,
    open_tiff,
    tiffs_in,
    verify_checksum,
)

log = logging.getLogger(__name__)

#: Source pixels read around the cell's footprint, so that bilinear kernels at its edge are whole.
_WINDOW_PAD_PX = 2
#: A float band above this holds digital numbers, not reflectance.
_MAX_FLOAT_REFLECTANCE = 10.0


# --------------------------------------------------------------------------------------------
# public API


def list_scenes(
    folder: str | Path,
    *,
    skip_invalid: bool = False,
    rejected: list[SceneFormatError] | None = None,
) -> list[SceneInfo]:
    """List the scenes of a local folder, reading only file headers.

    Duplicate scenes (same acquisition time and footprint, e.g. a product reprocessed with a newer
    baseline; RELIABILITY.md row 18) are reduced to the one of the newest processing baseline;
    each dropped scene is logged.

    Args:
        folder: a folder of single-file scenes (``*.tif``) and/or scene folders (``scene.json``).
        skip_invalid: log and skip scenes that fail validation instead of raising.
        rejected: with ``skip_invalid``, the skipped scenes' errors are appended here so the
            caller can report them (a scan records them as failures of the run).

    Returns:
        The scenes, sorted by acquisition time, then scene id.

    Raises:
        SceneNotFoundError: ``folder`` does not exist or holds no scene.
        SceneFormatError: a scene is not a readable GeoTIFF (zero bytes, an HTML page saved as
            .tif, truncated), has unknown band names, lacks ``ACQUISITION_DATETIME`` or, for integer
            data, lacks both ``BOA_ADD_OFFSET`` and ``PROCESSING_BASELINE``.
    """
    root = Path(folder)
    if not root.is_dir():
        raise SceneNotFoundError(
            f"{root}: scene folder not found (expected a folder of GeoTIFF scenes)"
        )
    scenes: list[LocalScene] = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            if not (entry / SCENE_JSON).is_file():
                if tiffs_in(entry):
                    _maybe_raise(
                        SceneFormatError(
                            f"{entry}: scene folder has GeoTIFFs but no {SCENE_JSON}; add one "
                            f'such as {{"datetime": "2024-01-15T14:03:21Z", '
                            f'"processing_baseline": "04.00", "boa_add_offset": -1000}}'
                        ),
                        skip_invalid,
                        rejected,
                    )
                else:
                    log.debug("%s: not a scene folder, skipped", entry)
                continue
        elif entry.suffix.lower() not in TIFF_SUFFIXES:
            log.debug("%s: not a GeoTIFF, skipped", entry)
            continue
        try:
            scenes.append(inspect_scene(entry))
        except SceneFormatError as exc:
            _maybe_raise(exc, skip_invalid, rejected)
    if not scenes:
        raise SceneNotFoundError(
            f"{root}: no scenes found; expected GeoTIFFs (*.tif) whose band descriptions name "
            f"the bands (B02, ...) with the tag {TAG_DATETIME}, or one folder per scene holding "
            f"B02.tif, ... and {SCENE_JSON}"
        )
    kept = _drop_duplicates(scenes)
    infos = sorted((s.info for s in kept), key=lambda i: (i.datetime, i.scene_id))
    log.info("%s: %d scene(s)", root, len(infos))
    return infos


def read_scene(info: SceneInfo, cell: GridCell, *, bands: Sequence[str]) -> Scene:
    """Read the bands of a local scene onto a grid cell.

    Only the window of each file that covers the cell (plus a two-pixel margin) is read, converted
    to reflectance, then resampled onto the cell's grid: bilinear for reflectance (so 20 m and 60 m
    bands come to the cell's 10 m), nearest for SCL. Pixels outside the scene's footprint or with
    no data in any requested band are not valid and hold NaN. A cell the scene does not cover
    gives an all-invalid scene (see `scene_footprint_intersects` to skip those).

    Args:
        info: a scene listed by `list_scenes`.
        cell: the target grid (CRS, transform, shape).
        bands: the reflectance bands to read, in order (without ``SCL``; it is read when present).

    Returns:
        The scene on the cell's grid; ``scl`` is set when the scene has an SCL band.

    Raises:
        ValueError: ``bands`` is empty, repeats a band, or names ``SCL`` or an unknown band.
        MissingBandError: the scene lacks a requested band.
        SceneNotFoundError: the scene's file(s) no longer exist.
        SceneFormatError: a file is truncated or corrupt, or a float band holds digital numbers.
        ChecksumMismatchError: a file does not match its checksum in scene.json.
    """
    wanted = check_requested_bands(bands)
    local = inspect_scene(Path(info.href))
    missing = [b for b in wanted if b not in local.sources]
    if missing:
        raise MissingBandError(
            f"scene {info.scene_id} ({info.href}): band(s) {missing} not found; the scene has "
            f"{list(local.info.bands) + ([SCL] if local.info.has_scl else [])}"
        )
    for name in (*wanted, SCL):
        if name in local.sources:
            verify_checksum(local.sources[name])
    data = np.full((len(wanted), cell.height, cell.width), np.nan, dtype=np.float32)
    by_path: dict[Path, list[int]] = {}
    for i, name in enumerate(wanted):
        by_path.setdefault(local.sources[name].path, []).append(i)
    for path, indices in by_path.items():
        srcs = [local.sources[wanted[i]] for i in indices]
        data[indices] = _read_reflectance(path, srcs, cell)
    scl = _read_scl(local.sources[SCL], cell) if SCL in local.sources else None
    return Scene.on_cell(info, wanted, data, cell, scl=scl)


def scene_footprint_intersects(info: SceneInfo, cell: GridCell) -> bool:
    """Whether the scene's footprint overlaps the cell (compared in the cell's CRS).

    The footprint is the scene's raster extent; no-data corners of a swath edge still count, so a
    True here can still give an all-invalid read.
    """
    bounds = info.bounds
    if info.crs != cell.crs:
        bounds = transform_bounds(info.crs, cell.crs, *bounds, densify_pts=21)
    left, bottom, right, top = bounds
    c_left, c_bottom, c_right, c_top = cell.bounds
    return left < c_right and right > c_left and bottom < c_top and top > c_bottom


# --------------------------------------------------------------------------------------------
# listing


def _maybe_raise(
    exc: SceneFormatError, skip: bool, rejected: list[SceneFormatError] | None = None
) -> None:
    if not skip:
        raise exc
    log.warning("skipped: %s", exc)
    if rejected is not None:
        rejected.append(exc)


def _baseline_key(baseline: str) -> tuple[int, int]:
    if baseline == UNKNOWN_BASELINE:
        return (-1, -1)
    return parse_baseline(baseline)


def _drop_duplicates(scenes: list[LocalScene]) -> list[LocalScene]:
    """Keep one scene per (acquisition time, footprint): the newest baseline, then last id."""
    groups: dict[tuple[Any, ...], list[LocalScene]] = {}
    for s in scenes:
        # (the level too: an L1C and an L2A of one acquisition are no duplicates but a mix of
        # levels, which a scan refuses)
        key = (
            s.info.datetime,
            s.info.crs.to_string(),
            tuple(round(v) for v in s.footprint),
            s.info.processing_level,
        )
        groups.setdefault(key, []).append(s)
    kept: list[LocalScene] = []
    for group in groups.values():
        group.sort(key=lambda s: (_baseline_key(s.info.processing_baseline), s.info.scene_id))
        best = group[-1]
        for dropped in group[:-1]:
            log.info(
                "dropped duplicate scene %s (baseline %s, %s): same acquisition time %s and "
                "footprint as %s (baseline %s), which is kept",
                dropped.info.scene_id,
                dropped.info.processing_baseline,
                dropped.info.href,
                dropped.info.datetime.isoformat(),
                best.info.scene_id,
                best.info.processing_baseline,
            )
        kept.append(best)
    return kept


# --------------------------------------------------------------------------------------------
# reading pixels


def _source_window(src: DatasetReader, cell: GridCell) -> rasterio.windows.Window | None:
    """The window of ``src`` covering ``cell`` plus a margin; None when they do not overlap."""
    bounds = cell.bounds
    if src.crs != cell.crs:
        bounds = transform_bounds(cell.crs, src.crs, *bounds, densify_pts=21)
    win = rasterio.windows.from_bounds(*bounds, transform=src.transform)
    col0 = max(math.floor(win.col_off) - _WINDOW_PAD_PX, 0)
    row0 = max(math.floor(win.row_off) - _WINDOW_PAD_PX, 0)
    col1 = min(math.ceil(win.col_off + win.width) + _WINDOW_PAD_PX, src.width)
    row1 = min(math.ceil(win.row_off + win.height) + _WINDOW_PAD_PX, src.height)
    if col1 <= col0 or row1 <= row0:
        return None
    return rasterio.windows.Window(col0, row0, col1 - col0, row1 - row0)


def _read_window(
    path: Path, bidxs: list[int], cell: GridCell
) -> tuple[np.ndarray, Affine, CRS] | None:
    """Read the bands ``bidxs`` of ``path`` over the cell's footprint (native resolution)."""
    with open_tiff(path) as src:
        win = _source_window(src, cell)
        if win is None:
            return None
        try:
            arr = src.read(bidxs, window=win)
        except RasterioIOError as exc:
            raise SceneFormatError(
                f"{path}: truncated or corrupt, decoding failed ({exc}); re-download it"
            ) from exc
        log.debug("%s: read window %s for %s", path, win, cell.tile_id)
        # (not src.window_transform: it uses Affine * tuple, deprecated in affine 3)
        transform = src.transform @ Affine.translation(win.col_off, win.row_off)
        return arr, transform, src.crs


def _read_reflectance(path: Path, srcs: list[BandSource], cell: GridCell) -> np.ndarray:
    out = np.full((len(srcs), cell.height, cell.width), np.nan, dtype=np.float32)
    read = _read_window(path, [s.bidx for s in srcs], cell)
    if read is None:
        return out
    raw, transform, crs = read
    refl = np.empty(raw.shape, dtype=np.float32)
    for k, s in enumerate(srcs):
        if s.is_float:
            band = raw[k].astype(np.float32)
            if s.nodata is not None and not np.isnan(s.nodata):
                band[raw[k] == s.nodata] = np.nan
            top = float(np.nanmax(band)) if np.isfinite(band).any() else 0.0
            if top > _MAX_FLOAT_REFLECTANCE:
                raise SceneFormatError(
                    f"{path}: float band {s.name} holds values up to {top:g}; float files must "
                    "hold reflectance (0..1); store digital numbers as integers with "
                    f"{TAG_BOA_ADD_OFFSET}/{TAG_PROCESSING_BASELINE} tags"
                )
            refl[k] = band
        else:
            refl[k] = dn_to_reflectance(raw[k], offset=s.offset, scale=s.scale, nodata=s.nodata)
    reproject(
        source=refl,
        destination=out,
        src_transform=transform,
        src_crs=crs,
        src_nodata=np.nan,
        dst_transform=cell.transform,
        dst_crs=cell.crs,
        dst_nodata=np.nan,
        resampling=Resampling.bilinear,
    )
    return out


def _read_scl(source: BandSource, cell: GridCell) -> np.ndarray:
    out = np.zeros((cell.height, cell.width), dtype=np.uint8)
    read = _read_window(source.path, [source.bidx], cell)
    if read is None:
        return out
    raw, transform, crs = read
    classes = np.nan_to_num(raw[0], nan=0).astype(np.uint8)
    nodata = 0 if source.nodata is None or np.isnan(source.nodata) else int(source.nodata)
    classes[raw[0] == nodata] = 0
    reproject(
        source=classes,
        destination=out,
        src_transform=transform,
        src_crs=crs,
        src_nodata=0,
        dst_transform=cell.transform,
        dst_crs=cell.crs,
        dst_nodata=0,
        resampling=Resampling.nearest,
    )
    return out
