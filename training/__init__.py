"""Labelled-tile datasets, training, metrics and evaluation reports."""

from training.metrics import SiteScores, match_sites

__all__ = ["SiteScores", "match_sites"]
