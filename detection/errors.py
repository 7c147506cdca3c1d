"""Errors of the detection package.

One root, :class:`DetectionError`, that the CLI catches to print one line and exit non-zero.
Each subclass also inherits the builtin that matches its cause (as ``rasterio.errors`` does), so
a caller may catch ``FileNotFoundError`` or ``ValueError`` without knowing this package.
"""

from __future__ import annotations


class DetectionError(Exception):
    """Root of every error raised while running a scan or writing its outputs."""


class ConfigError(DetectionError, ValueError):
    """A scan configuration (file, section, flag) or an option of a library function is
    missing, malformed, out of range or has an unknown key."""


class OutputExistsError(DetectionError, FileExistsError):
    """The output folder already holds results and ``--overwrite`` was not given."""


class InputNotFoundError(DetectionError, FileNotFoundError):
    """A file or folder the command reads does not exist (an alerts file, a run, a raster)."""


class InputFormatError(DetectionError, ValueError):
    """A file the command reads exists but is not what it expects (schema, columns, CRS, bands);
    also a table or array handed to a library function (an alerts frame without a CRS)."""


class InputReadError(DetectionError, OSError):
    """A file the command reads cannot be opened or read (I/O error, corrupt block)."""


class OutputWriteError(DetectionError, OSError):
    """An output cannot be written (disk full, permissions); what was written before is kept."""


class RunStateError(DetectionError, RuntimeError):
    """The output folder's runs forbid the request (resume of another config, no run to report)."""


class SchedulerUnreachableError(DetectionError, ConnectionError):
    """The Dask scheduler a scan was told to use cannot be reached (address, firewall, down)."""
