"""Benchmark: scan the demo world in process and on local Dask clusters of 1, 2 and 4 workers.

Run by hand: ``.venv/bin/python benchmarks/scan_workers.py [--workers 0 1 2 4]``. The synthetic
world is generated once and shared; each configuration scans into a fresh output folder, so every
unit is computed. Prints one table: seconds, units (chip x period) per minute, speed-up vs in
process.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from detection.runs import ExecutorConfig, default_config_dir, load_config, run_scan
from models.indices import IndexDetector
from tiles.sources import ensure_world


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2, 4])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        world = Path(tmp) / "world"
        config = load_config(default_config_dir() / "demo.yaml",
                             overrides={"source.path": str(world)})
        ensure_world(world, config.source.world)  # type: ignore[union-attr]
        rows = []
        for workers in args.workers:
            out = Path(tmp) / f"out-{workers}"
            start = time.perf_counter()
            result = run_scan(config, detector=IndexDetector(), out_dir=out,
                              executor=ExecutorConfig(workers=workers))
            seconds = time.perf_counter() - start
            rows.append((workers, seconds, result.units_computed))
    base = rows[0][1]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(f"{'executor':<28}{'seconds':>9}{'units':>7}{'units/min':>11}{'speed-up':>10}")
    for workers, seconds, units in rows:
        name = "in process" if workers == 0 else f"LocalCluster, {workers} worker(s)"
        print(f"{name:<28}{seconds:>9.1f}{units:>7}{units / seconds * 60:>11.1f}"
              f"{base / seconds:>10.2f}")


if __name__ == "__main__":
    main()
