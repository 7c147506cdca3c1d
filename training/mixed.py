"""One training loop for pixel-labelled patches (the synthetic world, chip folders) and
patch-labelled real chips (the galleries); it validates with the chip scorer that
``minewatch evaluate`` shares (:mod:`training.chips`).

Light on purpose (NumPy, PyTorch, torchvision; no GDAL): ``minewatch train`` calls :func:`fit`
with data it composited, and a GPU machine without GDAL can call it with arrays it was sent.

**Bands.** The network takes its bands (NaN -> band mean after normalisation) and one
availability flag per optional band (:func:`models.checkpoint.network_input`). Real gallery
chips have only B02 B03 B04: their NIR/SWIR are absent and flagged 0. Synthetic patches have
every band; with ``band_dropout`` their optional bands are dropped (and flagged 0) at random, so
the network learns both modes from pixel labels and uses NIR/SWIR when a scene has them.

**Top of atmosphere.** The network works in surface reflectance (L2A, what scans composite).
Chips of top-of-atmosphere reflectance (L1C, the galleries) are brought there by subtracting a
per-band path-radiance offset (:data:`tiles.radiometry.TOA_OFFSETS`, stored in the checkpoint),
jittered in training so the network tolerates the scene-to-scene spread of the atmosphere.
"""

from __future__ import annotations

import csv
import logging
import re
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
from training.chips import (
    TOA_OFFSETS,
    ChipArrays,
    autocast,
    chip_arrays,
    chip_probabilities,
    chip_scores,
    network_batch,
    pad_to_multiple,
)
from training.errors import TrainingError
from training.patches import IGNORE_INDEX
from training.patchlevel import (
    DEFAULT_POOL_K,
    mil_loss,
    patch_scores,
    roc_auc,
    threshold_for_specificity,
)

# TOA_OFFSETS, ChipArrays and chip_arrays (training.chips) too: the loop's callers take them here.
__all__ = [
    "LOG_FIELDS",
    "TOA_OFFSETS",
    "ChipArrays",
    "ChipAugment",
    "FitRecipe",
    "FitResult",
    "Progress",
    "chip_arrays",
    "fit",
    "init_from_checkpoint",
]

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]


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
    run = _Run.start(model, meta, recipe, device, pixel_train=pixel_train,
                     chips_train=chips_train)
    if resume_state:
        run.resume(resume_state)
    out_dir.mkdir(parents=True, exist_ok=True)
    for epoch in range(run.start_epoch, recipe.epochs):
        if run.done():
            break
        tally = _train_epoch(run, epoch, pixel_train, pixel_loss, progress)
        row = _train_row(run, epoch, tally)
        score, threshold = _validate(run, row, tally, pixel_val, pixel_loss, chips_val)
        _save_epoch(run, out_dir, epoch, row, score, threshold)
    return _finish(run, out_dir, half_checkpoint)


@dataclass
class _Run:
    """What one :func:`fit` carries from step to step: the model, its optimiser, schedule and
    weight average, the random draws, and what a resumed run restores (the epoch, the step, the
    best score, the history)."""

    model: nn.Module
    meta: CheckpointMetadata
    recipe: FitRecipe
    device: torch.device
    gen: torch.Generator
    sampler: _ChipSampler | None
    steps_per_epoch: int
    total: int
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    ema: AveragedModel | None
    start_epoch: int = 0
    step: int = 0
    best: float = -1.0
    best_threshold: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        model: nn.Module,
        meta: CheckpointMetadata,
        recipe: FitRecipe,
        device: torch.device,
        *,
        pixel_train: Dataset[Any] | None,
        chips_train: ChipArrays | None,
    ) -> _Run:
        """Seed the draws, put the model on ``device`` and set up its optimiser, schedule
        (over every step of the run) and weight average."""
        torch.manual_seed(recipe.seed)
        gen = torch.Generator().manual_seed(recipe.seed)
        model.to(device)
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
        opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr,
                                weight_decay=recipe.weight_decay)
        ema: AveragedModel | None = None
        if recipe.ema_decay > 0:
            ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(recipe.ema_decay),
                                use_buffers=True)
        return cls(model, meta, recipe, device, gen, sampler, steps_per_epoch, total, opt,
                   _schedule(opt, recipe, total), ema)

    def resume(self, state: dict[str, Any]) -> None:
        """Continue from ``last.pt``'s training state; the schedule keeps this run's length (a
        resumed run may have more epochs)."""
        self.opt.load_state_dict(state["optimizer"])
        fresh = {k: getattr(self.sched, k) for k in ("total_steps", "_schedule_phases", "T_max")
                 if hasattr(self.sched, k)}
        self.sched.load_state_dict(state["scheduler"])
        for k, v in fresh.items():
            setattr(self.sched, k, v)
        self.start_epoch, self.step = int(state["epoch"]), int(state["step"])
        self.best = float(state["best_score"])
        self.history = list(state.get("history", []))
        if self.ema is not None and "ema" in state:
            self.ema.load_state_dict(state["ema"])

    @property
    def net(self) -> nn.Module:
        """What is validated and kept: the weight average when there is one."""
        return self.ema.module if self.ema is not None else self.model

    @property
    def optional_idx(self) -> list[int]:
        return [self.meta.bands.index(b) for b in self.meta.optional_bands]

    @property
    def mining(self) -> int:
        return self.meta.classes.index("mining")

    def done(self) -> bool:
        """Whether the run has taken ``max_steps`` steps."""
        return bool(self.recipe.max_steps and self.step >= self.recipe.max_steps)


@dataclass
class _Tally:
    """The losses of one epoch's steps and the samples they saw."""

    losses: list[float] = field(default_factory=list)
    pixel: list[float] = field(default_factory=list)
    mil: list[float] = field(default_factory=list)
    seen: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.seen / max(self.seconds, 1e-9)


def _train_epoch(
    run: _Run,
    epoch: int,
    pixel_train: Dataset[Any] | None,
    pixel_loss: nn.Module | None,
    progress: Progress | None,
) -> _Tally:
    """One epoch's optimiser steps (fewer when the run reaches ``max_steps``)."""
    pixel_iter: Iterator[tuple[torch.Tensor, torch.Tensor]] | None = None
    if pixel_train is not None:
        if hasattr(pixel_train, "resample"):
            pixel_train.resample(epoch)
        pixel_iter = _pixel_batches(pixel_train, run.recipe.batch_size, run.gen)
    run.model.train()
    t0 = time.monotonic()
    tally = _Tally()
    for i in range(1, run.steps_per_epoch + 1):
        loss = _step_loss(run, pixel_iter, pixel_loss, tally)
        if not torch.isfinite(loss):
            raise TrainingError(
                f"epoch {epoch + 1} step {run.step + 1}: loss is {float(loss)}; lower optim.lr"
            )
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        run.opt.step()
        if run.ema is not None:
            run.ema.update_parameters(run.model)
        if run.step < run.total:
            run.sched.step()
        run.step += 1
        tally.losses.append(float(loss.detach()))
        if progress:
            progress(f"epoch {epoch + 1}/{run.recipe.epochs}", i, run.steps_per_epoch)
        if run.done():
            break
    tally.seconds = time.monotonic() - t0
    return tally


def _step_loss(
    run: _Run,
    pixel_iter: Iterator[tuple[torch.Tensor, torch.Tensor]] | None,
    pixel_loss: nn.Module | None,
    tally: _Tally,
) -> torch.Tensor:
    """One step's loss: the pixel loss of a batch of pixel patches plus ``mil_weight`` times the
    multiple-instance loss of a batch of chips, from one forward pass over both (batch norm then
    sees in training the mixture its running statistics describe in evaluation)."""
    recipe, optional_idx = run.recipe, run.optional_idx
    xs: list[torch.Tensor] = []
    y = None
    if pixel_iter is not None:
        x, y = next(pixel_iter)
        x, y = x.to(run.device, non_blocking=True), y.to(run.device, non_blocking=True)
        xs.append(_with_flags(x, optional_idx, recipe.band_dropout, run.gen))
    if run.sampler is not None:
        cx, cp, cy, _ = run.sampler.batch()
        xin, valid = network_batch(cx, cp, run.meta.normalization, optional_idx)
        h, w = xin.shape[-2:]
        stride = int(getattr(run.model, "stride", 32))
        side = -(-max(h, w) // stride) * stride
        xin = pad_to_multiple(xin, side)
        if xs:  # pixel patches cropped to the chips' padded side
            xs[0], y = _crop(xs[0], y, side, run.gen)
        xs.append(xin)
    with autocast(run.device, recipe.amp):
        logits = run.model(torch.cat(xs) if len(xs) > 1 else xs[0])
    loss = torch.zeros((), device=run.device)
    n_pix = len(xs[0]) if pixel_iter is not None else 0
    if pixel_iter is not None:
        pl = pixel_loss(logits[:n_pix].float(), y)  # type: ignore[misc]
        loss = loss + pl
        tally.pixel.append(float(pl.detach()))
        tally.seen += n_pix
    if run.sampler is not None:
        ml = mil_loss(logits[n_pix:, :, :h, :w], cy, valid, k=recipe.pool_k,
                      mining_index=run.mining, pixel_weight=recipe.mil_pixel_weight)
        loss = loss + recipe.mil_weight * ml
        tally.mil.append(float(ml.detach()))
        tally.seen += len(cy)
    return loss


def _train_row(run: _Run, epoch: int, tally: _Tally) -> dict[str, Any]:
    """The training half of an epoch's row of ``log.csv``."""
    run.rates.append(tally.rate)
    row: dict[str, Any] = {
        "epoch": epoch + 1, "steps": run.step, "train_loss": round(float(np.mean(tally.losses)), 5),
        "lr": f"{run.opt.param_groups[0]['lr']:.3g}", "seconds": round(tally.seconds, 1),
        "chips_per_s": round(tally.rate, 2),
    }
    if tally.pixel:
        row["train_pixel_loss"] = round(float(np.mean(tally.pixel)), 5)
    if tally.mil:
        row["train_mil_loss"] = round(float(np.mean(tally.mil)), 5)
    return row


def _validate(
    run: _Run,
    row: dict[str, Any],
    tally: _Tally,
    pixel_val: Dataset[Any] | None,
    pixel_loss: nn.Module | None,
    chips_val: ChipArrays | None,
) -> tuple[float, float | None]:
    """Validate the kept network into ``row``; return the epoch's score and chip threshold.
    The real chips weigh as much as the synthetic pixels together; with no validation data
    the score is minus the training loss."""
    parts: list[float] = []
    if pixel_val is not None and pixel_loss is not None:
        parts += _pixel_metrics(run, row, pixel_val, pixel_loss)
    threshold = None
    if chips_val is not None and len(np.unique(chips_val.labels)) == 2:
        sensitivity, threshold = _chip_metrics(run, row, chips_val)
        parts = [sensitivity, *parts] if parts else [sensitivity]
        if len(parts) > 1:
            parts = [parts[0], float(np.mean(parts[1:]))]
    score = float(np.mean(parts)) if parts else -float(np.mean(tally.losses))
    row["val_score"] = round(score, 4)
    return score, threshold


def _pixel_metrics(
    run: _Run, row: dict[str, Any], pixel_val: Dataset[Any], pixel_loss: nn.Module
) -> list[float]:
    """Pixel validation into ``row``; returns the IoUs of mining and deforestation."""
    vloss, (mi, de) = _validate_pixels(run.net, pixel_val, pixel_loss, run.optional_idx,
                                        device=run.device, amp=run.recipe.amp,
                                        batch_size=max(1, run.recipe.batch_size // 4))
    row.update({"val_loss": round(vloss, 5), "val_mining_iou": round(mi[0], 4),
                "val_mining_f1": round(mi[1], 4), "val_deforestation_iou": round(de[0], 4),
                "val_deforestation_f1": round(de[1], 4)})
    return [mi[0], de[0]]


def _chip_metrics(
    run: _Run, row: dict[str, Any], chips_val: ChipArrays
) -> tuple[float, float]:
    """Chip validation into ``row``; returns the sensitivity at the threshold reaching
    ``min_specificity``, and that threshold."""
    recipe = run.recipe
    prob = chip_probabilities(run.net, chips_val, normalization=run.meta.normalization,
                              optional_idx=run.optional_idx, mining_index=run.mining,
                              device=run.device, amp=recipe.amp)
    scores = chip_scores(prob, recipe.pool_k)
    threshold = threshold_for_specificity(scores, chips_val.labels, recipe.min_specificity)
    ps = patch_scores(scores, chips_val.labels, threshold, kinds=chips_val.kinds)
    far = max((v["rate"] for v in ps.false_alarms_by_kind.values()), default=0.0)
    row.update({"val_chip_auc": round(roc_auc(scores, chips_val.labels), 4),
                "val_chip_sensitivity": round(ps.sensitivity, 4),
                "val_chip_specificity": round(ps.specificity, 4),
                "val_chip_threshold": round(threshold, 5),
                "val_chip_max_kind_far": round(far, 4)})
    return ps.sensitivity, threshold


def _save_epoch(
    run: _Run,
    out_dir: Path,
    epoch: int,
    row: dict[str, Any],
    score: float,
    threshold: float | None,
) -> None:
    """Log the epoch's row; write ``best.pt`` when the score is the best yet and ``last.pt``
    (with the training state to resume) always."""
    run.history.append(row)
    _write_log(out_dir / "log.csv", run.history)
    log.info("epoch %d: %s", epoch + 1, row)
    metrics = {"validation": {k: v for k, v in row.items() if k.startswith("val_")},
               "epoch": epoch + 1}
    epoch_meta = _with(run.meta, metrics, threshold, run.recipe.pool_k)
    best_path = out_dir / "best.pt"
    if score > run.best or not best_path.is_file():
        run.best = max(score, run.best)
        run.best_threshold = threshold
        save_checkpoint(best_path, run.net, epoch_meta)
    state = {"epoch": epoch + 1, "step": run.step, "best_score": run.best,
             "optimizer": run.opt.state_dict(), "scheduler": run.sched.state_dict(),
             "history": run.history}
    if run.ema is not None:
        state["ema"] = run.ema.state_dict()
    save_checkpoint(out_dir / "last.pt", run.model, epoch_meta, training_state=state)


def _finish(run: _Run, out_dir: Path, half_checkpoint: bool) -> FitResult:
    """Write ``model.pt`` (the best weights, as shipped) and say what the run produced."""
    from models.checkpoint import build_network, load_checkpoint

    best_path = out_dir / "best.pt"
    if not best_path.is_file():
        save_checkpoint(best_path, run.net, _with(run.meta, {}, None, run.recipe.pool_k))
    best_ckpt = load_checkpoint(best_path)
    save_checkpoint(out_dir / "model.pt", build_network(best_ckpt), best_ckpt.metadata,
                    half=half_checkpoint)
    saved = best_ckpt.metadata.extra.get("thresholds", {}).get("mining")
    return FitResult(run.best, saved if saved is not None else run.best_threshold, run.history,
                     float(np.mean(run.rates)) if run.rates else 0.0, len(run.rates))


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
        x = pad_to_multiple(x, stride)
        y = pad_to_multiple(y, stride, value=IGNORE_INDEX)
        x, y = x.to(device), y.to(device)
        if optional_idx:
            flags = torch.ones((x.shape[0], len(optional_idx), *x.shape[2:]), device=device)
            x = torch.cat([x, flags], dim=1)
        with autocast(device, amp):
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


def init_from_checkpoint(
    model: nn.Module, path: Path, *, optional_channels: int, grow: bool = False
) -> None:
    """Start ``model`` from a checkpoint of the same architecture; input channels it lacks (the
    availability flags) start at zero weight, so the network begins as the checkpoint.

    With ``grow``, ``model`` may have more blocks per encoder stage than the checkpoint: the
    checkpoint fills the first blocks of each stage and each added block starts as an identity
    (its last batch norm scaled to zero; its input is already past a ReLU), Net2Net's deepening
    (Chen et al. 2016).

    Raises:
        CheckpointError: the file is unreadable, or its weights do not fit (including a
            checkpoint with weights the network lacks, which would otherwise be dropped).
    """
    from models.checkpoint import load_checkpoint
    from models.errors import CheckpointError

    state = load_checkpoint(path).state_dict
    target = model.state_dict()
    unused = [k for k in state if k not in target]
    if unused:
        raise CheckpointError(f"{path}: has weights this network lacks ({unused[0]}, "
                              f"{len(unused)} in all); start from a checkpoint of the same "
                              "architecture and options, or one with fewer blocks")
    added = re.compile(r"encoder\.stages\.\d+\.\d+\.")
    adapted = {}
    for k, v in target.items():
        if k not in state:
            if grow and added.match(k):
                adapted[k] = torch.zeros_like(v) if k.endswith("bn2.weight") else v
                continue
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
