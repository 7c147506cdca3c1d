"""Errors of the models package."""

from __future__ import annotations


class ModelError(Exception):
    """Root of every error raised while building, loading or running a detector."""


class BandMismatchError(ModelError, ValueError):
    """The bands a scene offers do not match the bands a detector was built for."""


class CheckpointError(ModelError, ValueError):
    """A checkpoint file is missing, corrupt, or its weights do not match its sha256."""
