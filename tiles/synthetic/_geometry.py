"""Layout geometry: the types of the layout (sites, their per-period paints, centrelines), the
meandering rivers and the roads as centrelines, footprint masks and how a footprint grows."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import shapely
import shapely.affinity
from scipy import ndimage
from shapely.geometry import Polygon

from tiles.synthetic._noise import smooth_noise


@dataclass
class SitePaint:
    """What a site paints in one period, in its window: surface codes, mix fractions, truth."""

    surface: np.ndarray  # uint8, 255 = leave as is
    frac: np.ndarray  # float32
    truth: np.ndarray  # uint8, 0 = leave as is


@dataclass
class Site:
    truth_id: str
    cls: str
    kind: str
    truth_code: int
    row0: int
    col0: int
    paints: list[SitePaint | None]  # per period; None = absent

    def mask(self, period_index: int) -> np.ndarray | None:
        paint = self.paints[period_index]
        if paint is None:
            return None
        m = paint.truth == self.truth_code
        return m if m.any() else None


@dataclass
class Line:
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
class Layout:
    n: int
    n_periods: int
    base_surface: np.ndarray  # uint8 surface codes without period-dependent sites
    base_frac_noise: np.ndarray  # float32 local variation of the mixing fraction (unit variance)
    base_truth: np.ndarray  # uint8
    river_turbidity_noise: np.ndarray
    texture: np.ndarray  # float32 unit-variance texture
    sites: list[Site]


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


def main_river(rng: np.random.Generator, n: int) -> Line:
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
    return Line(x[:end], y[:end], hw, h[:end])


def tributary(rng: np.random.Generator, main: Line, n: int) -> Line | None:
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
    return Line(x[:end], y[:end], hw, h[:end])


def road(rng: np.random.Generator, n: int, index: int) -> Line:
    # Roads run roughly north-south (index even) or east-west, gently curving.
    heading0 = rng.uniform(-0.3, 0.3) + (np.pi / 2 if index % 2 == 0 else 0.0)
    start = rng.uniform(0.2, 0.8) * n
    x0, y0 = (start, -20.0) if index % 2 == 0 else (-20.0, start)
    x, y, h = _meander(
        rng, x0, y0, heading0, n_steps=int(n * 3), amp_rad=0.12, wavelength_px=rng.uniform(500, 900)
    )
    keep = np.flatnonzero((x > -30) & (x < n + 30) & (y > -30) & (y < n + 30))
    end = keep[-1] + 1 if keep.size else x.size
    return Line(x[:end], y[:end], np.full(end, 0.75), h[:end])


def rasterize_lines(lines: Sequence[Line], n: int) -> np.ndarray:
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


def poly_window(geom: Polygon, n: int, margin: int = 3) -> tuple[int, int, int, int] | None:
    minx, miny, maxx, maxy = geom.bounds
    r0, c0 = math.floor(miny) - 2, math.floor(minx) - 2
    r1, c1 = math.ceil(maxy) + 3, math.ceil(maxx) + 3
    if r0 < margin or c0 < margin or r1 > n - margin or c1 > n - margin:
        return None
    return r0, r1, c0, c1


def poly_mask(geom: Polygon, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    rows, cols = np.mgrid[r0:r1, c0:c1]
    return np.asarray(shapely.contains_xy(geom, cols + 0.5, rows + 0.5))


def roughen(
    mask: np.ndarray, rng: np.random.Generator, amount: float, smooth_px: float
) -> np.ndarray:
    """Round a mask's corners and make its outline irregular (natural-looking boundaries)."""
    soft = ndimage.gaussian_filter(mask.astype(np.float32), smooth_px)
    noise = smooth_noise(rng, mask.shape, 4.0) if min(mask.shape) > 8 else 0.0
    return np.asarray(soft + amount * noise > 0.5)


def growth_fractions(status: str, n_periods: int, rng: np.random.Generator) -> list[float]:
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


def grow(footprint: np.ndarray, distance: np.ndarray, share: float) -> np.ndarray:
    """The part of ``footprint`` nearest the growth origin (by ``distance``) holding ``share``."""
    if share >= 1.0:
        return footprint.copy()
    if share <= 0.0:
        return np.zeros_like(footprint)
    limit = np.quantile(distance[footprint], share)
    return footprint & (distance <= limit)


def largest_component(mask: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return np.asarray(labels == int(np.argmax(sizes)))


def line_point(
    rng: np.random.Generator, lines: Sequence[Line], n: int, margin: float
) -> tuple[float, float, float, float] | None:
    if not lines:
        return None
    line = lines[int(rng.integers(len(lines)))]
    idx = line.inside(n, margin)
    if idx.size == 0:
        return None
    i = int(rng.choice(idx))
    return float(line.x[i]), float(line.y[i]), float(line.heading[i]), float(line.half_width[i])
