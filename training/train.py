"""The training loop: ``minewatch train CONFIG.yaml``.

Writes into ``output.folder``: ``last.pt`` (every epoch, with the optimiser state to resume),
``best.pt`` (best validation score: the mean IoU of mining and deforestation), ``model.pt`` (the
best weights, the file to ship; float16 when ``half_checkpoint``), ``log.csv`` (losses and
metrics per epoch), ``MODEL_CARD.md`` and ``config.json``.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from models.checkpoint import (
    CheckpointMetadata,
    build_network,
    load_checkpoint,
    save_checkpoint,
)
from models.errors import BandMismatchError
from models.network import resolve_device
from models.normalization import Normalization, normalization_from_images
from models.registry import NETWORK_CLASSES, architecture_options, build_model, load_encoder_weights
from tiles.periods import Period
from training.augment import make_augment
from training.config import (
    ChipsData,
    CompositeOptions,
    ScenesData,
    SyntheticData,
    TrainConfig,
)
from training.data import (
    IGNORE_INDEX,
    LabelledImage,
    PatchDataset,
    assign_splits,
    read_chip_folder,
    scene_label_images,
    synthetic_images,
)
from training.errors import DatasetError, TrainingError
from training.losses import SegmentationLoss
from training.metrics import ConfusionMatrix

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]

LOG_FIELDS = (
    "epoch", "steps", "train_loss", "val_loss", "val_mining_iou", "val_mining_f1",
    "val_deforestation_iou", "val_deforestation_f1", "val_score", "lr", "seconds",
    "chips_per_s",
)


@dataclass
class TrainResult:
    """What a training run produced.

    Attributes:
        out_dir: the output folder.
        best_checkpoint: ``best.pt``.
        last_checkpoint: ``last.pt``.
        model_path: ``model.pt`` (the best weights, as shipped).
        best_score: best validation score (mean IoU of mining and deforestation).
        epochs: epochs run in this call.
        history: one row of ``log.csv`` per epoch.
        chips_per_s: mean training throughput.
    """

    out_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    model_path: Path
    best_score: float
    epochs: int
    history: list[dict[str, Any]] = field(default_factory=list)
    chips_per_s: float = 0.0


def load_labelled_images(
    data: ChipsData | ScenesData | SyntheticData,
    *,
    bands: list[str] | tuple[str, ...],
    composite: CompositeOptions,
    splits: tuple[str, ...] = ("train", "val", "test"),
) -> list[LabelledImage]:
    """The labelled images of a data config whose split is in ``splits`` (split set on each).

    Raises:
        DatasetError: the data is missing or malformed.
    """
    out: list[LabelledImage] = []
    if isinstance(data, SyntheticData):
        for reg in data.regions:
            if reg.split not in splits:
                continue
            out += synthetic_images(
                reg.world, data.workdir / reg.region, bands=bands, composite=composite,
                region=reg.region, split=reg.split,
            )
    elif isinstance(data, ChipsData):
        out = [im.select(bands) for im in read_chip_folder(data.folder, splits=splits)]
    else:
        import datetime as dt

        period = Period(
            dt.date.fromisoformat(data.period_start), dt.date.fromisoformat(data.period_end),
            f"{data.period_start}..{data.period_end}",
        )
        images = scene_label_images(
            data.scenes, data.labels, bands=bands, period=period, class_field=data.class_field,
            class_map=dict(data.class_map), region_field=data.region_field,
            margin_m=data.margin_m, composite=composite,
        )
        chosen = assign_splits([im.region for im in images], data.split)
        out = [
            LabelledImage(im.name, im.region, im.bands, im.image, im.label, im.crs, im.transform,
                          chosen[im.region])
            for im in images
            if chosen[im.region] in splits
        ]
    _check_regions(out)
    return out


def _check_regions(images: list[LabelledImage]) -> None:
    seen: dict[str, str | None] = {}
    for im in images:
        if seen.setdefault(im.region, im.split) != im.split:
            raise DatasetError(
                f"region {im.region!r} is in splits {seen[im.region]!r} and {im.split!r}; a "
                "region must belong to one split only"
            )


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch generator for data loaders."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def _pad_to(x: torch.Tensor, y: torch.Tensor, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    h, w = x.shape[-2:]
    ph, pw = (-h) % stride, (-w) % stride
    if ph or pw:
        x = nn.functional.pad(x, (0, pw, 0, ph))
        y = nn.functional.pad(y, (0, pw, 0, ph), value=IGNORE_INDEX)
    return x, y


def _autocast(device: torch.device, amp: bool) -> Any:
    if device.type == "cuda" and amp:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def validate(
    model: nn.Module,
    loader: DataLoader[Any],
    loss_fn: nn.Module,
    *,
    device: torch.device,
    amp: bool,
) -> tuple[float, ConfusionMatrix]:
    """Mean loss and confusion matrix (argmax) of ``model`` over ``loader``."""
    model.eval()
    cm = ConfusionMatrix(NETWORK_CLASSES, ignore_index=IGNORE_INDEX)
    total, n = 0.0, 0
    stride = int(getattr(model, "stride", 32))
    with torch.inference_mode():
        for x, y in loader:
            x, y = _pad_to(x, y, stride)
            x, y = x.to(device), y.to(device)
            with _autocast(device, amp):
                logits = model(x)
            total += float(loss_fn(logits.float(), y)) * len(x)
            n += len(x)
            cm.update(logits.argmax(1).cpu().numpy(), y.cpu().numpy())
    return total / max(n, 1), cm


def train(config: TrainConfig, *, progress: Progress | None = None) -> TrainResult:
    """Train a network as ``config`` says.

    Args:
        config: the training config.
        progress: ``progress(stage, done, total)`` after each step.

    Returns:
        The run's outputs and scores.

    Raises:
        DatasetError: the data is missing, malformed, or a split is empty.
        BandMismatchError: ``resume`` is a checkpoint of other bands.
        CheckpointError: ``resume`` or ``model.encoder_weights`` is unreadable.
        TrainingError: the loss is not finite.
    """
    out_dir = config.output.folder
    out_dir.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    generator = seed_everything(config.seed)
    bands = tuple(config.bands)

    images = load_labelled_images(
        config.data, bands=bands, composite=config.composite, splits=("train", "val")
    )
    train_images = [im for im in images if im.split == "train"]
    val_images = [im for im in images if im.split == "val"]
    if not train_images:
        raise DatasetError("no training images: give at least one region with split 'train'")
    log.info(
        "data: %d training image(s) of %d region(s), %d validation image(s) of %d region(s)",
        len(train_images), len({i.region for i in train_images}),
        len(val_images), len({i.region for i in val_images}),
    )

    resume = load_checkpoint(config.resume) if config.resume else None
    normalization: Normalization
    if resume is not None:
        meta = resume.metadata
        if tuple(meta.bands) != bands:
            raise BandMismatchError(
                f"resume {config.resume}: checkpoint bands {list(meta.bands)} differ from the "
                f"config's bands {list(bands)}; set bands to the checkpoint's or start afresh"
            )
        normalization = meta.normalization
        model = build_network(resume).train()
    else:
        normalization = normalization_from_images([im.image for im in train_images], bands,
                                                  seed=config.seed)
        model = build_model(config.model.architecture, in_channels=len(bands),
                            num_classes=len(NETWORK_CLASSES), options=config.model.options)
        if config.model.encoder_weights is not None:
            load_encoder_weights(model, config.model.encoder_weights, bands=bands,
                                 file_bands=config.model.encoder_bands)
    model.to(device)
    options = architecture_options(config.model.architecture, config.model.options)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("model %s (%d parameters) on %s", config.model.architecture, n_params, device)

    P = config.sampling.patch_size_px
    train_ds = PatchDataset(
        train_images, normalization=normalization, patch_px=P,
        n_patches=config.sampling.patches_per_epoch,
        positive_share=config.sampling.positive_share, edge_share=config.sampling.edge_share,
        augment=make_augment(config.augment), seed=config.seed,
    )
    val_loader = None
    if val_images:
        val_ds = PatchDataset(val_images, normalization=normalization, patch_px=2 * P,
                              stride_px=config.sampling.val_stride_px or 2 * P)
        val_loader = DataLoader(val_ds, batch_size=max(1, config.optim.batch_size // 4))

    opt = torch.optim.AdamW(model.parameters(), lr=config.optim.lr,
                            weight_decay=config.optim.weight_decay)
    steps_per_epoch = -(-len(train_ds) // config.optim.batch_size)
    total_steps = steps_per_epoch * config.optim.epochs
    if config.optim.max_steps:
        total_steps = min(total_steps, config.optim.max_steps)
    sched: torch.optim.lr_scheduler.LRScheduler
    if config.optim.schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.optim.lr,
                                                    total_steps=max(total_steps, 1), pct_start=0.15)
    elif config.optim.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(total_steps, 1))
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    loss_fn = SegmentationLoss(config.loss).to(device)

    start_epoch, step, best = 0, 0, -1.0
    history: list[dict[str, Any]] = []
    if resume is not None and resume.training_state:
        st = resume.training_state
        opt.load_state_dict(st["optimizer"])
        fresh = {k: getattr(sched, k) for k in ("total_steps", "_schedule_phases", "T_max")
                 if hasattr(sched, k)}
        sched.load_state_dict(st["scheduler"])
        # A resumed run may have more epochs: keep the schedule of the new total length.
        for k, v in fresh.items():
            setattr(sched, k, v)
        start_epoch, step, best = int(st["epoch"]), int(st["step"]), float(st["best_score"])
        history = list(st.get("history", []))
        log.info("resumed from %s at epoch %d (step %d)", config.resume, start_epoch, step)

    meta = CheckpointMetadata(
        name=config.model.name, version=config.model.version,
        architecture=config.model.architecture, options=options, bands=bands,
        normalization=normalization, classes=NETWORK_CLASSES, patch_size_px=P,
        training_data=describe_data(config, train_images, val_images),
        extra={"config": json.loads(config.model_dump_json()), "parameters": n_params,
               "torch": str(torch.__version__)},
    )
    log_path = out_dir / "log.csv"
    (out_dir / "config.json").write_text(config.model_dump_json(indent=2) + "\n", encoding="utf-8")
    best_path, last_path = out_dir / "best.pt", out_dir / "last.pt"
    model_path = out_dir / "model.pt"
    rates: list[float] = []
    epochs_run = 0
    for epoch in range(start_epoch, config.optim.epochs):
        if config.optim.max_steps and step >= config.optim.max_steps:
            break
        train_ds.resample(epoch)
        loader = DataLoader(train_ds, batch_size=config.optim.batch_size, shuffle=True,
                            generator=generator, drop_last=len(train_ds) > config.optim.batch_size)
        model.train()
        t0 = time.monotonic()
        losses: list[float] = []
        chips = 0
        for i, (x, y) in enumerate(loader, start=1):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with _autocast(device, config.amp):
                logits = model(x)
            loss = loss_fn(logits.float(), y)
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"epoch {epoch + 1} step {step + 1}: loss is {float(loss)}; lower optim.lr"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step < total_steps:
                sched.step()
            step += 1
            chips += len(x)
            losses.append(float(loss.detach()))
            if progress:
                progress(f"epoch {epoch + 1}/{config.optim.epochs}", i, len(loader))
            if config.optim.max_steps and step >= config.optim.max_steps:
                break
        seconds = time.monotonic() - t0
        rate = chips / max(seconds, 1e-9)
        rates.append(rate)
        row: dict[str, Any] = {
            "epoch": epoch + 1, "steps": step, "train_loss": round(float(np.mean(losses)), 5),
            "lr": f"{opt.param_groups[0]['lr']:.3g}", "seconds": round(seconds, 1),
            "chips_per_s": round(rate, 2),
        }
        score = -float(np.mean(losses))
        if val_loader is not None:
            vloss, cm = validate(model, val_loader, loss_fn, device=device, amp=config.amp)
            mi, de = cm.scores("mining"), cm.scores("deforestation")
            score = (mi.iou + de.iou) / 2
            row.update({"val_loss": round(vloss, 5), "val_mining_iou": round(mi.iou, 4),
                        "val_mining_f1": round(mi.f1, 4), "val_deforestation_iou": round(de.iou, 4),
                        "val_deforestation_f1": round(de.f1, 4), "val_score": round(score, 4)})
        history.append(row)
        _write_log(log_path, history)
        log.info("epoch %d: %s", epoch + 1, row)
        metrics = {"validation": {k: v for k, v in row.items() if k.startswith("val_")},
                   "epoch": epoch + 1}
        if score > best:
            best = score
            save_checkpoint(best_path, model, _with(meta, metrics))
        state = {"epoch": epoch + 1, "step": step, "best_score": best,
                 "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                 "history": history}
        save_checkpoint(last_path, model, _with(meta, metrics), training_state=state)
        epochs_run += 1
    if not best_path.is_file():
        save_checkpoint(best_path, model, _with(meta, {}))
    best_ckpt = load_checkpoint(best_path)
    save_checkpoint(model_path, build_network(best_ckpt), best_ckpt.metadata,
                    half=config.half_checkpoint)
    mean_rate = float(np.mean(rates)) if rates else 0.0
    result = TrainResult(out_dir, best_path, last_path, model_path, best, epochs_run, history,
                         mean_rate)
    write_model_card(out_dir / "MODEL_CARD.md", load_checkpoint(model_path).metadata,
                     history=history, chips_per_s=mean_rate, device=str(device))
    return result


def _with(meta: CheckpointMetadata, metrics: dict[str, Any]) -> CheckpointMetadata:
    from dataclasses import replace

    return replace(meta, metrics=metrics)


def _write_log(path: Path, history: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(LOG_FIELDS), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)


def describe_data(
    config: TrainConfig, train_images: list[LabelledImage], val_images: list[LabelledImage]
) -> dict[str, Any]:
    """What the network was trained on, for the checkpoint's metadata."""

    def regions(images: list[LabelledImage]) -> list[str]:
        return sorted({im.region for im in images})

    def pixels(images: list[LabelledImage], code: int) -> int:
        return int(sum(int((im.label == code).sum()) for im in images))

    out: dict[str, Any] = {
        "kind": config.data.kind,
        "train_regions": regions(train_images),
        "val_regions": regions(val_images),
        "train_images": len(train_images),
        "train_pixels": int(sum(im.label.size for im in train_images)),
        "train_mining_pixels": pixels(train_images, 1),
        "train_deforestation_pixels": pixels(train_images, 2),
        "composite": config.composite.model_dump(),
    }
    if isinstance(config.data, SyntheticData):
        out["worlds"] = [
            {"region": r.region, "split": r.split, **r.world.model_dump(mode="json")}
            for r in config.data.regions
        ]
    return out


def write_model_card(
    path: Path,
    meta: CheckpointMetadata,
    *,
    history: list[dict[str, Any]],
    chips_per_s: float,
    device: str,
) -> Path:
    """A Markdown model card of a trained checkpoint (what, on what data, how well)."""
    last = history[-1] if history else {}
    lines = [
        f"# {meta.name} {meta.version}",
        "",
        f"- architecture: `{meta.architecture}` {json.dumps(meta.options)}",
        f"- parameters: {meta.extra.get('parameters', '?')}",
        f"- input bands: {', '.join(meta.bands)} (surface reflectance 0..1, cloud-masked "
        "period composites)",
        f"- classes: {', '.join(meta.classes)}",
        f"- patch size: {meta.patch_size_px} px",
        f"- weights sha256: `{meta.weights_sha256}`",
        f"- trained on {device}, {len(history)} epoch(s), {chips_per_s:.1f} chips/s",
        "",
        "## Training data",
        "",
        "```json",
        json.dumps({k: v for k, v in meta.training_data.items() if k != "worlds"}, indent=2),
        "```",
        "",
        "## Validation (last epoch)",
        "",
        "| metric | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in last.items()],
        "",
        "Validation regions were never seen in training. Run `minewatch evaluate` for test "
        "metrics; real deployments should fine-tune on real labels.",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
