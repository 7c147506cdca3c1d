"""Tiny unit composites as a scan writes them, for evidence and review-page tests.

Two chips side by side in UTM 21S (EPSG:32721, the frame of ``conftest.utm_box``), each
128 x 128 px of 10 m: ``T1`` covers x 0..1280 m, ``T2`` x 1280..2560 m, y -300..980 m from
``(X0, Y0)``. Before: forest everywhere. After: bare sediment in every box of ``bare`` (the
planted change). Rows of ``cloud_rows`` are nodata (0) in the before composites.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from tests.detection.conftest import X0, Y0
from tiles.periods import Period

BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")
FOREST = (300, 500, 300, 3000, 1500, 700)
BARE = (1100, 1300, 1500, 2000, 3000, 2500)
CHIPS = {"T1": 0.0, "T2": 1280.0}
SIZE = 128
TOP = 980.0


def scene_ids(tile: str, period: Period) -> list[str]:
    """Two Sentinel-2 product ids inside ``period`` for ``tile``."""
    day1 = period.start.replace(day=5).strftime("%Y%m%d")
    day2 = period.start.replace(day=20).strftime("%Y%m%d")
    return [
        f"S2A_MSIL2A_{day1}T135411_N0510_R067_T21M{tile}_{day1}T171208",
        f"S2B_MSIL2A_{day2}T135538_N0510_R067_T21M{tile}_{day2}T185244",
    ]


def write_units(
    units_dir: Path,
    period: Period,
    *,
    bare: Sequence[tuple[float, float, float, float]] = (),
    cloud_rows: int = 0,
    tag_period: Period | None = None,
    scene_ids_of: Callable[[str, Period], list[str]] | None = None,
) -> list[Path]:
    """Write the two chips' composites of ``period``; ``bare`` boxes are ``(x, y, w, h)`` m;
    ``scene_ids_of(tile, period)`` gives their ``SCENE_IDS`` (default :func:`scene_ids`)."""
    scene_ids_of = scene_ids_of or scene_ids
    tagged = tag_period or period
    folder = units_dir / period.label
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(period.label) + period.start.month)
    paths = []
    for tile, x_off in CHIPS.items():
        transform = Affine(10.0, 0.0, X0 + x_off, 0.0, -10.0, Y0 + TOP)
        data = np.empty((len(BANDS), SIZE, SIZE), dtype=np.uint16)
        for i, value in enumerate(FOREST):
            data[i] = value + rng.integers(-40, 40, size=(SIZE, SIZE))
        cols = X0 + x_off + 5.0 + 10.0 * np.arange(SIZE)
        rows = Y0 + TOP - 5.0 - 10.0 * np.arange(SIZE)
        xx, yy = np.meshgrid(cols, rows)
        for bx, by, bw, bh in bare:
            inside = (xx >= X0 + bx) & (xx < X0 + bx + bw) & (yy >= Y0 + by) & (yy < Y0 + by + bh)
            for i, value in enumerate(BARE):
                data[i][inside] = value
        if cloud_rows:
            data[:, :cloud_rows, :] = 0
        path = folder / f"{tile}_{period.label}_composite.tif"
        profile = {
            "driver": "GTiff",
            "dtype": "uint16",
            "nodata": 0,
            "width": SIZE,
            "height": SIZE,
            "count": len(BANDS),
            "crs": "EPSG:32721",
            "transform": transform,
        }
        with rasterio.open(path, "w", **profile) as ds:
            ds.write(data)
            for i, band in enumerate(BANDS, start=1):
                ds.set_band_description(i, band)
            ds.update_tags(
                TILE_ID=tile,
                PERIOD=tagged.label,
                PERIOD_START=tagged.start.isoformat(),
                PERIOD_END=tagged.end.isoformat(),
                SCENE_IDS=",".join(scene_ids_of(tile, period)),
                REFLECTANCE_SCALE="0.0001",
            )
        paths.append(path)
    return paths
