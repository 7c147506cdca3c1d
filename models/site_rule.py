"""The one rule from a class's probabilities to its mask, for scans, ``predict`` and ``evaluate``.

1. Probabilities are compared as a ``uint8`` probability COG stores them (steps of
   1/:data:`PROBABILITY_STEPS`), so a chip's float probabilities and a scene's stored ones are
   called alike.
2. A pixel is the class's where its probability reaches the class's threshold: the configured
   one, else the checkpoint's own (chosen on its validation data, :func:`checkpoint_thresholds`),
   else :data:`DEFAULT_THRESHOLD`. With a hysteresis low threshold, the pixels from ``low`` up
   form the mask and a region is kept when it holds a pixel at the threshold.
3. The mask is opened (specks removed) and closed (pinholes filled) with squares.

:mod:`detection.sites` polygonises these masks block by block and applies the minimum mapping
unit to the merged sites; :func:`label_map` applies the same unit on a raster, for scoring.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Annotated, Literal, cast

import numpy as np
from pydantic import Field, model_validator
from scipy import ndimage

from aoi.configfile import StrictConfig
from models.checkpoint import Checkpoint

#: A probability COG stores ``round(p * 254)`` as uint8 (255 is its nodata).
PROBABILITY_STEPS = 254
#: Threshold of a class that neither the configuration nor the checkpoint names.
DEFAULT_THRESHOLD = 0.5
#: Label code of a pixel no class reached in :func:`label_map`; classes are ``1..n``.
NO_CLASS = 0
#: Label code of an unobserved pixel (NaN probability) in :func:`label_map`.
UNOBSERVED = 255


#: An alert class, as a config key.
AlertClass = Literal["mining", "deforestation"]
_Probability = Annotated[float, Field(gt=0.0, le=1.0)]


class SiteRule(StrictConfig):
    """The rule's settings: a scan config's ``sites`` section, ``minewatch predict``'s flags and
    an evaluation config's ``sites`` section.

    A pixel is a class's where its probability reaches the class's threshold (``thresholds``,
    else the network checkpoint's own, chosen on its validation data, else 0.5); with
    ``hysteresis_low`` a class's pixels from its low threshold up form the mask and a site is
    kept when it holds a pixel at the threshold. The mask is opened (specks removed) and closed
    (pinholes filled) with squares of ``opening_px`` / ``closing_px`` radius, its regions are
    formed with ``connectivity``; sites smaller than ``min_area_ha`` are dropped and outlines
    simplified by ``simplify_m`` metres.
    """

    thresholds: dict[AlertClass, _Probability] = Field(default_factory=dict)
    hysteresis_low: dict[AlertClass, _Probability] = Field(default_factory=dict)
    opening_px: int = Field(default=1, ge=0, le=16)
    closing_px: int = Field(default=1, ge=0, le=16)
    min_area_ha: float = Field(default=0.5, ge=0)
    simplify_m: float | None = Field(default=5.0, ge=0)
    connectivity: Literal[4, 8] = 8

    @model_validator(mode="after")
    def _low_below_threshold(self) -> SiteRule:
        for name, low in self.hysteresis_low.items():
            high = self.thresholds.get(name)
            if high is not None and low > high:
                raise ValueError(f"hysteresis low {low} of {name} is above its threshold {high}")
        return self

    def resolved(self, classes: Sequence[str], recorded: Mapping[str, float] | None = None
                 ) -> dict[str, float]:
        """Every class's threshold: this rule's, else ``recorded`` (a checkpoint's), else 0.5."""
        return resolve_thresholds(classes, {str(k): v for k, v in self.thresholds.items()},
                                  recorded)


def checkpoint_thresholds(checkpoint: Checkpoint) -> dict[str, float]:
    """Per-class probability thresholds a checkpoint recommends (``extra["thresholds"]``).

    Returns:
        ``{class: threshold}`` for the classes it names; empty when it names none.
    """
    raw = checkpoint.metadata.extra.get("thresholds")
    if not isinstance(raw, dict):
        return {}
    out: dict[str, float] = {}
    for name, value in raw.items():
        with contextlib.suppress(TypeError, ValueError):
            out[str(name)] = float(value)
    return out


def resolve_thresholds(
    classes: Sequence[str],
    configured: Mapping[str, float],
    recorded: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """The threshold of every class: the configured one, else the checkpoint's (``recorded``),
    else :data:`DEFAULT_THRESHOLD`."""
    from_model = recorded or {}
    return {c: float(configured.get(c, from_model.get(c, DEFAULT_THRESHOLD))) for c in classes}


def stored_probability(probability: np.ndarray) -> np.ndarray:
    """Probabilities on the grid a ``uint8`` probability COG stores them on (NaN stays NaN),
    as float32."""
    levels = np.round(np.asarray(probability, dtype=np.float32) * np.float32(PROBABILITY_STEPS))
    return cast(np.ndarray, levels / np.float32(PROBABILITY_STEPS))


def threshold_mask(
    probability: np.ndarray,
    *,
    threshold: float,
    low: float | None = None,
    opening_px: int = 0,
    closing_px: int = 0,
    connectivity: int = 8,
) -> np.ndarray:
    """A ``(row, col)`` boolean mask of one class's probabilities (steps 2-3 of the rule).

    Args:
        probability: ``(row, col)`` probabilities, NaN where not observed (never detected).
        threshold: pixels ``>= threshold`` are detected.
        low: hysteresis: pixels ``>= low`` whose region (at or above ``low``) holds a pixel
            ``>= threshold`` are detected too (within this array).
        opening_px: radius of a binary opening after thresholding (0: none).
        closing_px: radius of a binary closing after the opening (0: none).
        connectivity: 4 or 8 (hysteresis regions).

    Raises:
        ValueError: ``probability`` is not 2-D.
    """
    if probability.ndim != 2:
        raise ValueError(
            f"threshold_mask: probability shape {probability.shape}; expected (row, col)"
        )
    p = np.nan_to_num(probability, nan=0.0)
    mask = p >= threshold
    if low is not None and low < threshold:
        labels, n = ndimage.label(p >= low, structure=_structure(connectivity))
        if n:
            keep = np.zeros(n + 1, dtype=bool)
            keep[np.unique(labels[mask])] = True
            keep[0] = False
            mask = keep[labels]
    if opening_px:
        mask = ndimage.binary_opening(mask, structure=_square(opening_px))
    if closing_px:
        # Pad so that the closing does not erode regions touching the array edge.
        pad = closing_px
        padded = np.pad(mask, pad, mode="edge")
        mask = ndimage.binary_closing(padded, structure=_square(closing_px))[pad:-pad, pad:-pad]
    return mask & np.isfinite(probability)


def class_mask(
    probability: np.ndarray,
    *,
    threshold: float,
    low: float | None = None,
    opening_px: int = 0,
    closing_px: int = 0,
    connectivity: int = 8,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The mask of one class under the rule (steps 1-3), and its seeds.

    Returns:
        The mask; with hysteresis (``low``) the mask is of the pixels ``>= low`` and the second
        array holds its pixels ``>= threshold`` (a site is kept when it holds one); else None.
    """
    probability = stored_probability(probability)
    mask = threshold_mask(
        probability,
        threshold=threshold if low is None else low,
        opening_px=opening_px,
        closing_px=closing_px,
        connectivity=connectivity,
    )
    if low is None:
        return mask, None
    return mask, mask & (np.nan_to_num(probability, nan=0.0) >= threshold)


def label_map(
    probabilities: np.ndarray,
    classes: Sequence[str],
    *,
    thresholds: Mapping[str, float],
    hysteresis_low: Mapping[str, float] | None = None,
    opening_px: int = 0,
    closing_px: int = 0,
    connectivity: int = 8,
    min_area_px: float = 0.0,
) -> np.ndarray:
    """``(class, row, col)`` probabilities -> one label per pixel under the rule, as scored.

    Each class's mask is made as a scan makes it (:func:`class_mask`); its regions without a
    hysteresis seed or smaller than ``min_area_px`` (the minimum mapping unit) are dropped.
    Where two classes' masks overlap, the more probable class wins.

    Returns:
        ``uint8`` codes: :data:`NO_CLASS`, ``1..len(classes)`` in the order of ``classes``,
        :data:`UNOBSERVED` where any class's probability is NaN.
    """
    low = hysteresis_low or {}
    p = np.nan_to_num(probabilities, nan=-1.0)
    out = np.full(p.shape[1:], NO_CLASS, dtype=np.uint8)
    best = np.full(p.shape[1:], -np.inf, dtype=np.float32)
    for code, name in enumerate(classes, start=1):
        mask, seeds = class_mask(
            probabilities[code - 1], threshold=thresholds[name], low=low.get(name),
            opening_px=opening_px, closing_px=closing_px, connectivity=connectivity,
        )
        mask = _kept_regions(mask, seeds, min_area_px=min_area_px, connectivity=connectivity)
        wins = mask & (p[code - 1] > best)
        out[wins] = code
        best[wins] = p[code - 1][wins]
    out[np.isnan(probabilities).any(axis=0)] = UNOBSERVED
    return out


def _kept_regions(
    mask: np.ndarray, seeds: np.ndarray | None, *, min_area_px: float, connectivity: int
) -> np.ndarray:
    if seeds is None and min_area_px <= 0:
        return mask
    labels, n = ndimage.label(mask, structure=_structure(connectivity))
    if n == 0:
        return mask
    keep = np.ones(n + 1, dtype=bool)
    if seeds is not None:
        keep[:] = False
        keep[np.unique(labels[seeds])] = True
    sizes = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(n + 1))
    keep &= sizes >= min_area_px
    keep[0] = False
    return cast(np.ndarray, keep[labels])


def _structure(connectivity: int) -> np.ndarray:
    return cast(np.ndarray, ndimage.generate_binary_structure(2, 2 if connectivity == 8 else 1))


def _square(radius: int) -> np.ndarray:
    return np.ones((2 * radius + 1, 2 * radius + 1), dtype=bool)
