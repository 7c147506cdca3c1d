"""Rendering: a period's surface painted from the layout, seen through the MSI's optics and an
atmosphere (illumination, haze, cirrus, clouds and their shadows, noise), written as an L2A COG
with its SCL."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from scipy import ndimage

from tiles.bands import BANDS
from tiles.cog import write_cog
from tiles.periods import Period
from tiles.spectra import (
    BANDS_20M,
    CIRRUS,
    CLOUD,
    HAZE,
    NOISE_SIGMA,
    SHADOW_TRANSMISSION,
    SPECTRAL_BANDS,
    Surface,
    band_vector,
)
from tiles.synthetic._geometry import Layout
from tiles.synthetic._noise import fractal_noise, smooth_noise, to_unit
from tiles.synthetic._spec import (
    BOA_ADD_OFFSET,
    GENERATOR_VERSION,
    PIXEL_M,
    SCENE_BANDS,
    WorldScene,
    WorldSpec,
    reflectance_to_dn,
)

#: SCL classes the generator writes.
_SCL_SHADOW, _SCL_VEG, _SCL_NOT_VEG, _SCL_WATER = 3, 4, 5, 6
_SCL_CLOUD_MED, _SCL_CLOUD_HIGH, _SCL_CIRRUS = 8, 9, 10


def paint_period(
    layout: Layout, period_index: int, dryness: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Surface codes, mixing fractions and truth of one period."""
    surface = layout.base_surface.copy()
    truth = layout.base_truth.copy()
    noise = layout.base_frac_noise
    # Mixing fraction of the static surfaces: season dryness for vegetation, turbidity for rivers.
    frac = np.clip(dryness + 0.12 * noise, 0.0, 1.0).astype(np.float32)
    veg_dry = np.clip(dryness + 0.25 * noise, 0.0, 1.0)
    open_veg = (surface == Surface.PASTURE) | (surface == Surface.SAVANNA)
    frac[open_veg] = veg_dry[open_veg]
    river = surface == Surface.RIVER
    turbidity = np.clip(0.8 - 0.55 * dryness + 0.12 * layout.river_turbidity_noise, 0.0, 1.0)
    frac[river] = turbidity[river]
    road = surface == Surface.ROAD
    frac[road] = np.clip(0.5 - 0.4 * dryness + 0.2 * noise[road], 0, 1)
    for site in layout.sites:
        paint = site.paints[period_index]
        if paint is None:
            continue
        h, w = paint.surface.shape
        sl = (slice(site.row0, site.row0 + h), slice(site.col0, site.col0 + w))
        m = paint.surface != 255
        surface[sl][m] = paint.surface[m]
        local_frac = paint.frac
        if np.isnan(local_frac).any():  # pastures follow the season like static vegetation
            local_frac = veg_dry[sl].astype(np.float32)
        frac[sl][m] = local_frac[m]
        t = paint.truth != 0
        truth[sl][t] = paint.truth[t]
    return surface, frac, truth


def surface_reflectance(
    surface: np.ndarray,
    frac: np.ndarray,
    texture: np.ndarray,
    a_tab: np.ndarray,
    b_tab: np.ndarray,
    tex_tab: np.ndarray,
) -> np.ndarray:
    """``(band, row, col)`` float32 surface reflectance seen through the MSI's optics."""
    out = a_tab[:, surface]
    out += frac[np.newaxis] * (b_tab - a_tab)[:, surface]
    out *= np.maximum(1.0 + tex_tab[surface] * texture, 0.3)[np.newaxis]
    for b in range(out.shape[0]):
        # The instrument's point spread: mixes a fraction of each pixel with its neighbours.
        out[b] = ndimage.gaussian_filter(out[b], sigma=0.45, truncate=3.0)
    for name in BANDS_20M:
        b = SPECTRAL_BANDS.index(name)
        out[b] = _as_20m(out[b])
    return out


def _as_20m(band: np.ndarray) -> np.ndarray:
    """Average 2 x 2 blocks and repeat them: a 20 m band resampled to 10 m (nearest)."""
    h, w = band.shape
    ph, pw = h + h % 2, w + w % 2
    padded = np.pad(band, ((0, ph - h), (0, pw - w)), mode="edge")
    coarse = padded.reshape(ph // 2, 2, pw // 2, 2).mean(axis=(1, 3))
    return np.repeat(np.repeat(coarse, 2, axis=0), 2, axis=1)[:h, :w]


def _shift(field_: np.ndarray, drow: int, dcol: int) -> np.ndarray:
    """``field_`` moved by ``(drow, dcol)`` pixels, zero-filled."""
    out = np.zeros_like(field_)
    h, w = field_.shape
    if abs(drow) >= h or abs(dcol) >= w:
        return out
    src_r = slice(max(-drow, 0), h - max(drow, 0))
    dst_r = slice(max(drow, 0), h - max(-drow, 0))
    src_c = slice(max(-dcol, 0), w - max(dcol, 0))
    dst_c = slice(max(dcol, 0), w - max(-dcol, 0))
    out[dst_r, dst_c] = field_[src_r, src_c]
    return out


def render_scene(
    surface_reflectance: np.ndarray,
    is_water: np.ndarray,
    when: dt.datetime,
    period: Period,
    spec: WorldSpec,
    tile_id: str,
    crs: CRS,
    transform: Affine,
    scenes_dir: Path,
    rng: np.random.Generator,
) -> WorldScene:
    """Render one acquisition at ``when``: the surface under its sky (clouds, their shadows,
    cirrus), through the atmosphere and the sensor's noise, classified into an SCL and written
    as an L2A COG into ``scenes_dir``. Draws from ``rng`` in a fixed order."""
    n = spec.size_px
    big = max(n / 5.0, 48.0)
    alpha, shadow, tau = _sky(spec, when, big, rng)
    out = _observe(surface_reflectance, alpha, shadow, tau, spec, big, rng)
    scl, cloud_fraction = _classify(out, is_water, alpha, shadow, tau)
    del alpha, tau, shadow

    dn = np.empty((len(SCENE_BANDS), n, n), dtype=np.uint16)
    for b in range(len(SPECTRAL_BANDS)):
        dn[b] = reflectance_to_dn(out[b])
    dn[-1] = scl
    del out

    spacecraft = "Sentinel-2A" if rng.random() < 0.5 else "Sentinel-2B"
    processed = when + dt.timedelta(seconds=int(rng.integers(3 * 3600, 7 * 3600)))
    baseline = spec.processing_baseline.replace(".", "")
    scene_id = (
        f"S2{spacecraft[-1]}_MSIL2A_{when:%Y%m%dT%H%M%S}_N{baseline}"
        f"_R{spec.relative_orbit:03d}_T{tile_id}_{processed:%Y%m%dT%H%M%S}"
    )
    path = scenes_dir / f"{scene_id}.tif"
    write_cog(
        path,
        dn,
        crs=crs,
        transform=transform,
        nodata=0,
        band_descriptions=list(SCENE_BANDS),
        tags={
            "ACQUISITION_DATETIME": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "PROCESSING_BASELINE": spec.processing_baseline,
            "BOA_ADD_OFFSET": str(BOA_ADD_OFFSET),
            "SPACECRAFT": spacecraft,
            "PRODUCT_ID": scene_id,
            "MGRS_TILE": tile_id,
            "CLOUD_COVERAGE_ASSESSMENT": f"{100 * cloud_fraction:.2f}",
            "SYNTHETIC": f"minewatch synthetic world {GENERATOR_VERSION}, seed {spec.seed}",
        },
        band_tags=_band_tags(),
        # Nearest keeps SCL classes valid in the overviews (one resampling for all bands).
        resampling="nearest",
    )
    return WorldScene(scene_id, when, period.label, spacecraft, cloud_fraction, path)


def _sky(
    spec: WorldSpec, when: dt.datetime, big: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(alpha, shadow, tau)``: cloud opacity, cloud shadow and cirrus thickness per pixel."""
    n = spec.size_px
    shape = (n, n)
    # Sun and cloud geometry first: shadows fall opposite the sun (morning overpass; the sun is
    # in the north-east in the dry season, the south-east in the wet season).
    azimuth = math.radians(rng.uniform(40, 70) if 4 <= when.month <= 9 else rng.uniform(95, 130))
    zenith = math.radians(rng.uniform(25, 40))
    cloud_height_m = rng.uniform(800.0, 2500.0)
    d_px = cloud_height_m * math.tan(zenith) / PIXEL_M
    drow = round(d_px * math.cos(azimuth))
    dcol = round(-d_px * math.sin(azimuth))
    # Clouds on a field larger than the world, so clouds outside it cast shadows inside.
    m = math.ceil(d_px) + 2
    ext = (n + 2 * m, n + 2 * m)
    cover = float(np.clip(spec.cloud_cover * rng.gamma(4.0, 0.25), 0.0, 0.95))
    if cover > 0.0:
        cfield = fractal_noise(rng, ext, (big, big / 3, 24.0, 8.0))
        cut = float(np.quantile(cfield[m : m + n : 4, m : m + n : 4], 1.0 - cover))
        alpha_ext = (np.clip((cfield - cut) / 0.55, 0.0, 1.0) ** 0.8).astype(np.float32)
        del cfield
    else:
        alpha_ext = np.zeros(ext, dtype=np.float32)
    alpha = alpha_ext[m : m + n, m : m + n]
    shadow = _shift(alpha_ext, drow, dcol)[m : m + n, m : m + n] * (1.0 - alpha)
    del alpha_ext
    # Thin cirrus on about half of the acquisitions.
    if spec.cloud_cover > 0 and rng.random() < 0.5:
        cir = fractal_noise(rng, shape, (big * 1.5, big / 2, 30.0))
        cir_cut = float(np.quantile(cir[::4, ::4], 1.0 - rng.uniform(0.05, 0.3)))
        tau = (np.clip((cir - cir_cut) / 1.2, 0.0, 1.0) * rng.uniform(0.4, 1.0)).astype(np.float32)
        del cir
    else:
        tau = np.zeros(shape, dtype=np.float32)
    return alpha, shadow, tau


def _observe(
    surface_reflectance: np.ndarray,
    alpha: np.ndarray,
    shadow: np.ndarray,
    tau: np.ndarray,
    spec: WorldSpec,
    big: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """``(band, row, col)`` reflectance seen from orbit: illumination, shadow, haze, cirrus and
    clouds over the surface, plus the sensor's noise."""
    n = spec.size_px
    shape = (n, n)
    illumination = rng.uniform(0.94, 1.05)
    haze = to_unit(smooth_noise(rng, shape, big * 1.5)) * rng.uniform(0.0, spec.haze_max)

    out = surface_reflectance * np.float32(illumination)
    trans = band_vector(SHADOW_TRANSMISSION)
    out *= 1.0 - shadow[np.newaxis] * (1.0 - trans)
    out += haze[np.newaxis] * band_vector(HAZE)
    out += tau[np.newaxis] * band_vector(CIRRUS)
    cloud_tex = 0.9 + 0.2 * to_unit(smooth_noise(rng, shape, 6.0))
    out *= 1.0 - alpha[np.newaxis]
    out += (alpha * cloud_tex)[np.newaxis] * band_vector(CLOUD)
    del cloud_tex, haze
    # Sensor noise (20 m bands: noise of the 20 m pixel).
    sigma = np.asarray(NOISE_SIGMA, dtype=np.float32) * np.float32(spec.noise_scale)
    for b, name in enumerate(SPECTRAL_BANDS):
        if sigma[b] <= 0:
            continue
        if name in BANDS_20M:
            half = ((n + 1) // 2, (n + 1) // 2)
            noise = rng.standard_normal(half, dtype=np.float32) * sigma[b]
            out[b] += np.repeat(np.repeat(noise, 2, axis=0), 2, axis=1)[:n, :n]
        else:
            out[b] += rng.standard_normal(shape, dtype=np.float32) * sigma[b]
    return out


def _classify(
    out: np.ndarray,
    is_water: np.ndarray,
    alpha: np.ndarray,
    shadow: np.ndarray,
    tau: np.ndarray,
) -> tuple[np.ndarray, float]:
    """The scene classification (Sen2Cor-like, with its usual misses at thin cloud edges) and
    the share of pixels it calls cloud or cirrus."""
    red = out[SPECTRAL_BANDS.index("B04")]
    nir = out[SPECTRAL_BANDS.index("B08")]
    ndvi = (nir - red) / np.maximum(nir + red, 1e-6)
    scl = np.where(ndvi >= 0.35, _SCL_VEG, _SCL_NOT_VEG).astype(np.uint16)
    scl[is_water & (ndvi < 0.2)] = _SCL_WATER
    scl[shadow >= 0.35] = _SCL_SHADOW
    scl[(tau >= 0.25) & (alpha < 0.3)] = _SCL_CIRRUS
    scl[(alpha >= 0.3) & (alpha < 0.6)] = _SCL_CLOUD_MED
    scl[alpha >= 0.6] = _SCL_CLOUD_HIGH
    cloud_fraction = float(np.isin(scl, [_SCL_CLOUD_MED, _SCL_CLOUD_HIGH, _SCL_CIRRUS]).mean())
    return scl, cloud_fraction


def _band_tags() -> list[dict[str, str]]:
    """Per-band tags of a scene: wavelength and resolution of each spectral band, SCL classes."""
    band_tags = [
        {
            "WAVELENGTH": f"{BANDS[b].wavelength_nm:.1f}",
            "WAVELENGTH_UNIT": "nm",
            "RESOLUTION_M": str(BANDS[b].resolution_m),
        }
        for b in SPECTRAL_BANDS
    ]
    band_tags.append({"CLASSES": json.dumps({str(k): v for k, v in _scl_names().items()})})
    return band_tags


def _scl_names() -> dict[int, str]:
    from tiles.bands import SCL_NAMES

    return dict(SCL_NAMES)
