"""Noise fields: smooth, fractal and logistic-mapped random fields of a chosen feature size,
the texture of every surface, cloud and haze of the synthetic world."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale_px: float) -> np.ndarray:
    """Zero-mean, unit-variance noise with features of about ``scale_px`` pixels (float32).

    Fine scales blur white noise; coarse scales interpolate a coarse white-noise grid with cubic
    B-splines, as two small matrix products (fast at any size).
    """
    h, w = shape
    if scale_px <= 8.0:
        field_ = ndimage.gaussian_filter(
            rng.standard_normal(shape, dtype=np.float32), sigma=max(scale_px / 2.0, 0.5)
        )
    else:
        low = rng.standard_normal(
            (math.ceil(h / scale_px) + 4, math.ceil(w / scale_px) + 4), dtype=np.float32
        )
        field_ = _bspline_matrix(h, low.shape[0], scale_px) @ low
        field_ = field_ @ _bspline_matrix(w, low.shape[1], scale_px).T
    field_ = field_ - field_.mean()
    std = float(field_.std())
    return (field_ / std if std > 0 else field_).astype(np.float32, copy=False)


def _bspline_matrix(n_out: int, n_low: int, scale_px: float) -> np.ndarray:
    """``(n_out, n_low)`` weights interpolating a grid of spacing ``scale_px`` (cubic B-spline)."""
    t = (np.arange(n_out, dtype=np.float32) + 0.5) / np.float32(scale_px) + 1.5
    x = np.abs(t[:, np.newaxis] - np.arange(n_low, dtype=np.float32)[np.newaxis, :])
    return np.where(
        x < 1.0, 2.0 / 3.0 - x**2 + 0.5 * x**3, np.where(x < 2.0, (2.0 - x) ** 3 / 6.0, 0.0)
    ).astype(np.float32)


def fractal_noise(
    rng: np.random.Generator, shape: tuple[int, int], scales_px: Sequence[float]
) -> np.ndarray:
    """Sum of octaves of :func:`smooth_noise`, amplitude halving per octave, unit variance."""
    total = np.zeros(shape, dtype=np.float32)
    amp = 1.0
    for s in scales_px:
        total += amp * smooth_noise(rng, shape, s)
        amp *= 0.5
    total -= total.mean()
    return total / max(float(total.std()), 1e-6)


def to_unit(x: np.ndarray) -> np.ndarray:
    """Map a unit-variance noise field to 0..1 (logistic)."""
    return (1.0 / (1.0 + np.exp(-1.7 * np.clip(x, -20.0, 20.0)))).astype(np.float32)
