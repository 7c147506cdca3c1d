"""From pixels to chips: the pooled chip score, the multiple-instance loss and patch-level metrics.

A chip's mining score is the mean of its ``k`` most probable mining pixels (observed pixels
only): a chip scores high only when a patch of about ``k`` pixels (0.16 ha at 10 m for k = 16)
looks like mining, which is what a scan needs to draw a site. Training (the MIL loss),
validation, ``minewatch evaluate`` and the threshold stored in a checkpoint all use this one
pooling (:func:`pool_scores`, :func:`pool_scores_np`).

Multiple-instance learning (Maron & Lozano-Pérez 1998; Ilse et al. 2018): a positive chip must
hold mining pixels (its pooled score is pushed to 1), a negative chip none (its pooled score and
every pixel's mining probability are pushed to 0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F  # noqa: N812

#: Default pixels pooled per chip.
DEFAULT_POOL_K = 16


def pool_scores(prob: torch.Tensor, valid: torch.Tensor, k: int = DEFAULT_POOL_K) -> torch.Tensor:
    """Mean of the ``k`` highest ``prob`` among ``valid`` pixels of each chip.

    Args:
        prob: ``(N, H, W)`` mining probabilities.
        valid: ``(N, H, W)`` True where observed; a chip with fewer than ``k`` valid pixels
            pools those it has (none: 0).
        k: pixels pooled.

    Returns:
        ``(N,)`` scores.
    """
    n = prob.shape[0]
    flat = prob.reshape(n, -1)
    v = valid.reshape(n, -1)
    k = min(k, flat.shape[1])
    top, idx = torch.where(v, flat, torch.full_like(flat, -1.0)).topk(k, dim=1)
    used = torch.gather(v, 1, idx).to(flat.dtype)
    return (top.clamp(min=0) * used).sum(1) / used.sum(1).clamp(min=1)


def pool_scores_np(prob: np.ndarray, k: int = DEFAULT_POOL_K) -> np.ndarray:
    """:func:`pool_scores` of ``(N, H, W)`` probabilities, NaN = unobserved (NumPy)."""
    p = torch.from_numpy(np.ascontiguousarray(prob, dtype=np.float32))
    valid = torch.isfinite(p)
    return pool_scores(torch.nan_to_num(p, nan=0.0), valid, k).numpy()


def mil_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    valid: torch.Tensor,
    *,
    k: int = DEFAULT_POOL_K,
    mining_index: int = 1,
    pixel_weight: float = 1.0,
) -> torch.Tensor:
    """Multiple-instance loss of chips with one label each.

    ``BCE(pooled score, label)`` per chip, plus ``pixel_weight`` times the mean of
    ``-log(1 - p_mining)`` over the valid pixels of negative chips (no pixel of a chip without
    mining is mining).

    Args:
        logits: ``(N, classes, H, W)``.
        labels: ``(N,)`` 1 = mining in the chip, 0 = none.
        valid: ``(N, H, W)`` observed pixels.
        k: pixels pooled (:func:`pool_scores`).
        mining_index: the mining class's logit.
        pixel_weight: weight of the negative chips' pixel term.
    """
    logp = F.log_softmax(logits.float(), dim=1)
    prob = logp[:, mining_index].exp()
    pooled = pool_scores(prob, valid, k).clamp(1e-6, 1 - 1e-6)
    y = labels.float()
    bag = F.binary_cross_entropy(pooled, y)
    neg = (y == 0).view(-1, 1, 1) & valid
    if pixel_weight > 0 and neg.any():
        log_not = torch.log1p(-prob.clamp(max=1 - 1e-6))
        bag = bag - pixel_weight * log_not[neg].mean()
    return bag


# ----------------------------------------------------------------------------- metrics
def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties counted half); NaN with one class."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    # average ranks of ties
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def threshold_for_specificity(
    scores: np.ndarray, labels: np.ndarray, min_specificity: float = 0.97
) -> float:
    """The lowest threshold (``score >= t`` is positive) whose specificity reaches
    ``min_specificity`` on these chips: the most sensitive such threshold."""
    neg = np.sort(np.asarray(scores, dtype=np.float64)[~np.asarray(labels).astype(bool)])
    if len(neg) == 0:
        return 0.5
    # allowed false alarms: at most floor((1 - spec) * n) negatives at or above t
    allowed = int(np.floor((1.0 - min_specificity) * len(neg) + 1e-9))
    bar = neg[len(neg) - allowed - 1]  # the highest negative that must stay below t
    t = float(np.nextafter(bar, np.inf))
    return min(max(t, 1e-6), 1.0)


@dataclass(frozen=True)
class PatchScores:
    """Patch-level scores of one detector at one threshold.

    Attributes:
        threshold: chips with a pooled score at or above it are called mining.
        tp, fn, tn, fp: chip counts.
        roc_auc: threshold-free ranking quality.
        false_alarms_by_kind: per kind of negative, ``{"chips", "false_alarms", "rate"}``.
        by_set: per set, ``{"label", "chips", "called_mining", "rate"}``.
    """

    threshold: float
    tp: int
    fn: int
    tn: int
    fp: int
    roc_auc: float
    false_alarms_by_kind: dict[str, dict[str, float]]
    by_set: dict[str, dict[str, Any]]

    @property
    def sensitivity(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else float("nan")

    @property
    def specificity(self) -> float:
        return self.tn / (self.tn + self.fp) if self.tn + self.fp else float("nan")

    def as_dict(self) -> dict[str, Any]:
        def r(x: float) -> float | None:
            return None if np.isnan(x) else round(float(x), 4)

        return {
            "sensitivity": r(self.sensitivity), "specificity": r(self.specificity),
            "roc_auc": r(self.roc_auc), "threshold": round(self.threshold, 6),
            "counts": {"positives": self.tp + self.fn, "negatives": self.tn + self.fp,
                       "true_positives": self.tp, "false_negatives": self.fn,
                       "true_negatives": self.tn, "false_positives": self.fp},
            "false_alarm_rate_by_kind": self.false_alarms_by_kind,
            "by_set": self.by_set,
        }


def patch_scores(
    scores: np.ndarray,
    labels: np.ndarray,
    threshold: float,
    *,
    kinds: Sequence[str] | None = None,
    sets: Sequence[str] | None = None,
) -> PatchScores:
    """Sensitivity, specificity, ROC AUC, counts and false alarms per kind of negative.

    Args:
        scores: ``(N,)`` pooled chip scores.
        labels: ``(N,)`` 1 = mining.
        threshold: ``score >= threshold`` is called mining.
        kinds: the kind of each chip (negatives' false-alarm rates are grouped by it).
        sets: the set of each chip (rates per set).
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    hit = s >= threshold
    far: dict[str, dict[str, float]] = {}
    if kinds is not None:
        k = np.asarray(kinds)
        for kind in sorted(set(k[~y].tolist())):
            m = (~y) & (k == kind)
            n, fa = int(m.sum()), int((hit & m).sum())
            far[kind] = {"chips": n, "false_alarms": fa, "rate": round(fa / n, 4)}
    by_set: dict[str, dict[str, Any]] = {}
    if sets is not None:
        st = np.asarray(sets)
        for name in sorted(set(st.tolist())):
            m = st == name
            n, called = int(m.sum()), int((hit & m).sum())
            by_set[name] = {"label": "mining" if y[m].all() else ("not_mining" if not y[m].any()
                                                                   else "mixed"),
                            "chips": n, "called_mining": called, "rate": round(called / n, 4)}
    return PatchScores(
        float(threshold), int((hit & y).sum()), int((~hit & y).sum()), int((~hit & ~y).sum()),
        int((hit & ~y).sum()), roc_auc(s, y), far, by_set,
    )


def sensitivity_at(scores: np.ndarray, labels: np.ndarray, specificity: float) -> float:
    """Sensitivity at the most sensitive threshold that keeps ``specificity`` on these chips."""
    t = threshold_for_specificity(scores, labels, specificity)
    return patch_scores(scores, labels, t).sensitivity


def max_kind_rate(scores: PatchScores) -> float:
    """The highest false-alarm rate of any kind of negative (0 with none)."""
    return max((v["rate"] for v in scores.false_alarms_by_kind.values()), default=0.0)


def describe(scores: Mapping[str, PatchScores]) -> str:
    """One line per detector: sensitivity, specificity, AUC, threshold."""
    return "\n".join(
        f"{name}: sensitivity {s.sensitivity:.3f}, specificity {s.specificity:.3f}, "
        f"AUC {s.roc_auc:.3f} at threshold {s.threshold:.3g}"
        for name, s in scores.items()
    )
