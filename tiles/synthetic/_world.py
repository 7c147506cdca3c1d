"""The synthetic world: physically plausible Sentinel-2 L2A scenes with truth (DESIGN.md section 8).

:func:`generate_world` paints a square of Amazon landscape on a real UTM grid (forest, savanna,
old pasture, a meandering river with tributaries, roads, clearings, alluvial gold mining along the
streams and the natural look-alikes that fool simple rules), then renders several acquisitions
per period through a simple atmosphere (illumination, haze, cirrus, clouds and their shadows,
sensor noise) into L2A-like COGs in the ``local`` source format of DESIGN.md section 3, with a
truth mask per period and the truth sites as GeoJSON.

Layout of ``out_dir``::

    scenes/<scene_id>.tif      one per acquisition: uint16 L2A digital numbers, B02..B12 and SCL
    truth/<period>.tif         uint8 truth classes (:class:`TruthClass`) per period
    truth/sites.geojson        truth sites per period (RFC 7946, EPSG:4326)
    world.json                 spec, grid, periods, scenes, truth classes, generator version

Everything is drawn from ``numpy.random.Generator`` streams seeded by ``WorldSpec.seed``, so a
spec always produces the same pixels.
"""

from __future__ import annotations

import datetime as dt
import importlib.resources
import itertools
import json
import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

import numpy as np
import shapely
import shapely.affinity
from affine import Affine
from pydantic import BaseModel, Field, field_validator, model_validator
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.features import shapes as raster_shapes
from scipy import ndimage
from shapely.geometry import Polygon, mapping, shape
from shapely.geometry.polygon import orient

from aoi.geometry import split_antimeridian, utm_crs_for
from tiles.bands import BANDS, SCL
from tiles.cog import write_cog
from tiles.files import write_text_atomic
from tiles.periods import Period, quarter
from tiles.spectra import (
    BANDS_20M,
    CIRRUS,
    CLOUD,
    HAZE,
    NOISE_SIGMA,
    SHADOW_TRANSMISSION,
    SPECTRAL_BANDS,
    WATER_SURFACES,
    Surface,
    band_vector,
    endmember_tables,
)

log = logging.getLogger(__name__)

#: Version of the generator; recorded in ``world.json``. Bump when the same spec paints differently.
GENERATOR_VERSION = "1.0.0"

#: Band order of every synthetic scene file (band descriptions).
SCENE_BANDS: tuple[str, ...] = (*SPECTRAL_BANDS, SCL)

#: BOA_ADD_OFFSET of L2A products of processing baseline 04.00 and later.
BOA_ADD_OFFSET = -1000

PIXEL_M = 10.0
PIXEL_HA = PIXEL_M * PIXEL_M / 10_000.0

AMW_ATTRIBUTION = (
    "Mining site shapes: Earth Genome / Amazon Mining Watch, CC-BY-4.0, "
    "earthrise-media/mining-detector @ bbbcb2d7"
)


class TruthClass(IntEnum):
    """Codes of the truth masks ``truth/<period>.tif``."""

    BACKGROUND = 0  #: forest and anything not listed
    MINING = 1  #: alluvial mining: turbid ponds, sediment, tailings
    DEFORESTATION = 2  #: fresh clearing (slash, exposed soil)
    SANDBAR = 3  #: natural sand bar in the river (look-alike)
    OXBOW_LAKE = 4  #: cut-off meander lake, dark clear water (look-alike)
    PASTURE = 5  #: old pasture (look-alike)
    QUARRY = 6  #: hard-rock quarry away from rivers (look-alike)
    FISH_POND = 7  #: aquaculture ponds, regular rectangles (look-alike)
    WATER = 8  #: natural river and streams
    ROAD = 9  #: unpaved road
    SAVANNA = 10  #: natural savanna patch (look-alike)


#: Dryness (0 wet .. 1 dry) of each calendar quarter in the southern Amazon (Tapajos basin).
_QUARTER_DRYNESS = {1: 0.10, 2: 0.35, 3: 0.90, 4: 0.60}

#: SCL classes the generator writes.
_SCL_SHADOW, _SCL_VEG, _SCL_NOT_VEG, _SCL_WATER = 3, 4, 5, 6
_SCL_CLOUD_MED, _SCL_CLOUD_HIGH, _SCL_CIRRUS = 8, 9, 10

_PERIOD_RE = re.compile(r"^(\d{4})Q([1-4])$")
_BASELINE_RE = re.compile(r"^\d{2}\.\d{2}$")


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


class WorldSpec(BaseModel, extra="forbid"):
    """What world to generate. Defaults give the demo world (1536 x 1536 px, 2 quarters)."""

    center_lon: float = Field(default=-57.55, ge=-180.0, le=180.0)
    """Longitude of the world's centre (default: inside the Munduruku indigenous land, Tapajos)."""
    center_lat: float = Field(default=-6.62, ge=-79.0, le=83.0)
    """Latitude of the world's centre (UTM range)."""
    size_px: int = Field(default=1536, ge=128, le=8192)
    """Side of the square world in 10 m pixels."""
    periods: list[str] = Field(default_factory=lambda: ["2024Q2", "2024Q3"])
    """Quarter labels ``YYYYQn``, oldest first, at least two."""
    acquisitions_per_period: int = Field(default=3, ge=1, le=18)
    """Scenes per period (Sentinel-2 revisits every 5 days: at most 18 per quarter)."""
    seed: int = Field(default=0, ge=0)
    """Seed of every random draw."""
    n_mining_sites: int = Field(default=8, ge=0)
    """Mining sites along the streams (about 1/3 new, 1/3 expanding, the rest stable)."""
    n_clearings: int = Field(default=5, ge=0)
    """Fresh clearings along the roads (about half new, the rest expanding)."""
    cloud_cover: float = Field(default=0.15, ge=0.0, le=0.9)
    """Mean cloud fraction per acquisition."""
    processing_baseline: str = "05.10"
    """L2A processing baseline written to every scene (``NN.NN``, 04.00 or later)."""
    mining_site_area_ha: tuple[float, float] = (4.0, 30.0)
    """Range of the final area of a mining site (log-uniform)."""
    clearing_area_ha: tuple[float, float] = (2.0, 20.0)
    """Range of the final area of a clearing (log-uniform)."""
    n_tributaries: int = Field(default=3, ge=0)
    """Streams joining the main river."""
    n_roads: int = Field(default=2, ge=0, le=4)
    """Unpaved roads crossing the world."""
    n_sandbars: int = Field(default=4, ge=0)
    n_oxbow_lakes: int = Field(default=2, ge=0)
    n_pastures: int = Field(default=3, ge=0)
    n_quarries: int = Field(default=1, ge=0)
    n_fish_pond_groups: int = Field(default=1, ge=0)
    savanna_fraction: float = Field(default=0.03, ge=0.0, le=0.5)
    """Share of the world covered by natural savanna patches."""
    haze_max: float = Field(default=0.8, ge=0.0, le=3.0)
    """Largest residual haze strength of an acquisition (per unit of ``tiles.spectra.HAZE``)."""
    noise_scale: float = Field(default=1.0, ge=0.0, le=10.0)
    """Multiplier of the sensor noise of ``tiles.spectra.NOISE_SIGMA``."""
    relative_orbit: int = Field(default=67, ge=1, le=143)
    """Relative orbit number written into the scene ids."""

    @field_validator("periods")
    @classmethod
    def _check_periods(cls, value: list[str]) -> list[str]:
        if len(value) < 2:
            raise ValueError(
                f"periods {value!r}: need at least 2 quarters, e.g. ['2024Q2', '2024Q3']"
            )
        parsed = [parse_quarter(label) for label in value]
        for before, after in itertools.pairwise(parsed):
            if after.start <= before.start:
                raise ValueError(
                    f"periods {value!r}: {after.label!r} does not follow {before.label!r}; "
                    "list the quarters oldest first, without repeats"
                )
        return value

    @field_validator("processing_baseline")
    @classmethod
    def _check_baseline(cls, value: str) -> str:
        if not _BASELINE_RE.match(value) or float(value) < 4.0:
            raise ValueError(
                f"processing_baseline {value!r}: expected 'NN.NN' of 04.00 or later "
                "(the scenes carry BOA_ADD_OFFSET -1000), e.g. '05.10'"
            )
        return value

    @field_validator("mining_site_area_ha", "clearing_area_ha")
    @classmethod
    def _check_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not 0.0 < low <= high:
            raise ValueError(f"area range {value!r}: expected 0 < min <= max (hectares)")
        return value

    @model_validator(mode="after")
    def _check_sizes(self) -> WorldSpec:
        world_ha = self.size_px * self.size_px * PIXEL_HA
        if self.mining_site_area_ha[1] > world_ha / 20 or self.clearing_area_ha[1] > world_ha / 20:
            raise ValueError(
                f"site areas {self.mining_site_area_ha} / {self.clearing_area_ha} ha are too large "
                f"for a world of {self.size_px} px ({world_ha:.0f} ha): keep them below "
                f"{world_ha / 20:.0f} ha"
            )
        return self


@dataclass(frozen=True)
class WorldScene:
    """One generated acquisition.

    Attributes:
        scene_id: product-like name, e.g. ``S2A_MSIL2A_20240714T135521_N0510_R067_T21MVN_...``.
        datetime: acquisition time (UTC).
        period: label of the period it belongs to.
        spacecraft: ``Sentinel-2A`` or ``Sentinel-2B``.
        cloud_fraction: share of pixels flagged cloud or cirrus in its SCL (8, 9, 10).
        path: the COG.
    """

    scene_id: str
    datetime: dt.datetime
    period: str
    spacecraft: str
    cloud_fraction: float
    path: Path


@dataclass(frozen=True)
class World:
    """What :func:`generate_world` wrote.

    Attributes:
        root: the output folder.
        spec: the spec it was generated from.
        crs: UTM CRS of every raster.
        transform: affine transform shared by every raster.
        width: columns.
        height: rows.
        tile_id: MGRS tile the world lies in (e.g. ``21MVN``).
        periods: the periods, oldest first.
        scenes: the acquisitions, in time order.
        truth_paths: truth mask per period, in the order of ``periods``.
        sites_path: the truth sites GeoJSON.
        metadata_path: ``world.json``.
        n_sites: number of truth sites by class (``mining``, ``deforestation``, ``lookalike``).
    """

    root: Path
    spec: WorldSpec
    crs: CRS
    transform: Affine
    width: int
    height: int
    tile_id: str
    periods: tuple[Period, ...]
    scenes: tuple[WorldScene, ...]
    truth_paths: tuple[Path, ...]
    sites_path: Path
    metadata_path: Path
    n_sites: dict[str, int] = field(default_factory=dict)

    @property
    def scene_ids(self) -> tuple[str, ...]:
        return tuple(s.scene_id for s in self.scenes)

    def scenes_in(self, period: str) -> tuple[WorldScene, ...]:
        """The scenes of the period labelled ``period``."""
        return tuple(s for s in self.scenes if s.period == period)

    def truth_path(self, period: str) -> Path:
        """The truth mask of the period labelled ``period``.

        Raises:
            KeyError: no such period in this world.
        """
        for p, path in zip(self.periods, self.truth_paths, strict=False):
            if p.label == period:
                return path
        raise KeyError(f"period {period!r} not in world periods {[p.label for p in self.periods]}")


def parse_quarter(label: str) -> Period:
    """The calendar quarter named ``YYYYQn``.

    Raises:
        ValueError: ``label`` is not of the form ``YYYYQn``.
    """
    m = _PERIOD_RE.match(label)
    if m is None:
        raise ValueError(f"period {label!r}: expected a quarter label 'YYYYQn', e.g. '2024Q3'")
    return quarter(int(m.group(1)), int(m.group(2)))


def mgrs_tile(lon: float, lat: float) -> str:
    """The MGRS 100 km tile (``21MVN``) holding ``(lon, lat)``, as Sentinel-2 tiles are named.

    Standard MGRS lettering (AA scheme) without the Norway/Svalbard zone exceptions.
    """
    zone = min(int((lon + 180.0) // 6.0) + 1, 60)
    band = "CDEFGHJKLMNPQRSTUVWX"[min(max(int((lat + 80.0) // 8.0), 0), 19)]
    crs = utm_crs_for(lon, lat)
    easting, northing = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lon, lat)
    col_sets = ("ABCDEFGH", "JKLMNPQR", "STUVWXYZ")
    col = col_sets[(zone - 1) % 3][min(max(int(easting // 100_000) - 1, 0), 7)]
    rows = "ABCDEFGHJKLMNPQRSTUV"
    row = rows[(int(northing // 100_000) + (5 if zone % 2 == 0 else 0)) % 20]
    return f"{zone:02d}{band}{col}{row}"


def reflectance_to_dn(
    reflectance: np.ndarray, *, boa_add_offset: int = BOA_ADD_OFFSET
) -> np.ndarray:
    """Encode surface reflectance as L2A digital numbers: ``round(r * 10000) - BOA_ADD_OFFSET``.

    The inverse of the L2A convention ``r = (DN + BOA_ADD_OFFSET) / 10000``. DN 0 is no-data, so
    the result is clipped to 1..65535.

    Args:
        reflectance: reflectance (0..1 nominal; slightly negative values are representable).
        boa_add_offset: the product's BOA_ADD_OFFSET (-1000 from processing baseline 04.00).

    Returns:
        uint16 digital numbers of the shape of ``reflectance``.
    """
    dn = np.rint(np.asarray(reflectance, dtype=np.float64) * 10_000.0) - boa_add_offset
    return np.clip(dn, 1, 65_535).astype(np.uint16)


def load_mining_shapes() -> list[Polygon]:
    """The real mining polygon shapes shipped in ``tiles/data`` (Amazon Mining Watch, CC-BY-4.0).

    Each shape is projected to local metres, centred on its centroid, rotated so its long axis
    lies along x, and scaled to unit area.

    Returns:
        Polygons in arbitrary units of area 1.
    """
    resource = importlib.resources.files("tiles") / "data" / "amw_mining_shapes.geojson"
    collection = json.loads(resource.read_text(encoding="utf-8"))
    out: list[Polygon] = []
    for feature in collection["features"]:
        geom = shape(feature["geometry"])
        polys = list(geom.geoms) if hasattr(geom, "geoms") else [geom]
        poly = max(polys, key=lambda p: p.area)
        xy = np.asarray(poly.exterior.coords, dtype=np.float64)
        lon0, lat0 = xy[:, 0].mean(), xy[:, 1].mean()
        x = (xy[:, 0] - lon0) * 111_320.0 * math.cos(math.radians(lat0))
        y = (xy[:, 1] - lat0) * 110_574.0
        local = Polygon(np.column_stack([x, y]))
        if not local.is_valid or local.area <= 0:
            continue
        c = local.centroid
        pts = np.column_stack([x - c.x, y - c.y])
        cov = np.cov(pts.T)
        evals, evecs = np.linalg.eigh(cov)
        major = evecs[:, int(np.argmax(evals))]
        angle = -math.atan2(major[1], major[0])
        rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        pts = pts @ rot.T
        unit = Polygon(pts / math.sqrt(local.area))
        out.append(unit)
    return out


def generate_world(
    out_dir: Path,
    spec: WorldSpec,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> World:
    """Generate the synthetic world ``spec`` into ``out_dir``.

    Existing files of the same names are replaced (atomically); the caller decides whether an
    existing folder may be overwritten.

    Args:
        out_dir: the output folder (created if missing).
        spec: what to generate.
        progress: called as ``progress(done, total)`` after each step (periods, scenes, truth).

    Returns:
        A summary of the files written.

    Raises:
        FileExistsError: ``out_dir`` exists and is not a folder.
        ValueError: the spec's sites do not fit the world (too many for its size).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"synthetic world: {out_dir} exists and is not a folder")
    periods = tuple(parse_quarter(label) for label in spec.periods)
    crs, transform, tile_id = _grid(spec)
    n = spec.size_px
    log.info(
        "generating synthetic world %d x %d px at (%.4f, %.4f), %s, tile %s, periods %s, seed %d",
        n,
        n,
        spec.center_lon,
        spec.center_lat,
        crs.to_string(),
        tile_id,
        ",".join(spec.periods),
        spec.seed,
    )
    total_steps = len(periods) * (spec.acquisitions_per_period + 1) + 1
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total_steps)

    root_ss = np.random.SeedSequence([spec.seed, 20240714])
    layout_ss, period_ss, scene_ss = root_ss.spawn(3)
    dryness = _period_dryness(periods, np.random.default_rng(period_ss))
    layout = _build_layout(spec, np.random.default_rng(layout_ss), dryness)

    scenes_dir = out_dir / "scenes"
    truth_dir = out_dir / "truth"
    scenes_dir.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)

    a_tab, b_tab, tex_tab = endmember_tables()
    scene_rngs = [np.random.default_rng(s) for s in scene_ss.spawn(len(periods))]
    scenes: list[WorldScene] = []
    truth_paths: list[Path] = []
    for pi, period in enumerate(periods):
        surface, frac, truth = _paint_period(layout, pi, dryness[pi])
        reflectance = _surface_reflectance(surface, frac, layout.texture, a_tab, b_tab, tex_tab)
        truth_path = truth_dir / f"{period.label}.tif"
        write_cog(
            truth_path,
            truth,
            crs=crs,
            transform=transform,
            band_descriptions=["truth_class"],
            tags={
                "PERIOD": period.label,
                "PERIOD_START": period.start.isoformat(),
                "PERIOD_END": period.end.isoformat(),
                **{f"CLASS_{c.value}": c.name.lower() for c in TruthClass},
            },
            resampling="nearest",
        )
        truth_paths.append(truth_path)
        log.info("period %s: surface painted, truth written to %s", period.label, truth_path)
        step()
        is_water = np.isin(surface, [int(s) for s in WATER_SURFACES])
        del frac, truth
        rng = scene_rngs[pi]
        for when in _acquisition_times(period, spec.acquisitions_per_period, rng):
            scene = _render_scene(
                reflectance, is_water, when, period, spec, tile_id, crs, transform, scenes_dir, rng
            )
            scenes.append(scene)
            log.debug("scene %s written (cloud %.2f)", scene.scene_id, scene.cloud_fraction)
            step()
        del reflectance, surface, is_water

    sites_path = truth_dir / "sites.geojson"
    n_sites = _write_sites(sites_path, layout, periods, crs, transform)
    metadata_path = out_dir / "world.json"
    world = World(
        root=out_dir,
        spec=spec,
        crs=crs,
        transform=transform,
        width=n,
        height=n,
        tile_id=tile_id,
        periods=periods,
        scenes=tuple(scenes),
        truth_paths=tuple(truth_paths),
        sites_path=sites_path,
        metadata_path=metadata_path,
        n_sites=n_sites,
    )
    write_text_atomic(metadata_path, json.dumps(_world_metadata(world), indent=2) + "\n")
    step()
    log.info("synthetic world written to %s: %d scenes, sites %s", out_dir, len(scenes), n_sites)
    return world


# --------------------------------------------------------------------------------------------
# Grid and time
# --------------------------------------------------------------------------------------------


def _grid(spec: WorldSpec) -> tuple[CRS, Affine, str]:
    crs = utm_crs_for(spec.center_lon, spec.center_lat)
    to_utm = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    cx, cy = to_utm.transform(spec.center_lon, spec.center_lat)
    half_m = spec.size_px * PIXEL_M / 2.0
    left = math.floor((cx - half_m) / PIXEL_M) * PIXEL_M
    top = math.floor((cy + half_m) / PIXEL_M) * PIXEL_M
    transform = Affine(PIXEL_M, 0.0, left, 0.0, -PIXEL_M, top)
    return crs, transform, mgrs_tile(spec.center_lon, spec.center_lat)


def _period_dryness(periods: Sequence[Period], rng: np.random.Generator) -> list[float]:
    out = []
    for p in periods:
        q = (p.start.month - 1) // 3 + 1
        out.append(float(np.clip(_QUARTER_DRYNESS[q] + rng.uniform(-0.05, 0.05), 0.0, 1.0)))
    return out


def _acquisition_times(period: Period, count: int, rng: np.random.Generator) -> list[dt.datetime]:
    """Distinct acquisition days spread over the period, at a Sentinel-2 overpass time (UTC)."""
    n_days = (period.end - period.start).days + 1
    edges = np.linspace(0, n_days, count + 1).astype(int)
    out = []
    for lo, hi in itertools.pairwise(edges):
        day = period.start + dt.timedelta(days=int(rng.integers(lo, max(hi, lo + 1))))
        seconds = int(rng.integers(13 * 3600 + 54 * 60, 13 * 3600 + 57 * 60))
        out.append(
            dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)
            + dt.timedelta(seconds=seconds)
        )
    return out


# --------------------------------------------------------------------------------------------
# Noise fields
# --------------------------------------------------------------------------------------------


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale_px: float) -> np.ndarray:
    """Zero-mean, unit-variance noise with features of about ``scale_px`` pixels (float32).

    Fine scales blur white noise; coarse scales interpolate a coarse white-noise grid with cubic
    B-splines, as two small matrix products (fast at any size).
    """
    h, w = shape
    if scale_px <= 8.0:
        field_ = ndimage.gaussian_filter(
            rng.standard_normal(shape, dtype=np.float32), sigma=max(scale_px / 2.0, 0.5)
        )
    else:
        low = rng.standard_normal(
            (math.ceil(h / scale_px) + 4, math.ceil(w / scale_px) + 4), dtype=np.float32
        )
        field_ = _bspline_matrix(h, low.shape[0], scale_px) @ low
        field_ = field_ @ _bspline_matrix(w, low.shape[1], scale_px).T
    field_ = field_ - field_.mean()
    std = float(field_.std())
    return (field_ / std if std > 0 else field_).astype(np.float32, copy=False)


def _bspline_matrix(n_out: int, n_low: int, scale_px: float) -> np.ndarray:
    """``(n_out, n_low)`` weights interpolating a grid of spacing ``scale_px`` (cubic B-spline)."""
    t = (np.arange(n_out, dtype=np.float32) + 0.5) / np.float32(scale_px) + 1.5
    x = np.abs(t[:, np.newaxis] - np.arange(n_low, dtype=np.float32)[np.newaxis, :])
    return np.where(
        x < 1.0, 2.0 / 3.0 - x**2 + 0.5 * x**3, np.where(x < 2.0, (2.0 - x) ** 3 / 6.0, 0.0)
    ).astype(np.float32)


def _fractal_noise(
    rng: np.random.Generator, shape: tuple[int, int], scales_px: Sequence[float]
) -> np.ndarray:
    """Sum of octaves of :func:`_smooth_noise`, amplitude halving per octave, unit variance."""
    total = np.zeros(shape, dtype=np.float32)
    amp = 1.0
    for s in scales_px:
        total += amp * _smooth_noise(rng, shape, s)
        amp *= 0.5
    total -= total.mean()
    return total / max(float(total.std()), 1e-6)


def _to_unit(x: np.ndarray) -> np.ndarray:
    """Map a unit-variance noise field to 0..1 (logistic)."""
    return (1.0 / (1.0 + np.exp(-1.7 * np.clip(x, -20.0, 20.0)))).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Layout: the static geometry of the world and the sites with their per-period footprints
# --------------------------------------------------------------------------------------------


@dataclass
class _SitePaint:
    """What a site paints in one period, in its window: surface codes, mix fractions, truth."""

    surface: np.ndarray  # uint8, 255 = leave as is
    frac: np.ndarray  # float32
    truth: np.ndarray  # uint8, 0 = leave as is


@dataclass
class _Site:
    truth_id: str
    cls: str
    kind: str
    truth_code: int
    row0: int
    col0: int
    paints: list[_SitePaint | None]  # per period; None = absent

    def mask(self, period_index: int) -> np.ndarray | None:
        paint = self.paints[period_index]
        if paint is None:
            return None
        m = paint.truth == self.truth_code
        return m if m.any() else None


@dataclass
class _Line:
    """A centreline in pixel coordinates (x = col, y = row) with half-widths and headings."""

    x: np.ndarray
    y: np.ndarray
    half_width: np.ndarray
    heading: np.ndarray

    def inside(self, n: int, margin: float) -> np.ndarray:
        return np.flatnonzero(
            (self.x > margin) & (self.x < n - margin) & (self.y > margin) & (self.y < n - margin)
        )


@dataclass
class _Layout:
    n: int
    n_periods: int
    base_surface: np.ndarray  # uint8 surface codes without period-dependent sites
    base_frac_noise: np.ndarray  # float32 local variation of the mixing fraction (unit variance)
    base_truth: np.ndarray  # uint8
    river_turbidity_noise: np.ndarray
    texture: np.ndarray  # float32 unit-variance texture
    sites: list[_Site]


def _build_layout(spec: WorldSpec, rng: np.random.Generator, dryness: Sequence[float]) -> _Layout:
    n = spec.size_px
    n_periods = len(dryness)
    shape = (n, n)
    surface = np.full(shape, Surface.FOREST, dtype=np.uint8)
    truth = np.zeros(shape, dtype=np.uint8)
    occupied = np.zeros(shape, dtype=bool)
    sites: list[_Site] = []

    # Rivers: a meandering main river crossing the world, and tributaries joining it.
    main = _main_river(rng, n)
    water_main = _rasterize_lines([main], n)
    drawn = [_tributary(rng, main, n) for _ in range(spec.n_tributaries)]
    tributaries = [t for t in drawn if t is not None]
    water = water_main | _rasterize_lines(tributaries, n) if tributaries else water_main.copy()
    dist_to_water = ndimage.distance_transform_edt(~water).astype(np.float32)

    # Roads crossing the world (drawn under the water: bridges are too small to see).
    roads = [_road(rng, n, i) for i in range(spec.n_roads)]
    road_mask = _rasterize_lines(roads, n) if roads else np.zeros(shape, dtype=bool)
    road_mask &= ~water
    surface[road_mask] = Surface.ROAD
    truth[road_mask] = TruthClass.ROAD
    occupied |= ndimage.binary_dilation(water, iterations=2)
    dist_to_road = ndimage.distance_transform_edt(~road_mask).astype(np.float32)

    counter = {"mining": 0, "deforestation": 0, "lookalike": 0}

    def new_id(cls: str) -> str:
        counter[cls] += 1
        prefix = {"mining": "M", "deforestation": "D", "lookalike": "L"}[cls]
        return f"{prefix}{counter[cls]:03d}"

    # Look-alikes first, so mining and clearings keep away from them.
    for _ in range(spec.n_pastures):
        site = _place_block(
            rng,
            roads,
            n,
            occupied,
            dist_to_water,
            dist_to_road,
            area_ha=rng.uniform(12.0, 40.0) * (n / 1536) ** 2,
            surface_code=Surface.PASTURE,
            truth_code=TruthClass.PASTURE,
            kind="pasture",
            cls="lookalike",
            n_periods=n_periods,
            schedule=None,
            new_id=new_id,
            min_water_px=6,
        )
        if site is not None:
            sites.append(site)
    for _ in range(spec.n_quarries):
        site = _place_quarry(
            rng, roads, n, occupied, dist_to_water, dist_to_road, n_periods, new_id
        )
        if site is not None:
            sites.append(site)
    for _ in range(spec.n_fish_pond_groups):
        site = _place_fish_ponds(
            rng, roads, n, occupied, dist_to_water, dist_to_road, n_periods, new_id
        )
        if site is not None:
            sites.append(site)
    for _ in range(spec.n_oxbow_lakes):
        site = _place_oxbow(rng, main, n, occupied, water, n_periods, new_id)
        if site is not None:
            sites.append(site)

    # Paint the static water now (sandbars and mining are painted per period on top).
    surface[water] = Surface.RIVER
    truth[water] = TruthClass.WATER

    for _ in range(spec.n_sandbars):
        site = _place_sandbar(rng, main, n, water_main, occupied, dryness, new_id)
        if site is not None:
            sites.append(site)

    shapes_unit = load_mining_shapes()
    n_new, n_exp = _split_counts(spec.n_mining_sites)
    statuses = ["new"] * n_new + ["expanding"] * n_exp
    statuses += ["stable"] * (spec.n_mining_sites - n_new - n_exp)
    rng.shuffle(statuses)
    placed = 0
    for status in statuses:
        site = _place_mining(
            rng,
            main,
            tributaries,
            n,
            occupied,
            water,
            dist_to_road,
            shapes_unit,
            spec.mining_site_area_ha,
            status,
            n_periods,
            new_id,
        )
        if site is not None:
            sites.append(site)
            placed += 1
    if placed < spec.n_mining_sites:
        log.warning(
            "placed %d of %d mining sites: the world of %d px has no room for more along its "
            "streams (use a larger size_px or smaller mining_site_area_ha)",
            placed,
            spec.n_mining_sites,
            n,
        )

    n_new_c = (spec.n_clearings + 1) // 2
    clearing_status = ["new"] * n_new_c + ["expanding"] * (spec.n_clearings - n_new_c)
    rng.shuffle(clearing_status)
    placed = 0
    for status in clearing_status:
        lo, hi = spec.clearing_area_ha
        site = _place_block(
            rng,
            roads,
            n,
            occupied,
            dist_to_water,
            dist_to_road,
            area_ha=math.exp(rng.uniform(math.log(lo), math.log(hi))),
            surface_code=Surface.CLEARING,
            truth_code=TruthClass.DEFORESTATION,
            kind="clearing",
            cls="deforestation",
            n_periods=n_periods,
            schedule=status,
            new_id=new_id,
            min_water_px=4,
        )
        if site is not None:
            sites.append(site)
            placed += 1
    if placed < spec.n_clearings:
        log.warning("placed %d of %d clearings (no room along the roads)", placed, spec.n_clearings)

    _place_savanna(rng, n, surface, truth, occupied, dist_to_water, spec.savanna_fraction)

    texture = (
        0.75 * _smooth_noise(rng, shape, 1.2)
        + 0.55 * _smooth_noise(rng, shape, 6.0)
        + 0.35 * _smooth_noise(rng, shape, 40.0)
    )
    texture /= max(float(texture.std()), 1e-6)
    return _Layout(
        n=n,
        n_periods=n_periods,
        base_surface=surface,
        base_frac_noise=_fractal_noise(rng, shape, (60.0, 15.0, 4.0)),
        base_truth=truth,
        river_turbidity_noise=_smooth_noise(rng, shape, 80.0),
        texture=texture.astype(np.float32),
        sites=sites,
    )


def _split_counts(n: int) -> tuple[int, int]:
    """Counts of new and expanding sites among ``n`` (about a third each, the rest stable)."""
    return n // 3 + (n % 3 > 0), n // 3 + (n % 3 > 1)


def _meander(
    rng: np.random.Generator,
    x0: float,
    y0: float,
    heading0: float,
    *,
    n_steps: int,
    amp_rad: float,
    wavelength_px: float,
    step_px: float = 0.5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s = np.arange(n_steps, dtype=np.float64) * step_px
    phase1, phase2 = rng.uniform(0, 2 * np.pi, 2)
    wander = ndimage.gaussian_filter1d(
        np.cumsum(rng.standard_normal(n_steps)) * 0.02, sigma=wavelength_px / step_px / 4
    )
    heading = (
        heading0
        + amp_rad * np.sin(2 * np.pi * s / wavelength_px + phase1)
        + 0.35 * amp_rad * np.sin(2 * np.pi * s / (wavelength_px * 0.43) + phase2)
        + wander
        - wander[0]
    )
    x = x0 + np.cumsum(np.cos(heading)) * step_px
    y = y0 + np.cumsum(np.sin(heading)) * step_px
    return x, y, heading


def _varying_width(
    rng: np.random.Generator, count: int, mean_px: float, scale_steps: float
) -> np.ndarray:
    low = rng.standard_normal(int(count / scale_steps) + 4)
    var = np.interp(np.arange(count) / scale_steps, np.arange(low.size), low)
    return (mean_px * (1.0 + 0.18 * np.clip(var, -2.5, 2.5))).astype(np.float64)


def _main_river(rng: np.random.Generator, n: int) -> _Line:
    width_px = rng.uniform(9.0, 14.0)
    heading0 = rng.uniform(-0.35, 0.35)
    # Rivers enter from the west or the north; a flip gives the other two directions.
    vertical = bool(rng.random() < 0.5)
    steps = int(n * 6)
    x, y, h = _meander(
        rng,
        -30.0,
        rng.uniform(0.35, 0.65) * n,
        heading0,
        n_steps=steps,
        amp_rad=rng.uniform(0.8, 1.05),
        wavelength_px=width_px * rng.uniform(11.0, 15.0) * 1.8,
    )
    if vertical:
        x, y, h = y, x, np.pi / 2 - h
    keep = np.flatnonzero((x > -40) & (x < n + 40) & (y > -40) & (y < n + 40))
    end = keep[-1] + 1 if keep.size else steps
    hw = _varying_width(rng, end, width_px / 2.0, 400.0)
    return _Line(x[:end], y[:end], hw, h[:end])


def _tributary(rng: np.random.Generator, main: _Line, n: int) -> _Line | None:
    idx = main.inside(n, 0.1 * n)
    if idx.size == 0:
        return None
    i = int(rng.choice(idx))
    side = 1.0 if rng.random() < 0.5 else -1.0
    heading0 = main.heading[i] + side * rng.uniform(0.9, 1.9)
    width_px = rng.uniform(2.6, 4.2)
    steps = int(rng.uniform(0.5, 1.1) * n * 2)
    x, y, h = _meander(
        rng,
        main.x[i],
        main.y[i],
        heading0,
        n_steps=steps,
        amp_rad=rng.uniform(0.6, 0.9),
        wavelength_px=width_px * rng.uniform(15.0, 25.0),
    )
    inside = (x > -20) & (x < n + 20) & (y > -20) & (y < n + 20)
    end = int(np.argmin(inside)) if not inside.all() else steps
    if end < 40:
        return None
    hw = _varying_width(rng, end, width_px / 2.0, 200.0)
    return _Line(x[:end], y[:end], hw, h[:end])


def _road(rng: np.random.Generator, n: int, index: int) -> _Line:
    # Roads run roughly north-south (index even) or east-west, gently curving.
    heading0 = rng.uniform(-0.3, 0.3) + (np.pi / 2 if index % 2 == 0 else 0.0)
    start = rng.uniform(0.2, 0.8) * n
    x0, y0 = (start, -20.0) if index % 2 == 0 else (-20.0, start)
    x, y, h = _meander(
        rng, x0, y0, heading0, n_steps=int(n * 3), amp_rad=0.12, wavelength_px=rng.uniform(500, 900)
    )
    keep = np.flatnonzero((x > -30) & (x < n + 30) & (y > -30) & (y < n + 30))
    end = keep[-1] + 1 if keep.size else x.size
    return _Line(x[:end], y[:end], np.full(end, 0.75), h[:end])


def _rasterize_lines(lines: Sequence[_Line], n: int) -> np.ndarray:
    """Pixels within each line's half-width of its centreline (pixel centres at +0.5)."""
    pad = 24
    size = n + 2 * pad
    out = np.zeros((n, n), dtype=bool)
    for line in lines:
        col = np.floor(line.x).astype(np.int64) + pad
        row = np.floor(line.y).astype(np.int64) + pad
        ok = (col >= 0) & (col < size) & (row >= 0) & (row < size)
        if not ok.any():
            continue
        seeds = np.ones((size, size), dtype=bool)
        seeds[row[ok], col[ok]] = False
        pid = np.zeros((size, size), dtype=np.int32)
        pid[row[ok], col[ok]] = np.flatnonzero(ok)
        dist, (ir, ic) = ndimage.distance_transform_edt(seeds, return_indices=True)
        hw = line.half_width[pid[ir, ic]]
        out |= (dist <= hw)[pad:-pad, pad:-pad]
    return out


def _window(geom: Polygon, n: int, margin: int = 3) -> tuple[int, int, int, int] | None:
    minx, miny, maxx, maxy = geom.bounds
    r0, c0 = math.floor(miny) - 2, math.floor(minx) - 2
    r1, c1 = math.ceil(maxy) + 3, math.ceil(maxx) + 3
    if r0 < margin or c0 < margin or r1 > n - margin or c1 > n - margin:
        return None
    return r0, r1, c0, c1


def _poly_mask(geom: Polygon, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    rows, cols = np.mgrid[r0:r1, c0:c1]
    return np.asarray(shapely.contains_xy(geom, cols + 0.5, rows + 0.5))


def _roughen(
    mask: np.ndarray, rng: np.random.Generator, amount: float, smooth_px: float
) -> np.ndarray:
    """Round a mask's corners and make its outline irregular (natural-looking boundaries)."""
    soft = ndimage.gaussian_filter(mask.astype(np.float32), smooth_px)
    noise = _smooth_noise(rng, mask.shape, 4.0) if min(mask.shape) > 8 else 0.0
    return np.asarray(soft + amount * noise > 0.5)


def _growth_fractions(status: str, n_periods: int, rng: np.random.Generator) -> list[float]:
    """Share of the final footprint present in each period (0 = absent)."""
    last = n_periods - 1
    if status == "new":
        return [0.0] * last + [1.0]
    if status == "expanding":
        p0 = int(rng.integers(0, last))
        f0 = rng.uniform(0.35, 0.6)
        fr = [0.0] * p0 + list(np.linspace(f0, 1.0, n_periods - p0))
        return [float(f) for f in fr]
    if status == "stable":
        p0 = int(rng.integers(0, last))
        return [0.0] * p0 + [1.0] * (n_periods - p0)
    raise ValueError(f"site status {status!r}: expected 'new', 'expanding' or 'stable'")


def _grow(footprint: np.ndarray, distance: np.ndarray, share: float) -> np.ndarray:
    """The part of ``footprint`` nearest the growth origin (by ``distance``) holding ``share``."""
    if share >= 1.0:
        return footprint.copy()
    if share <= 0.0:
        return np.zeros_like(footprint)
    limit = np.quantile(distance[footprint], share)
    return footprint & (distance <= limit)


def _place_mining(
    rng: np.random.Generator,
    main: _Line,
    tributaries: Sequence[_Line],
    n: int,
    occupied: np.ndarray,
    water: np.ndarray,
    dist_to_road: np.ndarray,
    shapes_unit: Sequence[Polygon],
    area_range_ha: tuple[float, float],
    status: str,
    n_periods: int,
    new_id: Callable[[str], str],
) -> _Site | None:
    lines = [main, *tributaries]
    weights = np.array([0.35] + [0.65 / max(len(tributaries), 1)] * len(tributaries))
    weights /= weights.sum()
    for _attempt in range(80):
        line = lines[int(rng.choice(len(lines), p=weights))]
        idx = line.inside(n, 30)
        if idx.size == 0:
            continue
        i = int(rng.choice(idx))
        px, py, heading, hw = line.x[i], line.y[i], line.heading[i], line.half_width[i]
        side = 1.0 if rng.random() < 0.5 else -1.0
        nx, ny = -math.sin(heading) * side, math.cos(heading) * side
        lo, hi = area_range_ha
        area_px = math.exp(rng.uniform(math.log(lo), math.log(hi))) / PIXEL_HA
        unit = shapes_unit[int(rng.integers(len(shapes_unit)))]
        geom = shapely.affinity.scale(unit, math.sqrt(area_px), math.sqrt(area_px), origin=(0, 0))
        if rng.random() < 0.5:
            geom = shapely.affinity.scale(geom, 1.0, -1.0, origin=(0, 0))
        geom = shapely.affinity.rotate(geom, heading, origin=(0, 0), use_radians=True)
        coords = np.asarray(geom.exterior.coords)
        reach = float(-(coords[:, 0] * nx + coords[:, 1] * ny).min())
        gap = hw + rng.uniform(2.5, 4.0) + reach
        geom = shapely.affinity.translate(geom, px + nx * gap, py + ny * gap)
        win = _window(geom, n)
        if win is None:
            continue
        r0, r1, c0, c1 = win
        footprint = _roughen(_poly_mask(geom, r0, r1, c0, c1), rng, 0.18, 1.2)
        near_water = ndimage.binary_dilation(water[r0:r1, c0:c1], iterations=2)
        before = int(footprint.sum())
        footprint &= ~near_water
        footprint = _largest_component(footprint)
        if (
            before == 0
            or footprint.sum() < 0.8 * before
            or (footprint & occupied[r0:r1, c0:c1]).any()
        ):
            continue
        if (dist_to_road[r0:r1, c0:c1][footprint] < 12).any():
            continue
        # Growth spreads from the bank point nearest the stream.
        rows, cols = np.mgrid[r0:r1, c0:c1]
        d_stream = (cols + 0.5 - px) ** 2 + (rows + 0.5 - py) ** 2
        d_stream[~footprint] = np.inf
        ar, ac = np.unravel_index(int(np.argmin(d_stream)), d_stream.shape)
        dist = np.hypot(rows - (r0 + ar), cols - (c0 + ac)).astype(np.float32)
        dist += 3.0 * _smooth_noise(rng, footprint.shape, 6.0)
        ponds, pond_turbidity = _pond_cells(rng, footprint)
        sediment = _to_unit(_smooth_noise(rng, footprint.shape, 5.0) * 1.2 + 0.2)
        paints: list[_SitePaint | None] = []
        for share in _growth_fractions(status, n_periods, rng):
            if share <= 0.0:
                paints.append(None)
                continue
            f_p = _grow(footprint, dist, share)
            pond_p = ponds & ndimage.binary_erosion(f_p, iterations=1, border_value=0)
            surf = np.full(footprint.shape, 255, dtype=np.uint8)
            surf[f_p] = Surface.MINING_SEDIMENT
            surf[pond_p] = Surface.MINING_POND
            frac = np.where(pond_p, pond_turbidity, sediment).astype(np.float32)
            tru = np.where(f_p, TruthClass.MINING, 0).astype(np.uint8)
            paints.append(_SitePaint(surf, frac, tru))
        occupied[r0:r1, c0:c1] |= ndimage.binary_dilation(footprint, iterations=12)
        return _Site(new_id("mining"), "mining", "pond_complex", TruthClass.MINING, r0, c0, paints)
    return None


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return np.asarray(labels == int(np.argmax(sizes)))


def _pond_cells(rng: np.random.Generator, footprint: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ponds of a mining complex: Voronoi cells separated by 1-px berms, with their turbidity."""
    area = int(footprint.sum())
    n_cells = max(3, int(area / rng.uniform(50.0, 120.0)))
    rr, cc = np.nonzero(footprint)
    pick = rng.choice(rr.size, size=min(n_cells, rr.size), replace=False)
    seeds = np.ones(footprint.shape, dtype=bool)
    seeds[rr[pick], cc[pick]] = False
    ids = np.zeros(footprint.shape, dtype=np.int32)
    ids[rr[pick], cc[pick]] = np.arange(1, pick.size + 1)
    _d, (ir, ic) = ndimage.distance_transform_edt(seeds, return_indices=True)
    cell = ids[ir, ic]
    berm = np.zeros(footprint.shape, dtype=bool)
    berm[:, 1:] |= cell[:, 1:] != cell[:, :-1]
    berm[1:, :] |= cell[1:, :] != cell[:-1, :]
    is_pond = rng.random(pick.size + 1) < rng.uniform(0.45, 0.65)
    is_pond[0] = False
    interior = ndimage.binary_erosion(footprint, iterations=1, border_value=0) & ~berm
    ponds = is_pond[cell] & interior
    if ponds.sum() < 0.2 * area:  # small sites: make the biggest cells ponds
        sizes = np.bincount(cell[interior], minlength=pick.size + 1)
        for k in np.argsort(sizes)[::-1][:2]:
            if k > 0:
                ponds |= (cell == k) & interior
    turbidity = rng.uniform(0.35, 1.0, pick.size + 1).astype(np.float32)
    return ponds, turbidity[cell]


def _line_point(
    rng: np.random.Generator, lines: Sequence[_Line], n: int, margin: float
) -> tuple[float, float, float, float] | None:
    if not lines:
        return None
    line = lines[int(rng.integers(len(lines)))]
    idx = line.inside(n, margin)
    if idx.size == 0:
        return None
    i = int(rng.choice(idx))
    return float(line.x[i]), float(line.y[i]), float(line.heading[i]), float(line.half_width[i])


def _place_block(
    rng: np.random.Generator,
    roads: Sequence[_Line],
    n: int,
    occupied: np.ndarray,
    dist_to_water: np.ndarray,
    dist_to_road: np.ndarray,
    *,
    area_ha: float,
    surface_code: Surface,
    truth_code: TruthClass,
    kind: str,
    cls: str,
    n_periods: int,
    schedule: str | None,
    new_id: Callable[[str], str],
    min_water_px: float,
) -> _Site | None:
    """A blocky field along a road (clearings grow away from the road; pastures are stable)."""
    area_px = area_ha / PIXEL_HA
    for _attempt in range(60):
        pt = _line_point(rng, roads, n, 20)
        if pt is None:
            # No roads: fields open up anywhere away from water.
            pt = (rng.uniform(20, n - 20), rng.uniform(20, n - 20), rng.uniform(0, np.pi), 0.75)
        px, py, heading, hw = pt
        side = 1.0 if rng.random() < 0.5 else -1.0
        nx, ny = -math.sin(heading) * side, math.cos(heading) * side
        tx, ty = math.cos(heading), math.sin(heading)
        aspect = rng.uniform(1.0, 2.5)
        along = math.sqrt(area_px / aspect)
        depth = along * aspect
        start = hw + rng.uniform(0.5, 2.0)
        jit = rng.uniform(-0.08, 0.08, (4, 2)) * min(along, depth)
        corners = [
            (px + tx * (-along / 2) + nx * start, py + ty * (-along / 2) + ny * start),
            (px + tx * (along / 2) + nx * start, py + ty * (along / 2) + ny * start),
            (
                px + tx * (along / 2) + nx * (start + depth),
                py + ty * (along / 2) + ny * (start + depth),
            ),
            (
                px + tx * (-along / 2) + nx * (start + depth),
                py + ty * (-along / 2) + ny * (start + depth),
            ),
        ]
        geom = Polygon([(cx + j[0], cy + j[1]) for (cx, cy), j in zip(corners, jit, strict=False)])
        if not geom.is_valid:
            continue
        win = _window(geom, n)
        if win is None:
            continue
        r0, r1, c0, c1 = win
        footprint = _roughen(_poly_mask(geom, r0, r1, c0, c1), rng, 0.08, 0.8)
        footprint &= dist_to_road[r0:r1, c0:c1] >= 1.5  # a verge along the road
        footprint = _largest_component(footprint)
        if footprint.sum() < 0.5 * area_px:
            continue
        if (footprint & occupied[r0:r1, c0:c1]).any():
            continue
        if (dist_to_water[r0:r1, c0:c1][footprint] < min_water_px).any():
            continue
        rows, cols = np.mgrid[r0:r1, c0:c1]
        dist = ((cols + 0.5 - px) * nx + (rows + 0.5 - py) * ny).astype(np.float32)
        frac_noise = _to_unit(_smooth_noise(rng, footprint.shape, 6.0))
        shares = (
            [1.0] * n_periods if schedule is None else _growth_fractions(schedule, n_periods, rng)
        )
        paints: list[_SitePaint | None] = []
        for share in shares:
            if share <= 0.0:
                paints.append(None)
                continue
            f_p = _grow(footprint, dist, share)
            surf = np.where(f_p, np.uint8(surface_code), np.uint8(255)).astype(np.uint8)
            tru = np.where(f_p, np.uint8(truth_code), np.uint8(0)).astype(np.uint8)
            frac = frac_noise if schedule is not None else np.full(f_p.shape, np.nan, np.float32)
            paints.append(_SitePaint(surf, frac, tru))
        occupied[r0:r1, c0:c1] |= ndimage.binary_dilation(footprint, iterations=6)
        return _Site(new_id(cls), cls, kind, truth_code, r0, c0, paints)
    return None


def _static_site(
    new_id: Callable[[str], str],
    kind: str,
    truth_code: TruthClass,
    r0: int,
    c0: int,
    paint: _SitePaint,
    n_periods: int,
) -> _Site:
    return _Site(new_id("lookalike"), "lookalike", kind, truth_code, r0, c0, [paint] * n_periods)


def _place_quarry(
    rng: np.random.Generator,
    roads: Sequence[_Line],
    n: int,
    occupied: np.ndarray,
    dist_to_water: np.ndarray,
    dist_to_road: np.ndarray,
    n_periods: int,
    new_id: Callable[[str], str],
) -> _Site | None:
    for _attempt in range(60):
        pt = _line_point(rng, roads, n, 40)
        if pt is None:
            pt = (rng.uniform(40, n - 40), rng.uniform(40, n - 40), 0.0, 0.0)
        px, py, heading, _hw = pt
        side = 1.0 if rng.random() < 0.5 else -1.0
        area_px = rng.uniform(2.0, 6.0) / PIXEL_HA
        rx = math.sqrt(area_px / math.pi) * rng.uniform(1.0, 1.6)
        ry = area_px / math.pi / rx
        off = rx + rng.uniform(6, 14)
        cx = px - math.sin(heading) * side * off
        cy = py + math.cos(heading) * side * off
        ellipse = shapely.affinity.scale(shapely.Point(cx, cy).buffer(1.0, 32), rx, ry)
        geom = shapely.affinity.rotate(ellipse, rng.uniform(0, 180), origin=(cx, cy))
        win = _window(geom, n)
        if win is None:
            continue
        r0, r1, c0, c1 = win
        footprint = _roughen(_poly_mask(geom, r0, r1, c0, c1), rng, 0.2, 1.0)
        if (footprint & occupied[r0:r1, c0:c1]).any():
            continue
        if (dist_to_water[r0:r1, c0:c1][footprint] < 40).any():
            continue
        if (dist_to_road[r0:r1, c0:c1][footprint] < 3).any():
            continue
        # Benches: concentric terraces of fresh faces and darker fines.
        rows, cols = np.mgrid[r0:r1, c0:c1]
        radial = np.hypot((cols + 0.5 - cx) / rx, (rows + 0.5 - cy) / ry)
        frac = (0.5 + 0.5 * np.sin(radial * 9.0 + rng.uniform(0, 6.3))).astype(np.float32)
        surf = np.where(footprint, np.uint8(Surface.QUARRY), np.uint8(255)).astype(np.uint8)
        tru = np.where(footprint, np.uint8(TruthClass.QUARRY), np.uint8(0)).astype(np.uint8)
        occupied[r0:r1, c0:c1] |= ndimage.binary_dilation(footprint, iterations=10)
        return _static_site(
            new_id,
            "quarry",
            TruthClass.QUARRY,
            r0,
            c0,
            _SitePaint(surf, frac * 0.7, tru),
            n_periods,
        )
    return None


def _place_fish_ponds(
    rng: np.random.Generator,
    roads: Sequence[_Line],
    n: int,
    occupied: np.ndarray,
    dist_to_water: np.ndarray,
    dist_to_road: np.ndarray,
    n_periods: int,
    new_id: Callable[[str], str],
) -> _Site | None:
    for _attempt in range(60):
        pt = _line_point(rng, roads, n, 40)
        if pt is None:
            pt = (rng.uniform(40, n - 40), rng.uniform(40, n - 40), 0.0, 0.0)
        px, py, heading, _hw = pt
        rows_n, cols_n = int(rng.integers(1, 3)), int(rng.integers(2, 4))
        ph, pw = int(rng.integers(5, 8)), int(rng.integers(7, 12))
        dike = 2
        h = rows_n * ph + (rows_n + 1) * dike
        w = cols_n * pw + (cols_n + 1) * dike
        side = 1.0 if rng.random() < 0.5 else -1.0
        off = max(h, w) / 2 + 4
        r0 = int(py + math.cos(heading) * side * off - h / 2)
        c0 = int(px - math.sin(heading) * side * off - w / 2)
        if r0 < 3 or c0 < 3 or r0 + h > n - 3 or c0 + w > n - 3:
            continue
        win = (slice(r0, r0 + h), slice(c0, c0 + w))
        if occupied[win].any() or (dist_to_water[win] < 10).any() or (dist_to_road[win] < 2).any():
            continue
        surf = np.full((h, w), np.uint8(Surface.PASTURE), dtype=np.uint8)  # grassy dikes
        tru = np.full((h, w), np.uint8(TruthClass.PASTURE), dtype=np.uint8)
        frac = np.zeros((h, w), dtype=np.float32)
        for i in range(rows_n):
            for j in range(cols_n):
                rr = dike + i * (ph + dike)
                cc = dike + j * (pw + dike)
                surf[rr : rr + ph, cc : cc + pw] = Surface.FISH_POND
                tru[rr : rr + ph, cc : cc + pw] = TruthClass.FISH_POND
                frac[rr : rr + ph, cc : cc + pw] = rng.uniform(0.0, 1.0)
        occupied[r0 : r0 + h, c0 : c0 + w] |= True
        occupied[max(r0 - 6, 0) : r0 + h + 6, max(c0 - 6, 0) : c0 + w + 6] = True
        return _static_site(
            new_id,
            "fish_pond",
            TruthClass.FISH_POND,
            r0,
            c0,
            _SitePaint(surf, frac, tru),
            n_periods,
        )
    return None


def _place_oxbow(
    rng: np.random.Generator,
    main: _Line,
    n: int,
    occupied: np.ndarray,
    water: np.ndarray,
    n_periods: int,
    new_id: Callable[[str], str],
) -> _Site | None:
    for _attempt in range(80):
        idx = main.inside(n, 60)
        if idx.size == 0:
            return None
        i = int(rng.choice(idx))
        px, py, heading, hw = main.x[i], main.y[i], main.heading[i], main.half_width[i]
        side = 1.0 if rng.random() < 0.5 else -1.0
        nx, ny = -math.sin(heading) * side, math.cos(heading) * side
        radius = rng.uniform(12.0, 26.0)
        thick = rng.uniform(2.0, 3.5) * max(hw / 5.0, 0.8)
        dist_c = hw + rng.uniform(6.0, 12.0)
        cx, cy = px + nx * (dist_c + radius), py + ny * (dist_c + radius)
        r0, r1 = int(cy - radius - thick - 3), int(cy + radius + thick + 4)
        c0, c1 = int(cx - radius - thick - 3), int(cx + radius + thick + 4)
        if r0 < 3 or c0 < 3 or r1 > n - 3 or c1 > n - 3:
            continue
        rows, cols = np.mgrid[r0:r1, c0:c1]
        dx, dy = cols + 0.5 - cx, rows + 0.5 - cy
        rad = np.hypot(dx, dy)
        # Angle from the direction pointing away from the river; the arc's open side faces it.
        ang = np.arctan2(dy * nx - dx * ny, dx * nx + dy * ny)
        span = rng.uniform(0.62, 0.8) * np.pi
        lake = (np.abs(rad - radius) <= thick * (1.0 - 0.5 * (np.abs(ang) / span) ** 4)) & (
            np.abs(ang) <= span
        )
        if lake.sum() < 30 or (lake & occupied[r0:r1, c0:c1]).any():
            continue
        if (ndimage.binary_dilation(lake, iterations=4) & water[r0:r1, c0:c1]).any():
            continue
        frac = _to_unit(_smooth_noise(rng, lake.shape, 8.0))
        surf = np.where(lake, np.uint8(Surface.OXBOW), np.uint8(255)).astype(np.uint8)
        tru = np.where(lake, np.uint8(TruthClass.OXBOW_LAKE), np.uint8(0)).astype(np.uint8)
        occupied[r0:r1, c0:c1] |= ndimage.binary_dilation(lake, iterations=8)
        return _static_site(
            new_id,
            "oxbow_lake",
            TruthClass.OXBOW_LAKE,
            r0,
            c0,
            _SitePaint(surf, frac, tru),
            n_periods,
        )
    return None


def _place_sandbar(
    rng: np.random.Generator,
    main: _Line,
    n: int,
    water_main: np.ndarray,
    occupied: np.ndarray,
    dryness: Sequence[float],
    new_id: Callable[[str], str],
) -> _Site | None:
    """A bar inside the main river; its exposed area follows the water level (season)."""
    channel = ndimage.binary_erosion(water_main, iterations=1)
    # ``occupied`` holds the water's own buffer: only other sites count as a conflict.
    others = occupied & ~ndimage.binary_dilation(water_main, iterations=3)
    for _attempt in range(60):
        idx = main.inside(n, 40)
        if idx.size == 0:
            return None
        i = int(rng.choice(idx))
        px, py, heading, hw = main.x[i], main.y[i], main.heading[i], main.half_width[i]
        if hw < 4.0:
            continue
        side = 1.0 if rng.random() < 0.5 else -1.0
        nx, ny = -math.sin(heading) * side, math.cos(heading) * side
        cx, cy = px + nx * 0.35 * hw, py + ny * 0.35 * hw
        semi_a = rng.uniform(2.5, 5.0) * hw
        semi_b = rng.uniform(0.45, 0.7) * hw
        ext = int(semi_a + 4)
        r0, r1, c0, c1 = int(cy) - ext, int(cy) + ext + 1, int(cx) - ext, int(cx) + ext + 1
        if r0 < 3 or c0 < 3 or r1 > n - 3 or c1 > n - 3:
            continue
        rows, cols = np.mgrid[r0:r1, c0:c1]
        dx, dy = cols + 0.5 - cx, rows + 0.5 - cy
        u = (dx * math.cos(heading) + dy * math.sin(heading)) / semi_a
        v = (-dx * math.sin(heading) + dy * math.cos(heading)) / semi_b
        ell = u * u + v * v + 0.25 * _smooth_noise(rng, u.shape, 5.0)
        local_channel = channel[r0:r1, c0:c1]
        if ((ell < 1.0) & local_channel).sum() < 20 or (others[r0:r1, c0:c1] & (ell < 1.5)).any():
            continue
        dry = _to_unit(2.0 * (1.0 - ell) + 0.5 * _smooth_noise(rng, u.shape, 3.0))
        paints: list[_SitePaint | None] = []
        for d in dryness:
            # Low water in the dry season exposes more of the bar.
            bar = (ell < 0.75 + 0.45 * d) & local_channel
            surf = np.where(bar, np.uint8(Surface.SANDBAR), np.uint8(255)).astype(np.uint8)
            tru = np.where(bar, np.uint8(TruthClass.SANDBAR), np.uint8(0)).astype(np.uint8)
            paints.append(_SitePaint(surf, dry, tru))
        occupied[r0:r1, c0:c1] |= ndimage.binary_dilation(ell < 1.5, iterations=6)
        return _Site(
            new_id("lookalike"), "lookalike", "sandbar", TruthClass.SANDBAR, r0, c0, paints
        )
    return None


def _place_savanna(
    rng: np.random.Generator,
    n: int,
    surface: np.ndarray,
    truth: np.ndarray,
    occupied: np.ndarray,
    dist_to_water: np.ndarray,
    fraction: float,
) -> None:
    if fraction <= 0:
        return
    field_ = _fractal_noise(rng, (n, n), (max(n / 6, 40.0), 30.0, 8.0))
    allowed = (~occupied) & (dist_to_water > 25) & (surface == Surface.FOREST)
    if not allowed.any():
        return
    limit = np.quantile(field_[allowed], 1.0 - min(fraction / max(allowed.mean(), 1e-6), 0.9))
    savanna = allowed & (field_ > limit)
    savanna = ndimage.binary_opening(savanna, iterations=2)
    surface[savanna] = Surface.SAVANNA
    truth[savanna] = TruthClass.SAVANNA


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def _paint_period(
    layout: _Layout, period_index: int, dryness: float
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


def _surface_reflectance(
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


def _render_scene(
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
    n = spec.size_px
    shape = (n, n)
    big = max(n / 5.0, 48.0)

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
        cfield = _fractal_noise(rng, ext, (big, big / 3, 24.0, 8.0))
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
        cir = _fractal_noise(rng, shape, (big * 1.5, big / 2, 30.0))
        cir_cut = float(np.quantile(cir[::4, ::4], 1.0 - rng.uniform(0.05, 0.3)))
        tau = (np.clip((cir - cir_cut) / 1.2, 0.0, 1.0) * rng.uniform(0.4, 1.0)).astype(np.float32)
        del cir
    else:
        tau = np.zeros(shape, dtype=np.float32)

    illumination = rng.uniform(0.94, 1.05)
    haze = _to_unit(_smooth_noise(rng, shape, big * 1.5)) * rng.uniform(0.0, spec.haze_max)

    out = surface_reflectance * np.float32(illumination)
    trans = band_vector(SHADOW_TRANSMISSION)
    out *= 1.0 - shadow[np.newaxis] * (1.0 - trans)
    out += haze[np.newaxis] * band_vector(HAZE)
    out += tau[np.newaxis] * band_vector(CIRRUS)
    cloud_tex = 0.9 + 0.2 * _to_unit(_smooth_noise(rng, shape, 6.0))
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

    # Scene classification (Sen2Cor-like, with its usual misses at thin cloud edges).
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
    del ndvi, alpha, tau, shadow

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
    band_tags = [
        {
            "WAVELENGTH": f"{BANDS[b].wavelength_nm:.1f}",
            "WAVELENGTH_UNIT": "nm",
            "RESOLUTION_M": str(BANDS[b].resolution_m),
        }
        for b in SPECTRAL_BANDS
    ]
    band_tags.append({"CLASSES": json.dumps({str(k): v for k, v in _scl_names().items()})})
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
        band_tags=band_tags,
        # Nearest keeps SCL classes valid in the overviews (one resampling for all bands).
        resampling="nearest",
    )
    return WorldScene(scene_id, when, period.label, spacecraft, cloud_fraction, path)


def _scl_names() -> dict[int, str]:
    from tiles.bands import SCL_NAMES

    return dict(SCL_NAMES)


# --------------------------------------------------------------------------------------------
# Truth sites and metadata
# --------------------------------------------------------------------------------------------


def _write_sites(
    path: Path, layout: _Layout, periods: Sequence[Period], crs: CRS, transform: Affine
) -> dict[str, int]:
    to_wgs84 = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    features: list[dict[str, Any]] = []
    counts: dict[str, int] = {"mining": 0, "deforestation": 0, "lookalike": 0}
    for site in layout.sites:
        previous_area = 0
        present = False
        for pi, period in enumerate(periods):
            mask = site.mask(pi)
            if mask is None:
                previous_area = 0
                continue
            present = True
            area = int(mask.sum())
            if site.cls == "lookalike":
                change = "stable"
            elif previous_area == 0 and pi > 0:
                change = "new"
            elif pi > 0 and area > previous_area * 1.02:
                change = "expanding"
            else:
                change = "stable"
            previous_area = area
            win_transform = transform @ Affine.translation(site.col0, site.row0)
            parts = [
                shape(geom)
                for geom, value in raster_shapes(
                    mask.astype(np.uint8), mask=mask, transform=win_transform
                )
                if value == 1
            ]
            geom_utm = shapely.union_all(parts)
            geom_ll = shapely.transform(
                geom_utm, lambda xy: np.column_stack(to_wgs84.transform(xy[:, 0], xy[:, 1]))
            )
            # A world at 180 degrees: a site across it is split as RFC 7946 asks (3.1.9).
            geom_ll = _oriented(split_antimeridian(geom_ll))
            features.append(
                {
                    "type": "Feature",
                    "id": f"{site.truth_id}_{period.label}",
                    "geometry": mapping(shapely.set_precision(geom_ll, 1e-7)),
                    "properties": {
                        "truth_id": site.truth_id,
                        "class": site.cls,
                        "kind": site.kind,
                        "period": period.label,
                        "change": change,
                        "area_ha": round(area * PIXEL_HA, 4),
                        "truth_code": site.truth_code,
                    },
                }
            )
        if present:
            counts[site.cls] += 1
    collection = {
        "type": "FeatureCollection",
        "features": features,
        "minewatch_synthetic": {
            "generator_version": GENERATOR_VERSION,
            "periods": [p.label for p in periods],
            "attribution": AMW_ATTRIBUTION,
            "change": "vs the previous period; the first period has none, so its sites are "
            "'stable'; look-alikes are always 'stable'",
        },
    }
    write_text_atomic(path, json.dumps(collection) + "\n")
    return counts


def _oriented(geom: Any) -> Any:
    """Polygons with the RFC 7946 right-hand rule (exterior counter-clockwise)."""
    if geom.geom_type == "Polygon":
        return orient(geom, sign=1.0)
    if geom.geom_type == "MultiPolygon":
        return shapely.MultiPolygon([orient(p, sign=1.0) for p in geom.geoms])
    return geom


def _world_metadata(world: World) -> dict[str, Any]:
    root = world.root
    return {
        "generator": "minewatch tiles.synthetic",
        "generator_version": GENERATOR_VERSION,
        "spec": world.spec.model_dump(mode="json"),
        "crs": world.crs.to_string(),
        "transform": list(world.transform)[:6],
        "width": world.width,
        "height": world.height,
        "resolution_m": PIXEL_M,
        "tile_id": world.tile_id,
        "bands": list(SCENE_BANDS),
        "boa_add_offset": BOA_ADD_OFFSET,
        "periods": [{"label": p.label, **p.as_dict()} for p in world.periods],
        "scenes": [
            {
                "scene_id": s.scene_id,
                "datetime": s.datetime.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "period": s.period,
                "spacecraft": s.spacecraft,
                "cloud_fraction": round(s.cloud_fraction, 4),
                "path": s.path.relative_to(root).as_posix(),
            }
            for s in world.scenes
        ],
        "truth": {
            p.label: t.relative_to(root).as_posix()
            for p, t in zip(world.periods, world.truth_paths, strict=False)
        },
        "truth_classes": {str(c.value): c.name.lower() for c in TruthClass},
        "sites": world.sites_path.relative_to(root).as_posix(),
        "n_sites": world.n_sites,
        "attribution": AMW_ATTRIBUTION,
    }
