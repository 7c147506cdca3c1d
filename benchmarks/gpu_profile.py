"""Where the time goes for one whole tile: decoding, the network, the probability COG, polygons.

    python benchmarks/gpu_profile.py --size 10980 --workdir /tmp/prof --steps decode,model,predict

Complements ``benchmarks/inference.py`` (which compares whole methods) by timing each stage of
minewatch's path alone, so a figure says which stage is the wall:

- ``decode``: the scene's bands read and decoded with N threads, three ways: block-aligned
  chunks (every 512 px tile decoded once), GDAL's own multi-threaded decoding of whole strips
  (``NUM_THREADS`` open option), the 768/64 windows of ``predict_raster`` read each on its own
  (tiles on window edges decoded more than once), and ``predict_raster``'s reader (the same
  windows cut from chunks read once).
- ``model``: the engine alone on random inputs already on the device, per window size and batch,
  timed with CUDA events after a warm-up; scaled to the windows a whole tile needs. ``--compile``
  adds ``torch.compile``.
- ``predict``: :func:`detection.inference.predict_raster` end to end (COG in, COG out).
- ``sites``: :func:`detection.sites.sites_from_probabilities` on that output.
- ``parity``: the CUDA path (bf16) against the CPU path (fp32) on a 2048 px crop.
- ``command``: ``minewatch predict`` on ``--tiles`` tiles (links to the scene) in one process,
  COG in to merged polygons out: each tile's seconds from its COG to its sites (the first
  builds the engine), and the whole command's.

``--arch unet-resnet18`` times a randomly initialised U-Net-ResNet-18 (the speed of a network
does not depend on its weights); the default is the shipped model. Prints one table; ``--json``
writes the raw numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.inference import make_scene  # noqa: E402


def random_checkpoint(path: Path, arch: str) -> Path:
    """A randomly initialised checkpoint of ``arch`` with the shipped model's bands and norms."""
    import torch

    from models.checkpoint import load_checkpoint, save_checkpoint
    from models.registry import architecture_options, build_model, shipped_checkpoint_path

    shipped = load_checkpoint(shipped_checkpoint_path())
    torch.manual_seed(0)
    model = build_model(arch, in_channels=shipped.metadata.input_channels)
    meta = dataclasses.replace(
        shipped.metadata, name=f"random-{arch}", architecture=arch,
        options=architecture_options(arch), extra={}, metrics={},
    )
    save_checkpoint(path, model, meta)
    return path


def _windows(size: int, window: int, overlap: int) -> int:
    step = window - overlap
    per_axis = 1 + max(0, math.ceil((size - window) / step))
    return per_axis * per_axis


def step_decode(scene: Path, threads: list[int]) -> list[dict[str, Any]]:
    import rasterio
    from rasterio.windows import Window

    from detection.inference import BlockReader, read_into, scene_radiometry
    from models.blend import axis_starts
    from models.registry import DEFAULT_BANDS

    rows: list[dict[str, Any]] = []
    with rasterio.open(scene) as src:
        height, width = src.height, src.width
        bx, by = src.block_shapes[0]
        rad = scene_radiometry(src, DEFAULT_BANDS)
    idx = list(rad.indexes)
    nbytes = len(idx) * height * width * 2

    def chunks(n: int) -> None:
        tasks = [(r, c) for r in range(0, height, by) for c in range(0, width, bx * 4)]
        local = __import__("threading").local()

        def read(rc: tuple[int, int]) -> int:
            if not hasattr(local, "src"):
                local.src = rasterio.open(scene)
            r, c = rc
            w = Window(c, r, min(bx * 4, width - c), min(by, height - r))
            return int(local.src.read(idx, window=w).nbytes)

        with ThreadPoolExecutor(n) as pool:
            list(pool.map(read, tasks))

    def gdal_threads(n: int) -> None:
        with rasterio.open(scene, NUM_THREADS=str(n)) as src:
            for r in range(0, height, by):
                src.read(idx, window=Window(0, r, width, min(by, height - r)))

    starts = axis_starts(height, 768, 704)
    specs = [(r, c, 768, 768) for r in starts for c in starts]

    def windows(n: int) -> None:  # each window read on its own (blocks on edges decoded again)
        def read(spec: tuple[int, int, int, int]) -> None:
            out = np.zeros((len(idx), spec[2], spec[3]), dtype=np.uint16)
            read_into(scene, rad, out, spec[0], spec[1])

        with ThreadPoolExecutor(n) as pool:
            list(pool.map(read, specs))

    def blocks(n: int) -> None:  # minewatch's reader: every block decoded once
        import torch

        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        reader = BlockReader(scene, rad, n, specs, device=device, ahead=64)
        try:
            for _ in reader.windows():
                pass
            if device.type == "cuda":
                torch.cuda.synchronize()
        finally:
            reader.close()

    ways = (("chunks", chunks), ("gdal-threads", gdal_threads), ("windows-768", windows),
            ("blocks-768", blocks))
    for name, fn in ways:
        for n in threads:
            t0 = time.perf_counter()
            fn(n)
            s = time.perf_counter() - t0
            rows.append({"step": "decode", "how": name, "threads": n, "seconds": s,
                         "MB/s": nbytes / s / 1e6})
            print(f"decode {name:12s} threads {n:2d}: {s:6.2f} s  {nbytes / s / 1e6:7.0f} MB/s",
                  flush=True)
    return rows


def step_model(checkpoint: Path, size: int, windows: list[int], batches: list[int],
               compile_model: bool) -> list[dict[str, Any]]:
    import torch

    from models.checkpoint import load_checkpoint
    from models.runtime import TorchEngine

    ckpt = load_checkpoint(checkpoint)
    device = torch.device("cuda")
    rows: list[dict[str, Any]] = []
    variants = [("bf16", False)] + ([("bf16+compile", True)] if compile_model else [])
    for label, comp in variants:
        t0 = time.perf_counter()
        engine = TorchEngine(ckpt, device, compile_model=comp)
        build_s = time.perf_counter() - t0
        for win in windows:
            for b in batches:
                x = torch.randn(b, ckpt.metadata.input_channels, win, win, device=device)
                try:
                    t0 = time.perf_counter()
                    engine(x)
                    torch.cuda.synchronize()
                    first_s = time.perf_counter() - t0
                    for _ in range(2):
                        engine(x)
                    start, end = torch.cuda.Event(True), torch.cuda.Event(True)
                    reps = 5
                    start.record()
                    for _ in range(reps):
                        engine(x)
                    end.record()
                    torch.cuda.synchronize()
                except torch.OutOfMemoryError:
                    print(f"model {label} {win} x{b}: out of memory", flush=True)
                    torch.cuda.empty_cache()
                    continue
                per_window = start.elapsed_time(end) / 1000 / reps / b
                n = _windows(size, win, 64)
                mpx = b * win * win / 1e6 / (per_window * b)
                row = {"step": "model", "arch": ckpt.metadata.architecture, "how": label,
                       "window": win, "batch": b, "per_window_ms": per_window * 1e3,
                       "tile_windows": n, "tile_model_s": per_window * n, "Mpx/s": mpx,
                       "first_call_s": first_s, "build_s": build_s,
                       "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20}
                rows.append(row)
                print(f"model {ckpt.metadata.architecture} {label} window {win} batch {b}: "
                      f"{per_window * 1e3:.2f} ms/window, {mpx:.0f} Mpx/s, tile ({n} windows) "
                      f"{per_window * n:.3f} s; first call {first_s:.1f} s", flush=True)
                del x
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
    return rows


def step_predict(
    scene: Path, checkpoint: Path, out: Path, variants: list[str], device: str
) -> list[dict[str, Any]]:
    import torch

    from detection.inference import InferenceOptions, predict_raster

    rows: list[dict[str, Any]] = []
    cuda = device != "cpu"
    for spec in variants:  # "window:read_threads" (0: the default)
        win, threads = (int(v) for v in spec.split(":"))
        opts = InferenceOptions(window_px=win, overlap_px=64, device=device,
                                read_threads=threads or None)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        res = predict_raster(scene, checkpoint, out_path=out, options=opts)
        s = time.perf_counter() - t0
        row = {"step": "predict", "window": win, "read_threads": threads, "seconds": s,
               "model_s": res.model_seconds, "cog_s": res.cog_seconds, "batch": res.batch_size,
               "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
               "Mpx/s": res.width * res.height / 1e6 / s}
        rows.append(row)
        print(f"predict window {win} read_threads {threads}: {s:.2f} s (model "
              f"{res.model_seconds:.2f} s, COG translation {res.cog_seconds:.2f} s), batch "
              f"{res.batch_size}", flush=True)
    return rows


def step_parity(scene: Path, checkpoint: Path, workdir: Path, side: int) -> list[dict[str, Any]]:
    """The GPU path (bf16) against the CPU path (fp32) on a ``side`` px crop of the scene."""
    import rasterio
    import rasterio.shutil
    from rasterio.windows import Window

    from detection.inference import InferenceOptions, predict_raster, read_probabilities

    crop = workdir / f"crop_{side}.tif"
    with rasterio.open(scene) as src:
        profile = src.profile | {"width": side, "height": side, "driver": "GTiff",
                                 "transform": src.window_transform(Window(0, 0, side, side))}
        with rasterio.open(crop, "w", **profile) as dst:
            dst.write(src.read(window=Window(0, 0, side, side)))
            dst.update_tags(**src.tags())
            dst.descriptions = src.descriptions
    probs = {}
    for device in ("cpu", "cuda"):
        res = predict_raster(crop, checkpoint, out_path=workdir / f"parity_{device}.tif",
                             options=InferenceOptions(device=device))
        probs[device] = read_probabilities(res.path)
    diff = np.abs(probs["cpu"] - probs["cuda"])
    row = {"step": "parity", "side": side, "max_abs": float(np.nanmax(diff)),
           "mean_abs": float(np.nanmean(diff)), "p999": float(np.nanpercentile(diff, 99.9))}
    print(f"parity cuda bf16 vs cpu fp32 on {side} px: max |dp| {row['max_abs']:.4f}, "
          f"99.9th pct {row['p999']:.4f}, mean {row['mean_abs']:.5f}", flush=True)
    return [row]


def step_sites(path: Path) -> list[dict[str, Any]]:
    from detection.sites import sites_from_probabilities

    t0 = time.perf_counter()
    sites = sites_from_probabilities(str(path))
    s = time.perf_counter() - t0
    print(f"sites: {len(sites)} in {s:.2f} s", flush=True)
    return [{"step": "sites", "seconds": s, "sites": len(sites)}]


def step_command(scene: Path, checkpoint: Path, workdir: Path, tiles: int, device: str,
                 compile_model: bool) -> list[dict[str, Any]]:
    import click.testing

    from minewatch.cli_predict import predict

    folder = workdir / "command"
    folder.mkdir(exist_ok=True)
    links = []
    for k in range(tiles):
        link = folder / f"tile_{k}.tif"
        link.unlink(missing_ok=True)
        link.symlink_to(scene.resolve())
        links.append(str(link))
    args = [*links, "--checkpoint", str(checkpoint), "--out", str(folder / "out"), "--device",
            device, "--overwrite", "--json", *(["--compile"] if compile_model else [])]
    group = click.Group()
    group.add_command(predict)
    runner = click.testing.CliRunner()
    t0 = time.perf_counter()
    result = runner.invoke(group, ["predict", *args], catch_exceptions=False)
    total = time.perf_counter() - t0
    if result.exit_code:
        raise SystemExit(result.output)
    report = json.loads(result.stdout)
    scenes = report["scenes"] if tiles > 1 else [report]
    rows = [{"step": "command", "tile": k, "seconds": s["seconds"], "model_s": s["model_seconds"],
             "sites": s["site_count"]} for k, s in enumerate(scenes)]
    rows.append({"step": "command", "tile": "all", "seconds": total,
                 "sites": len(json.loads((folder / "out" / "sites.geojson").read_text())
                              ["features"]) if tiles > 1 else scenes[0]["site_count"]})
    for row in rows:
        print(f"minewatch predict, tile {row['tile']}: {row['seconds']:.2f} s, "
              f"{row['sites']} sites", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scene", type=Path)
    parser.add_argument("--size", type=int, default=10980)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/minewatch-profile"))
    parser.add_argument("--arch", default=None, help="random weights of this architecture")
    parser.add_argument("--steps", default="decode,model,predict,sites")
    parser.add_argument("--threads", default="1,4,8,16")
    parser.add_argument("--windows", default="768,1024,2048")
    parser.add_argument("--batches", default="1,4,16")
    parser.add_argument("--predict", default="768:0,1024:0")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--device", default="cuda", help="of the predict step (cpu: a dry run)")
    parser.add_argument("--tiles", type=int, default=3, help="of the command step")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    scene = args.scene or args.workdir / f"scene_{args.size}_6b.tif"
    if not scene.exists():
        from models.registry import DEFAULT_BANDS

        t0 = time.perf_counter()
        make_scene(scene, args.size, bands=DEFAULT_BANDS)
        print(f"scene built in {time.perf_counter() - t0:.1f} s: {scene} "
              f"({scene.stat().st_size / 1e6:.0f} MB)", flush=True)
    from models.registry import shipped_checkpoint_path

    checkpoint = (random_checkpoint(args.workdir / f"{args.arch}.pt", args.arch)
                  if args.arch else shipped_checkpoint_path())
    steps = args.steps.split(",")
    rows: list[dict[str, Any]] = []
    out = args.workdir / f"prob-{args.arch or 'shipped'}.tif"
    if "decode" in steps:
        rows += step_decode(scene, [int(t) for t in args.threads.split(",")])
    if "model" in steps:
        rows += step_model(checkpoint, args.size, [int(w) for w in args.windows.split(",")],
                           [int(b) for b in args.batches.split(",")], args.compile)
    if "predict" in steps:
        rows += step_predict(scene, checkpoint, out, args.predict.split(","), args.device)
    if "parity" in steps:
        rows += step_parity(scene, checkpoint, args.workdir, 2048)
    if "sites" in steps and out.exists():
        rows += step_sites(out)
    if "command" in steps:
        rows += step_command(scene, checkpoint, args.workdir, args.tiles, args.device,
                             args.compile)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
