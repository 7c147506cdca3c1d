"""Amazon Mining Watch's classifiers end to end through the command line, on real L1C scenes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from pyproj import Transformer
from rasterio.transform import from_bounds

from models.registry import AMW_MODEL, AMW_V421_MODEL, shipped_checkpoint_path
from tests.cli.conftest import minewatch

#: eo-learn's band order of REFERENCE_SCENES (Sentinel Hub's L1C order)
EOLEARN_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10",
                 "B11", "B12")
#: bbox of the eo-learn test patch (EPSG:32633), TestEOPatch/bbox.geojson
BOUNDS = (465181.0522318204, 5079244.8912012065, 466180.53145382757, 5080254.63349641)


def write_scenes(
    shared_data: Path,
    folder: Path,
    *,
    drop: tuple[str, ...] = (),
    dates: dict[int, str] | None = None,
) -> list[Path]:
    """The five real L1C scenes (TOA reflectance) as float32 GeoTIFFs named by band (with
    ``dates``: only those scenes, tagged with their acquisition time, as a local source)."""
    scenes = np.load(shared_data / "eolearn_s2_l1c" / "REFERENCE_SCENES.npy")
    keep = [i for i, b in enumerate(EOLEARN_BANDS) if b not in drop]
    paths = []
    for i, scene in enumerate(scenes):
        if dates is not None and i not in dates:
            continue
        h, w, _ = scene.shape
        path = folder / f"slovenia-{i}.tif"
        with rasterio.open(
            path, "w", driver="GTiff", width=w, height=h, count=len(keep), dtype="float32",
            crs="EPSG:32633", transform=from_bounds(*BOUNDS, w, h), nodata=float("nan"),
        ) as dst:
            dst.write(scene.transpose(2, 0, 1)[keep])
            for k, b in enumerate(keep, start=1):
                dst.set_band_description(k, EOLEARN_BANDS[b])
            if dates is not None:
                dst.update_tags(ACQUISITION_DATETIME=dates[i])
        paths.append(path)
    return paths


@pytest.mark.parametrize("model", [AMW_V421_MODEL, AMW_MODEL], ids=lambda m: m.name)
def test_real_slovenian_forest_gives_no_mining_site(shared_data, tmp_path, model):
    """Five real 13-band L1C scenes (forest and meadows, two cloudy, no mining) through
    ``minewatch predict --checkpoint`` at the published threshold 0.5: no site."""
    scenes = write_scenes(shared_data, tmp_path)
    out = tmp_path / "out"
    proc = minewatch(
        "predict", *map(str, scenes), "--checkpoint", str(shipped_checkpoint_path(model)),
        "--out", str(out), "--device", "cpu", "--json", cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert len(report["scenes"]) == 5
    for item in report["scenes"]:
        assert item["site_count"] == 0 and item["stride_px"] == 24
        with rasterio.open(item["probabilities"]) as src:
            assert src.descriptions == ("mining",) and src.count == 1
            assert json.loads(src.tags()["MINEWATCH_THRESHOLDS"]) == {"mining": 0.5}
            assert src.tags()["MODEL_SHA256"] == model.sha256
            prob = src.read(1)
        # every pixel scored (all observed), all well below the threshold
        assert (prob != 255).all() and prob.max() < 0.5 * 254
    merged = json.loads((out / "sites.geojson").read_text())
    assert merged["type"] == "FeatureCollection" and merged["features"] == []


def test_a_scene_without_b10_is_refused_naming_the_band_and_the_fix(shared_data, tmp_path):
    scene = write_scenes(shared_data, tmp_path, drop=("B10",))[0]
    proc = minewatch(
        "predict", str(scene), "--checkpoint", str(shipped_checkpoint_path(AMW_V421_MODEL)),
        "--out", str(tmp_path / "out"), "--device", "cpu", cwd=tmp_path,
    )
    assert proc.returncode == 1
    assert "lacks ['B10']" in proc.stderr and "12-band AMW checkpoint" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "slovenia-0_probabilities.tif").exists()


def test_stride_option_changes_the_windows_and_needs_an_amw_checkpoint(shared_data, tmp_path):
    scene = write_scenes(shared_data, tmp_path)[0]
    windows = {}
    for stride in (48, 24, 12):
        proc = minewatch(
            "predict", str(scene), "--checkpoint", str(shipped_checkpoint_path(AMW_V421_MODEL)),
            "--out", str(tmp_path / f"s{stride}"), "--device", "cpu", "--stride-px", str(stride),
            "--json", cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stderr
        windows[stride] = json.loads(proc.stdout)["windows"]
    # 101 x 100 px: rows 0,48,53 / cols 0,48,52 at 48; 0,24,48,53 / 0,24,48,52 at 24; ...
    assert windows == {48: 9, 24: 16, 12: 36}
    bad = minewatch(
        "predict", str(scene), "--out", str(tmp_path / "n"), "--stride-px", "24", cwd=tmp_path
    )
    assert bad.returncode == 2 and "applies to Amazon Mining Watch checkpoints" in bad.stderr
    too_big = minewatch(
        "predict", str(scene), "--checkpoint", str(shipped_checkpoint_path(AMW_V421_MODEL)),
        "--out", str(tmp_path / "b"), "--stride-px", "60", cwd=tmp_path,
    )
    assert too_big.returncode == 1 and "stride_px 60: expected 1..48" in too_big.stderr


def _scan_config(folder: Path, **detector: object) -> Path:
    to_lonlat = Transformer.from_crs(32633, 4326, always_xy=True)
    x0, y0 = to_lonlat.transform(BOUNDS[0] + 100, BOUNDS[1] + 100)
    x1, y1 = to_lonlat.transform(BOUNDS[2] - 100, BOUNDS[3] - 100)
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    (folder / "aoi.geojson").write_text(json.dumps({
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "properties": {"id": "si-1", "name": "Slovenian forest"},
                      "geometry": {"type": "Polygon", "coordinates": [ring]}}],
    }))
    path = folder / "scan.yaml"
    path.write_text(yaml.safe_dump({
        "name": "amw-slovenia",
        "aoi": {"path": "aoi.geojson", "buffer_m": 0},
        "source": {"kind": "local", "path": "scenes"},
        "periods": {"kind": "quarter", "start": "2024-04-01", "end": "2024-09-30"},
        "grid": {"chip_size_px": 128},
        "detector": {"kind": "amw", "device": "cpu", **detector},
    }))
    return path


def test_scan_with_the_12_band_ensemble_over_a_local_source(shared_data, tmp_path):
    """kind: amw in a scan config: real 12-band L1C scenes in a local source, two quarters, no
    mining alert; the stride is part of the scan's identity (another stride is another scan),
    and the same scan again reuses every unit."""
    (tmp_path / "scenes").mkdir()
    write_scenes(shared_data, tmp_path / "scenes", drop=("B10",),
                 dates={2: "2024-05-10T10:00:00Z", 3: "2024-08-10T10:00:00Z"})
    cfg = _scan_config(tmp_path, stride_px=24)  # the default checkpoint: the 12-band ensemble
    proc = minewatch("scan", str(cfg), "--out", "out", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # Scenes that do not declare L1C are read as L2A: the scan runs and says the classifier was
    # trained on another level.
    assert "was trained on L1C scenes and this scan reads L2A" in proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["outcome"] == "success" and summary["alerts"] == 0
    assert summary["units_computed"] > 0 and summary["observed_fraction"]["2024Q3"] > 0
    alerts = json.loads((tmp_path / "out" / "alerts.geojson").read_text())
    assert alerts["minewatch"]["model"]["sha256"] == AMW_MODEL.sha256
    again = minewatch("scan", str(_scan_config(tmp_path, stride_px=48)),
                      "--out", "out", "--json", cwd=tmp_path)
    assert again.returncode == 1 and "holds results of another scan" in again.stderr
    same = minewatch("scan", str(_scan_config(tmp_path, stride_px=24)),
                     "--out", "out", "--json", cwd=tmp_path)
    assert same.returncode == 0, same.stderr[-2000:]
    assert json.loads(same.stdout)["units_computed"] == 0


def test_stride_px_belongs_to_kind_amw(tmp_path):
    cfg = _scan_config(tmp_path, stride_px=24)
    data = yaml.safe_load(cfg.read_text())
    data["detector"]["kind"] = "network"
    cfg.write_text(yaml.safe_dump(data))
    proc = minewatch("scan", str(cfg), cwd=tmp_path)
    assert proc.returncode == 1 and "applies to kind 'amw' only" in proc.stderr
    data["detector"] = {"kind": "amw", "stride_px": 64}
    cfg.write_text(yaml.safe_dump(data))
    proc = minewatch("scan", str(cfg), cwd=tmp_path)
    assert proc.returncode == 1 and "detector.stride_px" in proc.stderr


def test_network_scan_with_an_amw_second_opinion(shared_data, tmp_path):
    """kind: network with second_opinion: the shipped U-Net and the 12-band AMW ensemble both
    run over real L1C scenes of a local source; the alert file names both models."""
    (tmp_path / "scenes").mkdir()
    write_scenes(shared_data, tmp_path / "scenes", drop=("B10",),
                 dates={2: "2024-05-10T10:00:00Z", 3: "2024-08-10T10:00:00Z"})
    cfg = _scan_config(tmp_path)
    data = yaml.safe_load(cfg.read_text())
    data["detector"] = {"kind": "network", "device": "cpu", "backend": "torch",
                        "second_opinion": {"stride_px": 48, "threshold": 0.6}}
    cfg.write_text(yaml.safe_dump(data))
    proc = minewatch("scan", str(cfg), "--out", "out", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    assert summary["outcome"] == "success" and summary["units_computed"] > 0
    model = json.loads((tmp_path / "out" / "alerts.geojson").read_text())["minewatch"]["model"]
    assert model["name"] == f"minewatch-unet-slim-real+{AMW_MODEL.name}"
    # no mining alert: the AMW ensemble agrees with no mining pixel over Slovenian forest
    assert not any(k.startswith("mining") for k in summary["alerts_by_class_status"])
    data["detector"] = {"kind": "amw", "second_opinion": {}}
    cfg.write_text(yaml.safe_dump(data))
    proc = minewatch("scan", str(cfg), "--out", "other", cwd=tmp_path)
    assert proc.returncode == 1 and "second_opinion applies to kind 'network' only" in proc.stderr


def test_integer_l1c_digital_numbers_give_the_float_scene_s_probabilities(shared_data, tmp_path):
    """The same real scene as uint16 DN of processing baseline 04.00 (offset -1000 in the
    file's values) and as float reflectance: the same probability COG."""
    scene = write_scenes(shared_data, tmp_path)[2]
    with rasterio.open(scene) as src:
        profile, data, names = src.profile, src.read(), src.descriptions
    dn_path = tmp_path / "slovenia-2-dn.tif"
    profile.update(dtype="uint16", nodata=0)
    with rasterio.open(dn_path, "w", **profile) as dst:
        dst.write(np.round(data * 10000 + 1000).astype("uint16"))
        for k, name in enumerate(names, start=1):
            dst.set_band_description(k, name)
        dst.update_tags(PROCESSING_BASELINE="04.00")
    probs = []
    for path in (scene, dn_path):
        proc = minewatch(
            "predict", str(path), "--checkpoint", str(shipped_checkpoint_path(AMW_MODEL)),
            "--out", str(tmp_path / path.stem), "--device", "cpu", "--json", cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stderr
        with rasterio.open(json.loads(proc.stdout)["probabilities"]) as src:
            probs.append(src.read(1).astype(int))
    assert probs[0].max() > 0  # the ensemble's scores here reach ~0.015 (4/254)
    assert np.abs(probs[0] - probs[1]).max() <= 1
