"""Imagery sources behind one interface: find the scenes over an area and period, read one onto a
grid chip. ``open_source`` builds the source a scan config names."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from shapely.geometry.base import BaseGeometry

from aoi.grid import GridCell, bounds_footprint
from tiles.config import (
    LocalSourceConfig,
    SentinelHubSourceConfig,
    SourceConfig,
    StacSourceConfig,
    SyntheticSourceConfig,
)
from tiles.errors import SceneFormatError, TileError
from tiles.scene import Scene, SceneInfo
from tiles.sources._local import list_scenes, read_scene
from tiles.sources._sentinelhub import SentinelHubSource
from tiles.sources._stac import StacSource
from tiles.synthetic import WorldSpec, generate_world

log = logging.getLogger(__name__)

#: ``progress(done, total)``.
ProgressFn = Callable[[int, int], None]


@runtime_checkable
class Source(Protocol):
    """What a scan needs of an imagery source."""

    @property
    def description(self) -> str:
        """One line naming the source, written into the alerts' metadata."""
        ...

    def search(self, area: BaseGeometry, start: dt.date, end: dt.date) -> list[SceneInfo]:
        """Scenes whose footprint meets ``area`` (EPSG:4326) acquired in ``[start, end]``."""
        ...

    def read(self, info: SceneInfo, cell: GridCell, *, bands: Sequence[str]) -> Scene:
        """The scene's pixels on ``cell``'s grid (reflectance; SCL when the source has it)."""
        ...


def footprint_wgs84(info: SceneInfo) -> BaseGeometry:
    """The scene's bounding footprint in EPSG:4326 (split at ±180 when it spans it)."""
    return bounds_footprint(info.crs, info.bounds)


class LocalSource:
    """A folder of scenes in the ``local`` format (DESIGN.md section 3)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._scenes: list[SceneInfo] | None = None
        #: scenes skipped because they cannot be read (truncated, corrupt, missing tags)
        self.rejected: list[SceneFormatError] = []

    @property
    def description(self) -> str:
        return f"local:{self.folder}"

    def search(self, area: BaseGeometry, start: dt.date, end: dt.date) -> list[SceneInfo]:
        if self._scenes is None:
            self.rejected = []
            self._scenes = list_scenes(self.folder, skip_invalid=True, rejected=self.rejected)
        found = [
            s
            for s in self._scenes
            if start <= s.datetime.date() <= end and footprint_wgs84(s).intersects(area)
        ]
        log.info(
            "%s: %d of %d scene(s) in %s..%s over the area",
            self.description,
            len(found),
            len(self._scenes),
            start,
            end,
        )
        return found

    def read(self, info: SceneInfo, cell: GridCell, *, bands: Sequence[str]) -> Scene:
        return read_scene(info, cell, bands=bands)


class SyntheticSource(LocalSource):
    """The synthetic world (DESIGN.md section 8), generated into ``folder`` on first use and read
    back as a local source."""

    def __init__(
        self, folder: Path, spec: WorldSpec, *, progress: ProgressFn | None = None
    ) -> None:
        super().__init__(Path(folder) / "scenes")
        self.world_dir = Path(folder)
        self.spec = spec
        ensure_world(self.world_dir, spec, progress=progress)

    @property
    def description(self) -> str:
        return f"synthetic (seed {self.spec.seed})"


def ensure_world(world_dir: Path, spec: WorldSpec, *, progress: ProgressFn | None = None) -> None:
    """Generate the synthetic world into ``world_dir`` unless the same spec is already there."""
    meta = world_dir / "world.json"
    if meta.is_file():
        try:
            written = json.loads(meta.read_text(encoding="utf-8")).get("spec")
        except json.JSONDecodeError:
            written = None
        if written == spec.model_dump(mode="json"):
            log.info("synthetic world in %s is up to date", world_dir)
            return
    log.info("generating the synthetic world into %s", world_dir)
    generate_world(world_dir, spec, progress=progress)


def open_source(
    config: SourceConfig, *, workdir: Path, progress: ProgressFn | None = None
) -> Source:
    """Build the source a config names.

    Args:
        config: the ``source`` section of a scan config.
        workdir: the scan's output folder (the synthetic world goes to ``workdir/world`` and the
            remote sources' cache to ``workdir/cache`` unless the config gives a path).
        progress: called as ``progress(done, total)`` during long preparation (world synthesis).

    Raises:
        TileError: the source kind is not supported.
        AuthenticationError: a ``sentinelhub`` source without credentials in the environment.
    """
    if isinstance(config, LocalSourceConfig):
        return LocalSource(config.path)
    if isinstance(config, SyntheticSourceConfig):
        return SyntheticSource(config.path or (workdir / "world"), config.world, progress=progress)
    if isinstance(config, StacSourceConfig):
        return StacSource(config, cache_dir=Path(workdir) / "cache")
    if isinstance(config, SentinelHubSourceConfig):
        return SentinelHubSource(config, cache_dir=Path(workdir) / "cache")
    raise TileError(f"source kind {getattr(config, 'kind', config)!r} is not supported")
