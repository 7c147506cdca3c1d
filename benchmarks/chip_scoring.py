"""Ways of scoring the real chips with one checkpoint, without retraining: test-time flips and
quarter turns, and the size of the pixel pool, on the validation and test regions of a training
config's patch split (default: the shipped model's, ``configs/train-real.yaml``).

    .venv/bin/python benchmarks/chip_scoring.py
    .venv/bin/python benchmarks/chip_scoring.py --checkpoint minewatch-train-real/model.pt

Each way's threshold is set on the validation regions (most sensitive with specificity >= 0.97)
and carried to the test regions, as training and ``minewatch evaluate`` do; choose by the
validation columns. Needs the gallery in ``../shared/data/amw/training_gallery``. About 4 minutes
on 2 CPU cores (eight passes of ~5,400 chips).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from models.checkpoint import build_network, load_checkpoint
from models.registry import shipped_checkpoint_path
from training.chips import TOA_OFFSETS, chip_arrays, chip_probabilities, chip_scores
from training.config import load_train_config
from training.patchlevel import (
    patch_scores,
    roc_auc,
    sensitivity_at,
    threshold_for_specificity,
)
from training.train import load_chip_groups

REPO = Path(__file__).resolve().parents[1]


def dihedral_maps(model, chips, meta) -> np.ndarray:  # type: ignore[no-untyped-def]
    """``(8, N, H, W)`` mining probabilities of the chips under the 8 flips and turns, turned
    back."""
    optional = [meta.bands.index(b) for b in meta.optional_bands]
    base = chips.images
    maps = []
    for turns in range(4):
        for flip in (False, True):
            im = np.rot90(base, turns, axes=(2, 3))
            chips.images = np.ascontiguousarray(im[..., ::-1] if flip else im)
            p = chip_probabilities(model, chips, normalization=meta.normalization,
                                   optional_idx=optional)
            p = p[..., ::-1] if flip else p
            maps.append(np.ascontiguousarray(np.rot90(p, -turns, axes=(1, 2))))
    chips.images = base
    return np.stack(maps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "train-real.yaml")
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: the shipped model")
    parser.add_argument("--pools", default="1,4,8,16,32,64")
    args = parser.parse_args()

    config = load_train_config(args.config)
    if config.patches is None:
        parser.error(f"{args.config}: no patches section (patch-labelled chips) to score")
    ckpt = load_checkpoint(args.checkpoint or shipped_checkpoint_path())
    meta = ckpt.metadata
    model = build_network(ckpt).eval()
    offsets = meta.extra.get("toa_offsets") or TOA_OFFSETS
    data = {}
    for split in ("val", "test"):
        chips = chip_arrays(load_chip_groups(config.patches.data, splits=(split,)), meta.bands,
                            toa_offsets=offsets)
        data[split] = (dihedral_maps(model, chips, meta), chips)
        print(f"{split}: {len(chips)} chips scored 8 ways", flush=True)

    print("| scoring | val AUC | val sensitivity at 0.97 | test AUC | test sensitivity / "
          "specificity at the val threshold | test worst kind |")
    print("|---|---|---|---|---|---|")
    for name, agg in (("one pass", lambda m: m[0]), ("8 flips and turns", lambda m: m.mean(0))):
        for k in (int(v) for v in args.pools.split(",")):
            val_maps, val_chips = data["val"]
            test_maps, test_chips = data["test"]
            sv, st = chip_scores(agg(val_maps), k), chip_scores(agg(test_maps), k)
            yv, yt = val_chips.labels, test_chips.labels
            t = threshold_for_specificity(sv, yv, 0.97)
            fig = patch_scores(st, yt, t, kinds=test_chips.kinds)
            worst = max(v["rate"] for v in fig.false_alarms_by_kind.values())
            print(f"| {name}, {k} pixels | {roc_auc(sv, yv):.3f} | "
                  f"{sensitivity_at(sv, yv, 0.97):.3f} | {fig.roc_auc:.3f} | "
                  f"{fig.sensitivity:.3f} / {fig.specificity:.3f} | {worst:.3f} |", flush=True)


if __name__ == "__main__":
    main()
