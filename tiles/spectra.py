"""Per-band surface reflectance of the surfaces the synthetic world paints (Sentinel-2 L2A bands).

Every surface class has two endmember spectra, ``a`` and ``b``, over the bands of
:data:`SPECTRAL_BANDS`. The generator mixes them per pixel, ``a + f * (b - a)``, with a fraction
``f`` in 0..1 whose meaning the class states (season, turbidity, wetness), and multiplies the result
by a texture field whose strength is ``texture``. Values are bottom-of-atmosphere reflectance
(0..1), the quantity of L2A products.

Sources. The values are representative levels chosen to agree with the cited measurements, read
from their published tables and figures and rounded; they are not a fresh convolution of library
spectra with the Sentinel-2 spectral response functions. References, cited per class below:

- [S2UH] ESA (2015) Sentinel-2 User Handbook, issue 1.2: band centres and widths; typical
  reflectance of vegetation, soil and water.
- [USGS7] Kokaly, R. F. et al. (2017) USGS Spectral Library Version 7, Data Series 1035,
  doi:10.3133/ds1035 (splib07, with its Sentinel-2 convolved version ``s07SNT2``): quartz sand,
  lateritic soil, granite, dry grass, green vegetation.
- [ECO] Meerdink, S. K. et al. (2019) The ECOSTRESS spectral library version 1.0, Remote Sens.
  Environ. 230, 111196: soils (oxisols), rocks, non-photosynthetic vegetation.
- [ROB] Roberts, D. A. et al. (2002) Large area mapping of land-cover change in Rondonia using
  multitemporal spectral mixture analysis and decision tree classifiers, Remote Sens. Environ. 80,
  385-396: green vegetation, NPV, soil and shade endmembers of Amazon forest, pasture and clearings.
- [SOU] Souza, C. M. Jr. et al. (2005) Combining spectral and spatial information to map canopy
  damage from selective logging and forest fires, Remote Sens. Environ. 98, 329-343: GV/NPV/soil
  endmembers of Amazon forest and fresh slash.
- [HUE] Huete, A. R. et al. (2006) Amazon rainforests green-up with sunlight in dry season,
  Geophys. Res. Lett. 33, L06405: the small dry-season rise of forest NIR.
- [LOB] Lobo, F. L., Costa, M. P. F., Novo, E. M. L. M. (2015) Time-series analysis of
  Landsat-MSS/TM/OLI images over Amazonian waters impacted by gold mining activities, Remote
  Sens. Environ. 157, 170-184; and Lobo, F. L. et al. (2016) Distribution of artisanal and
  small-scale gold mining in the Tapajos River Basin over the past 40 years, Remote Sens. 8, 579:
  reflectance of clear, moderately turbid and mining-impacted (very turbid) Tapajos waters.
- [PAH] Pahlevan, N. et al. (2017) Sentinel-2 MultiSpectral Instrument (MSI) data processing for
  aquatic science applications, Remote Sens. Environ. 201, 47-56: S2 water-leaving reflectance
  levels of clear, eutrophic and turbid waters.
- [MAIN] Main-Knorn, M. et al. (2017) Sen2Cor for Sentinel-2, Proc. SPIE 10427: cloud and cirrus
  reflectance levels and the scene classification (SCL).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

log = logging.getLogger(__name__)

#: Bands of every spectrum in this module, in order (the synthetic scenes' reflectance bands).
SPECTRAL_BANDS: tuple[str, ...] = (
    "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12",
)

#: Bands Sentinel-2 samples at 20 m (resampled to 10 m in the synthetic scenes, as L2A users do).
BANDS_20M: tuple[str, ...] = ("B05", "B06", "B07", "B8A", "B11", "B12")


class Surface(IntEnum):
    """Surface classes the synthetic world paints, one code per pixel."""

    FOREST = 0
    SAVANNA = 1
    PASTURE = 2
    CLEARING = 3
    ROAD = 4
    QUARRY = 5
    RIVER = 6
    SANDBAR = 7
    OXBOW = 8
    FISH_POND = 9
    MINING_POND = 10
    MINING_SEDIMENT = 11


#: Surfaces that are open water (SCL class 6 when seen clear).
WATER_SURFACES: frozenset[Surface] = frozenset(
    {Surface.RIVER, Surface.OXBOW, Surface.FISH_POND, Surface.MINING_POND}
)


@dataclass(frozen=True)
class SurfaceSpectrum:
    """Two endmember spectra of one surface and how the generator mixes them.

    Attributes:
        a: reflectance per band of :data:`SPECTRAL_BANDS` at mixing fraction 0.
        b: reflectance per band at mixing fraction 1.
        mix: what the fraction means (documentation).
        texture: relative amplitude of the multiplicative texture (0 = uniform).
        source: the references the values agree with.
    """

    a: tuple[float, ...]
    b: tuple[float, ...]
    mix: str
    texture: float
    source: str

    def __post_init__(self) -> None:
        n = len(SPECTRAL_BANDS)
        if len(self.a) != n or len(self.b) != n:
            raise ValueError(f"SurfaceSpectrum: need {n} values per endmember, got {len(self.a)}")
        if not all(0.0 <= v <= 1.0 for v in (*self.a, *self.b)):
            raise ValueError("SurfaceSpectrum: reflectance must lie in 0..1")


#                B02    B03    B04    B05    B06    B07    B08    B8A    B11    B12
SPECTRA: dict[Surface, SurfaceSpectrum] = {
    # Closed-canopy terra firme forest: a = wet season, b = dry season (slight NIR green-up).
    # NDVI ~0.87, SWIR1 ~0.15: [ROB] GV endmember, [SOU], [HUE], [S2UH].
    Surface.FOREST: SurfaceSpectrum(
        a=(0.020, 0.040, 0.022, 0.075, 0.230, 0.290, 0.310, 0.330, 0.150, 0.065),
        b=(0.021, 0.041, 0.020, 0.078, 0.245, 0.305, 0.325, 0.345, 0.155, 0.066),
        mix="season dryness",
        texture=0.14,
        source="ROB, SOU, HUE, S2UH",
    ),
    # Natural savanna / campinarana: grass-shrub mix, a = green, b = senescent (NDVI 0.68 -> 0.52).
    # [ROB] pasture/NPV mixtures, [USGS7] dry grass.
    Surface.SAVANNA: SurfaceSpectrum(
        a=(0.035, 0.060, 0.050, 0.100, 0.200, 0.240, 0.260, 0.280, 0.220, 0.120),
        b=(0.048, 0.072, 0.075, 0.115, 0.195, 0.220, 0.240, 0.255, 0.265, 0.155),
        mix="season dryness",
        texture=0.08,
        source="ROB, USGS7",
    ),
    # Old pasture (Brachiaria): a = green (NDVI ~0.75), b = dry season (NDVI ~0.58, NBR ~0.27).
    # [ROB] pasture, [USGS7] grass (green / dry).
    Surface.PASTURE: SurfaceSpectrum(
        a=(0.035, 0.070, 0.045, 0.110, 0.250, 0.300, 0.320, 0.335, 0.230, 0.115),
        b=(0.045, 0.075, 0.070, 0.120, 0.210, 0.245, 0.260, 0.275, 0.270, 0.150),
        mix="season dryness",
        texture=0.06,
        source="ROB, USGS7",
    ),
    # Fresh clearing: a = slash/NPV-rich (NDVI ~0.43), b = exposed soil and ash (NDVI ~0.29).
    # High SWIR, NBR near 0. [SOU] NPV + soil endmembers, [ROB], [ECO] oxisol.
    Surface.CLEARING: SurfaceSpectrum(
        a=(0.050, 0.070, 0.085, 0.120, 0.170, 0.195, 0.215, 0.230, 0.300, 0.190),
        b=(0.060, 0.080, 0.110, 0.140, 0.170, 0.185, 0.200, 0.210, 0.310, 0.230),
        mix="soil exposure",
        texture=0.10,
        source="SOU, ROB, ECO",
    ),
    # Unpaved lateritic road: red-brown oxisol, a = dry, b = compacted/damp.
    # [USGS7] lateritic soil, [ECO] oxisols.
    Surface.ROAD: SurfaceSpectrum(
        a=(0.070, 0.100, 0.170, 0.200, 0.220, 0.230, 0.245, 0.255, 0.330, 0.260),
        b=(0.060, 0.085, 0.140, 0.170, 0.195, 0.205, 0.220, 0.230, 0.310, 0.250),
        mix="wetness",
        texture=0.05,
        source="USGS7, ECO",
    ),
    # Hard-rock quarry: a = fresh granite faces, b = benches, fines and damp rock.
    # [ECO] granite, [USGS7] rock powders.
    Surface.QUARRY: SurfaceSpectrum(
        a=(0.180, 0.210, 0.240, 0.255, 0.265, 0.275, 0.285, 0.290, 0.330, 0.280),
        b=(0.110, 0.130, 0.150, 0.160, 0.170, 0.175, 0.185, 0.190, 0.230, 0.200),
        mix="benches and shade",
        texture=0.10,
        source="ECO, USGS7",
    ),
    # Natural river and streams: a = clear-water (Tapajos-like), b = moderately turbid
    # white-water (red ~0.07). [LOB] clear vs sediment-laden Tapajos waters, [PAH].
    Surface.RIVER: SurfaceSpectrum(
        a=(0.025, 0.035, 0.025, 0.020, 0.012, 0.010, 0.009, 0.008, 0.004, 0.003),
        b=(0.045, 0.070, 0.070, 0.065, 0.035, 0.030, 0.028, 0.025, 0.008, 0.005),
        mix="natural turbidity",
        texture=0.03,
        source="LOB, PAH",
    ),
    # Sandbar: a = wet sand at the water line, b = dry bright quartz sand.
    # [USGS7] quartz sand (wet / dry).
    Surface.SANDBAR: SurfaceSpectrum(
        a=(0.090, 0.120, 0.150, 0.165, 0.175, 0.180, 0.190, 0.195, 0.200, 0.150),
        b=(0.150, 0.200, 0.250, 0.280, 0.295, 0.305, 0.315, 0.320, 0.380, 0.320),
        mix="dryness",
        texture=0.05,
        source="USGS7",
    ),
    # Oxbow lake: dark, clear, humic water; b = slight phytoplankton. [PAH] clear water, [LOB].
    Surface.OXBOW: SurfaceSpectrum(
        a=(0.018, 0.025, 0.015, 0.012, 0.008, 0.007, 0.006, 0.006, 0.003, 0.002),
        b=(0.022, 0.040, 0.025, 0.025, 0.012, 0.010, 0.009, 0.008, 0.004, 0.003),
        mix="chlorophyll",
        texture=0.03,
        source="PAH, LOB",
    ),
    # Aquaculture (fish) pond: green eutrophic water, b = algal bloom (red-edge peak).
    # [PAH] eutrophic water.
    Surface.FISH_POND: SurfaceSpectrum(
        a=(0.030, 0.060, 0.035, 0.045, 0.030, 0.028, 0.025, 0.022, 0.008, 0.005),
        b=(0.030, 0.070, 0.040, 0.070, 0.060, 0.060, 0.060, 0.055, 0.010, 0.006),
        mix="chlorophyll",
        texture=0.02,
        source="PAH",
    ),
    # Mining pond: a = turbid (red ~0.11), b = very turbid orange-brown water of active
    # dredging (red ~0.18, NIR ~0.12, suspended sediment > 500 mg/l). [LOB], [PAH] turbid water.
    Surface.MINING_POND: SurfaceSpectrum(
        a=(0.060, 0.095, 0.110, 0.115, 0.080, 0.070, 0.065, 0.060, 0.020, 0.012),
        b=(0.080, 0.130, 0.180, 0.195, 0.150, 0.135, 0.125, 0.115, 0.035, 0.020),
        mix="turbidity",
        texture=0.04,
        source="LOB, PAH",
    ),
    # Mining sediment and tailings: a = wet fresh sediment, b = dry bright tailings (sand/silt).
    # [USGS7] quartz sand and kaolinitic silt, [ECO] oxisol, [LOB] exposed tailings.
    Surface.MINING_SEDIMENT: SurfaceSpectrum(
        a=(0.070, 0.095, 0.120, 0.140, 0.150, 0.158, 0.165, 0.170, 0.240, 0.190),
        b=(0.120, 0.160, 0.210, 0.240, 0.260, 0.270, 0.280, 0.290, 0.360, 0.300),
        mix="dryness",
        texture=0.08,
        source="USGS7, ECO, LOB",
    ),
}

#: Thick cumulus cloud as it appears in L2A: bright and flat in the VNIR, lower in SWIR [MAIN].
CLOUD: tuple[float, ...] = (0.48, 0.47, 0.47, 0.48, 0.49, 0.50, 0.50, 0.50, 0.36, 0.24)

#: Thin cirrus, per unit optical thickness: a small, nearly flat additive term [MAIN].
CIRRUS: tuple[float, ...] = (0.060, 0.060, 0.058, 0.057, 0.056, 0.055, 0.055, 0.054, 0.040, 0.028)

#: Residual haze (under-corrected aerosol) per unit strength: additive, falling with wavelength
#: roughly as an Angstrom exponent of 1.3 [S2UH].
HAZE: tuple[float, ...] = (0.030, 0.022, 0.014, 0.011, 0.009, 0.008, 0.007, 0.006, 0.002, 0.001)

#: Share of reflectance left under a full cloud shadow (diffuse skylight, stronger in the blue).
SHADOW_TRANSMISSION: tuple[float, ...] = (
    0.55,
    0.45,
    0.38,
    0.35,
    0.32,
    0.31,
    0.30,
    0.30,
    0.28,
    0.27,
)

#: Sensor noise, standard deviation in reflectance per band (MSI SNR at reference radiance).
NOISE_SIGMA: tuple[float, ...] = (
    0.0025,
    0.0022,
    0.0020,
    0.0022,
    0.0022,
    0.0022,
    0.0025,
    0.0022,
    0.0028,
    0.0030,
)


def endmember_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The spectra as lookup tables indexed by surface code.

    Returns:
        ``a`` and ``b`` of shape ``(band, surface)`` float32 and ``texture`` of shape
        ``(surface,)`` float32, for fancy indexing with a ``(row, col)`` array of surface codes.
    """
    n = len(Surface)
    a = np.zeros((len(SPECTRAL_BANDS), n), dtype=np.float32)
    b = np.zeros_like(a)
    texture = np.zeros(n, dtype=np.float32)
    for surface, spectrum in SPECTRA.items():
        a[:, surface] = spectrum.a
        b[:, surface] = spectrum.b
        texture[surface] = spectrum.texture
    return a, b, texture


def band_vector(values: tuple[float, ...]) -> np.ndarray:
    """A per-band constant as a ``(band, 1, 1)`` float32 array that broadcasts over a raster."""
    return np.asarray(values, dtype=np.float32).reshape(-1, 1, 1)
