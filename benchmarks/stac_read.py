"""Benchmark: read one Sentinel-2 tile's worth of windows for an AOI over loopback HTTP.

Writes per-band COGs the size of a real Sentinel-2 L2A tile (10980 x 10980 px at 10 m for B02,
B03, B04, B08; 5490 x 5490 at 20 m for B11, B12, SCL; DEFLATE, 1024 px blocks, overviews: as Earth
Search serves them), one STAC item pointing at them, serves them with Range support on loopback
(the RangeHTTPServer handler, counting the bytes it sends), and reads every 1024 px chip of the
processing grid that meets an AOI covering part of the tile through `tiles.sources.StacSource`.

Reports MB read over HTTP vs MB of the full files, requests, seconds, and the same for a rerun
(served from the window cache). Usage::

    .venv/bin/python benchmarks/stac_read.py [--size 10980] [--aoi-fraction 0.25] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from shapely.geometry import Point

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.tiles.servers import RangeServer  # noqa: E402
from tiles.cog import write_cog  # noqa: E402
from tiles.config import StacSourceConfig  # noqa: E402
from tiles.http import RetryPolicy  # noqa: E402
from tiles.sources import StacSource, item_to_scene_info  # noqa: E402

CRS_UTM = CRS.from_epsg(32721)
ORIGIN = (399960.0, 9300040.0)
BANDS = {"B02": 10, "B03": 10, "B04": 10, "B08": 10, "B11": 20, "B12": 20, "SCL": 20}
KEYS = {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir", "B11": "swir16",
        "B12": "swir22", "SCL": "scl"}  # fmt: skip


def make_band(size: int, rng: np.random.Generator, *, scl: bool) -> np.ndarray:
    """A textured field (smooth structure + sensor-like noise) that compresses like imagery."""
    coarse = rng.normal(0, 1, (size // 64 + 2, size // 64 + 2)).astype(np.float32)
    smooth = np.kron(coarse, np.ones((64, 64), np.float32))[:size, :size]
    if scl:
        return np.where(smooth > 1.2, 9, np.where(smooth < -1.5, 6, 4)).astype(np.uint8)
    noise = rng.normal(0, 40, (size, size)).astype(np.float32)
    return np.clip(1000 + 1500 + 600 * smooth + noise, 1, 65535).astype(np.uint16)


def build(work: Path, size: int, base_url: str) -> dict:
    rng = np.random.default_rng(0)
    assets = {}
    for band, res in BANDS.items():
        n = size * 10 // res
        path = work / "cogs" / f"{band}.tif"
        transform = Affine(res, 0, ORIGIN[0], 0, -res, ORIGIN[1])
        if not path.exists():
            t = time.monotonic()
            data = make_band(n, rng, scl=band == "SCL")
            write_cog(path, data, crs=CRS_UTM, transform=transform, nodata=0, blocksize=1024,
                      resampling="nearest" if band == "SCL" else "average")  # fmt: skip
            print(f"  wrote {path.name} {n} px in {time.monotonic() - t:.0f} s", file=sys.stderr)
        assets[KEYS[band]] = {
            "href": f"{base_url}/cogs/{band}.tif",
            "type": "image/tiff; application=geotiff; profile=cloud-optimized",
            "proj:shape": [n, n],
            "proj:transform": list(transform)[:6],
            "file:size": path.stat().st_size,
        }
    return {
        "type": "Feature",
        "id": "S2B_21MVN_20240715_0_L2A",
        "collection": "sentinel-2-l2a",
        "properties": {
            "datetime": "2024-07-15T13:55:39Z",
            "proj:epsg": 32721,
            "eo:cloud_cover": 5.0,
            "s2:processing_baseline": "05.10",
            "earthsearch:boa_offset_applied": True,
        },
        "assets": assets,
        "links": [],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10980)
    parser.add_argument("--chip", type=int, default=1024)
    parser.add_argument("--aoi-fraction", type=float, default=0.25)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="minewatch-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    server = RangeServer(work).start()
    try:
        item = build(work, args.size, server.url)
        info = item_to_scene_info(item)
        extent = args.size * 10.0
        radius = math.sqrt(args.aoi_fraction * extent * extent / math.pi)
        aoi = Point(ORIGIN[0] + extent / 2, ORIGIN[1] - extent / 2).buffer(radius)
        # The processing grid as a scan makes it (chips aligned to the MGRS 100 km square, whose
        # corner is 40 m inside the tile's: Sentinel-2 tiles overlap by 4.9 km).
        import geopandas as gpd

        from aoi.grid import make_grid

        aoi_wgs84 = gpd.GeoSeries([aoi], crs=CRS_UTM).to_crs("EPSG:4326").iloc[0]
        cells = make_grid(aoi_wgs84, chip_size_px=args.chip, resolution_m=10.0)
        full = sum((work / "cogs" / f"{b}.tif").stat().st_size for b in BANDS)
        results = {}
        for run in ("first", "rerun"):
            # (GDAL reads CPL_VSIL_CURL_CACHE_SIZE when /vsicurl/ is first used: inside the
            # source's settings on the first run; the rerun is served by the window cache.)
            server.reset()
            source = StacSource(
                StacSourceConfig(url="http://127.0.0.1:1"),
                cache_dir=work / "cache",
                policy=RetryPolicy(max_tries=3, backoff_s=0.1),
            )
            t = time.monotonic()
            for cell in cells:
                source.read(info, cell, bands=("B02", "B03", "B04", "B08", "B11", "B12"))
            seconds = time.monotonic() - t
            results[run] = {
                "seconds": round(seconds, 1),
                "mb_read": round(server.bytes_sent() / 1e6, 1),
                "requests": len(server.requests),
            }
        tile_px = args.size * args.size
        read_px = sum(c.width * c.height for c in cells)
        report = {
            "tile_px": args.size,
            "chips": len(cells),
            "chip_px": args.chip,
            "aoi_share_of_tile": round(read_px / tile_px, 3),
            "mb_full_files": round(full / 1e6, 1),
            **{f"{k}_{run}": v for run, r in results.items() for k, v in r.items()},
        }
        report["read_share_of_full_files"] = round(
            report["mb_read_first"] / report["mb_full_files"], 3
        )
        print(json.dumps(report, indent=2))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
