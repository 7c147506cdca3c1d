"""Per-band normalisation of reflectance before a network (part of every checkpoint)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.errors import ModelError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Normalization:
    """Standardise each band: ``(reflectance - mean) / std``; unobserved (NaN) pixels become 0.

    Filling NaN with the band mean (0 after standardising) gives the network a neutral value
    where nothing was observed; the detector masks those pixels out of its output afterwards.

    Attributes:
        bands: band names, in the order of ``mean`` and ``std``.
        mean: per-band mean reflectance.
        std: per-band standard deviation (> 0).
    """

    bands: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        if not (len(self.bands) == len(self.mean) == len(self.std)) or not self.bands:
            raise ModelError(
                f"normalization: {len(self.bands)} band(s) {list(self.bands)}, {len(self.mean)} "
                f"mean(s), {len(self.std)} std(s); expected one mean and one std per band"
            )
        bad = [b for b, s in zip(self.bands, self.std, strict=True) if not s > 0]
        if bad or not all(np.isfinite(self.mean)):
            raise ModelError(
                f"normalization: std must be > 0 and mean finite; bad band(s) {bad}, "
                f"mean {list(self.mean)}"
            )

    def apply(self, data: np.ndarray) -> np.ndarray:
        """Standardise ``(band, row, col)`` or ``(N, band, row, col)`` reflectance.

        Args:
            data: reflectance with the bands of ``self.bands`` on the band axis; NaN allowed.

        Returns:
            float32 standardised values, NaN replaced by 0 (the band mean).

        Raises:
            ModelError: the band axis does not have ``len(self.bands)`` entries.
        """
        axis = data.ndim - 3
        if data.ndim not in (3, 4) or data.shape[axis] != len(self.bands):
            raise ModelError(
                f"normalization: data shape {data.shape}; expected (band, row, col) or "
                f"(N, band, row, col) with {len(self.bands)} band(s) {list(self.bands)}"
            )
        shape = [1] * data.ndim
        shape[axis] = len(self.bands)
        mean = np.asarray(self.mean, dtype=np.float32).reshape(shape)
        std = np.asarray(self.std, dtype=np.float32).reshape(shape)
        out = (data.astype(np.float32, copy=False) - mean) / std
        return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32, copy=False)

    def as_dict(self) -> dict[str, Any]:
        return {"bands": list(self.bands), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> Normalization:
        """Read :meth:`as_dict` output.

        Raises:
            ModelError: keys are missing or values malformed.
        """
        try:
            return cls(
                tuple(str(b) for b in value["bands"]),
                tuple(float(m) for m in value["mean"]),
                tuple(float(s) for s in value["std"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(
                f"normalization {value!r}: expected {{'bands': [...], 'mean': [...], "
                f"'std': [...]}} ({exc})"
            ) from exc


def normalization_from_images(
    images: Iterable[np.ndarray],
    bands: Sequence[str],
    *,
    max_pixels: int = 2_000_000,
    seed: int = 0,
) -> Normalization:
    """Per-band mean and std of the observed pixels of ``(band, row, col)`` images.

    Args:
        images: reflectance images, bands in the order of ``bands``; NaN = unobserved.
        bands: the band names.
        max_pixels: at most this many pixels are drawn (uniformly) from all images together.
        seed: seed of the pixel draw.

    Returns:
        The normalisation.

    Raises:
        ModelError: an image has the wrong band count, or no pixel is observed.
    """
    rng = np.random.default_rng(seed)
    samples: list[np.ndarray] = []
    arrays = list(images)
    total = sum(int(a.shape[1] * a.shape[2]) for a in arrays)
    share = min(1.0, max_pixels / max(total, 1))
    for a in arrays:
        if a.ndim != 3 or a.shape[0] != len(bands):
            raise ModelError(
                f"normalization: image shape {a.shape}; expected ({len(bands)}, row, col)"
            )
        flat = a.reshape(len(bands), -1)
        n = max(1, int(flat.shape[1] * share))
        idx = rng.choice(flat.shape[1], size=min(n, flat.shape[1]), replace=False)
        pick = flat[:, idx]
        samples.append(pick[:, np.all(np.isfinite(pick), axis=0)])
    values = np.concatenate(samples, axis=1) if samples else np.empty((len(bands), 0))
    if values.shape[1] == 0:
        raise ModelError("normalization: no observed pixel in the training images")
    mean = values.mean(axis=1)
    std = np.maximum(values.std(axis=1), 1e-4)
    log.info("normalization from %d pixels: mean %s, std %s", values.shape[1], mean, std)
    return Normalization(
        tuple(bands),
        tuple(round(float(m), 6) for m in mean),
        tuple(round(float(s), 6) for s in std),
    )
