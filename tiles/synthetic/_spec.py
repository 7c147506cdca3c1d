"""What a synthetic world is: its spec, the files' conventions (bands, DN encoding, truth
classes), what `generate_world` returns, and the real mining shapes its sites take."""

from __future__ import annotations

import datetime as dt
import importlib.resources
import itertools
import json
import math
import re
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

import numpy as np
from affine import Affine
from pydantic import BaseModel, Field, field_validator, model_validator
from pyproj import Transformer
from rasterio.crs import CRS
from shapely.geometry import Polygon, shape

from aoi.geometry import utm_crs_for
from tiles.bands import SCL
from tiles.periods import Period, quarter
from tiles.spectra import SPECTRAL_BANDS

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


_PERIOD_RE = re.compile(r"^(\d{4})Q([1-4])$")
_BASELINE_RE = re.compile(r"^\d{2}\.\d{2}$")


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
