"""Sentinel-2 radiometry: digital numbers to reflectance (DESIGN.md section 3).

L2A products store bottom-of-atmosphere (surface) reflectance, L1C products top-of-atmosphere
reflectance, both as 16-bit digital numbers (DN). Since processing baseline 04.00 (January 2022)
both carry an offset of -1000 DN so that dark surfaces (water, shadows) keep their noise instead
of being clipped at zero: ``BOA_ADD_OFFSET`` in L2A metadata, ``RADIO_ADD_OFFSET`` in L1C::

    L2A: reflectance = (DN + BOA_ADD_OFFSET) / QUANTIFICATION_VALUE
    L1C: reflectance = (DN + RADIO_ADD_OFFSET) / QUANTIFICATION_VALUE   (both 10000)

The offset must be applied exactly once: forgetting it makes every 04.00 scene 0.1 brighter than
a 03.xx scene of the same surface, applying it twice makes it 0.1 darker. Both look like change.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tiles.errors import LevelMixError, SceneFormatError

if TYPE_CHECKING:
    from rasterio.io import DatasetReader

    from tiles.scene import SceneInfo

log = logging.getLogger(__name__)

#: DN offset of processing baseline 04.00 and later.
BOA_ADD_OFFSET_SINCE_0400 = -1000.0

#: DN offset of L1C products of processing baseline 04.00 and later (``RADIO_ADD_OFFSET``).
RADIO_ADD_OFFSET_SINCE_0400 = -1000.0

#: L2A quantification value: reflectance = DN / 10000.
L2A_SCALE = 1e-4
#: L1C quantification value: the same 10000.
L1C_SCALE = 1e-4

#: The metadata name of the offset per processing level.
OFFSET_NAME = {"L2A": "BOA_ADD_OFFSET", "L1C": "RADIO_ADD_OFFSET"}

#: GeoTIFF dataset tags that state a file's radiometry, named as in the product metadata.
TAG_PROCESSING_LEVEL = "PROCESSING_LEVEL"
TAG_PROCESSING_BASELINE = "PROCESSING_BASELINE"
TAG_BOA_ADD_OFFSET = OFFSET_NAME["L2A"]
TAG_RADIO_ADD_OFFSET = OFFSET_NAME["L1C"]
#: Tag of integer files that hold reflectance / scale with any offset already applied (the
#: ``uint16`` composites of :mod:`tiles.composite`).
TAG_REFLECTANCE_SCALE = "REFLECTANCE_SCALE"

#: Spellings of the processing levels accepted in tags and scene.json.
LEVEL_SPELLINGS: Mapping[str, str] = {
    "L1C": "L1C", "LEVEL-1C": "L1C", "S2MSI1C": "L1C",
    "L2A": "L2A", "LEVEL-2A": "L2A", "S2MSI2A": "L2A",
}


def processing_level(value: Any, *, where: str, key: str = TAG_PROCESSING_LEVEL) -> str:
    """``L1C`` or ``L2A`` from a tag or scene.json value (``L2A`` when absent or empty).

    Raises:
        SceneFormatError: the value is not a spelling of either level (the message names it).
    """
    if value is None or str(value).strip() == "":
        return "L2A"
    level = LEVEL_SPELLINGS.get(str(value).strip().upper())
    if level is None:
        raise SceneFormatError(
            f"{where}: {key} {value!r} is not a Sentinel-2 processing level; expected 'L1C' or "
            "'L2A' (the default)"
        )
    return level


#: Path-radiance offsets (top of atmosphere minus surface reflectance) of the visible bands over
#: Amazon forest, measured on the real gallery: median TOA of the ``random_negatives10k``
#: clear chips (B02 0.094, B03 0.084, B04 0.052) minus the L2A forest reflectance of the
#: synthetic world's spectra (0.020, 0.040, 0.022). NIR and SWIR are nearly unaffected.
#: What surface-trained networks subtract from L1C (chips, labelled scenes; stored in their
#: checkpoints as ``toa_offsets``).
TOA_OFFSETS: Mapping[str, float] = {"B01": 0.09, "B02": 0.074, "B03": 0.044, "B04": 0.030}


def toa_to_surface(x: np.ndarray, bands: Sequence[str], offsets: Mapping[str, float]) -> np.ndarray:
    """Surface-like reflectance of top-of-atmosphere ``(..., band, row, col)`` reflectance: each
    band minus its path-radiance offset (bands without one unchanged), clipped at 0; NaN stays
    NaN. A copy.

    How a network trained on surface reflectance reads L1C: the offsets are those its real
    top-of-atmosphere training chips were brought to surface-like reflectance with (stored in
    the checkpoint as ``toa_offsets``).
    """
    off = np.array([offsets.get(b, 0.0) for b in bands], dtype=np.float32)
    shape = [1] * x.ndim
    shape[-3] = len(bands)
    return np.maximum(x - off.reshape(shape), 0.0, where=np.isfinite(x), out=x.astype(np.float32))


_BASELINE_N = re.compile(r"^N(\d{2})(\d{2})$", re.IGNORECASE)
_BASELINE_DOTTED = re.compile(r"^(\d{1,2})(?:\.(\d{1,2}))?$")


def parse_baseline(processing_baseline: str) -> tuple[int, int]:
    """Parse a processing baseline into ``(major, minor)``.

    Accepts the forms found in product names and metadata: ``"04.00"``, ``"4.0"``, ``"4"`` and
    the product-name form ``"N0400"``.

    Args:
        processing_baseline: the baseline as written in the metadata.

    Returns:
        ``(major, minor)``, e.g. ``(4, 0)``.

    Raises:
        SceneFormatError: the value is not a processing baseline.
    """
    text = str(processing_baseline).strip()
    match = _BASELINE_N.match(text) or _BASELINE_DOTTED.match(text)
    if match is None:
        raise SceneFormatError(
            f"processing baseline {processing_baseline!r} is not understood: expected a value "
            "such as '04.00', '4.0' or 'N0400' (as in the L2A product metadata)"
        )
    major, minor = match.group(1), match.group(2)
    return int(major), int(minor or 0)


def format_baseline(processing_baseline: str) -> str:
    """The canonical ``"MM.mm"`` form of a processing baseline (``"N0400"`` -> ``"04.00"``).

    Raises:
        SceneFormatError: the value is not a processing baseline.
    """
    major, minor = parse_baseline(processing_baseline)
    return f"{major:02d}.{minor:02d}"


def boa_add_offset(processing_baseline: str) -> float:
    """The DN offset (``BOA_ADD_OFFSET``) that L2A products of this baseline carry.

    Args:
        processing_baseline: e.g. ``"04.00"``, ``"N0400"``, ``"4.0"`` or ``"03.01"``.

    Returns:
        ``-1000.0`` for baseline 04.00 and later, else ``0.0``.

    Raises:
        SceneFormatError: the value is not a processing baseline.
    """
    return BOA_ADD_OFFSET_SINCE_0400 if parse_baseline(processing_baseline) >= (4, 0) else 0.0


def radio_add_offset(processing_baseline: str) -> float:
    """The DN offset (``RADIO_ADD_OFFSET``) that L1C products of this baseline carry.

    Returns:
        ``-1000.0`` for baseline 04.00 and later, else ``0.0``.

    Raises:
        SceneFormatError: the value is not a processing baseline.
    """
    major_minor = parse_baseline(processing_baseline)
    return RADIO_ADD_OFFSET_SINCE_0400 if major_minor >= (4, 0) else 0.0


def add_offset(processing_baseline: str, *, level: str) -> float:
    """The DN offset of a product of ``level`` (``"L1C"`` or ``"L2A"``) and this baseline:
    `radio_add_offset` for L1C, `boa_add_offset` for L2A.

    Raises:
        SceneFormatError: the baseline is not understood.
        ValueError: an unknown level.
    """
    if level == "L1C":
        return radio_add_offset(processing_baseline)
    if level == "L2A":
        return boa_add_offset(processing_baseline)
    raise ValueError(f"processing level {level!r}: expected 'L1C' or 'L2A'")


def check_one_level(scenes: Iterable[SceneInfo]) -> str | None:
    """The one processing level of ``scenes`` (None when there is none).

    L1C (top of atmosphere) and L2A (surface) reflectance of the same ground differ by the
    atmosphere (hazy blue is ~0.05 brighter at the top): compositing or comparing them would make
    the difference look like change, so a scan keeps to one level.

    Raises:
        LevelMixError: scenes of both levels; the message names both, with a scene of each.
    """
    first: dict[str, str] = {}
    for s in scenes:
        first.setdefault(s.processing_level, s.scene_id)
    if len(first) > 1:
        shown = " and ".join(f"{level} (e.g. {sid})" for level, sid in sorted(first.items()))
        raise LevelMixError(
            f"scenes of two processing levels in one scan: {shown}; L1C is top-of-atmosphere "
            "and L2A surface reflectance, so mixing them would look like change: scan one level "
            "(choose one collection, or keep one level's files in the local folder)"
        )
    return next(iter(first), None)


def dn_to_reflectance(
    dn: np.ndarray,
    *,
    offset: float,
    scale: float = L2A_SCALE,
    nodata: int | float | None = 0,
) -> np.ndarray:
    """Convert L2A or L1C digital numbers to reflectance: ``(DN + offset) * scale``.

    The offset is applied here and only here; pass ``offset=0.0`` for data that already had it
    applied (or that predates baseline 04.00).

    Negative results (dark water or shadow pixels of baseline 04.00 and later, whose DN is below
    1000) are clipped to 0, so that a 03.xx scene (which had clipped them in the product) and a
    04.00 scene of the same surface give the same reflectance.

    Args:
        dn: digital numbers, any shape and integer or float dtype.
        offset: ``BOA_ADD_OFFSET`` (L2A) or ``RADIO_ADD_OFFSET`` (L1C) in DN units
            (``-1000.0`` for baseline 04.00 and later).
        scale: reflectance per DN (``1e-4`` for L2A and L1C).
        nodata: the DN that marks missing data (L2A uses 0), or None when there is none.

    Returns:
        float32 reflectance of the same shape, NaN where ``dn`` is ``nodata`` or NaN.

    Raises:
        ValueError: ``scale`` is not a positive finite number or ``offset`` is not finite.
    """
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"dn_to_reflectance: scale {scale!r} must be a positive number")
    if not np.isfinite(offset):
        raise ValueError(f"dn_to_reflectance: offset {offset!r} must be a finite number")
    arr = np.asarray(dn)
    out = (arr.astype(np.float32) + np.float32(offset)) * np.float32(scale)
    np.maximum(out, np.float32(0.0), out=out)  # NaN propagates
    if nodata is not None and not (isinstance(nodata, float) and np.isnan(nodata)):
        out[arr == nodata] = np.nan  # (NaN DN already give NaN)
    return out


@dataclass(frozen=True)
class FileRadiometry:
    """How the values of some bands of a GeoTIFF become reflectance:
    ``max((value + offset) * scale, 0)`` per band, ``nodata`` (or NaN) unobserved.

    Attributes:
        offset: per band, in file units (0 for float files).
        scale: per band, reflectance per file unit (1 for float files).
        nodata: the file's nodata value; 0 for integer files that state none (L2A convention).
    """

    offset: tuple[float, ...]
    scale: tuple[float, ...]
    nodata: float | None


def file_radiometry(src: DatasetReader, indexes: Sequence[int]) -> FileRadiometry:
    """The radiometry of bands ``indexes`` (1-based) of an open GeoTIFF, by the first rule
    that applies:

    1. float bands hold reflectance;
    2. the GDAL band scale/offset, when any band has one (``offset / scale`` DN);
    3. the tag ``REFLECTANCE_SCALE`` (offset already applied: :mod:`tiles.composite`);
    4. digital numbers of the level in the tag ``PROCESSING_LEVEL`` (``L2A`` when absent):
       ``(DN + offset) * 1e-4`` with the offset from the tag ``BOA_ADD_OFFSET`` (L2A) or
       ``RADIO_ADD_OFFSET`` (L1C), else from the tag ``PROCESSING_BASELINE``.

    Raises:
        SceneFormatError: a band has a GDAL scale of 0, a tag is not a number or baseline, or
            integer bands state no offset at all (the message names the tags to add).
    """
    where = src.name
    n = len(indexes)
    dtype = np.dtype(src.dtypes[indexes[0] - 1]) if n else np.dtype("float32")
    nodata = src.nodata
    if np.issubdtype(dtype, np.floating):
        return FileRadiometry((0.0,) * n, (1.0,) * n, nodata)
    if nodata is None:
        nodata = 0.0  # L2A convention: DN 0 is NO_DATA
    scales = [float(src.scales[i - 1]) for i in indexes]
    offsets = [float(src.offsets[i - 1]) for i in indexes]
    if any((s, o) != (1.0, 0.0) for s, o in zip(scales, offsets, strict=True)):
        if any(s == 0 for s in scales):
            raise SceneFormatError(f"{where}: a band has a GDAL scale of 0")
        dn = tuple(o / s for s, o in zip(scales, offsets, strict=True))
        return FileRadiometry(dn, tuple(scales), nodata)
    tags = src.tags()
    if TAG_REFLECTANCE_SCALE in tags:
        scale = _tag_number(tags, TAG_REFLECTANCE_SCALE, where)
        return FileRadiometry((0.0,) * n, (scale,) * n, nodata)
    offset = _dn_offset(tags, where)
    return FileRadiometry((offset,) * n, (L2A_SCALE,) * n, nodata)


def _dn_offset(tags: Mapping[str, Any], where: str) -> float:
    """The DN offset that the tags of an integer file state (its level's offset or baseline)."""
    level = processing_level(tags.get(TAG_PROCESSING_LEVEL), where=where,
                             key=f"tag {TAG_PROCESSING_LEVEL}")
    key = OFFSET_NAME[level]
    if key in tags:
        return _tag_number(tags, key, where)
    if TAG_PROCESSING_BASELINE in tags:
        return add_offset(tags[TAG_PROCESSING_BASELINE], level=level)
    raise SceneFormatError(
        f"{where}: integer (digital number) bands but neither {key}, "
        f"{TAG_PROCESSING_BASELINE}, {TAG_REFLECTANCE_SCALE} nor a GDAL scale/offset is set, so "
        f"the reflectance offset is unknown (-1000 from baseline 04.00 on); add them from the "
        f"{level} product metadata, e.g. {TAG_PROCESSING_BASELINE}=04.00 and {key}=-1000"
    )


def _tag_number(tags: Mapping[str, Any], key: str, where: str) -> float:
    try:
        value = float(tags[key])
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        raise SceneFormatError(f"{where}: tag {key}={tags[key]!r} is not a finite number")
    return value
