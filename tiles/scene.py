"""The scene model every imagery source yields (DESIGN.md section 3)."""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from tiles.bands import check_band_names

if TYPE_CHECKING:
    from aoi.grid import GridCell

log = logging.getLogger(__name__)

#: Sentinel-2 processing levels a source may yield: top of atmosphere (L1C) or surface (L2A).
PROCESSING_LEVELS: tuple[str, ...] = ("L1C", "L2A")


@dataclass(frozen=True)
class SceneInfo:
    """What is known about a scene before any pixel is read.

    Attributes:
        scene_id: the product or file identifier.
        datetime: acquisition time, timezone-aware UTC.
        crs: native CRS of the scene.
        transform: native affine transform (of the finest band).
        width: columns at the finest band's resolution.
        height: rows at the finest band's resolution.
        bands: the bands the scene offers, without ``SCL``.
        has_scl: whether a scene classification layer is available.
        processing_baseline: e.g. ``"04.00"``; scenes of 04.00 and later carry an offset of
            -1000 DN (BOA_ADD_OFFSET for L2A, RADIO_ADD_OFFSET for L1C).
        href: where the source reads the pixels (a file, a folder or a URL).
        assets: remote sources only: per band (``SCL`` included) what the source needs to read
            it, e.g. ``{"B02": {"href": "https://...", "file:size": 123, "file:checksum": ...}}``.
        properties: remote sources only: the item properties that decide how the scene is read
            (``eo:cloud_cover``, ``s2:processing_baseline``, ``earthsearch:boa_offset_applied``,
            ``collection``, ...).
        processing_level: ``"L2A"`` (surface reflectance, may have an SCL) or ``"L1C"`` (top of
            atmosphere reflectance, never an SCL; 13 bands with B10).
    """

    scene_id: str
    datetime: dt.datetime
    crs: CRS
    transform: Affine
    width: int
    height: int
    bands: tuple[str, ...]
    has_scl: bool
    processing_baseline: str
    href: str | Path
    assets: Mapping[str, Mapping[str, Any]] = field(
        default_factory=dict, compare=False, hash=False, repr=False
    )
    properties: Mapping[str, Any] = field(
        default_factory=dict, compare=False, hash=False, repr=False
    )
    processing_level: str = "L2A"

    def __post_init__(self) -> None:
        if self.processing_level not in PROCESSING_LEVELS:
            raise ValueError(
                f"scene {self.scene_id}: processing level {self.processing_level!r}: expected "
                f"one of {list(PROCESSING_LEVELS)}"
            )
        if self.datetime.tzinfo is None:
            raise ValueError(f"scene {self.scene_id}: datetime {self.datetime} has no timezone")
        check_band_names(self.bands)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the scene's CRS."""
        left, top = self.transform.c, self.transform.f
        right = left + self.width * self.transform.a
        return (left, top + self.height * self.transform.e, right, top)


@dataclass(frozen=True)
class Scene:
    """Pixels of one scene on one grid (a chip of the processing grid, or the native grid).

    Attributes:
        info: the scene's metadata.
        bands: band names in the order of ``data``.
        data: ``(band, row, col)`` float32 reflectance (0..1 nominal; surface for L2A, top of
            atmosphere for L1C, see ``info.processing_level``); NaN where not valid.
        valid: ``(row, col)`` bool, True where the sensor saw the ground (not no-data).
        scl: ``(row, col)`` uint8 scene classification, or None when the source has none.
        crs: CRS of ``data``.
        transform: affine transform of ``data``.
    """

    info: SceneInfo
    bands: tuple[str, ...]
    data: np.ndarray
    valid: np.ndarray
    crs: CRS
    transform: Affine
    scl: np.ndarray | None = field(default=None)

    def __post_init__(self) -> None:
        if self.data.ndim != 3 or self.data.shape[0] != len(self.bands):
            raise ValueError(
                f"scene {self.info.scene_id}: data shape {self.data.shape} does not match "
                f"{len(self.bands)} bands {self.bands}"
            )
        if self.valid.shape != self.data.shape[1:]:
            raise ValueError(
                f"scene {self.info.scene_id}: valid mask shape {self.valid.shape} != "
                f"data shape {self.data.shape[1:]}"
            )
        if self.scl is not None and self.scl.shape != self.data.shape[1:]:
            raise ValueError(
                f"scene {self.info.scene_id}: SCL shape {self.scl.shape} != {self.data.shape[1:]}"
            )

    @classmethod
    def on_cell(
        cls,
        info: SceneInfo,
        bands: tuple[str, ...],
        data: np.ndarray,
        cell: GridCell,
        *,
        scl: np.ndarray | None = None,
    ) -> Scene:
        """A scene read onto a grid cell: valid where every band is finite, NaN elsewhere in
        every band (``data`` is changed in place)."""
        valid = np.all(np.isfinite(data), axis=0)
        data[:, ~valid] = np.nan
        log.debug("scene %s on %s: %d of %d pixels valid", info.scene_id, cell.tile_id,
                  int(valid.sum()), valid.size)
        return cls(info=info, bands=bands, data=data, valid=valid, crs=cell.crs,
                   transform=cell.transform, scl=scl)

    def band(self, name: str) -> np.ndarray:
        """The ``(row, col)`` array of one band."""
        try:
            return self.data[self.bands.index(name)]
        except ValueError:
            from tiles.errors import MissingBandError

            raise MissingBandError(
                f"scene {self.info.scene_id}: band {name!r} not read; have {list(self.bands)}"
            ) from None


# --------------------------------------------------------------------------------------------
# Passes (solar days): one acquisition seen in several MGRS tiles


#: Two scenes acquired within this time of each other, by the same platform on the same relative
#: orbit (where known), are one pass: the MGRS tiles of one datatake, which overlap by about 10 km.
#: A Sentinel-2 satellite sees the same ground again one orbit (about 100 minutes) later at best.
SAME_PASS = dt.timedelta(minutes=30)

_PLATFORM_IN_ID = re.compile(r"(?:^|[_/])(S2[A-D])_", re.IGNORECASE)
_ORBIT_IN_ID = re.compile(r"_R(\d{3})_")


def platform_of(info: SceneInfo) -> str | None:
    """``S2A``/``S2B``/``S2C``/``S2D`` from the item's ``platform`` (``sentinel-2a``) or the
    product id, None when neither says."""
    name = str(info.properties.get("platform") or "").lower()
    if name.startswith("sentinel-2") and len(name) == len("sentinel-2a"):
        return f"S2{name[-1].upper()}"
    for text in (info.scene_id, str(info.properties.get("s2:product_uri") or "")):
        match = _PLATFORM_IN_ID.search(text)
        if match:
            return match.group(1).upper()
    return None


def relative_orbit_of(info: SceneInfo) -> int | None:
    """The relative orbit (1..143) from ``sat:relative_orbit`` or the product id's ``_Rnnn_``."""
    value = info.properties.get("sat:relative_orbit")
    if value is not None:
        try:
            return int(value)
        except (TypeError, ValueError):
            pass
    for text in (info.scene_id, str(info.properties.get("s2:product_uri") or "")):
        match = _ORBIT_IN_ID.search(text)
        if match:
            return int(match.group(1))
    return None


def same_pass(a: SceneInfo, b: SceneInfo) -> bool:
    """Whether two scenes are one acquisition (one solar day's pass) seen in two MGRS tiles:
    acquired within `SAME_PASS`, by the same platform and on the same relative orbit where both
    say which."""
    if abs(a.datetime - b.datetime) > SAME_PASS:
        return False
    for of in (platform_of, relative_orbit_of):
        x, y = of(a), of(b)
        if x is not None and y is not None and x != y:
            return False
    return True

