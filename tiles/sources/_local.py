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

import dataclasses
import datetime as dt
import functools
import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
from tiles.bands import BANDS, SCL, check_requested_bands
from tiles.cache import parse_multihash, verify_file
from tiles.errors import (
    ChecksumMismatchError,
    MissingBandError,
    SceneFormatError,
    SceneNotFoundError,
)
from tiles.radiometry import L2A_SCALE, add_offset, dn_to_reflectance, parse_baseline
from tiles.radiometry import format_baseline as _format_baseline
from tiles.scene import Scene, SceneInfo

log = logging.getLogger(__name__)

#: Dataset tag holding the acquisition time (ISO 8601).
TAG_DATETIME = "ACQUISITION_DATETIME"
#: Dataset tag holding the DN offset of integer files (e.g. ``-1000``).
TAG_BOA_ADD_OFFSET = "BOA_ADD_OFFSET"
#: Dataset tag holding the processing baseline (e.g. ``04.00``).
TAG_PROCESSING_BASELINE = "PROCESSING_BASELINE"
#: Dataset tag holding the processing level (``L2A``, the default, or ``L1C``).
TAG_PROCESSING_LEVEL = "PROCESSING_LEVEL"
#: Dataset tag holding the DN offset of integer L1C files (e.g. ``-1000``).
TAG_RADIO_ADD_OFFSET = "RADIO_ADD_OFFSET"
#: The metadata file of a per-band scene folder.
SCENE_JSON = "scene.json"
#: ``SceneInfo.processing_baseline`` of a scene that does not state its baseline.
UNKNOWN_BASELINE = "unknown"

TIFF_SUFFIXES = (".tif", ".tiff")
_SCENE_JSON_KEYS = frozenset(
    {
        "datetime",
        "processing_baseline",
        "boa_add_offset",
        "radio_add_offset",
        "processing_level",
        "scene_id",
        "files",
    }
)
#: The checksum keys of a file in scene.json's ``files``.
_CHECKSUM_KEYS = ("sha256", "file:checksum")
#: Multihash prefix of a sha2-256 digest (code 0x12, 32 bytes).
_SHA256_MULTIHASH = "1220"
#: Spellings of the processing levels accepted in tags and scene.json.
_LEVELS = {
    "L1C": "L1C",
    "LEVEL-1C": "L1C",
    "S2MSI1C": "L1C",
    "L2A": "L2A",
    "LEVEL-2A": "L2A",
    "S2MSI2A": "L2A",
}
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_SHORT_BAND = re.compile(r"^B(\d)$")
#: Source pixels read around the cell's footprint, so that bilinear kernels at its edge are whole.
_WINDOW_PAD_PX = 2
#: A float band above this holds digital numbers, not reflectance.
_MAX_FLOAT_REFLECTANCE = 10.0


@dataclass(frozen=True)
class _BandSource:
    """Where one band of a local scene lies and how its values become reflectance."""

    name: str
    path: Path
    bidx: int
    is_float: bool
    nodata: float | None
    scale: float
    offset: float  # DN units, applied as (DN + offset) * scale
    checksum: str | None = None  # multihash from scene.json's "files", checked before reading


@dataclass(frozen=True)
class _LocalScene:
    info: SceneInfo
    sources: dict[str, _BandSource]  # band name (SCL included) -> source
    footprint: tuple[float, float, float, float]


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
    scenes: list[_LocalScene] = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            if not (entry / SCENE_JSON).is_file():
                if _tiffs_in(entry):
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
            scenes.append(_inspect(entry))
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
    local = _inspect(Path(info.href))
    missing = [b for b in wanted if b not in local.sources]
    if missing:
        raise MissingBandError(
            f"scene {info.scene_id} ({info.href}): band(s) {missing} not found; the scene has "
            f"{list(local.info.bands) + ([SCL] if local.info.has_scl else [])}"
        )
    for name in (*wanted, SCL):
        if name in local.sources:
            _verify_checksum(local.sources[name])
    data = np.full((len(wanted), cell.height, cell.width), np.nan, dtype=np.float32)
    by_path: dict[Path, list[int]] = {}
    for i, name in enumerate(wanted):
        by_path.setdefault(local.sources[name].path, []).append(i)
    for path, indices in by_path.items():
        srcs = [local.sources[wanted[i]] for i in indices]
        data[indices] = _read_reflectance(path, srcs, cell)
    scl = _read_scl(local.sources[SCL], cell) if SCL in local.sources else None
    valid = np.all(np.isfinite(data), axis=0)
    data[:, ~valid] = np.nan
    log.debug(
        "scene %s on %s: %d of %d pixels valid",
        info.scene_id,
        cell.tile_id,
        int(valid.sum()),
        valid.size,
    )
    return Scene(
        info=info,
        bands=wanted,
        data=data,
        valid=valid,
        crs=cell.crs,
        transform=cell.transform,
        scl=scl,
    )


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
# inspecting scenes (headers only)


def _maybe_raise(
    exc: SceneFormatError, skip: bool, rejected: list[SceneFormatError] | None = None
) -> None:
    if not skip:
        raise exc
    log.warning("skipped: %s", exc)
    if rejected is not None:
        rejected.append(exc)


def _tiffs_in(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in TIFF_SUFFIXES and not p.name.startswith(".")
    )


def _inspect(href: Path) -> _LocalScene:
    if not href.exists():
        raise SceneNotFoundError(f"{href}: scene not found (was it moved or deleted?)")
    if href.is_dir():
        return _inspect_folder(href)
    return _inspect_file(href)


def _check_tiff_file(path: Path) -> None:
    """Refuse zero-byte files and non-TIFF content (an HTML/JSON error page saved as .tif)."""
    size = path.stat().st_size
    if size == 0:
        raise SceneFormatError(
            f"{path}: file is empty (0 bytes), probably an interrupted download; re-download it"
        )
    with open(path, "rb") as fh:
        head = fh.read(64)
    if head[:4] not in _TIFF_MAGIC:
        text = head.decode("latin-1").strip()
        looks = ""
        if text[:1] in ("<", "{", "["):
            looks = " it looks like an HTML/XML/JSON error page saved as .tif;"
        raise SceneFormatError(
            f"{path}: not a GeoTIFF (starts with {text[:40]!r});{looks} re-download it"
        )


def _open(path: Path) -> DatasetReader:
    _check_tiff_file(path)
    try:
        return rasterio.open(path)
    except RasterioIOError as exc:
        raise SceneFormatError(
            f"{path}: cannot be opened as a GeoTIFF ({exc}); truncated or corrupt, re-download it"
        ) from exc


def _check_complete(src: DatasetReader, path: Path) -> None:
    """Refuse a file whose blocks point past its end (a truncated download), from the header."""
    size = path.stat().st_size
    interleave = (src.tags(ns="IMAGE_STRUCTURE").get("INTERLEAVE") or "PIXEL").upper()
    band_indexes = src.indexes if interleave == "BAND" else (1,)
    end = 0
    for bidx in band_indexes:
        block_rows, block_cols = src.block_shapes[bidx - 1]
        for row in range(math.ceil(src.height / block_rows)):
            for col in range(math.ceil(src.width / block_cols)):
                offset = src.get_tag_item(f"BLOCK_OFFSET_{col}_{row}", "TIFF", bidx=bidx)
                nbytes = src.get_tag_item(f"BLOCK_SIZE_{col}_{row}", "TIFF", bidx=bidx)
                if offset and nbytes:
                    end = max(end, int(offset) + int(nbytes))
    if end > size:
        raise SceneFormatError(
            f"{path}: truncated or corrupt ({size} bytes, but its blocks reach byte {end}); "
            "re-download it"
        )


def _band_name(raw: str | None, *, where: str) -> str:
    name = (raw or "").strip().upper()
    if not name:
        raise SceneFormatError(
            f"{where}: has no band description; name each band with a Sentinel-2 band name "
            f"({', '.join(BANDS)} or {SCL}), e.g. with rasterio's set_band_description"
        )
    short = _SHORT_BAND.match(name)
    if short:
        name = f"B0{short.group(1)}"
    if name != SCL and name not in BANDS:
        raise SceneFormatError(
            f"{where}: unknown band name {raw!r}; expected Sentinel-2 band names "
            f"{list(BANDS)} or {SCL}"
        )
    return name


def _parse_datetime(value: Any, *, where: str, key: str) -> dt.datetime:
    text = str(value).strip()
    iso = text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text
    try:
        when = dt.datetime.fromisoformat(iso)
    except ValueError as exc:
        raise SceneFormatError(
            f"{where}: {key} {text!r} is not an ISO 8601 date-time; "
            "expected e.g. '2024-01-15T14:03:21Z'"
        ) from exc
    if when.tzinfo is None:
        log.debug("%s: %s %r has no timezone; taken as UTC", where, key, text)
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.astimezone(dt.timezone.utc)


def _parse_offset(value: Any, *, where: str, key: str) -> float:
    try:
        offset = float(value)
    except (TypeError, ValueError) as exc:
        raise SceneFormatError(
            f"{where}: {key} {value!r} is not a number; expected e.g. -1000"
        ) from exc
    if not math.isfinite(offset):
        raise SceneFormatError(f"{where}: {key} {value!r} is not a finite number")
    return offset


_TAG_KEYS = {
    "level": TAG_PROCESSING_LEVEL,
    "boa": TAG_BOA_ADD_OFFSET,
    "radio": TAG_RADIO_ADD_OFFSET,
    "baseline": TAG_PROCESSING_BASELINE,
}
_JSON_KEYS = {
    "level": "processing_level",
    "boa": "boa_add_offset",
    "radio": "radio_add_offset",
    "baseline": "processing_baseline",
}


@dataclass(frozen=True)
class _Radiometry:
    """What a scene states about its digital numbers (tags or scene.json)."""

    where: str
    offset: float | None  # BOA_ADD_OFFSET (L2A) or RADIO_ADD_OFFSET (L1C) in DN units
    baseline: str  # canonical "MM.mm" or UNKNOWN_BASELINE
    level: str = "L2A"
    offset_key: str = TAG_BOA_ADD_OFFSET
    baseline_key: str = TAG_PROCESSING_BASELINE

    def band_source(self, name: str, path: Path, src: DatasetReader, bidx: int) -> _BandSource:
        dtype = np.dtype(src.dtypes[bidx - 1])
        nodata = src.nodatavals[bidx - 1]
        if name == SCL:
            if self.level == "L1C":
                raise SceneFormatError(
                    f"{self.where}: an L1C scene has an SCL band ({path.name}), but SCL is an L2A "
                    "product; drop it, or declare the scene L2A if it is surface reflectance"
                )
            return _BandSource(name, path, bidx, False, 0 if nodata is None else nodata, 1.0, 0.0)
        if name == "B10" and self.level == "L2A":
            raise SceneFormatError(
                f"{self.where}: band B10 (cirrus) exists only in L1C products; declare the scene "
                f'L1C with the tag {TAG_PROCESSING_LEVEL}=L1C (or "processing_level": "L1C" in '
                f"{SCENE_JSON}), or drop the band"
            )
        if np.issubdtype(dtype, np.floating):
            return _BandSource(name, path, bidx, True, nodata, 1.0, 0.0)
        if nodata is None:
            nodata = 0  # L2A convention: DN 0 is NO_DATA
        gdal_scale, gdal_offset = src.scales[bidx - 1], src.offsets[bidx - 1]
        if (gdal_scale, gdal_offset) != (1.0, 0.0):
            if gdal_scale == 0:
                raise SceneFormatError(f"{path}: band {name} has a GDAL scale of 0")
            offset_dn = gdal_offset / gdal_scale
            if self.offset is not None and abs(offset_dn - self.offset) > 0.5:
                raise SceneFormatError(
                    f"{path}: band {name}: GDAL scale/offset ({gdal_scale}, {gdal_offset}) mean "
                    f"an offset of {offset_dn:g} DN but {self.offset_key} says "
                    f"{self.offset:g}; applying both would be wrong, so fix one of them"
                )
            return _BandSource(name, path, bidx, False, nodata, gdal_scale, offset_dn)
        if self.offset is not None:
            offset = self.offset
        elif self.baseline != UNKNOWN_BASELINE:
            offset = add_offset(self.baseline, level=self.level)
        else:
            raise SceneFormatError(
                f"{self.where}: integer (digital number) band {name} but neither "
                f"{self.offset_key} nor {self.baseline_key} is given, so the "
                "reflectance offset is unknown (-1000 from baseline 04.00 on); add them from the "
                f"{self.level} product metadata, e.g. {self.baseline_key}=04.00 and "
                f"{self.offset_key}=-1000"
            )
        return _BandSource(name, path, bidx, False, nodata, L2A_SCALE, offset)


def _level(value: Any, *, where: str, key: str) -> str:
    if value is None or str(value).strip() == "":
        return "L2A"
    level = _LEVELS.get(str(value).strip().upper())
    if level is None:
        raise SceneFormatError(
            f"{where}: {key} {value!r} is not a Sentinel-2 processing level; expected 'L1C' or "
            "'L2A' (the default)"
        )
    return level


def _radiometry(values: Mapping[str, Any], *, where: str, keys: Mapping[str, str]) -> _Radiometry:
    """What a scene states about its radiometry; ``keys`` names where each value came from
    (``level``, ``boa``, ``radio``, ``baseline``: tag names or scene.json keys)."""
    level = _level(values.get("level"), where=where, key=keys["level"])
    offset_key = keys["radio"] if level == "L1C" else keys["boa"]
    other_key = keys["boa"] if level == "L1C" else keys["radio"]
    baseline_key = keys["baseline"]
    other = values.get("boa" if level == "L1C" else "radio")
    if other is not None and str(other).strip() != "":
        raise SceneFormatError(
            f"{where}: {other_key} is given but the scene is {level}, whose offset is "
            f"{offset_key}; "
            + (
                f"rename it to {offset_key}"
                if level == "L1C"
                else f"declare the scene L1C ({keys['level']}=L1C) if it is top of atmosphere"
            )
        )
    offset_value = values.get("radio" if level == "L1C" else "boa")
    baseline_value = values.get("baseline")
    offset = None
    if offset_value is not None and str(offset_value).strip() != "":
        offset = _parse_offset(offset_value, where=where, key=offset_key)
    baseline = UNKNOWN_BASELINE
    if baseline_value is not None and str(baseline_value).strip() != "":
        try:
            baseline = _format_baseline(str(baseline_value))
        except SceneFormatError as exc:
            raise SceneFormatError(f"{where}: {baseline_key}: {exc}") from exc
    if offset is not None and baseline != UNKNOWN_BASELINE:
        expected = add_offset(baseline, level=level)
        if offset != expected:
            log.warning(
                "%s: %s %g differs from the %g of baseline %s; using %s as stated",
                where,
                offset_key,
                offset,
                expected,
                baseline,
                offset_key,
            )
    return _Radiometry(
        where=where,
        offset=offset,
        baseline=baseline,
        level=level,
        offset_key=offset_key,
        baseline_key=baseline_key,
    )


def _inspect_file(path: Path) -> _LocalScene:
    with _open(path) as src:
        if src.crs is None:
            raise SceneFormatError(f"{path}: has no CRS; expected a georeferenced (UTM) GeoTIFF")
        _check_complete(src, path)
        tags = src.tags()
        if TAG_DATETIME not in tags:
            raise SceneFormatError(
                f"{path}: missing tag {TAG_DATETIME} (the acquisition time, ISO 8601); set it, "
                f"e.g. gdal_edit.py -mo {TAG_DATETIME}=2024-01-15T14:03:21Z {path.name}"
            )
        when = _parse_datetime(tags[TAG_DATETIME], where=str(path), key=TAG_DATETIME)
        radiometry = _radiometry(
            {
                "level": tags.get(TAG_PROCESSING_LEVEL),
                "boa": tags.get(TAG_BOA_ADD_OFFSET),
                "radio": tags.get(TAG_RADIO_ADD_OFFSET),
                "baseline": tags.get(TAG_PROCESSING_BASELINE),
            },
            where=str(path),
            keys=_TAG_KEYS,
        )
        sources: dict[str, _BandSource] = {}
        for bidx, desc in zip(src.indexes, src.descriptions, strict=True):
            name = _band_name(desc, where=f"{path}: band {bidx}")
            if name in sources:
                raise SceneFormatError(
                    f"{path}: band {name} appears twice (bands {bidx} and "
                    f"{sources[name].bidx}); band descriptions must be unique"
                )
            sources[name] = radiometry.band_source(name, path, src, bidx)
        crs, transform, width, height = src.crs, src.transform, src.width, src.height
    info = _make_info(path.stem, when, crs, transform, width, height, sources, radiometry, path)
    return _LocalScene(info, sources, info.bounds)


def _inspect_folder(folder: Path) -> _LocalScene:
    meta_path = folder / SCENE_JSON
    if not meta_path.is_file():
        raise SceneFormatError(f"{folder}: scene folder without {SCENE_JSON}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SceneFormatError(f"{meta_path}: not valid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise SceneFormatError(f"{meta_path}: expected a JSON object, got {type(meta).__name__}")
    unknown = sorted(set(meta) - _SCENE_JSON_KEYS)
    if unknown:
        raise SceneFormatError(
            f"{meta_path}: unknown key(s) {unknown}; expected {sorted(_SCENE_JSON_KEYS)}"
        )
    if "datetime" not in meta:
        raise SceneFormatError(
            f"{meta_path}: missing key 'datetime' (the acquisition time, ISO 8601); add e.g. "
            '"datetime": "2024-01-15T14:03:21Z"'
        )
    when = _parse_datetime(meta["datetime"], where=str(meta_path), key="datetime")
    radiometry = _radiometry(
        {
            "level": meta.get("processing_level"),
            "boa": meta.get("boa_add_offset"),
            "radio": meta.get("radio_add_offset"),
            "baseline": meta.get("processing_baseline"),
        },
        where=str(meta_path),
        keys=_JSON_KEYS,
    )
    files = _tiffs_in(folder)
    if not files:
        raise SceneFormatError(f"{folder}: no band files; expected B02.tif, B03.tif, ...")
    checksums = _file_checksums(meta.get("files"), files, where=str(meta_path))
    sources: dict[str, _BandSource] = {}
    grids: list[tuple[CRS, Affine, int, int]] = []
    for path in files:
        name = _band_name(path.stem, where=f"{path}: file name")
        if name in sources:
            raise SceneFormatError(f"{folder}: band {name} given by two files")
        with _open(path) as src:
            if src.count != 1:
                raise SceneFormatError(
                    f"{path}: has {src.count} bands; a scene folder holds one band per file"
                )
            if src.crs is None:
                raise SceneFormatError(f"{path}: has no CRS; expected a georeferenced GeoTIFF")
            _check_complete(src, path)
            sources[name] = dataclasses.replace(
                radiometry.band_source(name, path, src, 1), checksum=checksums.get(path.name)
            )
            grids.append((src.crs, src.transform, src.width, src.height))
    crs_set = {g[0].to_string() for g in grids}
    if len(crs_set) > 1:
        raise SceneFormatError(f"{folder}: band files are in different CRSs {sorted(crs_set)}")
    crs, transform, width, height = min(grids, key=lambda g: abs(g[1].a))
    scene_id = str(meta.get("scene_id") or folder.name)
    info = _make_info(scene_id, when, crs, transform, width, height, sources, radiometry, folder)
    return _LocalScene(info, sources, info.bounds)


def _file_checksums(value: Any, files: list[Path], *, where: str) -> dict[str, str]:
    """File name -> multihash of scene.json's ``files`` (empty when it has none)."""
    if value is None:
        return {}
    example = '"files": {"B02.tif": {"sha256": "<64 hex digits>"}}'
    if not isinstance(value, dict):
        raise SceneFormatError(f"{where}: files must be an object such as {example}")
    names = {p.name for p in files}
    out: dict[str, str] = {}
    for name, entry in value.items():
        if name not in names:
            raise SceneFormatError(
                f"{where}: files names {name!r}, which is not a band file of the folder "
                f"({sorted(names)})"
            )
        keys = sorted(entry) if isinstance(entry, dict) else []
        if len(keys) != 1 or keys[0] not in _CHECKSUM_KEYS:
            raise SceneFormatError(
                f"{where}: files.{name} must hold one of {list(_CHECKSUM_KEYS)}, got "
                f"{entry!r}; e.g. {example}"
            )
        text = str(entry[keys[0]]).strip().lower()
        checksum = _SHA256_MULTIHASH + text if keys[0] == "sha256" else text
        try:
            parse_multihash(checksum)
        except ValueError as exc:
            raise SceneFormatError(
                f"{where}: files.{name}.{keys[0]} {entry[keys[0]]!r} is not a valid checksum "
                f"({exc}); expected a sha256 as 64 hex digits or a multihash"
            ) from None
        out[name] = checksum
    return out


def _verify_checksum(source: _BandSource) -> None:
    """Refuse a band file that does not match its scene.json checksum (hashed once per run)."""
    if source.checksum is None:
        return
    stat = source.path.stat()
    reason = _checksum_mismatch(str(source.path), stat.st_size, stat.st_mtime_ns, source.checksum)
    if reason:
        raise ChecksumMismatchError(
            f"{source.path}: corrupt, its {reason} in {SCENE_JSON} (a flipped bit on disk or in "
            "a copy); re-download the file, or copy it again from a good copy"
        )


@functools.lru_cache(maxsize=4096)
def _checksum_mismatch(path: str, size: int, mtime_ns: int, checksum: str) -> str | None:
    """Why ``path`` does not match ``checksum`` (None: it does). Cached by size and modification
    time, so a run hashes each file once, and a file replaced meanwhile is hashed again."""
    reason = verify_file(Path(path), checksum=checksum)
    log.debug("%s: checksum %s", path, reason or "verified")
    return reason


def _make_info(
    scene_id: str,
    when: dt.datetime,
    crs: CRS,
    transform: Affine,
    width: int,
    height: int,
    sources: dict[str, _BandSource],
    radiometry: _Radiometry,
    href: Path,
) -> SceneInfo:
    bands = tuple(b for b in BANDS if b in sources)
    if not bands:
        raise SceneFormatError(f"{href}: no reflectance band (only {list(sources)})")
    return SceneInfo(
        scene_id=scene_id,
        datetime=when,
        crs=crs,
        transform=transform,
        width=width,
        height=height,
        bands=bands,
        has_scl=SCL in sources,
        processing_baseline=radiometry.baseline,
        href=href,
        processing_level=radiometry.level,
    )


def _baseline_key(baseline: str) -> tuple[int, int]:
    if baseline == UNKNOWN_BASELINE:
        return (-1, -1)
    return parse_baseline(baseline)


def _drop_duplicates(scenes: list[_LocalScene]) -> list[_LocalScene]:
    """Keep one scene per (acquisition time, footprint): the newest baseline, then last id."""
    groups: dict[tuple[Any, ...], list[_LocalScene]] = {}
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
    kept: list[_LocalScene] = []
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
    with _open(path) as src:
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


def _read_reflectance(path: Path, srcs: list[_BandSource], cell: GridCell) -> np.ndarray:
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


def _read_scl(source: _BandSource, cell: GridCell) -> np.ndarray:
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
