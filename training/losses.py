"""Losses fit for rare classes: soft Dice plus (weighted) cross-entropy or focal loss."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from training.patches import IGNORE_INDEX

if TYPE_CHECKING:
    from training.config import LossConfig


def soft_dice_loss(
    logits: torch.Tensor, target: torch.Tensor, *, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """1 - mean soft Dice over the classes present in the batch or predicted (not background).

    Args:
        logits: ``(N, K, H, W)``.
        target: ``(N, H, W)`` class indices; ``ignore_index`` pixels do not count.
    """
    k = logits.shape[1]
    valid = (target != ignore_index).unsqueeze(1).float()
    probs = torch.softmax(logits.float(), dim=1) * valid
    onehot = F.one_hot(target.clamp(0, k - 1), k).permute(0, 3, 1, 2).float() * valid
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + 1.0) / (denom + 1.0)
    return 1.0 - dice[1:].mean()


class SegmentationLoss(nn.Module):
    """``dice_weight * Dice + CE`` (``dice_ce``) or ``dice_weight * Dice + focal``
    (``dice_focal``), ignoring ``IGNORE_INDEX`` pixels.

    Args:
        config: the loss section of the training config.
    """

    def __init__(self, config: LossConfig) -> None:
        super().__init__()
        self.kind = config.kind
        self.dice_weight = config.dice_weight
        self.gamma = config.focal_gamma
        self.register_buffer("weight", torch.tensor(config.class_weights, dtype=torch.float32))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        weight: torch.Tensor = self.weight  # type: ignore[assignment]
        if weight.numel() != logits.shape[1]:
            raise ValueError(
                f"loss.class_weights has {weight.numel()} value(s); the network has "
                f"{logits.shape[1]} classes"
            )
        if not (target != IGNORE_INDEX).any():
            return logits.sum() * 0.0
        if self.kind == "dice_ce":
            pixel = F.cross_entropy(logits, target, weight=weight, ignore_index=IGNORE_INDEX)
        else:
            ce = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX, reduction="none")
            pt = torch.exp(-ce)
            w = weight[target.clamp(0, logits.shape[1] - 1)]
            valid = target != IGNORE_INDEX
            pixel = ((1 - pt) ** self.gamma * ce * w)[valid].mean()
        return pixel + self.dice_weight * soft_dice_loss(logits, target)
