"""Train the real-chip recipe on a GPU machine that has no GDAL (run by hand).

``minewatch train configs/train-real.yaml`` is the recipe; it composites the synthetic worlds
with rasterio, which a bare GPU machine lacks. This script splits the run in two:

1. here (any machine with minewatch installed)::

       python benchmarks/train_gpu.py bank configs/train-real.yaml --out gpu-bank

   draws the synthetic pixel patches of the recipe's training and validation worlds once
   (random 128 px windows, as ``minewatch train`` draws them per epoch), stores them as
   quantised ``uint8`` reflectance in ``gpu-bank/synthetic.npz``, and copies the recipe's
   training and validation gallery mosaics into ``gpu-bank/gallery/``;
2. on the GPU machine (PyTorch, NumPy, Pillow and PyYAML only)::

       python benchmarks/train_gpu.py run configs/train-real.yaml --bank gpu-bank --out OUT \\
           [--variant NAME:key=value,...]

   runs :func:`training.mixed.fit`, the loop ``minewatch train`` runs, on those arrays, once
   per variant, and writes each variant's ``model.pt``, ``log.csv`` and a summary.

The bank's patches are fixed (``minewatch train`` redraws windows each epoch), so a GPU run
is the recipe up to which windows are drawn.

A variant's ``key=value`` items: a number field of :class:`training.mixed.FitRecipe`
(``epochs=20``, ``chip_batch_size=128``, ``mil_weight=4``), ``aug_<field>`` for
:class:`training.mixed.ChipAugment`, ``init=0`` to start from random weights instead of
the config's ``model.init_from``, ``widths=16-32-64-128-192`` for a network of other widths,
which starts from random weights, and ``blocks=1-1-2-2-2`` for more blocks per encoder stage,
which starts from ``model.init_from`` with the added blocks as identities, and ``skip=TEXT``
to leave out the training mosaics whose file name holds ``TEXT`` (``skip=clear0.05``: the
hazier composites, which the gallery has of negatives only). The bank and the variants
are run on the CPU by ``tests/training/test_train_gpu.py``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _light_training_package() -> None:
    """Import ``training``'s light modules without its ``__init__`` (which imports the GDAL
    readers a bare GPU machine lacks)."""
    if "training" not in sys.modules:
        pkg = types.ModuleType("training")
        pkg.__path__ = [str(ROOT / "training")]
        sys.modules["training"] = pkg


def _yaml(path: Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8"))


def make_bank(config_path: Path, out: Path, n_train: int, n_val: int) -> None:
    from training.config import load_train_config
    from training.data import cut_window, load_labelled_images
    from training.dataset import PatchDataset
    from training.train import load_chip_groups

    config = load_train_config(config_path)
    assert config.data is not None and config.patches is not None
    images = load_labelled_images(config.data, bands=config.bands, composite=config.composite,
                                  splits=("train", "val"))
    out.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {"bands": np.array(config.bands)}
    from models.normalization import normalization_from_images

    train_images = [im for im in images if im.split == "train"]
    norm = normalization_from_images([im.image for im in train_images], config.bands,
                                     seed=config.seed)
    arrays["norm_mean"] = np.array(norm.mean)
    arrays["norm_std"] = np.array(norm.std)
    # uint8 quantisation: 0.001 reflectance steps for the visible bands, 0.002 beyond (below
    # the augmentation's pixel noise); 255 = unobserved.
    scale = np.array([0.001 if b in ("B02", "B03", "B04") else 0.002 for b in config.bands],
                     dtype=np.float32)
    arrays["scale"] = scale
    P = config.sampling.patch_size_px
    for split, n, size in (("train", n_train, P), ("val", n_val, 2 * P)):
        chosen = [im for im in images if im.split == split]
        ds = PatchDataset(chosen, normalization=norm, patch_px=size, n_patches=n,
                          positive_share=config.sampling.positive_share,
                          edge_share=config.sampling.edge_share, seed=config.seed)
        xs, ys = [], []
        for i, r, c in ds.windows:
            x, y = cut_window(chosen[i], r, c, size)
            q = np.round(x / scale[:, None, None])
            xs.append(np.where(np.isfinite(x), np.clip(q, 0, 254), 255).astype(np.uint8))
            ys.append(y)
        arrays[f"{split}_x"] = np.stack(xs)
        arrays[f"{split}_y"] = np.stack(ys)
    np.savez_compressed(out / "synthetic.npz", **arrays)
    groups = load_chip_groups(config.patches.data, splits=("train", "val"))
    gal = out / "gallery"
    gal.mkdir(exist_ok=True)
    folder = config.patches.data.folder
    for g in groups:
        src = next(iter(folder.rglob(g.name + ".png")))
        shutil.copy2(src, gal / src.name)
    print(json.dumps({k: list(v.shape) for k, v in arrays.items()}))
    print("bank:", sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2**20, "MiB")


class _DevicePixels:
    """The bank's pixel patches kept on the device and augmented there, a batch at a time
    (flips, 90° rotations, the radiometric jitter of ``training.augment``): with a per-sample
    CPU pipeline the H200 waited on the CPU (686 samples/s). ``augment=None``: a plain
    dataset for validation."""

    def __init__(self, x: np.ndarray, y: np.ndarray, scale: np.ndarray, mean: np.ndarray,
                 std: np.ndarray, augment: dict[str, float] | None, device: Any,
                 seed: int = 0) -> None:
        import torch

        self.device = device
        self.x = torch.from_numpy(x).to(device)
        self.y = torch.from_numpy(y.astype(np.int64)).to(device)
        self.scale = torch.from_numpy(scale.astype(np.float32)).view(1, -1, 1, 1).to(device)
        self.mean = torch.from_numpy(mean.astype(np.float32)).view(1, -1, 1, 1).to(device)
        self.std = torch.from_numpy(std.astype(np.float32)).view(1, -1, 1, 1).to(device)
        self.augment = augment
        self.gen = torch.Generator(device=device).manual_seed(seed)

    def __len__(self) -> int:
        return len(self.x)

    def _prepare(self, idx: Any, augment: bool) -> tuple[Any, Any]:
        import torch

        raw = self.x[idx]
        x = raw.float() * self.scale
        x = x.masked_fill(raw == 255, float("nan"))
        y = self.y[idx].clone()
        if augment and self.augment:
            a, g = self.augment, self.gen
            n, c = x.shape[:2]
            gain = (1 + a["gain_sigma"] * torch.randn(n, 1, device=self.device, generator=g)
                    + a["band_gain_sigma"] * torch.randn(n, c, device=self.device, generator=g))
            off = a["offset_sigma"] * torch.randn(n, c, device=self.device, generator=g)
            x = x * gain.clamp(0.5, 1.5)[:, :, None, None] + off[:, :, None, None]
            x = x + a["noise_sigma"] * torch.randn(x.shape, device=self.device, generator=g)
            for dim in (-1, -2):
                f = torch.rand(n, device=self.device, generator=g) < 0.5
                x = torch.where(f[:, None, None, None], x.flip(dim), x)
                y = torch.where(f[:, None, None], y.flip(dim), y)
            k = int(torch.randint(0, 4, (1,), device=self.device, generator=g))
            x, y = torch.rot90(x, k, dims=(-2, -1)), torch.rot90(y, k, dims=(-2, -1))
        y[~torch.isfinite(x).all(dim=1)] = 255
        return torch.nan_to_num((x - self.mean) / self.std, nan=0.0), y

    def sample(self, batch_size: int, gen: Any) -> tuple[Any, Any]:
        import torch

        idx = torch.randint(0, len(self.x), (batch_size,), device=self.device,
                            generator=self.gen)
        return self._prepare(idx, augment=True)

    def __getitem__(self, i: int) -> tuple[Any, Any]:
        x, y = self._prepare(slice(i, i + 1), augment=False)
        return x[0].cpu(), y[0].cpu()


def run(config_path: Path, bank: Path, out: Path, variants: list[str]) -> None:
    _light_training_package()
    import torch

    from models.checkpoint import CheckpointMetadata, load_checkpoint
    from models.normalization import Normalization
    from models.registry import NETWORK_CLASSES, architecture_options, build_model
    from training.losses import SegmentationLoss
    from training.mixed import (
        TOA_OFFSETS,
        ChipAugment,
        FitRecipe,
        chip_arrays,
        fit,
        init_from_checkpoint,
    )
    from training.patches import read_gallery, split_groups

    cfg = _yaml(config_path)
    bands = tuple(cfg["bands"])
    optional = tuple(cfg.get("optional_bands", ()))
    data = np.load(bank / "synthetic.npz")
    pdata = cfg["patches"]["data"]
    groups = read_gallery(bank / "gallery", regions=pdata.get("regions"),
                          include_unused=False)
    sp = pdata["split"]
    # The bank holds the training and validation sets only: the test regions stay here.
    groups = split_groups(groups, by=sp.get("by", "region"), val=sp["val"], test=[],
                          seed=sp.get("seed", 0))
    chips_train = chip_arrays([g for g in groups if g.split == "train"], bands)
    chips_val = chip_arrays([g for g in groups if g.split == "val"], bands)
    print("chips train", len(chips_train), int(chips_train.labels.sum()), "val", len(chips_val),
          int(chips_val.labels.sum()), flush=True)
    init_from = cfg["model"].get("init_from")
    init_path = (config_path.parent / init_from).resolve() if init_from else None
    norm = Normalization(bands, tuple(map(float, data["norm_mean"])),
                         tuple(map(float, data["norm_std"])))
    if init_path is not None:  # the starting network's normalisation, when its bands fit
        init_norm = load_checkpoint(init_path).metadata.normalization
        norm = init_norm if tuple(init_norm.bands) == bands else norm
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    a, o, pt = cfg["augment"], cfg["optim"], cfg["patches"]

    aug = {k: float(a[k]) for k in ("gain_sigma", "band_gain_sigma", "offset_sigma",
                                     "noise_sigma")}
    pixel_train = _DevicePixels(data["train_x"], data["train_y"], data["scale"],
                                np.array(norm.mean), np.array(norm.std), aug, device,
                                seed=cfg.get("seed", 0))
    pixel_val = _DevicePixels(data["val_x"], data["val_y"], data["scale"], np.array(norm.mean),
                              np.array(norm.std), None, device)
    base = {
        "epochs": o["epochs"], "steps_per_epoch": o.get("steps_per_epoch"),
        "batch_size": o["batch_size"], "chip_batch_size": pt["chip_batch_size"], "lr": o["lr"],
        "weight_decay": o["weight_decay"], "schedule": o["schedule"],
        "mil_weight": pt["weight"], "mil_pixel_weight": pt["pixel_weight"],
        "pool_k": pt["pool_k"], "band_dropout": cfg.get("band_dropout", 0.5),
        "min_specificity": pt["min_specificity"], "amp": True, "seed": cfg.get("seed", 0),
        "ema_decay": o.get("ema_decay", 0.0),
    }
    chip_aug = {"gain_sigma": a["gain_sigma"], "band_gain_sigma": a["band_gain_sigma"],
                "offset_sigma": a["offset_sigma"], "noise_sigma": a["noise_sigma"],
                "contrast_sigma": a.get("contrast_sigma", 0.0),
                "toa_offset_sigma": pt["toa_offset_sigma"]}
    summary: list[dict[str, Any]] = []
    work = out  # best.pt is kept per epoch: what a run cut short leaves comes back
    for spec in variants:
        name, _, rest = spec.partition(":")
        kw = dict(base)
        init_weights = init_path is not None
        caug = dict(chip_aug)
        options = dict(cfg["model"]["options"])
        chips = chips_train
        for item in filter(None, rest.split(",")):
            k, v = item.split("=")
            if k == "init":
                init_weights = v == "1" and init_path is not None
            elif k == "widths":  # another network: widths=16-32-64-128-192
                options[k] = [int(n) for n in v.split("-")]
                init_weights = False  # a checkpoint of other widths cannot start it
            elif k == "blocks":  # more blocks per stage: the added ones start as identities
                options[k] = [int(n) for n in v.split("-")]
            elif k == "skip":  # leave out training mosaics whose name holds it: skip=clear0.05
                chips = chip_arrays([g for g in groups if g.split == "train" and v not in g.name],
                                    bands)
            elif k.startswith("aug_"):  # aug_<ChipAugment field>=value
                caug[k[4:]] = float(v)
            elif k in base:
                kw[k] = type(base[k])(float(v)) if isinstance(base[k], (int, float)) and not \
                    isinstance(base[k], bool) else v
            else:
                raise SystemExit(f"variant {spec!r}: unknown key {k!r}; expected init, widths, "
                                 f"blocks, skip, aug_<field> or one of {', '.join(sorted(base))}")
        recipe = FitRecipe(**kw, chip_augment=ChipAugment(**caug))
        model = build_model(cfg["model"]["architecture"], in_channels=len(bands) + len(optional),
                            num_classes=len(NETWORK_CLASSES), options=options)
        if init_weights:
            assert init_path is not None
            init_from_checkpoint(model, init_path, optional_channels=len(optional), grow=True)
        meta = CheckpointMetadata(
            name=cfg["model"]["name"], version=cfg["model"]["version"],
            architecture=cfg["model"]["architecture"],
            options=architecture_options(cfg["model"]["architecture"], options),
            bands=bands, normalization=norm, classes=NETWORK_CLASSES,
            patch_size_px=cfg["sampling"]["patch_size_px"],
            training_data={"kind": "synthetic", "bank": "benchmarks/train_gpu.py",
                           "patches": {"kind": "gallery", "variant": name}},
            extra={"config": cfg, "variant": spec, "toa_offsets": dict(TOA_OFFSETS),
                   "parameters": sum(p.numel() for p in model.parameters()),
                   "torch": str(torch.__version__),
                   "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"},
            optional_bands=optional,
        )
        t0 = time.perf_counter()
        res = fit(model, meta=meta, recipe=recipe, out_dir=work / f"run-{name}", device=device,
                  pixel_train=pixel_train, pixel_val=pixel_val,
                  pixel_loss=SegmentationLoss(_LossCfg(cfg["loss"])).to(device),
                  chips_train=chips, chips_val=chips_val, half_checkpoint=True)
        secs = time.perf_counter() - t0
        row = {"variant": spec, "best_score": res.best_score, "threshold": res.threshold,
               "train_chips": len(chips), "seconds": round(secs, 1),
               "chips_per_s": round(res.chips_per_s, 1),
               "last": res.history[-1] if res.history else {}}
        summary.append(row)
        print(json.dumps(row), flush=True)
        (out / name).mkdir(parents=True, exist_ok=True)
        for f in ("model.pt", "log.csv"):  # what comes back from the machine
            shutil.copy2(work / f"run-{name}" / f, out / name / f)
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


class _LossCfg:
    def __init__(self, d: dict[str, Any]) -> None:
        self.kind = d.get("kind", "dice_ce")
        self.class_weights = d.get("class_weights", [1.0, 2.0, 2.0])
        self.dice_weight = d.get("dice_weight", 1.0)
        self.focal_gamma = d.get("focal_gamma", 2.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bank")
    b.add_argument("config", type=Path)
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--train-patches", type=int, default=320)
    b.add_argument("--val-patches", type=int, default=16)
    r = sub.add_parser("run")
    r.add_argument("config", type=Path)
    r.add_argument("--bank", type=Path, required=True)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--variant", action="append", default=[])
    args = ap.parse_args()
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.cmd == "bank":
        make_bank(args.config, args.out, args.train_patches, args.val_patches)
    else:
        run(args.config, args.bank, args.out, args.variant or ["default:"])


if __name__ == "__main__":
    main()
