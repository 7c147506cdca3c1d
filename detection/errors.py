"""Errors of the detection package."""

from __future__ import annotations


class DetectionError(Exception):
    """Root of every error raised while running a scan or writing its outputs."""


class ConfigError(DetectionError, ValueError):
    """A scan configuration file is missing, malformed, or names an unknown key."""


class OutputExistsError(DetectionError, FileExistsError):
    """The output folder already holds results and ``--overwrite`` was not given."""
