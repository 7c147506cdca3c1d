"""Benchmark: a Munduruku scan whose COG host does not resolve must end in minutes (issue 18).

Serves a loopback STAC API (``rustac serve``, as the tests do) holding Earth Search v1-shaped
Sentinel-2 L2A items that cover the Munduruku AOI (UTM 21S tiles of 109.8 km on the 100 km MGRS
grid, ``--per-quarter`` acquisitions in each of the two quarters of configs/munduruku.yaml) whose
COG assets all point at ``http://cogs.invalid/...`` (``.invalid`` never resolves, RFC 2606). Then
runs ``minewatch scan`` on a copy of configs/munduruku.yaml with only ``source.url`` changed, output
to a temporary folder, and reports the wall time, exit code, units and the stderr lines.

Run by hand (not a test)::

    nice .venv/bin/python benchmarks/dead_host.py [--per-quarter 6] [--work DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pyproj import Transformer
from shapely.geometry import Polygon, mapping, shape

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.tiles.servers import ES_KEYS, RustacServer  # noqa: E402

CONFIG = REPO / "configs" / "munduruku.yaml"
AOI = REPO / "aoi" / "data" / "munduruku.geojson"
MINEWATCH = REPO / ".venv" / "bin" / "minewatch"
DEAD = "http://cogs.invalid"
EPSG = 32721  # UTM 21S: the whole AOI (58.5 W to 56.7 W) lies in zone 21
TILE_M = 109_800
QUARTERS = ((dt.date(2024, 4, 1), 91), (dt.date(2024, 7, 1), 92))


def tile_origins(margin_m: float) -> list[tuple[float, float]]:
    """Upper-left corners of the 100 km MGRS squares (as Sentinel-2 tiles, 40 m off) covering
    the AOI plus ``margin_m``."""
    to_utm = Transformer.from_crs("EPSG:4326", f"EPSG:{EPSG}", always_xy=True)
    geom = shape(json.loads(AOI.read_text())["features"][0]["geometry"])
    lon0, lat0, lon1, lat1 = geom.bounds
    xs, ys = to_utm.transform([lon0, lon1, lon1, lon0], [lat0, lat0, lat1, lat1])
    x0, x1 = min(xs) - margin_m, max(xs) + margin_m
    y0, y1 = min(ys) - margin_m, max(ys) + margin_m
    cols = range(math.floor(x0 / 1e5), math.ceil(x1 / 1e5))
    rows = range(math.floor(y0 / 1e5) + 1, math.ceil(y1 / 1e5) + 1)
    return [(c * 1e5 - 40, r * 1e5 + 40) for c in cols for r in rows]


def make_item(origin: tuple[float, float], when: dt.datetime, n: int) -> dict[str, Any]:
    """One Earth Search v1-shaped item whose assets all point at the dead host."""
    left, top = origin
    to_wgs = Transformer.from_crs(f"EPSG:{EPSG}", "EPSG:4326", always_xy=True)
    right, bottom = left + TILE_M, top - TILE_M
    lon, lat = to_wgs.transform([left, right, right, left, left], [top, top, bottom, bottom, top])
    outline = Polygon(zip(lon, lat, strict=True))
    item_id = f"S2B_21M{int(left // 1e5):02d}{int(top // 1e5) % 100:02d}_{when:%Y%m%d}_0_L2A"
    assets = {}
    for band, key in ES_KEYS.items():
        res = 20 if band in ("B05", "B06", "B07", "B8A", "B11", "B12", "SCL") else 10
        assets[key] = {
            "href": f"{DEAD}/{item_id}/{band}.tif",
            "type": "image/tiff; application=geotiff; profile=cloud-optimized",
            "proj:shape": [TILE_M // res, TILE_M // res],
            "proj:transform": [res, 0, left, 0, -res, top],
            "raster:bands": [{"nodata": 0, "data_type": "uint16" if band != "SCL" else "uint8",
                              "spatial_resolution": res, "scale": 0.0001, "offset": -0.1}],
            "roles": ["data", "reflectance"],
        }  # fmt: skip
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": item_id,
        "collection": "sentinel-2-l2a",
        "geometry": mapping(outline),
        "bbox": list(outline.bounds),
        "properties": {
            "datetime": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "platform": "sentinel-2b",
            "constellation": "sentinel-2",
            "eo:cloud_cover": 10.0 + n % 40,
            "proj:epsg": EPSG,
            "s2:processing_baseline": "05.10",
            "earthsearch:boa_offset_applied": True,
        },
        "assets": assets,
        "links": [],
    }


def build(work: Path, per_quarter: int) -> tuple[Path, Path, int]:
    items: list[dict[str, Any]] = []
    for origin in tile_origins(margin_m=10_000):
        for start, days in QUARTERS:
            for k in range(per_quarter):
                day = start + dt.timedelta(days=(k * days) // per_quarter + 2)
                when = dt.datetime.combine(day, dt.time(14, 3, 21), dt.timezone.utc)
                items.append(make_item(origin, when, len(items)))
    collection = {
        "type": "Collection",
        "id": "sentinel-2-l2a",
        "stac_version": "1.0.0",
        "description": "Sentinel-2 L2A over Munduruku, COG host dead (benchmark)",
        "license": "proprietary",
        "extent": {
            "spatial": {"bbox": [[-60.0, -10.0, -54.0, -5.0]]},
            "temporal": {"interval": [["2024-01-01T00:00:00Z", None]]},
        },
        "links": [],
    }
    (work / "collection.json").write_text(json.dumps(collection))
    items_path = work / "items.json"
    items_path.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    return work / "collection.json", items_path, len(items)


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-quarter", type=int, default=6, help="acquisitions per tile")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="minewatch-deadhost-"))
    work.mkdir(parents=True, exist_ok=True)
    collection, items_path, n_items = build(work, args.per_quarter)
    api = RustacServer(collection, items_path)
    try:
        text = CONFIG.read_text(encoding="utf-8")
        cfg = work / "munduruku.yaml"
        cfg.write_text(re.sub(r"(?m)^  url: .*$", f"  url: {api.url}", text, count=1))
        out = work / "out"
        print(f"{n_items} items, STAC API {api.url}, load average {load_average()}")
        t = time.monotonic()
        res = subprocess.run(
            [str(MINEWATCH), "scan", str(cfg), "--out", str(out), "--json"],
            capture_output=True,
            text=True,
            cwd=work,
            check=False,
        )
        seconds = time.monotonic() - t
    finally:
        api.stop()
    run = json.loads((out / "run.json").read_text()) if (out / "run.json").is_file() else {}
    print(f"wall time {seconds:.1f} s, exit code {res.returncode}, load average {load_average()}")
    keys = ("outcome", "units_total", "units_computed", "units_reused")
    print("run.json:", {k: run.get(k) for k in keys}, f"failures: {len(run.get('failures', []))}")
    print("stderr:")
    for line in res.stderr.splitlines():
        print("  " + line)


if __name__ == "__main__":
    main()
