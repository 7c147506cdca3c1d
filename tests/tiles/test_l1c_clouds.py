"""Level-1C scenes and cloud masks without SCL (issue 16): RADIO_ADD_OFFSET applied once, the 13
L1C bands by name at their native resolutions, one level per scan, ``cloud_mask`` ``scl`` /
``ukis-csmask`` / ``auto``, and the detector's agreement with a real reference mask."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS

from aoi.grid import GridCell
from tiles.bands import BANDS
from tiles.clouds import CLEAR, CLOUD, SHADOW, detect_clouds
from tiles.cog import write_cog
from tiles.composite import composite_period
from tiles.errors import LevelMixError, SceneFormatError
from tiles.masks import clear_mask
from tiles.periods import Period
from tiles.radiometry import add_offset, check_one_level, radio_add_offset
from tiles.scene import Scene, SceneInfo
from tiles.sources import list_scenes, read_scene

REPO = Path(__file__).resolve().parents[2]
CRS_UTM21S = CRS.from_epsg(32721)
ORIGIN = (600_000.0, 9_450_000.0)
SIZE = 120  # 10 m pixels; a whole number of 20 m and 60 m pixels
WHEN = dt.datetime(2024, 2, 10, 14, 3, 21, tzinfo=dt.timezone.utc)
Q1 = Period(dt.date(2024, 1, 1), dt.date(2024, 3, 31), "2024Q1")
#: Top-of-atmosphere reflectance of each band of the test scenes (distinct per band).
TOA = {b: round(0.05 + 0.01 * i, 4) for i, b in enumerate(BANDS)}


def _cell(size: int = SIZE) -> GridCell:
    return GridCell(
        "21MXT_L1C", CRS_UTM21S, Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]), size, size
    )


def write_l1c_folder(folder: Path, *, meta: dict, offset: float) -> Path:
    """An L1C scene as a folder of per-band COGs at native resolution (10/20/60 m), digital
    numbers ``TOA * 10000 - offset``, plus scene.json."""
    folder.mkdir(parents=True)
    for band, spec in BANDS.items():
        res = spec.resolution_m
        n = SIZE * 10 // res
        dn = np.full((n, n), round(TOA[band] * 10000 - offset), dtype=np.uint16)
        write_cog(
            folder / f"{band}.tif",
            dn,
            crs=CRS_UTM21S,
            transform=Affine(res, 0, ORIGIN[0], 0, -res, ORIGIN[1]),
            nodata=0,
            blocksize=128,
        )
    (folder / "scene.json").write_text(json.dumps({"datetime": WHEN.isoformat(), **meta}))
    return folder


def write_single(path: Path, bands: tuple[str, ...], tags: dict[str, str], dn: int = 2000) -> Path:
    data = np.full((len(bands), SIZE, SIZE), dn, dtype=np.uint16)
    return write_cog(
        path,
        data,
        crs=CRS_UTM21S,
        transform=Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]),
        nodata=0,
        band_descriptions=list(bands),
        tags={"ACQUISITION_DATETIME": WHEN.isoformat(), **tags},
        blocksize=128,
    )


# ----------------------------------------------------------------------------------- radiometry


def test_radio_add_offset_from_baseline_0400_on() -> None:
    assert radio_add_offset("04.00") == -1000.0
    assert radio_add_offset("N0510") == -1000.0
    assert radio_add_offset("03.01") == 0.0
    assert radio_add_offset("02.09") == 0.0
    assert add_offset("04.00", level="L1C") == add_offset("04.00", level="L2A") == -1000.0
    with pytest.raises(ValueError, match="'L3'"):
        add_offset("04.00", level="L3")


@pytest.mark.parametrize(
    ("meta", "offset"),
    [
        ({"processing_level": "L1C", "processing_baseline": "05.10"}, -1000.0),
        (
            {"processing_level": "L1C", "processing_baseline": "04.00", "radio_add_offset": -1000},
            -1000.0,
        ),
        ({"processing_level": "L1C", "processing_baseline": "03.01"}, 0.0),
        ({"processing_level": "L1C", "radio_add_offset": 0}, 0.0),
    ],
    ids=["0510-from-baseline", "0400-tag", "0301-none", "tag-0"],
)
def test_local_l1c_13_bands_native_resolution_offset_once(
    tmp_path: Path, meta: dict, offset: float
) -> None:
    write_l1c_folder(tmp_path / "scenes" / "s1", meta=meta, offset=offset)
    (info,) = list_scenes(tmp_path / "scenes")
    assert info.processing_level == "L1C" and not info.has_scl
    assert info.bands == tuple(BANDS) and len(info.bands) == 13
    scene = read_scene(info, _cell(), bands=tuple(BANDS))
    # every band by name, at the 10 m cell, holding its TOA reflectance: offset applied once
    for band in BANDS:
        got = scene.band(band)
        assert got.shape == (SIZE, SIZE)
        np.testing.assert_allclose(got, TOA[band], atol=1e-5, err_msg=band)


def test_local_l1c_single_file_tags(tmp_path: Path) -> None:
    path = write_single(
        tmp_path / "a.tif",
        ("B02", "B10"),
        {"PROCESSING_LEVEL": "L1C", "PROCESSING_BASELINE": "04.00", "RADIO_ADD_OFFSET": "-1000"},
    )
    (info,) = list_scenes(tmp_path)
    assert info.processing_level == "L1C" and info.bands == ("B02", "B10")
    scene = read_scene(info, _cell(), bands=("B10",))
    np.testing.assert_allclose(scene.band("B10"), 0.1, atol=1e-6)  # (2000 - 1000) / 10000
    assert path.is_file()


@pytest.mark.parametrize(
    ("bands", "tags", "message"),
    [
        (
            ("B02",),
            {"PROCESSING_LEVEL": "L1C", "BOA_ADD_OFFSET": "-1000"},
            "BOA_ADD_OFFSET is given but the scene is L1C, whose offset is RADIO_ADD_OFFSET",
        ),
        (
            ("B02", "B10"),
            {"PROCESSING_BASELINE": "04.00"},
            "B10 \\(cirrus\\) exists only in L1C products; declare the scene L1C",
        ),
        (
            ("B02", "SCL"),
            {"PROCESSING_LEVEL": "L1C", "PROCESSING_BASELINE": "04.00"},
            "an L1C scene has an SCL band",
        ),
        (("B02",), {"PROCESSING_LEVEL": "L3", "PROCESSING_BASELINE": "04.00"}, "'L3' is not"),
        (
            ("B02",),
            {"PROCESSING_LEVEL": "L1C"},
            "neither RADIO_ADD_OFFSET nor PROCESSING_BASELINE is given",
        ),
    ],
    ids=["boa-on-l1c", "b10-on-l2a", "scl-on-l1c", "unknown-level", "no-offset"],
)
def test_local_level_mistakes_refused(
    tmp_path: Path, bands: tuple[str, ...], tags: dict[str, str], message: str
) -> None:
    write_single(tmp_path / "a.tif", bands, tags)
    with pytest.raises(SceneFormatError, match=message):
        list_scenes(tmp_path)


# ---------------------------------------------------------------------------------- mixed levels


def _info(scene_id: str, level: str, *, has_scl: bool = False) -> SceneInfo:
    return SceneInfo(
        scene_id=scene_id,
        datetime=WHEN,
        crs=CRS_UTM21S,
        transform=Affine(10, 0, ORIGIN[0], 0, -10, ORIGIN[1]),
        width=SIZE,
        height=SIZE,
        bands=("B02", "B03", "B04", "B08", "B11", "B12"),
        has_scl=has_scl,
        processing_baseline="05.10",
        href=scene_id,
        processing_level=level,
    )


def test_mixed_levels_refused_naming_both() -> None:
    assert check_one_level([_info("a", "L1C"), _info("b", "L1C")]) == "L1C"
    assert check_one_level([]) is None
    with pytest.raises(LevelMixError, match=r"L1C \(e.g. a\) and L2A \(e.g. b\)"):
        check_one_level([_info("a", "L1C"), _info("b", "L2A"), _info("c", "L1C")])


def test_composite_refuses_mixed_levels() -> None:
    cell = _cell(16)
    scenes = []
    for i, level in enumerate(("L2A", "L1C")):
        info = _info(f"s{i}", level, has_scl=True)
        data = np.full((1, 16, 16), 0.1, dtype=np.float32)
        scenes.append(
            Scene(
                info,
                ("B02",),
                data,
                np.ones((16, 16), bool),
                cell.crs,
                cell.transform,
                scl=np.full((16, 16), 4, np.uint8),
            )
        )
    with pytest.raises(LevelMixError, match=r"L1C .* and L2A"):
        composite_period(scenes, cell=cell, period=Q1, bands=["B02"])


# ------------------------------------------------------------------------------------ clouds


def _chip(shared_data: Path) -> tuple[np.ndarray, np.ndarray]:
    """The real reference chip: ``(img (band, row, col), truth 0 clear / 1 cloud / 2 shadow)``."""
    with np.load(shared_data / "ukis_csmask_s2_cloud_chip" / "sentinel2.npz") as npz:
        img = np.moveaxis(np.asarray(npz["img"], dtype=np.float32), -1, 0)
        msk = np.asarray(npz["msk"])[..., 0]
    truth = np.full(msk.shape, CLEAR, dtype=np.uint8)
    truth[msk == 4] = CLOUD
    truth[msk == 0] = SHADOW
    return img, truth


def _chip_scene(img: np.ndarray, *, scl: np.ndarray | None, level: str = "L1C") -> Scene:
    bands = ("B02", "B03", "B04", "B08", "B11", "B12")
    h, w = img.shape[1:]
    transform = Affine(30, 0, ORIGIN[0], 0, -30, ORIGIN[1])  # the chip's ~30 m pixels
    info = SceneInfo(
        scene_id="ukis-chip",
        datetime=WHEN,
        crs=CRS_UTM21S,
        transform=transform,
        width=w,
        height=h,
        bands=bands,
        has_scl=scl is not None,
        processing_baseline="04.00",
        href="chip",
        processing_level=level,
    )
    return Scene(info, bands, img, np.ones((h, w), bool), CRS_UTM21S, transform, scl=scl)


def _kappa(truth: np.ndarray, pred: np.ndarray) -> float:
    cm = np.bincount(truth.ravel() * 3 + pred.ravel(), minlength=9).reshape(3, 3).astype(float)
    total = cm.sum()
    po = np.trace(cm) / total
    pe = (cm.sum(0) * cm.sum(1)).sum() / total**2
    return float((po - pe) / (1 - pe))


def test_detector_agrees_with_the_reference_mask(shared_data: Path) -> None:
    """Measured by benchmarks/cloud_detectors.py: kappa 0.81, cloud recall 0.986, shadow recall
    0.963 (the L1C network, which upstream scores this chip with)."""
    img, truth = _chip(shared_data)
    pred = detect_clouds(_chip_scene(img, scl=None))
    assert pred.shape == truth.shape and set(np.unique(pred)) <= {CLEAR, CLOUD, SHADOW}
    assert _kappa(truth, pred) >= 0.80
    assert (pred[truth == CLOUD] == CLOUD).mean() >= 0.98
    assert (pred[truth == SHADOW] == SHADOW).mean() >= 0.95


def test_cloud_mask_auto_uses_scl_when_present_else_the_detector(shared_data: Path) -> None:
    img, truth = _chip(shared_data)
    cloudy = truth != CLEAR
    # without SCL, auto runs the detector: the reference clouds and shadows are masked
    no_scl = _chip_scene(img, scl=None)
    clear = clear_mask(no_scl, cloud_mask="auto")
    assert (~clear[cloudy]).mean() >= 0.95
    assert clear[~cloudy].mean() >= 0.85
    np.testing.assert_array_equal(clear, clear_mask(no_scl, cloud_mask="ukis-csmask"))
    # with an SCL, auto trusts it: an SCL that calls a stripe cloud masks that stripe only
    scl = np.full(truth.shape, 4, dtype=np.uint8)
    scl[:, :10] = 9
    with_scl = _chip_scene(img, scl=scl)
    clear = clear_mask(with_scl, cloud_mask="auto")
    assert not clear[:, :10].any() and clear[:, 10:].all()
    # ... and `ukis-csmask` runs the detector even where an SCL exists
    assert (~clear_mask(with_scl, cloud_mask="ukis-csmask")[cloudy]).mean() >= 0.95
    # `scl` without SCL: clouds count as clear (the old behaviour, now only on request)
    assert clear_mask(no_scl, cloud_mask="scl", log_missing_scl=False).all()


def test_detector_grows_masks_by_dilation(shared_data: Path) -> None:
    img, _ = _chip(shared_data)
    scene = _chip_scene(img, scl=None)
    tight = clear_mask(scene, cloud_mask="auto", dilation_px=0)
    grown = clear_mask(scene, cloud_mask="auto", dilation_px=2)
    assert (grown <= tight).all() and grown.sum() < tight.sum()


# ---------------------------------------------------------------- the scan, from the CLI


def _scan_folder(tmp_path: Path, levels: tuple[str, ...]) -> Path:
    """A local scan over two quarters: per level a scene folder in each quarter, no SCL."""
    scenes = tmp_path / "scenes"
    for q, month in enumerate((2, 5)):
        for level in levels:
            when = dt.datetime(2024, month, 10, 14, 0, tzinfo=dt.timezone.utc)
            meta = {"processing_level": level, "processing_baseline": "05.10"}
            folder = write_l1c_folder(scenes / f"{level}_{q}", meta=meta, offset=-1000.0)
            if level == "L2A":
                (folder / "B10.tif").unlink()
            meta_file = folder / "scene.json"
            data = json.loads(meta_file.read_text())
            data["datetime"] = when.isoformat()
            meta_file.write_text(json.dumps(data))
    import geopandas as gpd
    from shapely.geometry import box, mapping

    footprint = box(
        ORIGIN[0] + 100, ORIGIN[1] - SIZE * 10 + 100, ORIGIN[0] + SIZE * 10 - 100, ORIGIN[1] - 100
    )
    geom = gpd.GeoSeries([footprint], crs=CRS_UTM21S).to_crs("EPSG:4326").iloc[0]
    (tmp_path / "aoi.geojson").write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {"id": "T1", "name": "Test"},
                        "geometry": mapping(geom),
                    }
                ],
            }
        )
    )
    cfg = tmp_path / "scan.yaml"
    cfg.write_text(
        """name: l1c-local
aoi: {path: aoi.geojson, kind: indigenous_land, buffer_m: 0}
source: {kind: local, path: scenes}
periods: {kind: quarter, start: 2024-01-01, end: 2024-06-30}
grid: {chip_size_px: 128, halo_px: 0}
detector: {kind: indices}
"""
    )
    return cfg


def _minewatch(
    args: list[str], *, block: str | None = None, cwd: Path
) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh interpreter; ``block`` names a module made unimportable there by a
    `sys.meta_path` finder, as if the package were not installed."""
    prelude = ""
    if block:
        prelude = (
            "import sys, importlib.abc\n"
            "class _Block(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            f"        if name == {block!r} or name.startswith({block!r} + '.'):\n"
            "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
            "        return None\n"
            "sys.meta_path.insert(0, _Block())\n"
        )
    code = prelude + "import sys\nfrom minewatch.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_scan_refuses_mixed_levels_naming_both(tmp_path: Path) -> None:
    cfg = _scan_folder(tmp_path, ("L1C", "L2A"))
    res = _minewatch(["scan", str(cfg), "--out", str(tmp_path / "out")], cwd=tmp_path)
    assert res.returncode == 1, res.stderr
    text = res.stdout + res.stderr
    assert "two processing levels" in text and "L1C (e.g. L1C_0)" in text
    assert "L2A (e.g. L2A_0)" in text and "Traceback" not in text
    assert not (tmp_path / "out" / "alerts.geojson").exists()


def test_auto_without_the_detector_refuses_with_the_fix(tmp_path: Path) -> None:
    cfg = _scan_folder(tmp_path, ("L1C",))
    out = tmp_path / "out"
    res = _minewatch(["scan", str(cfg), "--out", str(out)], block="ukis_csmask", cwd=tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    text = res.stdout + res.stderr
    assert "no SCL band" in text and "'ukis_csmask' is not installed" in text
    assert "pip install ukis-csmask" in text and "cloud_mask: scl" in text
    assert "Traceback" not in text
    assert not (out / "alerts.geojson").exists()
    # the same scan with the package importable runs, masking with the detector
    res = _minewatch(["scan", str(cfg), "--out", str(out), "--json"], cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (out / "alerts.geojson").is_file()


def test_cloud_mask_in_the_unit_key_default_not_in_the_scan_identity() -> None:
    from detection.runs import UnitSettings, default_config_dir, load_config

    config = load_config(default_config_dir() / "demo.yaml")
    assert config.composite.cloud_mask == "auto"
    scl = config.model_copy(
        update={"composite": config.composite.model_copy(update={"cloud_mask": "scl"})}
    )
    assert scl.identity() != config.identity()
    base = {
        "bands": ("B02",),
        "method": "median",
        "masked_scl": (3, 8, 9),
        "dilation_px": 1,
        "model_sha256": "x",
    }
    keys = {m: UnitSettings(**base, cloud_mask=m).as_dict()["cloud_mask"] for m in ("auto", "scl")}
    assert keys == {"auto": "auto", "scl": "scl"}


@pytest.mark.parametrize("level", ["l1c", "l2a"])
def test_classify_is_csmask_with_its_network_kept(shared_data: Path, level: str) -> None:
    """`tiles.clouds.classify` reuses one ONNX session per network; it must give exactly what
    the package's own `CSmask` gives (this pins the package's internals it relies on)."""
    from ukis_csmask.mask import CSmask

    from tiles.clouds import classify

    img, _ = _chip(shared_data)
    image = np.moveaxis(img, 0, -1).copy()
    order = ["blue", "green", "red", "nir", "swir16", "swir22"]
    theirs = CSmask(image.copy(), order, product_level=level, invalid_buffer=0).csm[..., 0]
    ours = classify(image, order, level=level)
    assert (ours == theirs).mean() >= 0.9999
    four = classify(image[..., :4], order[:4], level=level)  # the 4-band network
    assert four.shape == ours.shape and (four == ours).mean() > 0.8
