"""The patch dataset a network trains on (PyTorch): random windows of labelled images, or a grid.

Needs the ``torch`` extra, as training does; the labelled images themselves
(:mod:`training.data`) do not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from models.normalization import Normalization
from training.data import DEFORESTATION, MINING, LabelledImage, cut_window, grid_windows
from training.errors import DatasetError
from training.patches import IGNORE_INDEX


class PatchDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Patches of labelled images for a network: random windows (training) or a grid
    (validation).

    Random windows are redrawn by :meth:`resample` (once per epoch): ``positive_share`` of them
    centred on a random mining or deforestation pixel, the rest anywhere; ``edge_share`` may
    hang over an image edge. Augmentations act on reflectance; then unobserved pixels are
    ignored in the label and the image is normalised (NaN -> 0).

    Args:
        images: labelled images (bands in the network's order).
        normalization: applied last.
        patch_px: patch side.
        n_patches: random patches per epoch; None = grid windows with ``stride_px``.
        stride_px: grid stride (default ``patch_px``).
        positive_share: see above.
        edge_share: see above.
        augment: ``augment(image, mask) -> (image, mask)`` on tensors, or None.
        seed: seed of the window draws.

    Raises:
        DatasetError: no images.
    """

    def __init__(
        self,
        images: Sequence[LabelledImage],
        *,
        normalization: Normalization,
        patch_px: int,
        n_patches: int | None = None,
        stride_px: int | None = None,
        positive_share: float = 0.5,
        edge_share: float = 0.1,
        augment: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
        | None = None,
        seed: int = 0,
    ) -> None:
        if not images:
            raise DatasetError("no labelled images for this split")
        self.images = list(images)
        self.normalization = normalization
        self.patch_px = patch_px
        self.n_patches = n_patches
        self.positive_share = positive_share
        self.edge_share = edge_share
        self.augment = augment
        self._seed = seed
        self._positives = [np.flatnonzero((im.label == MINING) | (im.label == DEFORESTATION))
                           for im in self.images]
        if n_patches is None:
            stride = stride_px or patch_px
            self.windows = [(i, r, c) for i, im in enumerate(self.images)
                            for r, c in grid_windows(im.label.shape, patch_px, stride)]
        else:
            self.resample(0)

    def resample(self, epoch: int) -> None:
        """Draw the random windows of ``epoch`` (no-op for grid windows)."""
        if self.n_patches is None:
            return
        rng = np.random.default_rng([self._seed, epoch])
        sizes = np.array([im.label.size for im in self.images], dtype=float)
        with_pos = [i for i, p in enumerate(self._positives) if p.size]
        P = self.patch_px
        windows = []
        for _ in range(self.n_patches):
            if with_pos and rng.random() < self.positive_share:
                i = int(rng.choice(with_pos))
                flat = int(rng.choice(self._positives[i]))
                H, W = self.images[i].label.shape
                r, c = divmod(flat, W)
                r -= int(rng.integers(P // 8, P - P // 8))
                c -= int(rng.integers(P // 8, P - P // 8))
            else:
                i = int(rng.choice(len(self.images), p=sizes / sizes.sum()))
                H, W = self.images[i].label.shape
                r = int(rng.integers(0, max(H - P, 0) + 1))
                c = int(rng.integers(0, max(W - P, 0) + 1))
            if rng.random() >= self.edge_share:
                r = min(max(r, 0), max(H - P, 0))
                c = min(max(c, 0), max(W - P, 0))
            else:
                r = min(max(r, -P // 2), H - P // 2)
                c = min(max(c, -P // 2), W - P // 2)
            windows.append((i, r, c))
        self.windows = windows

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        i, r, c = self.windows[index]
        x_np, y_np = cut_window(self.images[i], r, c, self.patch_px)
        x = torch.from_numpy(x_np)
        y = torch.from_numpy(y_np.astype(np.int64))
        if self.augment is not None:
            x, y = self.augment(x, y)
        x_np = x.numpy()
        y = y.clone()
        y[torch.from_numpy(~np.all(np.isfinite(x_np), axis=0))] = IGNORE_INDEX
        return torch.from_numpy(self.normalization.apply(x_np)), y
