"""The one window blend: how overlapping windows of a network's output become one raster.

Both the scan's detector (:class:`models.network.NetworkDetector`, an input larger than its
tile) and whole-scene inference (:func:`detection.inference.predict_raster`) cut an image into
windows whose starts are multiples of the step, and weight each window's probabilities by a
separable sine-squared taper over the overlap: the weights of two neighbours sum to exactly 1,
and the image's borders are not tapered. So a pixel's probability is the same blend whichever
of them computed it.
"""

from __future__ import annotations

import math

import numpy as np


def axis_starts(size: int, window: int, step: int) -> list[int]:
    """Window starts along one axis: multiples of ``step``, the last reaching ``size``.

    Args:
        size: pixels along the axis.
        window: window length.
        step: distance between window starts (``window - overlap``), >= 1.
    """
    if size <= window:
        return [0]
    return [i * step for i in range(1 + math.ceil((size - window) / step))]


def taper(length: int, overlap: int, *, lead: bool, trail: bool) -> np.ndarray:
    """1-D blend weights of a window: sine-squared ramps over the overlap at the sides that
    have a neighbour (``lead``: before it; ``trail``: after it); neighbours sum to exactly 1."""
    w = np.ones(length, dtype=np.float64)
    if overlap > 0:
        ramp = np.sin(0.5 * np.pi * (np.arange(overlap) + 0.5) / overlap) ** 2
        if lead:
            w[:overlap] = ramp
        if trail:
            w[length - overlap :] = ramp[::-1]
    return w


def axis_weights(
    starts: list[int], lengths: list[int], overlap: int
) -> tuple[list[np.ndarray], np.ndarray]:
    """Each window's weights along one axis, and their sum over the axis.

    Args:
        starts: window starts (:func:`axis_starts`).
        lengths: window lengths (the last may be shorter: cut at the image edge).
        overlap: overlap of neighbouring windows.

    Returns:
        One weight vector per window, and the total weight per pixel (1 where windows overlap
        by ``overlap``; divide by it where they do not).
    """
    weights = [
        taper(n, overlap, lead=i > 0, trail=i < len(starts) - 1) for i, n in enumerate(lengths)
    ]
    total = np.zeros(starts[-1] + lengths[-1], dtype=np.float64)
    for s, w in zip(starts, weights, strict=True):
        total[s : s + len(w)] += w
    return weights, total
