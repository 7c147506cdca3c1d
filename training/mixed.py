"""One training loop for pixel-labelled patches (the synthetic world, chip folders) and
patch-labelled real chips (the galleries), and the chip scorer that validation and
``minewatch evaluate`` share.

Light on purpose (NumPy, PyTorch, torchvision; no GDAL): ``minewatch train`` calls :func:`fit`
with data it composited, and a GPU machine without GDAL can call it with arrays it was sent.

**Bands.** The network takes its bands (NaN -> band mean after normalisation) and one
availability flag per optional band (:func:`models.checkpoint.network_input`). Real gallery
chips have only B02 B03 B04: their NIR/SWIR are absent and flagged 0. Synthetic patches have
every band; with ``band_dropout`` their optional bands are dropped (and flagged 0) at random, so
the network learns both modes from pixel labels and uses NIR/SWIR when a scene has them.

**Top of atmosphere.** The network works in surface reflectance (L2A, what scans composite).
Chips of top-of-atmosphere reflectance (L1C, the galleries) are brought there by subtracting a
per-band path-radiance offset (:data:`TOA_OFFSETS`, stored in the checkpoint), jittered in
training so the network tolerates the scene-to-scene spread of the atmosphere.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Dataset

from models.checkpoint import CheckpointMetadata, save_checkpoint
from models.normalization import Normalization
from training.errors import TrainingError
from training.patches import IGNORE_INDEX, ChipGroup
from training.patchlevel import (
    DEFAULT_POOL_K,
    mil_loss,
    patch_scores,
    pool_scores,
    roc_auc,
    threshold_for_specificity,
)

log = logging.getLogger(__name__)


#: Path-radiance offsets (top of atmosphere minus surface reflectance) of the visible bands over
#: Amazon forest, measured on the real gallery: median TOA of the ``random_negatives10k``
#: clear chips (B02 0.094, B03 0.084, B04 0.052) minus the L2A forest reflectance of the
#: synthetic world's spectra (0.020, 0.040, 0.022). NIR and SWIR are nearly unaffected.
TOA_OFFSETS: dict[str, float] = {"B01": 0.09, "B02": 0.074, "B03": 0.044, "B04": 0.030}

Progress = Callable[[str, int, int], None]


def toa_to_boa(x: np.ndarray, bands: Sequence[str], offsets: dict[str, float]) -> np.ndarray:
    """Surface-like reflectance of top-of-atmosphere ``(..., band, row, col)`` reflectance:
    each band minus its offset, clipped at 0 (NaN stays NaN)."""
    off = np.array([offsets.get(b, 0.0) for b in bands], dtype=np.float32)
    shape = [1] * x.ndim
    shape[-3] = len(bands)
    return np.maximum(x - off.reshape(shape), 0.0, where=np.isfinite(x), out=x.copy())


@dataclass
class ChipArrays:
    """Chips of one split, in the network's bands.

    Attributes:
        images: ``(N, band, S, S)`` float32 surface-like reflectance; NaN where a band is absent,
            a pixel unobserved, or outside a smaller chip (padded).
        present: ``(N, band)`` True where the chip has the band.
        labels: ``(N,)`` 1 = mining.
        toa: ``(N,)`` True for chips that were top of atmosphere (converted).
        kinds: kind of each chip.
        sets: set of each chip.
        sources: name of each chip.
    """

    images: np.ndarray
    present: np.ndarray
    labels: np.ndarray
    toa: np.ndarray
    kinds: list[str]
    sets: list[str]
    sources: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)


def chip_arrays(
    groups: Sequence[ChipGroup],
    bands: Sequence[str],
    *,
    toa_offsets: dict[str, float] | None = None,
    convert_toa: bool = True,
) -> ChipArrays:
    """Stack chip groups into the network's bands (absent bands NaN), padding smaller chips with
    NaN to the largest side; top-of-atmosphere chips are converted with ``toa_offsets``
    (unless ``convert_toa`` is False, to measure what the conversion is worth)."""
    if not groups:
        raise TrainingError("no chips")
    side = max(g.images.shape[-1] for g in groups)
    side_h = max(g.images.shape[-2] for g in groups)
    n = sum(len(g) for g in groups)
    images = np.full((n, len(bands), side_h, side), np.nan, dtype=np.float32)
    present = np.zeros((n, len(bands)), dtype=bool)
    labels = np.zeros(n, dtype=np.uint8)
    toa = np.zeros(n, dtype=bool)
    kinds: list[str] = []
    sets: list[str] = []
    sources: list[str] = []
    i = 0
    for g in groups:
        m = len(g)
        img = g.images
        if g.radiometry == "toa" and convert_toa:
            img = toa_to_boa(img, g.bands, toa_offsets if toa_offsets is not None else TOA_OFFSETS)
        h, w = img.shape[-2:]
        for j, b in enumerate(bands):
            if b in g.bands:
                images[i : i + m, j, :h, :w] = img[:, g.bands.index(b)]
                present[i : i + m, j] = True
        labels[i : i + m] = g.labels
        toa[i : i + m] = g.radiometry == "toa"
        kinds += list(g.kinds)
        sets += [g.set] * m
        sources += list(g.sources) or [f"{g.name}#{k}" for k in range(m)]
        i += m
    return ChipArrays(images, present, labels, toa, kinds, sets, sources)


def network_batch(
    x: torch.Tensor,
    present: torch.Tensor,
    normalization: Normalization,
    optional_idx: Sequence[int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Network input of reflectance ``x (N, band, H, W)`` (NaN = absent or unobserved) whose
    bands ``present (N, band)`` says are given: normalised, NaN -> 0, then an availability flag
    per optional band. Returns ``(input, valid (N, H, W))``."""
    mean = torch.tensor(normalization.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    std = torch.tensor(normalization.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    finite = torch.isfinite(x)
    valid = (finite | ~present[:, :, None, None]).all(dim=1)
    norm = torch.nan_to_num((x - mean) / std, nan=0.0, posinf=0.0, neginf=0.0)
    norm = norm * present[:, :, None, None].to(x.dtype)
    if not optional_idx:
        return norm, valid
    flags = present[:, list(optional_idx)].to(x.dtype)[:, :, None, None]
    return torch.cat([norm, flags.expand(-1, -1, *x.shape[2:])], dim=1), valid


def _pad(x: torch.Tensor, stride: int, value: float = 0.0) -> torch.Tensor:
    h, w = x.shape[-2:]
    ph, pw = (-h) % stride, (-w) % stride
    return nn.functional.pad(x, (0, pw, 0, ph), value=value) if ph or pw else x


def _autocast(device: torch.device, amp: bool) -> Any:
    if device.type == "cuda" and amp:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.inference_mode()
def chip_probabilities(
    model: nn.Module,
    chips: ChipArrays,
    *,
    normalization: Normalization,
    optional_idx: Sequence[int],
    mining_index: int = 1,
    device: torch.device | str = "cpu",
    amp: bool = True,
    batch_size: int = 256,
) -> np.ndarray:
    """Mining probability maps ``(N, H, W)`` of chips (NaN where not valid)."""
    device = torch.device(device)
    model.eval()
    stride = int(getattr(model, "stride", 32))
    out = np.empty(chips.images.shape[:1] + chips.images.shape[2:], dtype=np.float32)
    for s in range(0, len(chips), batch_size):
        x = torch.from_numpy(chips.images[s : s + batch_size]).to(device)
        p = torch.from_numpy(chips.present[s : s + batch_size]).to(device)
        xin, valid = network_batch(x, p, normalization, optional_idx)
        with _autocast(device, amp):
            logits = model(_pad(xin, stride))
        prob = torch.softmax(logits.float(), dim=1)[:, mining_index, : x.shape[2], : x.shape[3]]
        out[s : s + batch_size] = prob.masked_fill(~valid, float("nan")).cpu().numpy()
    return out


def chip_scores(prob: np.ndarray, k: int = DEFAULT_POOL_K) -> np.ndarray:
    """Pooled chip scores of probability maps (NaN = not valid)."""
    p = torch.from_numpy(prob)
    return pool_scores(torch.nan_to_num(p, nan=0.0), torch.isfinite(p), k).numpy()


# ----------------------------------------------------------------------------- training
@dataclass(frozen=True)
class ChipAugment:
    """Augmentations of real chips: flips, 90° rotations, gains, the spread of the atmosphere
    (``toa_offset_sigma``, reflectance, on the TOA -> surface conversion) and noise."""

    flips: bool = True
    rot90: bool = True
    gain_sigma: float = 0.06
    band_gain_sigma: float = 0.03
    offset_sigma: float = 0.005
    toa_offset_sigma: float = 0.012
    noise_sigma: float = 0.003
    contrast_sigma: float = 0.0

    def __call__(self, x: torch.Tensor, toa: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        n, c = x.shape[:2]
        dev = x.device

        def randn(*shape: int) -> torch.Tensor:
            return torch.randn(*shape, generator=gen).to(dev)

        if self.contrast_sigma > 0:  # composites differ in contrast (compositing, haze, sun)
            mean = torch.nanmean(x.flatten(2), dim=2)[:, :, None, None]
            con = torch.exp(self.contrast_sigma * randn(n, 1)).clamp(0.6, 1.6)
            x = mean + (x - mean) * con[:, :, None, None]
        gain = (1 + self.gain_sigma * randn(n, 1) + self.band_gain_sigma * randn(n, c)).clamp(
            0.5, 1.5)
        offset = self.offset_sigma * randn(n, c) - self.toa_offset_sigma * randn(n, c) * toa.view(
            -1, 1).to(x.dtype)
        x = x * gain[:, :, None, None] + offset[:, :, None, None]
        if self.noise_sigma > 0:
            x = x + self.noise_sigma * torch.randn(x.shape, device=dev)  # drawn where x is
        x = x.clamp(min=0.0)  # NaN stays NaN
        if self.flips and bool(torch.rand(1, generator=gen) < 0.5):
            x = x.flip(-1)
        if self.flips and bool(torch.rand(1, generator=gen) < 0.5):
            x = x.flip(-2)
        if self.rot90:
            x = torch.rot90(x, int(torch.randint(0, 4, (1,), generator=gen)), dims=(-2, -1))
        return x


@dataclass(frozen=True)
class FitRecipe:
    """What :func:`fit` needs besides the data (``minewatch train`` fills it from the config).

    Attributes:
        epochs: epochs (an epoch = ``steps_per_epoch`` optimiser steps).
        steps_per_epoch: optimiser steps per epoch (default: one pass over the pixel patches,
            else over the real training chips).
        batch_size: pixel patches per step.
        chip_batch_size: real chips per step (half with mining, half without).
        lr, weight_decay, schedule, max_steps: the optimiser.
        mil_weight: weight of the multiple-instance loss against the pixel loss.
        mil_pixel_weight: weight of the negative chips' pixel term in it.
        pool_k: pixels pooled per chip.
        band_dropout: probability of dropping a pixel patch's optional bands.
        ema_decay: when above 0, validate and keep an exponential moving average of the
            weights (``torch.optim.swa_utils``); the chip validation of single epochs swings.
        min_specificity: the threshold stored is the most sensitive one reaching this
            specificity on the validation chips.
        amp: bf16 autocast on CUDA.
        seed: seeds the chip draws and augmentations.
        chip_augment: augmentations of real chips.
    """

    epochs: int = 10
    steps_per_epoch: int | None = None
    batch_size: int = 16
    chip_batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    schedule: str = "onecycle"
    max_steps: int | None = None
    mil_weight: float = 1.0
    mil_pixel_weight: float = 0.5
    pool_k: int = DEFAULT_POOL_K
    band_dropout: float = 0.5
    ema_decay: float = 0.0
    min_specificity: float = 0.97
    amp: bool = True
    seed: int = 0
    chip_augment: ChipAugment = field(default_factory=ChipAugment)


@dataclass
class FitResult:
    """What :func:`fit` produced: the best checkpoint's score, threshold and the history."""

    best_score: float
    threshold: float | None
    history: list[dict[str, Any]]
    chips_per_s: float
    epochs: int


LOG_FIELDS = (
    "epoch", "steps", "train_loss", "train_pixel_loss", "train_mil_loss", "val_loss",
    "val_mining_iou", "val_mining_f1", "val_deforestation_iou", "val_deforestation_f1",
    "val_chip_auc", "val_chip_sensitivity", "val_chip_specificity", "val_chip_threshold",
    "val_chip_max_kind_far", "val_score", "lr", "seconds", "chips_per_s",
)


def _schedule(
    opt: torch.optim.Optimizer, recipe: FitRecipe, total: int
) -> torch.optim.lr_scheduler.LRScheduler:
    if recipe.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr,
                                                   total_steps=max(total, 1), pct_start=0.15)
    if recipe.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(total, 1))
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


class _ChipSampler:
    """Balanced batches of training chips (half mining, half not), augmented."""

    def __init__(self, chips: ChipArrays, recipe: FitRecipe, device: torch.device) -> None:
        self.chips = chips
        self.recipe = recipe
        self.device = device
        self.gen = torch.Generator().manual_seed(recipe.seed + 1)
        self.pos = np.flatnonzero(chips.labels == 1)
        self.neg = np.flatnonzero(chips.labels == 0)
        self.images = torch.from_numpy(chips.images).to(device)
        self.present = torch.from_numpy(chips.present).to(device)
        self.labels = torch.from_numpy(chips.labels.astype(np.int64)).to(device)
        self.toa = torch.from_numpy(chips.toa).to(device)

    def batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        b = self.recipe.chip_batch_size
        parts = []
        for pool, m in ((self.pos, b // 2), (self.neg, b - b // 2)):
            if len(pool) and m:
                pick = torch.randint(0, len(pool), (m,), generator=self.gen).numpy()
                parts.append(pool[pick])
        idx = torch.from_numpy(np.concatenate(parts)).to(self.device)
        x = self.recipe.chip_augment(self.images[idx], self.toa[idx], self.gen)
        return x, self.present[idx], self.labels[idx], idx


def fit(
    model: nn.Module,
    *,
    meta: CheckpointMetadata,
    recipe: FitRecipe,
    out_dir: Path,
    device: torch.device,
    pixel_train: Dataset[Any] | None = None,
    pixel_val: Dataset[Any] | None = None,
    pixel_loss: nn.Module | None = None,
    chips_train: ChipArrays | None = None,
    chips_val: ChipArrays | None = None,
    resume_state: dict[str, Any] | None = None,
    half_checkpoint: bool = False,
    progress: Progress | None = None,
) -> FitResult:
    """Train ``model`` on pixel patches and/or real chips; write ``best.pt``, ``last.pt``,
    ``model.pt`` and ``log.csv`` into ``out_dir``.

    Each step takes a batch of pixel patches (dice + cross-entropy, :mod:`training.losses`) and
    a balanced batch of chips (:func:`training.patchlevel.mil_loss`), summed with
    ``mil_weight``. Validation each epoch: pixel IoU of mining and deforestation on the pixel
    validation patches, and on the validation chips the ROC AUC, the most sensitive threshold
    reaching ``min_specificity``, and the sensitivity there. The score kept (best checkpoint) is
    the mean of the chip sensitivity and the pixel IoUs available; the threshold of the best
    epoch is stored in the checkpoint (``extra["thresholds"]["mining"]``).

    Raises:
        TrainingError: no data, or the loss is not finite.
    """
    if pixel_train is None and chips_train is None:
        raise TrainingError("no training data: give pixel patches, chips, or both")
    if pixel_train is not None and pixel_loss is None:
        raise TrainingError("pixel patches need a pixel loss")
    optional_idx = [meta.bands.index(b) for b in meta.optional_bands]
    mining = meta.classes.index("mining")
    torch.manual_seed(recipe.seed)
    gen = torch.Generator().manual_seed(recipe.seed)
    model.to(device)
    stride = int(getattr(model, "stride", 32))
    sampler = _ChipSampler(chips_train, recipe, device) if chips_train is not None else None
    if recipe.steps_per_epoch:
        steps_per_epoch = recipe.steps_per_epoch
    elif pixel_train is not None:
        steps_per_epoch = max(1, len(pixel_train) // recipe.batch_size)  # type: ignore[arg-type]
    else:
        assert chips_train is not None
        steps_per_epoch = max(1, len(chips_train) // recipe.chip_batch_size)
    total = steps_per_epoch * recipe.epochs
    if recipe.max_steps:
        total = min(total, recipe.max_steps)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = _schedule(opt, recipe, total)
    ema: AveragedModel | None = None
    if recipe.ema_decay > 0:
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(recipe.ema_decay),
                            use_buffers=True)
    net = ema.module if ema is not None else model  # what is validated and kept
    start_epoch, step, best = 0, 0, -1.0
    history: list[dict[str, Any]] = []
    if resume_state:
        opt.load_state_dict(resume_state["optimizer"])
        fresh = {k: getattr(sched, k) for k in ("total_steps", "_schedule_phases", "T_max")
                 if hasattr(sched, k)}
        sched.load_state_dict(resume_state["scheduler"])
        for k, v in fresh.items():  # a resumed run may have more epochs
            setattr(sched, k, v)
        start_epoch, step = int(resume_state["epoch"]), int(resume_state["step"])
        best = float(resume_state["best_score"])
        history = list(resume_state.get("history", []))
        if ema is not None and "ema" in resume_state:
            ema.load_state_dict(resume_state["ema"])
    out_dir.mkdir(parents=True, exist_ok=True)
    best_path, last_path = out_dir / "best.pt", out_dir / "last.pt"
    model_path = out_dir / "model.pt"
    best_threshold: float | None = None
    rates: list[float] = []
    epochs_run = 0
    for epoch in range(start_epoch, recipe.epochs):
        if recipe.max_steps and step >= recipe.max_steps:
            break
        pixel_iter: Any = None
        if pixel_train is not None:
            if hasattr(pixel_train, "resample"):
                pixel_train.resample(epoch)
            pixel_iter = _pixel_batches(pixel_train, recipe.batch_size, gen)
        model.train()
        t0 = time.monotonic()
        losses: list[float] = []
        pix_losses: list[float] = []
        mil_losses: list[float] = []
        seen = 0
        for i in range(1, steps_per_epoch + 1):
            # One forward pass over pixel patches and chips together: batch norm then sees in
            # training the mixture its running statistics describe in evaluation.
            xs: list[torch.Tensor] = []
            y = None
            if pixel_iter is not None:
                x, y = next(pixel_iter)
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                xs.append(_with_flags(x, optional_idx, recipe.band_dropout, gen))
            if sampler is not None:
                cx, cp, cy, _ = sampler.batch()
                xin, valid = network_batch(cx, cp, meta.normalization, optional_idx)
                h, w = xin.shape[-2:]
                side = -(-max(h, w) // stride) * stride
                xin = _pad(xin, side)
                if xs:  # pixel patches cropped to the chips' padded side
                    xs[0], y = _crop(xs[0], y, side, gen)
                xs.append(xin)
            with _autocast(device, recipe.amp):
                logits = model(torch.cat(xs) if len(xs) > 1 else xs[0])
            loss = torch.zeros((), device=device)
            n_pix = len(xs[0]) if pixel_iter is not None else 0
            if pixel_iter is not None:
                pl = pixel_loss(logits[:n_pix].float(), y)  # type: ignore[misc]
                loss = loss + pl
                pix_losses.append(float(pl.detach()))
                seen += n_pix
            if sampler is not None:
                ml = mil_loss(logits[n_pix:, :, :h, :w], cy, valid, k=recipe.pool_k,
                              mining_index=mining, pixel_weight=recipe.mil_pixel_weight)
                loss = loss + recipe.mil_weight * ml
                mil_losses.append(float(ml.detach()))
                seen += len(cy)
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"epoch {epoch + 1} step {step + 1}: loss is {float(loss)}; lower optim.lr"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if ema is not None:
                ema.update_parameters(model)
            if step < total:
                sched.step()
            step += 1
            losses.append(float(loss.detach()))
            if progress:
                progress(f"epoch {epoch + 1}/{recipe.epochs}", i, steps_per_epoch)
            if recipe.max_steps and step >= recipe.max_steps:
                break
        seconds = time.monotonic() - t0
        rate = seen / max(seconds, 1e-9)
        rates.append(rate)
        row: dict[str, Any] = {
            "epoch": epoch + 1, "steps": step, "train_loss": round(float(np.mean(losses)), 5),
            "lr": f"{opt.param_groups[0]['lr']:.3g}", "seconds": round(seconds, 1),
            "chips_per_s": round(rate, 2),
        }
        if pix_losses:
            row["train_pixel_loss"] = round(float(np.mean(pix_losses)), 5)
        if mil_losses:
            row["train_mil_loss"] = round(float(np.mean(mil_losses)), 5)
        parts: list[float] = []
        if pixel_val is not None and pixel_loss is not None:
            vloss, (mi, de) = _validate_pixels(net, pixel_val, pixel_loss, optional_idx,
                                                device=device, amp=recipe.amp,
                                                batch_size=max(1, recipe.batch_size // 4))
            row.update({"val_loss": round(vloss, 5), "val_mining_iou": round(mi[0], 4),
                        "val_mining_f1": round(mi[1], 4), "val_deforestation_iou": round(de[0], 4),
                        "val_deforestation_f1": round(de[1], 4)})
            parts += [mi[0], de[0]]
        threshold = None
        if chips_val is not None and len(np.unique(chips_val.labels)) == 2:
            prob = chip_probabilities(net, chips_val, normalization=meta.normalization,
                                      optional_idx=optional_idx, mining_index=mining,
                                      device=device, amp=recipe.amp)
            scores = chip_scores(prob, recipe.pool_k)
            threshold = threshold_for_specificity(scores, chips_val.labels, recipe.min_specificity)
            ps = patch_scores(scores, chips_val.labels, threshold, kinds=chips_val.kinds)
            far = max((v["rate"] for v in ps.false_alarms_by_kind.values()), default=0.0)
            row.update({"val_chip_auc": round(roc_auc(scores, chips_val.labels), 4),
                        "val_chip_sensitivity": round(ps.sensitivity, 4),
                        "val_chip_specificity": round(ps.specificity, 4),
                        "val_chip_threshold": round(threshold, 5),
                        "val_chip_max_kind_far": round(far, 4)})
            parts = [ps.sensitivity, *parts] if parts else [ps.sensitivity]
            if len(parts) > 1:  # the real chips weigh as much as the synthetic pixels together
                parts = [parts[0], float(np.mean(parts[1:]))]
        score = float(np.mean(parts)) if parts else -float(np.mean(losses))
        row["val_score"] = round(score, 4)
        history.append(row)
        _write_log(out_dir / "log.csv", history)
        log.info("epoch %d: %s", epoch + 1, row)
        metrics = {"validation": {k: v for k, v in row.items() if k.startswith("val_")},
                   "epoch": epoch + 1}
        epoch_meta = _with(meta, metrics, threshold, recipe.pool_k)
        if score > best or not best_path.is_file():
            best = max(score, best)
            best_threshold = threshold
            save_checkpoint(best_path, net, epoch_meta)
        state = {"epoch": epoch + 1, "step": step, "best_score": best,
                 "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                 "history": history}
        if ema is not None:
            state["ema"] = ema.state_dict()
        save_checkpoint(last_path, model, epoch_meta, training_state=state)
        epochs_run += 1
    if not best_path.is_file():
        save_checkpoint(best_path, net, _with(meta, {}, None, recipe.pool_k))
    from models.checkpoint import build_network, load_checkpoint

    best_ckpt = load_checkpoint(best_path)
    save_checkpoint(model_path, build_network(best_ckpt), best_ckpt.metadata,
                    half=half_checkpoint)
    saved = best_ckpt.metadata.extra.get("thresholds", {}).get("mining")
    return FitResult(best, saved if saved is not None else best_threshold, history,
                     float(np.mean(rates)) if rates else 0.0, epochs_run)


def _pixel_batches(
    data: Any, batch_size: int, gen: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless shuffled batches of pixel patches: a dataset's through a loader, or those of an
    object with ``sample(batch_size, gen)`` (patches kept and augmented on the device)."""
    if hasattr(data, "sample"):
        while True:
            yield data.sample(batch_size, gen)
    while True:
        yield from DataLoader(data, batch_size=batch_size, shuffle=True, generator=gen,
                              drop_last=True)


def _with(
    meta: CheckpointMetadata, metrics: dict[str, Any], threshold: float | None, k: int
) -> CheckpointMetadata:
    from dataclasses import replace

    extra = dict(meta.extra)
    extra["patch_pooling"] = {"kind": "topk_mean", "k": k}
    if threshold is not None:
        extra["thresholds"] = {**extra.get("thresholds", {}), "mining": round(threshold, 6)}
    return replace(meta, metrics=metrics, extra=extra)


def _crop(
    x: torch.Tensor, y: torch.Tensor | None, side: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A random ``side`` window of a batch of patches (and labels); smaller patches are padded
    (input 0, labels ignored), so that they stack with the chips."""
    h, w = x.shape[-2:]
    if h < side or w < side:
        ph, pw = max(side - h, 0), max(side - w, 0)
        x = nn.functional.pad(x, (0, pw, 0, ph))
        y = nn.functional.pad(y, (0, pw, 0, ph), value=IGNORE_INDEX) if y is not None else None
        h, w = x.shape[-2:]
    if h == side and w == side:
        return x, y
    r = int(torch.randint(0, max(h - side, 0) + 1, (1,), generator=gen))
    c = int(torch.randint(0, max(w - side, 0) + 1, (1,), generator=gen))
    x = x[..., r : r + side, c : c + side]
    return x, (y[..., r : r + side, c : c + side] if y is not None else None)


def _with_flags(
    x: torch.Tensor, optional_idx: Sequence[int], dropout: float, gen: torch.Generator
) -> torch.Tensor:
    """Normalised pixel patches (every band given) plus availability flags; with ``dropout``,
    a patch's optional bands are dropped (set to the mean, flagged 0)."""
    if not optional_idx:
        return x
    n = x.shape[0]
    keep = (torch.rand(n, generator=gen) >= dropout).to(x.device, x.dtype)
    x = x.clone()
    x[:, list(optional_idx)] *= keep[:, None, None, None]
    flags = keep[:, None, None, None].expand(-1, len(optional_idx), *x.shape[2:])
    return torch.cat([x, flags], dim=1)


@torch.inference_mode()
def _validate_pixels(
    model: nn.Module,
    dataset: Dataset[Any],
    loss_fn: nn.Module,
    optional_idx: Sequence[int],
    *,
    device: torch.device,
    amp: bool,
    batch_size: int,
) -> tuple[float, tuple[tuple[float, float], tuple[float, float]]]:
    """Mean loss and (IoU, F1) of mining and deforestation (argmax) on pixel patches with every
    band given."""
    model.eval()
    stride = int(getattr(model, "stride", 32))
    k = 3
    cm = np.zeros((k, k), dtype=np.int64)
    total, n = 0.0, 0
    for x, y in DataLoader(dataset, batch_size=batch_size):
        x = _pad(x, stride)
        y = _pad(y, stride, value=IGNORE_INDEX)
        x, y = x.to(device), y.to(device)
        if optional_idx:
            flags = torch.ones((x.shape[0], len(optional_idx), *x.shape[2:]), device=device)
            x = torch.cat([x, flags], dim=1)
        with _autocast(device, amp):
            logits = model(x)
        total += float(loss_fn(logits.float(), y)) * len(x)
        n += len(x)
        t = y.reshape(-1).cpu().numpy()
        p = logits.argmax(1).reshape(-1).cpu().numpy()
        keep = t != IGNORE_INDEX
        cm += np.bincount(t[keep] * k + p[keep], minlength=k * k).reshape(k, k)

    def iou_f1(c: int) -> tuple[float, float]:
        tp = cm[c, c]
        fp, fn = cm[:, c].sum() - tp, cm[c, :].sum() - tp
        iou = tp / (tp + fp + fn) if tp + fp + fn else 0.0
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
        return float(iou), float(f1)

    return total / max(n, 1), (iou_f1(1), iou_f1(2))


def _write_log(path: Path, history: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(LOG_FIELDS), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)


def init_from_checkpoint(model: nn.Module, path: Path, *, optional_channels: int) -> None:
    """Start ``model`` from a checkpoint of the same architecture; input channels it lacks (the
    availability flags) start at zero weight, so the network begins as the checkpoint.

    Raises:
        CheckpointError: the file is unreadable or its weights do not fit.
    """
    from models.checkpoint import load_checkpoint
    from models.errors import CheckpointError

    state = load_checkpoint(path).state_dict
    target = model.state_dict()
    adapted = {}
    for k, v in target.items():
        if k not in state:
            raise CheckpointError(f"{path}: has no weight {k}; start from a checkpoint of the "
                                  "same architecture and options")
        w = state[k].to(v.dtype)
        if w.shape != v.shape:
            extra = v.shape[1] - w.shape[1] if w.ndim == 4 and v.ndim == 4 else -1
            if extra != optional_channels or w.shape[0] != v.shape[0]:
                raise CheckpointError(f"{path}: weight {k} is {tuple(w.shape)}, the network "
                                      f"needs {tuple(v.shape)}")
            w = torch.cat([w, w.new_zeros((w.shape[0], extra, *w.shape[2:]))], dim=1)
        adapted[k] = w
    model.load_state_dict(adapted)
