"""Training throughput (chips/s) of a registry architecture on this machine.

    .venv/bin/python benchmarks/train_throughput.py --architecture unet-slim \
        --options '{"widths": [12, 24, 48, 64, 96], "blocks": [1, 1, 1, 1, 1]}' \
        --patch 128 --batch 16 --steps 10

Times forward + Dice/CE loss + backward + AdamW step on random 6-band batches (data loading is
not included; the training loop's own chips/s is in its log.csv). Mixed precision (bf16) on CUDA.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from models.network import resolve_device
from models.registry import build_model
from training.config import LossConfig
from training.losses import SegmentationLoss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--architecture", default="unet-slim")
    parser.add_argument("--options", default="{}", help="JSON options of the architecture")
    parser.add_argument("--bands", type=int, default=6)
    parser.add_argument("--patch", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model = build_model(args.architecture, in_channels=args.bands,
                        options=json.loads(args.options)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = SegmentationLoss(LossConfig()).to(device)
    x = torch.randn(args.batch, args.bands, args.patch, args.patch, device=device)
    y = torch.randint(0, 3, (args.batch, args.patch, args.patch), device=device)
    cuda = device.type == "cuda"

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            logits = model(x)
        loss = loss_fn(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(args.warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    result = {
        "architecture": args.architecture,
        "parameters": sum(p.numel() for p in model.parameters()),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "patch_px": args.patch,
        "batch": args.batch,
        "chips_per_s": round(args.steps * args.batch / seconds, 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
