"""Benchmark: track and export 10,000 sites (issue #6: under 30 s on a 2-core machine).

Two periods of 10,000 sites each over three overlapping AOIs in UTM 21S (Para, Brazil): the
second period grows 40 % of the sites, moves some, drops 5 % and adds 5 % new ones. Timed:
``track_sites`` + ``append_history`` (both periods), ``attribute_aois``, evidence-free
``build_feature_collection``, and the exports (GeoJSON, GeoPackage with history and styles,
CSV, KML).

    .venv/bin/python benchmarks/sites_10k.py [--sites 10000] [--out DIR]

Prints one JSON object with the seconds of each stage and the total.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely

from detection.alerts import (
    build_feature_collection,
    write_geojson,
    write_geopackage,
    write_kml,
    write_summary_csv,
)
from detection.sites import append_history, attribute_aois, track_sites
from tiles.periods import quarter

UTM = "EPSG:32721"
X0, Y0 = 400_000.0, 9_200_000.0
SPAN_M = 100_000.0


def _sites(cells: np.ndarray, classes: np.ndarray) -> gpd.GeoDataFrame:
    geoms = shapely.box(
        X0 + cells[:, 0],
        Y0 + cells[:, 1],
        X0 + cells[:, 0] + cells[:, 2],
        Y0 + cells[:, 1] + cells[:, 3],
    )
    frame = gpd.GeoDataFrame(
        {
            "alert_class": classes,
            "area_ha": cells[:, 2] * cells[:, 3] / 10_000,
            "confidence": np.linspace(0.55, 0.99, len(cells)),
            "tile_id": [f"21MYN_{i % 400:04d}" for i in range(len(cells))],
        },
        geometry=geoms,
        crs=UTM,
    )
    return frame.to_crs(4326)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    out = args.out or Path(tempfile.mkdtemp(prefix="minewatch-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(6)
    n = args.sites

    # Non-overlapping sites: one per 1 km cell of a 100 km square, jittered inside it.
    side = int(np.ceil(np.sqrt(n)))
    cell = SPAN_M / side
    ij = rng.permutation(side * side)[:n]
    base = np.column_stack(
        [
            (ij % side) * cell + 50,
            (ij // side) * cell + 50,
            rng.uniform(60, 300, n),
            rng.uniform(60, 300, n),
        ]
    )
    classes = np.where(rng.random(n) < 0.6, "mining", "deforestation")
    now = base.copy()
    grow = rng.random(n) < 0.4
    now[grow, 2] *= 1.5
    move = rng.random(n) < 0.1
    now[move, 0] += 20
    keep = rng.random(n) >= 0.05
    fresh = np.column_stack(
        [
            rng.uniform(0, SPAN_M - 400, n - keep.sum()),
            rng.uniform(0, SPAN_M - 400, n - keep.sum()),
            np.full(n - keep.sum(), 80.0),
            np.full(n - keep.sum(), 80.0),
        ]
    )
    fresh[:, 0] = (np.floor(fresh[:, 0] / cell) * cell) + cell - 130  # the free corner of a cell
    fresh[:, 1] = (np.floor(fresh[:, 1] / cell) * cell) + cell - 130
    now = np.vstack([now[keep], fresh])
    now_classes = np.concatenate([classes[keep], np.full(len(fresh), "mining")])

    q2, q3 = quarter(2024, 2), quarter(2024, 3)
    aoi_geoms = [
        shapely.box(X0 - 1000, Y0 - 1000, X0 + 60_000, Y0 + SPAN_M + 1000),
        shapely.box(X0 + 40_000, Y0 - 1000, X0 + SPAN_M + 1000, Y0 + SPAN_M + 1000),
        shapely.box(X0 + 20_000, Y0 + 20_000, X0 + 50_000, Y0 + 50_000),
    ]
    aois = gpd.GeoDataFrame(
        {
            "aoi_id": ["TI-1", "TI-2", "PA-1"],
            "aoi_name": ["Munduruku", "Sai Cinza", "Floresta Nacional"],
            "aoi_kind": ["indigenous_land", "indigenous_land", "protected_area"],
        },
        geometry=aoi_geoms,
        crs=UTM,
    ).to_crs(4326)
    previous_sites = _sites(base, classes)
    current_sites = _sites(now, now_classes)

    timings: dict[str, float] = {}
    started = time.perf_counter()
    t = time.perf_counter()
    previous = track_sites(previous_sites, None, period=q2, previous_period=None)
    previous["observed_fraction"] = 1.0
    history = append_history(None, previous, q2)
    current = track_sites(current_sites, history, period=q3, previous_period=q2)
    current["observed_fraction"] = 0.9
    history = append_history(history, current, q3)
    timings["track_sites + history (2 periods)"] = time.perf_counter() - t

    t = time.perf_counter()
    alerts = attribute_aois(current, aois, buffer_m=5000)
    alerts["period_start"], alerts["period_end"] = q3.start.isoformat(), q3.end.isoformat()
    alerts["scene_ids"] = [["S2A_MSIL2A_20240713T135446_N0510_R067_T21MYN_20240713T183226"]] * len(
        alerts
    )
    timings["attribute_aois"] = time.perf_counter() - t

    t = time.perf_counter()
    thresholds = {"low": 0.5, "high": 0.7, "highest": 0.9}
    metadata = {
        "version": "1.0",
        "run_id": "bench",
        "generated_at": dt.datetime.now(dt.timezone.utc),
        "period": q3,
        "previous_period": q2,
        "model": {"name": "bench", "version": "0", "sha256": "0" * 64},
        "source": "benchmark",
        "confidence_levels": thresholds,
    }
    fc = build_feature_collection(alerts, metadata=metadata)
    timings["build_feature_collection"] = time.perf_counter() - t

    t = time.perf_counter()
    write_geojson(out / "alerts.geojson", fc)
    timings["write_geojson"] = time.perf_counter() - t
    t = time.perf_counter()
    coverage = gpd.GeoDataFrame(
        {"status": ["observed"]}, geometry=[shapely.box(*aois.total_bounds)], crs=4326
    )
    write_geopackage(
        out / "alerts.gpkg",
        alerts=alerts,
        coverage=coverage,
        aois=aois,
        history=history,
        thresholds=thresholds,
    )
    timings["write_geopackage (alerts + history)"] = time.perf_counter() - t
    t = time.perf_counter()
    write_summary_csv(out / "summary.csv", fc)
    write_kml(out / "alerts.kml", fc)
    timings["write_summary_csv + write_kml"] = time.perf_counter() - t
    total = time.perf_counter() - started

    statuses = alerts["status"].value_counts().to_dict()
    print(
        json.dumps(
            {
                "sites_previous": len(previous),
                "sites_current": len(current),
                "alerts": len(fc["features"]),
                "history_rows": len(history),
                "statuses": {str(k): int(v) for k, v in sorted(statuses.items())},
                "seconds": {k: round(v, 2) for k, v in timings.items()},
                "total_seconds": round(total, 2),
                "out": str(out),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
