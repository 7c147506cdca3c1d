"""A small scan (a 640 px synthetic world inside a box AOI) for the operational tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import shapely
import yaml

from tests.conftest import write_aoi

CENTER = (-57.55, -6.62)


def minewatch(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    """Run the real command line in a subprocess."""
    env = os.environ | {"HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "minewatch", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def small_config(folder: Path, *, world: Path, **changes: object) -> Path:
    """Write a scan config over a ~6 km box AOI and a shared 640 px world."""
    lon, lat = CENTER
    d = 0.03
    aoi = folder / "aoi.geojson"
    if not aoi.exists():
        write_aoi(aoi, shapely.box(lon - d, lat - d, lon + d, lat + d))
    config: dict[str, object] = {
        "name": "small",
        "aoi": {
            "path": "aoi.geojson",
            "id_field": "id",
            "name_field": "name",
            "kind": "indigenous_land",
            "buffer_m": 1000,
        },
        "source": {
            "kind": "synthetic",
            "path": str(world),
            "world": {
                "size_px": 640,
                "seed": 3,
                "n_mining_sites": 4,
                "n_clearings": 2,
                "periods": ["2024Q2", "2024Q3"],
            },
        },
        "periods": {"kind": "quarter", "start": "2024-04-01", "end": "2024-09-30"},
        "grid": {"chip_size_px": 256},
        "detector": {"kind": "indices"},
    }
    for key, value in changes.items():
        node: dict = config
        *parents, last = key.split("__")
        for part in parents:
            node = node.setdefault(part, {})  # type: ignore[assignment]
        node[last] = value
    path = folder / "scan.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="session")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder the small scans share their synthetic world in (generated on first use)."""
    return tmp_path_factory.mktemp("world") / "world"


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory, small_world: Path) -> Path:
    """One uninterrupted in-process scan of the small world: the yardstick of the operations,
    fault and cluster runs (tests that rerun it must leave its alerts as they were)."""
    folder = tmp_path_factory.mktemp("reference")
    cfg = small_config(folder, world=small_world)
    proc = minewatch("scan", str(cfg), "--out", "out", "--json", cwd=folder)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    assert summary["units_computed"] > 0 and summary["alerts"] > 0
    return folder / "out"


def features(out: Path) -> list[dict]:
    return json.loads((out / "alerts.geojson").read_text())["features"]
