"""The CPU install (``pip install minewatch``, no ``torch`` extra), end to end from the CLI.

``minewatch scan``, ``predict`` and ``evaluate`` run the shipped network from its ONNX export
and give what the PyTorch install gives; what needs PyTorch says, in one line, which extra installs
it. ``make test-cpu`` runs this file in ``.venv-cpu``, where torch is not installed at all; in the
full install the subprocesses run with a ``sys.meta_path`` finder that refuses ``torch`` (an
``import torch`` anywhere fails as it does without it), and the PyTorch run is compared.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from rasterio.transform import from_origin

from models.registry import DEFAULT_MODEL

from .conftest import features, minewatch, small_config

pytestmark = [pytest.mark.slow, pytest.mark.cpu_install]

HAS_TORCH = importlib.util.find_spec("torch") is not None
EXTRA = "pip install 'minewatch[torch]'"

_NO_TORCH = """
import importlib.abc, sys

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] in ("torch", "torchvision"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoTorch())
from minewatch.cli import main
sys.exit(main(sys.argv[1:]))
"""


def without_torch(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``minewatch ARGS`` in a process where ``import torch`` fails."""
    return subprocess.run(
        [sys.executable, "-c", _NO_TORCH, *args],
        cwd=cwd,
        env=os.environ | {"HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def _sites(out: Path) -> list[tuple[str, str, float, dict]]:
    return sorted(
        (f["properties"]["site_id"], f["properties"]["status"], f["properties"]["area_ha"],
         f["geometry"])
        for f in features(out)
    )


def test_scan_without_torch_gives_the_sites_of_the_pytorch_install(
    small_world: Path, tmp_path: Path
) -> None:
    config = small_config(tmp_path, world=small_world, detector={"kind": "network"})
    proc = without_torch("scan", str(config), "--out", "cpu", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    fc = json.loads((tmp_path / "cpu" / "alerts.geojson").read_text())
    assert fc["minewatch"]["model"]["sha256"] == DEFAULT_MODEL.sha256
    cpu_sites = _sites(tmp_path / "cpu")
    assert cpu_sites, "the network found no site in the small world"
    if not HAS_TORCH:
        return
    proc = minewatch("scan", str(config), "--out", "torch", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _sites(tmp_path / "torch") == cpu_sites


def test_evaluate_without_torch_scores_the_shipped_network(tmp_path: Path) -> None:
    world = {"seed": 301, "center_lon": -58.9, "center_lat": -8.1, "size_px": 256,
             "n_mining_sites": 3, "n_clearings": 1, "acquisitions_per_period": 2}
    config = tmp_path / "eval.yaml"
    config.write_text(yaml.safe_dump({
        "checkpoint": None,
        "data": {"kind": "synthetic", "workdir": "worlds",
                 "regions": [{"split": "test", "world": world}]},
        "splits": ["test"],
        "baseline": False,
        "device": "auto",
        "n_examples": 1,
    }))
    proc = without_torch("evaluate", str(config), "--out", "cpu", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert [d["detector"]["name"] for d in report["detectors"]] == [DEFAULT_MODEL.name]
    if not HAS_TORCH:
        return
    proc = minewatch("evaluate", str(config), "--out", "torch", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["detectors"] == report["detectors"]


def test_predict_without_torch_writes_the_probabilities_and_sites_of_pytorch(
    tmp_path: Path,
) -> None:
    from tiles.synthetic import WorldSpec, generate_world

    spec = WorldSpec(size_px=384, seed=5, n_mining_sites=3, n_clearings=1,
                     acquisitions_per_period=1, cloud_cover=0.0)
    generate_world(tmp_path / "world", spec)
    scene = sorted((tmp_path / "world" / "scenes").glob("*.tif"))[-1]
    # windows of 128 px: several window rows, blended and flushed row by row
    args = ("predict", str(scene), "--window-px", "128", "--overlap-px", "32", "--json")
    proc = without_torch(*args, "--out", "cpu", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["backend"] == "onnxruntime"
    cpu = tmp_path / "cpu" / f"{scene.stem}_probabilities.tif"
    with rasterio.open(cpu) as src:
        probabilities = src.read()
    assert probabilities.shape == (2, 384, 384)
    assert (probabilities[0] > 127).any(), "no mining pixel predicted in the scene"
    if not HAS_TORCH:
        return
    proc = minewatch(*args, "--out", "torch", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with rasterio.open(tmp_path / "torch" / cpu.name) as src:
        np.testing.assert_array_equal(src.read(), probabilities)
    sites = f"{scene.stem}_sites.geojson"
    cpu_sites = json.loads((tmp_path / "cpu" / sites).read_text())["features"]
    assert cpu_sites
    assert json.loads((tmp_path / "torch" / sites).read_text())["features"] == cpu_sites


def _scene(path: Path) -> Path:
    bands = ("B02", "B03", "B04", "B08", "B11", "B12")
    data = np.full((len(bands), 64, 64), 1200, dtype=np.uint16)
    with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=len(bands),
                       dtype="uint16", crs="EPSG:32721", nodata=0,
                       transform=from_origin(500000, 9200000, 10, 10)) as dst:
        dst.write(data)
        dst.descriptions = bands
    return path


@pytest.mark.parametrize(
    ("command", "says"),
    [
        (["train", "{repo}/configs/train-synthetic.yaml", "--out", "train"],
         "minewatch: error: minewatch train needs torch"),
        (["predict", "{scene}", "--device", "cuda", "--out", "predicted"],
         "Error: device 'cuda' needs PyTorch"),
        (["demo", "--detector", "amw", "--out", "amw"],
         "minewatch: error: minewatch demo needs torch"),
    ],
    ids=["train", "predict-cuda", "amw"],
)
def test_what_needs_torch_names_the_extra_in_one_line(
    command: list[str], says: str, tmp_path: Path, repo_root: Path
) -> None:
    scene = _scene(tmp_path / "scene.tif")
    args = [a.format(repo=repo_root, scene=scene) for a in command]
    proc = without_torch(*args, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(says)
    assert lines[0].endswith(EXTRA)
    assert not (tmp_path / args[args.index("--out") + 1]).exists()


def test_the_amw_converter_names_the_extra(tmp_path: Path) -> None:
    script = _NO_TORCH.replace(
        "from minewatch.cli import main\nsys.exit(main(sys.argv[1:]))",
        "import runpy\nrunpy.run_module('models.amw', run_name='__main__')",
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, "model.h5", "out.pt"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"python -m models.amw needs PyTorch, which this install lacks; {EXTRA}"
    )
    assert not (tmp_path / "out.pt").exists()
