"""Compare the two offline cloud/shadow detectors for scenes without SCL (issue 16).

Candidates: ``ukis-csmask`` (DLR, Apache-2.0; ONNX U-Nets for L1C and L2A inside the wheel), run
through `tiles.clouds.detect_clouds` exactly as a scan runs it, and ``s2cloudless`` (Sinergise;
its LightGBM model inside the package), run as its README shows (threshold 0.4, average_over 4,
dilation 2 at 10 m).

Measures:

1. agreement with the reference mask of the real chip in
   ``../shared/data/ukis_csmask_s2_cloud_chip/`` (6 bands, ~30 m): Cohen's kappa over
   {clear, cloud, shadow}, cloud recall and shadow recall;
2. what each finds on the five real L1C scenes of ``../shared/data/eolearn_s2_l1c/`` (13 bands,
   10 m, 101 x 100 px): scenes 0 and 1 are cloudy (Sentinel Hub's own cloud mask CLM of the same
   dates in ``TestEOPatch`` covers 100 % of both), 2..4 are clear (CLM 0 %);
3. seconds per 1024 x 1024 px chip at 10 m on 2 threads (the chip made by repeating the real
   chip's pixels, median of ``--repeats`` runs).

s2cloudless needs B01 B02 B04 B05 B08 B8A B09 B10 B11 B12; the reference chip has B02 B03 B04 B08
B11 B12 only, so it is scored there only as "cannot run" (and it has no shadow class at all).

Run (s2cloudless is not a project dependency; install it beside the project for this script)::

    PYTHONPATH=$PWD python benchmarks/cloud_detectors.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.crs import CRS

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"

# 13 bands of the eo-learn scenes, in this order.
L1C_13 = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
CHIP_BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")


def cohen_kappa(truth: np.ndarray, pred: np.ndarray, n: int = 3) -> float:
    """Cohen's kappa of two label arrays over classes ``0..n-1``."""
    cm = np.bincount(truth.ravel() * n + pred.ravel(), minlength=n * n).reshape(n, n)
    total = cm.sum()
    po = np.trace(cm) / total
    pe = float((cm.sum(0) * cm.sum(1)).sum()) / total**2
    return float((po - pe) / (1 - pe))


def reference_chip(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(img (row, col, 6) float32, truth (row, col) 0 clear / 1 cloud / 2 shadow)``."""
    with np.load(folder / "sentinel2.npz") as npz:
        img = np.asarray(npz["img"], dtype=np.float32)
        msk = np.asarray(npz["msk"])[..., 0]
    truth = np.zeros(msk.shape, dtype=np.uint8)
    truth[msk == 4] = 1
    truth[msk == 0] = 2
    return img, truth


def make_scene(img: np.ndarray, bands: tuple[str, ...], *, res: float, level: str):
    """A `tiles.scene.Scene` over ``img`` ``(row, col, band)`` with pixels of ``res`` metres."""
    from tiles.scene import Scene, SceneInfo

    h, w = img.shape[:2]
    transform = Affine(res, 0, 500000, 0, -res, 9000000)
    info = SceneInfo(
        scene_id="bench",
        datetime=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
        crs=CRS.from_epsg(32633),
        transform=transform,
        width=w,
        height=h,
        bands=bands,
        has_scl=False,
        processing_baseline="04.00",
        href="bench",
        processing_level=level,
    )
    data = np.moveaxis(img, -1, 0).astype(np.float32)
    valid = np.all(np.isfinite(data), axis=0)
    return Scene(info, bands, data, valid, info.crs, transform)


def scores(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    return {
        "kappa": round(cohen_kappa(truth, pred), 4),
        "cloud_recall": round(float((pred[truth == 1] == 1).mean()), 4),
        "shadow_recall": round(float((pred[truth == 2] == 2).mean()), 4),
        "cloud_precision": round(float((truth[pred == 1] == 1).mean()), 4)
        if (pred == 1).any()
        else 0.0,
    }


def run_csmask(scene, threads: int) -> np.ndarray:
    from tiles.clouds import detect_clouds

    return detect_clouds(scene, threads=threads)


def s2cloudless_mask(img13: np.ndarray, threads: int) -> tuple[np.ndarray, np.ndarray]:
    """``(probability, mask)`` of s2cloudless on ``(row, col, 13)`` L1C reflectance at 10 m."""
    from s2cloudless import S2PixelCloudDetector

    det = S2PixelCloudDetector(threshold=0.4, average_over=4, dilation_size=2, all_bands=True)
    prob = det.get_cloud_probability_maps(img13[np.newaxis], num_threads=threads)
    mask = det.get_mask_from_prob(prob)
    return prob[0], mask[0].astype(np.uint8)


def timed(fn, repeats: int) -> dict[str, float]:
    """Median wall and CPU seconds of ``fn`` (after a warm-up: model load, allocations). On a
    shared machine the CPU seconds are the steadier figure: wall time grows with the load."""
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {
        "wall_s": round(statistics.median(wall), 3),
        "cpu_s": round(statistics.median(cpu), 3),
        "load_avg_1min": round(os.getloadavg()[0], 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--timing-only", action="store_true", help="only time ukis-csmask")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    out: dict = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU(s)",
        "threads": args.threads,
        "python": sys.version.split()[0],
    }
    try:
        import ukis_csmask

        out["ukis_csmask_version"] = ukis_csmask.__version__
    except ImportError:
        print("ukis-csmask is not installed: pip install ukis-csmask", file=sys.stderr)
        return 2
    try:
        from importlib.metadata import version

        out["s2cloudless_version"] = version("s2cloudless")
        have_s2c = True
    except Exception:
        print("s2cloudless is not installed: its columns are skipped", file=sys.stderr)
        have_s2c = False

    # 1. the reference chip (~30 m, 6 bands)
    img, truth = reference_chip(args.data / "ukis_csmask_s2_cloud_chip")
    chip: dict = {"shape": list(truth.shape)}
    for level in ("L1C", "L2A"):
        scene = make_scene(img, CHIP_BANDS, res=30.0, level=level)
        chip[f"ukis-csmask {level} network"] = scores(truth, run_csmask(scene, args.threads))
    chip["s2cloudless"] = (
        "cannot run: needs B01 B05 B8A B09 B10, which the chip lacks; no shadow class"
    )
    out["reference_chip"] = chip

    # 2. the eo-learn L1C scenes (10 m, 13 bands)
    scenes = np.load(args.data / "eolearn_s2_l1c" / "REFERENCE_SCENES.npy").astype(np.float32)
    clm = np.load(args.data / "eolearn_s2_l1c" / "TestEOPatch" / "mask" / "CLM.npy")
    # REFERENCE_SCENES 0..4 are the EOPatch dates 2, 1, 4, 3, 0 (matched by identical NDVI).
    clm_of = {0: 2, 1: 1, 2: 4, 3: 3, 4: 0}
    eo: list[dict] = []
    for i in range(scenes.shape[0]):
        row: dict = {
            "scene": i,
            "sentinelhub_clm_cloud": round(float(clm[clm_of[i]].mean()), 3),
        }
        scene = make_scene(scenes[i], L1C_13, res=10.0, level="L1C")
        pred = run_csmask(scene, args.threads)
        row["ukis_cloud"] = round(float((pred == 1).mean()), 3)
        row["ukis_shadow"] = round(float((pred == 2).mean()), 3)
        if have_s2c:
            prob, mask = s2cloudless_mask(scenes[i], args.threads)
            row["s2cloudless_cloud"] = round(float(mask.mean()), 3)
            row["s2cloudless_mean_prob"] = round(float(prob.mean()), 3)
        eo.append(row)
    out["eolearn_scenes"] = eo

    # 3. seconds per 1024 x 1024 px chip at 10 m
    rep = -(-1024 // img.shape[0])
    big6 = np.tile(np.repeat(np.repeat(img, 3, 0), 3, 1), (rep, rep, 1))[:1024, :1024]
    scene = make_scene(big6, CHIP_BANDS, res=10.0, level="L1C")
    timing = {
        "ukis-csmask (6 bands, via 30 m)": timed(
            lambda: run_csmask(scene, args.threads), args.repeats
        )
    }
    # the package's own entry point on the same 30 m image: it loads the network on every call
    from ukis_csmask.mask import CSmask

    img30 = big6[: 1024 // 3 * 3, : 1024 // 3 * 3].reshape(341, 3, 341, 3, 6).mean(axis=(1, 3))
    order = ["blue", "green", "red", "nir", "swir16", "swir22"]
    timing["ukis-csmask CSmask() per call (network loaded each time)"] = timed(
        lambda: (
            CSmask(
                img30.astype(np.float32), order, intra_op_num_threads=args.threads, invalid_buffer=0
            ).csm
        ),
        args.repeats,
    )
    if args.timing_only:
        out["seconds_per_1024px_chip"] = timing
        print(json.dumps(out, indent=2))
        return 0
    if have_s2c:
        reps = -(-1024 // scenes.shape[1])
        big13 = np.tile(scenes[0], (reps, reps, 1))[:1024, :1024]
        timing["s2cloudless (10 bands, at 10 m)"] = timed(
            lambda: s2cloudless_mask(big13, args.threads), args.repeats
        )
        small = big13[::3, ::3]
        timing["s2cloudless (10 bands, at 30 m)"] = timed(
            lambda: s2cloudless_mask(small, args.threads), args.repeats
        )
    out["seconds_per_1024px_chip"] = timing
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
