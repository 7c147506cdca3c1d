"""The ``local`` format (DESIGN.md section 3; the rules are in `tiles.sources._local`'s
docstring): what a scene's headers say (tags or ``scene.json``, band names, radiometry,
checksums), checked, without reading a pixel."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.windows
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import RasterioIOError
from rasterio.io import DatasetReader

from tiles.bands import BANDS, SCL
from tiles.cache import parse_multihash, verify_file
from tiles.errors import (
    ChecksumMismatchError,
    SceneFormatError,
    SceneNotFoundError,
)
from tiles.radiometry import (
    L2A_SCALE,
    TAG_BOA_ADD_OFFSET,
    TAG_PROCESSING_BASELINE,
    TAG_PROCESSING_LEVEL,
    TAG_RADIO_ADD_OFFSET,
    add_offset,
    processing_level,
)
from tiles.radiometry import format_baseline as _format_baseline
from tiles.scene import SceneInfo

log = logging.getLogger(__name__)

#: Dataset tag holding the acquisition time (ISO 8601).
TAG_DATETIME = "ACQUISITION_DATETIME"
#: The metadata file of a per-band scene folder.
SCENE_JSON = "scene.json"
#: ``SceneInfo.processing_baseline`` of a scene that does not state its baseline.
UNKNOWN_BASELINE = "unknown"

TIFF_SUFFIXES = (".tif", ".tiff")
_SCENE_JSON_KEYS = frozenset(
    {
        "datetime", "processing_baseline", "boa_add_offset", "radio_add_offset", "processing_level",
        "scene_id", "files",
    }
)
#: The checksum keys of a file in scene.json's ``files``.
_CHECKSUM_KEYS = ("sha256", "file:checksum")
#: Multihash prefix of a sha2-256 digest (code 0x12, 32 bytes).
_SHA256_MULTIHASH = "1220"
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_SHORT_BAND = re.compile(r"^B(\d)$")


@dataclass(frozen=True)
class BandSource:
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
class LocalScene:
    info: SceneInfo
    sources: dict[str, BandSource]  # band name (SCL included) -> source
    footprint: tuple[float, float, float, float]


# --------------------------------------------------------------------------------------------
# inspecting scenes (headers only)


def tiffs_in(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in TIFF_SUFFIXES and not p.name.startswith(".")
    )


def inspect_scene(href: Path) -> LocalScene:
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


def open_tiff(path: Path) -> DatasetReader:
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

    def band_source(self, name: str, path: Path, src: DatasetReader, bidx: int) -> BandSource:
        dtype = np.dtype(src.dtypes[bidx - 1])
        nodata = src.nodatavals[bidx - 1]
        if name == SCL:
            if self.level == "L1C":
                raise SceneFormatError(
                    f"{self.where}: an L1C scene has an SCL band ({path.name}), but SCL is an L2A "
                    "product; drop it, or declare the scene L2A if it is surface reflectance"
                )
            return BandSource(name, path, bidx, False, 0 if nodata is None else nodata, 1.0, 0.0)
        if name == "B10" and self.level == "L2A":
            raise SceneFormatError(
                f"{self.where}: band B10 (cirrus) exists only in L1C products; declare the scene "
                f'L1C with the tag {TAG_PROCESSING_LEVEL}=L1C (or "processing_level": "L1C" in '
                f"{SCENE_JSON}), or drop the band"
            )
        if np.issubdtype(dtype, np.floating):
            return BandSource(name, path, bidx, True, nodata, 1.0, 0.0)
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
            return BandSource(name, path, bidx, False, nodata, gdal_scale, offset_dn)
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
        return BandSource(name, path, bidx, False, nodata, L2A_SCALE, offset)


def _radiometry(values: Mapping[str, Any], *, where: str, keys: Mapping[str, str]) -> _Radiometry:
    """What a scene states about its radiometry; ``keys`` names where each value came from
    (``level``, ``boa``, ``radio``, ``baseline``: tag names or scene.json keys)."""
    level = processing_level(values.get("level"), where=where, key=keys["level"])
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


def _inspect_file(path: Path) -> LocalScene:
    with open_tiff(path) as src:
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
        sources: dict[str, BandSource] = {}
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
    return LocalScene(info, sources, info.bounds)


def _inspect_folder(folder: Path) -> LocalScene:
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
    files = tiffs_in(folder)
    if not files:
        raise SceneFormatError(f"{folder}: no band files; expected B02.tif, B03.tif, ...")
    checksums = _file_checksums(meta.get("files"), files, where=str(meta_path))
    sources: dict[str, BandSource] = {}
    grids: list[tuple[CRS, Affine, int, int]] = []
    for path in files:
        name = _band_name(path.stem, where=f"{path}: file name")
        if name in sources:
            raise SceneFormatError(f"{folder}: band {name} given by two files")
        with open_tiff(path) as src:
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
    return LocalScene(info, sources, info.bounds)


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


def verify_checksum(source: BandSource) -> None:
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
    sources: dict[str, BandSource],
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
