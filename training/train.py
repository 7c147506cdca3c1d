"""The training loop: ``minewatch train CONFIG.yaml``.

Writes into ``output.folder``: ``last.pt`` (every epoch, with the optimiser state to resume),
``best.pt`` (best validation score, :func:`training.mixed.fit`), ``model.pt`` (the
best weights, the file to ship; float16 when ``half_checkpoint``), ``log.csv`` (losses and
metrics per epoch), ``MODEL_CARD.md`` and ``config.json``.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.checkpoint import Checkpoint, CheckpointMetadata, build_network, load_checkpoint
from models.errors import BandMismatchError
from models.network import resolve_device
from models.normalization import Normalization, normalization_from_images
from models.registry import NETWORK_CLASSES, architecture_options, build_model, load_encoder_weights
from training.augment import make_augment
from training.chips import TOA_OFFSETS, chip_arrays
from training.config import (
    ChipCsvData,
    GalleryData,
    SyntheticData,
    TrainConfig,
)
from training.data import LabelledImage, load_labelled_images
from training.dataset import PatchDataset
from training.errors import DatasetError
from training.losses import SegmentationLoss
from training.mixed import ChipAugment, FitRecipe, fit, init_from_checkpoint
from training.patches import ChipGroup, read_chip_csv, read_gallery, split_groups
from training.patches import summary as chip_summary

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]

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


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch generator for data loaders."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def load_chip_groups(
    data: GalleryData | ChipCsvData, *, splits: tuple[str, ...] | None = None
) -> list[ChipGroup]:
    """The chip groups of patch-labelled data, split as its config says (every chip when it
    names no split; then ``splits`` is ignored).

    Raises:
        DatasetError: the data is missing or malformed, or a split leaks.
    """
    if isinstance(data, GalleryData):
        groups = read_gallery(data.folder, regions=data.regions, chip_px=data.chip_px,
                              include_unused=data.include_unused, exclude=data.exclude)
    else:
        groups = read_chip_csv(data.folder, bands=data.bands, scale=data.scale,
                               radiometry=data.radiometry, regions=data.regions)
    if data.split is None:
        return groups
    groups = split_groups(groups, by=data.split.by, val=data.split.val, test=data.split.test,
                          seed=data.split.seed)
    return [g for g in groups if splits is None or g.split in splits]


def train(config: TrainConfig, *, progress: Progress | None = None) -> TrainResult:
    """Train a network as ``config`` says: pixel labels (``data``), patch labels
    (``patches``), or both in each step (:func:`training.mixed.fit`).

    Args:
        config: the training config.
        progress: ``progress(stage, done, total)`` after each step.

    Returns:
        The run's outputs and scores.

    Raises:
        DatasetError: the data is missing, malformed, or a split is empty.
        BandMismatchError: ``resume`` is a checkpoint of other bands.
        CheckpointError: ``resume``, ``model.init_from`` or ``model.encoder_weights`` is
            unreadable.
        TrainingError: the loss is not finite.
    """
    out_dir = config.output.folder
    out_dir.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    seed_everything(config.seed)
    bands = tuple(config.bands)
    train_images, val_images = _pixel_images(config, bands)
    chip_groups: list[ChipGroup] = []
    if config.patches is not None:
        chip_groups = load_chip_groups(config.patches.data, splits=("train", "val"))
        if not any(g.split == "train" for g in chip_groups):
            raise DatasetError("patches: no chip in split 'train'")
        log.info("chips: %s", chip_summary(chip_groups))
    resume = load_checkpoint(config.resume) if config.resume else None
    model, normalization = _network(config, bands, train_images, resume)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("model %s (%d parameters) on %s", config.model.architecture, n_params, device)
    pixel_train, pixel_val = _pixel_datasets(config, normalization, train_images, val_images)
    chips_train = chips_val = None
    if config.patches is not None:
        chips_train = chip_arrays([g for g in chip_groups if g.split == "train"], bands)
        val_groups = [g for g in chip_groups if g.split == "val"]
        chips_val = chip_arrays(val_groups, bands) if val_groups else None
    meta = _metadata(config, normalization, n_params,
                     describe_data(config, train_images, val_images, chip_groups))
    (out_dir / "config.json").write_text(config.model_dump_json(indent=2) + "\n", encoding="utf-8")
    fitted = fit(
        model, meta=meta, recipe=recipe_of(config), out_dir=out_dir, device=device,
        pixel_train=pixel_train, pixel_val=pixel_val,
        pixel_loss=SegmentationLoss(config.loss).to(device) if pixel_train is not None else None,
        chips_train=chips_train, chips_val=chips_val,
        resume_state=resume.training_state if resume is not None else None,
        half_checkpoint=config.half_checkpoint, progress=progress,
    )
    model_path = out_dir / "model.pt"
    result = TrainResult(out_dir, out_dir / "best.pt", out_dir / "last.pt", model_path,
                         fitted.best_score, fitted.epochs, fitted.history, fitted.chips_per_s)
    write_model_card(out_dir / "MODEL_CARD.md", load_checkpoint(model_path).metadata,
                     history=fitted.history, chips_per_s=fitted.chips_per_s, device=str(device))
    return result


def _pixel_images(
    config: TrainConfig, bands: tuple[str, ...]
) -> tuple[list[LabelledImage], list[LabelledImage]]:
    """The pixel-labelled training and validation images (none without ``data``).

    Raises:
        DatasetError: the data is missing or malformed, or no image is in split 'train'.
    """
    if config.data is None:
        return [], []
    images = load_labelled_images(
        config.data, bands=bands, composite=config.composite, splits=("train", "val")
    )
    train_images = [im for im in images if im.split == "train"]
    val_images = [im for im in images if im.split == "val"]
    if not train_images:
        raise DatasetError("no training images: give at least one region with split 'train'")
    log.info(
        "pixel data: %d training image(s) of %d region(s), %d validation image(s) of %d "
        "region(s)", len(train_images), len({i.region for i in train_images}),
        len(val_images), len({i.region for i in val_images}),
    )
    return train_images, val_images


def _network(
    config: TrainConfig,
    bands: tuple[str, ...],
    train_images: list[LabelledImage],
    resume: Checkpoint | None,
) -> tuple[nn.Module, Normalization]:
    """The network to train and its input normalisation: the checkpoint resumed, else a new
    network (started from ``model.init_from`` or ``model.encoder_weights`` when given).

    Raises:
        BandMismatchError: ``resume`` is a checkpoint of other bands.
        DatasetError: nothing sets the normalisation (chips alone, no ``model.init_from``).
        CheckpointError: ``model.init_from`` or ``model.encoder_weights`` is unreadable.
    """
    if resume is not None:
        meta0 = resume.metadata
        if tuple(meta0.bands) != bands:
            raise BandMismatchError(
                f"resume {config.resume}: checkpoint bands {list(meta0.bands)} differ from the "
                f"config's bands {list(bands)}; set bands to the checkpoint's or start afresh"
            )
        return build_network(resume).train(), meta0.normalization
    init_from = config.model.init_from
    normalization: Normalization
    if train_images:
        normalization = normalization_from_images(
            [im.image for im in train_images], bands, seed=config.seed)
    elif init_from is not None:
        normalization = load_checkpoint(init_from).metadata.normalization
    else:
        raise DatasetError(
            "chips alone cannot set the normalisation of bands they lack: give data "
            "(pixel labels) or model.init_from"
        )
    if init_from is not None:
        init_norm = load_checkpoint(init_from).metadata.normalization
        if tuple(init_norm.bands) == bands:
            normalization = init_norm  # the network starts in its own units
    model = build_model(config.model.architecture,
                        in_channels=len(bands) + len(config.optional_bands),
                        num_classes=len(NETWORK_CLASSES), options=config.model.options)
    if init_from is not None:
        init_from_checkpoint(model, init_from, optional_channels=len(config.optional_bands))
    elif config.model.encoder_weights is not None:
        load_encoder_weights(model, config.model.encoder_weights, bands=bands,
                             file_bands=config.model.encoder_bands)
    return model, normalization


def _pixel_datasets(
    config: TrainConfig,
    normalization: Normalization,
    train_images: list[LabelledImage],
    val_images: list[LabelledImage],
) -> tuple[PatchDataset | None, PatchDataset | None]:
    """Random augmented training patches and a grid of validation patches twice their side."""
    P = config.sampling.patch_size_px
    pixel_train = pixel_val = None
    if train_images:
        pixel_train = PatchDataset(
            train_images, normalization=normalization, patch_px=P,
            n_patches=config.sampling.patches_per_epoch,
            positive_share=config.sampling.positive_share, edge_share=config.sampling.edge_share,
            augment=make_augment(config.augment), seed=config.seed,
        )
    if val_images:
        pixel_val = PatchDataset(val_images, normalization=normalization, patch_px=2 * P,
                                 stride_px=config.sampling.val_stride_px or 2 * P)
    return pixel_train, pixel_val


def _metadata(
    config: TrainConfig,
    normalization: Normalization,
    n_params: int,
    training_data: dict[str, Any],
) -> CheckpointMetadata:
    """The checkpoint metadata of the run (the config, the data, and the top-of-atmosphere
    offsets its L1C chips and scenes were brought to surface-like reflectance with, which scans
    of L1C subtract too)."""
    extra: dict[str, Any] = {"config": json.loads(config.model_dump_json()),
                             "parameters": n_params, "torch": str(torch.__version__),
                             "toa_offsets": dict(TOA_OFFSETS)}
    return CheckpointMetadata(
        name=config.model.name, version=config.model.version,
        architecture=config.model.architecture,
        options=architecture_options(config.model.architecture, config.model.options),
        bands=tuple(config.bands), normalization=normalization, classes=NETWORK_CLASSES,
        patch_size_px=config.sampling.patch_size_px, training_data=training_data,
        extra=extra, optional_bands=tuple(config.optional_bands),
    )


def recipe_of(config: TrainConfig) -> FitRecipe:
    """The loop's recipe of a training config."""
    o, a, p = config.optim, config.augment, config.patches
    chip_aug = ChipAugment(
        flips=a.flips, rot90=a.rot90, gain_sigma=a.gain_sigma, band_gain_sigma=a.band_gain_sigma,
        offset_sigma=a.offset_sigma, noise_sigma=a.noise_sigma, contrast_sigma=a.contrast_sigma,
        toa_offset_sigma=p.toa_offset_sigma if p is not None else 0.0,
    )
    return FitRecipe(
        epochs=o.epochs, steps_per_epoch=o.steps_per_epoch, batch_size=o.batch_size,
        chip_batch_size=p.chip_batch_size if p is not None else 64, lr=o.lr,
        weight_decay=o.weight_decay, schedule=o.schedule, max_steps=o.max_steps,
        ema_decay=o.ema_decay,
        mil_weight=p.weight if p is not None else 0.0,
        mil_pixel_weight=p.pixel_weight if p is not None else 0.0,
        pool_k=p.pool_k if p is not None else 16,
        band_dropout=config.band_dropout if config.optional_bands else 0.0,
        min_specificity=p.min_specificity if p is not None else 0.97,
        amp=config.amp, seed=config.seed, chip_augment=chip_aug,
    )


def describe_data(
    config: TrainConfig,
    train_images: list[LabelledImage],
    val_images: list[LabelledImage],
    chip_groups: list[ChipGroup] | None = None,
) -> dict[str, Any]:
    """What the network was trained on, for the checkpoint's metadata."""

    def regions(images: list[LabelledImage]) -> list[str]:
        return sorted({im.region for im in images})

    def pixels(images: list[LabelledImage], code: int) -> int:
        return int(sum(int((im.label == code).sum()) for im in images))

    out: dict[str, Any] = {
        "kind": config.data.kind if config.data is not None else None,
        "train_regions": regions(train_images),
        "val_regions": regions(val_images),
        "train_images": len(train_images),
        "train_pixels": int(sum(im.label.size for im in train_images)),
        "train_mining_pixels": pixels(train_images, 1),
        "train_deforestation_pixels": pixels(train_images, 2),
        "composite": config.composite.model_dump(),
    }
    if chip_groups:
        out["patches"] = {
            "kind": config.patches.data.kind if config.patches else None,
            "chips": chip_summary(chip_groups),
            "sets": {s: sorted({g.set for g in chip_groups if g.split == s})
                     for s in ("train", "val")},
            "regions": {s: sorted({g.region for g in chip_groups if g.split == s})
                        for s in ("train", "val")},
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
        f"- checkpoint sha256: `{meta.sha256}` (weights and metadata; verified on load)",
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
