"""Metrics of detections against truth.

Site-level matching: a predicted site matches a truth site when their polygons share area.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np


@dataclass(frozen=True)
class SiteScores:
    """Site-level recall and precision.

    Attributes:
        truth_total: truth sites considered.
        truth_found: truth sites overlapped by at least one predicted site.
        predicted_total: predicted sites considered.
        predicted_correct: predicted sites that overlap at least one truth site.
    """

    truth_total: int
    truth_found: int
    predicted_total: int
    predicted_correct: int

    @property
    def recall(self) -> float:
        return self.truth_found / self.truth_total if self.truth_total else 1.0

    @property
    def precision(self) -> float:
        return self.predicted_correct / self.predicted_total if self.predicted_total else 1.0

    def line(self, what: str) -> str:
        return (
            f"{what}: recall {self.recall:.2f} ({self.truth_found}/{self.truth_total}), "
            f"precision {self.precision:.2f} ({self.predicted_correct}/{self.predicted_total})"
        )


def match_sites(predicted: gpd.GeoDataFrame, truth: gpd.GeoDataFrame) -> SiteScores:
    """Match predicted and truth polygons by overlap (any shared area).

    Args:
        predicted: predicted sites (any CRS; reprojected to ``truth``'s).
        truth: truth sites.

    Returns:
        The site-level counts.

    Raises:
        ValueError: a frame has no CRS.
    """
    if predicted.crs is None or truth.crs is None:
        raise ValueError("match_sites: both frames need a CRS")
    if predicted.empty or truth.empty:
        return SiteScores(len(truth), 0, len(predicted), 0)
    pred = predicted.to_crs(truth.crs)
    pairs = gpd.sjoin(pred[["geometry"]], truth[["geometry"]], predicate="intersects", how="inner")
    # "intersects" also holds for polygons that only touch; keep pairs sharing area.
    keep = [
        pi
        for pi, ti in zip(pairs.index, pairs["index_right"], strict=True)
        if pred.geometry.loc[pi].intersection(truth.geometry.loc[ti]).area > 0
    ]
    kept = pairs.loc[keep]
    return SiteScores(
        truth_total=len(truth),
        truth_found=int(kept["index_right"].nunique()),
        predicted_total=len(pred),
        predicted_correct=int(kept.index.nunique()),
    )


# ------------------------------------------------------------------------- pixel metrics
@dataclass(frozen=True)
class ClassScores:
    """Pixel scores of one class (one-vs-rest from a confusion matrix).

    Attributes:
        name: the class.
        tp: true positive pixels.
        fp: false positive pixels.
        fn: false negative pixels.
    """

    name: str
    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        denom = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denom if denom else 0.0

    @property
    def iou(self) -> float:
        return self.tp / (self.tp + self.fp + self.fn) if self.tp + self.fp + self.fn else 0.0

    def as_dict(self) -> dict[str, float | int]:
        return {
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
            "iou": round(self.iou, 4),
            "support": self.tp + self.fn,
            "predicted": self.tp + self.fp,
        }


class ConfusionMatrix:
    """Pixel confusion matrix, rows = truth, columns = prediction.

    Args:
        classes: class names, index = code.
        ignore_index: truth code that is not counted.
    """

    def __init__(self, classes: tuple[str, ...], *, ignore_index: int = 255) -> None:
        self.classes = classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)

    def update(self, predicted: np.ndarray, truth: np.ndarray) -> None:
        """Add pixels; truth ``ignore_index`` pixels (and predictions outside the classes) are
        skipped.

        Raises:
            ValueError: shapes differ.
        """
        if predicted.shape != truth.shape:
            raise ValueError(f"confusion: prediction {predicted.shape} vs truth {truth.shape}")
        k = len(self.classes)
        t = truth.reshape(-1).astype(np.int64)
        p = predicted.reshape(-1).astype(np.int64)
        keep = (t != self.ignore_index) & (t >= 0) & (t < k) & (p >= 0) & (p < k)
        self.matrix += np.bincount(t[keep] * k + p[keep], minlength=k * k).reshape(k, k)

    def merge(self, other: ConfusionMatrix) -> None:
        self.matrix += other.matrix

    def scores(self, name: str) -> ClassScores:
        i = self.classes.index(name)
        tp = int(self.matrix[i, i])
        return ClassScores(
            name, tp, int(self.matrix[:, i].sum()) - tp, int(self.matrix[i, :].sum()) - tp
        )

    def as_dict(self) -> dict[str, dict[str, float | int]]:
        return {c: self.scores(c).as_dict() for c in self.classes}
