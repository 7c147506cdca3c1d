"""tiles: imagery sources, radiometry, cloud masks, composites, the cache, the synthetic world.

The public API of the remote sources (DESIGN.md section 3) is re-exported here; the other
modules are imported by name (``tiles.local``, ``tiles.composite``, ...).
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
