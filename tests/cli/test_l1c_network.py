"""The default network reading L1C (top-of-atmosphere) scenes, through the command line.

It learnt its real chips as L1C brought to surface-like reflectance by per-band offsets stored in
the checkpoint (``toa_offsets``); a scan or ``minewatch predict`` of L1C scenes must read them
the same way, or its mining scores collapse (model card: chip sensitivity 0.003 without). Here
the scan's own composites of a synthetic world (surface reflectance) are written again as L1C
(reflectance plus the offsets, tagged ``PROCESSING_LEVEL=L1C``): both commands must find what
they find on the surface-reflectance files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml

from detection.inference import read_probabilities
from models.checkpoint import load_checkpoint
from models.registry import shipped_checkpoint_path
from tests.cli.conftest import minewatch, small_config
from tests.cli.site_rule import mosaic_composites

pytestmark = pytest.mark.slow

PERIODS = {"2024Q2": "2024-05-15T13:00:00Z", "2024Q3": "2024-08-15T13:00:00Z"}


def _float_scene(src_path: Path, out: Path, *, add: dict[str, float], tags: dict[str, str]) -> Path:
    """A float32 reflectance copy of a composite mosaic, with ``add`` added to its bands."""
    with rasterio.open(src_path) as src:
        names = src.descriptions
        scale = float(src.tags()["REFLECTANCE_SCALE"])
        raw = src.read()
        profile = src.profile | {"dtype": "float32", "nodata": float("nan")}
        nodata = src.nodata
    data = raw.astype(np.float32) * np.float32(scale)
    data[:, (raw == nodata).any(axis=0)] = np.nan
    for k, name in enumerate(names):
        data[k] += np.float32(add.get(name, 0.0))
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = names
        dst.update_tags(**tags)
    return out


def _scan(folder: Path, scenes: dict[str, Path], out: Path) -> dict:
    """A network scan over ``scenes`` (period -> file) as a local source."""
    (folder / "scenes").mkdir(parents=True)
    for period, scene in scenes.items():
        (folder / "scenes" / f"{period}.tif").symlink_to(scene)
    cfg = yaml.safe_load((folder.parent / "scan.yaml").read_text())
    cfg["source"] = {"kind": "local", "path": str(folder / "scenes")}
    cfg["composite"] = {"cloud_mask": "scl"}  # cloud-free composites; no SCL in these files
    (folder / "scan.yaml").write_text(yaml.safe_dump(cfg))
    (folder / "aoi.geojson").symlink_to(folder.parent / "aoi.geojson")
    res = minewatch("scan", "scan.yaml", "--out", str(out), "--json", "-v", cwd=folder)
    assert res.returncode == 0, res.stderr[-3000:]
    return {"summary": json.loads(res.stdout), "stderr": res.stderr,
            "alerts": json.loads((out / "alerts.geojson").read_text())["features"]}


def test_l1c_scenes_are_read_as_the_network_learnt_them(tmp_path: Path) -> None:
    cfg = small_config(tmp_path, world=tmp_path / "world", detector__kind="network",
                       detector__device="cpu")  # fmt: skip
    res = minewatch("scan", str(cfg), "--out", "out", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    extra = load_checkpoint(shipped_checkpoint_path()).metadata.extra
    offsets, threshold = extra["toa_offsets"], extra["thresholds"]["mining"]
    surface, l1c, toa_as_l2a = {}, {}, {}
    for period, when in PERIODS.items():
        mosaic = mosaic_composites(tmp_path / "out" / "units", period, tmp_path / f"{period}.tif")
        surface[period] = _float_scene(mosaic, tmp_path / f"{period}_surface.tif", add={},
                                       tags={"ACQUISITION_DATETIME": when})  # fmt: skip
        l1c[period] = _float_scene(mosaic, tmp_path / f"{period}_l1c.tif", add=offsets,
                                   tags={"ACQUISITION_DATETIME": when, "PROCESSING_LEVEL": "L1C"})
        toa_as_l2a[period] = _float_scene(mosaic, tmp_path / f"{period}_toa.tif", add=offsets,
                                          tags={"ACQUISITION_DATETIME": when})  # fmt: skip

    # minewatch predict: the L1C file gives the surface file's probabilities; the same values
    # read as surface reflectance (no level tag) lose mining pixels.
    probs = {}
    for name, scene in (("surface", surface["2024Q3"]), ("l1c", l1c["2024Q3"]),
                        ("toa", toa_as_l2a["2024Q3"])):  # fmt: skip
        res = minewatch("predict", str(scene), "--device", "cpu", "--out", str(tmp_path / name),
                        "--json", cwd=tmp_path)  # fmt: skip
        assert res.returncode == 0, res.stderr[-3000:]
        probs[name] = read_probabilities(Path(json.loads(res.stdout)["probabilities"]))
    called = probs["surface"][0] >= threshold
    assert called.sum() > 100, "the world's mines should be found on surface reflectance"
    np.testing.assert_allclose(probs["l1c"], probs["surface"], atol=1e-6, equal_nan=True)
    # a quarter of the mining pixels fall under the threshold here (six bands; the visible
    # bands alone lose nearly all, see the model card)
    assert float((probs["toa"][0][called] < threshold).mean()) > 0.15

    # minewatch scan of a local source of L1C scenes: the surface scan's alerts, and it says
    # how it read them.
    base = _scan(tmp_path / "surface", surface, tmp_path / "surface" / "out")
    top = _scan(tmp_path / "l1c", l1c, tmp_path / "l1c" / "out")
    assert "reads them as surface-like reflectance (top of atmosphere minus B02=0.074" in (
        top["stderr"]
    )
    assert base["summary"]["alerts"] > 0
    assert [f["geometry"] for f in top["alerts"]] == [f["geometry"] for f in base["alerts"]]
    keys = ("site_id", "alert_class", "status", "area_ha", "confidence")
    assert [{k: f["properties"][k] for k in keys} for f in top["alerts"]] == [
        {k: f["properties"][k] for k in keys} for f in base["alerts"]
    ]
    assert {f["properties"]["processing_level"] for f in top["alerts"]} == {"L1C"}
