"""The spectral-index detector: the no-model baseline (``--detector indices``).

It reads a cloud-masked period composite and marks

- ``mining``: connected patches of bare sediment and sediment-laden (turbid) water that hold
  enough turbid-pond pixels. Turbid water alone is not enough (the river itself may be turbid)
  and bare ground alone is not enough (sandbars, quarries, roads), so the decision is made per
  patch, not per pixel. Water bodies larger than ``max_pond_area_ha`` (rivers, lakes) are never
  ponds.
- ``deforestation``: fresh clearings: slash and exposed soil (moderate NDVI, low NBR, bright
  SWIR), not water, not mining, not old pasture (green: higher NDVI and NBR), not forest, in
  patches wider than a road and larger than ``min_clearing_area_ha``.

Probabilities are soft: the logistic of the smallest margin to the thresholds that decide a
pixel, each margin divided by its softness, so 0.5 sits on the decision boundary and the mean over
a site is a meaningful confidence.

Indices (reflectance in 0..1): NDVI = (B08 - B04) / (B08 + B04) (Rouse et al. 1974);
MNDWI = (B03 - B11) / (B03 + B11) (Xu 2006); BSI = ((B11 + B04) - (B08 + B02)) /
((B11 + B04) + (B08 + B02)) (Rikimaru et al. 2002); NBR = (B08 - B12) / (B08 + B12)
(Key & Benson 2006). Turbidity is the red (B04) reflectance of water, which rises with suspended
sediment (Lobo et al. 2015, Remote Sens. Environ. 157, 170-184).
"""

from __future__ import annotations

import hashlib
import json
import logging

import numpy as np
from pydantic import BaseModel, Field
from scipy import ndimage

from models.detector import ModelInfo, Prediction
from models.errors import BandMismatchError

log = logging.getLogger(__name__)

#: Version of the rules; part of :attr:`IndexDetector.info`. Bump when the same input scores
#: differently.
INDEX_DETECTOR_VERSION = "1.0.0"

_EIGHT = np.ones((3, 3), dtype=bool)


class IndexThresholds(BaseModel, extra="forbid"):
    """Every threshold of the index detector. Reflectances are 0..1; areas in hectares."""

    pixel_size_m: float = Field(default=10.0, gt=0)
    """Side of a composite pixel, to turn pixel counts into hectares."""

    # Water
    water_mndwi_min: float = 0.2
    """Open water: MNDWI above this (turbid ponds ~0.6, rivers ~0.7, wet sediment < 0)."""
    water_ndvi_max: float = 0.2
    """Open water: NDVI below this (floating/flooded vegetation is not open water)."""
    turbid_red_min: float = 0.09
    """Sediment-laden water: B04 reflectance of water above this (mining ponds 0.11-0.18, natural
    rivers of the region 0.02-0.07)."""
    max_pond_area_ha: float = Field(default=10.0, gt=0)
    """Connected water bodies larger than this are rivers or lakes, never mining ponds."""
    max_pond_length_m: float = Field(default=400.0, gt=0)
    """Connected water bodies longer than this (bounding box side) are channels, never ponds."""

    # Bare ground
    bare_ndvi_max: float = 0.25
    """Bare sediment, sand or rock: NDVI below this."""
    bare_bsi_min: float = 0.0
    """Bare sediment, sand or rock: bare-soil index above this."""

    # Mining patches
    min_pond_share: float = Field(default=0.1, ge=0, le=1)
    """A patch of bare ground and turbid water is mining when at least this share of it is
    turbid pond water."""
    min_pond_area_ha: float = Field(default=0.05, ge=0)
    """... and it holds at least this much turbid pond water."""
    min_bare_share: float = Field(default=0.2, ge=0, le=1)
    """... and at least this share of it is bare sediment or tailings (turbid water alone, e.g.
    a river seen through a cloud's residue between unobserved pixels, is not a mine)."""
    min_mining_area_ha: float = Field(default=0.3, ge=0)
    """... and the patch covers at least this area."""

    # Fresh clearings
    clearing_ndvi_min: float = 0.2
    """Fresh clearing: NDVI at least this (below: bare sand, rock, tailings)."""
    clearing_ndvi_max: float = 0.48
    """Fresh clearing: NDVI at most this (above: pasture, savanna, regrowth, forest ~0.85)."""
    clearing_nbr_max: float = 0.15
    """Fresh clearing: NBR at most this (slash and soil ~0; green or dry pasture 0.25-0.5)."""
    clearing_swir1_min: float = 0.2
    """Fresh clearing: B11 reflectance at least this (exposed soil and dry slash are bright)."""
    clearing_width_px: int = Field(default=1, ge=0)
    """Morphological opening radius (pixels) removing roads, tracks and mixed edge pixels."""
    min_clearing_area_ha: float = Field(default=0.5, ge=0)
    """A clearing covers at least this area after the opening."""
    mining_buffer_px: int = Field(default=2, ge=0)
    """Pixels around detected mining that are never called deforestation."""

    # Softness of the probabilities (margin units for the logistic)
    index_softness: float = Field(default=0.04, gt=0)
    """Normalised-difference index margin that moves the probability from 0.5 to 0.73."""
    reflectance_softness: float = Field(default=0.01, gt=0)
    """Reflectance margin that moves the probability from 0.5 to 0.73."""
    share_softness: float = Field(default=0.03, gt=0)
    """Pond-share margin that moves the probability from 0.5 to 0.73."""
    area_softness_ha: float = Field(default=0.1, gt=0)
    """Area margin that moves the probability from 0.5 to 0.73."""

    def canonical_json(self) -> str:
        """The thresholds as canonical JSON (sorted keys, no spaces): what ``sha256`` hashes."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


class IndexDetector:
    """Mining and fresh-clearing detector from spectral indices and patch context.

    Implements :class:`models.detector.Detector`.
    """

    def __init__(self, thresholds: IndexThresholds | None = None) -> None:
        self._t = thresholds if thresholds is not None else IndexThresholds()

    @property
    def thresholds(self) -> IndexThresholds:
        return self._t

    @property
    def info(self) -> ModelInfo:
        digest = hashlib.sha256(self._t.canonical_json().encode("utf-8")).hexdigest()
        return ModelInfo(name="indices", version=INDEX_DETECTOR_VERSION, sha256=digest)

    @property
    def bands(self) -> tuple[str, ...]:
        return ("B02", "B03", "B04", "B08", "B11", "B12")

    def predict(self, data: np.ndarray, bands: tuple[str, ...]) -> Prediction:
        """Class probabilities of a period composite.

        Args:
            data: ``(band, row, col)`` float reflectance (0..1); NaN where unobserved.
            bands: names of the bands of ``data``, in order.

        Returns:
            ``classes=("mining", "deforestation")`` and ``(2, row, col)`` float32
            probabilities, NaN wherever any needed band is NaN.

        Raises:
            BandMismatchError: a needed band is missing from ``bands``.
            ValueError: ``data`` is not 3-D or does not have one plane per band name.
        """
        bands = tuple(bands)
        missing = [b for b in self.bands if b not in bands]
        if missing:
            raise BandMismatchError(
                f"index detector: missing band(s) {missing}; got {list(bands)}; it needs "
                f"{list(self.bands)}: read the composite with these bands"
            )
        if data.ndim != 3 or data.shape[0] != len(bands):
            raise ValueError(
                f"index detector: data shape {data.shape} does not match {len(bands)} bands "
                f"{list(bands)}; expected (band, row, col)"
            )
        blue, green, red, nir, swir1, swir2 = (
            np.asarray(data[bands.index(b)], dtype=np.float32) for b in self.bands
        )
        valid = np.isfinite(blue) & np.isfinite(green) & np.isfinite(red)
        valid &= np.isfinite(nir) & np.isfinite(swir1) & np.isfinite(swir2)
        with np.errstate(invalid="ignore", divide="ignore"):
            z_mining = self._mining_margin(blue, green, red, nir, swir1, valid)
            z_def = self._clearing_margin(red, green, nir, swir1, swir2, valid, z_mining)
        probs = np.stack([_logistic(z_mining), _logistic(z_def)]).astype(np.float32)
        probs[:, ~valid] = np.nan
        return Prediction(classes=("mining", "deforestation"), probabilities=probs)

    # ----------------------------------------------------------------------------------------

    def _pixel_ha(self) -> float:
        return self._t.pixel_size_m**2 / 10_000.0

    def _water_margin(
        self, green: np.ndarray, red: np.ndarray, nir: np.ndarray, swir1: np.ndarray
    ) -> np.ndarray:
        t = self._t
        mndwi = _nd(green, swir1)
        ndvi = _nd(nir, red)
        return np.minimum(mndwi - t.water_mndwi_min, t.water_ndvi_max - ndvi) / t.index_softness

    def _mining_margin(
        self,
        blue: np.ndarray,
        green: np.ndarray,
        red: np.ndarray,
        nir: np.ndarray,
        swir1: np.ndarray,
        valid: np.ndarray,
    ) -> np.ndarray:
        t = self._t
        pixel_ha = self._pixel_ha()
        z_water = self._water_margin(green, red, nir, swir1)
        water = valid & (z_water > 0)
        # Water bodies too large to be ponds (rivers, lakes) never count as pond water.
        labels, n = ndimage.label(water, structure=_EIGHT)
        body_ha = np.bincount(labels.ravel(), minlength=n + 1) * pixel_ha
        body_ha[0] = 0.0
        body_m = np.zeros(n + 1)
        for i, box in enumerate(ndimage.find_objects(labels), start=1):
            if box is not None:
                body_m[i] = max(box[0].stop - box[0].start, box[1].stop - box[1].start)
        body_m *= t.pixel_size_m
        z_small = np.minimum(
            (t.max_pond_area_ha - body_ha) / t.area_softness_ha,
            (t.max_pond_length_m - body_m) / (t.area_softness_ha * 100.0),
        )[labels]
        z_turbid = np.minimum(z_water, (red - t.turbid_red_min) / t.reflectance_softness)
        z_pond = np.minimum(z_turbid, np.where(water, z_small, np.inf))
        pond = valid & (z_pond > 0)

        ndvi = _nd(nir, red)
        bsi = _nd(swir1 + red, nir + blue)
        z_bare = np.minimum(t.bare_ndvi_max - ndvi, bsi - t.bare_bsi_min) / t.index_softness
        z_bare = np.minimum(z_bare, -z_water)
        bare = valid & (z_bare > 0)

        # Patches of bare ground and pond water: mining when they hold enough pond water.
        patches, n_patches = ndimage.label(bare | pond, structure=_EIGHT)
        area_px = np.bincount(patches.ravel(), minlength=n_patches + 1).astype(np.float64)
        pond_px = np.bincount(patches.ravel(), weights=pond.ravel(), minlength=n_patches + 1)
        area_px[0] = 1.0
        share = pond_px / area_px
        z_patch = np.minimum.reduce(
            [
                (share - t.min_pond_share) / t.share_softness,
                (1.0 - share - t.min_bare_share) / t.share_softness,
                (pond_px * pixel_ha - t.min_pond_area_ha) / t.area_softness_ha,
                (area_px * pixel_ha - t.min_mining_area_ha) / t.area_softness_ha,
            ]
        )
        # A pixel is mining only inside a patch that qualifies; outside any patch its object
        # margin is that of an empty patch.
        z_patch[0] = -t.min_mining_area_ha / t.area_softness_ha
        z = np.minimum(np.maximum(z_bare, z_pond), z_patch[patches])
        n_mining = int((z_patch[1:] > 0).sum())
        log.debug("index detector: %d of %d candidate patches are mining", n_mining, n_patches)
        return np.where(valid, z, np.nan).astype(np.float32)

    def _clearing_margin(
        self,
        red: np.ndarray,
        green: np.ndarray,
        nir: np.ndarray,
        swir1: np.ndarray,
        swir2: np.ndarray,
        valid: np.ndarray,
        z_mining: np.ndarray,
    ) -> np.ndarray:
        t = self._t
        ndvi = _nd(nir, red)
        nbr = _nd(nir, swir2)
        z_water = self._water_margin(green, red, nir, swir1)
        z = np.minimum.reduce(
            [
                (ndvi - t.clearing_ndvi_min) / t.index_softness,
                (t.clearing_ndvi_max - ndvi) / t.index_softness,
                (t.clearing_nbr_max - nbr) / t.index_softness,
                (swir1 - t.clearing_swir1_min) / t.reflectance_softness,
                -z_water,
            ]
        )
        clearing = valid & (z > 0)
        # Object context: wider than a road, larger than the minimum area, away from mining.
        # The opening leaves the cores of clearings; a clearing pixel belongs to the core within
        # reach of the opening, so a road passing a clearing never joins it.
        width = t.clearing_width_px
        core = (
            ndimage.binary_opening(clearing, structure=_EIGHT, iterations=width)
            if width
            else clearing
        )
        core_labels, n = ndimage.label(core, structure=_EIGHT)
        core_ha = np.bincount(core_labels.ravel(), minlength=n + 1) * self._pixel_ha()
        core_ha[0] = 0.0
        z_core = (core_ha - t.min_clearing_area_ha) / t.area_softness_ha
        if width:
            # Give each clearing pixel within reach of a core that core's label, then keep only
            # the pieces connected to the core itself.
            reach = ndimage.grey_dilation(core_labels, size=(2 * width + 3, 2 * width + 3))
            reach = np.where(clearing, reach, 0)
            pieces, n_pieces = ndimage.label(reach > 0, structure=_EIGHT)
            has_core = np.bincount(pieces.ravel(), weights=core.ravel(), minlength=n_pieces + 1) > 0
            has_core[0] = False
            core_labels = np.where(has_core[pieces], reach, 0)
        z = np.minimum(z, z_core[core_labels])
        mining = np.nan_to_num(z_mining, nan=-1.0) > 0
        if mining.any():
            near = ndimage.binary_dilation(
                mining, structure=_EIGHT, iterations=max(t.mining_buffer_px, 1)
            )
            z = np.where(near, np.minimum(z, -np.nan_to_num(z_mining, nan=0.0) - 1.0), z)
        return np.where(valid, z, np.nan).astype(np.float32)


def _nd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Normalised difference ``(a - b) / (a + b)``, 0 where the sum is 0."""
    total = a + b
    out = np.divide(a - b, total, out=np.zeros_like(total), where=np.abs(total) > 1e-6)
    return out


def _logistic(z: np.ndarray) -> np.ndarray:
    zc = np.clip(np.nan_to_num(z, nan=0.0, posinf=50.0, neginf=-50.0), -50.0, 50.0)
    out = 1.0 / (1.0 + np.exp(-zc))
    return np.where(np.isnan(z), np.nan, out).astype(np.float32)
