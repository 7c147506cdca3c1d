"""minewatch: the command line that wires aoi -> tiles -> models -> detection | training."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("minewatch")
except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0.0.0"

__all__ = ["__version__"]
