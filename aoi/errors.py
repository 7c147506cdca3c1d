"""Errors of the aoi package: one root, subclasses that also inherit the matching builtin."""

from __future__ import annotations


class AOIError(Exception):
    """Root of every error raised while reading or preparing areas of interest."""


class AOINotFoundError(AOIError, FileNotFoundError):
    """An AOI file or layer does not exist."""


class AOIGeometryError(AOIError, ValueError):
    """An AOI geometry is empty, invalid beyond repair, or in impossible coordinates."""


class AOIFieldError(AOIError, KeyError):
    """A field named by the configuration is missing from the AOI layer."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain.
        return str(self.args[0]) if self.args else ""
