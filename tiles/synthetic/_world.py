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
import itertools
import json
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS

from aoi.geometry import utm_crs_for
from tiles.cog import write_cog
from tiles.files import write_text_atomic
from tiles.periods import Period
from tiles.spectra import (
    WATER_SURFACES,
    endmember_tables,
)
from tiles.synthetic._layout import build_layout
from tiles.synthetic._render import paint_period, render_scene, surface_reflectance
from tiles.synthetic._spec import (
    PIXEL_M,
    TruthClass,
    World,
    WorldScene,
    WorldSpec,
    mgrs_tile,
    parse_quarter,
)
from tiles.synthetic._truth import world_metadata, write_sites

log = logging.getLogger(__name__)

#: Dryness (0 wet .. 1 dry) of each calendar quarter in the southern Amazon (Tapajos basin).
_QUARTER_DRYNESS = {1: 0.10, 2: 0.35, 3: 0.90, 4: 0.60}


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
    _log_start(spec, crs, tile_id)
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
    layout = build_layout(spec, np.random.default_rng(layout_ss), dryness)

    scenes_dir = out_dir / "scenes"
    truth_dir = out_dir / "truth"
    scenes_dir.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)

    a_tab, b_tab, tex_tab = endmember_tables()
    scene_rngs = [np.random.default_rng(s) for s in scene_ss.spawn(len(periods))]
    scenes: list[WorldScene] = []
    truth_paths: list[Path] = []
    for pi, period in enumerate(periods):
        surface, frac, truth = paint_period(layout, pi, dryness[pi])
        reflectance = surface_reflectance(surface, frac, layout.texture, a_tab, b_tab, tex_tab)
        truth_path = _write_truth(truth_dir, truth, period, crs, transform)
        truth_paths.append(truth_path)
        log.info("period %s: surface painted, truth written to %s", period.label, truth_path)
        step()
        is_water = np.isin(surface, [int(s) for s in WATER_SURFACES])
        del frac, truth
        rng = scene_rngs[pi]
        for when in _acquisition_times(period, spec.acquisitions_per_period, rng):
            scene = render_scene(
                reflectance, is_water, when, period, spec, tile_id, crs, transform, scenes_dir, rng
            )
            scenes.append(scene)
            log.debug("scene %s written (cloud %.2f)", scene.scene_id, scene.cloud_fraction)
            step()
        del reflectance, surface, is_water

    sites_path = truth_dir / "sites.geojson"
    n_sites = write_sites(sites_path, layout, periods, crs, transform)
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
    write_text_atomic(metadata_path, json.dumps(world_metadata(world), indent=2) + "\n")
    step()
    log.info("synthetic world written to %s: %d scenes, sites %s", out_dir, len(scenes), n_sites)
    return world


def _log_start(spec: WorldSpec, crs: CRS, tile_id: str) -> None:
    """Log what `generate_world` is about to generate."""
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


def _write_truth(
    truth_dir: Path, truth: np.ndarray, period: Period, crs: CRS, transform: Affine
) -> Path:
    """Write one period's truth classes as ``truth_dir/<period>.tif``; return its path."""
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
    return truth_path


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
