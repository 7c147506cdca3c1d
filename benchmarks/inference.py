"""Whole-scene inference, three ways, on the same model, weights and scene, in one run.

    .venv/bin/python benchmarks/inference.py --size 4096            # builds the scene, runs all
    .venv/bin/python benchmarks/inference.py --scene S2_TILE.tif --device cuda
    .venv/bin/python benchmarks/inference.py --size 10980 --methods minewatch

(a) ``minewatch``: :func:`detection.inference.predict_raster` (windows read ahead on threads,
    uint16 to the device, radiometry + normalisation there, the network through
    :mod:`models.runtime`: ONNX Runtime on the CPU (``--backend``), folded + channels-last +
    bf16 PyTorch on CUDA; sine-squared blending, streamed COG output). The ONNX export is made
    once per checkpoint and cached; a warm-up step makes it before the timed runs and its time
    is printed.
(b) ``naive``: what a researcher writes first: for each window (same size, no overlap) read it,
    convert and normalise in numpy, run the plain network (fp32, NCHW), write it; one at a time.
    ``naive@512`` runs it with 512 px windows (any ``METHOD@PX`` sets that method's window), so
    the naive loop can also be measured at the window that suits it best.
(c) ``torchgeo``: TorchGeo's ``RasterDataset`` + ``GridGeoSampler`` (same window and stride as
    (a)) + ``DataLoader``, the plain network (bf16 autocast on CUDA), stitched by averaging the
    overlaps into a whole-scene array written at the end. Needs ``pip install -e .[bench]``.

Each method runs in its own subprocess, so peak host memory (``ru_maxrss``: the whole process,
torch included) is its own. Prints one table (markdown) and, with ``--json``, the raw numbers.
The scene (``--size``) is a synthetic-world L2A acquisition (``tiles.synthetic``, its ten bands +
SCL, uint16 DN, BOA_ADD_OFFSET -1000, COG) mirrored out to the requested size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import numpy as np

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------ the scene


def make_scene(
    path: Path, size: int, *, seed: int = 3, bands: tuple[str, ...] | None = None
) -> Path:
    """A ``size`` x ``size`` L2A-like COG: a synthetic-world acquisition mirrored out.

    ``bands``: keep only these bands (e.g. the network's six, as a GPU benchmark reads them);
    default its ten bands + SCL.
    """
    import rasterio
    import rasterio.shutil
    from affine import Affine

    from tiles.synthetic import WorldSpec, generate_world

    world_dir = path.parent / f"world-{seed}"
    world = generate_world(
        world_dir,
        WorldSpec(size_px=1024, seed=seed, acquisitions_per_period=1, cloud_cover=0.05),
    )
    first = world.scenes[0].path
    with rasterio.open(first) as src:
        base = src.read()
        profile = src.profile
        tags = src.tags()
        descriptions = src.descriptions
        t = src.transform
    if bands is not None:
        keep = [list(descriptions).index(b) for b in bands]
        base, descriptions = base[keep], tuple(descriptions[i] for i in keep)
        profile["count"] = len(keep)
    n = base.shape[1]
    tile = np.concatenate([base, base[:, ::-1]], axis=1)
    tile = np.concatenate([tile, tile[:, :, ::-1]], axis=2)  # 2n x 2n, seamless mirror
    profile.update(
        driver="GTiff", width=size, height=size, tiled=True, blockxsize=512, blockysize=512,
        compress=None, BIGTIFF="IF_SAFER",
        transform=Affine(t.a, t.b, t.c, t.d, t.e, t.f),
    )
    for key in ("interleave",):
        profile.pop(key, None)
    tmp = path.with_suffix(".tmp.tif")
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.update_tags(**tags)
        for i, d in enumerate(descriptions, start=1):
            dst.set_band_description(i, d or "")
        for r0 in range(0, size, 1024):
            h = min(1024, size - r0)
            rows = np.arange(r0, r0 + h) % (2 * n)
            strip = tile[:, rows][:, :, np.arange(size) % (2 * n)]
            dst.write(strip, window=rasterio.windows.Window(0, r0, size, h))
    with rasterio.open(tmp) as src:
        rasterio.shutil.copy(src, path, driver="COG", COMPRESS="DEFLATE", BLOCKSIZE="512",
                             OVERVIEW_RESAMPLING="NEAREST", BIGTIFF="IF_SAFER",
                             NUM_THREADS="ALL_CPUS")
    tmp.unlink()
    return path


# ------------------------------------------------------------------------------ the methods


def _peak_rss_mib() -> float:
    """Peak resident memory of this process (VmHWM: unlike ru_maxrss not inherited over exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _gpu_peak_mib(device: Any) -> float | None:
    import torch

    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_minewatch(scene: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    from detection.inference import InferenceOptions, predict_raster
    from models.network import resolve_device

    device = resolve_device(args.device)
    opts = InferenceOptions(
        window_px=args.window_px, overlap_px=args.overlap_px, batch_size=args.batch_size,
        device=args.device, compile=args.compile, backend=args.backend,
    )
    t0 = time.perf_counter()
    result = predict_raster(scene, args.checkpoint, out_path=out / "minewatch.tif", options=opts)
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds, "model_seconds": result.model_seconds,
        "gpu_peak_mib": _gpu_peak_mib(device), "batch_size": result.batch_size,
        "engine": f"{result.backend}",
    }


def run_warmup(scene: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Build minewatch's engine once: the ONNX export is cached for the timed run."""
    from models.network import load_network_detector, resolve_device
    from models.runtime import build_engine

    device = resolve_device(args.device)
    checkpoint = load_network_detector(args.checkpoint, device="cpu").checkpoint
    t0 = time.perf_counter()
    engine = build_engine(checkpoint, device, backend=args.backend,
                          compile_model=args.compile)
    return {"seconds": time.perf_counter() - t0, "engine": engine.backend}


def _plain_network(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    from models.checkpoint import build_network
    from models.network import load_network_detector, resolve_device

    device = resolve_device(args.device)
    ckpt = load_network_detector(args.checkpoint, device="cpu").checkpoint
    model = build_network(ckpt).to(device).eval()
    return ckpt, model, device


def run_naive(scene: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    import rasterio
    import torch

    from detection.inference import scene_radiometry
    from models.checkpoint import network_input

    ckpt, model, device = _plain_network(args)
    stride = int(model.stride)
    win = args.window_px
    cls = [ckpt.metadata.classes.index(c) for c in ("mining", "deforestation")]
    model_s = 0.0
    t0 = time.perf_counter()
    with rasterio.open(scene) as src:
        rad = scene_radiometry(src, ckpt.metadata.bands)
        profile = {"driver": "GTiff", "width": src.width, "height": src.height, "count": 2,
                   "dtype": "float32", "crs": src.crs, "transform": src.transform,
                   "tiled": True, "compress": "DEFLATE", "BIGTIFF": "IF_SAFER"}
        with rasterio.open(out / "naive.tif", "w", **profile) as dst:
            for r0 in range(0, src.height, win):
                for c0 in range(0, src.width, win):
                    w = rasterio.windows.Window(c0, r0, min(win, src.width - c0),
                                                min(win, src.height - r0))
                    dn = src.read(list(rad.indexes), window=w)
                    refl = np.maximum(
                        (dn.astype(np.float32) + np.float32(rad.offset[0]))
                        * np.float32(rad.scale[0]), 0)
                    refl[:, (dn == rad.nodata).any(axis=0)] = np.nan
                    x, _valid = network_input(ckpt.metadata, refl, ckpt.metadata.bands)
                    h, wd = x.shape[1:]
                    ph, pw = -(-h // stride) * stride, -(-wd // stride) * stride
                    x = np.pad(x, ((0, 0), (0, ph - h), (0, pw - wd)))
                    t1 = time.perf_counter()
                    with torch.inference_mode(), torch.autocast(
                        "cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"
                    ):
                        logits = model(torch.from_numpy(x)[None].to(device))
                        p = torch.softmax(logits.float(), 1)[0, cls, :h, :wd].cpu().numpy()
                    model_s += time.perf_counter() - t1
                    p[:, np.isnan(refl).any(axis=0)] = np.nan
                    dst.write(p, window=w)
    _sync(device)
    return {"seconds": time.perf_counter() - t0, "model_seconds": model_s,
            "gpu_peak_mib": _gpu_peak_mib(device), "batch_size": 1, "engine": "torch (plain)"}


def run_torchgeo(scene: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    import rasterio
    import torch
    from torch.utils.data import DataLoader
    from torchgeo.datasets import RasterDataset, stack_samples
    from torchgeo.samplers import GridGeoSampler

    from detection.inference import scene_radiometry

    ckpt, model, device = _plain_network(args)
    with rasterio.open(scene) as src:
        rad = scene_radiometry(src, ckpt.metadata.bands)
        names = list(src.descriptions)
        H, W, transform, crs = src.height, src.width, src.transform, src.crs

    class Scene(RasterDataset):  # type: ignore[misc]
        filename_glob = scene.name
        is_image = True
        separate_files = False
        all_bands = tuple(names)

    ds = Scene(paths=[str(scene)], bands=list(ckpt.metadata.bands))
    step = args.window_px - args.overlap_px
    sampler = GridGeoSampler(ds, size=args.window_px, stride=step)
    loader = DataLoader(ds, sampler=sampler, batch_size=args.batch_size or 1,
                        num_workers=args.workers, collate_fn=stack_samples)
    mean = torch.tensor(ckpt.metadata.normalization.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(ckpt.metadata.normalization.std, device=device).view(1, -1, 1, 1)
    cls = [ckpt.metadata.classes.index(c) for c in ("mining", "deforestation")]
    acc = np.zeros((2, H, W), dtype=np.float32)
    count = np.zeros((H, W), dtype=np.float32)
    res = transform.a
    model_s = 0.0
    t0 = time.perf_counter()
    for batch in loader:
        x = batch["image"].to(device)
        valid = (x != float(rad.nodata or 0)).all(1, keepdim=True)
        x = ((x + rad.offset[0]) * rad.scale[0]).clamp(min=0)
        x = (x - mean) / std * valid
        # every band is there: the availability channels of the optional bands are 1
        flags = torch.ones((x.shape[0], len(ckpt.metadata.optional_bands), *x.shape[2:]),
                           device=device)
        x = torch.cat([x, flags], dim=1)
        t1 = time.perf_counter()
        with torch.inference_mode(), torch.autocast(
            "cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"
        ):
            p = torch.softmax(model(x).float(), 1)[:, cls]
        p = p.masked_fill(~valid, float("nan")).cpu().numpy()
        model_s += time.perf_counter() - t1
        p = np.nan_to_num(p)
        h, w = p.shape[2:]
        for k, (xs, ys, _t) in enumerate(batch["bounds"]):
            # chips may reach past the scene (GridGeoSampler covers it from the bottom left)
            c0 = round((xs.start - transform.c) / res)
            r0 = round((transform.f - ys.stop) / res)
            a0, b0 = max(r0, 0), max(c0, 0)
            a1, b1 = min(H, r0 + h), min(W, c0 + w)
            if a1 <= a0 or b1 <= b0:
                continue
            acc[:, a0:a1, b0:b1] += p[k, :, a0 - r0 : a1 - r0, b0 - c0 : b1 - c0]
            count[a0:a1, b0:b1] += 1
    acc /= np.maximum(count, 1)
    profile = {"driver": "GTiff", "width": W, "height": H, "count": 2, "dtype": "float32",
               "crs": crs, "transform": transform, "tiled": True, "compress": "DEFLATE",
               "BIGTIFF": "IF_SAFER"}
    with rasterio.open(out / "torchgeo.tif", "w", **profile) as dst:
        dst.write(acc)
    _sync(device)
    return {"seconds": time.perf_counter() - t0, "model_seconds": model_s,
            "gpu_peak_mib": _gpu_peak_mib(device), "batch_size": args.batch_size or 1,
            "engine": "torch (plain)"}


METHODS = {
    "minewatch": run_minewatch, "naive": run_naive, "torchgeo": run_torchgeo,
    "warmup": run_warmup,
}
LABELS = {
    "minewatch": "(a) minewatch predict_raster",
    "naive": "(b) naive loop (read, predict, write)",
    "torchgeo": "(c) TorchGeo GridGeoSampler + DataLoader",
}


# ------------------------------------------------------------------------------ driver


def _child(args: argparse.Namespace) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rss0 = _peak_rss_mib()
    stats = METHODS[args.run](Path(args.scene), out, args)
    stats["peak_rss_mib"] = _peak_rss_mib()
    stats["rss_before_mib"] = rss0
    print("RESULT " + json.dumps(stats), flush=True)


def _machine(device: str) -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    text = f"{cpu}, {cores} core(s), torch {torch.__version__}"
    if device != "cpu" and torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name(0)}"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scene", type=Path, help="a scene GeoTIFF (default: build one)")
    parser.add_argument("--size", type=int, default=4096, help="side of the built scene")
    parser.add_argument("--six-bands", action="store_true",
                        help="only the six bands of the network (default: ten bands + SCL)")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--checkpoint", default=None, help="default: the shipped model")
    parser.add_argument("--methods", default="minewatch,naive,torchgeo")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--window-px", type=int, default=768)
    parser.add_argument("--overlap-px", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--workers", type=int, default=0, help="TorchGeo DataLoader workers")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--backend", default="auto", help="minewatch's CPU engine")
    parser.add_argument("--gdal-cache-mb", type=int, default=128,
                        help="GDAL_CACHEMAX of every method (GDAL's default is 5%% of RAM)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--run", choices=sorted(METHODS), help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        _child(args)
        return
    work = args.workdir or Path(tempfile.mkdtemp(prefix="minewatch-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    scene = args.scene
    if scene is None:
        from models.registry import DEFAULT_BANDS

        bands = DEFAULT_BANDS if args.six_bands else None
        scene = work / f"scene_{args.size}{'_6b' if bands else ''}.tif"
        if not scene.exists():
            print(f"building a {args.size} x {args.size} scene in {scene} ...", file=sys.stderr)
            make_scene(scene, args.size, bands=bands)
    import rasterio

    with rasterio.open(scene) as src:
        mpx = src.width * src.height / 1e6
        shape = f"{src.width} x {src.height}"
    def child(method: str, window: int) -> dict[str, Any]:
        cmd = [sys.executable, __file__, "--run", method, "--scene", str(scene),
               "--out", str(work / "out"), "--device", args.device, "--backend", args.backend,
               "--window-px", str(window), "--overlap-px", str(args.overlap_px),
               "--workers", str(args.workers)]
        for flag, value in (("--batch-size", args.batch_size), ("--threads", args.threads),
                            ("--checkpoint", args.checkpoint)):
            if value is not None:
                cmd += [flag, str(value)]
        if args.compile:
            cmd.append("--compile")
        env = {**os.environ, "GDAL_CACHEMAX": str(args.gdal_cache_mb)}
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=False, env=env)
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not line:
            print(proc.stderr[-3000:], file=sys.stderr)
            return {"error": f"exit {proc.returncode}"}
        return cast(dict[str, Any], json.loads(line[-1][len("RESULT "):]))

    warm = child("warmup", args.window_px)
    rows = []
    for spec in args.methods.split(","):
        method, _, px = spec.partition("@")
        window = int(px) if px else args.window_px
        print(f"running {spec} ...", file=sys.stderr, flush=True)
        stats = child(method, window)
        stats.update(method=method, window=window)
        if "error" not in stats:
            stats.update(megapixels=mpx, mpx_per_s=mpx / stats["seconds"])
        rows.append(stats)
    print(f"\nscene {shape} px ({mpx:.1f} Mpx), overlap {args.overlap_px} px (naive: none), "
          f"device {args.device}, GDAL_CACHEMAX {args.gdal_cache_mb} MB; "
          f"{_machine(args.device)}; minewatch engine built in "
          f"{warm.get('seconds', float('nan')):.1f} s before the timed runs "
          f"({warm.get('engine', warm.get('error'))}, cached from then on)\n")
    print("| method | window px | engine | Mpx/s | wall s | model s | peak host MiB "
          "| peak GPU MiB | batch |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        label = f"{LABELS[r['method']]} | {r['window']}"
        if "error" in r:
            print(f"| {label} | | failed ({r['error']}) | | | | | |")
            continue
        gpu = "-" if r["gpu_peak_mib"] is None else f"{r['gpu_peak_mib']:.0f}"
        print(f"| {label} | {r['engine']} | {r['mpx_per_s']:.3f} | {r['seconds']:.1f} | "
              f"{r['model_seconds']:.1f} | {r['peak_rss_mib']:.0f} | {gpu} | {r['batch_size']} |")
    if args.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
