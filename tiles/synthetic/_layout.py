"""Layout: the static geometry of the world and the sites with their per-period footprints
(rivers, roads, mining along the streams, clearings along the roads and the look-alikes)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import shapely
import shapely.affinity
from scipy import ndimage
from shapely.geometry import Polygon

from tiles.spectra import Surface
from tiles.synthetic._geometry import (
    Layout,
    Line,
    Site,
    SitePaint,
    grow,
    growth_fractions,
    largest_component,
    line_point,
    main_river,
    poly_mask,
    poly_window,
    rasterize_lines,
    road,
    roughen,
    tributary,
)
from tiles.synthetic._noise import fractal_noise, smooth_noise, to_unit
from tiles.synthetic._spec import PIXEL_HA, TruthClass, WorldSpec, load_mining_shapes

log = logging.getLogger(__name__)


def build_layout(spec: WorldSpec, rng: np.random.Generator, dryness: Sequence[float]) -> Layout:
    """Draw the world's layout from ``rng``: rivers and roads, then the sites (look-alikes,
    sandbars, mining, clearings), the savanna and the texture, always in that order."""
    n = spec.size_px
    n_periods = len(dryness)
    shape = (n, n)
    ground = _draw_ground(spec, rng)
    new_id = _SiteIds()
    # Look-alikes first, so mining and clearings keep away from them.
    sites = _place_lookalikes(spec, rng, ground, n_periods, new_id)

    # Paint the static water now (sandbars and mining are painted per period on top).
    ground.surface[ground.water] = Surface.RIVER
    ground.truth[ground.water] = TruthClass.WATER

    for _ in range(spec.n_sandbars):
        site = _place_sandbar(
            rng, ground.main, n, ground.water_main, ground.occupied, dryness, new_id
        )
        if site is not None:
            sites.append(site)
    sites += _place_mining_sites(spec, rng, ground, n_periods, new_id)
    sites += _place_clearings(spec, rng, ground, n_periods, new_id)

    _place_savanna(
        rng,
        n,
        ground.surface,
        ground.truth,
        ground.occupied,
        ground.dist_to_water,
        spec.savanna_fraction,
    )

    texture = (
        0.75 * smooth_noise(rng, shape, 1.2)
        + 0.55 * smooth_noise(rng, shape, 6.0)
        + 0.35 * smooth_noise(rng, shape, 40.0)
    )
    texture /= max(float(texture.std()), 1e-6)
    return Layout(
        n=n,
        n_periods=n_periods,
        base_surface=ground.surface,
        base_frac_noise=fractal_noise(rng, shape, (60.0, 15.0, 4.0)),
        base_truth=ground.truth,
        river_turbidity_noise=smooth_noise(rng, shape, 80.0),
        texture=texture.astype(np.float32),
        sites=sites,
    )


@dataclass
class _Ground:
    """The static geometry the sites are placed on: rivers, roads, their distances, and the
    surface, truth and occupied pixels painted so far."""

    n: int
    surface: np.ndarray
    truth: np.ndarray
    occupied: np.ndarray
    main: Line
    water_main: np.ndarray
    tributaries: list[Line]
    water: np.ndarray
    dist_to_water: np.ndarray
    roads: list[Line]
    dist_to_road: np.ndarray


def _draw_ground(spec: WorldSpec, rng: np.random.Generator) -> _Ground:
    """Draw the rivers and roads; paint the roads (the water is painted after the look-alikes)."""
    n = spec.size_px
    shape = (n, n)
    surface = np.full(shape, Surface.FOREST, dtype=np.uint8)
    truth = np.zeros(shape, dtype=np.uint8)
    occupied = np.zeros(shape, dtype=bool)

    # Rivers: a meandering main river crossing the world, and tributaries joining it.
    main = main_river(rng, n)
    water_main = rasterize_lines([main], n)
    drawn = [tributary(rng, main, n) for _ in range(spec.n_tributaries)]
    tributaries = [t for t in drawn if t is not None]
    water = water_main | rasterize_lines(tributaries, n) if tributaries else water_main.copy()
    dist_to_water = ndimage.distance_transform_edt(~water).astype(np.float32)

    # Roads crossing the world (drawn under the water: bridges are too small to see).
    roads = [road(rng, n, i) for i in range(spec.n_roads)]
    road_mask = rasterize_lines(roads, n) if roads else np.zeros(shape, dtype=bool)
    road_mask &= ~water
    surface[road_mask] = Surface.ROAD
    truth[road_mask] = TruthClass.ROAD
    occupied |= ndimage.binary_dilation(water, iterations=2)
    dist_to_road = ndimage.distance_transform_edt(~road_mask).astype(np.float32)
    return _Ground(
        n=n,
        surface=surface,
        truth=truth,
        occupied=occupied,
        main=main,
        water_main=water_main,
        tributaries=tributaries,
        water=water,
        dist_to_water=dist_to_water,
        roads=roads,
        dist_to_road=dist_to_road,
    )


class _SiteIds:
    """Site ids per class, numbered in placing order: ``M001``, ``D001``, ``L001``..."""

    def __init__(self) -> None:
        self._prefix = {"mining": "M", "deforestation": "D", "lookalike": "L"}
        self._counter = dict.fromkeys(self._prefix, 0)

    def __call__(self, cls: str) -> str:
        self._counter[cls] += 1
        return f"{self._prefix[cls]}{self._counter[cls]:03d}"


def _place_lookalikes(
    spec: WorldSpec,
    rng: np.random.Generator,
    ground: _Ground,
    n_periods: int,
    new_id: Callable[[str], str],
) -> list[Site]:
    """Place the pastures, quarries, fish ponds and oxbow lakes, in that order."""
    n, roads, occupied = ground.n, ground.roads, ground.occupied
    dist_to_water, dist_to_road = ground.dist_to_water, ground.dist_to_road
    sites: list[Site] = []
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
        site = _place_oxbow(rng, ground.main, n, occupied, ground.water, n_periods, new_id)
        if site is not None:
            sites.append(site)
    return sites


def _place_mining_sites(
    spec: WorldSpec,
    rng: np.random.Generator,
    ground: _Ground,
    n_periods: int,
    new_id: Callable[[str], str],
) -> list[Site]:
    """Place the mining sites along the streams (a third new, a third expanding, the rest
    stable, shuffled); warn when the world has no room for all of them."""
    shapes_unit = load_mining_shapes()
    n_new, n_exp = _split_counts(spec.n_mining_sites)
    statuses = ["new"] * n_new + ["expanding"] * n_exp
    statuses += ["stable"] * (spec.n_mining_sites - n_new - n_exp)
    rng.shuffle(statuses)
    sites: list[Site] = []
    for status in statuses:
        site = _place_mining(
            rng,
            ground.main,
            ground.tributaries,
            ground.n,
            ground.occupied,
            ground.water,
            ground.dist_to_road,
            shapes_unit,
            spec.mining_site_area_ha,
            status,
            n_periods,
            new_id,
        )
        if site is not None:
            sites.append(site)
    if len(sites) < spec.n_mining_sites:
        log.warning(
            "placed %d of %d mining sites: the world of %d px has no room for more along its "
            "streams (use a larger size_px or smaller mining_site_area_ha)",
            len(sites),
            spec.n_mining_sites,
            ground.n,
        )
    return sites


def _place_clearings(
    spec: WorldSpec,
    rng: np.random.Generator,
    ground: _Ground,
    n_periods: int,
    new_id: Callable[[str], str],
) -> list[Site]:
    """Place the clearings along the roads (half new, half expanding, shuffled); warn when the
    world has no room for all of them."""
    n_new_c = (spec.n_clearings + 1) // 2
    clearing_status = ["new"] * n_new_c + ["expanding"] * (spec.n_clearings - n_new_c)
    rng.shuffle(clearing_status)
    sites: list[Site] = []
    for status in clearing_status:
        lo, hi = spec.clearing_area_ha
        site = _place_block(
            rng,
            ground.roads,
            ground.n,
            ground.occupied,
            ground.dist_to_water,
            ground.dist_to_road,
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
    if len(sites) < spec.n_clearings:
        log.warning(
            "placed %d of %d clearings (no room along the roads)", len(sites), spec.n_clearings
        )
    return sites


def _split_counts(n: int) -> tuple[int, int]:
    """Counts of new and expanding sites among ``n`` (about a third each, the rest stable)."""
    return n // 3 + (n % 3 > 0), n // 3 + (n % 3 > 1)


def _place_mining(
    rng: np.random.Generator,
    main: Line,
    tributaries: Sequence[Line],
    n: int,
    occupied: np.ndarray,
    water: np.ndarray,
    dist_to_road: np.ndarray,
    shapes_unit: Sequence[Polygon],
    area_range_ha: tuple[float, float],
    status: str,
    n_periods: int,
    new_id: Callable[[str], str],
) -> Site | None:
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
        win = poly_window(geom, n)
        if win is None:
            continue
        r0, r1, c0, c1 = win
        footprint = roughen(poly_mask(geom, r0, r1, c0, c1), rng, 0.18, 1.2)
        near_water = ndimage.binary_dilation(water[r0:r1, c0:c1], iterations=2)
        before = int(footprint.sum())
        footprint &= ~near_water
        footprint = largest_component(footprint)
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
        dist += 3.0 * smooth_noise(rng, footprint.shape, 6.0)
        ponds, pond_turbidity = _pond_cells(rng, footprint)
        sediment = to_unit(smooth_noise(rng, footprint.shape, 5.0) * 1.2 + 0.2)
        paints: list[SitePaint | None] = []
        for share in growth_fractions(status, n_periods, rng):
            if share <= 0.0:
                paints.append(None)
                continue
            f_p = grow(footprint, dist, share)
            pond_p = ponds & ndimage.binary_erosion(f_p, iterations=1, border_value=0)
            surf = np.full(footprint.shape, 255, dtype=np.uint8)
            surf[f_p] = Surface.MINING_SEDIMENT
            surf[pond_p] = Surface.MINING_POND
            frac = np.where(pond_p, pond_turbidity, sediment).astype(np.float32)
            tru = np.where(f_p, TruthClass.MINING, 0).astype(np.uint8)
            paints.append(SitePaint(surf, frac, tru))
        occupied[r0:r1, c0:c1] |= ndimage.binary_dilation(footprint, iterations=12)
        return Site(new_id("mining"), "mining", "pond_complex", TruthClass.MINING, r0, c0, paints)
    return None


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


def _place_block(
    rng: np.random.Generator,
    roads: Sequence[Line],
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
) -> Site | None:
    """A blocky field along a road (clearings grow away from the road; pastures are stable)."""
    area_px = area_ha / PIXEL_HA
    for _attempt in range(60):
        pt = line_point(rng, roads, n, 20)
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
        win = poly_window(geom, n)
        if win is None:
            continue
        r0, r1, c0, c1 = win
        footprint = roughen(poly_mask(geom, r0, r1, c0, c1), rng, 0.08, 0.8)
        footprint &= dist_to_road[r0:r1, c0:c1] >= 1.5  # a verge along the road
        footprint = largest_component(footprint)
        if footprint.sum() < 0.5 * area_px:
            continue
        if (footprint & occupied[r0:r1, c0:c1]).any():
            continue
        if (dist_to_water[r0:r1, c0:c1][footprint] < min_water_px).any():
            continue
        rows, cols = np.mgrid[r0:r1, c0:c1]
        dist = ((cols + 0.5 - px) * nx + (rows + 0.5 - py) * ny).astype(np.float32)
        frac_noise = to_unit(smooth_noise(rng, footprint.shape, 6.0))
        shares = (
            [1.0] * n_periods if schedule is None else growth_fractions(schedule, n_periods, rng)
        )
        paints: list[SitePaint | None] = []
        for share in shares:
            if share <= 0.0:
                paints.append(None)
                continue
            f_p = grow(footprint, dist, share)
            surf = np.where(f_p, np.uint8(surface_code), np.uint8(255)).astype(np.uint8)
            tru = np.where(f_p, np.uint8(truth_code), np.uint8(0)).astype(np.uint8)
            frac = frac_noise if schedule is not None else np.full(f_p.shape, np.nan, np.float32)
            paints.append(SitePaint(surf, frac, tru))
        occupied[r0:r1, c0:c1] |= ndimage.binary_dilation(footprint, iterations=6)
        return Site(new_id(cls), cls, kind, truth_code, r0, c0, paints)
    return None


def _static_site(
    new_id: Callable[[str], str],
    kind: str,
    truth_code: TruthClass,
    r0: int,
    c0: int,
    paint: SitePaint,
    n_periods: int,
) -> Site:
    return Site(new_id("lookalike"), "lookalike", kind, truth_code, r0, c0, [paint] * n_periods)


def _place_quarry(
    rng: np.random.Generator,
    roads: Sequence[Line],
    n: int,
    occupied: np.ndarray,
    dist_to_water: np.ndarray,
    dist_to_road: np.ndarray,
    n_periods: int,
    new_id: Callable[[str], str],
) -> Site | None:
    for _attempt in range(60):
        pt = line_point(rng, roads, n, 40)
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
        win = poly_window(geom, n)
        if win is None:
            continue
        r0, r1, c0, c1 = win
        footprint = roughen(poly_mask(geom, r0, r1, c0, c1), rng, 0.2, 1.0)
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
            SitePaint(surf, frac * 0.7, tru),
            n_periods,
        )
    return None


def _place_fish_ponds(
    rng: np.random.Generator,
    roads: Sequence[Line],
    n: int,
    occupied: np.ndarray,
    dist_to_water: np.ndarray,
    dist_to_road: np.ndarray,
    n_periods: int,
    new_id: Callable[[str], str],
) -> Site | None:
    for _attempt in range(60):
        pt = line_point(rng, roads, n, 40)
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
            SitePaint(surf, frac, tru),
            n_periods,
        )
    return None


def _place_oxbow(
    rng: np.random.Generator,
    main: Line,
    n: int,
    occupied: np.ndarray,
    water: np.ndarray,
    n_periods: int,
    new_id: Callable[[str], str],
) -> Site | None:
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
        frac = to_unit(smooth_noise(rng, lake.shape, 8.0))
        surf = np.where(lake, np.uint8(Surface.OXBOW), np.uint8(255)).astype(np.uint8)
        tru = np.where(lake, np.uint8(TruthClass.OXBOW_LAKE), np.uint8(0)).astype(np.uint8)
        occupied[r0:r1, c0:c1] |= ndimage.binary_dilation(lake, iterations=8)
        return _static_site(
            new_id,
            "oxbow_lake",
            TruthClass.OXBOW_LAKE,
            r0,
            c0,
            SitePaint(surf, frac, tru),
            n_periods,
        )
    return None


def _place_sandbar(
    rng: np.random.Generator,
    main: Line,
    n: int,
    water_main: np.ndarray,
    occupied: np.ndarray,
    dryness: Sequence[float],
    new_id: Callable[[str], str],
) -> Site | None:
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
        ell = u * u + v * v + 0.25 * smooth_noise(rng, u.shape, 5.0)
        local_channel = channel[r0:r1, c0:c1]
        if ((ell < 1.0) & local_channel).sum() < 20 or (others[r0:r1, c0:c1] & (ell < 1.5)).any():
            continue
        dry = to_unit(2.0 * (1.0 - ell) + 0.5 * smooth_noise(rng, u.shape, 3.0))
        paints: list[SitePaint | None] = []
        for d in dryness:
            # Low water in the dry season exposes more of the bar.
            bar = (ell < 0.75 + 0.45 * d) & local_channel
            surf = np.where(bar, np.uint8(Surface.SANDBAR), np.uint8(255)).astype(np.uint8)
            tru = np.where(bar, np.uint8(TruthClass.SANDBAR), np.uint8(0)).astype(np.uint8)
            paints.append(SitePaint(surf, dry, tru))
        occupied[r0:r1, c0:c1] |= ndimage.binary_dilation(ell < 1.5, iterations=6)
        return Site(new_id("lookalike"), "lookalike", "sandbar", TruthClass.SANDBAR, r0, c0, paints)
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
    field_ = fractal_noise(rng, (n, n), (max(n / 6, 40.0), 30.0, 8.0))
    allowed = (~occupied) & (dist_to_water > 25) & (surface == Surface.FOREST)
    if not allowed.any():
        return
    limit = np.quantile(field_[allowed], 1.0 - min(fraction / max(allowed.mean(), 1e-6), 0.9))
    savanna = allowed & (field_ > limit)
    savanna = ndimage.binary_opening(savanna, iterations=2)
    surface[savanna] = Surface.SAVANNA
    truth[savanna] = TruthClass.SAVANNA
