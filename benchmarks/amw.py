"""Seconds per 1024 x 1024 px of the Amazon Mining Watch detector (``models.amw``).

    .venv/bin/python benchmarks/amw.py                       # both shipped AMW checkpoints
    .venv/bin/python benchmarks/amw.py --strides 48 24 12 --repeat 3 --device cuda

The composite is real: the five 101 x 100 px L1C scenes of ``eolearn_s2_l1c/REFERENCE_SCENES.npy``
(``$MINEWATCH_SHARED_DATA``) mirrored out to 1024 x 1024 px, 13 bands. Timed:
:meth:`models.amw.AmwDetector.predict` on the whole composite (window cutting, the network on
every window, the max-over-windows raster), best of ``--repeat`` after one warm-up. Prints a
markdown table (and the machine) and, with ``--json``, the raw numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

EOLEARN_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10",
                 "B11", "B12")


def composite(size: int) -> np.ndarray:
    shared = Path(os.environ.get("MINEWATCH_SHARED_DATA", "/work/shared/data"))
    scenes = np.load(shared / "eolearn_s2_l1c" / "REFERENCE_SCENES.npy")  # (5, 101, 100, 13)
    row = np.concatenate(list(scenes), axis=1).transpose(2, 0, 1)  # (13, 101, 500)
    pad = ((0, 0), (0, max(0, size - row.shape[1])), (0, max(0, size - row.shape[2])))
    return np.ascontiguousarray(np.pad(row, pad, mode="symmetric")[:, :size, :size])


def main() -> int:
    import torch

    from models.amw import load_amw_detector
    from models.registry import AMW_MODEL, AMW_V421_MODEL, shipped_checkpoint_path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--strides", type=int, nargs="+", default=[48, 24])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    data = composite(args.size)
    rows = []
    for model in (AMW_V421_MODEL, AMW_MODEL):
        for stride in args.strides:
            det = load_amw_detector(shipped_checkpoint_path(model), stride_px=stride,
                                    device=args.device)
            det.predict(data[:, :96, :96], EOLEARN_BANDS)  # warm-up
            best = float("inf")
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                pred = det.predict(data, EOLEARN_BANDS)
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                best = min(best, time.perf_counter() - t0)
            n = len(range(0, args.size - 48, stride)) + 1
            rows.append({
                "model": model.name,
                "stride_px": stride,
                "windows": n * n,
                "seconds": round(best, 3),
                "seconds_per_1024px": round(best * (1024 / args.size) ** 2, 3),
                "max_score": round(float(np.nanmax(pred.of("mining"))), 4),
            })
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU(s) "
               f"({len(os.sched_getaffinity(0))} available), torch {torch.__version__}, "
               f"{torch.get_num_threads()} thread(s), device {args.device}")
    if args.json:
        print(json.dumps({"machine": machine, "size": args.size, "rows": rows}, indent=2))
        return 0
    print(f"{args.size} x {args.size} px, 13 bands; {machine}\n")
    print("| checkpoint | stride | windows | s per 1024x1024 px | max score |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['stride_px']} | {r['windows']} | "
              f"{r['seconds_per_1024px']} | {r['max_score']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
