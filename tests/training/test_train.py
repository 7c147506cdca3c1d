from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from models.checkpoint import load_checkpoint
from models.normalization import Normalization
from models.registry import build_model
from training.augment import make_augment
from training.config import AugmentConfig, LossConfig, TrainConfig
from training.data import LabelledImage
from training.dataset import PatchDataset
from training.losses import SegmentationLoss
from training.train import seed_everything, train

from .conftest import BANDS, TINY_OPTIONS


def test_a_few_steps_lower_the_loss(planted_images: list[LabelledImage]) -> None:
    seed_everything(0)
    norm = Normalization(BANDS, (0.05,) * 6, (0.1,) * 6)
    ds = PatchDataset(planted_images, normalization=norm, patch_px=32, n_patches=16,
                      positive_share=1.0, edge_share=0.0, seed=0)
    x, y = map(torch.stack, zip(*[ds[i] for i in range(len(ds))], strict=True))
    model = build_model("unet-slim", in_channels=6, options={"widths": [8, 16], "blocks": [1, 1]})
    loss_fn = SegmentationLoss(LossConfig())
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(12):
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0]


def test_focal_dice_loss_is_finite_with_all_ignored() -> None:
    loss_fn = SegmentationLoss(LossConfig(kind="dice_focal"))
    logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    y = torch.full((2, 8, 8), 255)
    assert float(loss_fn(logits, y).detach()) == 0.0
    y[:, :4] = 1
    assert torch.isfinite(loss_fn(logits, y))


def test_augment_keeps_mask_aligned() -> None:
    torch.manual_seed(0)
    augment = make_augment(AugmentConfig(gain_sigma=0, band_gain_sigma=0, offset_sigma=0,
                                         noise_sigma=0))
    image = torch.zeros(3, 16, 16)
    mask = torch.zeros(16, 16, dtype=torch.int64)
    image[:, 2:5, 9:14] = 1.0
    mask[2:5, 9:14] = 1
    for _ in range(8):
        x, m = augment(image, mask)
        assert torch.equal(x[0] == 1.0, m == 1)
    jitter = make_augment(AugmentConfig(flips=False, rot90=False))
    x, m = jitter(image, mask)
    assert torch.equal(m, mask) and not torch.equal(x, image)


def _tiny_config(chip_folder: Path, out: Path, **kw: object) -> TrainConfig:
    raw = {
        "model": {"name": "tiny", "architecture": "unet-slim", "options": TINY_OPTIONS},
        "data": {"kind": "chips", "folder": str(chip_folder)},
        "sampling": {"patch_size_px": 32, "patches_per_epoch": 8},
        "optim": {"epochs": 2, "batch_size": 4, "lr": 0.01},
        "device": "cpu",
        "output": {"folder": str(out)},
        **kw,
    }
    return TrainConfig.model_validate(raw)


@pytest.mark.slow
def test_train_writes_checkpoints_log_and_resumes(chip_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = train(_tiny_config(chip_folder, out))
    for name in ("best.pt", "last.pt", "model.pt", "log.csv", "MODEL_CARD.md", "config.json"):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader((out / "log.csv").read_text().splitlines()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert rows[0]["val_mining_iou"] != ""
    ckpt = load_checkpoint(out / "model.pt")
    assert ckpt.metadata.bands == BANDS
    assert ckpt.metadata.training_data["val_regions"] == ["region-1"]
    assert "region-2" not in ckpt.metadata.training_data["train_regions"]
    assert result.epochs == 2

    resumed = train(_tiny_config(chip_folder, out, resume=str(out / "last.pt"),
                                 optim={"epochs": 3, "batch_size": 4, "lr": 0.01}))
    assert resumed.epochs == 1
    rows = list(csv.DictReader((out / "log.csv").read_text().splitlines()))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]


def test_resume_with_other_bands_is_refused(chip_folder: Path, tmp_path: Path) -> None:
    from models.errors import BandMismatchError

    out = tmp_path / "run"
    train(_tiny_config(chip_folder, out, optim={"epochs": 1, "batch_size": 4}))
    with pytest.raises(BandMismatchError, match=r"checkpoint bands .* differ"):
        train(_tiny_config(chip_folder, tmp_path / "b", resume=str(out / "last.pt"),
                           bands=["B02", "B03", "B04"]))
