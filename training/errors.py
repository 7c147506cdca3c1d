"""Errors of the training package."""

from __future__ import annotations


class TrainingError(Exception):
    """Root of every error raised while preparing data, training or evaluating."""


class TrainConfigError(TrainingError, ValueError):
    """A training or evaluation config is missing, not YAML, or does not validate."""


class DatasetError(TrainingError, ValueError):
    """Labelled data is missing, malformed, or does not fit together (bands, grids, splits)."""
