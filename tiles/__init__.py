"""tiles: imagery sources, radiometry, cloud masks, composites, the cache, the synthetic world.

The sources' interface (DESIGN.md section 3) and the remote sources' settings are re-exported
here; two wings are packages with their own face, ``tiles.sources`` (local, synthetic, STAC,
Sentinel Hub) and ``tiles.synthetic`` (the synthetic world); the other modules are imported by
name (``tiles.composite``, ``tiles.radiometry``, ...).
"""

from tiles.cache import WindowCache, fetch_file
from tiles.config import (
    HttpConfig,
    SentinelHubSourceConfig,
    SourceConfig,
    StacSourceConfig,
)
from tiles.http import RetryPolicy, gdal_options, retry_call
from tiles.scene import Scene, SceneInfo
from tiles.sources import Source, open_source

__all__ = [
    "HttpConfig",
    "RetryPolicy",
    "Scene",
    "SceneInfo",
    "SentinelHubSourceConfig",
    "Source",
    "SourceConfig",
    "StacSourceConfig",
    "WindowCache",
    "fetch_file",
    "gdal_options",
    "open_source",
    "retry_call",
]
