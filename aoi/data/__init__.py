"""Boundary data shipped with minewatch (see ATTRIBUTION.md beside this file)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from aoi.config import INDIGENOUS_LAND, AOIConfig

DEMO_AOI = "munduruku"
"""The AOI of ``minewatch demo``: the Munduruku indigenous territory (FUNAI 29801, Pará)."""


def bundled_aoi_path(name: str = DEMO_AOI) -> Path:
    """The path of a boundary file shipped in ``aoi/data``.

    Args:
        name: file stem, e.g. ``munduruku``.

    Returns:
        The path of ``aoi/data/<name>.geojson``.

    Raises:
        FileNotFoundError: no such bundled file (the message lists those that exist).
    """
    root = resources.files(__name__)
    path = Path(str(root.joinpath(f"{name}.geojson")))
    if not path.is_file():
        shipped = sorted(
            Path(entry.name).stem for entry in root.iterdir() if entry.name.endswith(".geojson")
        )
        raise FileNotFoundError(
            f"no bundled AOI {name!r}; expected one of: {', '.join(shipped)}"
        )
    return path


def demo_aoi_config(*, buffer_m: float = 5000.0) -> AOIConfig:
    """The AOI configuration of the demo (the bundled Munduruku territory).

    Args:
        buffer_m: buffer around the territory, metres.

    Returns:
        An :class:`aoi.config.AOIConfig` reading ``package:aoi/data/munduruku.geojson``.
    """
    return AOIConfig(
        path=Path(f"package:aoi/data/{DEMO_AOI}.geojson"), kind=INDIGENOUS_LAND, buffer_m=buffer_m
    )
