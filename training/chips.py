"""The chip scorer that training's validation and ``minewatch evaluate`` share: chips of any
bands stacked into the network's bands (top-of-atmosphere chips brought to surface-like
reflectance with :data:`TOA_OFFSETS`), the network's input of them, their mining probability
maps and pooled scores.

Light on purpose (NumPy, PyTorch; no GDAL), like :mod:`training.mixed` which trains with it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from models.normalization import Normalization
from tiles.radiometry import TOA_OFFSETS, toa_to_surface
from training.errors import TrainingError
from training.patches import ChipGroup
from training.patchlevel import DEFAULT_POOL_K, pool_scores


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
    toa_offsets: Mapping[str, float] | None = None,
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
            offsets = toa_offsets if toa_offsets is not None else TOA_OFFSETS
            img = toa_to_surface(img, g.bands, offsets)
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


def pad_to_multiple(x: torch.Tensor, stride: int, value: float = 0.0) -> torch.Tensor:
    h, w = x.shape[-2:]
    ph, pw = (-h) % stride, (-w) % stride
    return nn.functional.pad(x, (0, pw, 0, ph), value=value) if ph or pw else x


def autocast(device: torch.device, amp: bool) -> Any:
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
        with autocast(device, amp):
            logits = model(pad_to_multiple(xin, stride))
        prob = torch.softmax(logits.float(), dim=1)[:, mining_index, : x.shape[2], : x.shape[3]]
        out[s : s + batch_size] = prob.masked_fill(~valid, float("nan")).cpu().numpy()
    return out


def chip_scores(prob: np.ndarray, k: int = DEFAULT_POOL_K) -> np.ndarray:
    """Pooled chip scores of probability maps (NaN = not valid)."""
    p = torch.from_numpy(prob)
    return pool_scores(torch.nan_to_num(p, nan=0.0), torch.isfinite(p), k).numpy()
