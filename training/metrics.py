"""Metrics of detections against truth.

Site-level matching: a predicted site matches a truth site when their polygons share area.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd


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
